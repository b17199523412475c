// Options, caller context and result records of the VFS layer (shaped after FUSE low-level callbacks).
using MirrorFS.Core.Meta;

namespace MirrorFS.Client.Vfs;

public sealed record VfsOptions
{
    /// <summary>How long the kernel may cache a name lookup.</summary>
    public double EntryTimeoutSec { get; init; } = 1.0;

    /// <summary>How long the kernel may cache attributes.</summary>
    public double AttrTimeoutSec { get; init; } = 1.0;

    /// <summary>Answer lookups from a directory's listing, read once lookups of several names in it come in a burst
    /// (kept for <see cref="EntryTimeoutSec"/>; names it lacks still go to the metaserver).</summary>
    public bool DirCache { get; init; } = true;

    /// <summary>Block uploads in flight across all files.</summary>
    public int UploadConcurrencyMax { get; init; } = 16;

    /// <summary>Written bytes buffered (not yet committed) across all files; writers wait beyond it.</summary>
    public long BufferBytesMax { get; init; } = 256L << 20;

    /// <summary>Longest a write waits for buffer space before it fails with EIO.</summary>
    public int BufferWaitMs { get; init; } = 120_000;

    /// <summary>Blocks read ahead after a sequential read.</summary>
    public int PrefetchBlocks { get; init; } = 8;

    /// <summary>Block downloads in flight for read-ahead.</summary>
    public int PrefetchConcurrencyMax { get; init; } = 8;

    /// <summary>Bytes of blocks kept in memory (LRU).</summary>
    public long MemoryCacheBytesMax { get; init; } = 128L << 20;

    /// <summary>Directory of the on-disk block cache; null = none.</summary>
    public string? DiskCacheDirectory { get; init; }

    public long DiskCacheBytesMax { get; init; } = 1L << 30;

    /// <summary>Slice ids reserved per NewSliceIds call.</summary>
    public uint SliceIdBatch { get; init; } = 64;

    /// <summary>Entries asked per ReadDir page.</summary>
    public uint ReadDirPageEntries { get; init; } = 1024;

    /// <summary>Upload bandwidth in bytes per second (0 = unlimited); null follows the volume settings.</summary>
    public long? UploadLimitBytes { get; init; }

    /// <summary>Download bandwidth in bytes per second (0 = unlimited); null follows the volume settings.</summary>
    public long? DownloadLimitBytes { get; init; }

    /// <summary>Metadata calls per second (0 = unlimited); null follows the volume settings.</summary>
    public long? MetaOpsLimit { get; init; }

    /// <summary>How often the volume settings (limits) are read again while mounted.</summary>
    public int SettingsPollMs { get; init; } = 3_000;

    /// <summary>Pause between passes of the background job deleting blocks of unreferenced slices; 0 = none here.</summary>
    public int DeleteIntervalMs { get; init; } = 10_000;

    /// <summary>Pending slices deleted, then confirmed, per batch.</summary>
    public int DeleteBatchSlices { get; init; } = 256;

    /// <summary>A chunk this client wrote to is compacted into one slice once it has more slices than this; 0 = never.</summary>
    public int CompactSlicesMax { get; init; } = 20;

    /// <summary>A chunk is checked for compaction once no write of this client touched it for this long.</summary>
    public int CompactQuietMs { get; init; } = 5_000;

    /// <summary>How long slices replaced by compaction are kept (readers may hold the old slice list meanwhile).</summary>
    public TimeSpan CompactDeleteDelay { get; init; } = TimeSpan.FromHours(1);

    /// <summary>Where cache hits and misses are counted; null for nowhere.</summary>
    public VfsMetrics? Metrics { get; init; }
}

/// <summary>Who makes a call (FUSE's fuse_ctx plus supplementary groups).</summary>
public readonly record struct VfsContext(uint Uid, uint Gid, uint Pid, IReadOnlyList<uint>? Gids = null)
{
    public static VfsContext Root => new(0, 0, 0);

    internal Credentials ToCred()
    {
        var c = new Credentials { Uid = Uid, Gid = Gid };
        if (Gids is not null)
        {
            c.Gids.AddRange(Gids);
        }
        return c;
    }
}

/// <summary>An errno (0 = ok) and a value that is meaningful only when the errno is 0.</summary>
public readonly record struct VfsResult<T>(int Errno, T? Value)
{
    public bool Ok => Errno == 0;

    public static VfsResult<T> Fail(int errno) => new(errno, default);

    public static VfsResult<T> Success(T value) => new(0, value);
}

/// <summary>What a lookup-like call (lookup, mknod, mkdir, symlink, link) answers: fuse_entry_param.</summary>
public sealed record VfsEntry(Attr Attr, double EntryTimeoutSec, double AttrTimeoutSec)
{
    public ulong Inode => Attr.Inode;
}

/// <summary>What getattr/setattr answer.</summary>
public sealed record VfsAttr(Attr Attr, double AttrTimeoutSec);

/// <summary>An opened file: the handle (fuse_file_info.fh) and its attributes right after open.</summary>
public sealed record VfsOpen(ulong Handle, Attr Attr);

/// <summary>A created file: the entry and the open handle.</summary>
public sealed record VfsCreate(VfsEntry Entry, ulong Handle);

/// <summary>One directory entry; <see cref="NextOffset"/> is the offset to pass to continue after it.</summary>
public sealed record VfsDirEntry(byte[] Name, Attr Attr, ulong NextOffset);

public sealed record VfsDirPage(IReadOnlyList<VfsDirEntry> Entries, bool Eof);

public sealed record VfsStatFs(ulong TotalBytes, ulong UsedBytes, ulong AvailBytes, ulong TotalInodes, ulong UsedInodes,
    ulong AvailInodes, uint NameMax, uint BlockSize);
