// Clients in both regions: a primary and a mirror metaserver (real hosts, real RPC), a bucket per region, MirrorVfs
// clients on each side; read-your-writes and monotonic reads checked over a seeded concurrent history.
using System.Buffers.Binary;
using MirrorFS.Client.Vfs;
using MirrorFS.Core.Meta;
using MirrorFS.Core.Storage;
using MirrorFS.MetaServer.Hosting;
using MirrorFS.MetaServer.Mirror;
using Xunit.Abstractions;
using static MirrorFS.Client.Tests.VfsTests.VfsFixture;

namespace MirrorFS.Client.Tests.MirrorTests;

/// <summary>The two regions: metaservers, buckets, and a stand-in for the replicator (copies blocks on demand).</summary>
internal sealed class Regions : IAsyncDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "mirrorfs-regions-" + Guid.NewGuid().ToString("N"));
    private readonly List<IAsyncDisposable> _owned = [];

    public MetaServerHost Primary { get; private set; } = null!;

    public MetaServerHost Mirror { get; private set; } = null!;

    public MemoryObjectStore PrimaryBucket { get; } = new();

    public MemoryObjectStore MirrorBucket { get; } = new();

    public static async Task<Regions> StartAsync()
    {
        var r = new Regions();
        r.Primary = await MetaServerHost.StartAsync(new MetaServerOptions { DataDirectory = Path.Combine(r._dir, "p") });
        await using (var p = new RpcMetaClient(new RpcMetaClientOptions { Addresses = [r.Primary.Address] }))
        {
            var f = await p.FormatAsync(new FormatRequest
            {
                Cred = new Credentials(),
                Volume = new Volume { Name = VolumeName, Storage = "mem://primary", BlockSize = BlockSize },
                RootMode = 0x1FF,
            });
            Assert.Equal(0, f.Errno);
        }
        r.Mirror = await MetaServerHost.StartAsync(new MetaServerOptions
        {
            DataDirectory = Path.Combine(r._dir, "m"),
            Mirror = new MirrorHostOptions
            {
                Primary = PrimaryUrl.Parse($"mirrorfs://{r.Primary.Address}/{VolumeName}"),
                MirrorStorage = "mem://mirror",
                RenewMs = 500,
            },
        });
        return r;
    }

    private static VfsOptions Options => new() { MemoryCacheBytesMax = 8 << 20, PrefetchBlocks = 0 };

    public async Task<MirrorVfs> PrimaryClientAsync()
    {
        var meta = new RpcMetaClient(new RpcMetaClientOptions { Addresses = [Primary.Address] });
        _owned.Add(meta);
        var vfs = await MirrorVfs.CreateAsync(meta, PrimaryBucket, Options);
        _owned.Add(vfs);
        return vfs;
    }

    public async Task<(MirrorVfs Vfs, MirrorMetaClient Meta, MirrorObjectStore Store)> MirrorClientAsync()
    {
        var meta = new MirrorMetaClient(
            new RpcMetaClient(new RpcMetaClientOptions { Addresses = [Mirror.Address] }),
            new RpcMetaClient(new RpcMetaClientOptions { Addresses = [Primary.Address] }));
        _owned.Add(meta);
        var store = new MirrorObjectStore(MirrorBucket, PrimaryBucket, writeNear: false);
        var vfs = await MirrorVfs.CreateAsync(meta, store, Options);
        _owned.Add(vfs);
        return (vfs, meta, store);
    }

    /// <summary>Copies every block the mirror bucket lacks (what the replicator does, once).</summary>
    public async Task<int> ReplicateAsync()
    {
        var copied = 0;
        await foreach (var o in PrimaryBucket.ListAllAsync(""))
        {
            if (await MirrorBucket.HeadAsync(o.Key) is null)
            {
                await MirrorBucket.PutAsync(o.Key, (await PrimaryBucket.GetAsync(o.Key))!);
                copied++;
            }
        }
        return copied;
    }

    public async ValueTask DisposeAsync()
    {
        for (var i = _owned.Count - 1; i >= 0; i--)
        {
            await _owned[i].DisposeAsync();
        }
        if (Mirror is not null)
        {
            await Mirror.DisposeAsync();
        }
        if (Primary is not null)
        {
            await Primary.DisposeAsync();
        }
        try
        {
            Directory.Delete(_dir, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}

public sealed class MirrorClientTests(ITestOutputHelper output)
{
    [Fact]
    public async Task A_mirror_client_writes_a_file_and_reads_it_back_at_once()
    {
        await using var regions = await Regions.StartAsync();
        var (vfs, meta, store) = await regions.MirrorClientAsync();
        Assert.Equal(VolumeName, vfs.Volume.Name);

        var data = Pattern((3 * BlockSize) + 1234, 7);
        var (ino, fh) = await CreateAsync(vfs, "mine");
        await WriteAsync(vfs, ino, fh, 0, data);
        Assert.Equal(0, await vfs.ReleaseAsync(Ctx, ino, fh));
        // The data went to the primary bucket, the metadata to the primary.
        Assert.NotEmpty((await regions.PrimaryBucket.ListAsync("")).Objects);
        Assert.Empty((await regions.MirrorBucket.ListAsync("")).Objects);

        // At once: lookup, attributes and bytes through the mirror (waiting for it as needed), blocks from afar.
        var mirrorReadsBefore = meta.MirrorReads;
        var found = await vfs.LookupAsync(Ctx, 1, Name("mine"));
        Assert.Equal(0, found.Errno);
        Assert.Equal((ulong)data.Length, found.Value!.Attr.Size);
        var fh2 = await OpenAsync(vfs, ino, OpenFlags.ReadOnly);
        Assert.Equal(data, await ReadAsync(vfs, ino, fh2, 0, data.Length));
        Assert.Equal(0, await vfs.ReleaseAsync(Ctx, ino, fh2));
        Assert.True(meta.MirrorReads > mirrorReadsBefore, "no read was served by the mirror");
        output.WriteLine($"mirror reads {meta.MirrorReads}, primary reads {meta.PrimaryReads}");
        _ = store;

        // Another mirror client (no cached blocks) reads blocks the mirror bucket lacks from the primary bucket.
        var (cold, coldMeta, coldStore) = await regions.MirrorClientAsync();
        coldMeta.NoteIndex(meta.HighestIndex); // as if it had seen the writer's state (e.g. told by it)
        var fhCold = await OpenAsync(cold, ino, OpenFlags.ReadOnly);
        Assert.Equal(data, await ReadAsync(cold, ino, fhCold, 0, data.Length));
        Assert.True(coldStore.FarReads > 0, "blocks missing here were not read from the primary bucket");

        // Once the blocks are replicated, another mirror client reads them here.
        Assert.True(await regions.ReplicateAsync() > 0);
        var (other, _, otherStore) = await regions.MirrorClientAsync();
        var seen = await other.LookupAsync(Ctx, 1, Name("mine"));
        Assert.Equal(0, seen.Errno);
        var fh3 = await OpenAsync(other, ino, OpenFlags.ReadOnly);
        Assert.Equal(data, await ReadAsync(other, ino, fh3, 0, data.Length));
        Assert.Equal(0L, otherStore.FarReads);

        // The primary region sees the mirror client's file too.
        var primaryClient = await regions.PrimaryClientAsync();
        var fromPrimary = await primaryClient.LookupAsync(Ctx, 1, Name("mine"));
        Assert.Equal(0, fromPrimary.Errno);
    }

    private sealed record Observation(int Client, int Step, int File, long Value, bool OwnWrite);

    [Fact]
    public async Task Concurrent_clients_in_both_regions_read_their_writes_and_never_go_back_in_time()
    {
        const int seed = 7301;
        const int clients = 4; // 0, 1 in the primary region; 2, 3 in the mirror region
        const int steps = 60;
        output.WriteLine($"seed {seed}");
        await using var regions = await Regions.StartAsync();
        var vfs = new MirrorVfs[clients];
        var mirrorMetas = new List<MirrorMetaClient>();
        for (var c = 0; c < clients; c++)
        {
            if (c < 2)
            {
                vfs[c] = await regions.PrimaryClientAsync();
                continue;
            }
            var (v, m, _) = await regions.MirrorClientAsync();
            vfs[c] = v;
            mirrorMetas.Add(m);
        }
        // Each client owns one file, holding a counter only it increases.
        var inodes = new ulong[clients];
        for (var c = 0; c < clients; c++)
        {
            var (ino, fh) = await CreateAsync(vfs[c], $"f{c}");
            await WriteAsync(vfs[c], ino, fh, 0, Content(0));
            Assert.Equal(0, await vfs[c].ReleaseAsync(Ctx, ino, fh));
            inodes[c] = ino;
        }
        using var stop = new CancellationTokenSource();
        var replicator = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                await regions.ReplicateAsync();
                await Task.Delay(50);
            }
        });

        var logs = new List<Observation>[clients];
        var runs = Enumerable.Range(0, clients).Select(c => Task.Run(async () =>
        {
            var rng = new Random(seed + c);
            var log = logs[c] = [];
            long counter = 0;
            for (var step = 0; step < steps; step++)
            {
                if (rng.Next(3) == 0)
                {
                    counter++;
                    var fh = await OpenAsync(vfs[c], inodes[c], OpenFlags.ReadWrite);
                    await WriteAsync(vfs[c], inodes[c], fh, 0, Content(counter));
                    Assert.Equal(0, await vfs[c].ReleaseAsync(Ctx, inodes[c], fh));
                    log.Add(new Observation(c, step, c, counter, OwnWrite: true));
                }
                else
                {
                    var file = rng.Next(2) == 0 ? c : rng.Next(clients);
                    var fh = await OpenAsync(vfs[c], inodes[file], OpenFlags.ReadOnly);
                    var bytes = await ReadAsync(vfs[c], inodes[file], fh, 0, 8);
                    Assert.Equal(0, await vfs[c].ReleaseAsync(Ctx, inodes[file], fh));
                    log.Add(new Observation(c, step, file, bytes.Length < 8 ? -1 : BinaryPrimitives.ReadInt64LittleEndian(bytes), OwnWrite: false));
                }
            }
        })).ToArray();
        await Task.WhenAll(runs);
        await stop.CancelAsync();
        await replicator;

        var violations = Check(logs);
        foreach (var v in violations.Take(20))
        {
            output.WriteLine(v);
        }
        var reads = logs.Sum(l => l.Count(o => !o.OwnWrite));
        output.WriteLine($"{reads} reads, {logs.Sum(l => l.Count) - reads} writes, {violations.Count} violations");
        Assert.True(reads > steps, "too few reads to check anything");
        output.WriteLine($"mirror clients: {mirrorMetas.Sum(m => m.MirrorReads)} reads served by the mirror, {mirrorMetas.Sum(m => m.PrimaryReads)} by the primary");
        Assert.All(mirrorMetas, m => Assert.True(m.MirrorReads > 0, "a mirror client never read from the mirror"));
        Assert.Empty(violations);
    }

    private static byte[] Content(long counter)
    {
        var b = new byte[4096];
        BinaryPrimitives.WriteInt64LittleEndian(b, counter);
        return b;
    }

    /// <summary>Read-your-writes: a client's read of its own file shows at least its last write. Monotonic reads: the
    /// values a client sees of one file never decrease (a file's counter only grows, by its one writer).</summary>
    private static List<string> Check(List<Observation>[] logs)
    {
        var violations = new List<string>();
        foreach (var log in logs)
        {
            var seen = new Dictionary<int, long>();
            foreach (var o in log)
            {
                var last = seen.GetValueOrDefault(o.File, -1);
                if (o.Value < last)
                {
                    violations.Add($"client {o.Client} step {o.Step}: file f{o.File} went back from {last} to {o.Value}" +
                                   (o.OwnWrite ? "" : o.File == o.Client ? " (its own write)" : ""));
                }
                seen[o.File] = Math.Max(last, o.Value);
            }
        }
        return violations;
    }
}
