// Data-side, xattr, session and volume operations of the state machine.
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Google.Protobuf;
using MirrorFS.Core.Meta;

namespace MirrorFS.MetaServer.Engine;

public sealed partial class MetaStateMachine
{
    private NewSliceIdsReply NewSliceIds(Command cmd, NewSliceIdsRequest r)
    {
        if (r.Count == 0 || r.Count > MetaLimits.NewSliceIdsCountMax)
        {
            return new NewSliceIdsReply { Errno = Errno.EINVAL };
        }
        return new NewSliceIdsReply { FirstId = Claim(ref _s.NextSliceId, cmd.NewId, r.Count), Count = r.Count };
    }

    private int WriteSlice(WriteSliceRequest r, out Attr? attr)
    {
        attr = null;
        ref var rec = ref Rec(r.Inode);
        if (Unsafe.IsNullRef(ref rec))
        {
            return Errno.ENOENT;
        }
        if (rec.IsDir)
        {
            return Errno.EISDIR;
        }
        var sl = r.Slice;
        if (!rec.IsRegular || sl is null || sl.Id == 0 || sl.Id >= _s.NextSliceId || sl.Length == 0
            || (ulong)sl.Offset + sl.Length > sl.Size || sl.Size > MetaLimits.ChunkBytes
            || (ulong)sl.Pos + sl.Length > MetaLimits.ChunkBytes)
        {
            return Errno.EINVAL;
        }
        var end = ((ulong)r.ChunkIndex * MetaLimits.ChunkBytes) + sl.Pos + sl.Length;
        var newSize = Math.Max(end, rec.Size);
        if (NoSpace(rec.Size, newSize))
        {
            return Errno.ENOSPC;
        }
        if (OverQuota(r.Inode, rec.Size, newSize))
        {
            return Errno.EDQUOT;
        }
        ref var list = ref CollectionsMarshal.GetValueRefOrAddDefault(_s.Chunks, new ChunkKey(r.Inode, r.ChunkIndex), out _);
        (list ??= new List<SliceRec>(1)).Add(new SliceRec(sl.Id, sl.Size, sl.Offset, sl.Length, sl.Pos));
        Resize(r.Inode, ref rec, newSize);
        rec.Mtime = _now;
        rec.Ctime = _now;
        KillSuidOnWrite(ref rec, r.Cred);
        attr = ToAttr(r.Inode, rec);
        return Errno.OK;
    }

    private int Truncate(TruncateRequest r, out Attr? attr)
    {
        attr = null;
        ref var rec = ref Rec(r.Inode);
        if (Unsafe.IsNullRef(ref rec))
        {
            return Errno.ENOENT;
        }
        if (rec.IsDir)
        {
            return Errno.EISDIR;
        }
        if (!rec.IsRegular)
        {
            return Errno.EINVAL;
        }
        if (r.Size > MetaLimits.FileSizeBytesMax)
        {
            return Errno.EFBIG;
        }
        if (NoSpace(rec.Size, r.Size))
        {
            return Errno.ENOSPC;
        }
        if (OverQuota(r.Inode, rec.Size, r.Size))
        {
            return Errno.EDQUOT;
        }
        var killed = KillSuidOnWrite(ref rec, r.Cred);
        if (r.Size != rec.Size)
        {
            Resize(r.Inode, ref rec, r.Size);
            rec.Mtime = _now;
            rec.Ctime = _now;
        }
        else if (killed)
        {
            rec.Ctime = _now;
        }
        attr = ToAttr(r.Inode, rec);
        return Errno.OK;
    }

    private int Fallocate(FallocateRequest r, out Attr? attr)
    {
        attr = null;
        const uint keepSize = (uint)FallocateMode.KeepSize;
        const uint punch = (uint)FallocateMode.PunchHole;
        const uint zero = (uint)FallocateMode.ZeroRange;
        if ((r.Mode & ~(keepSize | punch | zero)) != 0 || (r.Mode & (punch | zero)) == (punch | zero)
            || ((r.Mode & punch) != 0 && (r.Mode & keepSize) == 0))
        {
            return Errno.EOPNOTSUPP;
        }
        if (r.Length == 0 || r.Offset > long.MaxValue || r.Length > long.MaxValue)
        {
            return Errno.EINVAL;
        }
        ref var rec = ref Rec(r.Inode);
        if (Unsafe.IsNullRef(ref rec))
        {
            return Errno.ENOENT;
        }
        switch (PosixMode.Type(rec.Mode))
        {
            case PosixMode.Regular:
                break;
            case PosixMode.Directory:
                return Errno.EISDIR;
            case PosixMode.Fifo:
                return Errno.ESPIPE;
            default:
                return Errno.ENODEV;
        }
        var end = r.Offset + r.Length;
        if (end > MetaLimits.FileSizeBytesMax)
        {
            return Errno.EFBIG;
        }
        var newSize = (r.Mode & keepSize) == 0 && end > rec.Size ? end : rec.Size;
        if (NoSpace(rec.Size, newSize))
        {
            return Errno.ENOSPC;
        }
        if (OverQuota(r.Inode, rec.Size, newSize))
        {
            return Errno.EDQUOT;
        }
        if ((r.Mode & (punch | zero)) != 0)
        {
            // Holes are slices with id 0 layered on top: reads see zeros there. Beyond the old size reads are zeros anyway.
            var stop = Math.Min(end, rec.Size);
            for (var off = r.Offset; off < stop;)
            {
                var index = off / MetaLimits.ChunkBytes;
                var pos = (uint)(off % MetaLimits.ChunkBytes);
                var len = (uint)Math.Min(MetaLimits.ChunkBytes - pos, stop - off);
                ref var list = ref CollectionsMarshal.GetValueRefOrAddDefault(_s.Chunks, new ChunkKey(r.Inode, (uint)index), out _);
                (list ??= new List<SliceRec>(1)).Add(new SliceRec(0, len, 0, len, pos));
                off += len;
            }
        }
        Resize(r.Inode, ref rec, newSize);
        rec.Mtime = _now;
        rec.Ctime = _now;
        KillSuidOnWrite(ref rec, r.Cred);
        attr = ToAttr(r.Inode, rec);
        return Errno.OK;
    }

    // ---- extended attributes ----

    private enum XattrSpace { User, Trusted, Security, Unsupported }

    private static XattrSpace SpaceOf(ReadOnlySpan<byte> name, out bool prefixOnly)
    {
        ReadOnlySpan<byte> user = "user."u8;
        ReadOnlySpan<byte> trusted = "trusted."u8;
        ReadOnlySpan<byte> security = "security."u8;
        prefixOnly = false;
        if (name.StartsWith(user))
        {
            prefixOnly = name.Length == user.Length;
            return XattrSpace.User;
        }
        if (name.StartsWith(trusted))
        {
            prefixOnly = name.Length == trusted.Length;
            return XattrSpace.Trusted;
        }
        if (name.StartsWith(security))
        {
            prefixOnly = name.Length == security.Length;
            return XattrSpace.Security;
        }
        return XattrSpace.Unsupported;
    }

    /// <summary>Linux xattr_permission and handler lookup, in that order; returns OK or the errno.</summary>
    private static int XattrAccess(ReadOnlySpan<byte> name, in InodeRec rec, Credentials? c, bool write)
    {
        var space = SpaceOf(name, out var prefixOnly);
        if (space == XattrSpace.Trusted && !IsRoot(c))
        {
            return write ? Errno.EPERM : Errno.ENODATA;
        }
        if (space == XattrSpace.User)
        {
            if (!rec.IsRegular && !rec.IsDir)
            {
                return write ? Errno.EPERM : Errno.ENODATA;
            }
            if (write && rec.IsDir && (rec.Mode & PosixMode.Sticky) != 0 && !IsOwnerOrRoot(c, rec))
            {
                return Errno.EPERM;
            }
        }
        if (space == XattrSpace.Unsupported)
        {
            return Errno.EOPNOTSUPP;
        }
        return prefixOnly ? Errno.EINVAL : Errno.OK;
    }

    private static int CheckXattrName(ByteString name) =>
        name.IsEmpty || name.Length > MetaLimits.XattrNameBytesMax ? Errno.ERANGE : Errno.OK;

    private static int FindXattr(List<XattrRec>? list, ReadOnlySpan<byte> name)
    {
        if (list is null)
        {
            return -1;
        }
        for (var i = 0; i < list.Count; i++)
        {
            if (name.SequenceEqual(list[i].Name))
            {
                return i;
            }
        }
        return -1;
    }

    private int SetXattr(SetXattrRequest r)
    {
        var e = CheckXattrName(r.Name);
        if (e != Errno.OK)
        {
            return e;
        }
        if (r.Value.Length > MetaLimits.XattrValueBytesMax)
        {
            return Errno.E2BIG;
        }
        const uint create = (uint)XattrFlag.Create;
        const uint replace = (uint)XattrFlag.Replace;
        if ((r.Flags & ~(create | replace)) != 0)
        {
            return Errno.EINVAL;
        }
        ref var rec = ref Rec(r.Inode);
        if (Unsafe.IsNullRef(ref rec))
        {
            return Errno.ENOENT;
        }
        var name = r.Name.Span;
        if ((e = XattrAccess(name, rec, r.Cred, write: true)) != Errno.OK)
        {
            return e;
        }
        _s.Xattrs.TryGetValue(r.Inode, out var list);
        var i = FindXattr(list, name);
        if (i >= 0 && (r.Flags & create) != 0)
        {
            return Errno.EEXIST;
        }
        if (i < 0 && (r.Flags & replace) != 0)
        {
            return Errno.ENODATA;
        }
        long total = 0;
        if (list is not null)
        {
            for (var j = 0; j < list.Count; j++)
            {
                total += j == i ? 0 : list[j].Name.Length + list[j].Value.Length;
            }
        }
        if (total + r.Name.Length + r.Value.Length > MetaLimits.XattrBytesMaxPerInode)
        {
            return Errno.ENOSPC;
        }
        var x = new XattrRec(r.Name.ToByteArray(), r.Value.ToByteArray());
        if (i >= 0)
        {
            list![i] = x;
        }
        else
        {
            if (list is null)
            {
                list = new List<XattrRec>(1);
                _s.Xattrs.Add(r.Inode, list);
            }
            list.Add(x);
        }
        rec.Ctime = _now;
        return Errno.OK;
    }

    private int RemoveXattr(RemoveXattrRequest r)
    {
        var e = CheckXattrName(r.Name);
        if (e != Errno.OK)
        {
            return e;
        }
        ref var rec = ref Rec(r.Inode);
        if (Unsafe.IsNullRef(ref rec))
        {
            return Errno.ENOENT;
        }
        var name = r.Name.Span;
        if ((e = XattrAccess(name, rec, r.Cred, write: true)) != Errno.OK)
        {
            return e;
        }
        _s.Xattrs.TryGetValue(r.Inode, out var list);
        var i = FindXattr(list, name);
        if (i < 0)
        {
            return Errno.ENODATA;
        }
        list!.RemoveAt(i);
        if (list.Count == 0)
        {
            _s.Xattrs.Remove(r.Inode);
        }
        rec.Ctime = _now;
        return Errno.OK;
    }

    // ---- sessions ----

    private NewSessionReply NewSession(Command cmd, NewSessionRequest r)
    {
        var id = Claim(ref _s.NextSessionId, cmd.NewId, 1);
        var info = r.Info?.ToByteArray() ?? [];
        if (info.Length > MetaLimits.SessionInfoBytesMax)
        {
            return new NewSessionReply { Errno = Errno.EINVAL };
        }
        if (_s.Sessions.Count >= MetaLimits.SessionsMax)
        {
            return new NewSessionReply { Errno = Errno.ENOSPC };
        }
        _s.Sessions.Add(id, new Session(id, info, _now));
        return new NewSessionReply { SessionId = id };
    }

    /// <summary>Releases every open file of the session (in inode order) and forgets it.</summary>
    private void CloseSession(Session s)
    {
        _s.Sessions.Remove(s.Id);
        if (s.Opens is null)
        {
            return;
        }
        var inodes = s.Opens.Keys.ToArray();
        Array.Sort(inodes);
        foreach (var ino in inodes)
        {
            ReleaseOne(ino, s.Opens[ino]);
        }
    }

    private ExpireSessionsReply ExpireSessions(ExpireSessionsRequest r)
    {
        var reply = new ExpireSessionsReply();
        if (r.TimeoutNs <= 0)
        {
            reply.Errno = Errno.EINVAL;
            return reply;
        }
        var cutoff = _now - r.TimeoutNs;
        var expired = new List<ulong>();
        foreach (var s in _s.Sessions.Values)
        {
            if (s.LastActiveNs < cutoff)
            {
                expired.Add(s.Id);
            }
        }
        expired.Sort();
        foreach (var id in expired)
        {
            CloseSession(_s.Sessions[id]);
        }
        reply.Expired.AddRange(expired);
        return reply;
    }

    // ---- volume ----

    private FormatReply Format(FormatRequest r)
    {
        if (_s.Volume is not null)
        {
            return new FormatReply { Errno = Errno.EEXIST };
        }
        var v = r.Volume?.Clone();
        if (v is null || string.IsNullOrEmpty(v.Name) || v.Name.Length > MetaLimits.NameBytesMax || string.IsNullOrEmpty(v.Uuid)
            || v.CalculateSize() > MetaLimits.VolumeBytesMax)
        {
            return new FormatReply { Errno = Errno.EINVAL };
        }
        if (v.BlockSize == 0)
        {
            v.BlockSize = MetaLimits.DefaultBlockBytes;
        }
        if (v.BlockSize < MetaLimits.BlockBytesMin || v.BlockSize > MetaLimits.BlockBytesMax || (v.BlockSize & (v.BlockSize - 1)) != 0)
        {
            return new FormatReply { Errno = Errno.EINVAL };
        }
        v.CreatedNs = _now;
        v.ChunkSize = MetaLimits.ChunkBytes;
        _s.Volume = v;
        var perm = r.RootMode == 0 ? MetaLimits.DefaultRootMode : r.RootMode & PosixMode.PermMask;
        _s.Inodes.Add(MetaLimits.RootInode, new InodeRec
        {
            Mode = PosixMode.Directory | perm,
            Uid = UidOf(r.Cred),
            Gid = GidOf(r.Cred),
            Nlink = 2,
            Size = MetaLimits.DirSizeBytes,
            Atime = _now,
            Mtime = _now,
            Ctime = _now,
            Aux = MetaLimits.RootInode,
        });
        _s.Dirs.Add(MetaLimits.RootInode, new DirTable());
        _s.InodeCount++;
        return new FormatReply { Volume = v.Clone() };
    }
}
