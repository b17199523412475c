// IReplicatedLog on Raft: one loop drives a RaftNode with the real WAL, hard-state file, snapshot store and a transport.
using System.Buffers.Binary;
using System.Threading.Channels;
using MirrorFS.MetaServer.Consensus;
using MirrorFS.MetaServer.Storage;

namespace MirrorFS.MetaServer.Raft;

/// <summary>Carries Raft messages to peers. Sending is fire-and-forget: Raft tolerates loss, duplication and reorder.
/// Messages arriving for this node are handed to <see cref="RaftLog.Receive"/>.</summary>
public interface IRaftTransport
{
    void Send(RaftMessage message);
}

public sealed class RaftLogOptions
{
    public required ulong Id { get; init; }

    /// <summary>The cluster's first configuration (used only when the node's disk holds none yet).</summary>
    public required IReadOnlyList<ulong> InitialVoters { get; init; }

    /// <summary>Holds <c>wal/</c>, <c>snap/</c> and <c>hardstate</c>.</summary>
    public required string Directory { get; init; }

    public required IRaftTransport Transport { get; init; }
    public int TickMs { get; init; } = 50;
    public int ElectionTicks { get; init; } = 10;
    public int HeartbeatTicks { get; init; } = 2;
    public ulong SnapshotEveryEntries { get; init; } = 100_000;

    /// <summary>Address of a node for <see cref="NotLeaderException.LeaderHint"/>.</summary>
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
            },
            new RaftStartState(_savedHard, meta, entries, sm.AppliedIndex));
        _applied = (long)sm.AppliedIndex;
        _inbox = Channel.CreateBounded<Action>(new BoundedChannelOptions(o.InboxItemsMax) { SingleReader = true });
        _loop = Task.Run(LoopAsync);
    }

    public static RaftLog Open(IStateMachine stateMachine, RaftLogOptions options)
    {
        Directory.CreateDirectory(options.Directory);
        var snaps = new SnapshotStore(Path.Combine(options.Directory, "snap"));
        var meta = new SnapshotMeta(0, 0, options.InitialVoters);
        byte[] body = [];
        using (var opened = snaps.OpenNewest())
        {
            if (opened is not null)
            {
                using var ms = new MemoryStream();
                opened.Body.CopyTo(ms);
                body = ms.ToArray();
                meta = new SnapshotMeta(opened.Info.Index, opened.Info.Term, ReadVoters(body, out var stateOffset));
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

    public ulong CommitIndex => (ulong)Interlocked.Read(ref _commit);
    public ulong AppliedIndex => (ulong)Interlocked.Read(ref _applied);

    /// <summary>Hands a message from a peer to this node without blocking the caller; false (message dropped, which
    /// Raft tolerates) when the inbox is full.</summary>
    public bool Receive(RaftMessage message) => _inbox.Writer.TryWrite(() => _node.Step(message));

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
    /// <see cref="NotLeaderException"/> when refused (not the leader, or another change is still in flight).</summary>
    public async Task<ulong> ProposeConfChangeAsync(ConfChangeType type, ulong node, CancellationToken ct = default)
    {
        var done = new TaskCompletionSource<(ulong, byte[])>(TaskCreationOptions.RunContinuationsAsynchronously);
        await _inbox.Writer.WriteAsync(() =>
        {
            var index = _node.ProposeConfChange(type, node);
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

    /// <summary>Snapshots received from a leader and installed (this node had fallen behind its log).</summary>
    public long SnapshotsInstalled => Interlocked.Read(ref _snapshotsInstalled);

    /// <summary>Role, term and leader as the loop last saw them.</summary>
    public (RaftRole Role, ulong Term, ulong Leader) Status { get; private set; }

    private NotLeaderException NotLeader() => new(_node.Leader == 0 ? null : _o.AddressOf?.Invoke(_node.Leader) ?? _node.Leader.ToString(System.Globalization.CultureInfo.InvariantCulture));

    private async Task LoopAsync()
    {
        using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(_o.TickMs));
        var tick = timer.WaitForNextTickAsync(_stop.Token).AsTask();
        try
        {
            Task<bool>? input = null; // one wait at a time: the inbox has a single reader
            while (!_stop.IsCancellationRequested)
            {
                input ??= _inbox.Reader.WaitToReadAsync(_stop.Token).AsTask();
                await Task.WhenAny(input, tick);
                if (input.IsCompleted)
                {
                    await input;
                    input = null;
                }
                if (tick.IsCompleted)
                {
                    await tick;
                    _node.Tick();
                    tick = timer.WaitForNextTickAsync(_stop.Token).AsTask();
                }
                // Every action queued so far shares one Ready: one WAL append and one fsync (group commit).
                for (var n = 0; n < InboxBatchMax && _inbox.Reader.TryRead(out var action); n++)
                {
                    action();
                }
                await HandleReadyAsync();
            }
        }
        catch (OperationCanceledException) when (_stop.IsCancellationRequested)
        {
        }
        catch (Exception e)
        {
            _failure = e;
            FailAll(new IOException($"Raft node {_o.Id} stopped: {e.Message}; restart the process to recover from its disk", e));
        }
    }

    private async Task HandleReadyAsync()
    {
        while (_node.HasReady)
        {
            var rd = _node.GetReady();
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
                ReadVoters(body, out var stateOffset);
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
            if (rd.Entries.Count > 0)
            {
                var first = rd.Entries[0].Index;
                if (first <= _wal.LastIndex)
                {
                    _wal.TruncateSuffix(first);
                }
                _wal.Append(rd.Entries.Select(Encode).ToList());
                await _wal.FlushAsync();
            }
            // Term and vote must be durable before any message that depends on them; the commit index need not be.
            if (rd.HardState is { } hs && (hs.Term != _savedHard.Term || hs.VotedFor != _savedHard.VotedFor))
            {
                _hardFile.Save(hs);
                _savedHard = hs;
            }
            foreach (var m in rd.Messages)
            {
                _o.Transport.Send(m);
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

    private void MaybeSnapshot()
    {
        var applied = _sm.AppliedIndex;
        if (_o.SnapshotEveryEntries == 0 || applied - _snapIndex < _o.SnapshotEveryEntries || applied != _node.Applied)
        {
            return;
        }
        _node.Compact(applied);
        var meta = _node.Snapshot;
        using var ms = new MemoryStream();
        WriteVoters(ms, meta.Voters);
        _sm.WriteSnapshot(ms);
        var body = ms.ToArray();
        _snaps.Write(meta.Index, meta.Term, s => s.Write(body));
        _snapBody = body;
        _snapIndex = meta.Index;
        _wal.CompactPrefix(meta.Index);
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

    // WAL payload = [kind][data]; snapshot body = [voter count u32][voters u64...][state machine snapshot].
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

    private static void WriteVoters(Stream s, IReadOnlyList<ulong> voters)
    {
        Span<byte> buf = stackalloc byte[8];
        BinaryPrimitives.WriteUInt32LittleEndian(buf, (uint)voters.Count);
        s.Write(buf[..4]);
        foreach (var v in voters)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(buf, v);
            s.Write(buf);
        }
    }

    private static ulong[] ReadVoters(byte[] body, out int stateOffset)
    {
        var count = (int)BinaryPrimitives.ReadUInt32LittleEndian(body);
        stateOffset = 4 + (count * 8);
        return Membership.Decode(body.AsSpan(4, count * 8));
    }
}
