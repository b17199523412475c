// Starts one real OpenStack Swift (s3api) per test run with deploy/swift/swift-s3.sh, makes a bucket, stops it at the end.
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Amazon.Runtime;
using Amazon.S3;
using Amazon.S3.Model;
using MirrorFS.Core.Storage.S3;
using Xunit.Abstractions;
using Xunit.Sdk;

namespace MirrorFS.Core.Tests.Storage.S3;

[CollectionDefinition(Name)]
public sealed class SwiftCollection : ICollectionFixture<SwiftFixture>
{
    public const string Name = "Swift S3";
}

public sealed class SwiftFixture : IAsyncLifetime
{
    public const string AccessKey = "test:tester";
    public const string SecretKey = "testing";
    public const string Region = "us-east-1";

    /// <summary>Generous bound for start-up on a loaded 2-core machine; the script's own default is 20 s.</summary>
    private const int ReadyTimeoutS = 60;
    private const int ScriptTimeoutMs = (ReadyTimeoutS + 30) * 1000;
    private const int LogTailLines = 60;

    private readonly IMessageSink _sink;
    private int _prefixes;

    public SwiftFixture(IMessageSink sink) => _sink = sink;

    public string Dir { get; } = Path.Combine(Path.GetTempPath(), "mirrorfs-swift-" + Guid.NewGuid().ToString("N")[..12]);

    public int Port { get; private set; }

    public Uri Endpoint => new($"http://127.0.0.1:{Port}");

    /// <summary>A bucket made for this run; tests share it, each on its own prefix.</summary>
    public string Bucket { get; } = "mirrorfs-" + Guid.NewGuid().ToString("N")[..12];

    public static string Script
    {
        get
        {
            for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            {
                if (File.Exists(Path.Combine(dir.FullName, "Mirror.sln")))
                {
                    return Path.Combine(dir.FullName, "deploy", "swift", "swift-s3.sh");
                }
            }
            throw new InvalidOperationException($"Mirror.sln not found above {AppContext.BaseDirectory}");
        }
    }

    /// <summary>Options for a store on a fresh, unique prefix of <see cref="Bucket"/>.</summary>
    public S3Options Options(string? bucket = null) => new()
    {
        Bucket = bucket ?? Bucket,
        Prefix = $"t{Interlocked.Increment(ref _prefixes)}-{Guid.NewGuid().ToString("N")[..8]}/",
        Endpoint = Endpoint,
        Region = Region,
        PathStyle = true,
        AccessKey = AccessKey,
        SecretKey = SecretKey,
        RequestTimeoutMs = 30_000,
    };

    private const int BucketCreateTimeoutSeconds = 60;
    private const int StartAttemptsMax = 2;

    public async Task InitializeAsync()
    {
        Directory.CreateDirectory(Dir);
        // The script picks free backend ports itself; another process can take one between the pick and the bind,
        // so a failed start is tried once more on fresh ports before the tests are failed.
        for (var attempt = 1; ; attempt++)
        {
            Port = FreePort();
            var (code, output) = await RunScriptAsync("start", Dir, Port.ToString(System.Globalization.CultureInfo.InvariantCulture));
            if (code == 0)
            {
                break;
            }
            if (attempt >= StartAttemptsMax)
            {
                // Not a skip: without Swift every S3 test must fail, and say why.
                throw new InvalidOperationException(
                    $"swift-s3.sh start {Dir} {Port} exited with {code} ({attempt} tries):{Environment.NewLine}{output}");
            }
            await RunScriptAsync("stop", Dir);
        }
        try
        {
            using var client = AdminClient();
            // Swift answers 503 (SlowDown) until its container server has come up; on a loaded machine that
            // can take a while after the proxy is ready, so keep trying for a bounded time.
            var deadline = DateTime.UtcNow.AddSeconds(BucketCreateTimeoutSeconds);
            while (true)
            {
                try
                {
                    await client.PutBucketAsync(new PutBucketRequest { BucketName = Bucket });
                    break;
                }
                catch (Amazon.S3.AmazonS3Exception e) when ((int)e.StatusCode >= 500 && DateTime.UtcNow < deadline)
                {
                    await Task.Delay(500);
                }
            }
        }
        catch (Exception e)
        {
            throw new InvalidOperationException(
                $"creating bucket {Bucket} on Swift failed: {e.Message}{Environment.NewLine}{LogTail()}", e);
        }
    }

    public async Task DisposeAsync()
    {
        var (code, output) = await RunScriptAsync("stop", Dir);
        var tail = LogTail();
        _sink.OnMessage(new DiagnosticMessage($"Swift logs in {Dir}:{Environment.NewLine}{tail}"));
        if (code != 0)
        {
            throw new InvalidOperationException($"swift-s3.sh stop {Dir} exited with {code}: {output}{Environment.NewLine}{tail}");
        }
        if (Environment.GetEnvironmentVariable("MIRRORFS_KEEP_SWIFT") is null)
        {
            try
            {
                Directory.Delete(Dir, recursive: true);
            }
            catch (IOException)
            {
            }
        }
    }

    /// <summary>The last lines of every Swift log, for failure messages.</summary>
    public string LogTail()
    {
        if (!Directory.Exists(Dir))
        {
            return "(no Swift directory)";
        }
        var text = new System.Text.StringBuilder();
        foreach (var log in Directory.GetFiles(Dir, "*.log").Order(StringComparer.Ordinal))
        {
            var lines = File.ReadAllLines(log);
            text.AppendLine($"----- {log} (last {LogTailLines} of {lines.Length} lines) -----");
            foreach (var line in lines.TakeLast(LogTailLines))
            {
                text.AppendLine(line);
            }
        }
        return text.ToString();
    }

    /// <summary>A raw SDK client for set-up the store does not offer (creating buckets).</summary>
    public AmazonS3Client AdminClient() => new(new BasicAWSCredentials(AccessKey, SecretKey), new AmazonS3Config
    {
        ServiceURL = Endpoint.ToString(),
        AuthenticationRegion = Region,
        ForcePathStyle = true,
        MaxErrorRetry = 0,
        RequestChecksumCalculation = RequestChecksumCalculation.WHEN_REQUIRED,
        ResponseChecksumValidation = ResponseChecksumValidation.WHEN_REQUIRED,
    });

    public static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    internal static async Task<(int Code, string Output)> RunScriptAsync(params string[] args)
    {
        var start = new ProcessStartInfo("bash")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        start.ArgumentList.Add(Script);
        foreach (var a in args)
        {
            start.ArgumentList.Add(a);
        }
        start.Environment["SWIFT_READY_TIMEOUT_S"] = ReadyTimeoutS.ToString(System.Globalization.CultureInfo.InvariantCulture);
        using var process = Process.Start(start) ?? throw new InvalidOperationException("could not start bash");
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(ScriptTimeoutMs);
        try
        {
            await process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            return (-1, $"timed out after {ScriptTimeoutMs} ms{Environment.NewLine}{await stdout}{await stderr}");
        }
        return (process.ExitCode, await stdout + await stderr);
    }
}
