// A primary and a mirror metaserver (real RPC, on disk) with the replicator between file-system buckets, driven through
// the mirrorfs-mirror commands: status, verify, promote. No FUSE here; the mount tests are in MountRegionTests.
using System.Text.Json;
using Google.Protobuf;
using Microsoft.Extensions.Logging.Abstractions;
using MirrorFS.Core.Layout;
using MirrorFS.Core.Meta;
using MirrorFS.Core.Storage;
using MirrorFS.MetaServer.Hosting;
using MirrorFS.MetaServer.Mirror;
using MirrorFS.Mirror.Cli;
using MirrorFS.Mirror.Replication;
using Xunit.Abstractions;

namespace MirrorFS.Mirror.Tests.EndToEnd;

public sealed class InProcessRegionTests(ITestOutputHelper output) : IAsyncLifetime
{
    private const int WaitMs = 90_000;
    private static readonly Credentials Root = new();
    private readonly string _dir = Directory.CreateTempSubdirectory("mirrorfs-region-").FullName;
    private MetaServerHost _primary = null!;
    private MetaServerHost _mirror = null!;
    private RpcMetaClient _client = null!;
    private FileObjectStore _from = null!;
    private FileObjectStore _to = null!;
    private string _toUri = "";
    private Replicator _replicator = null!;
    private Task _replicating = Task.CompletedTask;
    private readonly CancellationTokenSource _stop = new();

    public async Task InitializeAsync()
    {
        var fromDir = Path.Combine(_dir, "primary-bucket");
        var toDir = Path.Combine(_dir, "mirror-bucket");
        _toUri = "file://" + toDir;
        _from = new FileObjectStore(fromDir);
        _to = new FileObjectStore(toDir);
        _primary = await MetaServerHost.StartAsync(new MetaServerOptions { DataDirectory = Path.Combine(_dir, "p") });
        _client = new RpcMetaClient(new RpcMetaClientOptions { Addresses = [_primary.Address] });
        var f = await _client.FormatAsync(new FormatRequest { Cred = Root, Volume = new Volume { Name = "vol", Storage = "file://" + fromDir, BlockSize = 1 << 16 } });
        Assert.Equal(0, f.Errno);
        _mirror = await MetaServerHost.StartAsync(new MetaServerOptions
        {
            DataDirectory = Path.Combine(_dir, "m"),
            Mirror = new MirrorHostOptions
            {
                Primary = PrimaryUrl.Parse($"mirrorfs://{_primary.Address}/vol"),
                MirrorStorage = _toUri,
                RenewMs = 500,
            },
        });
        StartReplicator();
    }

    private void StartReplicator()
    {
        var source = new RpcChangelogSource([_primary.Address], null);
        _replicator = new Replicator(source, v => ObjectStoreFactory.OpenRaw(v.Storage), _to, new ReplicatorOptions
        {
            StateDirectory = Path.Combine(_dir, "replicator"),
            MirrorId = RunCommand.DefaultMirrorId(_toUri),
            CheckpointEveryMs = 200,
            ReportEveryMs = 1_000,
        }, NullLogger.Instance);
        _replicating = Task.Run(async () =>
        {
            await using (source)
            {
                await _replicator.RunAsync(_stop.Token);
            }
        });
    }

    public async Task DisposeAsync()
    {
        await _stop.CancelAsync();
        await _replicating;
        await _client.DisposeAsync();
        await _mirror.DisposeAsync();
        await _primary.DisposeAsync();
        Directory.Delete(_dir, recursive: true);
    }

    private static ByteString N(string s) => ByteString.CopyFromUtf8(s);

    /// <summary>A file of <paramref name="size"/> random bytes written as a client does: blocks first, then the slice.</summary>
    private async Task<(ulong Index, List<string> Keys)> WriteFileAsync(ulong parent, string name, int size, Random rng)
    {
        var node = await _client.MknodAsync(new MknodRequest { Cred = Root, Parent = parent, Name = N(name), Mode = PosixMode.Regular | 0x1A4 });
        Assert.Equal(0, node.Errno);
        var ids = await _client.NewSliceIdsAsync(new NewSliceIdsRequest { Cred = Root, Count = 1 });
        var keys = new List<string>();
        foreach (var b in BlockLayout.Blocks(size, 1 << 16))
        {
            var data = new byte[b.Size];
            rng.NextBytes(data);
            var key = BlockLayout.Key("vol", ids.FirstId, b.Index, b.Size);
            await _from.PutAsync(key, data);
            keys.Add(key);
        }
        var w = await _client.WriteSliceAsync(new WriteSliceRequest
        {
            Cred = Root, Inode = node.Attr.Inode, Slice = new Slice { Id = ids.FirstId, Size = (uint)size, Length = (uint)size },
        });
        Assert.Equal(0, w.Errno);
        return (w.Index, keys);
    }

    private async Task<(int Code, string Out, string Err)> CliAsync(params string[] args)
    {
        var o = new StringWriter();
        var e = new StringWriter();
        var code = await Program.RunAsync(args, new MirrorCliContext(o, e));
        output.WriteLine($"$ mirrorfs-mirror {string.Join(' ', args)}\n{o}{e}(exit {code})");
        return (code, o.ToString(), e.ToString());
    }

    private async Task WaitCaughtUpAsync(ulong index)
    {
        var deadline = Environment.TickCount64 + WaitMs;
        while (_replicator.CopiedThrough < index)
        {
            Assert.True(Environment.TickCount64 < deadline, $"replicator copied through {_replicator.CopiedThrough}, not {index}, within {WaitMs} ms");
            await Task.Delay(50);
        }
    }

    [Fact]
    public async Task VerifyIsCleanAfterCatchUpAndListsAMissingBlock()
    {
        var seed = Environment.TickCount;
        output.WriteLine($"seed {seed}");
        var rng = new Random(seed);
        var dir = (await _client.MkdirAsync(new MkdirRequest { Cred = Root, Parent = 1, Name = N("d"), Mode = 0x1ED })).Attr.Inode;
        var keys = new List<string>();
        ulong last = 0;
        for (var i = 0; i < 12; i++)
        {
            var (index, k) = await WriteFileAsync(i % 2 == 0 ? 1 : dir, $"f{i}", rng.Next(1, 300_000), rng);
            keys.AddRange(k);
            last = index;
        }
        await WaitCaughtUpAsync(last);
        var primaryUrl = $"mirrorfs://{_primary.Address}/vol";
        var mirrorUrl = $"mirrorfs://{_mirror.Address}/vol";
        var ok = await CliAsync("verify", "--primary", primaryUrl, "--mirror", mirrorUrl, "--wait", "30s");
        Assert.Equal(0, ok.Code);
        Assert.Contains("clean", ok.Out, StringComparison.Ordinal);

        await _to.DeleteAsync(keys[3]);
        var bad = await CliAsync("verify", "--primary", primaryUrl, "--mirror", mirrorUrl, "--wait", "0s");
        Assert.Equal(1, bad.Code);
        Assert.Contains($"{keys[3]} is missing from the mirror bucket", bad.Out, StringComparison.Ordinal);
    }

    [Fact]
    public async Task StatusShowsTheMirrorAndTheReplicatorFigures()
    {
        var rng = new Random(23);
        var (index, _) = await WriteFileAsync(1, "a", 200_000, rng);
        await WaitCaughtUpAsync(index);
        var primaryUrl = $"mirrorfs://{_primary.Address}/vol";
        var mirrorUrl = $"mirrorfs://{_mirror.Address}/vol";
        var state = Path.Combine(_dir, "replicator");
        // The replicator reports its progress with each pull; the table holds both ids once it has.
        var deadline = Environment.TickCount64 + WaitMs;
        JsonElement mirror;
        while (true)
        {
            var r = await CliAsync("status", "--primary", primaryUrl, "--mirror", mirrorUrl, "--replicator", state, "--json");
            Assert.True(r.Code == 0, $"status exited {r.Code}: {r.Err}");
            var doc = JsonDocument.Parse(r.Out).RootElement;
            var mirrors = doc.GetProperty("mirrors");
            if (mirrors.GetArrayLength() == 1)
            {
                mirror = mirrors[0];
                // The replicator's figures come from its status file, saved every checkpoint interval.
                if (mirror.GetProperty("mirrorAppliedIndex").ValueKind == JsonValueKind.Number
                    && mirror.GetProperty("lagEntries").GetUInt64() == 0
                    && mirror.GetProperty("blocksCopiedThroughIndex").GetUInt64() >= index)
                {
                    break;
                }
            }
            Assert.True(Environment.TickCount64 < deadline, $"status never showed one caught-up mirror:\n{r.Out}");
            await Task.Delay(500);
        }
        Assert.Equal(RunCommand.DefaultMirrorId(_toUri)[..^RunCommand.BlocksSuffix.Length], mirror.GetProperty("mirrorId").GetString());
        Assert.True(mirror.GetProperty("blocksCopiedThroughIndex").GetUInt64() >= index);
        Assert.Equal(0, mirror.GetProperty("blocksPending").GetInt32());
        var table = await CliAsync("status", "--primary", primaryUrl, "--mirror", mirrorUrl, "--replicator", state);
        Assert.Equal(0, table.Code);
        Assert.Contains("blocks pending", table.Out, StringComparison.Ordinal);
        Assert.Contains("state following", table.Out, StringComparison.Ordinal);
    }

    [Fact]
    public async Task PromoteReportsTheIndexReachedAndTheMirrorTakesWrites()
    {
        var rng = new Random(29);
        var (index, _) = await WriteFileAsync(1, "a", 1000, rng);
        var mirrorUrl = $"mirrorfs://{_mirror.Address}/vol";
        await using var m = new RpcMetaClient(new RpcMetaClientOptions { Addresses = [_mirror.Address] });
        var deadline = Environment.TickCount64 + WaitMs;
        while ((await m.ListMirrorsAsync(new ListMirrorsRequest())).Follow.AppliedIndex < index)
        {
            Assert.True(Environment.TickCount64 < deadline, "mirror never applied the write");
            await Task.Delay(100);
        }
        var r = await CliAsync("promote", "--mirror", mirrorUrl);
        Assert.Equal(0, r.Code);
        Assert.Contains("it had applied primary index", r.Out, StringComparison.Ordinal);
        var mk = await m.MkdirAsync(new MkdirRequest { Cred = Root, Parent = 1, Name = N("after"), Mode = 0x1ED });
        Assert.Equal(0, mk.Errno);
        var again = await CliAsync("promote", "--mirror", mirrorUrl);
        Assert.Equal(1, again.Code);
        Assert.Contains("not a mirror", again.Err, StringComparison.Ordinal);
    }
}
