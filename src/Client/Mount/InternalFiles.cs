// The virtual files at the mount root (.accesslog, .stats, .config): reserved inodes, attributes, opens and reads.
using System.Collections.Concurrent;
using System.Text;
using MirrorFS.Client.Fuse;
using MirrorFS.Core.Metrics;

namespace MirrorFS.Client.Mount;

/// <summary>
/// Three read-only files that exist only in this client. Their inode numbers sit in a range the metaserver never
/// reaches (it hands out inodes one by one from 2, so it would need 2^63 of them). As in JuiceFS, lookup of the
/// names at the root always finds them and readdir of the root lists them after the real entries, unless the mount
/// hides them (then only lookup finds them). They cannot be written, renamed, linked or removed, and no real entry
/// of the same name can be created at the root.
/// </summary>
public sealed partial class InternalFiles
{
    /// <summary>Client-internal inodes are [InodeMin, InodeMin + 0xFFFF]; real ones never get there.</summary>
    public const ulong InodeMin = 0x7FFF_FFFF_0000_0000;
    public const ulong AccessLogInode = InodeMin + 1;
    public const ulong StatsInode = InodeMin + 2;
    public const ulong ConfigInode = InodeMin + 3;

    public const string AccessLogName = ".accesslog";
    public const string StatsName = ".stats";
    public const string ConfigName = ".config";

    /// <summary>readdir offsets at and above this walk the internal entries (real offsets are slot numbers, far below).</summary>
    public const long ReadDirOffsetBase = 1L << 62;

    /// <summary>Seconds the kernel may cache their attributes and names (their size changes with every open).</summary>
    private const double CacheSec = 1.0;

    private const ulong RootInode = 1;

    /// <summary>Opens of .stats and .config at once; each holds a snapshot of at most a few hundred KiB.</summary>
    public const int SnapshotOpensMax = 256;

    private readonly MetricsRegistry _metrics;
    private readonly Func<string> _config;
    private readonly Node[] _nodes;
    private readonly ConcurrentDictionary<ulong, Opened> _open = new();
    private long _nextHandle;

    /// <param name="config">Builds the .config text (JSON) at each open.</param>
    /// <param name="listed">Whether readdir of the root shows them (lookup finds them either way).</param>
    public InternalFiles(MetricsRegistry metrics, AccessLog accessLog, Func<string> config, bool listed = true)
    {
        _metrics = metrics;
        AccessLog = accessLog;
        _config = config;
        Listed = listed;
        var uid = Native.GetEuid();
        var gid = Native.GetEgid();
        var now = DateTimeOffset.UtcNow;
        _nodes =
        [
            new Node(AccessLogInode, AccessLogName, 0x8000 | 0x100, uid, gid, now), // 0400: it shows every user's activity
            new Node(StatsInode, StatsName, 0x8000 | 0x124, uid, gid, now),         // 0444
            new Node(ConfigInode, ConfigName, 0x8000 | 0x100, uid, gid, now),       // 0400: settings of this mount
        ];
    }

    public AccessLog AccessLog { get; }

    public bool Listed { get; }

    public static bool Owns(ulong ino) => ino >= InodeMin && ino <= InodeMin + 0xFFFF;

    /// <summary>Whether <paramref name="name"/> in <paramref name="parent"/> is one of these files.</summary>
    public bool IsReserved(ulong parent, byte[] name) => parent == RootInode && Find(name) is not null;

    private Node? Find(ReadOnlySpan<byte> name)
    {
        foreach (var n in _nodes)
        {
            if (name.SequenceEqual(n.NameBytes))
            {
                return n;
            }
        }
        return null;
    }

    private Node? Find(ulong ino) => Array.Find(_nodes, n => n.Inode == ino);

    /// <summary>Answers a lookup of one of these names at the root; false when it is not one of them.</summary>
    public bool TryLookup(FuseRequest r, ulong parent, byte[] name)
    {
        if (parent != RootInode || Find(name) is not { } node)
        {
            return false;
        }
        r.ReplyEntry(Entry(node));
        return true;
    }

    private static FuseEntry Entry(Node n) => new()
    {
        Ino = n.Inode,
        Generation = 1,
        Attr = n.Stat(),
        AttrTimeout = CacheSec,
        EntryTimeout = CacheSec,
    };

    public void GetAttr(FuseRequest r, ulong ino)
    {
        if (Find(ino) is { } n)
        {
            r.ReplyAttr(n.Stat(), CacheSec);
        }
        else
        {
            r.ReplyError(Errno.ENOENT);
        }
    }

    public void Open(FuseRequest r, ulong ino, FuseFileInfo fi)
    {
        if (Find(ino) is null)
        {
            r.ReplyError(Errno.ENOENT);
            return;
        }
        // Root passes the kernel's mode check; refuse writes here too. O_TRUNC would ask for a setattr: refused there.
        if ((fi.Flags & 3) != 0)
        {
            r.ReplyError(Errno.EACCES);
            return;
        }
        Opened opened;
        if (ino == AccessLogInode)
        {
            if (AccessLog.Open() is not { } reader)
            {
                r.ReplyError(Errno.EBUSY);
                return;
            }
            opened = new Opened(ino, null, reader);
        }
        else
        {
            if (_open.Count(kv => kv.Value.Reader is null) >= SnapshotOpensMax)
            {
                r.ReplyError(Errno.EBUSY);
                return;
            }
            // A fresh snapshot per open: reads at any offset see one consistent text.
            var text = ino == StatsInode ? _metrics.Collect() : _config();
            opened = new Opened(ino, Encoding.UTF8.GetBytes(text), null);
        }
        var fh = (ulong)Interlocked.Increment(ref _nextHandle);
        _open[fh] = opened;
        // Direct I/O: the size in the attributes (0) says nothing; reads go to us until we return end-of-file.
        r.ReplyOpen(fh, directIo: true, nonSeekable: ino == AccessLogInode);
    }

    public async ValueTask Read(FuseRequest r, ulong ino, int size, long offset, ulong fh)
    {
        if (!_open.TryGetValue(fh, out var o) || o.Inode != ino)
        {
            r.ReplyError(Errno.EBADF);
            return;
        }
        if (o.Reader is { } reader)
        {
            var buf = new byte[Math.Clamp(size, 1, 1 << 20)];
            var n = await reader.ReadAsync(buf).ConfigureAwait(false);
            r.ReplyData(buf.AsSpan(0, n));
            return;
        }
        var data = o.Snapshot!;
        var start = (int)Math.Clamp(offset, 0, data.Length);
        r.ReplyData(data.AsSpan(start, Math.Min(size, data.Length - start)));
    }

    public void Release(FuseRequest r, ulong fh)
    {
        if (_open.TryRemove(fh, out var o))
        {
            o.Reader?.Dispose();
        }
        r.ReplyOk();
    }

    /// <summary>The entries readdir of the root adds, from index <paramref name="from"/> (none when not listed).</summary>
    public IEnumerable<(byte[] Name, FuseEntry Entry, long NextOffset)> DirEntries(int from)
    {
        if (!Listed)
        {
            yield break;
        }
        for (var i = Math.Max(0, from); i < _nodes.Length; i++)
        {
            yield return (_nodes[i].NameBytes, Entry(_nodes[i]), ReadDirOffsetBase + i + 1);
        }
    }

    private sealed record Opened(ulong Inode, byte[]? Snapshot, AccessLog.Reader? Reader);

    private sealed class Node(ulong inode, string name, uint mode, uint uid, uint gid, DateTimeOffset time)
    {
        public ulong Inode { get; } = inode;

        public byte[] NameBytes { get; } = Encoding.UTF8.GetBytes(name);

        public FuseStat Stat()
        {
            var st = new FuseStat
            {
                Ino = Inode,
                Nlink = 1,
                Mode = mode,
                Uid = uid,
                Gid = gid,
                Size = 0,
                Blksize = 4096,
            };
            var s = time.ToUnixTimeSeconds();
            st.SetAtime(s, 0);
            st.SetMtime(s, 0);
            st.SetCtime(s, 0);
            return st;
        }
    }

    private static partial class Native
    {
        [System.Runtime.InteropServices.LibraryImport("libc", EntryPoint = "geteuid")]
        internal static partial uint GetEuid();

        [System.Runtime.InteropServices.LibraryImport("libc", EntryPoint = "getegid")]
        internal static partial uint GetEgid();
    }
}
