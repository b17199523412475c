// A primary and a mirror metaserver (single-node hosts on disk, real RPC): shipping, bootstrap, refusal, reads, promotion.
using MirrorFS.Core.Meta;
using MirrorFS.Core.Rpc;
using MirrorFS.MetaServer.Engine;
using MirrorFS.MetaServer.Hosting;
using MirrorFS.MetaServer.Mirror;
using MirrorFS.MetaServer.Tests.Storage;
using Xunit.Abstractions;

namespace MirrorFS.MetaServer.Tests.Mirror;

public sealed class MirrorReplicationTests(ITestOutputHelper output) : IAsyncLifetime
{
    private readonly TempDir _dir = new();
    private readonly List<IAsyncDisposable> _owned = [];

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        for (var i = _owned.Count - 1; i >= 0; i--)
        {
            await _owned[i].DisposeAsync();
        }
        _dir.Dispose();
    }

    private T Own<T>(T d) where T : IAsyncDisposable
    {
        _owned.Add(d);
        return d;
    }

    private Task<MetaServerHost> StartPrimaryAsync(string name = "primary", ulong snapshotEvery = 100_000, long segmentBytes = 64L << 20, int snapshotsKept = 2) =>
        MetaServerHost.StartAsync(new MetaServerOptions
        {
            DataDirectory = _dir.Sub(name),
            SnapshotEveryEntries = snapshotEvery,
            WalSegmentBytesMax = segmentBytes,
            SnapshotsKept = snapshotsKept,
        });

    private async Task<MetaServerHost> StartMirrorAsync(string primaryAddress, string name = "mirror", int readWaitMs = 2_000, string volume = "vol")
    {
        var host = await MetaServerHost.StartAsync(new MetaServerOptions
        {
            DataDirectory = _dir.Sub(name),
            Mirror = new MirrorHostOptions
            {
                Primary = PrimaryUrl.Parse($"mirrorfs://{primaryAddress}/{volume}"),
                MirrorStorage = "mem://mirror-bucket",
                ReadWaitMs = readWaitMs,
                RenewMs = 500,
            },
        });
        return Own(host);
    }

    private static RpcMetaClient Client(string address, int failoverMs = 15_000) =>
        new(new RpcMetaClientOptions { Addresses = [address], FailoverTimeoutMs = failoverMs });

    [Fact]
    public async Task Entries_stream_and_the_mirror_state_equals_the_primary_byte_for_byte()
    {
        const int seed = 6101;
        output.WriteLine($"seed {seed}");
        var primary = Own(await StartPrimaryAsync());
        await using var p = Client(primary.Address);
        await MirrorWorkload.FormatAsync(p);
        await MirrorWorkload.RunAsync(p, seed, 150); // before the mirror exists
        var mirror = await StartMirrorAsync(primary.Address);
        var writers = Enumerable.Range(0, 3).Select(i => MirrorWorkload.RunAsync(p, seed + 1 + i, 150)).ToArray(); // while it follows
        await Task.WhenAll(writers);

        var (index, pb, mb) = await MirrorWorkload.SameIndexSnapshotsAsync(primary.Service.State, mirror.Service.State);
        output.WriteLine($"compared at primary index {index}: {pb.Length} bytes");
        Assert.True(index > 600, $"only {index} entries shipped");
        Assert.Equal(pb, mb);

        // Both ends see the mirror's progress; the mirror describes itself.
        await using var m = Client(mirror.Address);
        await MirrorWorkload.EventuallyAsync(() => primary.Changelog.LiveMirrors().Any(x => x.AppliedIndex >= index), "the primary to hear the mirror's progress");
        var listed = await primary.Service.ListMirrorsAsync(new ListMirrorsRequest());
        Assert.Single(listed.Mirrors);
        Assert.True(listed.Mirrors[0].Connected);
        Assert.False(listed.IsMirror);
        var status = await m.ListMirrorsAsync(new ListMirrorsRequest());
        Assert.True(status.IsMirror);
        Assert.Equal($"mirrorfs://{primary.Address}/vol", status.MirrorOf);
        Assert.Equal("following", status.Follow.State);
        Assert.True(status.Follow.AppliedIndex >= index);
        Assert.Equal(0u, status.Follow.Bootstraps);
        var volume = (await m.GetVolumeAsync(new GetVolumeRequest())).Volume;
        Assert.Equal("mem://primary", volume.Storage);
        Assert.Equal("mem://mirror-bucket", volume.MirrorStorage);
        Assert.Equal($"mirrorfs://{primary.Address}/vol", volume.MirrorOf);
        var primaryVolume = (await p.GetVolumeAsync(new GetVolumeRequest())).Volume;
        Assert.Equal("", primaryVolume.MirrorOf);
    }

    [Fact]
    public async Task A_mirror_behind_the_compacted_log_bootstraps_from_the_snapshot_and_then_streams()
    {
        const int seed = 6201;
        output.WriteLine($"seed {seed}");
        var primary = Own(await StartPrimaryAsync(snapshotEvery: 100, segmentBytes: 8 << 10, snapshotsKept: 1));
        await using var p = Client(primary.Address);
        await MirrorWorkload.FormatAsync(p);
        await MirrorWorkload.RunAsync(p, seed, 600);
        await primary.Log.SnapshotAsync();
        Assert.True(primary.Log.Wal.FirstIndex > 2, $"the primary's WAL was not compacted (first index {primary.Log.Wal.FirstIndex})");

        var mirror = await StartMirrorAsync(primary.Address);
        var (index, pb, mb) = await MirrorWorkload.SameIndexSnapshotsAsync(primary.Service.State, mirror.Service.State);
        Assert.Equal(pb, mb);
        // The follower counts the bootstrap just after its last piece applies, so the states can match a moment
        // before the counter moves.
        var counted = Environment.TickCount64 + 10_000;
        while (mirror.Follower!.Status().Bootstraps == 0 && Environment.TickCount64 < counted)
        {
            await Task.Delay(10);
        }
        Assert.True(mirror.Follower!.Status().Bootstraps >= 1, "the mirror did not bootstrap");

        // After the bootstrap, new entries stream.
        await MirrorWorkload.RunAsync(p, seed + 1, 200);
        var (index2, pb2, mb2) = await MirrorWorkload.SameIndexSnapshotsAsync(primary.Service.State, mirror.Service.State);
        Assert.True(index2 > index);
        Assert.Equal(pb2, mb2);

        // The mirror's own snapshot (with its role and log position) survives a restart of the mirror.
        await mirror.Log.SnapshotAsync();
        _owned.Remove(mirror);
        await mirror.DisposeAsync();
        var again = await StartMirrorAsync(primary.Address);
        Assert.Equal(MirrorRole.Mirror, again.Service.State.Role);
        Assert.True(again.Service.State.LogicalIndex >= index2);
        var (_, pb3, mb3) = await MirrorWorkload.SameIndexSnapshotsAsync(primary.Service.State, again.Service.State);
        Assert.Equal(pb3, mb3);
    }

    [Fact]
    public async Task A_write_sent_to_the_mirror_is_refused_naming_the_primary()
    {
        var primary = Own(await StartPrimaryAsync());
        await using var p = Client(primary.Address);
        await MirrorWorkload.FormatAsync(p);
        var mirror = await StartMirrorAsync(primary.Address);
        await using var m = Client(mirror.Address, failoverMs: 2_000);
        var e = await Assert.ThrowsAsync<RpcException>(() =>
            m.MkdirAsync(new MkdirRequest { Cred = MirrorWorkload.Root, Parent = 1, Name = Google.Protobuf.ByteString.CopyFromUtf8("x"), Mode = 0x1ED }));
        Assert.Equal(StatusCode.FailedPrecondition, e.Status);
        Assert.Equal($"mirrorfs://{primary.Address}/vol", e.Trailers.Get(MetaRpc.PrimaryTrailer));
        Assert.Contains(primary.Address, e.Message, StringComparison.Ordinal);
        var s = await Assert.ThrowsAsync<RpcException>(() => m.NewSessionAsync(new NewSessionRequest { Cred = MirrorWorkload.Root }));
        Assert.Equal(StatusCode.FailedPrecondition, s.Status);
        // The refused calls changed nothing.
        var (_, pb, mb) = await MirrorWorkload.SameIndexSnapshotsAsync(primary.Service.State, mirror.Service.State);
        Assert.Equal(pb, mb);
    }

    [Fact]
    public async Task A_mirror_read_waits_for_the_callers_index_and_answers_behind_when_it_cannot_reach_it()
    {
        var primary = Own(await StartPrimaryAsync());
        await using var p = Client(primary.Address);
        await MirrorWorkload.FormatAsync(p);
        var mirror = await StartMirrorAsync(primary.Address, readWaitMs: 300);
        await using var m = Client(mirror.Address);
        await MirrorWorkload.EventuallyAsync(() => mirror.Service.State.LogicalIndex >= primary.Service.State.LogicalIndex, "the mirror to catch up");

        // A write on the primary, then at once a read on the mirror at the write's index: it sees the write.
        var s = await p.NewSessionAsync(new NewSessionRequest { Cred = MirrorWorkload.Root });
        for (var i = 0; i < 20; i++)
        {
            var made = await p.MkdirAsync(new MkdirRequest
            {
                SessionId = s.SessionId, Seq = (ulong)i + 1, Cred = MirrorWorkload.Root, Parent = 1,
                Name = Google.Protobuf.ByteString.CopyFromUtf8($"d{i}"), Mode = 0x1ED,
            });
            Assert.Equal(0, made.Errno);
            LookupReply seen;
            using (MetaCallContext.WithMinIndex(made.Index))
            {
                seen = await m.LookupAsync(new LookupRequest { Parent = 1, Name = Google.Protobuf.ByteString.CopyFromUtf8($"d{i}") });
            }
            Assert.Equal(0, seen.Errno);
            Assert.True(seen.Index >= made.Index, $"mirror reply index {seen.Index} is before the write's {made.Index}");
            Assert.Equal(made.Attr.Inode, seen.Attr.Inode);
        }

        // An index the primary never reached: the mirror waits its bounded time and says it is behind (no failover).
        var wanted = primary.Service.State.LogicalIndex + 1_000;
        var started = Environment.TickCount64;
        RpcException behind;
        using (MetaCallContext.WithMinIndex(wanted))
        {
            behind = await Assert.ThrowsAsync<RpcException>(() => m.GetAttrAsync(new GetAttrRequest { Inode = 1 }));
        }
        output.WriteLine($"behind after {Environment.TickCount64 - started} ms: {behind.Message}");
        Assert.Equal(StatusCode.Unavailable, behind.Status);
        Assert.EndsWith($"/{wanted}", behind.Trailers.Get(MetaRpc.MirrorBehindTrailer));

        // Without a minimum, the mirror answers from what it has.
        Assert.Equal(0, (await m.GetAttrAsync(new GetAttrRequest { Inode = 1 })).Errno);
    }

    [Fact]
    public async Task Mirror_progress_is_recorded_durably_and_recording_it_stops_when_idle()
    {
        var primary = await StartPrimaryAsync();
        await using (var p = Client(primary.Address))
        {
            await MirrorWorkload.FormatAsync(p);
            await MirrorWorkload.RunAsync(p, 6301, 100);
        }
        var mirror = await StartMirrorAsync(primary.Address);
        var target = primary.Service.State.LogicalIndex;
        await MirrorWorkload.EventuallyAsync(() => primary.Service.State.MinMirrorApplied() is var min && min != ulong.MaxValue && min >= target,
            "the primary to record the mirror's progress");
        Assert.True(primary.Service.MirrorGate.MinMirrorApplied >= target);

        // Idle: progress records stop (each record is an entry the mirror would report again, forever, otherwise).
        var stable = false;
        for (var round = 0; round < 20 && !stable; round++)
        {
            var before = primary.Service.State.LogicalIndex;
            await Task.Delay(2_500);
            stable = primary.Service.State.LogicalIndex == before;
        }
        Assert.True(stable, "the primary kept writing mirror progress records while nothing changed");

        // Durable: a restarted primary still knows the mirror (a new leader must not delete blocks it needs).
        var recorded = primary.Service.State.MinMirrorApplied();
        await primary.Log.SnapshotAsync();
        await mirror.DisposeAsync();
        _owned.Remove(mirror);
        await primary.DisposeAsync();
        var restarted = Own(await StartPrimaryAsync());
        Assert.Equal(recorded, restarted.Service.State.MinMirrorApplied());
        var listed = await restarted.Service.ListMirrorsAsync(new ListMirrorsRequest());
        Assert.Single(listed.Mirrors);
        Assert.False(listed.Mirrors[0].Connected);
    }

    [Fact]
    public async Task Promote_turns_the_mirror_into_a_primary_that_numbers_on_from_the_index_it_reached()
    {
        var primary = await StartPrimaryAsync();
        ulong reached;
        await using (var p = Client(primary.Address))
        {
            await MirrorWorkload.FormatAsync(p);
            await MirrorWorkload.RunAsync(p, 6401, 120);
        }
        var mirror = await StartMirrorAsync(primary.Address);
        await MirrorWorkload.EventuallyAsync(() => mirror.Service.State.LogicalIndex >= primary.Service.State.LogicalIndex, "the mirror to catch up");
        reached = mirror.Service.State.LogicalIndex;
        await primary.DisposeAsync(); // the primary region is lost

        await using var m = Client(mirror.Address);
        var promoted = await m.PromoteAsync(new PromoteRequest());
        Assert.Equal(0, promoted.Errno);
        Assert.Equal(reached, promoted.PrimaryIndex);
        var again = await m.PromoteAsync(new PromoteRequest());
        Assert.Equal(Errno.EINVAL, again.Errno); // no longer a mirror

        var s = await m.NewSessionAsync(new NewSessionRequest { Cred = MirrorWorkload.Root });
        Assert.Equal(0, s.Errno);
        Assert.True(s.Index > reached, $"first write after promotion got index {s.Index}, not after {reached}");
        var md = await m.MkdirAsync(new MkdirRequest { SessionId = s.SessionId, Seq = 1, Cred = MirrorWorkload.Root, Parent = 1, Name = Google.Protobuf.ByteString.CopyFromUtf8("after"), Mode = 0x1ED });
        Assert.Equal(0, md.Errno);
        Assert.Equal(s.Index + 1, md.Index);
        var volume = (await m.GetVolumeAsync(new GetVolumeRequest())).Volume;
        Assert.Equal("mem://mirror-bucket", volume.Storage);
        Assert.Equal("mem://primary", volume.FallbackStorage);
        Assert.Equal("", volume.MirrorOf);
        var status = await m.ListMirrorsAsync(new ListMirrorsRequest());
        Assert.False(status.IsMirror);
        Assert.Equal("promoted", status.Follow.State);
        Assert.Equal(reached, status.Follow.PromotedIndex);

        // A restart (still started with --mirror-of) stays promoted and keeps the numbering.
        await mirror.Log.SnapshotAsync();
        _owned.Remove(mirror);
        await mirror.DisposeAsync();
        var restarted = await StartMirrorAsync("127.0.0.1:1", name: "mirror");
        Assert.Equal(MirrorRole.Promoted, restarted.Service.State.Role);
        Assert.False(restarted.Service.IsMirror);
        await using var r = Client(restarted.Address);
        var attr = await r.GetAttrAsync(new GetAttrRequest { Inode = md.Attr.Inode });
        Assert.Equal(0, attr.Errno);
        Assert.Equal(md.Index, attr.Index);
    }

    [Fact]
    public async Task A_mirror_pointed_at_another_volume_mirrors_nothing_and_says_why()
    {
        var primary = Own(await StartPrimaryAsync());
        await using var p = Client(primary.Address);
        await MirrorWorkload.FormatAsync(p);
        var mirror = await StartMirrorAsync(primary.Address, volume: "other");
        await MirrorWorkload.EventuallyAsync(() => mirror.Follower!.Status().LastError.Contains("serves volume vol, not other", StringComparison.Ordinal),
            "the follower to report the wrong volume");
        Assert.Equal(0UL, mirror.Service.State.LogicalIndex);
        Assert.True(mirror.Service.IsMirror); // still refuses writes
    }
}
