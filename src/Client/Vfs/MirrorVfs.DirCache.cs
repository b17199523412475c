// MirrorVfs's use of the directory entry cache: lookups answered from a listing, listings read after a burst of
// names the metaserver found, and the hooks the namespace and attribute operations call after changing something.
using Microsoft.Extensions.Logging;
using MirrorFS.Core.Meta;

namespace MirrorFS.Client.Vfs;

public sealed partial class MirrorVfs
{
    /// <summary>Lookups answered from a cached listing, listings kept, and directories cached now (tests read these).</summary>
    internal DirEntryCache? DirCache => _dirCache;

    private static DirEntryCache? NewDirCache(VfsOptions o) =>
        o.DirCache && o.EntryTimeoutSec > 0 ? new DirEntryCache(o.EntryTimeoutSec, o.AttrTimeoutSec) : null;

    /// <summary>A name the metaserver found: when it completes a burst in its directory, the listing is read now
    /// (this lookup's reply waits for it; a failure to read it only means no cache).</summary>
    /// <remarks>Only found names count: lookups of absent names (include-path probes) gain nothing from a listing,
    /// which never answers for them.</remarks>
    private async Task NoteFoundAsync(DirEntryCache cache, VfsContext ctx, ulong parent, byte[] name)
    {
        if (cache.NoteFound(parent, name) is not { } ticket)
        {
            return;
        }
        try
        {
            await FillAsync(cache, ticket, ctx);
        }
        catch (Exception e)
        {
            // The lookup itself is answered already; the listing is only a shortcut.
            _log.LogDebug("reading the listing of directory {Dir} for the entry cache failed: {Error}", parent, e.Message);
        }
    }

    /// <summary>The entry from a fresh cached listing, or null when the metaserver has to be asked (as it always was).</summary>
    private VfsEntry? FromDirCache(DirEntryCache cache, ulong parent, byte[] name)
    {
        if (cache.TryGet(parent, name) is not { } hit)
        {
            return null;
        }
        // An inode this client tracks (open, being written, recently changed here) has attributes newer than any
        // listing may hold, and noting a listing's attributes into its state could take them back: ask the
        // metaserver, as before. For the others the server path's merge (WithDirty, NoteAttr) has nothing to do.
        if (Known(hit.Attr.Inode) is not null)
        {
            return null;
        }
        _options.Metrics?.DirCacheHits.Inc();
        return new VfsEntry(hit.Attr, hit.EntryTimeoutSec, hit.AttrTimeoutSec);
    }

    /// <summary>Reads the directory's whole listing with attributes, page by page, up to the cache's per-directory
    /// cap; anything else (an error, an exception, too many entries) leaves nothing cached.</summary>
    private async Task FillAsync(DirEntryCache cache, DirEntryCache.FillTicket ticket, VfsContext ctx)
    {
        var done = false;
        try
        {
            var entries = new List<(byte[] Name, Attr Attr)>();
            ulong offset = 0;
            while (true)
            {
                var r = await Read(new ReadDirRequest { Cred = ctx.ToCred(), Inode = ticket.Dir, Offset = offset, Limit = _options.ReadDirPageEntries },
                    static (m, q, c) => m.ReadDirAsync(q, c));
                if (r.Errno != 0 || (r.Entries.Count == 0 && !r.Eof))
                {
                    return;
                }
                foreach (var e in r.Entries)
                {
                    entries.Add((e.Name.ToByteArray(), e.Attr));
                }
                // "." and ".." are in the count: the cap is on the rest.
                if (entries.Count > cache.EntriesPerDirLimit + 2)
                {
                    cache.AbandonTooLarge(ticket);
                    done = true;
                    return;
                }
                if (r.Eof)
                {
                    break;
                }
                offset = r.Entries[^1].Offset;
            }
            done = true;
            if (cache.Complete(ticket, entries))
            {
                _options.Metrics?.DirCacheListings.Inc();
            }
        }
        finally
        {
            if (!done)
            {
                cache.Abandon(ticket);
            }
        }
    }

    /// <summary>Most directories whose attributes from an own create are kept (see <see cref="NoteOwnDirAttr"/>).</summary>
    private const int OwnDirAttrsMax = 4096;

    private readonly System.Collections.Concurrent.ConcurrentDictionary<ulong, (Attr Attr, long Until)> _ownDirAttrs = new();

    /// <summary>This client changed the entries of <paramref name="dir"/> (and so its mtime and maybe nlink).</summary>
    private void DirChanged(ulong dir)
    {
        _dirCache?.InvalidateDir(dir);
        _ownDirAttrs.TryRemove(dir, out _);
    }

    /// <summary>This client changed the attributes of <paramref name="inode"/>.</summary>
    private void AttrChanged(ulong inode)
    {
        _dirCache?.InvalidateChild(inode);
        _ownDirAttrs.TryRemove(inode, out _);
    }

    /// <summary>Keeps a directory's attributes as this client's own create returned them, for the attribute timeout.
    /// The kernel drops a directory's cached attributes after each create in it (its mtime moved) and asks for them
    /// before its next permission check there; that answer is already known. What another client changes in the
    /// meantime shows after the timeout, as with the kernel's own attribute cache.</summary>
    private void NoteOwnDirAttr(Attr attr)
    {
        if (_options.AttrTimeoutSec <= 0)
        {
            return;
        }

        if (_ownDirAttrs.Count >= OwnDirAttrsMax)
        {
            _ownDirAttrs.Clear();
        }

        _ownDirAttrs[attr.Inode] = (attr, Environment.TickCount64 + (long)(_options.AttrTimeoutSec * 1000));
    }

    private Attr? OwnDirAttr(ulong inode)
    {
        if (!_ownDirAttrs.TryGetValue(inode, out var own))
        {
            return null;
        }

        if (Environment.TickCount64 < own.Until)
        {
            return own.Attr;
        }

        _ownDirAttrs.TryRemove(new KeyValuePair<ulong, (Attr, long)>(inode, own));
        return null;
    }
}
