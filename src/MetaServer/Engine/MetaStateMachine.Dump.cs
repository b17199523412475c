// Dump: the whole tree, depth first, copied out under one read lock so it reflects a single log index.
using Google.Protobuf;
using MirrorFS.Core.Meta;

namespace MirrorFS.MetaServer.Engine;

public sealed partial class MetaStateMachine
{
    /// <summary>
    /// Writes every object reachable from the root to <paramref name="spool"/> as length-delimited
    /// <see cref="DumpNode"/>s: a directory's entries follow it in readdir (slot) order, a non-directory with several
    /// names is sent in full once and as a hard link after that. Holds the read lock for the whole walk, as
    /// <see cref="WriteSnapshot"/> does: writers wait for one sequential local write, never for the network, and the
    /// result is a consistent point without a second copy of the tree in memory (only the set of hard-linked inodes
    /// already seen and one stack frame per directory level). Returns ENOENT before Format and EBUSY during a load.
    /// </summary>
    internal (int Errno, ulong Index, DumpHeader? Header) WriteDump(Stream spool)
    {
        _lock.EnterReadLock();
        try
        {
            if (_s.Volume is null)
            {
                return (Errno.ENOENT, _s.AppliedIndex, null);
            }
            if (_s.Loading)
            {
                return (Errno.EBUSY, _s.AppliedIndex, null);
            }
            var output = new CodedOutputStream(spool, leaveOpen: true);
            var nodes = WriteTree(output);
            output.Flush();
            var header = new DumpHeader
            {
                Volume = _s.Volume.Clone(),
                NextInode = _s.NextInode,
                NextSliceId = _s.NextSliceId,
                Inodes = _s.InodeCount,
                UsedBytes = _s.UsedBytes,
                Nodes = nodes,
            };
            return (Errno.OK, _s.AppliedIndex, header);
        }
        finally
        {
            _lock.ExitReadLock();
        }
    }

    private ulong WriteTree(CodedOutputStream output)
    {
        ulong nodes = WriteNode(output, 0, [], MetaLimits.RootInode);
        var linked = new HashSet<ulong>(); // non-directories with nlink > 1 already sent in full
        var stack = new List<(DirTable Dir, int Next)> { (_s.Dirs[MetaLimits.RootInode], 0) };
        while (stack.Count > 0)
        {
            var (dir, next) = stack[^1];
            var slot = next < dir.SlotCount ? dir.NextLive(next) : -1;
            if (slot < 0)
            {
                stack.RemoveAt(stack.Count - 1);
                continue;
            }
            stack[^1] = (dir, slot + 1);
            var ino = dir.InodeAt(slot);
            var rec = _s.Inodes[ino];
            var depth = (uint)stack.Count;
            if (!rec.IsDir && rec.Nlink > 1 && !linked.Add(ino))
            {
                output.WriteMessage(new DumpNode
                {
                    Depth = depth,
                    Name = ByteString.CopyFrom(dir.NameAt(slot)),
                    Attr = new Attr { Inode = ino },
                    HardLink = true,
                });
                nodes++;
                continue;
            }
            nodes += WriteNode(output, depth, dir.NameAt(slot), ino);
            if (rec.IsDir)
            {
                stack.Add((_s.Dirs[ino], 0));
            }
        }
        return nodes;
    }

    /// <summary>Writes one inode in full (continuation nodes for long slice lists); returns the nodes written.</summary>
    private ulong WriteNode(CodedOutputStream output, uint depth, byte[] name, ulong ino)
    {
        var rec = _s.Inodes[ino];
        var node = new DumpNode { Depth = depth, Name = ByteString.CopyFrom(name), Attr = ToAttr(ino, rec) };
        if (_s.Symlinks.TryGetValue(ino, out var target))
        {
            node.Target = ByteString.CopyFrom(target);
        }
        if (_s.Xattrs.TryGetValue(ino, out var xattrs))
        {
            foreach (var x in xattrs)
            {
                node.Xattrs.Add(new DumpXattr { Name = ByteString.CopyFrom(x.Name), Value = ByteString.CopyFrom(x.Value) });
            }
        }
        ulong written = 0;
        if (rec.IsRegular && rec.Size > 0)
        {
            var slicesInNode = 0;
            foreach (var index in ChunkIndexes(ino, rec.Size))
            {
                var slices = _s.Chunks[new ChunkKey(ino, index)];
                DumpChunk? chunk = null;
                foreach (var sl in slices)
                {
                    if (slicesInNode == DumpLoadLimits.DumpSlicesPerNodeMax)
                    {
                        output.WriteMessage(node);
                        written++;
                        node = new DumpNode { Depth = depth, Continued = true };
                        slicesInNode = 0;
                        chunk = null;
                    }
                    if (chunk is null)
                    {
                        chunk = new DumpChunk { Index = index };
                        node.Chunks.Add(chunk);
                    }
                    chunk.Slices.Add(new Slice { Id = sl.Id, Size = sl.Size, Offset = sl.Offset, Length = sl.Length, Pos = sl.Pos });
                    slicesInNode++;
                }
            }
        }
        output.WriteMessage(node);
        return written + 1;
    }

    /// <summary>The file's chunk indexes that hold slices, ascending.</summary>
    private IEnumerable<uint> ChunkIndexes(ulong ino, ulong size)
    {
        var last = (size - 1) / MetaLimits.ChunkBytes;
        if (last < (ulong)_s.Chunks.Count)
        {
            for (var i = 0UL; i <= last; i++)
            {
                if (_s.Chunks.ContainsKey(new ChunkKey(ino, (uint)i)))
                {
                    yield return (uint)i;
                }
            }
            yield break;
        }
        // A huge sparse file: scanning the table is cheaper than probing every index (as DropChunks does).
        var found = new List<uint>();
        foreach (var k in _s.Chunks.Keys)
        {
            if (k.Inode == ino)
            {
                found.Add(k.Index);
            }
        }
        found.Sort();
        foreach (var i in found)
        {
            yield return i;
        }
    }
}
