// Read access to a log's committed entries, for shipping them to mirror clusters.
namespace MirrorFS.MetaServer.Consensus;

/// <summary>One committed entry of this node's own log. <see cref="IsCommand"/> is false for entries that change no
/// state (Raft no-ops and membership changes): they keep their index but carry no command.</summary>
public readonly record struct CommittedEntry(ulong Index, ReadOnlyMemory<byte> Command, bool IsCommand);

/// <summary>An <see cref="IReplicatedLog"/> whose applied entries can be read back (from its WAL).</summary>
public interface IChangelogSource
{
    /// <summary>Oldest own-log index still readable (older ones are only in snapshots).</summary>
    ulong FirstLogIndex { get; }

    /// <summary>Entries in [<paramref name="from"/>, <paramref name="to"/>] that are applied here, in order, stopping
    /// early at a byte budget (at least one entry when any is applied). Throws <see cref="LogCompactedException"/>
    /// when <paramref name="from"/> is no longer in the log.</summary>
    IReadOnlyList<CommittedEntry> ReadCommitted(ulong from, ulong to);
}

/// <summary>The entry asked for was compacted into a snapshot: the reader must start from a snapshot.</summary>
public sealed class LogCompactedException(ulong wanted, ulong first)
    : Exception($"log entry {wanted} was compacted away; the log starts at {first}: start from a snapshot")
{
    public ulong FirstIndex { get; } = first;
}
