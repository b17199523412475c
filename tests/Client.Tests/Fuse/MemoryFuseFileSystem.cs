// A small in-memory filesystem over the FUSE binding, for mount tests only (not the MirrorFS VFS).
using System.Text;
using MirrorFS.Client.Fuse;

namespace MirrorFS.Client.Tests.Fuse;

internal sealed class MemoryFuseFileSystem : FuseFileSystem
{
    private const uint SIfDir = 0x4000;
    private const uint SIfReg = 0x8000;
    private const uint SIfMt = 0xF000;
    private const double TimeoutSeconds = 1.0;

    private sealed class Node
    {
        public ulong Ino;
        public uint Mode;
        public uint Uid;
        public uint Gid;
        public ulong Nlink = 1;
        public byte[] Data = [];
        public long Size;
        public long MtimeSec;
        public readonly SortedDictionary<string, ulong> Children = new(StringComparer.Ordinal);
        public readonly SortedDictionary<string, byte[]> Xattrs = new(StringComparer.Ordinal);
        public bool IsDir => (Mode & SIfMt) == SIfDir;
    }

    private readonly object _lock = new();
    private readonly Dictionary<ulong, Node> _nodes = [];
    private ulong _nextIno = 2;
    private long _nextFh;
    private int _asyncReplies;
    private long _forgets;

    public MemoryFuseFileSystem()
    {
        _nodes[1] = new Node { Ino = 1, Mode = SIfDir | 0x1ED /* 0755 */, Nlink = 2, MtimeSec = Now() };
    }

    /// <summary>When above zero, reads and getattrs reply after this delay from a thread-pool thread.</summary>
    public int ReplyDelayMs { get; set; }
    public int AsyncReplies => Volatile.Read(ref _asyncReplies);
    public long Forgets => Interlocked.Read(ref _forgets);
    public bool InitCalled { get; private set; }
    public bool DestroyCalled { get; private set; }

    private static long Now() => DateTimeOffset.UtcNow.ToUnixTimeSeconds();
    private static string S(byte[] name) => Encoding.UTF8.GetString(name);

    public override void Init(ref FuseConnInfo conn) => InitCalled = true;

    public override void Destroy() => DestroyCalled = true;

    public override void Forget(ulong ino, ulong nlookup) => Interlocked.Add(ref _forgets, (long)nlookup);

    private FuseStat Stat(Node n)
    {
        var st = new FuseStat { Ino = n.Ino, Mode = n.Mode, Nlink = n.Nlink, Uid = n.Uid, Gid = n.Gid, Size = n.Size, Blksize = 4096, Blocks = (n.Size + 511) / 512 };
        st.SetMtime(n.MtimeSec, 0);
        st.SetCtime(n.MtimeSec, 0);
        st.SetAtime(n.MtimeSec, 0);
        return st;
    }

    private FuseEntry Entry(Node n) => new() { Ino = n.Ino, Attr = Stat(n), AttrTimeout = TimeoutSeconds, EntryTimeout = TimeoutSeconds };

    private Node? Get(ulong ino) => _nodes.TryGetValue(ino, out var n) ? n : null;

    public override ValueTask Lookup(FuseRequest request, ulong parent, byte[] name)
    {
        var s = S(name);
        if (s == "boom") throw new InvalidOperationException("test handler failure on purpose");
        if (s == "silent") return ValueTask.CompletedTask; // completes without replying: the binding must answer EIO
        lock (_lock)
        {
            var p = Get(parent);
            if (p == null || !p.Children.TryGetValue(s, out var ino))
            {
                request.ReplyError(Errno.ENOENT);
            }
            else
            {
                request.ReplyEntry(Entry(_nodes[ino]));
            }
        }
        return ValueTask.CompletedTask;
    }

    public override async ValueTask GetAttr(FuseRequest request, ulong ino, FuseFileInfo? fi)
    {
        await MaybeDelay();
        lock (_lock)
        {
            var n = Get(ino);
            if (n == null) request.ReplyError(Errno.ENOENT);
            else request.ReplyAttr(Stat(n), TimeoutSeconds);
        }
    }

    private async ValueTask MaybeDelay()
    {
        if (ReplyDelayMs > 0)
        {
            var before = Environment.CurrentManagedThreadId;
            await Task.Delay(ReplyDelayMs).ConfigureAwait(false);
            if (Environment.CurrentManagedThreadId != before) Interlocked.Increment(ref _asyncReplies);
        }
    }

    public override ValueTask SetAttr(FuseRequest request, ulong ino, FuseStat attr, FuseSetAttr toSet, FuseFileInfo? fi)
    {
        lock (_lock)
        {
            var n = Get(ino);
            if (n == null)
            {
                request.ReplyError(Errno.ENOENT);
                return ValueTask.CompletedTask;
            }
            if (toSet.HasFlag(FuseSetAttr.Mode)) n.Mode = (n.Mode & SIfMt) | (attr.Mode & ~SIfMt);
            if (toSet.HasFlag(FuseSetAttr.Uid)) n.Uid = attr.Uid;
            if (toSet.HasFlag(FuseSetAttr.Gid)) n.Gid = attr.Gid;
            if (toSet.HasFlag(FuseSetAttr.Size)) Resize(n, attr.Size);
            if (toSet.HasFlag(FuseSetAttr.Mtime)) n.MtimeSec = attr.MtimeSec;
            if (toSet.HasFlag(FuseSetAttr.MtimeNow)) n.MtimeSec = Now();
            request.ReplyAttr(Stat(n), TimeoutSeconds);
        }
        return ValueTask.CompletedTask;
    }

    private static void Resize(Node n, long size)
    {
        if (size > n.Data.Length) Array.Resize(ref n.Data, (int)Math.Max(size, n.Data.Length * 2L));
        if (size < n.Size) Array.Clear(n.Data, (int)size, (int)(n.Size - size));
        n.Size = size;
    }

    private Node? AddChild(FuseRequest request, ulong parent, byte[] name, uint mode)
    {
        var p = Get(parent);
        if (p == null || !p.IsDir) { request.ReplyError(Errno.ENOENT); return null; }
        var s = S(name);
        if (p.Children.ContainsKey(s)) { request.ReplyError(Errno.EEXIST); return null; }
        var n = new Node { Ino = _nextIno++, Mode = mode & ~request.Umask, Uid = request.Uid, Gid = request.Gid, MtimeSec = Now() };
        if (n.IsDir) { n.Nlink = 2; p.Nlink++; }
        _nodes[n.Ino] = n;
        p.Children[s] = n.Ino;
        return n;
    }

    public override ValueTask MkDir(FuseRequest request, ulong parent, byte[] name, uint mode)
    {
        lock (_lock)
        {
            var n = AddChild(request, parent, name, SIfDir | (mode & 0xFFF));
            if (n != null) request.ReplyEntry(Entry(n));
        }
        return ValueTask.CompletedTask;
    }

    public override ValueTask Create(FuseRequest request, ulong parent, byte[] name, uint mode, FuseFileInfo fi)
    {
        lock (_lock)
        {
            var n = AddChild(request, parent, name, SIfReg | (mode & 0xFFF));
            if (n != null) request.ReplyCreate(Entry(n), (ulong)Interlocked.Increment(ref _nextFh));
        }
        return ValueTask.CompletedTask;
    }

    public override ValueTask Unlink(FuseRequest request, ulong parent, byte[] name) => Remove(request, parent, S(name), dir: false);

    public override ValueTask RmDir(FuseRequest request, ulong parent, byte[] name) => Remove(request, parent, S(name), dir: true);

    private ValueTask Remove(FuseRequest request, ulong parent, string name, bool dir)
    {
        lock (_lock)
        {
            var p = Get(parent);
            if (p == null || !p.Children.TryGetValue(name, out var ino)) request.ReplyError(Errno.ENOENT);
            else if (_nodes[ino].IsDir != dir) request.ReplyError(dir ? Errno.ENOTDIR : Errno.EISDIR);
            else if (dir && _nodes[ino].Children.Count > 0) request.ReplyError(Errno.ENOTEMPTY);
            else
            {
                p.Children.Remove(name);
                if (dir) p.Nlink--;
                request.ReplyOk();
            }
        }
        return ValueTask.CompletedTask;
    }

    public override ValueTask Rename(FuseRequest request, ulong parent, byte[] name, ulong newParent, byte[] newName, uint flags)
    {
        lock (_lock)
        {
            var p = Get(parent);
            var np = Get(newParent);
            var s = S(name);
            var ns = S(newName);
            if (p == null || np == null || !p.Children.TryGetValue(s, out var ino)) request.ReplyError(Errno.ENOENT);
            else if (flags != 0 && (flags != 1 || np.Children.ContainsKey(ns))) request.ReplyError(flags == 1 ? Errno.EEXIST : Errno.EINVAL);
            else if (np.Children.TryGetValue(ns, out var existing) && _nodes[existing].IsDir && _nodes[existing].Children.Count > 0) request.ReplyError(Errno.ENOTEMPTY);
            else
            {
                p.Children.Remove(s);
                np.Children[ns] = ino;
                request.ReplyOk();
            }
        }
        return ValueTask.CompletedTask;
    }

    public override ValueTask Open(FuseRequest request, ulong ino, FuseFileInfo fi)
    {
        lock (_lock)
        {
            var n = Get(ino);
            if (n == null) { request.ReplyError(Errno.ENOENT); return ValueTask.CompletedTask; }
            if ((fi.Flags & 0x200) != 0) Resize(n, 0); // O_TRUNC
        }
        request.ReplyOpen((ulong)Interlocked.Increment(ref _nextFh));
        return ValueTask.CompletedTask;
    }

    public override async ValueTask Read(FuseRequest request, ulong ino, int size, long offset, FuseFileInfo fi)
    {
        await MaybeDelay();
        byte[] copy;
        lock (_lock)
        {
            var n = Get(ino);
            if (n == null) { request.ReplyError(Errno.ENOENT); return; }
            var len = (int)Math.Clamp(n.Size - offset, 0, size);
            copy = n.Data.AsSpan((int)Math.Min(offset, n.Size), len).ToArray();
        }
        request.ReplyData(copy);
    }

    public override ValueTask Write(FuseRequest request, ulong ino, ReadOnlyMemory<byte> data, long offset, FuseFileInfo fi)
    {
        lock (_lock)
        {
            var n = Get(ino);
            if (n == null) { request.ReplyError(Errno.ENOENT); return ValueTask.CompletedTask; }
            var end = offset + data.Length;
            if (end > n.Size) Resize(n, end);
            data.Span.CopyTo(n.Data.AsSpan((int)offset));
            n.MtimeSec = Now();
        }
        request.ReplyWrite(data.Length);
        return ValueTask.CompletedTask;
    }

    public override ValueTask Flush(FuseRequest request, ulong ino, FuseFileInfo fi) { request.ReplyOk(); return ValueTask.CompletedTask; }

    public override ValueTask Release(FuseRequest request, ulong ino, FuseFileInfo fi) { request.ReplyOk(); return ValueTask.CompletedTask; }

    public override ValueTask OpenDir(FuseRequest request, ulong ino, FuseFileInfo fi) { request.ReplyOpen(0); return ValueTask.CompletedTask; }

    public override ValueTask ReleaseDir(FuseRequest request, ulong ino, FuseFileInfo fi) { request.ReplyOk(); return ValueTask.CompletedTask; }

    public override ValueTask ReadDirPlus(FuseRequest request, ulong ino, int size, long offset, FuseFileInfo fi)
    {
        var buf = request.CreateDirBuffer(size, plus: true);
        try
        {
            lock (_lock)
            {
                var n = Get(ino);
                if (n == null) { request.ReplyError(Errno.ENOENT); return ValueTask.CompletedTask; }
                var all = new List<(string Name, Node Node)> { (".", n), ("..", n) };
                all.AddRange(n.Children.Select(c => (c.Key, _nodes[c.Value])));
                for (var i = (int)offset; i < all.Count; i++)
                {
                    if (!buf.TryAddPlus(all[i].Name, Entry(all[i].Node), i + 1)) break;
                }
            }
            request.ReplyReadDir(buf);
        }
        finally
        {
            buf.Dispose();
        }
        return ValueTask.CompletedTask;
    }

    public override ValueTask StatFs(FuseRequest request, ulong ino)
    {
        request.ReplyStatFs(new FuseStatVfs { Bsize = 4096, Frsize = 4096, Blocks = 1000, Bfree = 400, Bavail = 300, Files = 100, Ffree = 50, Favail = 50, Namemax = 255 });
        return ValueTask.CompletedTask;
    }

    public override ValueTask SetXattr(FuseRequest request, ulong ino, byte[] name, byte[] value, int flags)
    {
        lock (_lock)
        {
            var n = Get(ino);
            var s = S(name);
            if (n == null) request.ReplyError(Errno.ENOENT);
            else if (flags == 1 && n.Xattrs.ContainsKey(s)) request.ReplyError(Errno.EEXIST);
            else if (flags == 2 && !n.Xattrs.ContainsKey(s)) request.ReplyError(Errno.ENODATA);
            else { n.Xattrs[s] = value; request.ReplyOk(); }
        }
        return ValueTask.CompletedTask;
    }

    public override ValueTask GetXattr(FuseRequest request, ulong ino, byte[] name, int size)
    {
        lock (_lock)
        {
            var n = Get(ino);
            if (n == null) request.ReplyError(Errno.ENOENT);
            else if (!n.Xattrs.TryGetValue(S(name), out var v)) request.ReplyError(Errno.ENODATA);
            else if (size == 0) request.ReplyXattr(v.Length);
            else if (size < v.Length) request.ReplyError(Errno.ERANGE);
            else request.ReplyData(v);
        }
        return ValueTask.CompletedTask;
    }

    public override ValueTask ListXattr(FuseRequest request, ulong ino, int size)
    {
        lock (_lock)
        {
            var n = Get(ino);
            if (n == null) { request.ReplyError(Errno.ENOENT); return ValueTask.CompletedTask; }
            var list = n.Xattrs.Keys.SelectMany(k => Encoding.UTF8.GetBytes(k).Append((byte)0)).ToArray();
            if (size == 0) request.ReplyXattr(list.Length);
            else if (size < list.Length) request.ReplyError(Errno.ERANGE);
            else request.ReplyData(list);
        }
        return ValueTask.CompletedTask;
    }

    public override ValueTask RemoveXattr(FuseRequest request, ulong ino, byte[] name)
    {
        lock (_lock)
        {
            var n = Get(ino);
            if (n == null) request.ReplyError(Errno.ENOENT);
            else if (!n.Xattrs.Remove(S(name))) request.ReplyError(Errno.ENODATA);
            else request.ReplyOk();
        }
        return ValueTask.CompletedTask;
    }
}
