// IReplicatedLog on Raft: one loop drives a RaftNode with the real WAL, hard-state file, snapshot store and a transport.
using System.Buffers.Binary;
using System.Diagnostics;
using System.Threading.Channels;
using MirrorFS.MetaServer.Consensus;
using MirrorFS.MetaServer.Storage;

namespace MirrorFS.MetaServer.Raft;

/// <summary>Carries Raft messages to peers. Sending is fire-and-forget: Raft tolerates loss, duplication and reorder.
/// Messages arriving for this node are handed to <see cref="RaftLog.Receive"/>.</summary>
public interface IRaftTransport
{
    void Send(RaftMessage message);

    /// <summary>The configuration in effect changed: <paramref name="addresses"/> names every voter's address (the
    /// newest configuration, committed or not). Called on the Raft loop before messages to new members are sent.</summary>
    void UpdateMembers(IReadOnlyDictionary<ulong, string> addresses)
    {
    }
}

/// <summary>One node's view of the cluster, for status pages and the admin service.</summary>
public sealed record RaftStatus(
    ulong Id, RaftRole Role, ulong Term, ulong Leader, ulong Commit, ulong Applied, ulong LastIndex, ulong SnapshotIndex,
    IReadOnlyList<ulong> Voters, IReadOnlyDictionary<ulong, string> Addresses,
    IReadOnlyDictionary<ulong, ulong> Match);

/// <summary>A membership change the leader refused (another one in flight, not a member, ...); the message says why.</summary>
public sealed class MembershipChangeException(string message) : InvalidOperationException(message);

public sealed class RaftLogOptions
{
    public required ulong Id { get; init; }

    /// <summary>The cluster's first configuration (used only when the node's disk holds none yet).</summary>
    public required IReadOnlyList<ulong> InitialVoters { get; init; }

    /// <summary>Addresses of the initial voters (and of other nodes this one may need to answer before it learns the
    /// configuration); persisted with the first snapshot.</summary>
    public IReadOnlyDictionary<ulong, string>? InitialAddresses { get; init; }

    /// <summary>Holds <c>wal/</c>, <c>snap/</c> and <c>hardstate</c>.</summary>
    public required string Directory { get; init; }

    public required IRaftTransport Transport { get; init; }
    public int TickMs { get; init; } = 50;
    public int ElectionTicks { get; init; } = 10;
    public int HeartbeatTicks { get; init; } = 2;
    public ulong SnapshotEveryEntries { get; init; } = 100_000;

    /// <summary>Address of a node for <see cref="NotLeaderException.LeaderHint"/> when the configuration names none.</summary>
    public Func<ulong, string?>? AddressOf { get; init; }

    /// <summary>Inputs (messages, proposals, reads) queued for the loop; further senders wait.</summary>
    public int InboxItemsMax { get; init; } = 65_536;

    /// <summary>Largest command accepted; a bigger one would fail the WAL append on every replica.</summary>
    public int CommandBytesMax { get; init; } = 16 << 20;
}

/// <summary>
/// An <see cref="IReplicatedLog"/> backed by Raft. All Raft work happens on one loop task: inputs are queued, then each
/// Ready is handled in the order Raft requires (snapshot, WAL append + fsync, hard state, send, apply).
/// The newest snapshot body is kept in memory to serve followers that are behind (bounded by the state size).
/// </summary>
public sealed partial class RaftLog : IReplicatedLog, ISnapshotSource
{
    /// <summary>Inputs handled before one Ready is written out.</summary>
    private const int InboxBatchMax = 1024;

    private readonly IStateMachine _sm;
    private readonly RaftLogOptions _o;
    private readonly WriteAheadLog _wal;
    private readonly HardStateFile _hardFile;
    private readonly SnapshotStore _snaps;
    private readonly RaftNode _node;
    private readonly Channel<Action> _inbox;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _loop;
    private readonly TaskCompletionSource _loopDone = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly Dictionary<ulong, (ulong Term, TaskCompletionSource<(ulong, byte[])> Done)> _proposals = [];
    private readonly Dictionary<ulong, TaskCompletionSource<ulong>> _reads = [];
    private readonly List<(ulong Index, TaskCompletionSource<ulong> Done)> _readsAwaitingApply = [];
    private HardState _savedHard;
    private ulong _readCtx;
    private byte[] _snapBody;
    private ulong _snapIndex;
    private MemoryStream? _receiving;
    private long _commit;
    private long _applied;
    private Exception? _failure;
    private long _snapshotsInstalled;
    private IReadOnlyDictionary<ulong, string>? _pushedAddresses;

    private RaftLog(IStateMachine sm, RaftLogOptions o, WriteAheadLog wal, HardStateFile hardFile, SnapshotStore snaps,
        SnapshotMeta meta, byte[] snapBody, IReadOnlyList<RaftEntry> entries)
    {
        _sm = sm;
        _o = o;
        _wal = wal;
        _hardFile = hardFile;
        _snaps = snaps;
        _snapBody = snapBody;
        _snapIndex = meta.Index;
        _savedHard = hardFile.Load();
        _node = new RaftNode(
            new RaftOptions
            {
                Id = o.Id, Random = new Random(), SnapshotSource = this,
                ElectionTicks = o.ElectionTicks, HeartbeatTicks = o.HeartbeatTicks,
                // Every message is an RPC here: followers learn a new commit index from the next append or heartbeat.
                BroadcastCommit = false,
            },
            new RaftStartState(_savedHard, meta, entries, sm.AppliedIndex));
        _applied = (long)sm.AppliedIndex;
        _inbox = Channel.CreateBounded<Action>(new BoundedChannelOptions(o.InboxItemsMax) { SingleReader = true });
        _loop = _loopDone.Task;
        new Thread(Loop) { IsBackground = true, Name = $"raft-{o.Id}" }.Start();
    }

    public static RaftLog Open(IStateMachine stateMachine, RaftLogOptions options)
    {
        Directory.CreateDirectory(options.Directory);
        var snaps = new SnapshotStore(Path.Combine(options.Directory, "snap"));
        var meta = new SnapshotMeta(0, 0, options.InitialVoters) { Addresses = InitialAddresses(options) };
        byte[] body = [];
        using (var opened = snaps.OpenNewest())
        {
            if (opened is not null)
            {
                using var ms = new MemoryStream();
                opened.Body.CopyTo(ms);
                body = ms.ToArray();
                var voters = ReadMembership(body, out var stateOffset, out var addresses);
                meta = new SnapshotMeta(opened.Info.Index, opened.Info.Term, voters) { Addresses = addresses };
                stateMachine.RestoreSnapshot(new MemoryStream(body, stateOffset, body.Length - stateOffset));
            }
        }
        var wal = WriteAheadLog.Open(Path.Combine(options.Directory, "wal"));
        try
        {
            if (wal.LastIndex < meta.Index || wal.FirstIndex > meta.Index + 1)
            {
                wal.Reset(meta.Index + 1); // the snapshot covers (or the WAL does not reach back to) its end
            }
            var entries = new List<RaftEntry>();
            if (wal.LastIndex > meta.Index)
            {
                foreach (var e in wal.ReadAll(meta.Index + 1, wal.LastIndex))
                {
                    entries.Add(Decode(e));
                }
            }
            return new RaftLog(stateMachine, options, wal, new HardStateFile(Path.Combine(options.Directory, "hardstate")), snaps, meta, body, entries);
        }
        catch
        {
            wal.Dispose();
            throw;
        }
    }

    public ulong Id => _o.Id;

    public ulong CommitIndex => (ulong)Interlocked.Read(ref _commit);
    public ulong AppliedIndex => (ulong)Interlocked.Read(ref _applied);

    /// <summary>Hands a message from a peer to this node without blocking the caller; false (message dropped, which
    /// Raft tolerates) when the inbox is full.</summary>
    public bool Receive(RaftMessage message) => _inbox.Writer.TryWrite(() => _node.Step(message));

    /// <summary>Hands a batch of messages from a peer to this node as one input; false (all dropped) when the inbox is full.</summary>
    public bool Receive(IReadOnlyList<RaftMessage> messages) => _inbox.Writer.TryWrite(() =>
    {
        foreach (var m in messages)
        {
            _node.Step(m);
        }
    });

    public async Task<(ulong Index, byte[] Reply)> ProposeAsync(ReadOnlyMemory<byte> command, CancellationToken ct = default)
    {
        var done = new TaskCompletionSource<(ulong, byte[])>(TaskCreationOptions.RunContinuationsAsynchronously);
        if (command.Length > Math.Min(_o.CommandBytesMax, WalFormat.PayloadBytesMax - 1))
        {
            throw new ArgumentException($"command is {command.Length} bytes; the limit is {_o.CommandBytesMax} (CommandBytesMax)", nameof(command));
        }
        var copy = command.ToArray();
        await _inbox.Writer.WriteAsync(() =>
        {
            var index = _node.Propose(copy);
            if (index == 0)
            {
                done.TrySetException(NotLeader());
                return;
            }
            _proposals[index] = (_node.Term, done);
        }, ct);
        return await done.Task.WaitAsync(ct);
    }

    public async Task<ulong> ReadBarrierAsync(CancellationToken ct = default)
    {
        var done = new TaskCompletionSource<ulong>(TaskCreationOptions.RunContinuationsAsynchronously);
        await _inbox.Writer.WriteAsync(() =>
        {
            var ctx = ++_readCtx;
            if (!_node.ReadIndex(ctx))
            {
                done.TrySetException(NotLeader());
                return;
            }
            _reads[ctx] = done;
        }, ct);
        return await done.Task.WaitAsync(ct);
    }

    /// <summary>Adds or removes one voter (leader only); completes when the membership entry is applied. Throws
    /// <see cref="NotLeaderException"/> on a follower and <see cref="MembershipChangeException"/> when the leader
    /// refuses (another change still in flight, not a member, ...). Adding a member again with another
    /// <paramref name="address"/> moves it.</summary>
    public async Task<ulong> ProposeConfChangeAsync(ConfChangeType type, ulong node, string? address = null, CancellationToken ct = default)
    {
        var done = new TaskCompletionSource<(ulong, byte[])>(TaskCreationOptions.RunContinuationsAsynchronously);
        await _inbox.Writer.WriteAsync(() =>
        {
            if (_node.Role != RaftRole.Leader)
            {
                done.TrySetException(NotLeader());
                return;
            }
            if (_node.ConfChangeRefusal(type, node, address) is { } why)
            {
                done.TrySetException(new MembershipChangeException($"membership change refused: {why}"));
                return;
            }
            var index = _node.ProposeConfChange(type, node, address);
            if (index == 0)
            {
                done.TrySetException(NotLeader());
                return;
            }
            _proposals[index] = (_node.Term, done);
        }, ct);
        return (await done.Task.WaitAsync(ct)).Item1;
    }

    /// <summary>Asks this node (if leader) to hand leadership to <paramref name="to"/>.</summary>
    public async Task<bool> TransferLeadershipAsync(ulong to, CancellationToken ct = default)
    {
        var done = new TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously);
        await _inbox.Writer.WriteAsync(() => done.TrySetResult(_node.TransferLeadership(to)), ct);
        return await done.Task.WaitAsync(ct);
    }

    /// <summary>This node's view: role, term, indexes, configuration, and (on the leader) each voter's match index.</summary>
    public async Task<RaftStatus> GetStatusAsync(CancellationToken ct = default)
    {
        var done = new TaskCompletionSource<RaftStatus>(TaskCreationOptions.RunContinuationsAsynchronously);
        await _inbox.Writer.WriteAsync(() =>
        {
            var match = new Dictionary<ulong, ulong>();
            foreach (var v in _node.Voters)
            {
                if (_node.MatchOf(v) is { } m)
                {
                    match[v] = m;
                }
            }
            done.TrySetResult(new RaftStatus(_o.Id, _node.Role, _node.Term, _node.Leader, _node.Commit, _sm.AppliedIndex,
                _node.LastIndex, _node.SnapshotIndex, [.. _node.Voters], _node.Addresses, match));
        }, ct);
        return await done.Task.WaitAsync(ct);
    }

    /// <summary>Snapshots the state machine now (and compacts the log up to it); returns the snapshot's index.</summary>
    public async Task<ulong> SnapshotAsync(CancellationToken ct = default)
    {
        var done = new TaskCompletionSource<ulong>(TaskCreationOptions.RunContinuationsAsynchronously);
        await _inbox.Writer.WriteAsync(() =>
        {
            try
            {
                done.TrySetResult(TakeSnapshot());
            }
            catch (Exception e)
            {
                done.TrySetException(e);
                throw; // a failed snapshot write leaves the disk in doubt: stop the node like any other I/O failure
            }
        }, ct);
        return await done.Task.WaitAsync(ct);
    }

    /// <summary>Snapshots received from a leader and installed (this node had fallen behind its log).</summary>
    public long SnapshotsInstalled => Interlocked.Read(ref _snapshotsInstalled);

    /// <summary>Role, term and leader as the loop last saw them.</summary>
    public (RaftRole Role, ulong Term, ulong Leader) Status { get; private set; }

    /// <summary>Called on the loop. The hint is the leader's address, or none when neither leader nor address is known.</summary>
    private NotLeaderException NotLeader() => new(AddressOf(_node.Leader));

    private string? AddressOf(ulong id) =>
        id == 0 ? null
        : _node.Addresses.TryGetValue(id, out var a) ? a
        : _o.AddressOf?.Invoke(id);

    /// <summary>The Raft loop, on a thread of its own: it fsyncs inline (the group commit), which would otherwise
    /// hold a thread-pool thread and delay the RPC work queued behind it.</summary>
    private void Loop()
    {
        var tickTicks = Stopwatch.Frequency * _o.TickMs / 1000;
        var nextTick = Stopwatch.GetTimestamp() + tickTicks;
        Task<bool>? input = null; // one wait at a time: the inbox has a single reader
        // Set when the pending inbox wait completes; one reusable event, waited on without spinning (Task.Wait spins
        // first, and spinning threads cost more than they save when the two cores are shared with the other members).
        using var wake = new AutoResetEvent(false);
        try
        {
            while (!_stop.IsCancellationRequested)
            {
                if (!_inbox.Reader.TryPeek(out _))
                {
                    if (input is null)
                    {
                        input = _inbox.Reader.WaitToReadAsync(_stop.Token).AsTask();
                        input.ContinueWith(static (_, e) => Wake((AutoResetEvent)e!), wake, CancellationToken.None,
                            TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
                    }
                    var waitMs = (int)Math.Ceiling((nextTick - Stopwatch.GetTimestamp()) * 1000.0 / Stopwatch.Frequency);
                    if (waitMs > 0)
                    {
                        wake.WaitOne(waitMs);
                        if (_stop.IsCancellationRequested)
                        {
                            break;
                        }
                    }
                }
                if (input is { IsCompleted: true })
                {
                    input = null;
                }
                var now = Stopwatch.GetTimestamp();
                if (now >= nextTick)
                {
                    _node.Tick();
                    nextTick += tickTicks;
                    if (nextTick <= now)
                    {
                        nextTick = now + tickTicks; // after a long stall, no burst of ticks
                    }
                }
                // Every action queued so far shares one Ready: one WAL append and one fsync (group commit).
                for (var n = 0; n < InboxBatchMax && _inbox.Reader.TryRead(out var action); n++)
                {
                    action();
                }
                HandleReady();
                CloseCaptures();
            }
        }
        catch (OperationCanceledException) when (_stop.IsCancellationRequested)
        {
        }
        catch (Exception e)
        {
            _failure = e;
            CloseCaptures();
            FailAll(new IOException($"Raft node {_o.Id} stopped: {e.Message}; restart the process to recover from its disk", e));
        }
        finally
        {
            _loopDone.TrySetResult();
        }
    }

    private static void Wake(AutoResetEvent wake)
    {
        try
        {
            wake.Set();
        }
        catch (ObjectDisposedException)
        {
            // the loop has ended; nobody waits
        }
    }

    private void HandleReady()
    {
        while (_node.HasReady)
        {
            var rd = _node.GetReady();
            if (!ReferenceEquals(_node.Addresses, _pushedAddresses))
            {
                // Before any message goes out: a member just added must be reachable for the leader's first append.
                _pushedAddresses = _node.Addresses;
                _o.Transport.UpdateMembers(_pushedAddresses);
            }
            foreach (var c in rd.SnapshotChunks)
            {
                if (c.Offset == 0)
                {
                    _receiving = new MemoryStream();
                }
                _receiving?.Write(c.Data.Span);
            }
            if (rd.Snapshot is { } snap)
            {
                var body = _receiving?.ToArray() ?? [];
                _receiving = null;
                _snaps.Write(snap.Index, snap.Term, s => s.Write(body));
                ReadMembership(body, out var stateOffset, out _);
                _sm.RestoreSnapshot(new MemoryStream(body, stateOffset, body.Length - stateOffset));
                _wal.Reset(snap.Index + 1);
                _snapBody = body;
                _snapIndex = snap.Index;
                Interlocked.Increment(ref _snapshotsInstalled);
                foreach (var index in _proposals.Keys.Where(i => i <= snap.Index).ToList())
                {
                    _proposals.Remove(index, out var p);
                    p.Done.TrySetException(NotLeader());
                }
            }
            // Term and vote must be durable before any message that depends on them; the commit index need not be.
            if (rd.HardState is { } hs && (hs.Term != _savedHard.Term || hs.VotedFor != _savedHard.VotedFor))
            {
                _hardFile.Save(hs);
                _savedHard = hs;
            }
            // A leader may replicate entries before its own copy is durable (Ongaro's thesis, 10.2.1): it counts
            // itself towards a commit only once persisted, so its appends overlap its fsync. Replies of any node still
            // wait for the fsync, as they promise what the disk holds.
            var leaderFirst = rd.Role == RaftRole.Leader && rd.Entries.Count > 0;
            if (leaderFirst)
            {
                foreach (var m in rd.Messages)
                {
                    if (IsLeaderMessage(m.Type))
                    {
                        Send(m);
                    }
                }
            }
            if (rd.Entries.Count > 0)
            {
                var first = rd.Entries[0].Index;
                if (first <= _wal.LastIndex)
                {
                    _wal.TruncateSuffix(first);
                }
                _wal.Append(rd.Entries.Select(Encode).ToList());
                _wal.Sync(); // on this loop: the inputs batched into this Ready are the group commit

            }
            foreach (var m in rd.Messages)
            {
                if (!leaderFirst || !IsLeaderMessage(m.Type))
                {
                    Send(m);
                }
            }
            foreach (var e in rd.CommittedEntries)
            {
                var reply = _sm.Apply(e.Index, e.Kind == EntryKind.Normal ? e.Data.Span : []);
                if (_proposals.Remove(e.Index, out var p))
                {
                    if (p.Term == e.Term)
                    {
                        p.Done.TrySetResult((e.Index, reply));
                    }
                    else
                    {
                        p.Done.TrySetException(NotLeader()); // another leader's entry took its place
                    }
                }
            }
            foreach (var rs in rd.ReadStates)
            {
                if (_reads.Remove(rs.Context, out var r))
                {
                    _readsAwaitingApply.Add((rs.Index, r));
                }
            }
            foreach (var ctx in rd.DroppedReads)
            {
                if (_reads.Remove(ctx, out var r))
                {
                    r.TrySetException(NotLeader());
                }
            }
            _node.Advance(rd);
            if (Status.Role == RaftRole.Leader && _node.Role != RaftRole.Leader)
            {
                FailUncommittedProposals();
            }
            Interlocked.Exchange(ref _commit, (long)_node.Commit);
            Interlocked.Exchange(ref _applied, (long)_sm.AppliedIndex);
            Status = (_node.Role, _node.Term, _node.Leader);
            _readsAwaitingApply.RemoveAll(r =>
            {
                if (r.Index > _sm.AppliedIndex)
                {
                    return false;
                }
                r.Done.TrySetResult(_sm.AppliedIndex);
                return true;
            });
            MaybeSnapshot();
        }
    }

    /// <summary>Leadership is lost: proposals not yet known committed may or may not commit under the next leader.
    /// Their callers are told at once to retry there (a retry with the same session and sequence is answered from the
    /// reply cache if the first attempt did commit) rather than wait for a timeout.</summary>
    private void FailUncommittedProposals()
    {
        List<ulong>? lost = null;
        foreach (var index in _proposals.Keys)
        {
            if (index > _node.Commit)
            {
                (lost ??= []).Add(index);
            }
        }
        foreach (var index in lost ?? [])
        {
            _proposals.Remove(index, out var p);
            p.Done.TrySetException(NotLeader());
        }
    }

    private static bool IsLeaderMessage(MessageType type) =>
        type is MessageType.Append or MessageType.Heartbeat or MessageType.Snapshot or MessageType.TimeoutNow;

    private void MaybeSnapshot()
    {
        if (_o.SnapshotEveryEntries != 0 && _sm.AppliedIndex - _snapIndex >= _o.SnapshotEveryEntries)
        {
            TakeSnapshot();
        }
    }

    /// <summary>Snapshots what is applied (on the loop, between Readies) and compacts the log up to it; returns the
    /// index of the newest snapshot.</summary>
    private ulong TakeSnapshot()
    {
        var applied = _sm.AppliedIndex;
        if (applied <= _snapIndex || applied != _node.Applied)
        {
            return _snapIndex;
        }
        _node.Compact(applied);
        var meta = _node.Snapshot;
        using var ms = new MemoryStream();
        WriteMembership(ms, meta);
        _sm.WriteSnapshot(ms);
        var body = ms.ToArray();
        _snaps.Write(meta.Index, meta.Term, s => s.Write(body));
        _snapBody = body;
        _snapIndex = meta.Index;
        _wal.CompactPrefix(meta.Index);
        return meta.Index;
    }

    public bool TryRead(ulong index, long offset, int countMax, out ReadOnlyMemory<byte> data, out long totalBytes)
    {
        totalBytes = _snapBody.Length;
        if (index != _snapIndex)
        {
            data = default;
            return false;
        }
        data = _snapBody.AsMemory((int)offset, (int)Math.Min(countMax, _snapBody.Length - offset));
        return true;
    }

    private void FailAll(Exception e)
    {
        foreach (var p in _proposals.Values)
        {
            p.Done.TrySetException(e);
        }
        foreach (var r in _reads.Values)
        {
            r.TrySetException(e);
        }
        foreach (var r in _readsAwaitingApply)
        {
            r.Done.TrySetException(e);
        }
        _proposals.Clear();
        _reads.Clear();
        _readsAwaitingApply.Clear();
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        await _loop;
        FailAll(_failure ?? new ObjectDisposedException(nameof(RaftLog), $"Raft node {_o.Id} is shut down"));
        _wal.Dispose();
        _stop.Dispose();
    }

    // WAL payload = [kind][data]. Snapshot body = [u32 0xFFFFFFFF][u32 length][membership, version 2][state machine
    // snapshot]; the first form, still read, was [voter count u32][voters u64...][state machine snapshot].
    private static LogEntry Encode(RaftEntry e)
    {
        var payload = new byte[e.Data.Length + 1];
        payload[0] = (byte)e.Kind;
        e.Data.Span.CopyTo(payload.AsSpan(1));
        return new LogEntry(e.Index, e.Term, payload);
    }

    private static RaftEntry Decode(LogEntry e) =>
        e.Payload.Length == 0
            ? throw new InvalidDataException($"WAL entry {e.Index} has no Raft entry kind byte; this WAL was not written by RaftLog")
            : new RaftEntry(e.Index, e.Term, (EntryKind)e.Payload.Span[0], e.Payload[1..]);

    private const uint MembershipV2Marker = uint.MaxValue;

    private static void WriteMembership(Stream s, SnapshotMeta meta)
    {
        var membership = Membership.Encode(meta.Voters, meta.Addresses);
        Span<byte> buf = stackalloc byte[8];
        BinaryPrimitives.WriteUInt32LittleEndian(buf, MembershipV2Marker);
        BinaryPrimitives.WriteUInt32LittleEndian(buf[4..], (uint)membership.Length);
        s.Write(buf);
        s.Write(membership);
    }

    private static ulong[] ReadMembership(byte[] body, out int stateOffset, out IReadOnlyDictionary<ulong, string> addresses)
    {
        if (body.Length < 4)
        {
            throw new InvalidDataException($"Raft snapshot body of {body.Length} bytes has no membership header; the snapshot is damaged");
        }
        var first = BinaryPrimitives.ReadUInt32LittleEndian(body);
        var (start, length) = first == MembershipV2Marker
            ? (8L, body.Length >= 8 ? (long)BinaryPrimitives.ReadUInt32LittleEndian(body.AsSpan(4)) : long.MaxValue)
            : (4L, first * 8L);
        if (start + length > body.Length)
        {
            throw new InvalidDataException($"Raft snapshot body of {body.Length} bytes is shorter than its membership header says; the snapshot is damaged");
        }
        stateOffset = (int)(start + length);
        return Membership.Decode(body.AsSpan((int)start, (int)length), out addresses);
    }

    private static IReadOnlyDictionary<ulong, string> InitialAddresses(RaftLogOptions o) =>
        o.InitialAddresses is null ? Membership.NoAddresses
            : o.InitialAddresses.Where(a => o.InitialVoters.Contains(a.Key)).ToDictionary();
}
