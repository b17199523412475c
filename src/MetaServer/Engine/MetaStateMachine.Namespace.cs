// Namespace operations: create, link, unlink, rmdir, rename, setattr, open and release, with Linux errno order.
using System.Runtime.CompilerServices;
using Google.Protobuf;
using MirrorFS.Core.Meta;

namespace MirrorFS.MetaServer.Engine;

public sealed partial class MetaStateMachine
{
    private int Mknod(Command cmd, MknodRequest r, out Attr? attr)
    {
        attr = null;
        var ino = ClaimInode(cmd);
        var type = PosixMode.Type(r.Mode);
        switch (type)
        {
            case 0:
                type = PosixMode.Regular;
                break;
            case PosixMode.Regular or PosixMode.Fifo or PosixMode.Socket or PosixMode.Char or PosixMode.Block:
                break;
            case PosixMode.Directory:
                return Errno.EPERM;
            default:
                return Errno.EINVAL;
        }
        var dev = type is PosixMode.Char or PosixMode.Block;
        return CreateNode(ino, r.Cred, r.Parent, r.Name, type, r.Mode, r.Umask, dev ? r.Rdev : 0, null,
            dev && !IsRoot(r.Cred), out attr);
    }

    private int Create(Command cmd, CreateRequest r, out Attr? attr)
    {
        attr = null;
        var ino = ClaimInode(cmd);
        if (_session is null)
        {
            return Errno.EINVAL; // an open needs a session to belong to
        }
        var e = CreateNode(ino, r.Cred, r.Parent, r.Name, PosixMode.Regular, r.Mode, r.Umask, 0, null, false, out attr);
        if (e == Errno.OK)
        {
            TrackOpen(_session, ino);
        }
        return e;
    }

    private int Mkdir(Command cmd, MkdirRequest r, out Attr? attr)
    {
        return CreateNode(ClaimInode(cmd), r.Cred, r.Parent, r.Name, PosixMode.Directory, r.Mode, r.Umask, 0, null, false, out attr);
    }

    private int Symlink(Command cmd, SymlinkRequest r, out Attr? attr)
    {
        attr = null;
        var ino = ClaimInode(cmd);
        if (r.Target.IsEmpty)
        {
            return Errno.ENOENT;
        }
        if (r.Target.Length > MetaLimits.SymlinkTargetBytesMax)
        {
            return Errno.ENAMETOOLONG;
        }
        if (r.Target.Span.IndexOf((byte)0) >= 0)
        {
            return Errno.EINVAL;
        }
        return CreateNode(ino, r.Cred, r.Parent, r.Name, PosixMode.Symlink, 0x1FF, 0, 0, r.Target.ToByteArray(), false, out attr);
    }

    /// <summary>Common part of every create: checks in Linux order, owner and setgid rules, then links the new inode.</summary>
    private int CreateNode(ulong ino, Credentials? cred, ulong parent, ByteString name, uint type, uint mode, uint umask,
        ulong rdev, byte[]? target, bool deniedDevice, out Attr? attr)
    {
        attr = null;
        var e = ParentDir(parent, out var dir);
        if (e != Errno.OK)
        {
            return e;
        }
        var span = name.Span;
        if (Dots(span) != 0)
        {
            return Errno.EEXIST;
        }
        if ((e = CheckName(span)) != Errno.OK)
        {
            return e;
        }
        if (dir.Find(span) >= 0)
        {
            return Errno.EEXIST;
        }
        if (deniedDevice)
        {
            return Errno.EPERM; // CAP_MKNOD
        }
        if (InodesExhausted())
        {
            return Errno.ENOSPC;
        }
        if ((e = AdmitName(parent, span, 0)) != Errno.OK)
        {
            return e;
        }
        if (_s.Inodes.ContainsKey(ino))
        {
            return Errno.EIO; // claimed ids are above every existing inode; never overwrite one if that breaks
        }

        var isDir = type == PosixMode.Directory;
        var p = _s.Inodes[parent];
        var perm = type == PosixMode.Symlink ? 0x1FFu : mode & PosixMode.PermMask & ~(umask & 0x1FF);
        if (isDir)
        {
            perm &= 0x1FF | PosixMode.Sticky; // mkdir ignores S_ISUID/S_ISGID in its mode argument
        }
        var uid = UidOf(cred);
        var gid = GidOf(cred);
        if ((p.Mode & PosixMode.SetGid) != 0)
        {
            // setgid directory: new entries take its group; subdirectories inherit the bit.
            gid = p.Gid;
            if (isDir)
            {
                perm |= PosixMode.SetGid;
            }
            else if ((perm & (PosixMode.SetGid | PosixMode.GroupExec)) == (PosixMode.SetGid | PosixMode.GroupExec)
                     && !InGroupOrRoot(cred, p.Gid))
            {
                perm &= ~PosixMode.SetGid;
            }
        }
        var rec = new InodeRec
        {
            Mode = type | perm,
            Uid = uid,
            Gid = gid,
            Nlink = isDir ? 2u : 1u,
            Size = isDir ? MetaLimits.DirSizeBytes : (ulong)(target?.Length ?? 0),
            Atime = _now,
            Mtime = _now,
            Ctime = _now,
            Aux = isDir ? parent : rdev,
        };
        _s.Inodes.Add(ino, rec);
        _s.InodeCount++;
        if (isDir)
        {
            _s.Dirs.Add(ino, new DirTable());
        }
        if (target is not null)
        {
            _s.Symlinks.Add(ino, target);
        }
        dir.Add(name.ToByteArray(), ino);
        TouchDir(parent, isDir ? 1 : 0);
        NameAdded(parent, ino);
        attr = ToAttr(ino, rec);
        return Errno.OK;
    }

    private int Link(LinkRequest r, out Attr? attr)
    {
        attr = null;
        ref var src = ref Rec(r.Inode);
        if (Unsafe.IsNullRef(ref src))
        {
            return Errno.ENOENT;
        }
        var e = ParentDir(r.NewParent, out var dir);
        if (e != Errno.OK)
        {
            return e;
        }
        var name = r.NewName.Span;
        if (Dots(name) != 0)
        {
            return Errno.EEXIST;
        }
        if ((e = CheckName(name)) != Errno.OK)
        {
            return e;
        }
        if (dir.Find(name) >= 0)
        {
            return Errno.EEXIST;
        }
        if (src.IsDir)
        {
            return Errno.EPERM;
        }
        if (src.Nlink == 0)
        {
            return Errno.ENOENT; // an unlinked open file cannot be linked back
        }
        if (src.Nlink >= MetaLimits.LinkCountMax)
        {
            return Errno.EMLINK;
        }
        if ((e = AdmitName(r.NewParent, name, BytesOf(src))) != Errno.OK)
        {
            return e;
        }
        src.Nlink++;
        src.Ctime = _now;
        attr = ToAttr(r.Inode, src);
        dir.Add(r.NewName.ToByteArray(), r.Inode);
        TouchDir(r.NewParent, 0);
        NameAdded(r.NewParent, r.Inode);
        return Errno.OK;
    }

    private int Unlink(UnlinkRequest r)
    {
        var e = ParentDir(r.Parent, out var dir);
        if (e != Errno.OK)
        {
            return e;
        }
        var name = r.Name.Span;
        if (Dots(name) != 0)
        {
            return Errno.EISDIR;
        }
        if ((e = CheckName(name)) != Errno.OK)
        {
            return e;
        }
        var slot = dir.Find(name);
        if (slot < 0)
        {
            return Errno.ENOENT;
        }
        var ino = dir.InodeAt(slot);
        var victim = _s.Inodes[ino];
        if (StickyDenies(_s.Inodes[r.Parent], victim, r.Cred))
        {
            return Errno.EPERM;
        }
        if (victim.IsDir)
        {
            return Errno.EISDIR;
        }
        dir.RemoveAt(slot);
        TouchDir(r.Parent, 0);
        NameRemoved(r.Parent, ino);
        if (!TrashPut(r.Parent, ino, name))
        {
            DropLink(ino);
        }
        return Errno.OK;
    }

    private int Rmdir(RmdirRequest r)
    {
        var e = ParentDir(r.Parent, out var dir);
        if (e != Errno.OK)
        {
            return e;
        }
        var name = r.Name.Span;
        switch (Dots(name))
        {
            case 1:
                return Errno.EINVAL;
            case 2:
                return Errno.ENOTEMPTY;
        }
        if ((e = CheckName(name)) != Errno.OK)
        {
            return e;
        }
        var slot = dir.Find(name);
        if (slot < 0)
        {
            return Errno.ENOENT;
        }
        var ino = dir.InodeAt(slot);
        var victim = _s.Inodes[ino];
        if (StickyDenies(_s.Inodes[r.Parent], victim, r.Cred))
        {
            return Errno.EPERM;
        }
        if (!victim.IsDir)
        {
            return Errno.ENOTDIR;
        }
        if ((e = TrashGuardRmdir(ino)) != Errno.OK)
        {
            return e;
        }
        if (_s.Dirs[ino].Count != 0)
        {
            return Errno.ENOTEMPTY;
        }
        dir.RemoveAt(slot);
        TouchDir(r.Parent, -1);
        NameRemoved(r.Parent, ino);
        DeleteInode(ino);
        return Errno.OK;
    }

    /// <summary>Whether <paramref name="ancestor"/> is <paramref name="ino"/> or one of its ancestors.</summary>
    private bool IsAncestorOrSelf(ulong ancestor, ulong ino)
    {
        while (true)
        {
            if (ino == ancestor)
            {
                return true;
            }
            if (ino == MetaLimits.RootInode)
            {
                return false;
            }
            ino = _s.Inodes[ino].Aux;
        }
    }

    private int Rename(RenameRequest r)
    {
        const uint noReplace = (uint)RenameFlag.Noreplace;
        const uint exchange = (uint)RenameFlag.Exchange;
        if ((r.Flags & ~(noReplace | exchange)) != 0 || r.Flags == (noReplace | exchange))
        {
            return Errno.EINVAL;
        }
        var e = ParentDir(r.Parent, out var oldDir);
        if (e != Errno.OK || (e = ParentDir(r.NewParent, out var newDir)) != Errno.OK)
        {
            return e;
        }
        var oldName = r.Name.Span;
        var newName = r.NewName.Span;
        if ((e = CheckName(oldName)) != Errno.OK || (e = CheckName(newName)) != Errno.OK)
        {
            return e;
        }
        if (Dots(oldName) != 0)
        {
            return Errno.EBUSY;
        }
        if (Dots(newName) != 0)
        {
            return (r.Flags & noReplace) != 0 ? Errno.EEXIST : Errno.EBUSY;
        }
        var oldSlot = oldDir.Find(oldName);
        if (oldSlot < 0)
        {
            return Errno.ENOENT;
        }
        var newSlot = newDir.Find(newName);
        if (newSlot >= 0 && (r.Flags & noReplace) != 0)
        {
            return Errno.EEXIST;
        }
        if (newSlot < 0 && (r.Flags & exchange) != 0)
        {
            return Errno.ENOENT;
        }
        var srcIno = oldDir.InodeAt(oldSlot);
        var dstIno = newSlot >= 0 ? newDir.InodeAt(newSlot) : 0;
        var src = _s.Inodes[srcIno];
        var dst = dstIno != 0 ? _s.Inodes[dstIno] : default;
        var srcIsDir = src.IsDir;
        var dstIsDir = dstIno != 0 && dst.IsDir;
        if (srcIsDir && IsAncestorOrSelf(srcIno, r.NewParent))
        {
            return Errno.EINVAL; // a directory cannot move into its own subtree
        }
        if (dstIsDir && IsAncestorOrSelf(dstIno, r.Parent))
        {
            return (r.Flags & exchange) != 0 ? Errno.EINVAL : Errno.ENOTEMPTY;
        }
        if (srcIno == dstIno)
        {
            return Errno.OK; // two links to one file: POSIX says do nothing
        }
        if (StickyDenies(_s.Inodes[r.Parent], src, r.Cred))
        {
            return Errno.EPERM;
        }
        if (dstIno != 0)
        {
            if (StickyDenies(_s.Inodes[r.NewParent], dst, r.Cred))
            {
                return Errno.EPERM;
            }
            if ((r.Flags & exchange) == 0)
            {
                if (srcIsDir && !dstIsDir)
                {
                    return Errno.ENOTDIR;
                }
                if (!srcIsDir && dstIsDir)
                {
                    return Errno.EISDIR;
                }
                if (dstIsDir && _s.Dirs[dstIno].Count != 0)
                {
                    return Errno.ENOTEMPTY;
                }
            }
        }

        if ((e = RenameQuota(r, srcIno, dstIno, (r.Flags & exchange) != 0)) != Errno.OK)
        {
            return e;
        }
        var sameDir = r.Parent == r.NewParent;
        if ((r.Flags & exchange) != 0)
        {
            oldDir.SetInode(oldSlot, dstIno);
            newDir.SetInode(newSlot, srcIno);
            ref var s = ref Rec(srcIno);
            s.Ctime = _now;
            ref var d = ref Rec(dstIno);
            d.Ctime = _now;
            var oldDelta = 0;
            var newDelta = 0;
            if (!sameDir)
            {
                if (srcIsDir)
                {
                    s.Aux = r.NewParent;
                    oldDelta--;
                    newDelta++;
                }
                if (dstIsDir)
                {
                    d.Aux = r.Parent;
                    newDelta--;
                    oldDelta++;
                }
            }
            TouchDir(r.Parent, oldDelta);
            if (!sameDir)
            {
                TouchDir(r.NewParent, newDelta);
            }
            return Errno.OK;
        }

        var oldParentDelta = 0;
        var newParentDelta = 0;
        if (dstIno != 0)
        {
            newDir.SetInode(newSlot, srcIno); // the target's entry keeps its position
            oldDir.RemoveAt(oldSlot);
        }
        else
        {
            oldDir.RemoveAt(oldSlot);
            newDir.Add(r.NewName.ToByteArray(), srcIno);
        }
        ref var moved = ref Rec(srcIno);
        moved.Ctime = _now;
        if (srcIsDir)
        {
            moved.Aux = r.NewParent;
            oldParentDelta--;
            newParentDelta++;
        }
        if (dstIno != 0)
        {
            if (dstIsDir)
            {
                newParentDelta--;
                DeleteInode(dstIno);
            }
            else if (!TrashPut(r.NewParent, dstIno, newName))
            {
                DropLink(dstIno);
            }
        }
        if (sameDir)
        {
            TouchDir(r.Parent, oldParentDelta + newParentDelta);
        }
        else
        {
            TouchDir(r.Parent, oldParentDelta);
            TouchDir(r.NewParent, newParentDelta);
        }
        return Errno.OK;
    }

    private int SetAttr(SetAttrRequest r, out Attr? attr)
    {
        attr = null;
        ref var rec = ref Rec(r.Inode);
        if (Unsafe.IsNullRef(ref rec))
        {
            return Errno.ENOENT;
        }
        var v = r.Valid;
        var c = r.Cred;
        const uint modeBit = (uint)SetAttrValid.Mode;
        const uint uidBit = (uint)SetAttrValid.Uid;
        const uint gidBit = (uint)SetAttrValid.Gid;
        const uint sizeBit = (uint)SetAttrValid.Size;
        const uint atimeBit = (uint)SetAttrValid.Atime;
        const uint mtimeBit = (uint)SetAttrValid.Mtime;
        const uint atimeNowBit = (uint)SetAttrValid.AtimeNow;
        const uint mtimeNowBit = (uint)SetAttrValid.MtimeNow;
        const uint ctimeBit = (uint)SetAttrValid.Ctime;

        // Checks of Linux setattr_prepare: owner or root for chmod, chown and explicit times.
        if ((v & sizeBit) != 0)
        {
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
        }
        if ((v & uidBit) != 0 && !IsRoot(c) && !(c!.Uid == rec.Uid && r.Uid == rec.Uid))
        {
            return Errno.EPERM;
        }
        if ((v & gidBit) != 0 && !IsRoot(c) && !(c!.Uid == rec.Uid && (r.Gid == rec.Gid || InGroup(c, r.Gid))))
        {
            return Errno.EPERM;
        }
        if ((v & modeBit) != 0 && !IsOwnerOrRoot(c, rec))
        {
            return Errno.EPERM;
        }
        var explicitTimes = ((v & atimeBit) != 0 && (v & atimeNowBit) == 0)
                            || ((v & mtimeBit) != 0 && (v & mtimeNowBit) == 0)
                            || (v & ctimeBit) != 0;
        if (explicitTimes && !IsOwnerOrRoot(c, rec))
        {
            return Errno.EPERM;
        }
        if ((v & sizeBit) != 0 && NoSpace(rec.Size, r.Size))
        {
            return Errno.ENOSPC;
        }
        if ((v & sizeBit) != 0 && OverQuota(r.Inode, rec.Size, r.Size))
        {
            return Errno.EDQUOT;
        }

        var changed = (v & (modeBit | uidBit | gidBit | atimeBit | mtimeBit | atimeNowBit | mtimeNowBit)) != 0;
        if ((v & (uidBit | gidBit)) != 0 && (v & modeBit) == 0 && !rec.IsDir)
        {
            // chown clears S_ISUID (even by root) and S_ISGID when group-exec is set or the caller is outside the group.
            var m = rec.Mode & ~PosixMode.SetUid;
            if ((m & PosixMode.SetGid) != 0 && ((m & PosixMode.GroupExec) != 0 || !InGroupOrRoot(c, rec.Gid)))
            {
                m &= ~PosixMode.SetGid;
            }
            rec.Mode = m;
        }
        if ((v & uidBit) != 0)
        {
            rec.Uid = r.Uid;
        }
        if ((v & gidBit) != 0)
        {
            rec.Gid = r.Gid;
        }
        if ((v & modeBit) != 0)
        {
            var m = r.Mode & PosixMode.PermMask;
            if (!IsRoot(c) && !InGroup(c, rec.Gid))
            {
                m &= ~PosixMode.SetGid; // chmod by someone outside the file's group cannot set S_ISGID
            }
            rec.Mode = PosixMode.Type(rec.Mode) | m;
        }
        if ((v & sizeBit) != 0)
        {
            if ((v & modeBit) == 0 && KillSuidOnWrite(ref rec, c))
            {
                changed = true;
            }
            if (r.Size != rec.Size)
            {
                Resize(r.Inode, ref rec, r.Size);
                rec.Mtime = _now;
                changed = true;
            }
        }
        if ((v & atimeNowBit) != 0)
        {
            rec.Atime = _now;
        }
        else if ((v & atimeBit) != 0)
        {
            rec.Atime = r.AtimeNs;
        }
        if ((v & mtimeNowBit) != 0)
        {
            rec.Mtime = _now;
        }
        else if ((v & mtimeBit) != 0)
        {
            rec.Mtime = r.MtimeNs;
        }
        if ((v & ctimeBit) != 0)
        {
            rec.Ctime = r.CtimeNs;
        }
        else if (changed)
        {
            rec.Ctime = _now;
        }
        attr = ToAttr(r.Inode, rec);
        return Errno.OK;
    }

    private int Open(OpenRequest r, out Attr? attr)
    {
        attr = null;
        if (_session is null)
        {
            return Errno.EINVAL;
        }
        ref var rec = ref Rec(r.Inode);
        if (Unsafe.IsNullRef(ref rec))
        {
            return Errno.ENOENT;
        }
        var truncate = (r.Flags & OpenFlags.Truncate) != 0;
        if (rec.IsDir && ((r.Flags & OpenFlags.AccessMask) != OpenFlags.ReadOnly || truncate))
        {
            return Errno.EISDIR;
        }
        if (truncate && rec.IsRegular)
        {
            // open(O_TRUNC) always sets mtime and ctime, even on an empty file.
            KillSuidOnWrite(ref rec, r.Cred);
            Resize(r.Inode, ref rec, 0);
            rec.Mtime = _now;
            rec.Ctime = _now;
        }
        attr = ToAttr(r.Inode, rec);
        TrackOpen(_session, r.Inode);
        return Errno.OK;
    }

    private void TrackOpen(Session s, ulong ino)
    {
        var opens = s.Opens ??= [];
        opens[ino] = opens.GetValueOrDefault(ino) + 1;
        _s.OpenCounts[ino] = _s.OpenCounts.GetValueOrDefault(ino) + 1;
    }

    private int Release(ReleaseRequest r)
    {
        if (_session is null)
        {
            return Errno.EINVAL;
        }
        if (_session.Opens is null || !_session.Opens.TryGetValue(r.Inode, out var n))
        {
            return Errno.EBADF;
        }
        if (n == 1)
        {
            _session.Opens.Remove(r.Inode);
        }
        else
        {
            _session.Opens[r.Inode] = n - 1;
        }
        ReleaseOne(r.Inode, 1);
        return Errno.OK;
    }

    /// <summary>Drops <paramref name="count"/> opens of an inode; at the last one an unlinked inode is deleted.</summary>
    private void ReleaseOne(ulong ino, int count)
    {
        var total = _s.OpenCounts[ino] - count;
        if (total > 0)
        {
            _s.OpenCounts[ino] = total;
            return;
        }
        _s.OpenCounts.Remove(ino);
        ref var rec = ref Rec(ino);
        if (!Unsafe.IsNullRef(ref rec) && rec.Nlink == 0)
        {
            DeleteInode(ino);
        }
    }
}
