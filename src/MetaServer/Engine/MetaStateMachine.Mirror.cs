// Mirror side of the state machine: primary indexes, mirrored entries, bootstrap from a primary snapshot, promotion.
using Google.Protobuf;
using MirrorFS.Core.Meta;

namespace MirrorFS.MetaServer.Engine;

/// <summary>Figures of the mirror role for the service, the follower and status calls.</summary>
public readonly record struct MirrorRoleInfo(
    MirrorRole Role, string Primary, string MirrorStorage, ulong PromotedIndex, long IndexOffset, long AppliedTimeNs,
    ulong LogicalIndex, ulong LogIndex);

public sealed partial class MetaStateMachine
{
    /// <summary>Linux EROFS: a mirror applies no write of its own.</summary>
    private const int ErofsErrno = 30;

    private readonly Lock _waitersLock = new();
    private readonly PriorityQueue<TaskCompletionSource, ulong> _indexWaiters = new();
    private int _waiterCount;
    private ulong _logical;
    private int _role;

    /// <summary>This cluster's role as of the last applied entry.</summary>
    public MirrorRole Role => (MirrorRole)Volatile.Read(ref _role);

    /// <summary>The primary index the state reflects: what replies carry (equals <see cref="AppliedIndex"/> on a
    /// primary that never was a mirror).</summary>
    public ulong LogicalIndex => Volatile.Read(ref _logical);

    public MirrorRoleInfo MirrorRoleInfo()
    {
        _lock.EnterReadLock();
        try
        {
            var m = _s.Mirror;
            return new MirrorRoleInfo(m.Role, m.Primary, m.MirrorStorage, m.PromotedIndex, m.IndexOffset, m.AppliedTimeNs,
                _s.AppliedIndex, _s.LogIndex);
        }
        finally
        {
            _lock.ExitReadLock();
        }
    }

    /// <summary>Primary index of the newest entry other than a mirror-progress record.</summary>
    public ulong LastChangeIndex
    {
        get
        {
            _lock.EnterReadLock();
            try
            {
                return _s.Mirror.LastChangeIndex;
            }
            finally
            {
                _lock.ExitReadLock();
            }
        }
    }

    /// <summary>The mirrors' progress as recorded in the state (durable), by id.</summary>
    public IReadOnlyList<MirrorInfo> MirrorProgressTable()
    {
        _lock.EnterReadLock();
        try
        {
            return [.. _s.Mirror.Progress.Select(p => new MirrorInfo
            {
                MirrorId = p.Key, AppliedIndex = p.Value.Applied, LastSeenNs = p.Value.LastSeenNs, RegisteredNs = p.Value.RegisteredNs,
            })];
        }
        finally
        {
            _lock.ExitReadLock();
        }
    }

    /// <summary>Completes once <see cref="LogicalIndex"/> is at least <paramref name="index"/>.</summary>
    public Task WaitForIndexAsync(ulong index, CancellationToken ct = default)
    {
        if (LogicalIndex >= index)
        {
            return Task.CompletedTask;
        }
        var tcs = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_waitersLock)
        {
            _indexWaiters.Enqueue(tcs, index);
            Interlocked.Increment(ref _waiterCount);
        }
        SignalIndexWaiters(); // the index may have moved between the check and the enqueue
        return tcs.Task.WaitAsync(ct);
    }

    private void SignalIndexWaiters()
    {
        if (Volatile.Read(ref _waiterCount) == 0)
        {
            return;
        }
        var logical = LogicalIndex;
        List<TaskCompletionSource>? done = null;
        lock (_waitersLock)
        {
            while (_indexWaiters.TryPeek(out var tcs, out var index) && index <= logical)
            {
                _indexWaiters.Dequeue();
                Interlocked.Decrement(ref _waiterCount);
                (done ??= []).Add(tcs);
            }
            // Waiters whose callers gave up stay until passed; bound them by dropping completed ones now and then.
            if (_indexWaiters.Count > 4096)
            {
                var keep = _indexWaiters.UnorderedItems.Where(x => !x.Element.Task.IsCompleted).ToList();
                _indexWaiters.Clear();
                foreach (var (t, i) in keep)
                {
                    _indexWaiters.Enqueue(t, i);
                }
                Volatile.Write(ref _waiterCount, _indexWaiters.Count);
            }
        }
        if (done is not null)
        {
            foreach (var tcs in done)
            {
                tcs.TrySetResult();
            }
        }
    }

    private void AfterRestore()
    {
        _s.Mirror.LastChangeIndex = _s.AppliedIndex;
        Volatile.Write(ref _logical, _s.AppliedIndex);
        Volatile.Write(ref _role, (int)_s.Mirror.Role);
        SignalIndexWaiters();
    }

    /// <summary>
    /// Applies own log entry <paramref name="index"/> (called under the write lock). Role commands act on the mirror
    /// part only. On a mirror everything else is refused without a change (its log holds only what its leader
    /// proposed: mirrored entries and Raft no-ops); on a primary the entry reflects primary index index + offset.
    /// </summary>
    private byte[] ApplyLogged(ulong index, Command? cmd, bool empty)
    {
        var m = _s.Mirror;
        byte[] reply;
        switch (cmd?.OpCase)
        {
            case Command.OpOneofCase.MirrorEntries:
                reply = ApplyMirrorEntries(cmd.MirrorEntries);
                break;
            case Command.OpOneofCase.MirrorBootstrap:
                reply = ApplyBootstrap(index, cmd.MirrorBootstrap);
                break;
            case Command.OpOneofCase.Promote:
                reply = ApplyPromote(index);
                break;
            case Command.OpOneofCase.MirrorSetup:
                reply = ApplySetup(cmd.MirrorSetup);
                break;
            default:
                if (m.Role == MirrorRole.Mirror)
                {
                    reply = ErrorReply(empty ? Errno.OK : ErofsErrno, _s.AppliedIndex);
                    break;
                }
                var logical = (ulong)((long)index + m.IndexOffset);
                _s.AppliedIndex = logical;
                reply = cmd is null ? ErrorReply(Errno.EINVAL, logical) : ApplyCommand(logical, cmd, empty);
                NoteChange(cmd, empty, logical);
                break;
        }
        Volatile.Write(ref _logical, _s.AppliedIndex);
        Volatile.Write(ref _role, (int)_s.Mirror.Role);
        SignalIndexWaiters();
        return reply;
    }

    private void NoteChange(Command? cmd, bool empty, ulong logical)
    {
        if (!empty && cmd?.OpCase != Command.OpOneofCase.MirrorProgress)
        {
            _s.Mirror.LastChangeIndex = logical;
        }
    }

    /// <summary>Primary entries in order: each applies exactly as it did on the primary, at its primary index.</summary>
    private byte[] ApplyMirrorEntries(MirrorEntriesRequest r)
    {
        var m = _s.Mirror;
        if (m.Role != MirrorRole.Mirror)
        {
            return new MirrorEntriesReply { Errno = Errno.EPERM, Index = _s.AppliedIndex }.ToByteArray();
        }
        if (r.FromIndex > _s.AppliedIndex + 1 || r.ThroughIndex < r.FromIndex)
        {
            // Entries between what is applied and the batch would be missing: refuse, every replica alike.
            return new MirrorEntriesReply { Errno = Errno.EINVAL, Index = _s.AppliedIndex }.ToByteArray();
        }
        uint applied = 0;
        foreach (var e in r.Entries)
        {
            if (e.Index <= _s.AppliedIndex || e.Index > r.ThroughIndex)
            {
                continue; // already applied (a retried or overlapping batch), or outside what the batch covers
            }
            Command? inner;
            try
            {
                inner = Command.Parser.ParseFrom(e.Command);
            }
            catch (InvalidProtocolBufferException)
            {
                inner = null; // the primary answered EINVAL to it and changed nothing else
            }
            _s.AppliedIndex = e.Index;
            if (inner is not null)
            {
                ApplyCommand(e.Index, inner, e.Command.IsEmpty);
                _session = null;
            }
            NoteChange(inner, e.Command.IsEmpty, e.Index);
            if (e.TimeNs != 0)
            {
                m.AppliedTimeNs = e.TimeNs;
            }
            applied++;
        }
        if (r.ThroughIndex > _s.AppliedIndex)
        {
            _s.AppliedIndex = r.ThroughIndex; // the primary's entries up to here were no-ops
        }
        return new MirrorEntriesReply { Index = _s.AppliedIndex, Applied = applied }.ToByteArray();
    }

    /// <summary>Adds a piece of a primary snapshot; the last piece replaces the shared state with it.</summary>
    private byte[] ApplyBootstrap(ulong index, MirrorBootstrapRequest r)
    {
        var m = _s.Mirror;
        if (m.Role != MirrorRole.Mirror)
        {
            return ErrorReply(Errno.EPERM, _s.AppliedIndex);
        }
        if (r.Offset == 0)
        {
            m.Staging = [];
            m.StagingIndex = r.PrimaryIndex;
            m.StagingTotal = r.TotalBytes;
            m.StagingBytes = 0;
        }
        if (m.Staging is null || m.StagingIndex != r.PrimaryIndex || m.StagingBytes != r.Offset || m.StagingTotal != r.TotalBytes
            || r.TotalBytes > (ulong)MirrorLimits.BootstrapBytesMax || r.Data.Length > MirrorLimits.BootstrapChunkBytesMax
            || m.StagingBytes + (ulong)r.Data.Length > r.TotalBytes)
        {
            m.Staging = null;
            return ErrorReply(Errno.EINVAL, _s.AppliedIndex);
        }
        if (!r.Data.IsEmpty)
        {
            m.Staging.Add(r.Data.ToByteArray());
            m.StagingBytes += (ulong)r.Data.Length;
        }
        if (!r.Last)
        {
            return ErrorReply(Errno.OK, _s.AppliedIndex);
        }
        var pieces = m.Staging;
        m.Staging = null;
        if (m.StagingBytes != m.StagingTotal)
        {
            return ErrorReply(Errno.EINVAL, _s.AppliedIndex);
        }
        MetaState s;
        try
        {
            using var input = new ConcatStream(pieces);
            using var reader = new SnapshotReader(input);
            s = Read(reader);
            reader.VerifyEnd();
        }
        catch (InvalidDataException)
        {
            return ErrorReply(Errno.EINVAL, _s.AppliedIndex); // every replica got the same bytes: all refuse alike
        }
        // The primary's shared state, with this cluster's own role and log position.
        var logical = s.AppliedIndex;
        s.LogIndex = index;
        s.AppliedIndex = logical;
        s.Mirror.Role = m.Role;
        s.Mirror.Primary = m.Primary;
        s.Mirror.MirrorStorage = m.MirrorStorage;
        s.Mirror.IndexOffset = 0;
        s.Mirror.PromotedIndex = 0;
        s.Mirror.AppliedTimeNs = s.LastTimeNs;
        s.Mirror.Staging = null;
        s.Mirror.LastChangeIndex = s.AppliedIndex;
        _s = s;
        return ErrorReply(Errno.OK, _s.AppliedIndex);
    }

    private byte[] ApplyPromote(ulong index)
    {
        var m = _s.Mirror;
        if (m.Role != MirrorRole.Mirror)
        {
            return new PromoteReply { Errno = Errno.EINVAL, Index = _s.AppliedIndex }.ToByteArray();
        }
        var reached = _s.AppliedIndex;
        m.Role = MirrorRole.Promoted;
        m.PromotedIndex = reached;
        m.IndexOffset = (long)reached - (long)index; // the next own entry reflects primary index reached + 1
        m.Staging = null;
        if (_s.Volume is not null && m.MirrorStorage.Length > 0)
        {
            // New blocks go to this region's bucket; the old primary's is only read when a block is missing here.
            _s.Volume.FallbackStorage = _s.Volume.Storage;
            _s.Volume.Storage = m.MirrorStorage;
        }
        return new PromoteReply { Index = reached, PrimaryIndex = reached }.ToByteArray();
    }

    private byte[] ApplySetup(MirrorSetupRequest r)
    {
        var m = _s.Mirror;
        if (r.Primary.Length is 0 or > MirrorLimits.UriBytesMax || r.MirrorStorage.Length > MirrorLimits.UriBytesMax)
        {
            return ErrorReply(Errno.EINVAL, _s.AppliedIndex);
        }
        switch (m.Role)
        {
            case MirrorRole.Promoted:
                return ErrorReply(Errno.EPERM, _s.AppliedIndex);
            case MirrorRole.None when _s.Volume is not null || _s.Inodes.Count > 0:
                return ErrorReply(Errno.EEXIST, _s.AppliedIndex); // this cluster holds a primary volume of its own
        }
        m.Role = MirrorRole.Mirror;
        m.Primary = r.Primary;
        m.MirrorStorage = r.MirrorStorage;
        return ErrorReply(Errno.OK, _s.AppliedIndex);
    }

    /// <summary>The primary's record of its mirrors' progress (an ordinary replicated command).</summary>
    private HeartbeatReply MirrorProgress(MirrorProgressRequest r)
    {
        var table = _s.Mirror.Progress;
        foreach (var info in r.Mirrors)
        {
            if (info.MirrorId.Length is 0 or > MirrorLimits.MirrorIdBytesMax)
            {
                continue;
            }
            if (table.TryGetValue(info.MirrorId, out var old))
            {
                table[info.MirrorId] = new MirrorProgressRec(Math.Max(old.Applied, info.AppliedIndex),
                    Math.Max(old.LastSeenNs, info.LastSeenNs), old.RegisteredNs);
            }
            else if (table.Count < MirrorLimits.MirrorsMax)
            {
                table.Add(info.MirrorId, new MirrorProgressRec(info.AppliedIndex, info.LastSeenNs,
                    info.RegisteredNs != 0 ? info.RegisteredNs : _now));
            }
        }
        return new HeartbeatReply();
    }

    /// <summary>Whether every mirror the state records has applied the entry at primary index <paramref name="index"/>
    /// (true with no mirror): a slice released by that entry may then leave the buckets. Deterministic (state only),
    /// so apply may use it; call with the state lock held (read or write).</summary>
    internal bool MirrorsApplied(ulong index)
    {
        foreach (var p in _s.Mirror.Progress.Values)
        {
            if (p.Applied < index)
            {
                return false;
            }
        }
        return true;
    }

    /// <summary>Lowest applied index over the mirrors the state records; <see cref="ulong.MaxValue"/> when none.</summary>
    public ulong MinMirrorApplied()
    {
        _lock.EnterReadLock();
        try
        {
            return _s.Mirror.Progress.Count == 0 ? ulong.MaxValue : _s.Mirror.Progress.Values.Min(p => p.Applied);
        }
        finally
        {
            _lock.ExitReadLock();
        }
    }

    /// <summary>
    /// Writes the state as a primary would see it: the snapshot layout with the primary index in the index slot and
    /// this cluster's local mirror fields left out. A mirror and its primary at the same primary index write the same
    /// bytes (how tests and verify tools compare them).
    /// </summary>
    /// <returns>The primary index written.</returns>
    public ulong WriteComparableSnapshot(Stream output)
    {
        _lock.EnterReadLock();
        try
        {
            using var w = new SnapshotWriter(output);
            Write(_s, w, comparable: true);
            w.Finish();
            return _s.AppliedIndex;
        }
        finally
        {
            _lock.ExitReadLock();
        }
    }

    /// <summary>Writes a snapshot (as <see cref="WriteSnapshot"/>) and returns the primary index it reflects.</summary>
    public ulong WriteSnapshotAt(Stream output)
    {
        _lock.EnterReadLock();
        try
        {
            using var w = new SnapshotWriter(output);
            Write(_s, w, comparable: false);
            w.Finish();
            return _s.AppliedIndex;
        }
        finally
        {
            _lock.ExitReadLock();
        }
    }

    private static bool HasMirrorData(MetaState s) =>
        s.Mirror.Role != MirrorRole.None || s.Mirror.Progress.Count > 0 || s.Mirror.IndexOffset != 0
        || s.AppliedIndex != s.LogIndex || s.Mirror.Staging is not null;

    /// <summary>
    /// Snapshot v3 mirror section (tag 4): primary index, role, primary, mirror storage, index offset (signed), promoted
    /// index, applied time (signed); progress count, (id, applied, last seen (signed), registered (signed))... in id
    /// order; staging present (0/1) [, index, total, piece count, pieces (bytes)...]. Comparable form: role 0, empty
    /// strings and zeros for the local fields, no staging.
    /// </summary>
    private static void WriteMirrorSection(MetaState s, SnapshotWriter w, bool comparable)
    {
        var m = s.Mirror;
        w.WriteVarint(s.AppliedIndex);
        w.WriteVarint(comparable ? 0 : (ulong)m.Role);
        w.WriteBytes(comparable ? [] : System.Text.Encoding.UTF8.GetBytes(m.Primary));
        w.WriteBytes(comparable ? [] : System.Text.Encoding.UTF8.GetBytes(m.MirrorStorage));
        w.WriteSigned(comparable ? 0 : m.IndexOffset);
        w.WriteVarint(comparable ? 0 : m.PromotedIndex);
        w.WriteSigned(comparable ? 0 : m.AppliedTimeNs);
        w.WriteVarint((ulong)m.Progress.Count);
        foreach (var (id, p) in m.Progress)
        {
            w.WriteBytes(System.Text.Encoding.UTF8.GetBytes(id));
            w.WriteVarint(p.Applied);
            w.WriteSigned(p.LastSeenNs);
            w.WriteSigned(p.RegisteredNs);
        }
        if (comparable || m.Staging is null)
        {
            w.WriteVarint(0);
            return;
        }
        w.WriteVarint(1);
        w.WriteVarint(m.StagingIndex);
        w.WriteVarint(m.StagingTotal);
        w.WriteVarint((ulong)m.Staging.Count);
        foreach (var piece in m.Staging)
        {
            w.WriteBytes(piece);
        }
    }

    private static void ReadMirrorSection(MetaState s, SnapshotReader r)
    {
        var m = s.Mirror;
        s.AppliedIndex = r.ReadVarint();
        var role = r.ReadVarint();
        m.Role = role <= (ulong)MirrorRole.Promoted ? (MirrorRole)role : throw Corrupt("unknown mirror role");
        m.Primary = System.Text.Encoding.UTF8.GetString(r.ReadBytes(MirrorLimits.UriBytesMax));
        m.MirrorStorage = System.Text.Encoding.UTF8.GetString(r.ReadBytes(MirrorLimits.UriBytesMax));
        m.IndexOffset = r.ReadSigned();
        m.PromotedIndex = r.ReadVarint();
        m.AppliedTimeNs = r.ReadSigned();
        var n = r.ReadCount(MirrorLimits.MirrorsMax);
        for (var i = 0; i < n; i++)
        {
            var id = System.Text.Encoding.UTF8.GetString(r.ReadBytes(MirrorLimits.MirrorIdBytesMax));
            if (!m.Progress.TryAdd(id, new MirrorProgressRec(r.ReadVarint(), r.ReadSigned(), r.ReadSigned())))
            {
                throw Corrupt("duplicate mirror id");
            }
        }
        if (r.ReadVarint() == 0)
        {
            return;
        }
        m.StagingIndex = r.ReadVarint();
        m.StagingTotal = r.ReadVarint();
        var pieces = r.ReadCount(int.MaxValue / 2);
        m.Staging = new List<byte[]>(Math.Min(pieces, 1024));
        for (var i = 0; i < pieces; i++)
        {
            var piece = r.ReadBytes(MirrorLimits.BootstrapChunkBytesMax);
            m.Staging.Add(piece);
            m.StagingBytes += (ulong)piece.Length;
        }
    }

    /// <summary>Reads a list of byte arrays as one stream, without copying them together.</summary>
    private sealed class ConcatStream(List<byte[]> pieces) : Stream
    {
        private int _piece;
        private int _offset;

        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => false;

        public override long Length => throw new NotSupportedException();

        public override long Position
        {
            get => throw new NotSupportedException();
            set => throw new NotSupportedException();
        }

        public override int Read(byte[] buffer, int offset, int count)
        {
            while (_piece < pieces.Count && _offset == pieces[_piece].Length)
            {
                _piece++;
                _offset = 0;
            }
            if (_piece == pieces.Count)
            {
                return 0;
            }
            var n = Math.Min(count, pieces[_piece].Length - _offset);
            Buffer.BlockCopy(pieces[_piece], _offset, buffer, offset, n);
            _offset += n;
            return n;
        }

        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}
