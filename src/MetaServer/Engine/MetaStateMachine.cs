// The deterministic metadata state machine: applies Command records (exactly once per session seq) and serves reads.
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Google.Protobuf;
using MirrorFS.Core.Meta;
using MirrorFS.MetaServer.Consensus;

namespace MirrorFS.MetaServer.Engine;

/// <summary>
/// POSIX metadata as ext4/tmpfs behave, driven only by log entries: <see cref="Apply"/> uses the state and the
/// command (its prepared time and ids), never a clock, randomness or I/O. Reads run concurrently with each other
/// and are serialized against Apply by a reader/writer lock.
/// </summary>
public sealed partial class MetaStateMachine : IStateMachine, IDisposable
{
    private readonly ReaderWriterLockSlim _lock = new(LockRecursionPolicy.NoRecursion);
    private MetaState _s = new();
    private ulong _applied;

    // Context of the command being applied (valid only inside Apply).
    private long _now;
    private ulong _index;
    private Session? _session;

    public ulong AppliedIndex => Volatile.Read(ref _applied);

    public byte[] Apply(ulong index, ReadOnlySpan<byte> command)
    {
        Command? cmd;
        try
        {
            cmd = Command.Parser.ParseFrom(command);
        }
        catch (InvalidProtocolBufferException)
        {
            cmd = null; // a malformed entry must not stop the log: every replica answers EINVAL alike
        }
        _lock.EnterWriteLock();
        try
        {
            if (index <= _s.AppliedIndex)
            {
                throw new InvalidOperationException(
                    $"log entry {index} applied after entry {_s.AppliedIndex}; the log must apply entries once, in order");
            }
            _s.AppliedIndex = index;
            var reply = cmd is null ? ErrorReply(Errno.EINVAL, index) : ApplyCommand(index, cmd, command.IsEmpty);
            Volatile.Write(ref _applied, index);
            return reply;
        }
        finally
        {
            _session = null;
            _lock.ExitWriteLock();
        }
    }

    /// <summary>Every reply message begins with errno (1) and index (2), so this decodes as any reply type.</summary>
    private static byte[] ErrorReply(int errno, ulong index) =>
        new HeartbeatReply { Errno = errno, Index = index }.ToByteArray();

    private byte[] ApplyCommand(ulong index, Command cmd, bool empty)
    {
        _now = cmd.NowNs;
        _index = index;
        if (_now > _s.LastTimeNs)
        {
            _s.LastTimeNs = _now;
        }
        var op = cmd.OpCase;
        if (op == Command.OpOneofCase.None)
        {
            return ErrorReply(empty ? Errno.OK : Errno.ENOSYS, index);
        }
        if (cmd.SessionId != 0 && op is not (Command.OpOneofCase.NewSession or Command.OpOneofCase.ExpireSessions))
        {
            if (!_s.Sessions.TryGetValue(cmd.SessionId, out var s))
            {
                return ErrorReply(op == Command.OpOneofCase.CloseSession ? Errno.OK : Errno.ENOTCONN, index);
            }
            _session = s;
            if (_now > s.LastActiveNs)
            {
                s.LastActiveNs = _now;
            }
            if (cmd.AckedSeq > s.AckedSeq)
            {
                s.AckedSeq = cmd.AckedSeq;
                ForgetAckedReplies(s);
            }
            if (cmd.Seq != 0)
            {
                if (s.Replies is not null && s.Replies.TryGetValue(cmd.Seq, out var cached))
                {
                    return cached;
                }
                if (cmd.Seq <= s.AckedSeq)
                {
                    return ErrorReply(Errno.EALREADY, index);
                }
            }
        }

        var reply = Dispatch(cmd);
        reply.Index = index;
        var bytes = ((IMessage)reply).ToByteArray();
        if (_session is not null && cmd.Seq != 0 && _s.Sessions.ContainsKey(_session.Id))
        {
            Remember(_session, cmd.Seq, bytes);
        }
        return bytes;
    }

    private static void ForgetAckedReplies(Session s)
    {
        if (s.Replies is null)
        {
            return;
        }
        List<ulong>? drop = null;
        foreach (var seq in s.Replies.Keys)
        {
            if (seq <= s.AckedSeq)
            {
                (drop ??= []).Add(seq);
            }
        }
        if (drop is not null)
        {
            foreach (var seq in drop)
            {
                s.Replies.Remove(seq);
            }
        }
    }

    private static void Remember(Session s, ulong seq, byte[] reply)
    {
        var replies = s.Replies ??= [];
        replies[seq] = reply;
        if (replies.Count > MetaLimits.ReplyCacheEntriesMax)
        {
            // A client that never acks still gets exactly-once for its most recent calls.
            replies.Remove(replies.Keys.Min());
        }
    }

    private IMetaReply Dispatch(Command cmd)
    {
        Attr? attr;
        int e;
        switch (cmd.OpCase)
        {
            case Command.OpOneofCase.SetAttr:
                e = SetAttr(cmd.SetAttr, out attr);
                return new SetAttrReply { Errno = e, Attr = attr };
            case Command.OpOneofCase.Mknod:
                e = Mknod(cmd, cmd.Mknod, out attr);
                return new MknodReply { Errno = e, Attr = attr };
            case Command.OpOneofCase.Create:
                e = Create(cmd, cmd.Create, out attr);
                return new CreateReply { Errno = e, Attr = attr };
            case Command.OpOneofCase.Mkdir:
                e = Mkdir(cmd, cmd.Mkdir, out attr);
                return new MkdirReply { Errno = e, Attr = attr };
            case Command.OpOneofCase.Unlink:
                return new UnlinkReply { Errno = Unlink(cmd.Unlink) };
            case Command.OpOneofCase.Rmdir:
                return new RmdirReply { Errno = Rmdir(cmd.Rmdir) };
            case Command.OpOneofCase.Rename:
                return new RenameReply { Errno = Rename(cmd.Rename) };
            case Command.OpOneofCase.Link:
                e = Link(cmd.Link, out attr);
                return new LinkReply { Errno = e, Attr = attr };
            case Command.OpOneofCase.Symlink:
                e = Symlink(cmd, cmd.Symlink, out attr);
                return new SymlinkReply { Errno = e, Attr = attr };
            case Command.OpOneofCase.Open:
                e = Open(cmd.Open, out attr);
                return new OpenReply { Errno = e, Attr = attr };
            case Command.OpOneofCase.Release:
                return new ReleaseReply { Errno = Release(cmd.Release) };
            case Command.OpOneofCase.SetXattr:
                return new SetXattrReply { Errno = SetXattr(cmd.SetXattr) };
            case Command.OpOneofCase.RemoveXattr:
                return new RemoveXattrReply { Errno = RemoveXattr(cmd.RemoveXattr) };
            case Command.OpOneofCase.Fallocate:
                e = Fallocate(cmd.Fallocate, out attr);
                return new FallocateReply { Errno = e, Attr = attr };
            case Command.OpOneofCase.NewSliceIds:
                return NewSliceIds(cmd, cmd.NewSliceIds);
            case Command.OpOneofCase.WriteSlice:
                e = WriteSlice(cmd.WriteSlice, out attr);
                return new WriteSliceReply { Errno = e, Attr = attr };
            case Command.OpOneofCase.Truncate:
                e = Truncate(cmd.Truncate, out attr);
                return new TruncateReply { Errno = e, Attr = attr };
            case Command.OpOneofCase.NewSession:
                return NewSession(cmd, cmd.NewSession);
            case Command.OpOneofCase.Heartbeat:
                return new HeartbeatReply { Errno = _session is null ? Errno.EINVAL : Errno.OK };
            case Command.OpOneofCase.CloseSession:
                if (_session is not null)
                {
                    CloseSession(_session);
                }
                return new CloseSessionReply();
            case Command.OpOneofCase.ExpireSessions:
                return ExpireSessions(cmd.ExpireSessions);
            case Command.OpOneofCase.Format:
                return Format(cmd.Format);
            case Command.OpOneofCase.ConfirmDeletes:
                return ConfirmDeletes(cmd.ConfirmDeletes);
            case Command.OpOneofCase.CompactChunk:
                return CompactChunk(cmd.CompactChunk);
            default:
                return new HeartbeatReply { Errno = Errno.ENOSYS };
        }
    }

    // ---- helpers shared by the operations ----

    private ref InodeRec Rec(ulong ino) => ref CollectionsMarshal.GetValueRefOrNullRef(_s.Inodes, ino);

    private static bool IsRoot(Credentials? c) => c is null || c.Uid == 0;

    private static uint UidOf(Credentials? c) => c?.Uid ?? 0;

    private static uint GidOf(Credentials? c) => c?.Gid ?? 0;

    private static bool InGroup(Credentials? c, uint gid) => c is null ? gid == 0 : c.Gid == gid || c.Gids.Contains(gid);

    private static bool InGroupOrRoot(Credentials? c, uint gid) => IsRoot(c) || InGroup(c, gid);

    private static bool IsOwnerOrRoot(Credentials? c, in InodeRec r) => IsRoot(c) || c!.Uid == r.Uid;

    internal static ulong Align4K(ulong size) => (size + 4095) & ~4095UL;

    /// <summary>Validates one path component: ENOENT if empty, ENAMETOOLONG if over 255 bytes, EINVAL with '/' or NUL.</summary>
    private static int CheckName(ReadOnlySpan<byte> name)
    {
        if (name.IsEmpty)
        {
            return Errno.ENOENT;
        }
        if (name.Length > MetaLimits.NameBytesMax)
        {
            return Errno.ENAMETOOLONG;
        }
        return name.IndexOfAny((byte)'/', (byte)0) >= 0 ? Errno.EINVAL : Errno.OK;
    }

    /// <summary>1 for ".", 2 for "..", else 0.</summary>
    private static int Dots(ReadOnlySpan<byte> name) =>
        name.Length switch
        {
            1 when name[0] == '.' => 1,
            2 when name[0] == '.' && name[1] == '.' => 2,
            _ => 0,
        };

    private int ParentDir(ulong parent, out DirTable dir)
    {
        dir = null!;
        ref var p = ref Rec(parent);
        if (Unsafe.IsNullRef(ref p))
        {
            return Errno.ENOENT;
        }
        if (!p.IsDir)
        {
            return Errno.ENOTDIR;
        }
        dir = _s.Dirs[parent];
        return Errno.OK;
    }

    private static Attr ToAttr(ulong ino, in InodeRec r)
    {
        var type = PosixMode.Type(r.Mode);
        return new Attr
        {
            Inode = ino,
            Mode = r.Mode,
            Uid = r.Uid,
            Gid = r.Gid,
            Nlink = r.Nlink,
            Size = r.Size,
            Rdev = type is PosixMode.Char or PosixMode.Block ? r.Aux : 0,
            AtimeNs = r.Atime,
            MtimeNs = r.Mtime,
            CtimeNs = r.Ctime,
            Blocks = type switch
            {
                PosixMode.Regular => Align4K(r.Size) / 512,
                PosixMode.Directory => MetaLimits.DirSizeBytes / 512,
                _ => 0,
            },
            Parent = type == PosixMode.Directory ? r.Aux : 0,
        };
    }

    private void TouchDir(ulong dir, int nlinkDelta)
    {
        ref var d = ref Rec(dir);
        d.Mtime = _now;
        d.Ctime = _now;
        d.Nlink = (uint)(d.Nlink + nlinkDelta);
    }

    /// <summary>EPERM rule of a sticky directory: only the file's owner, the directory's owner or root may remove or rename an entry.</summary>
    private static bool StickyDenies(in InodeRec dir, in InodeRec victim, Credentials? c) =>
        (dir.Mode & PosixMode.Sticky) != 0 && !IsRoot(c) && c!.Uid != victim.Uid && c.Uid != dir.Uid;

    /// <summary>A write or truncate by a non-root caller clears S_ISUID, and S_ISGID when group-exec is set (Linux should_remove_suid).</summary>
    private static bool KillSuidOnWrite(ref InodeRec r, Credentials? c)
    {
        if (IsRoot(c) || !r.IsRegular)
        {
            return false;
        }
        var m = r.Mode & ~PosixMode.SetUid;
        if ((m & (PosixMode.SetGid | PosixMode.GroupExec)) == (PosixMode.SetGid | PosixMode.GroupExec))
        {
            m &= ~PosixMode.SetGid;
        }
        var changed = m != r.Mode;
        r.Mode = m;
        return changed;
    }

    private bool InodesExhausted() =>
        _s.Volume is { InodesMax: > 0 } v && _s.InodeCount >= v.InodesMax;

    /// <summary>Whether growing a regular file from <paramref name="oldSize"/> to <paramref name="newSize"/> exceeds the capacity.</summary>
    private bool NoSpace(ulong oldSize, ulong newSize)
    {
        if (_s.Volume is not { CapacityBytes: > 0 } v || Align4K(newSize) <= Align4K(oldSize))
        {
            return false;
        }
        return _s.UsedBytes - Align4K(oldSize) + Align4K(newSize) > v.CapacityBytes;
    }

    /// <summary>
    /// The id a command gets: the leader's prepared one, unless a number at or above it was already handed out
    /// (entries reordered between prepare and append, or a new leader whose state lagged its log); then the next
    /// unused one from the state's counter. Either way ids only grow, are never reused, and every replica agrees.
    /// </summary>
    private static ulong Claim(ref ulong next, ulong prepared, ulong count)
    {
        var id = Math.Max(prepared, next);
        next = id + count;
        return id;
    }

    private ulong ClaimInode(Command cmd) => Claim(ref _s.NextInode, cmd.NewInode, 1);

    /// <summary>Removes an inode and everything hanging off it; its slices go to the pending-delete list.</summary>
    private void DeleteInode(ulong ino)
    {
        var r = _s.Inodes[ino];
        if (r.IsRegular)
        {
            DropChunks(ino, r.Size, 0);
            _s.UsedBytes -= Align4K(r.Size);
        }
        _s.Inodes.Remove(ino);
        _s.InodeCount--;
        _s.Dirs.Remove(ino);
        _s.Symlinks.Remove(ino);
        _s.Xattrs.Remove(ino);
    }

    /// <summary>Drops one link of a non-directory; deletes it when no link and no open handle remain.</summary>
    private void DropLink(ulong ino)
    {
        ref var r = ref Rec(ino);
        r.Nlink--;
        r.Ctime = _now;
        if (r.Nlink == 0 && !_s.OpenCounts.ContainsKey(ino))
        {
            DeleteInode(ino);
        }
    }

    /// <summary>Sets a regular file's size: drops data beyond a smaller size and keeps the used-space counter.</summary>
    private void Resize(ulong ino, ref InodeRec r, ulong newSize)
    {
        if (newSize < r.Size)
        {
            DropChunks(ino, r.Size, newSize);
        }
        _s.UsedBytes = _s.UsedBytes - Align4K(r.Size) + Align4K(newSize);
        r.Size = newSize;
    }

    private void DropChunks(ulong ino, ulong oldSize, ulong newSize)
    {
        if (oldSize == 0)
        {
            return;
        }
        const ulong chunk = MetaLimits.ChunkBytes;
        var last = (oldSize - 1) / chunk;
        var firstWhole = (newSize + chunk - 1) / chunk;
        var cut = (uint)(newSize % chunk);
        if (cut != 0)
        {
            TrimChunk(new ChunkKey(ino, (uint)(newSize / chunk)), cut);
        }
        if (firstWhole > last)
        {
            return;
        }
        if (last - firstWhole < (ulong)_s.Chunks.Count)
        {
            for (var i = firstWhole; i <= last; i++)
            {
                RemoveChunk(new ChunkKey(ino, (uint)i));
            }
            return;
        }
        // A huge sparse range: scanning the table is cheaper than probing every index.
        var keys = new List<ChunkKey>();
        foreach (var k in _s.Chunks.Keys)
        {
            if (k.Inode == ino && k.Index >= firstWhole)
            {
                keys.Add(k);
            }
        }
        keys.Sort();
        foreach (var k in keys)
        {
            RemoveChunk(k);
        }
    }

    private void RemoveChunk(ChunkKey key)
    {
        if (_s.Chunks.Remove(key, out var slices))
        {
            foreach (var sl in slices)
            {
                AddPending(sl);
            }
        }
    }

    /// <summary>Cuts a chunk at <paramref name="cut"/>: later slices are dropped, straddling ones shortened.</summary>
    private void TrimChunk(ChunkKey key, uint cut)
    {
        if (!_s.Chunks.TryGetValue(key, out var slices))
        {
            return;
        }
        var kept = 0;
        for (var i = 0; i < slices.Count; i++)
        {
            var sl = slices[i];
            if (sl.Pos >= cut)
            {
                AddPending(sl);
                continue;
            }
            if (sl.Pos + sl.Length > cut)
            {
                sl = sl with { Length = cut - sl.Pos };
            }
            slices[kept++] = sl;
        }
        slices.RemoveRange(kept, slices.Count - kept);
        if (kept == 0)
        {
            _s.Chunks.Remove(key);
        }
    }

    private void AddPending(SliceRec sl)
    {
        if (sl.Id != 0)
        {
            _s.Pending.TryAdd(sl.Id, new PendingSlice(sl.Id, sl.Size, _index, _now));
        }
    }

    public void Dispose() => _lock.Dispose();
}
