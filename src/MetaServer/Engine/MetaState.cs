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
    /// <summary>The primary index this state reflects (what replies carry). Equal to <see cref="LogIndex"/> on a
    /// primary that never was a mirror; on a mirror, the newest primary entry applied.</summary>
    public ulong AppliedIndex;

    /// <summary>Index of the last entry of this cluster's own log applied (the IStateMachine contract).</summary>
    public ulong LogIndex;

    /// <summary>Mirror role and the mirrors' progress (see MetaStateMachine.Mirror.cs).</summary>
    public MirrorState Mirror = new();
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

    /// <summary>A load (LoadEntries BEGIN) has started and not finished: the tree is incomplete.</summary>
    public bool Loading;

    /// <summary>Named leases (AcquireLease) by name.</summary>
    public readonly Dictionary<string, LeaseRec> Leases = new(StringComparer.Ordinal);

    /// <summary>Directory inode -> its quota (MetaStateMachine.Quota.cs).</summary>
    public readonly Dictionary<ulong, QuotaRec> Quotas = [];

    /// <summary>Regular files with more than one name: one parent per name, sorted (derived from the directories, not snapshotted).</summary>
    public readonly Dictionary<ulong, List<ulong>> LinkParents = [];
}
