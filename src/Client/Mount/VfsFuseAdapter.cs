// Translates libfuse low-level callbacks into MirrorVfs calls and VFS results into FUSE replies. No logic lives here;
// the root's virtual files (.stats, .config, .accesslog) are answered by InternalFiles before the VFS is asked.
using System.Buffers;
using MirrorFS.Client.Fuse;
using MirrorFS.Client.Vfs;
using MirrorFS.Core.Meta;

namespace MirrorFS.Client.Mount;

public sealed class VfsFuseAdapter(MirrorVfs vfs, InternalFiles? internals = null) : FuseFileSystem
{
    // Smallest bytes a directory entry takes in the kernel's buffer (dirent / direntplus header and a short name):
    // asking the metaserver for more entries than fit would only throw the rest away.
    private const int DirentBytesMin = 32;
    private const int DirentPlusBytesMin = 160;

    /// <summary>Largest FUSE read or write request asked of the kernel (its FUSE_MAX_PAGES limit is 256 pages).</summary>
    internal const int RequestBytesMax = 1 << 20;

    private bool Internal(ulong ino) => internals is not null && InternalFiles.Owns(ino);

    /// <summary>Asks for 1 MiB requests instead of libfuse's 128 KiB: a max_write above 32 pages makes libfuse send
    /// FUSE_MAX_PAGES, which raises the size of reads too, so sequential I/O needs an eighth of the round trips.</summary>
    public override void Init(ref FuseConnInfo conn)
    {
        conn.MaxWrite = Math.Max(conn.MaxWrite, RequestBytesMax);
    }

    private bool Reserved(ulong parent, byte[] name) => internals?.IsReserved(parent, name) == true;

    /// <summary>Replies <paramref name="errno"/> and returns true when <paramref name="hit"/>; for guards at the top of a handler.</summary>
    private static bool Refuse(FuseRequest r, bool hit, int errno)
    {
        if (hit)
        {
            r.ReplyError(errno);
        }
        return hit;
    }

    private static VfsContext Ctx(FuseRequest r) => new(r.Uid, r.Gid, (uint)Math.Max(0, r.Pid));

    internal static FuseStat ToStat(Attr a)
    {
        var st = new FuseStat
        {
            Ino = a.Inode,
            Nlink = a.Nlink,
            Mode = a.Mode,
            Uid = a.Uid,
            Gid = a.Gid,
            Rdev = a.Rdev,
            Size = (long)a.Size,
            Blksize = 4096,
            Blocks = (long)a.Blocks,
        };
        st.SetAtime(a.AtimeNs / 1_000_000_000, a.AtimeNs % 1_000_000_000);
        st.SetMtime(a.MtimeNs / 1_000_000_000, a.MtimeNs % 1_000_000_000);
        st.SetCtime(a.CtimeNs / 1_000_000_000, a.CtimeNs % 1_000_000_000);
        return st;
    }

    private static FuseEntry ToEntry(VfsEntry e) => new()
    {
        Ino = e.Attr.Inode,
        Generation = 1,
        Attr = ToStat(e.Attr),
        AttrTimeout = e.AttrTimeoutSec,
        EntryTimeout = e.EntryTimeoutSec,
    };

    private static void Reply(FuseRequest r, VfsResult<VfsEntry> res)
    {
        if (res.Ok)
        {
            r.ReplyEntry(ToEntry(res.Value!));
        }
        else
        {
            r.ReplyError(res.Errno);
        }
    }

    private static void Reply(FuseRequest r, int errno)
    {
        if (errno == 0)
        {
            r.ReplyOk();
        }
        else
        {
            r.ReplyError(errno);
        }
    }

    public override async ValueTask Lookup(FuseRequest request, ulong parent, byte[] name)
    {
        if (internals?.TryLookup(request, parent, name) == true)
        {
            return;
        }
        Reply(request, await vfs.LookupAsync(Ctx(request), parent, name));
    }

    public override void Forget(ulong ino, ulong nlookup)
    {
        if (!Internal(ino))
        {
            vfs.Forget(ino, nlookup);
        }
    }

    public override async ValueTask GetAttr(FuseRequest request, ulong ino, FuseFileInfo? fi)
    {
        if (Internal(ino))
        {
            internals!.GetAttr(request, ino);
            return;
        }
        var res = await vfs.GetAttrAsync(Ctx(request), ino);
        if (res.Ok)
        {
            request.ReplyAttr(ToStat(res.Value!.Attr), res.Value.AttrTimeoutSec);
        }
        else
        {
            request.ReplyError(res.Errno);
        }
    }

    public override async ValueTask SetAttr(FuseRequest request, ulong ino, FuseStat attr, FuseSetAttr toSet, FuseFileInfo? fi)
    {
        if (Refuse(request, Internal(ino), Fuse.Errno.EPERM))
        {
            return;
        }
        // FUSE's FATTR_* bits and the contract's SetAttrValid share their values.
        var set = new VfsSetAttr
        {
            Valid = (uint)toSet,
            Mode = attr.Mode & PosixMode.PermMask,
            Uid = attr.Uid,
            Gid = attr.Gid,
            Size = (ulong)Math.Max(0, attr.Size),
            AtimeNs = (attr.AtimeSec * 1_000_000_000) + attr.AtimeNsec,
            MtimeNs = (attr.MtimeSec * 1_000_000_000) + attr.MtimeNsec,
            CtimeNs = (attr.CtimeSec * 1_000_000_000) + attr.CtimeNsec,
        };
        var res = await vfs.SetAttrAsync(Ctx(request), ino, set);
        if (res.Ok)
        {
            request.ReplyAttr(ToStat(res.Value!.Attr), res.Value.AttrTimeoutSec);
        }
        else
        {
            request.ReplyError(res.Errno);
        }
    }

    public override async ValueTask ReadLink(FuseRequest request, ulong ino)
    {
        if (Refuse(request, Internal(ino), Fuse.Errno.EINVAL))
        {
            return;
        }
        var res = await vfs.ReadLinkAsync(Ctx(request), ino);
        if (res.Ok)
        {
            request.ReplyReadlink(res.Value!);
        }
        else
        {
            request.ReplyError(res.Errno);
        }
    }

    public override async ValueTask MkNod(FuseRequest request, ulong parent, byte[] name, uint mode, ulong rdev)
    {
        if (!Refuse(request, Reserved(parent, name), Fuse.Errno.EEXIST))
        {
            Reply(request, await vfs.MknodAsync(Ctx(request), parent, name, mode, request.Umask, rdev));
        }
    }

    public override async ValueTask MkDir(FuseRequest request, ulong parent, byte[] name, uint mode)
    {
        if (!Refuse(request, Reserved(parent, name), Fuse.Errno.EEXIST))
        {
            Reply(request, await vfs.MkdirAsync(Ctx(request), parent, name, mode, request.Umask));
        }
    }

    public override async ValueTask Unlink(FuseRequest request, ulong parent, byte[] name)
    {
        if (!Refuse(request, Reserved(parent, name), Fuse.Errno.EPERM))
        {
            Reply(request, await vfs.UnlinkAsync(Ctx(request), parent, name));
        }
    }

    public override async ValueTask RmDir(FuseRequest request, ulong parent, byte[] name)
    {
        if (!Refuse(request, Reserved(parent, name), Fuse.Errno.ENOTDIR))
        {
            Reply(request, await vfs.RmdirAsync(Ctx(request), parent, name));
        }
    }

    public override async ValueTask SymLink(FuseRequest request, byte[] target, ulong parent, byte[] name)
    {
        if (!Refuse(request, Reserved(parent, name), Fuse.Errno.EEXIST))
        {
            Reply(request, await vfs.SymlinkAsync(Ctx(request), parent, name, target));
        }
    }

    public override async ValueTask Rename(FuseRequest request, ulong parent, byte[] name, ulong newParent, byte[] newName, uint flags)
    {
        if (!Refuse(request, Reserved(parent, name) || Reserved(newParent, newName), Fuse.Errno.EPERM))
        {
            Reply(request, await vfs.RenameAsync(Ctx(request), parent, name, newParent, newName, flags));
        }
    }

    public override async ValueTask Link(FuseRequest request, ulong ino, ulong newParent, byte[] newName)
    {
        if (!Refuse(request, Internal(ino), Fuse.Errno.EPERM) && !Refuse(request, Reserved(newParent, newName), Fuse.Errno.EEXIST))
        {
            Reply(request, await vfs.LinkAsync(Ctx(request), ino, newParent, newName));
        }
    }

    public override async ValueTask Open(FuseRequest request, ulong ino, FuseFileInfo fi)
    {
        if (Internal(ino))
        {
            internals!.Open(request, ino, fi);
            return;
        }
        var res = await vfs.OpenAsync(Ctx(request), ino, (uint)fi.Flags);
        if (res.Ok)
        {
            // Close-to-open: the VFS refreshed attributes at open; the kernel's page cache is kept only when the
            // file did not change since (the VFS decides through its attributes).
            request.ReplyOpen(res.Value!.Handle);
        }
        else
        {
            request.ReplyError(res.Errno);
        }
    }

    public override async ValueTask Create(FuseRequest request, ulong parent, byte[] name, uint mode, FuseFileInfo fi)
    {
        if (Refuse(request, Reserved(parent, name), Fuse.Errno.EEXIST))
        {
            return;
        }
        var res = await vfs.CreateAsync(Ctx(request), parent, name, mode, request.Umask, (uint)fi.Flags);
        if (res.Ok)
        {
            request.ReplyCreate(ToEntry(res.Value!.Entry), res.Value.Handle);
        }
        else
        {
            request.ReplyError(res.Errno);
        }
    }

    public override async ValueTask Read(FuseRequest request, ulong ino, int size, long offset, FuseFileInfo fi)
    {
        if (Internal(ino))
        {
            await internals!.Read(request, ino, size, offset, fi.Fh);
            return;
        }
        if (vfs.TryReadInMemory(ino, fi.Fh, offset, size) is { } cached)
        {
            // Sent straight from the cached block: one copy of 1 MiB less per request.
            request.ReplyData(cached.Span);
            return;
        }

        var buffer = ArrayPool<byte>.Shared.Rent(Math.Max(size, 1));
        try
        {
            var res = await vfs.ReadAsync(Ctx(request), ino, fi.Fh, offset, buffer.AsMemory(0, size));
            if (res.Ok)
            {
                request.ReplyData(buffer.AsSpan(0, res.Value));
            }
            else
            {
                request.ReplyError(res.Errno);
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    public override async ValueTask Write(FuseRequest request, ulong ino, ReadOnlyMemory<byte> data, long offset, FuseFileInfo fi)
    {
        if (Refuse(request, Internal(ino), Fuse.Errno.EBADF))
        {
            return;
        }
        var res = await vfs.WriteAsync(Ctx(request), ino, fi.Fh, offset, data);
        if (res.Ok)
        {
            request.ReplyWrite(res.Value);
        }
        else
        {
            request.ReplyError(res.Errno);
        }
    }

    public override async ValueTask Flush(FuseRequest request, ulong ino, FuseFileInfo fi) =>
        Reply(request, Internal(ino) ? 0 : await vfs.FlushAsync(Ctx(request), ino, fi.Fh));

    public override async ValueTask Release(FuseRequest request, ulong ino, FuseFileInfo fi)
    {
        if (Internal(ino))
        {
            internals!.Release(request, fi.Fh);
            return;
        }
        Reply(request, await vfs.ReleaseAsync(Ctx(request), ino, fi.Fh));
    }

    public override async ValueTask FSync(FuseRequest request, ulong ino, bool dataSync, FuseFileInfo fi) =>
        Reply(request, Internal(ino) ? 0 : await vfs.FsyncAsync(Ctx(request), ino, fi.Fh, dataSync));

    public override async ValueTask OpenDir(FuseRequest request, ulong ino, FuseFileInfo fi)
    {
        if (Refuse(request, Internal(ino), Fuse.Errno.ENOTDIR))
        {
            return;
        }
        var res = await vfs.OpenDirAsync(Ctx(request), ino);
        if (res.Ok)
        {
            request.ReplyOpen(res.Value);
        }
        else
        {
            request.ReplyError(res.Errno);
        }
    }

    public override ValueTask ReadDir(FuseRequest request, ulong ino, int size, long offset, FuseFileInfo fi) =>
        ReadDirCore(request, ino, size, offset, fi, plus: false);

    public override ValueTask ReadDirPlus(FuseRequest request, ulong ino, int size, long offset, FuseFileInfo fi) =>
        ReadDirCore(request, ino, size, offset, fi, plus: true);

    private async ValueTask ReadDirCore(FuseRequest request, ulong ino, int size, long offset, FuseFileInfo fi, bool plus)
    {
        var listInternal = ino == 1 && internals is { Listed: true };
        if (listInternal && offset >= InternalFiles.ReadDirOffsetBase)
        {
            // Past the real entries: only the internal ones are left.
            using var rest = new DirBuffer(request, size, plus);
            AddInternal(rest, (int)(offset - InternalFiles.ReadDirOffsetBase));
            request.ReplyReadDir(rest);
            return;
        }
        var fit = (uint)Math.Clamp(size / (plus ? DirentPlusBytesMin : DirentBytesMin), 1, vfs.Options.ReadDirPageEntries);
        var res = await vfs.ReadDirAsync(Ctx(request), ino, fi.Fh, (ulong)offset, fit);
        if (!res.Ok)
        {
            request.ReplyError(res.Errno);
            return;
        }
        using var buffer = new DirBuffer(request, size, plus);
        var all = true;
        foreach (var e in res.Value!.Entries)
        {
            var added = plus
                ? buffer.TryAddPlus(e.Name, IsDot(e.Name) ? new FuseEntry { Attr = ToStat(e.Attr) } : ToEntry(new VfsEntry(e.Attr, vfs.Options.EntryTimeoutSec, vfs.Options.AttrTimeoutSec)), (long)e.NextOffset)
                : buffer.TryAdd(e.Name, ToStat(e.Attr), (long)e.NextOffset);
            if (!added)
            {
                all = false;
                break;
            }
        }
        if (listInternal && all && res.Value.Eof)
        {
            AddInternal(buffer, 0);
        }
        request.ReplyReadDir(buffer);
    }

    private void AddInternal(DirBuffer buffer, int from)
    {
        foreach (var (name, entry, next) in internals!.DirEntries(from))
        {
            if (!(buffer.Plus ? buffer.TryAddPlus(name, entry, next) : buffer.TryAdd(name, entry.Attr, next)))
            {
                return;
            }
        }
    }

    private static bool IsDot(byte[] name) => name is [(byte)'.'] or [(byte)'.', (byte)'.'];

    public override ValueTask ReleaseDir(FuseRequest request, ulong ino, FuseFileInfo fi)
    {
        Reply(request, vfs.ReleaseDir(ino, fi.Fh));
        return ValueTask.CompletedTask;
    }

    public override ValueTask FSyncDir(FuseRequest request, ulong ino, bool dataSync, FuseFileInfo fi)
    {
        // Metadata is durable on the metaserver when a call returns.
        request.ReplyOk();
        return ValueTask.CompletedTask;
    }

    public override async ValueTask StatFs(FuseRequest request, ulong ino)
    {
        var res = await vfs.StatFsAsync(Ctx(request), Internal(ino) ? 1 : ino);
        if (!res.Ok)
        {
            request.ReplyError(res.Errno);
            return;
        }
        var s = res.Value!;
        var bsize = Math.Max(s.BlockSize, 4096u);
        request.ReplyStatFs(new FuseStatVfs
        {
            Bsize = bsize,
            Frsize = bsize,
            Blocks = s.TotalBytes / bsize,
            Bfree = s.AvailBytes / bsize,
            Bavail = s.AvailBytes / bsize,
            Files = s.TotalInodes,
            Ffree = s.AvailInodes,
            Favail = s.AvailInodes,
            Namemax = s.NameMax,
        });
    }

    public override async ValueTask SetXattr(FuseRequest request, ulong ino, byte[] name, byte[] value, int flags) =>
        Reply(request, Internal(ino) ? Fuse.Errno.EPERM : await vfs.SetXattrAsync(Ctx(request), ino, name, value, (uint)flags));

    public override async ValueTask GetXattr(FuseRequest request, ulong ino, byte[] name, int size)
    {
        if (Refuse(request, Internal(ino), Fuse.Errno.ENODATA))
        {
            return;
        }
        var res = await vfs.GetXattrAsync(Ctx(request), ino, name);
        if (!res.Ok)
        {
            request.ReplyError(res.Errno);
        }
        else if (size == 0)
        {
            request.ReplyXattr(res.Value!.Length);
        }
        else if (res.Value!.Length > size)
        {
            request.ReplyError(Core.Meta.Errno.ERANGE);
        }
        else
        {
            request.ReplyBuf(res.Value);
        }
    }

    public override async ValueTask ListXattr(FuseRequest request, ulong ino, int size)
    {
        if (Internal(ino))
        {
            request.ReplyXattr(0);
            return;
        }
        var res = await vfs.ListXattrAsync(Ctx(request), ino);
        if (!res.Ok)
        {
            request.ReplyError(res.Errno);
            return;
        }
        var total = res.Value!.Sum(n => n.Length + 1);
        if (size == 0)
        {
            request.ReplyXattr(total);
            return;
        }
        if (total > size)
        {
            request.ReplyError(Core.Meta.Errno.ERANGE);
            return;
        }
        var buf = new byte[total];
        var pos = 0;
        foreach (var n in res.Value!)
        {
            n.CopyTo(buf, pos);
            pos += n.Length + 1; // NUL separator
        }
        request.ReplyBuf(buf);
    }

    public override async ValueTask RemoveXattr(FuseRequest request, ulong ino, byte[] name) =>
        Reply(request, Internal(ino) ? Fuse.Errno.EPERM : await vfs.RemoveXattrAsync(Ctx(request), ino, name));

    public override async ValueTask Fallocate(FuseRequest request, ulong ino, int mode, long offset, long length, FuseFileInfo fi) =>
        Reply(request, Internal(ino) ? Fuse.Errno.EBADF : await vfs.FallocateAsync(Ctx(request), ino, fi.Fh, (uint)mode, offset, length));
}
