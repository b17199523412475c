// Load: a dumped tree applied verbatim in bounded batches (inode numbers and slice ids kept), plus the snapshot
// extension that carries the load flag and the leases.
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using MirrorFS.Core.Meta;

namespace MirrorFS.MetaServer.Engine;

/// <summary>Limits of dump, load and leases.</summary>
internal static class DumpLoadLimits
{
    public const int DumpPageNodesDefault = 1024;
    public const int DumpPageNodesMax = 4096;
    public const int DumpPageBytesMax = 1 << 20;
    public const int DumpSlicesPerNodeMax = 4096;
    public const int LeaseNameBytesMax = 64;
    public const int LeasesMax = 1024;
}

public sealed partial class MetaStateMachine
{
    /// <summary>Whether a load in progress refuses <paramref name="op"/>: everything but the load, sessions, leases and mirror progress.</summary>
    private bool BlockedByLoad(Command.OpOneofCase op) =>
        _s.Loading && op is not (Command.OpOneofCase.LoadEntries or Command.OpOneofCase.NewSession
            or Command.OpOneofCase.Heartbeat or Command.OpOneofCase.CloseSession or Command.OpOneofCase.ExpireSessions
            or Command.OpOneofCase.AcquireLease or Command.OpOneofCase.MirrorProgress);

    private LoadEntriesReply LoadEntries(LoadEntriesRequest r)
    {
        if (!IsRoot(r.Cred))
        {
            return new LoadEntriesReply { Errno = Errno.EPERM };
        }
        return r.Phase switch
        {
            LoadPhase.Begin => LoadBegin(r),
            LoadPhase.Entries when _s.Loading => LoadBatch(r),
            LoadPhase.Finish when _s.Loading => LoadFinish(r),
            _ => new LoadEntriesReply { Errno = Errno.EINVAL },
        };
    }

    /// <summary>Empty: no volume and no inodes, or a volume whose only inode is an empty root without xattrs.</summary>
    private bool TreeEmpty()
    {
        if (_s.Volume is null)
        {
            return _s.Inodes.Count == 0;
        }
        return _s.Inodes.Count == 1 && _s.Dirs.TryGetValue(MetaLimits.RootInode, out var root) && root.Count == 0
               && !_s.Xattrs.ContainsKey(MetaLimits.RootInode);
    }

    private LoadEntriesReply LoadBegin(LoadEntriesRequest r)
    {
        if (!_s.Loading && !TreeEmpty())
        {
            return new LoadEntriesReply { Errno = Errno.ENOTEMPTY, Inodes = _s.InodeCount };
        }
        var v = r.Volume?.Clone();
        if (v is null || string.IsNullOrEmpty(v.Name) || v.Name.Length > MetaLimits.NameBytesMax || string.IsNullOrEmpty(v.Uuid)
            || v.CalculateSize() > MetaLimits.VolumeBytesMax || v.BlockSize < MetaLimits.BlockBytesMin
            || v.BlockSize > MetaLimits.BlockBytesMax || (v.BlockSize & (v.BlockSize - 1)) != 0
            || v.ChunkSize is not (0 or MetaLimits.ChunkBytes))
        {
            return new LoadEntriesReply { Errno = Errno.EINVAL };
        }
        if (v.CreatedNs == 0)
        {
            v.CreatedNs = _now;
        }
        v.ChunkSize = MetaLimits.ChunkBytes;
        // Whatever a previous, unfinished load left goes without a trace: its slices belong to the dumped volume's
        // blocks, so they must not reach the pending-delete list.
        _s.Inodes.Clear();
        _s.Dirs.Clear();
        _s.Symlinks.Clear();
        _s.Xattrs.Clear();
        _s.Chunks.Clear();
        _s.InodeCount = 0;
        _s.UsedBytes = 0;
        _s.Volume = v;
        _s.Loading = true;
        return new LoadEntriesReply();
    }

    private LoadEntriesReply LoadBatch(LoadEntriesRequest r)
    {
        foreach (var li in r.Inodes)
        {
            var e = LoadInode(li);
            if (e != Errno.OK)
            {
                return new LoadEntriesReply { Errno = e, Inode = li.Attr?.Inode ?? 0 };
            }
        }
        foreach (var c in r.Chunks)
        {
            var e = LoadChunk(c);
            if (e != Errno.OK)
            {
                return new LoadEntriesReply { Errno = e, Inode = c.Inode };
            }
        }
        foreach (var d in r.Dentries)
        {
            var e = LoadDentry(d);
            if (e != Errno.OK)
            {
                return new LoadEntriesReply { Errno = e, Inode = d.Inode };
            }
        }
        return new LoadEntriesReply();
    }

    private int LoadInode(LoadInode li)
    {
        var a = li.Attr;
        if (a is null || a.Inode == 0 || a.Nlink == 0)
        {
            return Errno.EINVAL;
        }
        if (_s.Inodes.ContainsKey(a.Inode))
        {
            return Errno.EEXIST;
        }
        var type = PosixMode.Type(a.Mode);
        var rec = new InodeRec
        {
            Mode = a.Mode,
            Uid = a.Uid,
            Gid = a.Gid,
            Nlink = a.Nlink,
            Atime = a.AtimeNs,
            Mtime = a.MtimeNs,
            Ctime = a.CtimeNs,
        };
        var isSymlink = type == PosixMode.Symlink;
        if (isSymlink != !li.Target.IsEmpty)
        {
            return Errno.EINVAL;
        }
        switch (type)
        {
            case PosixMode.Regular:
                if (a.Size > MetaLimits.FileSizeBytesMax)
                {
                    return Errno.EFBIG;
                }
                rec.Size = a.Size;
                break;
            case PosixMode.Directory:
                // The root is its own parent; any other directory names the one it is an entry of.
                rec.Aux = a.Inode == MetaLimits.RootInode ? MetaLimits.RootInode : a.Parent;
                if (rec.Aux == 0 || a.Nlink < 2)
                {
                    return Errno.EINVAL;
                }
                rec.Size = MetaLimits.DirSizeBytes;
                break;
            case PosixMode.Symlink:
                if (li.Target.Length > MetaLimits.SymlinkTargetBytesMax || li.Target.Span.IndexOf((byte)0) >= 0)
                {
                    return Errno.EINVAL;
                }
                rec.Size = (ulong)li.Target.Length;
                break;
            case PosixMode.Char or PosixMode.Block:
                rec.Aux = a.Rdev;
                break;
            case PosixMode.Fifo or PosixMode.Socket:
                break;
            default:
                return Errno.EINVAL;
        }
        if (a.Inode == MetaLimits.RootInode && type != PosixMode.Directory)
        {
            return Errno.EINVAL;
        }
        List<XattrRec>? xattrs = null;
        long xattrBytes = 0;
        foreach (var x in li.Xattrs)
        {
            if (CheckXattrName(x.Name) != Errno.OK || x.Value.Length > MetaLimits.XattrValueBytesMax
                || FindXattr(xattrs, x.Name.Span) >= 0)
            {
                return Errno.EINVAL;
            }
            xattrBytes += x.Name.Length + x.Value.Length;
            if (xattrBytes > MetaLimits.XattrBytesMaxPerInode)
            {
                return Errno.ENOSPC;
            }
            (xattrs ??= new List<XattrRec>(li.Xattrs.Count)).Add(new XattrRec(x.Name.ToByteArray(), x.Value.ToByteArray()));
        }
        _s.Inodes.Add(a.Inode, rec);
        _s.InodeCount++;
        if (a.Inode >= _s.NextInode && a.Inode != TrashInode) // /.trash has its fixed number, outside the counter
        {
            _s.NextInode = a.Inode + 1;
        }
        if (type == PosixMode.Directory)
        {
            _s.Dirs.Add(a.Inode, new DirTable());
        }
        else if (isSymlink)
        {
            _s.Symlinks.Add(a.Inode, li.Target.ToByteArray());
        }
        else if (type == PosixMode.Regular)
        {
            _s.UsedBytes += Align4K(rec.Size);
        }
        if (xattrs is not null)
        {
            _s.Xattrs.Add(a.Inode, xattrs);
        }
        return Errno.OK;
    }

    private int LoadChunk(LoadChunk c)
    {
        ref var rec = ref Rec(c.Inode);
        if (Unsafe.IsNullRef(ref rec) || !rec.IsRegular || (ulong)c.Index * MetaLimits.ChunkBytes >= rec.Size || c.Slices.Count == 0)
        {
            return Errno.EINVAL;
        }
        foreach (var sl in c.Slices)
        {
            if (sl.Length == 0 || (ulong)sl.Offset + sl.Length > sl.Size || sl.Size > MetaLimits.ChunkBytes
                || (ulong)sl.Pos + sl.Length > MetaLimits.ChunkBytes)
            {
                return Errno.EINVAL;
            }
        }
        ref var list = ref CollectionsMarshal.GetValueRefOrAddDefault(_s.Chunks, new ChunkKey(c.Inode, c.Index), out _);
        list ??= new List<SliceRec>(c.Slices.Count);
        foreach (var sl in c.Slices)
        {
            list.Add(new SliceRec(sl.Id, sl.Size, sl.Offset, sl.Length, sl.Pos));
            if (sl.Id >= _s.NextSliceId)
            {
                _s.NextSliceId = sl.Id + 1;
            }
        }
        return Errno.OK;
    }

    private int LoadDentry(LoadDentry d)
    {
        var name = d.Name.Span;
        if (CheckName(name) != Errno.OK || Dots(name) != 0)
        {
            return Errno.EINVAL;
        }
        if (ParentDir(d.Parent, out var dir) != Errno.OK)
        {
            return Errno.EINVAL;
        }
        ref var child = ref Rec(d.Inode);
        if (Unsafe.IsNullRef(ref child) || d.Inode == MetaLimits.RootInode || (child.IsDir && child.Aux != d.Parent))
        {
            return Errno.EINVAL;
        }
        if (dir.Find(name) >= 0)
        {
            return Errno.EEXIST;
        }
        dir.Add(d.Name.ToByteArray(), d.Inode);
        return Errno.OK;
    }

    private LoadEntriesReply LoadFinish(LoadEntriesRequest r)
    {
        if (!_s.Dirs.ContainsKey(MetaLimits.RootInode))
        {
            return new LoadEntriesReply { Errno = Errno.EINVAL, Inode = MetaLimits.RootInode };
        }
        _s.NextInode = Math.Max(_s.NextInode, r.NextInode);
        _s.NextSliceId = Math.Max(_s.NextSliceId, r.NextSliceId);
        // Loaded names bypassed the per-name hooks: rebuild the regular files' parents, and count the loaded tree
        // into any quota set before the load (only the root can have one on an empty volume).
        RebuildParents(_s);
        foreach (var (dir, q) in _s.Quotas)
        {
            CountBelow(dir, useQuotas: false, long.MaxValue, out var bytes, out var inodes);
            q.UsedBytes = bytes;
            q.UsedInodes = inodes;
        }
        _s.Loading = false;
        return new LoadEntriesReply { Inodes = _s.InodeCount, UsedBytes = _s.UsedBytes };
    }
}
