// Dump, load and lease calls of the metadata engine.
using System.Runtime.CompilerServices;
using MirrorFS.Core.Meta;

namespace MirrorFS.MetaServer.Engine;

public sealed partial class MetaService
{
    /// <summary>Where dumps are spooled before they are streamed (the server's data directory); null = the temp directory.</summary>
    public string? DumpSpoolDirectory { get; init; }

    public Task<LoadEntriesReply> LoadEntriesAsync(LoadEntriesRequest r, CancellationToken ct = default) =>
        MutateAsync(r, static (c, o) => c.LoadEntries = o, Alloc.None, LoadEntriesReply.Parser, ct);

    public Task<AcquireLeaseReply> AcquireLeaseAsync(AcquireLeaseRequest r, CancellationToken ct = default) =>
        MutateAsync(r, static (c, o) => c.AcquireLease = o, Alloc.None, AcquireLeaseReply.Parser, ct);

    /// <summary>
    /// The whole tree as of one applied index. Why a spool rather than paging the live state or a second in-memory
    /// copy: paging the live state under the lock page by page would mix log indexes, holding the lock while the
    /// network drains would stall writers behind a slow reader, and a restored copy would double the server's
    /// memory. So the walk runs once under the read lock into an unlinked local file (like a snapshot), and the
    /// pages are cut from that file as fast as the caller takes them. Memory stays bounded on both sides.
    /// </summary>
    public async IAsyncEnumerable<DumpPage> DumpAsync(DumpRequest r, [EnumeratorCancellation] CancellationToken ct = default)
    {
        await _log.ReadBarrierAsync(ct).ConfigureAwait(false);
        if (r.Cred is { Uid: not 0 })
        {
            yield return new DumpPage { Errno = Errno.EPERM, Index = _state.AppliedIndex, Eof = true };
            yield break;
        }
        var limit = r.PageNodes == 0 ? DumpLoadLimits.DumpPageNodesDefault : (int)Math.Min(r.PageNodes, DumpLoadLimits.DumpPageNodesMax);
        var dir = DumpSpoolDirectory ?? Path.GetTempPath();
        var path = Path.Combine(dir, $"dump-{Guid.NewGuid():N}.spool");
        using var spool = new FileStream(path, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.None, 1 << 16);
        // Unlinked at once: a crash leaves nothing behind; the open handle keeps the data until disposed.
        File.Delete(path);
        var (errno, index, header) = await Task.Run(() => _state.WriteDump(spool), ct).ConfigureAwait(false);
        if (errno != Errno.OK)
        {
            yield return new DumpPage { Errno = errno, Index = index, Eof = true };
            yield break;
        }
        spool.Position = 0;
        var page = new DumpPage { Index = index, Header = header };
        var bytes = 0;
        for (ulong i = 0; i < header!.Nodes; i++)
        {
            var node = DumpNode.Parser.ParseDelimitedFrom(spool);
            var size = node.CalculateSize();
            if (page.Nodes.Count >= limit || (page.Nodes.Count > 0 && bytes + size > DumpLoadLimits.DumpPageBytesMax))
            {
                yield return page;
                page = new DumpPage { Index = index };
                bytes = 0;
            }
            page.Nodes.Add(node);
            bytes += size;
        }
        page.Eof = true;
        yield return page;
    }
}
