// Leader side of the trash: the purge command, issued by the leader's purge job (not an RPC).
using Google.Protobuf;
using MirrorFS.Core.Meta;

namespace MirrorFS.MetaServer.Engine;

public sealed partial class MetaService
{
    /// <summary>
    /// Deletes for real what lies in trash hour directories whose hour ended <paramref name="trashDays"/> days or more
    /// before <paramref name="now"/>, one bounded command at a time; proposes nothing when none has. Returns the
    /// names removed.
    /// </summary>
    public async Task<ulong> PurgeTrashAsync(DateTimeOffset now, uint trashDays, CancellationToken ct = default)
    {
        var beforeNs = ((now.UtcTicks - DateTime.UnixEpoch.Ticks) * 100) - (trashDays * 86_400L * 1_000_000_000);
        ulong removed = 0;
        // Each round removes at least one hour directory or PurgeEntries names, so this ends; the cap guards a bug.
        for (var round = 0; round < PurgeRoundsMax && _state.TrashHasExpired(beforeNs); round++)
        {
            var cmd = new Command { PurgeTrash = new PurgeTrashRequest { BeforeNs = beforeNs } };
            Task<(ulong Index, byte[] Reply)> proposal;
            lock (_prepare)
            {
                Prepare(cmd, Alloc.None, 0);
                proposal = _log.ProposeAsync(cmd.ToByteArray(), ct);
            }
            var (_, bytes) = await proposal;
            var reply = PurgeTrashReply.Parser.ParseFrom(bytes);
            removed += reply.Entries;
            if (reply.Errno != 0 || (reply.Entries == 0 && reply.Dirs == 0))
            {
                break;
            }
        }
        return removed;
    }

    private const int PurgeRoundsMax = 10_000;
}
