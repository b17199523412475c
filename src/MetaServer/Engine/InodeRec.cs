// Compact per-inode records kept by the metadata state (value types in large dictionaries: no object per inode).
using MirrorFS.Core.Meta;

namespace MirrorFS.MetaServer.Engine;

/// <summary>An inode's attributes: 56 bytes, stored by value in the inode table.</summary>
internal struct InodeRec
{
    public uint Mode;
    public uint Uid;
    public uint Gid;
    public uint Nlink;
    public ulong Size;
    public long Atime;
    public long Mtime;
    public long Ctime;

    /// <summary>Directory: its parent (root: itself). Character/block device: rdev. Otherwise 0.</summary>
    public ulong Aux;

    public readonly bool IsDir => PosixMode.IsDir(Mode);

    public readonly bool IsRegular => PosixMode.IsRegular(Mode);
}

/// <summary>One slice reference in a chunk (see <see cref="Slice"/>).</summary>
internal readonly record struct SliceRec(ulong Id, uint Size, uint Offset, uint Length, uint Pos);

/// <summary>Key of a chunk's slice list.</summary>
internal readonly record struct ChunkKey(ulong Inode, uint Index) : IComparable<ChunkKey>
{
    public int CompareTo(ChunkKey other)
    {
        var c = Inode.CompareTo(other.Inode);
        return c != 0 ? c : Index.CompareTo(other.Index);
    }
}

/// <summary>A slice no longer referenced, waiting for its blocks to be deleted: Index and TimeNs are the log entry that
/// dropped it and its time; a slice replaced by compaction is kept until NotBeforeNs (0 = no delay).</summary>
internal readonly record struct PendingSlice(ulong Id, uint Size, ulong Index, long TimeNs = 0, long NotBeforeNs = 0);

/// <summary>One extended attribute.</summary>
internal readonly record struct XattrRec(byte[] Name, byte[] Value);

/// <summary>A client session: liveness, the exactly-once reply cache, and its open files.</summary>
internal sealed class Session(ulong id, byte[] info, long lastActiveNs)
{
    public ulong Id { get; } = id;

    public byte[] Info { get; } = info;

    public long LastActiveNs { get; set; } = lastActiveNs;

    /// <summary>The client has received every reply with seq at or below this.</summary>
    public ulong AckedSeq { get; set; }

    /// <summary>seq -> encoded reply, for retries; created on first use.</summary>
    public Dictionary<ulong, byte[]>? Replies { get; set; }

    /// <summary>inode -> open count in this session; created on first use.</summary>
    public Dictionary<ulong, int>? Opens { get; set; }
}
