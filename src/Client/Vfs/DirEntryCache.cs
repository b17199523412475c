// Client-side directory listings kept for one entry-cache period, so a burst of lookups of many names in one directory
// (ls -l without readdirplus, a stat loop, a build tool) costs one paged ReadDir instead of one Lookup per name.
using MirrorFS.Core.Meta;

namespace MirrorFS.Client.Vfs;

/// <summary>
/// Positive lookups from cached directory listings. A directory's listing is read (by the caller, see
/// <see cref="NoteFound"/>) once the metaserver found <see cref="MissesToList"/> distinct names in it within
/// <see cref="MissWindowMs"/> (names it did not find do not count: a listing never answers for them). The listing
/// answers for the mount's entry-cache period, counted from before it was read, and the answers carry only what is
/// left of the entry and attribute periods, so nothing is believed longer than a Lookup made when the listing was read
/// would be. Names absent from a listing are never answered here (negative answers would hide other clients' creates).
/// This client's own changes drop what they touch: <see cref="InvalidateDir"/> for a directory whose entries changed,
/// <see cref="InvalidateChild"/> for an inode whose attributes changed. Thread-safe; one lock, held only for
/// dictionary work.
/// </summary>
internal sealed class DirEntryCache
{
    /// <summary>Distinct names of one directory looked up on the metaserver (and found) within <see cref="MissWindowMs"/>
    /// that make it worth listing.</summary>
    public const int MissesToList = 3;

    public const int MissWindowMs = 1_000;

    /// <summary>A directory with more entries is not cached (its listing is read up to here, then thrown away).</summary>
    public const int EntriesPerDirMax = 16_384;

    /// <summary>Listings kept at once; the least recently used goes first.</summary>
    public const int DirsMax = 64;

    /// <summary>Entries across all listings (an entry with its attributes is ~200 bytes: ~25 MiB).</summary>
    public const int EntriesMax = 131_072;

    /// <summary>A directory found too large is not listed again for this long.</summary>
    public const int TooLargeRetryMs = 30_000;

    /// <summary>Directories whose recent misses are counted; past it the counts start over.</summary>
    public const int MissTrackersMax = 1_024;

    /// <summary>Inodes remembered as changed by this client; past it the marks no listing needs are dropped.</summary>
    public const int ChildMarksMax = 65_536;

    private readonly Lock _lock = new();
    private readonly long _entryTtlMs;
    private readonly long _attrTtlMs;
    private readonly Func<long> _clockMs;
    private readonly int _dirsMax;
    private readonly int _entriesPerDirMax;
    private readonly int _entriesMax;
    private readonly Dictionary<ulong, LinkedListNode<Listing>> _listings = [];
    private readonly LinkedList<Listing> _lru = new(); // most recently used first
    private readonly Dictionary<ulong, MissWindow> _misses = [];
    private readonly Dictionary<ulong, long> _childChanged = []; // inode -> sequence of its last attribute change here
    private readonly Dictionary<ulong, long> _tooLargeUntilMs = [];
    private readonly Dictionary<ulong, long> _filling = [];     // directory being read -> its ticket's sequence
    private readonly HashSet<ulong> _changedWhileFilling = [];
    private long _seq;
    private int _entries;
    private long _hits;
    private long _listed;
    private long _discarded;
    private long _tooLarge;

    /// <param name="entryTimeoutSec">The mount's entry-cache period: how long a listing answers.</param>
    /// <param name="attrTimeoutSec">The mount's attribute-cache period: how long a listing's attributes are good.</param>
    /// <param name="clockMs">Milliseconds of a monotonic clock (tests move it by hand).</param>
    public DirEntryCache(double entryTimeoutSec, double attrTimeoutSec, Func<long>? clockMs = null,
        int dirsMax = DirsMax, int entriesPerDirMax = EntriesPerDirMax, int entriesMax = EntriesMax)
    {
        _entryTtlMs = (long)(Math.Max(0, entryTimeoutSec) * 1000);
        _attrTtlMs = (long)(Math.Max(0, attrTimeoutSec) * 1000);
        _clockMs = clockMs ?? (static () => Environment.TickCount64);
        _dirsMax = Math.Max(1, dirsMax);
        _entriesPerDirMax = Math.Max(1, entriesPerDirMax);
        _entriesMax = Math.Max(_entriesPerDirMax, entriesMax);
    }

    /// <summary>Lookups answered from a listing.</summary>
    public long Hits => Interlocked.Read(ref _hits);

    /// <summary>Listings read and kept.</summary>
    public long Listed => Interlocked.Read(ref _listed);

    /// <summary>Listings read but not kept: this client changed the directory while it was being read.</summary>
    public long Discarded => Interlocked.Read(ref _discarded);

    /// <summary>Listings abandoned because the directory has more than the per-directory cap.</summary>
    public long TooLarge => Interlocked.Read(ref _tooLarge);

    /// <summary>Directories with a listing (fresh or not yet evicted).</summary>
    public int Directories
    {
        get
        {
            lock (_lock)
            {
                return _listings.Count;
            }
        }
    }

    /// <summary>Entries across all kept listings.</summary>
    public int Entries
    {
        get
        {
            lock (_lock)
            {
                return _entries;
            }
        }
    }

    public int EntriesPerDirLimit => _entriesPerDirMax;

    /// <summary>What a hit answers: the attributes and what is left of the entry and attribute periods.</summary>
    public readonly record struct Hit(Attr Attr, double EntryTimeoutSec, double AttrTimeoutSec);

    /// <summary>A listing being read: which directory, and the sequence and time from before the first page was asked.</summary>
    public sealed class FillTicket
    {
        internal FillTicket(ulong dir, long seq, long startMs)
        {
            Dir = dir;
            Seq = seq;
            StartMs = startMs;
        }

        public ulong Dir { get; }

        internal long Seq { get; }

        internal long StartMs { get; }
    }

    private sealed class Listing(ulong dir, long seq, long startMs, Dictionary<byte[], Attr> entries)
    {
        public ulong Dir { get; } = dir;

        public long Seq { get; } = seq;

        public long StartMs { get; } = startMs;

        public Dictionary<byte[], Attr> Entries { get; } = entries;
    }

    /// <summary>Recent distinct missed names of one directory (their hashes; a collision only delays a listing).</summary>
    private sealed class MissWindow
    {
        public long StartMs;
        public int Count;
        public readonly int[] Hashes = new int[MissesToList];
    }

    /// <summary>The entry <paramref name="name"/> of <paramref name="dir"/> from a fresh listing, unless this client
    /// changed that inode since the listing was read.</summary>
    public Hit? TryGet(ulong dir, byte[] name)
    {
        lock (_lock)
        {
            if (!_listings.TryGetValue(dir, out var node))
            {
                return null;
            }
            var l = node.Value;
            var age = _clockMs() - l.StartMs;
            if (age >= _entryTtlMs)
            {
                RemoveLocked(node);
                return null;
            }
            if (!l.Entries.TryGetValue(name, out var attr))
            {
                return null;
            }
            // A file with several names may have been changed through another directory's name.
            if (!PosixMode.IsDir(attr.Mode) && attr.Nlink > 1)
            {
                return null;
            }
            if (_childChanged.TryGetValue(attr.Inode, out var changed) && changed > l.Seq)
            {
                return null;
            }
            if (node != _lru.First)
            {
                _lru.Remove(node);
                _lru.AddFirst(node);
            }
            _hits++;
            return new Hit(attr, (_entryTtlMs - age) / 1000.0, Math.Max(0, _attrTtlMs - age) / 1000.0);
        }
    }

    /// <summary>Counts a name the cache could not answer and the metaserver found; returns a ticket when the caller
    /// should now read the directory's listing (and then call <see cref="Complete"/> or <see cref="Abandon"/> with it).</summary>
    public FillTicket? NoteFound(ulong dir, byte[] name)
    {
        if (_entryTtlMs <= 0 || IsDot(name))
        {
            return null;
        }
        var hash = HashOf(name);
        lock (_lock)
        {
            var now = _clockMs();
            if (_filling.ContainsKey(dir))
            {
                return null;
            }
            if (_listings.TryGetValue(dir, out var node))
            {
                if (now - node.Value.StartMs < _entryTtlMs)
                {
                    return null; // fresh: the name is simply not in it (or not answerable from it)
                }
                RemoveLocked(node);
            }
            if (_tooLargeUntilMs.TryGetValue(dir, out var until))
            {
                if (now < until)
                {
                    return null;
                }
                _tooLargeUntilMs.Remove(dir);
            }
            if (!_misses.TryGetValue(dir, out var w))
            {
                if (_misses.Count >= MissTrackersMax)
                {
                    _misses.Clear();
                }
                w = new MissWindow { StartMs = now };
                _misses[dir] = w;
            }
            if (now - w.StartMs >= MissWindowMs)
            {
                w.StartMs = now;
                w.Count = 0;
            }
            for (var i = 0; i < w.Count; i++)
            {
                if (w.Hashes[i] == hash)
                {
                    return null;
                }
            }
            w.Hashes[w.Count++] = hash;
            if (w.Count < MissesToList)
            {
                return null;
            }
            _misses.Remove(dir);
            var seq = ++_seq;
            _filling[dir] = seq;
            return new FillTicket(dir, seq, now);
        }
    }

    /// <summary>Keeps the listing read for <paramref name="ticket"/> unless this client changed the directory since
    /// the ticket was given or the listing is already too old; "." and ".." are left out. Returns whether it was kept.</summary>
    public bool Complete(FillTicket ticket, IEnumerable<(byte[] Name, Attr Attr)> entries)
    {
        var map = new Dictionary<byte[], Attr>(NameComparer.Instance);
        foreach (var (name, attr) in entries)
        {
            if (!IsDot(name))
            {
                map[name] = attr;
            }
        }
        lock (_lock)
        {
            var changed = EndFillLocked(ticket.Dir);
            if (map.Count > _entriesPerDirMax)
            {
                TooLargeLocked(ticket.Dir);
                return false;
            }
            if (changed || _clockMs() - ticket.StartMs >= _entryTtlMs)
            {
                _discarded++;
                return false;
            }
            if (_listings.TryGetValue(ticket.Dir, out var old))
            {
                RemoveLocked(old);
            }
            while (_listings.Count > 0 && (_listings.Count >= _dirsMax || _entries + map.Count > _entriesMax))
            {
                RemoveLocked(_lru.Last!);
            }
            _listings[ticket.Dir] = _lru.AddFirst(new Listing(ticket.Dir, ticket.Seq, ticket.StartMs, map));
            _entries += map.Count;
            _listed++;
            return true;
        }
    }

    /// <summary>The listing could not be read (an error): nothing is kept; later misses may try again.</summary>
    public void Abandon(FillTicket ticket)
    {
        lock (_lock)
        {
            EndFillLocked(ticket.Dir);
        }
    }

    /// <summary>Ends the fill of <paramref name="dir"/>; returns whether this client changed the directory meanwhile.</summary>
    private bool EndFillLocked(ulong dir)
    {
        _filling.Remove(dir);
        return _changedWhileFilling.Remove(dir);
    }

    /// <summary>The directory has more than <see cref="EntriesPerDirLimit"/> entries: not kept, not tried again for
    /// <see cref="TooLargeRetryMs"/>.</summary>
    public void AbandonTooLarge(FillTicket ticket)
    {
        lock (_lock)
        {
            EndFillLocked(ticket.Dir);
            TooLargeLocked(ticket.Dir);
        }
    }

    private void TooLargeLocked(ulong dir)
    {
        _tooLarge++;
        if (_tooLargeUntilMs.Count >= MissTrackersMax)
        {
            _tooLargeUntilMs.Clear();
        }
        _tooLargeUntilMs[dir] = _clockMs() + TooLargeRetryMs;
    }

    /// <summary>This client changes the entries of <paramref name="dir"/> (create, unlink, rename...): its listing goes,
    /// a listing of it being read is not kept, and its own attributes (mtime, nlink) count as changed.</summary>
    public void InvalidateDir(ulong dir)
    {
        lock (_lock)
        {
            if (_listings.TryGetValue(dir, out var node))
            {
                RemoveLocked(node);
            }
            // A listing being read may have been read before this change: it must not be kept.
            if (_filling.ContainsKey(dir))
            {
                _changedWhileFilling.Add(dir);
            }
            MarkChildLocked(dir, ++_seq);
        }
    }

    /// <summary>This client changes the attributes of <paramref name="inode"/>: no listing read before answers for it.</summary>
    public void InvalidateChild(ulong inode)
    {
        lock (_lock)
        {
            MarkChildLocked(inode, ++_seq);
        }
    }

    private void MarkChildLocked(ulong inode, long seq)
    {
        if (_listings.Count == 0 && _filling.Count == 0)
        {
            _childChanged.Clear(); // nothing read before now can ask
            return;
        }
        if (_childChanged.Count >= ChildMarksMax)
        {
            PruneChildMarksLocked();
        }
        _childChanged[inode] = seq;
    }

    /// <summary>Drops the marks older than every listing (they can no longer hide an entry); if that frees nothing,
    /// drops every listing too.</summary>
    private void PruneChildMarksLocked()
    {
        var oldest = long.MaxValue;
        foreach (var l in _lru)
        {
            oldest = Math.Min(oldest, l.Seq);
        }
        foreach (var seq in _filling.Values)
        {
            oldest = Math.Min(oldest, seq);
        }
        List<ulong> stale = [];
        foreach (var (inode, seq) in _childChanged)
        {
            if (seq <= oldest)
            {
                stale.Add(inode);
            }
        }
        foreach (var inode in stale)
        {
            _childChanged.Remove(inode);
        }
        if (_childChanged.Count >= ChildMarksMax)
        {
            while (_lru.Last is { } last)
            {
                RemoveLocked(last);
            }
            // Fills in progress would miss the marks dropped here: they must not keep what they read.
            _changedWhileFilling.UnionWith(_filling.Keys);
            _childChanged.Clear();
        }
    }

    private void RemoveLocked(LinkedListNode<Listing> node)
    {
        _lru.Remove(node);
        _listings.Remove(node.Value.Dir);
        _entries -= node.Value.Entries.Count;
        if (_listings.Count == 0 && _filling.Count == 0)
        {
            _childChanged.Clear();
        }
    }

    private static bool IsDot(byte[] name) => name is [(byte)'.'] or [(byte)'.', (byte)'.'];

    private static int HashOf(byte[] name)
    {
        var h = new HashCode();
        h.AddBytes(name);
        return h.ToHashCode();
    }

    /// <summary>Names are bytes (any encoding); compared byte for byte.</summary>
    private sealed class NameComparer : IEqualityComparer<byte[]>
    {
        public static readonly NameComparer Instance = new();

        public bool Equals(byte[]? x, byte[]? y) => x.AsSpan().SequenceEqual(y);

        public int GetHashCode(byte[] obj) => HashOf(obj);
    }
}
