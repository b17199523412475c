// Reading applied entries back from the Raft WAL; no-ops and membership entries keep their index but carry no command.
using MirrorFS.MetaServer.Consensus;

namespace MirrorFS.MetaServer.Raft;

public sealed partial class RaftLog : IChangelogSource
{
    public ulong FirstLogIndex => _wal.FirstIndex;

    public IReadOnlyList<CommittedEntry> ReadCommitted(ulong from, ulong to)
    {
        // Applied entries are committed, so no leader change can truncate them while we read.
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
            return [.. _wal.Read(from, to).Select(e =>
            {
                var entry = Decode(e);
                return entry.Kind == EntryKind.Normal && !entry.Data.IsEmpty
                    ? new CommittedEntry(e.Index, entry.Data, true)
                    : new CommittedEntry(e.Index, default, false);
            })];
        }
        catch (ArgumentOutOfRangeException)
        {
            throw new LogCompactedException(from, _wal.FirstIndex);
        }
    }
}
