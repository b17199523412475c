// Reading applied entries back from the single-node WAL (every entry is a command).
namespace MirrorFS.MetaServer.Consensus;

public sealed partial class DurableSingleNodeLog : IChangelogSource
{
    public ulong FirstLogIndex => _wal.FirstIndex;

    public IReadOnlyList<CommittedEntry> ReadCommitted(ulong from, ulong to)
    {
        to = Math.Min(to, AppliedIndex);
        if (from > to)
        {
            return [];
        }
        var first = _wal.FirstIndex;
        if (from < first)
        {
            throw new LogCompactedException(from, first);
        }
        try
        {
            return [.. _wal.Read(from, to).Select(e => new CommittedEntry(e.Index, e.Payload, true))];
        }
        catch (ArgumentOutOfRangeException)
        {
            // Compacted between the check and the read.
            throw new LogCompactedException(from, _wal.FirstIndex);
        }
    }
}
