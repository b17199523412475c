// The whole metadata state: plain collections and counters, mutated only by MetaStateMachine under its write lock.
using MirrorFS.Core.Meta;

namespace MirrorFS.MetaServer.Engine;

/// <summary>
/// Inodes are values in one dictionary; directories, symlink targets, xattrs and chunks are side tables keyed by
/// inode, so an empty file costs one inode record plus one directory entry. Anything that iterates a dictionary in
/// a way that changes state sorts first: dictionary order differs between a replica that applied the log and one
/// restored from a snapshot.
/// </summary>
internal sealed class MetaState
{
    public ulong AppliedIndex;
    public ulong NextInode = MetaLimits.RootInode + 1; // inode 1 is the root, made by Format
    public ulong NextSliceId = 1;
    public ulong NextSessionId = 1;
    public long LastTimeNs;
    public ulong UsedBytes;
    public ulong InodeCount;
    public Volume? Volume;

    public readonly Dictionary<ulong, InodeRec> Inodes = [];
    public readonly Dictionary<ulong, DirTable> Dirs = [];
    public readonly Dictionary<ulong, byte[]> Symlinks = [];
    public readonly Dictionary<ulong, List<XattrRec>> Xattrs = [];
    public readonly Dictionary<ChunkKey, List<SliceRec>> Chunks = [];
    public readonly Dictionary<ulong, Session> Sessions = [];

    /// <summary>inode -> open count over all sessions (derived from <see cref="Sessions"/>, not snapshotted).</summary>
    public readonly Dictionary<ulong, int> OpenCounts = [];

    /// <summary>slice id -> pending delete; apply never enumerates it (the snapshot writes it sorted).</summary>
    public readonly Dictionary<ulong, PendingSlice> Pending = [];
}
