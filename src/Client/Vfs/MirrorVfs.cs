// The client's VFS: FUSE low-level operations by inode over the metadata session and the block store.
using System.Collections.Concurrent;
using Google.Protobuf;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using MirrorFS.Core.Layout;
using MirrorFS.Core.Meta;
using MirrorFS.Core.Storage;

namespace MirrorFS.Client.Vfs;

/// <summary>Arguments of setattr: <see cref="Valid"/> holds <see cref="SetAttrValid"/> bits (FUSE's FATTR_*).</summary>
public sealed record VfsSetAttr
{
    public uint Valid { get; init; }

    public uint Mode { get; init; }

    public uint Uid { get; init; }

    public uint Gid { get; init; }

    public ulong Size { get; init; }

    public long AtimeNs { get; init; }

    public long MtimeNs { get; init; }

    public long CtimeNs { get; init; }
}

/// <summary>
/// Inode-based file system operations, each returning an errno and values (an unexpected exception becomes EIO and
/// is logged). Data: writes are buffered per inode and committed as slices after their blocks are stored; reads
/// resolve chunk slice lists (cached until the inode's length or mtime changes, or the file is opened again:
/// close-to-open) and fetch blocks through memory and disk caches.
/// </summary>
public sealed partial class MirrorVfs : IAsyncDisposable
{
    private readonly MetaSession _session;
    private readonly BlockStore _blocks;
    private readonly SliceIdPool _ids;
    private readonly NoCapabilityCache _noCapability;
    private readonly DirEntryCache? _dirCache;
    private readonly ByteBudget _budget;
    private readonly VfsOptions _options;
    private readonly ILogger _log;
    private readonly bool _ownsSession;
    private readonly ConcurrentDictionary<ulong, InodeState> _inodes = new();
    private readonly ConcurrentDictionary<ulong, FileHandle> _files = new();
    private readonly ConcurrentDictionary<ulong, ulong> _dirs = new();
    private readonly LiveSettings _settings;
    private readonly BlockDeleter? _deleter;
    private readonly ChunkCompactor? _compactor;
    private long _nextHandle;
    private int _disposed;

    private MirrorVfs(MetaSession session, bool ownsSession, IObjectStore store, Volume volume, VfsOptions options, ILogger log)
    {
        _session = session;
        _ownsSession = ownsSession;
        _log = log;
        var blockSize = (int)volume.BlockSize;
        // The budget must hold at least a couple of blocks, or a single write could never get room.
        _options = options with { BufferBytesMax = Math.Max(options.BufferBytesMax, 2L * blockSize) };
        Volume = volume;
        _settings = new LiveSettings(session.Meta, volume, _options, session.OpsLimiter, log);
        _blocks = new BlockStore(store, volume.Name, blockSize, _options, log, _settings.Upload, _settings.Download);
        _ids = new SliceIdPool(session, _options.SliceIdBatch);
        _noCapability = new NoCapabilityCache(_options.AttrTimeoutSec);
        _dirCache = NewDirCache(_options);
        _budget = new ByteBudget(_options.BufferBytesMax);
        if (_options.DeleteIntervalMs > 0)
        {
            _deleter = new BlockDeleter(session, store, volume.Name, blockSize, log, _options.DeleteBatchSlices);
            _deleter.Start(_options.DeleteIntervalMs);
        }
        if (_options.CompactSlicesMax > 0)
        {
            _compactor = new ChunkCompactor(session, store, volume.Name, blockSize, _options.CompactDeleteDelay, log)
            {
                Compacted = inode => Known(inode)?.DropChunks(),
            };
            _compactor.Start(_options.CompactSlicesMax, Math.Max(1, _options.CompactQuietMs));
        }
    }

    public Volume Volume { get; }

    public MetaSession Session => _session;

    public VfsOptions Options => _options;

    /// <summary>Bytes written but not yet committed, across all files.</summary>
    public long BufferedBytes => _budget.Used;

    public MemoryBlockCache MemoryCache => _blocks.Memory;

    public DiskBlockCache? DiskCache => _blocks.Disk;

    /// <summary>Starts a session on <paramref name="meta"/>, reads the volume settings, and returns a ready VFS that
    /// closes the session when disposed.</summary>
    public static async Task<MirrorVfs> CreateAsync(IMetaClient meta, IObjectStore store, VfsOptions? options = null,
        ILogger? log = null, MetaSessionOptions? sessionOptions = null, CancellationToken ct = default)
    {
        log ??= NullLogger.Instance;
        var session = await MetaSession.StartAsync(meta, sessionOptions, log, ct);
        try
        {
            return await CreateAsync(session, store, options, log, ownsSession: true, ct);
        }
        catch
        {
            await session.DisposeAsync();
            throw;
        }
    }

    public static async Task<MirrorVfs> CreateAsync(MetaSession session, IObjectStore store, VfsOptions? options, ILogger? log,
        bool ownsSession, CancellationToken ct = default)
    {
        var v = await session.ReadAsync(new GetVolumeRequest { Cred = new Credentials() }, static (m, r, c) => m.GetVolumeAsync(r, c), ct);
        if (v.Errno != 0)
        {
            throw new IOException($"metaserver has no volume (errno {v.Errno}); run `mirrorfs format` first");
        }
        var vfs = new MirrorVfs(session, ownsSession, store, v.Volume, options ?? new VfsOptions(), log ?? NullLogger.Instance);
        vfs._settings.Start();
        return vfs;
    }

    /// <summary>The volume settings as last read from the metaserver (limits change while mounted).</summary>
    public Volume CurrentVolume => _settings.Volume;

    // ---- plumbing ----

    private sealed class FileHandle(ulong inode, uint flags, InodeState state)
    {
        public ulong Inode { get; } = inode;

        public uint Flags { get; } = flags;

        public InodeState State { get; } = state;

        public long LastReadEnd { get; set; } = -1;

        public bool CanWrite => (Flags & OpenFlags.AccessMask) != OpenFlags.ReadOnly;

        public bool CanRead => (Flags & OpenFlags.AccessMask) != OpenFlags.WriteOnly;
    }

    /// <summary>What this client knows of one inode: last attributes, cached chunk slice lists, the writer.</summary>
    private sealed class InodeState(ulong inode)
    {
        private readonly Lock _lock = new();
        private readonly Dictionary<uint, IReadOnlyList<Slice>> _chunks = [];
        private Attr? _attr;
        private long _generation;

        public ulong Inode { get; } = inode;

        public FileWriter? Writer { get; set; }

        public int Handles { get; set; }

        public Lock Gate => _lock;

        public Attr? Attr
        {
            get
            {
                lock (_lock)
                {
                    return _attr;
                }
            }
        }

        /// <summary>New attributes; a changed length or mtime drops the cached slice lists.</summary>
        public void SetAttr(Attr? attr)
        {
            if (attr is null)
            {
                return;
            }
            lock (_lock)
            {
                if (_attr is null || _attr.Size != attr.Size || _attr.MtimeNs != attr.MtimeNs)
                {
                    DropChunksLocked();
                }
                _attr = attr;
            }
        }

        public void DropChunks()
        {
            lock (_lock)
            {
                DropChunksLocked();
            }
        }

        private void DropChunksLocked()
        {
            _chunks.Clear();
            _generation++;
        }

        public bool TryGetChunk(uint index, out IReadOnlyList<Slice> slices, out long generation)
        {
            lock (_lock)
            {
                generation = _generation;
                return _chunks.TryGetValue(index, out slices!);
            }
        }

        /// <summary>Caches a slice list unless something changed the inode since it was asked for.</summary>
        public void PutChunk(uint index, IReadOnlyList<Slice> slices, long generation)
        {
            lock (_lock)
            {
                if (generation == _generation)
                {
                    _chunks[index] = slices;
                }
            }
        }
    }

    private InodeState State(ulong inode) => _inodes.GetOrAdd(inode, static i => new InodeState(i));

    private FileWriter WriterOf(InodeState st)
    {
        lock (st.Gate)
        {
            return st.Writer ??= new FileWriter(st.Inode, _blocks, _ids, _session, _budget, _options,
                (chunk, attr) =>
                {
                    st.SetAttr(attr);
                    AttrChanged(st.Inode);
                    _compactor?.Touched(st.Inode, chunk);
                }, FreezeAllWriters, _log);
        }
    }

    /// <summary>Under buffer pressure every open slice of every file is ended, so its bytes upload and free room.</summary>
    private void FreezeAllWriters()
    {
        foreach (var st in _inodes.Values)
        {
            st.Writer?.FreezeAll();
        }
    }

    private VfsEntry Entry(Attr attr)
    {
        NoteAttr(attr);
        return new VfsEntry(attr, _options.EntryTimeoutSec, _options.AttrTimeoutSec);
    }

    /// <summary>Remembers attributes of inodes this client already tracks (others are not worth a state).</summary>
    private void NoteAttr(Attr? attr)
    {
        if (attr is not null && _inodes.TryGetValue(attr.Inode, out var st))
        {
            st.SetAttr(attr);
        }
    }

    /// <summary>Attributes as this client sees them: buffered writes may have made the file longer.</summary>
    private static Attr WithDirty(Attr attr, InodeState? st)
    {
        var end = st?.Writer?.DirtyEnd ?? 0;
        if (end > 0 && (ulong)end > attr.Size)
        {
            attr = attr.Clone();
            attr.Size = (ulong)end;
        }
        return attr;
    }

    private async Task<VfsResult<T>> Guard<T>(string op, ulong inode, Func<Task<VfsResult<T>>> body)
    {
        try
        {
            return await body();
        }
        catch (Exception e)
        {
            _log.LogError(e, "{Op} on inode {Inode} failed unexpectedly", op, inode);
            return VfsResult<T>.Fail(Errno.EIO);
        }
    }

    private async Task<int> Guard(string op, ulong inode, Func<Task<int>> body)
    {
        try
        {
            return await body();
        }
        catch (Exception e)
        {
            _log.LogError(e, "{Op} on inode {Inode} failed unexpectedly", op, inode);
            return Errno.EIO;
        }
    }

    private Task<TReply> Mutate<TReq, TReply>(TReq request, Func<IMetaClient, TReq, CancellationToken, Task<TReply>> call)
        where TReq : IMutatingRequest where TReply : IMetaReply => _session.MutateAsync(request, call);

    private Task<TReply> Read<TReq, TReply>(TReq request, Func<IMetaClient, TReq, CancellationToken, Task<TReply>> call)
        where TReq : IReadRequest where TReply : IMetaReply => _session.ReadAsync(request, call);

    private static ByteString Bytes(ReadOnlySpan<byte> b) => ByteString.CopyFrom(b);

    // ---- namespace ----

    public Task<VfsResult<VfsEntry>> LookupAsync(VfsContext ctx, ulong parent, byte[] name) => Guard("lookup", parent, async () =>
    {
        if (_dirCache is { } cache && FromDirCache(cache, parent, name) is { } cached)
        {
            return VfsResult<VfsEntry>.Success(cached);
        }
        var r = await Read(new LookupRequest { Cred = ctx.ToCred(), Parent = parent, Name = Bytes(name) }, static (m, q, c) => m.LookupAsync(q, c));
        if (r.Errno != 0)
        {
            return VfsResult<VfsEntry>.Fail(r.Errno);
        }
        var entry = Entry(WithDirty(r.Attr, Known(r.Attr.Inode)));
        if (_dirCache is { } c)
        {
            await NoteFoundAsync(c, ctx, parent, name);
        }
        return VfsResult<VfsEntry>.Success(entry);
    });

    private InodeState? Known(ulong inode) => _inodes.TryGetValue(inode, out var st) ? st : null;

    /// <summary>The kernel dropped <paramref name="nlookup"/> references; inodes are server numbers, so nothing
    /// to free here beyond the cached state of a file nobody has open.</summary>
    public void Forget(ulong inode, ulong nlookup)
    {
        _ = nlookup;
        if (_inodes.TryGetValue(inode, out var st))
        {
            lock (st.Gate)
            {
                if (st.Handles == 0 && (st.Writer is null || !st.Writer.Dirty))
                {
                    _inodes.TryRemove(inode, out _);
                }
            }
        }
    }

    public Task<VfsResult<VfsAttr>> GetAttrAsync(VfsContext ctx, ulong inode) => Guard("getattr", inode, async () =>
    {
        if (OwnDirAttr(inode) is { } own)
        {
            Interlocked.Increment(ref _ownDirAttrHits);
            return VfsResult<VfsAttr>.Success(new VfsAttr(own, _options.AttrTimeoutSec));
        }

        var r = await Read(new GetAttrRequest { Cred = ctx.ToCred(), Inode = inode }, static (m, q, c) => m.GetAttrAsync(q, c));
        if (r.Errno != 0)
        {
            return VfsResult<VfsAttr>.Fail(r.Errno);
        }
        NoteAttr(r.Attr);
        return VfsResult<VfsAttr>.Success(new VfsAttr(WithDirty(r.Attr, Known(inode)), _options.AttrTimeoutSec));
    });

    /// <summary>setattr; a size change first commits buffered writes, then truncates through the metaserver.</summary>
    public Task<VfsResult<VfsAttr>> SetAttrAsync(VfsContext ctx, ulong inode, VfsSetAttr set) => Guard("setattr", inode, async () =>
    {
        var valid = set.Valid;
        Attr? attr = null;
        if ((valid & (uint)SetAttrValid.Size) != 0)
        {
            var st = State(inode);
            if (st.Writer is { } w)
            {
                var err = await w.FlushAsync();
                if (err != 0)
                {
                    return VfsResult<VfsAttr>.Fail(err);
                }
            }
            var t = await Mutate(new TruncateRequest { Cred = ctx.ToCred(), Inode = inode, Size = set.Size }, static (m, q, c) => m.TruncateAsync(q, c));
            st.DropChunks();
            AttrChanged(inode);
            if (t.Errno != 0)
            {
                return VfsResult<VfsAttr>.Fail(t.Errno);
            }
            st.SetAttr(t.Attr);
            attr = t.Attr;
            valid &= ~(uint)SetAttrValid.Size;
        }
        if (valid != 0 || attr is null)
        {
            var r = await Mutate(new SetAttrRequest
            {
                Cred = ctx.ToCred(),
                Inode = inode,
                Valid = valid,
                Mode = set.Mode,
                Uid = set.Uid,
                Gid = set.Gid,
                AtimeNs = set.AtimeNs,
                MtimeNs = set.MtimeNs,
                CtimeNs = set.CtimeNs,
            }, static (m, q, c) => m.SetAttrAsync(q, c));
            AttrChanged(inode);
            if (r.Errno != 0)
            {
                return VfsResult<VfsAttr>.Fail(r.Errno);
            }
            attr = r.Attr;
        }
        NoteAttr(attr);
        return VfsResult<VfsAttr>.Success(new VfsAttr(WithDirty(attr, Known(inode)), _options.AttrTimeoutSec));
    });

    public Task<VfsResult<byte[]>> ReadLinkAsync(VfsContext ctx, ulong inode) => Guard("readlink", inode, async () =>
    {
        var r = await Read(new ReadLinkRequest { Cred = ctx.ToCred(), Inode = inode }, static (m, q, c) => m.ReadLinkAsync(q, c));
        return r.Errno != 0 ? VfsResult<byte[]>.Fail(r.Errno) : VfsResult<byte[]>.Success(r.Target.ToByteArray());
    });

    public Task<VfsResult<VfsEntry>> MknodAsync(VfsContext ctx, ulong parent, byte[] name, uint mode, uint umask, ulong rdev) =>
        Guard("mknod", parent, async () =>
        {
            var r = await Mutate(new MknodRequest { Cred = ctx.ToCred(), Parent = parent, Name = Bytes(name), Mode = mode, Umask = umask, Rdev = rdev },
                static (m, q, c) => m.MknodAsync(q, c));
            DirChanged(parent);
            return r.Errno != 0 ? VfsResult<VfsEntry>.Fail(r.Errno) : VfsResult<VfsEntry>.Success(Entry(r.Attr));
        });

    public Task<VfsResult<VfsEntry>> MkdirAsync(VfsContext ctx, ulong parent, byte[] name, uint mode, uint umask) =>
        Guard("mkdir", parent, async () =>
        {
            var r = await Mutate(new MkdirRequest { Cred = ctx.ToCred(), Parent = parent, Name = Bytes(name), Mode = mode, Umask = umask },
                static (m, q, c) => m.MkdirAsync(q, c));
            DirChanged(parent);
            return r.Errno != 0 ? VfsResult<VfsEntry>.Fail(r.Errno) : VfsResult<VfsEntry>.Success(Entry(r.Attr));
        });

    public Task<int> UnlinkAsync(VfsContext ctx, ulong parent, byte[] name) => Guard("unlink", parent, async () =>
    {
        var r = await Mutate(new UnlinkRequest { Cred = ctx.ToCred(), Parent = parent, Name = Bytes(name) }, static (m, q, c) => m.UnlinkAsync(q, c));
        DirChanged(parent);
        return r.Errno;
    });

    public Task<int> RmdirAsync(VfsContext ctx, ulong parent, byte[] name) => Guard("rmdir", parent, async () =>
    {
        var r = await Mutate(new RmdirRequest { Cred = ctx.ToCred(), Parent = parent, Name = Bytes(name) }, static (m, q, c) => m.RmdirAsync(q, c));
        DirChanged(parent);
        return r.Errno;
    });

    /// <summary>symlink(target, parent, name).</summary>
    public Task<VfsResult<VfsEntry>> SymlinkAsync(VfsContext ctx, ulong parent, byte[] name, byte[] target) =>
        Guard("symlink", parent, async () =>
        {
            var r = await Mutate(new SymlinkRequest { Cred = ctx.ToCred(), Parent = parent, Name = Bytes(name), Target = Bytes(target) },
                static (m, q, c) => m.SymlinkAsync(q, c));
            DirChanged(parent);
            return r.Errno != 0 ? VfsResult<VfsEntry>.Fail(r.Errno) : VfsResult<VfsEntry>.Success(Entry(r.Attr));
        });

    /// <summary>rename with renameat2 flags (<see cref="RenameFlag"/>).</summary>
    public Task<int> RenameAsync(VfsContext ctx, ulong parent, byte[] name, ulong newParent, byte[] newName, uint flags) =>
        Guard("rename", parent, async () =>
        {
            var r = await Mutate(new RenameRequest
            {
                Cred = ctx.ToCred(),
                Parent = parent,
                Name = Bytes(name),
                NewParent = newParent,
                NewName = Bytes(newName),
                Flags = flags,
            }, static (m, q, c) => m.RenameAsync(q, c));
            // The moved inode (and a replaced one) had a name only here, or has several and is never answered from a
            // listing: dropping both directories covers them.
            DirChanged(parent);
            DirChanged(newParent);
            return r.Errno;
        });

    public Task<VfsResult<VfsEntry>> LinkAsync(VfsContext ctx, ulong inode, ulong newParent, byte[] newName) =>
        Guard("link", inode, async () =>
        {
            var r = await Mutate(new LinkRequest { Cred = ctx.ToCred(), Inode = inode, NewParent = newParent, NewName = Bytes(newName) },
                static (m, q, c) => m.LinkAsync(q, c));
            DirChanged(newParent);
            AttrChanged(inode);
            return r.Errno != 0 ? VfsResult<VfsEntry>.Fail(r.Errno) : VfsResult<VfsEntry>.Success(Entry(WithDirty(r.Attr, Known(inode))));
        });

    // ---- files ----

    private ulong NewHandle() => (ulong)Interlocked.Increment(ref _nextHandle);

    /// <summary>open: refreshes attributes and drops cached slice lists (close-to-open consistency).</summary>
    public Task<VfsResult<VfsOpen>> OpenAsync(VfsContext ctx, ulong inode, uint flags) => Guard("open", inode, async () =>
    {
        var st = State(inode);
        if ((flags & OpenFlags.Truncate) != 0 && st.Writer is { } w)
        {
            // Buffered bytes must land before the truncation, or they would reappear after it.
            var err = await w.FlushAsync();
            if (err != 0)
            {
                return VfsResult<VfsOpen>.Fail(err);
            }
        }
        Task<ReadChunkReply?>? warm = null;
        if ((flags & OpenFlags.AccessMask) != OpenFlags.WriteOnly && (flags & OpenFlags.Truncate) == 0 && _options.PrefetchBlocks > 0)
        {
            warm = WarmFirstBlockAsync(ctx, inode);
        }
        var r = await Mutate(new OpenRequest { Cred = ctx.ToCred(), Inode = inode, Flags = flags }, static (m, q, c) => m.OpenAsync(q, c));
        if ((flags & OpenFlags.Truncate) != 0)
        {
            AttrChanged(inode);
        }
        if (r.Errno != 0)
        {
            return VfsResult<VfsOpen>.Fail(r.Errno);
        }
        var fh = Opened(st, r.Attr, flags);
        if (warm is { IsCompletedSuccessfully: true, Result: { } chunk0 })
        {
            KeepWarmChunk(st, chunk0, r.Attr);
        }
        return VfsResult<VfsOpen>.Success(new VfsOpen(fh, WithDirty(r.Attr, st)));
    });

    /// <summary>
    /// Keeps the slice list an open read ahead of its commit, so the first read does not ask for it again, when it
    /// belongs to exactly the attributes the open returned: same length, mtime and ctime mean no write or truncate
    /// came between the two, and the list is what a read after the open would get.
    /// </summary>
    private void KeepWarmChunk(InodeState st, ReadChunkReply chunk0, Attr opened)
    {
        if (chunk0.Attr is not { } seen || seen.Size != opened.Size || seen.MtimeNs != opened.MtimeNs || seen.CtimeNs != opened.CtimeNs
            || st.Writer is { Dirty: true })
        {
            return;
        }
        st.TryGetChunk(0, out _, out var generation);
        st.PutChunk(0, chunk0.Slices.ToArray(), generation);
        Interlocked.Increment(ref _warmChunksKept);
    }

    private long _warmChunksKept;
    private long _ownDirAttrHits;

    /// <summary>Opens whose early slice list was kept for the first read.</summary>
    public long WarmChunksKept => Interlocked.Read(ref _warmChunksKept);

    /// <summary>Directory getattrs answered with the attributes this client's own create returned.</summary>
    public long OwnDirAttrHits => Interlocked.Read(ref _ownDirAttrHits);

    /// <summary>Largest slice whose first block an open starts downloading before its commit returns.</summary>
    internal const int WarmSliceBytesMax = 1 << 20;

    /// <summary>
    /// While the open's commit travels, starts downloading the first block of a small file, so that the read that
    /// usually follows finds it on its way: the download overlaps the commit instead of following it. The slice list
    /// is read after the open began, so it already shows every write closed before it (close-to-open holds). Best
    /// effort: a failure only means the read fetches the block itself.
    /// </summary>
    private async Task<ReadChunkReply?> WarmFirstBlockAsync(VfsContext ctx, ulong inode)
    {
        try
        {
            var r = await Read(new ReadChunkRequest { Cred = ctx.ToCred(), Inode = inode, ChunkIndex = 0, WithAttr = true },
                static (m, q, c) => m.ReadChunkAsync(q, c));
            if (r.Errno != 0 || r.Slices.Count == 0)
            {
                return r.Errno == 0 ? r : null;
            }
            foreach (var seg in SliceMap.Visible(r.Slices.ToArray(), 0, Math.Min(_blocks.BlockSize, WarmSliceBytesMax)))
            {
                if (seg.SliceId != 0 && seg.SliceSize <= WarmSliceBytesMax)
                {
                    Interlocked.Increment(ref _warmedBlocks);
                    _blocks.Prefetch(seg.SliceId, seg.SliceSize, seg.OffsetInSlice, seg.Length);
                }
            }
            return r;
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            _log.LogDebug("open-time download of inode {Inode}'s first block not started: {Error}", inode, e.Message);
            return null;
        }
    }

    private long _warmedBlocks;

    /// <summary>Blocks whose download an open started ahead of the first read.</summary>
    public long WarmedBlocks => Interlocked.Read(ref _warmedBlocks);

    private ulong Opened(InodeState st, Attr attr, uint flags)
    {
        st.DropChunks();
        st.SetAttr(attr);
        lock (st.Gate)
        {
            st.Handles++;
        }
        var fh = NewHandle();
        _files[fh] = new FileHandle(st.Inode, flags, st);
        return fh;
    }

    public Task<VfsResult<VfsCreate>> CreateAsync(VfsContext ctx, ulong parent, byte[] name, uint mode, uint umask, uint flags) =>
        Guard("create", parent, async () =>
        {
            var r = await Mutate(new CreateRequest { Cred = ctx.ToCred(), Parent = parent, Name = Bytes(name), Mode = mode, Umask = umask, Flags = flags },
                static (m, q, c) => m.CreateAsync(q, c));
            DirChanged(parent);
            if (r.Errno != 0)
            {
                return VfsResult<VfsCreate>.Fail(r.Errno);
            }
            if (r.ParentAttr is { } parentAttr && parentAttr.Inode == parent)
            {
                NoteOwnDirAttr(parentAttr);
            }
            var fh = Opened(State(r.Attr.Inode), r.Attr, flags);
            _noCapability.NoteAbsent(r.Attr.Inode); // a new file has no xattrs; its first write need not ask
            return VfsResult<VfsCreate>.Success(new VfsCreate(Entry(r.Attr), fh));
        });

    private FileHandle? Handle(ulong inode, ulong fh) =>
        _files.TryGetValue(fh, out var h) && h.Inode == inode ? h : null;

    /// <summary>Reads into <paramref name="dest"/>; the count is short only at the end of the file.</summary>
    public Task<VfsResult<int>> ReadAsync(VfsContext ctx, ulong inode, ulong fh, long offset, Memory<byte> dest) =>
        Guard("read", inode, async () =>
        {
            var h = Handle(inode, fh);
            if (h is null || !h.CanRead)
            {
                return VfsResult<int>.Fail(Errno.EBADF);
            }
            if (offset < 0)
            {
                return VfsResult<int>.Fail(Errno.EINVAL);
            }
            var st = h.State;
            if (st.Writer is { Dirty: true } w)
            {
                // Read-your-writes: commit buffered bytes first, then read through the normal path.
                var err = await w.FlushAsync();
                if (err != 0)
                {
                    return VfsResult<int>.Fail(err);
                }
            }
            var attr = st.Attr;
            if (attr is null)
            {
                var g = await Read(new GetAttrRequest { Cred = ctx.ToCred(), Inode = inode }, static (m, q, c) => m.GetAttrAsync(q, c));
                if (g.Errno != 0)
                {
                    return VfsResult<int>.Fail(g.Errno);
                }
                st.SetAttr(g.Attr);
                attr = g.Attr;
            }
            var size = (long)attr.Size;
            if (offset >= size || dest.Length == 0)
            {
                return VfsResult<int>.Success(0);
            }
            var n = (int)Math.Min(dest.Length, size - offset);
            var sequential = offset == h.LastReadEnd || offset == 0;
            int readErr;
            try
            {
                readErr = await ReadRangeAsync(ctx, st, offset, dest[..n], sequential);
            }
            catch (MissingBlockException e)
            {
                // A cached slice list may be older than a compaction whose replaced slices are deleted by now:
                // read the list again once before calling the data lost.
                _log.LogInformation("inode {Inode}: {Error}; reading its slice lists again", inode, e.Message);
                st.DropChunks();
                readErr = await ReadRangeAsync(ctx, st, offset, dest[..n], sequential);
            }
            if (readErr != 0)
            {
                return VfsResult<int>.Fail(readErr);
            }
            h.LastReadEnd = offset + n;
            ReadAheadAfter(st, offset + n, size, sequential);
            return VfsResult<int>.Success(n);
        });

    /// <summary>A read that the memory cache can answer in place: the range lies in one block of one slice, within the
    /// file, with nothing buffered. Returns the cached bytes themselves (the caller sends them without copying them
    /// first), or null when the normal path (<see cref="ReadAsync"/>) must serve the read.</summary>
    public ReadOnlyMemory<byte>? TryReadInMemory(ulong inode, ulong fh, long offset, int size)
    {
        var h = Handle(inode, fh);
        if (h is null || !h.CanRead || offset < 0 || size <= 0)
        {
            return null;
        }

        var st = h.State;
        if (st.Writer is { Dirty: true } || st.Attr is not { } attr || offset >= (long)attr.Size)
        {
            return null;
        }

        var n = (int)Math.Min(size, (long)attr.Size - offset);
        var chunkIndex = offset / BlockLayout.ChunkSize;
        var inChunk = (int)(offset % BlockLayout.ChunkSize);
        if (inChunk + (long)n > BlockLayout.ChunkSize || !st.TryGetChunk((uint)chunkIndex, out var slices, out _))
        {
            return null;
        }

        var segments = SliceMap.Visible(slices, inChunk, inChunk + n);
        if (segments is not [{ SliceId: not 0 } seg] || seg.Pos != inChunk || seg.Length != n)
        {
            return null;
        }

        if (_blocks.TryReadInMemory(seg.SliceId, seg.SliceSize, seg.OffsetInSlice, n) is not { } bytes)
        {
            return null;
        }

        var sequential = offset == h.LastReadEnd || offset == 0;
        h.LastReadEnd = offset + n;
        ReadAheadAfter(st, offset + n, (long)attr.Size, sequential);
        return bytes;
    }

    /// <summary>After a sequential read that ended at <paramref name="end"/>, starts the next blocks' downloads.</summary>
    private void ReadAheadAfter(InodeState st, long end, long size, bool sequential)
    {
        if (sequential && _options.PrefetchBlocks > 0 && end < size)
        {
            ReadAhead(st, end, Math.Min((long)_options.PrefetchBlocks * _blocks.BlockSize, size - end));
        }
    }

    /// <summary>Fills <paramref name="dest"/> with the file's bytes at <paramref name="offset"/> (within its size).</summary>
    private async Task<int> ReadRangeAsync(VfsContext ctx, InodeState st, long offset, Memory<byte> dest, bool sequential)
    {
        var tasks = new List<Task>();
        foreach (var piece in BlockLayout.SplitByChunk(offset, dest.Length))
        {
            var slices = await ChunkAsync(ctx, st, (uint)piece.ChunkIndex);
            if (slices is null)
            {
                return Errno.EIO;
            }
            var target = dest.Slice((int)piece.BufferOffset, piece.Length);
            foreach (var seg in SliceMap.Visible(slices, piece.OffsetInChunk, piece.OffsetInChunk + piece.Length))
            {
                var part = target.Slice(seg.Pos - piece.OffsetInChunk, seg.Length);
                if (seg.SliceId == 0)
                {
                    part.Span.Clear();
                }
                else
                {
                    tasks.Add(_blocks.ReadSliceAsync(seg.SliceId, seg.SliceSize, seg.OffsetInSlice, part, sequential, CancellationToken.None));
                }
            }
        }
        await Task.WhenAll(tasks);
        return Errno.OK;
    }

    /// <summary>Starts downloads of the blocks after a sequential read, using cached slice lists only.</summary>
    private void ReadAhead(InodeState st, long offset, long length)
    {
        foreach (var piece in BlockLayout.SplitByChunk(offset, length))
        {
            if (!st.TryGetChunk((uint)piece.ChunkIndex, out var slices, out _))
            {
                continue;
            }
            foreach (var seg in SliceMap.Visible(slices, piece.OffsetInChunk, piece.OffsetInChunk + piece.Length))
            {
                if (seg.SliceId != 0)
                {
                    _blocks.Prefetch(seg.SliceId, seg.SliceSize, seg.OffsetInSlice, seg.Length);
                }
            }
        }
    }

    private async Task<IReadOnlyList<Slice>?> ChunkAsync(VfsContext ctx, InodeState st, uint index)
    {
        if (st.TryGetChunk(index, out var cached, out var generation))
        {
            return cached;
        }
        var r = await Read(new ReadChunkRequest { Cred = ctx.ToCred(), Inode = st.Inode, ChunkIndex = index }, static (m, q, c) => m.ReadChunkAsync(q, c));
        if (r.Errno != 0)
        {
            _log.LogWarning("ReadChunk of inode {Inode} chunk {Chunk} gave errno {Errno}", st.Inode, index, r.Errno);
            return null;
        }
        var slices = r.Slices.ToArray();
        st.PutChunk(index, slices, generation);
        return slices;
    }

    /// <summary>Buffers a write; returns the byte count, or the errno of this or an earlier failed upload/commit.</summary>
    public Task<VfsResult<int>> WriteAsync(VfsContext ctx, ulong inode, ulong fh, long offset, ReadOnlyMemory<byte> data) =>
        Guard("write", inode, async () =>
        {
            var h = Handle(inode, fh);
            if (h is null || !h.CanWrite)
            {
                return VfsResult<int>.Fail(Errno.EBADF);
            }
            if (offset < 0 || offset > (long)BlockLayout.ChunkSize * uint.MaxValue - data.Length)
            {
                return VfsResult<int>.Fail(offset < 0 ? Errno.EINVAL : Errno.EFBIG);
            }
            var err = await WriterOf(h.State).WriteAsync(offset, data, ctx.ToCred(), CancellationToken.None);
            return err != 0 ? VfsResult<int>.Fail(err) : VfsResult<int>.Success(data.Length);
        });

    private async Task<int> FlushInode(InodeState st)
    {
        if (st.Writer is not { } w)
        {
            return 0;
        }
        var err = await w.FlushAsync();
        // Commits mark the inode as they land; a commit whose reply was lost may still have changed it.
        AttrChanged(st.Inode);
        return err;
    }

    /// <summary>flush (on every close of a descriptor): commits buffered writes, reports their errors.</summary>
    public Task<int> FlushAsync(VfsContext ctx, ulong inode, ulong fh) => Guard("flush", inode, async () =>
    {
        _ = ctx;
        var h = Handle(inode, fh);
        return h is null ? Errno.EBADF : await FlushInode(h.State);
    });

    public Task<int> FsyncAsync(VfsContext ctx, ulong inode, ulong fh, bool dataOnly) => Guard("fsync", inode, async () =>
    {
        _ = ctx;
        _ = dataOnly;
        var h = Handle(inode, fh);
        return h is null ? Errno.EBADF : await FlushInode(h.State);
    });

    /// <summary>release (last close of an open): commits buffered writes, then tells the metaserver.</summary>
    public Task<int> ReleaseAsync(VfsContext ctx, ulong inode, ulong fh) => Guard("release", inode, async () =>
    {
        if (!_files.TryRemove(fh, out var h) || h.Inode != inode)
        {
            return Errno.EBADF;
        }
        var err = await FlushInode(h.State);
        var r = await Mutate(new ReleaseRequest { Cred = ctx.ToCred(), Inode = inode }, static (m, q, c) => m.ReleaseAsync(q, c));
        lock (h.State.Gate)
        {
            h.State.Handles--;
        }
        return err != 0 ? err : r.Errno;
    });

    public Task<int> FallocateAsync(VfsContext ctx, ulong inode, ulong fh, uint mode, long offset, long length) =>
        Guard("fallocate", inode, async () =>
        {
            var h = Handle(inode, fh);
            if (h is null || !h.CanWrite)
            {
                return Errno.EBADF;
            }
            if (offset < 0 || length <= 0)
            {
                return Errno.EINVAL;
            }
            var err = await FlushInode(h.State);
            if (err != 0)
            {
                return err;
            }
            var r = await Mutate(new FallocateRequest { Cred = ctx.ToCred(), Inode = inode, Mode = mode, Offset = (ulong)offset, Length = (ulong)length },
                static (m, q, c) => m.FallocateAsync(q, c));
            h.State.DropChunks();
            AttrChanged(inode);
            if (r.Errno == 0)
            {
                h.State.SetAttr(r.Attr);
            }
            return r.Errno;
        });

    // ---- directories ----

    public Task<VfsResult<ulong>> OpenDirAsync(VfsContext ctx, ulong inode) => Guard("opendir", inode, async () =>
    {
        var r = await Read(new GetAttrRequest { Cred = ctx.ToCred(), Inode = inode }, static (m, q, c) => m.GetAttrAsync(q, c));
        if (r.Errno != 0)
        {
            return VfsResult<ulong>.Fail(r.Errno);
        }
        if (!PosixMode.IsDir(r.Attr.Mode))
        {
            return VfsResult<ulong>.Fail(Errno.ENOTDIR);
        }
        var fh = NewHandle();
        _dirs[fh] = inode;
        return VfsResult<ulong>.Success(fh);
    });

    /// <summary>One page of entries from <paramref name="offset"/> (0 = start; else an entry's NextOffset),
    /// with attributes (enough for readdir and readdirplus).</summary>
    public Task<VfsResult<VfsDirPage>> ReadDirAsync(VfsContext ctx, ulong inode, ulong fh, ulong offset, uint limit = 0) =>
        Guard("readdir", inode, async () =>
        {
            if (!_dirs.TryGetValue(fh, out var dir) || dir != inode)
            {
                return VfsResult<VfsDirPage>.Fail(Errno.EBADF);
            }
            var r = await Read(new ReadDirRequest { Cred = ctx.ToCred(), Inode = inode, Offset = offset, Limit = limit == 0 ? _options.ReadDirPageEntries : limit },
                static (m, q, c) => m.ReadDirAsync(q, c));
            if (r.Errno != 0)
            {
                return VfsResult<VfsDirPage>.Fail(r.Errno);
            }
            var entries = r.Entries.Select(e => new VfsDirEntry(e.Name.ToByteArray(), WithDirty(e.Attr, Known(e.Attr.Inode)), e.Offset)).ToList();
            return VfsResult<VfsDirPage>.Success(new VfsDirPage(entries, r.Eof));
        });

    public int ReleaseDir(ulong inode, ulong fh) =>
        _dirs.TryRemove(fh, out var dir) && dir == inode ? Errno.OK : Errno.EBADF;

    public Task<VfsResult<VfsStatFs>> StatFsAsync(VfsContext ctx, ulong inode) => Guard("statfs", inode, async () =>
    {
        var r = await Read(new StatFsRequest { Cred = ctx.ToCred(), Inode = inode }, static (m, q, c) => m.StatFsAsync(q, c));
        return r.Errno != 0
            ? VfsResult<VfsStatFs>.Fail(r.Errno)
            : VfsResult<VfsStatFs>.Success(new VfsStatFs(r.TotalBytes, r.UsedBytes, r.AvailBytes, r.TotalInodes, r.UsedInodes,
                r.AvailInodes, r.NameMax, r.BlockSize));
    });

    // ---- extended attributes ----

    /// <summary>The whole value; the FUSE adapter answers size probes (size 0) and ERANGE from its length.</summary>
    public Task<VfsResult<byte[]>> GetXattrAsync(VfsContext ctx, ulong inode, byte[] name) => Guard("getxattr", inode, async () =>
    {
        var capability = NoCapabilityCache.IsCapability(name);
        if (capability && _noCapability.KnownAbsent(inode))
        {
            return VfsResult<byte[]>.Fail(Errno.ENODATA);
        }
        var r = await Read(new GetXattrRequest { Cred = ctx.ToCred(), Inode = inode, Name = Bytes(name) }, static (m, q, c) => m.GetXattrAsync(q, c));
        if (capability && r.Errno == Errno.ENODATA)
        {
            _noCapability.NoteAbsent(inode);
        }
        return r.Errno != 0 ? VfsResult<byte[]>.Fail(r.Errno) : VfsResult<byte[]>.Success(r.Value.ToByteArray());
    });

    public Task<int> SetXattrAsync(VfsContext ctx, ulong inode, byte[] name, byte[] value, uint flags) => Guard("setxattr", inode, async () =>
    {
        _noCapability.Forget(inode);
        var r = await Mutate(new SetXattrRequest { Cred = ctx.ToCred(), Inode = inode, Name = Bytes(name), Value = Bytes(value), Flags = flags },
            static (m, q, c) => m.SetXattrAsync(q, c));
        AttrChanged(inode); // ctime
        return r.Errno;
    });

    /// <summary>The names; listxattr's NUL-separated buffer is the adapter's to build.</summary>
    public Task<VfsResult<IReadOnlyList<byte[]>>> ListXattrAsync(VfsContext ctx, ulong inode) => Guard("listxattr", inode, async () =>
    {
        var r = await Read(new ListXattrRequest { Cred = ctx.ToCred(), Inode = inode }, static (m, q, c) => m.ListXattrAsync(q, c));
        return r.Errno != 0
            ? VfsResult<IReadOnlyList<byte[]>>.Fail(r.Errno)
            : VfsResult<IReadOnlyList<byte[]>>.Success(r.Names.Select(n => n.ToByteArray()).ToList());
    });

    public Task<int> RemoveXattrAsync(VfsContext ctx, ulong inode, byte[] name) => Guard("removexattr", inode, async () =>
    {
        _noCapability.Forget(inode);
        var r = await Mutate(new RemoveXattrRequest { Cred = ctx.ToCred(), Inode = inode, Name = Bytes(name) }, static (m, q, c) => m.RemoveXattrAsync(q, c));
        AttrChanged(inode); // ctime
        return r.Errno;
    });

    /// <summary>Commits every buffered write of every file; returns the first error.</summary>
    public async Task<int> FlushAllAsync()
    {
        var first = 0;
        foreach (var st in _inodes.Values)
        {
            var err = await Guard("flush", st.Inode, () => FlushInode(st));
            if (first == 0)
            {
                first = err;
            }
        }
        return first;
    }

    /// <summary>Commits buffered writes, then closes the session (when this VFS started it).</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }
        var err = await FlushAllAsync();
        if (err != 0)
        {
            _log.LogError("unmount: buffered writes could not be committed (errno {Errno}); that data is lost", err);
        }
        if (_compactor is not null)
        {
            await _compactor.DisposeAsync();
        }
        if (_deleter is not null)
        {
            await _deleter.DisposeAsync();
        }
        await _settings.DisposeAsync();
        if (_ownsSession)
        {
            await _session.DisposeAsync();
        }
        _ids.Dispose();
        _blocks.Dispose();
    }
}
