// Two regions on loopback for end-to-end tests: a primary metaserver and bucket, a mirror metaserver and bucket (the
// mirror bucket behind a TcpProxy the test can cut), the replicator as a child process, and a FUSE mount per region.
// Metaservers and the OSS-protocol server run in this process; mounts and the replicator are real processes.
using System.Diagnostics;
using MirrorFS.Client.Tests.Mount;
using MirrorFS.Core.Meta;
using MirrorFS.Core.Storage;
using MirrorFS.Core.Tests.Storage.S3;
using MirrorFS.MetaServer.Hosting;
using MirrorFS.MetaServer.Mirror;
using MirrorFS.Mirror.Cli;
using MirrorFS.Mirror.Replication;
using MirrorFS.Testing.Oss;
using Xunit.Abstractions;

namespace MirrorFS.Mirror.Tests.EndToEnd;

/// <summary>One Swift for all region tests, which run one after another (each starts several processes).</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class RegionCollection : ICollectionFixture<SwiftFixture>
{
    public const string Name = "mirror-regions";
}

public enum BucketKind
{
    Oss,
    S3,
}

public sealed class RegionEnv : IAsyncDisposable
{
    public const string Token = "region-test-token-0123456789abcdef";
    public const string Volume = "regions";
    public const string OssAccessKey = "region-ak";
    public const string OssSecret = "region-secret";

    /// <summary>Generous: a loaded 2-core machine pays JIT, process start and Swift's own work.</summary>
    public const int WaitMs = 180_000;

    private readonly ITestOutputHelper _log;
    private readonly List<MountProcess> _children = [];
    private long _primaryGets;

    private RegionEnv(ITestOutputHelper log, string root)
    {
        _log = log;
        Root = root;
    }

    public string Root { get; }

    public string TokenFile => Path.Combine(Root, "token");

    public OssTestServer Oss { get; private set; } = null!;

    public TcpProxy MirrorProxy { get; private set; } = null!;

    public BucketKind PrimaryKind { get; private set; }

    public string PrimaryBucketUri { get; private set; } = "";

    /// <summary>The mirror bucket as everything but the test reaches it: through <see cref="MirrorProxy"/>.</summary>
    public string MirrorBucketUri { get; private set; } = "";

    /// <summary>The mirror bucket reached directly (for the test's own checks).</summary>
    public IObjectStore MirrorBucket { get; private set; } = null!;

    public IObjectStore PrimaryBucket { get; private set; } = null!;

    public MetaServerHost Primary { get; private set; } = null!;

    public MetaServerHost Mirror { get; private set; } = null!;

    public string PrimaryUrl => $"mirrorfs://{Primary.Address}/{Volume}";

    public string MirrorUrl => $"mirrorfs://{Mirror.Address}/{Volume}";

    public string PrimaryMount => Path.Combine(Root, "primary");

    public string MirrorMount => Path.Combine(Root, "mirror");

    public string ReplicatorState => Path.Combine(Root, "replicator");

    public MountProcess? Replicator { get; private set; }

    /// <summary>Block GETs the OSS server has answered from the primary bucket (when the primary is on OSS).</summary>
    public long PrimaryGets => Interlocked.Read(ref _primaryGets);

    public static async Task<RegionEnv> StartAsync(ITestOutputHelper log, SwiftFixture swift, BucketKind primaryKind, string blockSize = "1M")
    {
        if (!File.Exists("/dev/fuse"))
        {
            throw new InvalidOperationException("/dev/fuse is missing: these tests need FUSE (bash deploy/install-deps.sh)");
        }
        var env = new RegionEnv(log, Directory.CreateTempSubdirectory("mirrorfs-regions-").FullName);
        try
        {
            await env.StartCoreAsync(swift, primaryKind, blockSize);
            return env;
        }
        catch
        {
            await env.DisposeAsync();
            throw;
        }
    }

    private async Task StartCoreAsync(SwiftFixture swift, BucketKind primaryKind, string blockSize)
    {
        PrimaryKind = primaryKind;
        await File.WriteAllTextAsync(TokenFile, Token + "\n");
        var ossOptions = new OssTestServerOptions
        {
            DataDirectory = Path.Combine(Root, "oss"),
            AccessKeyId = OssAccessKey,
            AccessKeySecret = OssSecret,
            Log = line =>
            {
                if (line.StartsWith($"GET /primary/{Volume}/chunks/", StringComparison.Ordinal))
                {
                    Interlocked.Increment(ref _primaryGets);
                }
            },
        };
        ossOptions.Buckets.Add("primary");
        ossOptions.Buckets.Add("mirror");
        Oss = new OssTestServer(ossOptions);
        await Oss.StartAsync();
        var s3Prefix = "r" + Guid.NewGuid().ToString("N")[..10];
        string S3Uri(int port) =>
            $"s3://{Uri.EscapeDataString(SwiftFixture.AccessKey)}:{SwiftFixture.SecretKey}@{swift.Bucket}/{s3Prefix}?endpoint=http://127.0.0.1:{port}&region={SwiftFixture.Region}&path-style=true";
        string OssUri(string bucket, int port) =>
            $"oss://{OssAccessKey}:{OssSecret}@{bucket}?endpoint=http://127.0.0.1:{port}&region=cn-hangzhou";
        if (primaryKind == BucketKind.Oss)
        {
            MirrorProxy = new TcpProxy(swift.Port);
            PrimaryBucketUri = OssUri("primary", Oss.Port);
            MirrorBucketUri = S3Uri(MirrorProxy.Port);
            MirrorBucket = ObjectStoreFactory.Open(S3Uri(swift.Port));
        }
        else
        {
            MirrorProxy = new TcpProxy(Oss.Port);
            PrimaryBucketUri = S3Uri(swift.Port);
            MirrorBucketUri = OssUri("mirror", MirrorProxy.Port);
            MirrorBucket = ObjectStoreFactory.Open(OssUri("mirror", Oss.Port));
        }
        PrimaryBucket = ObjectStoreFactory.Open(PrimaryBucketUri);
        Primary = await MetaServerHost.StartAsync(new MetaServerOptions { DataDirectory = Path.Combine(Root, "meta-p"), BearerToken = Token });
        var o = new StringWriter();
        var code = await Client.Program.RunAsync(
            ["format", PrimaryUrl, Volume, "--storage", PrimaryBucketUri, "--block-size", blockSize, "--token-file", TokenFile], o, o);
        if (code != 0)
        {
            throw new InvalidOperationException($"mirrorfs format failed with {code}: {o}");
        }
        Mirror = await MetaServerHost.StartAsync(new MetaServerOptions
        {
            DataDirectory = Path.Combine(Root, "meta-m"),
            BearerToken = Token,
            Mirror = new MirrorHostOptions
            {
                Primary = MetaServer.Mirror.PrimaryUrl.Parse(PrimaryUrl),
                PrimaryToken = Token,
                MirrorStorage = MirrorBucketUri,
                RenewMs = 500,
            },
        });
    }

    private static string Dll(string name) => Path.Combine(AppContext.BaseDirectory, name);

    private MountProcess StartChild(string label, string dll, IEnumerable<string> args)
    {
        var psi = new ProcessStartInfo("dotnet")
        {
            UseShellExecute = false,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
        };
        psi.ArgumentList.Add(Dll(dll));
        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }
        var p = new MountProcess(label, Process.Start(psi) ?? throw new InvalidOperationException($"could not start dotnet {dll}"));
        _children.Add(p);
        return p;
    }

    /// <summary>Starts (or restarts) `mirrorfs-mirror run` with this test's state directory.</summary>
    public MountProcess StartReplicator(params string[] extra)
    {
        Replicator = StartChild("replicator", "mirrorfs-mirror.dll",
        [
            "run", "--primary", PrimaryUrl, "--to", MirrorBucketUri, "--state-dir", ReplicatorState,
            "--checkpoint-every", "1s", "--token-file", TokenFile, .. extra,
        ]);
        return Replicator;
    }

    /// <summary>kill -9 of the replicator.</summary>
    public async Task KillReplicatorAsync()
    {
        var p = Replicator ?? throw new InvalidOperationException("no replicator started");
        p.Process.Kill(entireProcessTree: true);
        using var cts = new CancellationTokenSource(MountEnv.ExitWaitMs);
        await p.Process.WaitForExitAsync(cts.Token);
    }

    /// <summary>The replicator's status file (written with each checkpoint), or null before the first.</summary>
    public ReplicatorStatus? ReadReplicatorStatus()
    {
        var path = Path.Combine(ReplicatorState, MirrorFS.Mirror.Replication.ReplicatorStatus.FileName);
        try
        {
            return File.Exists(path) ? MirrorFS.Mirror.Replication.ReplicatorStatus.FromJson(File.ReadAllBytes(path)) : null;
        }
        catch (IOException)
        {
            return null;
        }
    }

    /// <summary>Mounts both regions.</summary>
    public async Task MountBothAsync()
    {
        await MountAsync(PrimaryMount, PrimaryUrl, []);
        await MountAsync(MirrorMount, MirrorUrl, ["--primary-token-file", TokenFile]);
    }

    private async Task MountAsync(string mountPoint, string url, string[] extra)
    {
        Directory.CreateDirectory(mountPoint);
        var m = StartChild(mountPoint, "mirrorfs.dll", ["mount", url, mountPoint, "--token-file", TokenFile, .. extra]);
        var deadline = Environment.TickCount64 + MountEnv.MountWaitMs;
        while (!MountEnv.IsMounted(mountPoint))
        {
            if (m.Process.HasExited)
            {
                throw new InvalidOperationException($"mirrorfs mount {url} exited with {m.Process.ExitCode} before mounting:\n{m.Output}");
            }
            if (Environment.TickCount64 > deadline)
            {
                throw new TimeoutException($"{mountPoint} was not mounted within {MountEnv.MountWaitMs} ms:\n{m.Output}");
            }
            await Task.Delay(50);
        }
    }

    /// <summary>Runs `mirrorfs-mirror` in this process; its output goes to the test log.</summary>
    public async Task<(int Code, string Out, string Err)> MirrorCliAsync(params string[] args)
    {
        var o = new StringWriter();
        var e = new StringWriter();
        var code = await Program.RunAsync(args, new MirrorCliContext(o, e));
        _log.WriteLine($"$ mirrorfs-mirror {string.Join(' ', args)}\n{o}{e}(exit {code})");
        return (code, o.ToString(), e.ToString());
    }

    /// <summary>`verify` with a generous wait: clean once the mirror and the replicator have caught up.</summary>
    public Task<(int Code, string Out, string Err)> VerifyAsync(string wait = "150s") =>
        MirrorCliAsync("verify", "--primary", PrimaryUrl, "--mirror", MirrorUrl, "--token-file", TokenFile,
            "--mirror-token-file", TokenFile, "--mirror-storage", MirrorBucketUri, "--wait", wait);

    /// <summary>Waits until the mirror metaserver has applied every entry the primary has.</summary>
    public async Task WaitMirrorAppliedAsync()
    {
        await using var p = new RpcMetaClient(new RpcMetaClientOptions { Addresses = [Primary.Address], BearerToken = Token });
        await using var m = new RpcMetaClient(new RpcMetaClientOptions { Addresses = [Mirror.Address], BearerToken = Token });
        var target = (await p.GetVolumeAsync(new GetVolumeRequest())).Index;
        var deadline = Environment.TickCount64 + WaitMs;
        ulong applied;
        while ((applied = (await m.ListMirrorsAsync(new ListMirrorsRequest())).Follow.AppliedIndex) < target)
        {
            Assert.True(Environment.TickCount64 < deadline, $"mirror applied {applied}, not {target}, within {WaitMs} ms");
            await Task.Delay(100);
        }
    }

    /// <summary>Polls until <paramref name="condition"/> holds; a timeout shows the replicator's last status.</summary>
    public async Task WaitUntilAsync(Func<bool> condition, string what)
    {
        var deadline = Environment.TickCount64 + WaitMs;
        while (!condition())
        {
            if (Environment.TickCount64 > deadline)
            {
                var status = ReadReplicatorStatus();
                Assert.Fail($"timed out after {WaitMs} ms waiting for {what}; replicator status: "
                    + (status is null ? "none" : System.Text.Encoding.UTF8.GetString(status.ToJson())));
            }
            await Task.Delay(200);
        }
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var c in _children)
        {
            try
            {
                if (MountEnv.IsMounted(c.MountPoint))
                {
                    await MountEnv.ForceDownAsync(c);
                }
                else if (!c.Process.HasExited)
                {
                    c.Process.Kill(entireProcessTree: true);
                    await c.Process.WaitForExitAsync();
                }
            }
            catch (Exception e) when (e is InvalidOperationException or IOException or TimeoutException)
            {
                _log.WriteLine($"cleaning up {c.MountPoint}: {e.Message}");
            }
            _log.WriteLine($"--- {c.MountPoint} (exit {(c.Process.HasExited ? c.Process.ExitCode : -1)}) ---\n{c.Output}");
            c.Process.Dispose();
        }
        if (Mirror is not null)
        {
            await Mirror.DisposeAsync();
        }
        if (Primary is not null)
        {
            await Primary.DisposeAsync();
        }
        if (MirrorProxy is not null)
        {
            await MirrorProxy.DisposeAsync();
        }
        if (PrimaryBucket is not null)
        {
            await PrimaryBucket.DisposeAsync();
        }
        if (MirrorBucket is not null)
        {
            await MirrorBucket.DisposeAsync();
        }
        if (Oss is not null)
        {
            await Oss.DisposeAsync();
        }
        try
        {
            Directory.Delete(Root, recursive: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            _log.WriteLine($"could not remove {Root}: {e.Message}");
        }
    }
}
