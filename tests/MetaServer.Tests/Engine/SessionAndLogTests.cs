// Sessions, exactly-once replies, prepared-id conflicts, determinism across replicas, and snapshots.
using Google.Protobuf;
using MirrorFS.Core.Meta;
using MirrorFS.MetaServer.Consensus;
using MirrorFS.MetaServer.Engine;
using static MirrorFS.MetaServer.Tests.Engine.MetaHarness;

namespace MirrorFS.MetaServer.Tests.Engine;

public sealed class SessionAndLogTests
{
    [Fact]
    public async Task Retry_of_same_session_and_seq_returns_first_reply_and_changes_nothing()
    {
        using var h = await StartAsync();
        var mkdir = h.Stamp(new MkdirRequest { Parent = Root, Name = N("d"), Mode = 0x1ED });
        var first = await h.Svc.MkdirAsync(mkdir);
        h.Tick();
        var retry = await h.Svc.MkdirAsync(mkdir);
        Assert.Equal(first, retry);
        Assert.Equal(0, retry.Errno);
        Assert.Equal(3u, (await h.Attr(Root)).Nlink);
        Assert.Single(await h.List(Root));

        await h.Mknod(Root, "f");
        var unlinkReq = h.Stamp(new UnlinkRequest { Parent = Root, Name = N("f") });
        var u1 = await h.Svc.UnlinkAsync(unlinkReq.Clone());
        Assert.Equal(0, u1.Errno);
        var u2 = await h.Svc.UnlinkAsync(unlinkReq.Clone());
        Assert.Equal(u1, u2); // not ENOENT: the first reply again

        var ids = h.Stamp(new NewSliceIdsRequest { Count = 3 });
        var i1 = await h.Svc.NewSliceIdsAsync(ids);
        var i2 = await h.Svc.NewSliceIdsAsync(ids);
        Assert.Equal(i1.FirstId, i2.FirstId);
        Assert.True(await h.NewSliceIds() >= i1.FirstId + 3); // the retry's own reservation is wasted, never reused

        var create = h.Stamp(new CreateRequest { Parent = Root, Name = N("c"), Mode = 0x1A4 });
        var c1 = await h.Svc.CreateAsync(create);
        Assert.Equal(c1, await h.Svc.CreateAsync(create));
        await h.Unlink(Root, "c");
        Assert.Equal(0, (await h.Release(c1.Attr.Inode)).Errno); // opened once, not twice
        Assert.Null(await h.GetAttr(c1.Attr.Inode));

        // Once acknowledged, a seq is forgotten; a late duplicate gets EALREADY and changes nothing.
        await h.Mknod(Root, "later");
        var stale = await h.Svc.MkdirAsync(mkdir);
        Assert.Equal(Errno.EALREADY, stale.Errno);
        Assert.Equal(3u, (await h.Attr(Root)).Nlink);
    }

    [Fact]
    public async Task Replies_are_remembered_per_session_while_unacknowledged()
    {
        using var h = await StartAsync();
        var other = await h.NewSessionAsync("other");
        var a = new MkdirRequest { SessionId = h.Session, Seq = 1000, Parent = Root, Name = N("a"), Mode = 0x1ED };
        var b = new MkdirRequest { SessionId = other, Seq = 1000, Parent = Root, Name = N("b"), Mode = 0x1ED };
        var ra = await h.Svc.MkdirAsync(a);
        var rb = await h.Svc.MkdirAsync(b);
        Assert.NotEqual(ra.Attr.Inode, rb.Attr.Inode); // same seq, different sessions: both applied
        // Out-of-order seqs in flight are each applied once.
        var c = new MkdirRequest { SessionId = h.Session, Seq = 999, Parent = Root, Name = N("c"), Mode = 0x1ED };
        var rc = await h.Svc.MkdirAsync(c);
        Assert.Equal(0, rc.Errno);
        Assert.Equal(ra, await h.Svc.MkdirAsync(a));
        Assert.Equal(rc, await h.Svc.MkdirAsync(c));
        Assert.Equal(3, (await h.List(Root)).Count);
    }

    [Fact]
    public async Task Unknown_sessions_and_session_lifecycle()
    {
        using var h = await StartAsync();
        var bogus = new MkdirRequest { SessionId = 9999, Seq = 1, Parent = Root, Name = N("x") };
        Assert.Equal(Errno.ENOTCONN, (await h.Svc.MkdirAsync(bogus)).Errno);
        Assert.Equal(Errno.ENOENT, (await h.Lookup(Root, "x")).Errno);
        Assert.Equal(Errno.ENOTCONN, (await h.Svc.HeartbeatAsync(new HeartbeatRequest { SessionId = 9999 })).Errno);
        Assert.Equal(Errno.EINVAL, (await h.Svc.HeartbeatAsync(new HeartbeatRequest())).Errno);
        Assert.Equal(0, (await h.Svc.HeartbeatAsync(new HeartbeatRequest { SessionId = h.Session })).Errno);
        Assert.Equal(0, (await h.Svc.CloseSessionAsync(new CloseSessionRequest { SessionId = 9999 })).Errno);

        var s2 = await h.NewSessionAsync("second");
        Assert.Equal(h.Session + 1, s2);
        Assert.Equal(2, h.State.Usage().Sessions);
        Assert.Equal(0, (await h.Svc.CloseSessionAsync(new CloseSessionRequest { SessionId = s2 })).Errno);
        Assert.Equal(1, h.State.Usage().Sessions);
        Assert.Equal(Errno.ENOTCONN, (await h.Svc.HeartbeatAsync(new HeartbeatRequest { SessionId = s2 })).Errno);
    }

    [Fact]
    public async Task Expired_sessions_release_their_open_files()
    {
        using var h = await StartAsync();
        var idle = h.Session;
        var f = (await h.Create(Root, "f")).Attr.Inode;
        var (id, _) = await h.WriteNew(f, 0, 0, 100);
        await h.Unlink(Root, "f");
        var live = await h.NewSessionAsync("live");

        var before = h.Log.CommitIndex;
        var none = await h.Svc.ExpireSessionsAsync(TimeSpan.FromSeconds(30));
        Assert.Empty(none.Expired);
        Assert.Equal(before, h.Log.CommitIndex); // nothing idle: nothing proposed

        h.Clock.Ns += 20_000_000_000;
        Assert.Equal(0, (await h.Svc.HeartbeatAsync(new HeartbeatRequest { SessionId = live })).Errno);
        h.Clock.Ns += 20_000_000_000;
        var svc = new MetaService(h.State, h.Log, h.Clock) { SessionTimeout = TimeSpan.FromSeconds(30) };
        var expired = await svc.ExpireSessionsAsync();
        Assert.Equal(new[] { idle }, expired.Expired);
        Assert.Null(await h.GetAttr(f));
        Assert.Contains(h.State.PendingDeletes(), p => p.Id == id);
        Assert.Equal(0, h.State.Usage().OpenInodes);
        Assert.Equal(Errno.ENOTCONN, (await h.Svc.HeartbeatAsync(new HeartbeatRequest { SessionId = idle })).Errno);
        Assert.Equal(Errno.ENOTCONN, (await h.Mkdir(Root, "x")).Errno);
        Assert.Equal(0, (await h.Svc.HeartbeatAsync(new HeartbeatRequest { SessionId = live })).Errno);
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => h.Svc.ExpireSessionsAsync(TimeSpan.Zero));
    }

    [Fact]
    public async Task Times_are_strictly_increasing_even_when_the_clock_goes_back()
    {
        using var h = await StartAsync();
        var a = await h.Mkdir(Root, "a");
        h.Clock.Ns -= 10_000_000_000;
        var b = await h.Svc.MkdirAsync(new MkdirRequest { Parent = Root, Name = N("b") });
        Assert.True(b.Attr.CtimeNs > a.Attr.CtimeNs);
    }

    /// <summary>An "old leader" entry lands between this leader's prepare and its own entry.</summary>
    private sealed class InterposingLog(IStateMachine machine, Func<byte[]?> foreign) : IReplicatedLog
    {
        private readonly InMemoryLog _inner = new(machine);

        public ulong CommitIndex => _inner.CommitIndex;

        public ulong AppliedIndex => _inner.AppliedIndex;

        public async Task<(ulong Index, byte[] Reply)> ProposeAsync(ReadOnlyMemory<byte> command, CancellationToken ct = default)
        {
            if (foreign() is { } extra)
            {
                await _inner.ProposeAsync(extra, ct);
            }
            return await _inner.ProposeAsync(command, ct);
        }

        public Task<ulong> ReadBarrierAsync(CancellationToken ct = default) => _inner.ReadBarrierAsync(ct);

        public ValueTask DisposeAsync() => _inner.DisposeAsync();
    }

    [Fact]
    public async Task Stale_prepared_ids_are_replaced_by_the_next_free_ones()
    {
        byte[]? inject = null;
        using var h = await StartAsync(logFactory: sm => new InterposingLog(sm, () => Interlocked.Exchange(ref inject, null)));
        var (nextInode, nextSlice, _, _) = h.State.Counters();

        // Directly: an entry whose prepared inode number was already handed out gets the next free one.
        var stale = new Command { NowNs = StartNs, NewInode = 1, Mkdir = new MkdirRequest { Parent = Root, Name = N("stale") } };
        var reply = MkdirReply.Parser.ParseFrom((await h.Log.ProposeAsync(stale.ToByteArray())).Reply);
        Assert.Equal((0, nextInode), (reply.Errno, reply.Attr.Inode));
        Assert.Equal(nextInode, await h.Ino(Root, "stale"));
        Assert.Equal(Root, (await h.Attr(Root)).Inode);
        nextInode++;

        // Through the service: an "old leader" entry takes higher numbers first, so ours are taken and replaced.
        inject = new Command
        {
            NowNs = StartNs,
            NewInode = nextInode + 5,
            Mkdir = new MkdirRequest { Parent = Root, Name = N("foreign"), Mode = 0x1ED },
        }.ToByteArray();
        var mine = await h.Mkdir(Root, "mine");
        Assert.Equal(0, mine.Errno);
        Assert.Equal(nextInode + 6, mine.Attr.Inode);
        Assert.Equal(nextInode + 5, await h.Ino(Root, "foreign"));

        inject = new Command { NowNs = StartNs, NewId = nextSlice + 100, NewSliceIds = new NewSliceIdsRequest { Count = 10 } }.ToByteArray();
        Assert.Equal(nextSlice + 110, await h.NewSliceIds(2));
    }

    /// <summary>Holds each odd proposal until the next one arrives, then appends the later one first.</summary>
    private sealed class SwappingLog(IStateMachine machine) : IReplicatedLog
    {
        private readonly InMemoryLog _inner = new(machine);
        private readonly Lock _gate = new();
        private (byte[] Command, TaskCompletionSource<(ulong, byte[])> Done)? _held;

        public ulong CommitIndex => _inner.CommitIndex;

        public ulong AppliedIndex => _inner.AppliedIndex;

        public bool Swapping { get; set; }

        public async Task<(ulong Index, byte[] Reply)> ProposeAsync(ReadOnlyMemory<byte> command, CancellationToken ct = default)
        {
            TaskCompletionSource<(ulong, byte[])>? wait = null;
            (byte[] Command, TaskCompletionSource<(ulong, byte[])> Done)? held;
            lock (_gate)
            {
                held = _held;
                _held = null;
                if (held is null && Swapping)
                {
                    wait = new TaskCompletionSource<(ulong, byte[])>(TaskCreationOptions.RunContinuationsAsynchronously);
                    _held = (command.ToArray(), wait);
                }
            }
            if (wait is not null)
            {
                return await wait.Task;
            }
            var mine = await _inner.ProposeAsync(command, ct);
            if (held is { } earlier)
            {
                earlier.Done.SetResult(await _inner.ProposeAsync(earlier.Command, ct));
            }
            return mine;
        }

        public Task<ulong> ReadBarrierAsync(CancellationToken ct = default) => _inner.ReadBarrierAsync(ct);

        public ValueTask DisposeAsync() => _inner.DisposeAsync();
    }

    [Fact]
    public async Task Proposals_appended_out_of_prepare_order_still_get_unique_ids()
    {
        SwappingLog? log = null;
        using var h = await StartAsync(logFactory: sm => log = new SwappingLog(sm));
        log!.Swapping = true;
        var (nextInode, nextSlice, _, _) = h.State.Counters();
        // Both in flight: neither reply has been received, so neither is acknowledged.
        MkdirRequest InFlight(string name)
        {
            var r = h.Stamp(new MkdirRequest { Parent = Root, Name = N(name), Mode = 0x1ED });
            r.AckedSeq = 0;
            return r;
        }
        var first = h.Svc.MkdirAsync(InFlight("first"));
        var second = h.Svc.MkdirAsync(InFlight("second"));
        var (a, b) = (await first, await second);
        Assert.Equal((0, 0), (a.Errno, b.Errno));
        Assert.Equal(nextInode + 1, b.Attr.Inode); // appended first: keeps its prepared number
        Assert.Equal(nextInode + 2, a.Attr.Inode); // its prepared number was passed: the next free one
        Assert.Equal(a.Attr.Inode, await h.Ino(Root, "first"));

        var s1 = h.Svc.NewSliceIdsAsync(new NewSliceIdsRequest { SessionId = h.Session, Seq = 1001, Count = 5 });
        var s2 = h.Svc.NewSliceIdsAsync(new NewSliceIdsRequest { SessionId = h.Session, Seq = 1002, Count = 5 });
        var (r1, r2) = (await s1, await s2);
        Assert.Equal(nextSlice + 5, r2.FirstId);
        Assert.Equal(nextSlice + 10, r1.FirstId);
    }

    [Fact]
    public void Malformed_and_empty_entries_are_answered_not_thrown()
    {
        using var sm = new MetaStateMachine();
        var bad = HeartbeatReply.Parser.ParseFrom(sm.Apply(1, [0xFF, 0xFF, 0xFF]));
        Assert.Equal((Errno.EINVAL, 1UL), (bad.Errno, bad.Index));
        var noop = HeartbeatReply.Parser.ParseFrom(sm.Apply(2, []));
        Assert.Equal((0, 2UL), (noop.Errno, noop.Index));
        var unknown = HeartbeatReply.Parser.ParseFrom(sm.Apply(3, [0xF8, 0x3F, 0x01])); // field 1023, a future op
        Assert.Equal(Errno.ENOSYS, unknown.Errno);
        Assert.Equal(3UL, sm.AppliedIndex);
        Assert.Throws<InvalidOperationException>(() => sm.Apply(3, [])); // an entry applied twice is a log bug
        Assert.Equal(3UL, sm.AppliedIndex);
    }

    private static byte[] Snapshot(MetaStateMachine sm)
    {
        using var ms = new MemoryStream();
        sm.WriteSnapshot(ms);
        return ms.ToArray();
    }

    private static MetaStateMachine Restore(byte[] snapshot)
    {
        var sm = new MetaStateMachine();
        sm.RestoreSnapshot(new MemoryStream(snapshot));
        return sm;
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public async Task Replicas_applying_the_same_log_agree_byte_for_byte(int seed)
    {
        RecordingLog? log = null;
        using var h = await StartAsync(logFactory: sm => log = new RecordingLog(sm));
        await Workload.RunAsync(h, seed, 1500);
        var commands = log!.Commands;
        var expected = Snapshot(h.State);

        // A replica applying everything, and one restored from a snapshot taken halfway then applying the rest.
        using var replica = new MetaStateMachine();
        using var first = new MetaStateMachine();
        var half = commands.Count / 2;
        var replies = new List<byte[]>();
        for (var i = 0; i < commands.Count; i++)
        {
            replies.Add(replica.Apply((ulong)i + 1, commands[i]));
            if (i < half)
            {
                first.Apply((ulong)i + 1, commands[i]);
            }
        }
        using var second = Restore(Snapshot(first));
        for (var i = half; i < commands.Count; i++)
        {
            Assert.Equal(replies[i], second.Apply((ulong)i + 1, commands[i]));
        }
        Assert.Equal(expected, Snapshot(replica));
        Assert.Equal(expected, Snapshot(second));
        Assert.True(expected.Length > 1000, $"seed {seed}: snapshot unexpectedly small ({expected.Length} bytes)");
    }

    [Fact]
    public async Task Snapshot_restore_is_exact_and_reads_agree()
    {
        using var h = await StartAsync();
        await Workload.RunAsync(h, 7, 2000);
        var bytes = Snapshot(h.State);
        using var copy = Restore(bytes);
        Assert.Equal(bytes, Snapshot(copy));
        Assert.Equal(h.State.AppliedIndex, copy.AppliedIndex);
        Assert.Equal(h.State.Usage(), copy.Usage());
        Assert.Equal(h.State.PendingDeletes(), copy.PendingDeletes());

        // Walk the whole tree on both and compare every read.
        var queue = new Queue<ulong>([Root]);
        var visited = 0;
        while (queue.Count > 0)
        {
            var dir = queue.Dequeue();
            ulong offset = 0;
            while (true)
            {
                var req = new ReadDirRequest { Inode = dir, Offset = offset, Limit = 3 };
                var a = h.State.ReadDir(req);
                Assert.Equal(a, copy.ReadDir(req));
                foreach (var e in a.Entries)
                {
                    offset = e.Offset;
                    var ino = e.Attr.Inode;
                    if (e.Name == N(".") || e.Name == N(".."))
                    {
                        continue;
                    }
                    visited++;
                    Assert.Equal(h.State.Lookup(new LookupRequest { Parent = dir, Name = e.Name }), copy.Lookup(new LookupRequest { Parent = dir, Name = e.Name }));
                    Assert.Equal(h.State.ListXattr(new ListXattrRequest { Inode = ino }), copy.ListXattr(new ListXattrRequest { Inode = ino }));
                    Assert.Equal(h.State.ReadLink(new ReadLinkRequest { Inode = ino }), copy.ReadLink(new ReadLinkRequest { Inode = ino }));
                    for (uint c = 0; c < 3; c++)
                    {
                        var rc = new ReadChunkRequest { Inode = ino, ChunkIndex = c };
                        Assert.Equal(h.State.ReadChunk(rc), copy.ReadChunk(rc));
                    }
                    if (PosixMode.IsDir(e.Attr.Mode))
                    {
                        queue.Enqueue(ino);
                    }
                }
                if (a.Eof)
                {
                    break;
                }
            }
        }
        Assert.True(visited > 10, $"workload left only {visited} entries");
        Assert.Equal(h.State.StatFs(new StatFsRequest()), copy.StatFs(new StatFsRequest()));
        Assert.Equal(h.State.GetVolume(new GetVolumeRequest()), copy.GetVolume(new GetVolumeRequest()));

        // The restored machine keeps going exactly like the original.
        var cmd = new Command { NowNs = MetaHarness.StartNs + 1_000_000_000_000, NewInode = 1_000_000, Mkdir = new MkdirRequest { Parent = Root, Name = N("after") } };
        var next = h.State.AppliedIndex + 1;
        Assert.Equal(h.State.Apply(next, cmd.ToByteArray()), copy.Apply(next, cmd.ToByteArray()));
        Assert.Equal(Snapshot(h.State), Snapshot(copy));
    }

    [Fact]
    public async Task Corrupt_snapshots_are_rejected_and_leave_state_alone()
    {
        using var h = await StartAsync();
        await Workload.RunAsync(h, 11, 300);
        var bytes = Snapshot(h.State);
        using var target = new MetaStateMachine();
        var flipped = (byte[])bytes.Clone();
        flipped[bytes.Length / 2] ^= 0x40;
        Assert.Throws<InvalidDataException>(() => target.RestoreSnapshot(new MemoryStream(flipped)));
        Assert.Throws<InvalidDataException>(() => target.RestoreSnapshot(new MemoryStream(bytes[..^1])));
        Assert.Throws<InvalidDataException>(() => target.RestoreSnapshot(new MemoryStream(bytes[..(bytes.Length / 3)])));
        Assert.Throws<InvalidDataException>(() => target.RestoreSnapshot(new MemoryStream([.. bytes, 0])));
        var badMagic = (byte[])bytes.Clone();
        badMagic[0] = (byte)'X';
        var e = Assert.Throws<InvalidDataException>(() => target.RestoreSnapshot(new MemoryStream(badMagic)));
        Assert.Contains("magic", e.Message, StringComparison.Ordinal);
        Assert.Equal(0UL, target.AppliedIndex);
        Assert.Equal(Errno.ENOENT, target.GetVolume(new GetVolumeRequest()).Errno);
        target.RestoreSnapshot(new MemoryStream(bytes));
        Assert.Equal(bytes, Snapshot(target));
    }

    [Fact]
    public async Task Reads_run_safely_alongside_writes()
    {
        using var h = await StartAsync();
        var d = (await h.Mkdir(Root, "d")).Attr.Inode;
        using var stop = new CancellationTokenSource();
        var started = 0;
        var readers = Enumerable.Range(0, 3).Select(_ => Task.Run(async () =>
        {
            var reads = 0;
            while (!stop.IsCancellationRequested)
            {
                var list = await h.Svc.ReadDirAsync(new ReadDirRequest { Inode = d, Limit = 50 });
                Assert.Equal(0, list.Errno);
                foreach (var e in list.Entries)
                {
                    var a = await h.Svc.GetAttrAsync(new GetAttrRequest { Inode = e.Attr.Inode });
                    Assert.True(a.Errno is 0 or Errno.ENOENT);
                }
                if (reads++ == 0)
                {
                    Interlocked.Increment(ref started);
                }
            }
            return reads;
        })).ToArray();
        // Writes begin once every reader is running, so they overlap.
        for (var wait = 0; Volatile.Read(ref started) < readers.Length && wait < 1000; wait++)
        {
            await Task.Delay(10);
        }
        for (var i = 0; i < 3000; i++)
        {
            var f = await h.Svc.MknodAsync(new MknodRequest { Parent = d, Name = N("f" + (i % 100)), Mode = 0x81A4 });
            if (f.Errno == Errno.EEXIST)
            {
                Assert.Equal(0, (await h.Svc.UnlinkAsync(new UnlinkRequest { Parent = d, Name = N("f" + (i % 100)) })).Errno);
            }
        }
        await stop.CancelAsync();
        var counts = await Task.WhenAll(readers);
        Assert.All(counts, c => Assert.True(c > 0));
    }
}
