// The mirror part of the metadata state: this cluster's role, and how far each mirror has applied the primary's log.
namespace MirrorFS.MetaServer.Engine;

/// <summary>What a cluster is with respect to changelog shipping.</summary>
public enum MirrorRole : byte
{
    /// <summary>An ordinary primary (or a fresh cluster).</summary>
    None = 0,

    /// <summary>Applies the primary's entries and refuses writes.</summary>
    Mirror = 1,

    /// <summary>Was a mirror, now accepts writes; keeps numbering from the primary index it reached.</summary>
    Promoted = 2,
}

/// <summary>Bounds of the mirror state.</summary>
public static class MirrorLimits
{
    public const int MirrorIdBytesMax = 128;

    /// <summary>Mirrors (changelog readers with an id) one primary tracks.</summary>
    public const int MirrorsMax = 256;

    public const int UriBytesMax = 4096;

    /// <summary>Largest primary snapshot a mirror bootstraps from (it is staged in memory while it arrives).</summary>
    public const long BootstrapBytesMax = 4L << 30;

    /// <summary>Largest piece of a bootstrap snapshot in one command.</summary>
    public const int BootstrapChunkBytesMax = 4 << 20;
}

/// <summary>One mirror's durable progress as the primary recorded it.</summary>
internal readonly record struct MirrorProgressRec(ulong Applied, long LastSeenNs, long RegisteredNs);

/// <summary>
/// Two halves. Local to this cluster (differ between a primary and its mirror): role, primary, mirror bucket, index
/// offset, bootstrap staging, time of the last mirrored entry. Shared (replicated from the primary with the rest of
/// the state): <see cref="Progress"/>. <see cref="LastChangeIndex"/> is derived and not snapshotted.
/// </summary>
internal sealed class MirrorState
{
    public MirrorRole Role;
    public string Primary = "";
    public string MirrorStorage = "";

    /// <summary>Entries applied as a primary reflect primary index = own log index + this (non-zero after Promote).</summary>
    public long IndexOffset;

    /// <summary>The primary index a promoted mirror had reached (0 = never promoted).</summary>
    public ulong PromotedIndex;

    /// <summary>Primary time of the newest mirrored entry applied (mirrors only).</summary>
    public long AppliedTimeNs;

    // A primary snapshot arriving in pieces (mirrors only); null when none is being received.
    public List<byte[]>? Staging;
    public ulong StagingIndex;
    public ulong StagingTotal;
    public ulong StagingBytes;

    public readonly SortedDictionary<string, MirrorProgressRec> Progress = new(StringComparer.Ordinal);

    /// <summary>Primary index of the newest entry other than a MirrorProgress record: progress reports at or past it
    /// say nothing new, so the leader need not record them (that would feed a report-record-report loop).</summary>
    public ulong LastChangeIndex;
}
