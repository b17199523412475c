// Block I/O of the data path: uploads (bounded, written through to the caches) and reads (caches, then range reads).
using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;
using MirrorFS.Core.Layout;
using MirrorFS.Core.Storage;

namespace MirrorFS.Client.Vfs;

/// <summary>A block the store should hold but does not: the metadata names a slice whose data is gone.</summary>
public sealed class MissingBlockException(string key)
    : IOException($"block {key} is missing from object storage; the file's data there is lost or not yet replicated");

internal sealed class BlockStore : IDisposable
{
    private readonly IObjectStore _store;
    private readonly string _volume;
    private readonly MemoryBlockCache _memory;
    private readonly DiskBlockCache? _disk;
    private readonly SemaphoreSlim _uploads;
    private readonly SemaphoreSlim _prefetches;
    private readonly ConcurrentDictionary<string, Task<byte[]>> _fetching = new(StringComparer.Ordinal);
    private readonly ILogger _log;
    private readonly RateLimiter? _upload;
    private readonly RateLimiter? _download;
    private readonly VfsMetrics? _metrics;

    public BlockStore(IObjectStore store, string volume, int blockSize, VfsOptions options, ILogger log,
        RateLimiter? upload = null, RateLimiter? download = null)
    {
        _upload = upload;
        _download = download;
        BlockLayout.CheckBlockSize(blockSize);
        _store = store;
        _volume = volume;
        BlockSize = blockSize;
        _log = log;
        _memory = new MemoryBlockCache(options.MemoryCacheBytesMax);
        _disk = options.DiskCacheDirectory is null ? null : new DiskBlockCache(options.DiskCacheDirectory, options.DiskCacheBytesMax, log);
        _uploads = new SemaphoreSlim(Math.Max(1, options.UploadConcurrencyMax));
        _prefetches = new SemaphoreSlim(Math.Max(1, options.PrefetchConcurrencyMax));
        _metrics = options.Metrics;
    }

    public int BlockSize { get; }

    public MemoryBlockCache Memory => _memory;

    public DiskBlockCache? Disk => _disk;

    public string Key(ulong sliceId, int index, int size) => BlockLayout.Key(_volume, sliceId, index, size);

    /// <summary>Stores one block (bounded by UploadConcurrencyMax), then keeps it in the caches.</summary>
    public async Task UploadAsync(string key, byte[] data, CancellationToken ct)
    {
        await _uploads.WaitAsync(ct);
        try
        {
            await (_upload?.AcquireAsync(data.Length, ct) ?? ValueTask.CompletedTask);
            await _store.PutAsync(key, data, ct);
        }
        finally
        {
            _uploads.Release();
        }
        _disk?.Put(key, data);
        _memory.Put(key, data);
    }

    private byte[]? Cached(string key, bool count = false)
    {
        var data = _memory.Get(key);
        if (data is not null)
        {
            if (count) _metrics?.MemoryHits.Inc();
            return data;
        }
        if (_disk is not null)
        {
            data = _disk.Get(key);
            if (data is not null)
            {
                if (count) _metrics?.DiskHits.Inc();
                _memory.Put(key, data);
                return data;
            }
        }
        if (count) _metrics?.Misses.Inc();
        return null;
    }

    /// <summary>The whole block, from a cache or the store (one download per key at a time).</summary>
    public Task<byte[]> GetBlockAsync(string key, int size, CancellationToken ct)
    {
        var cached = Cached(key);
        if (cached is not null)
        {
            return Task.FromResult(cached);
        }
        var fetch = _fetching.GetOrAdd(key, k => FetchAsync(k, size));
        if (fetch.IsCompleted)
        {
            // A fetch that finished before GetOrAdd stored it (a store answering synchronously) already ran its
            // removal: without this it would stay in the table for good, an unbounded cache of deleted blocks.
            _fetching.TryRemove(KeyValuePair.Create(key, fetch));
        }
        return fetch;

        async Task<byte[]> FetchAsync(string k, int expected)
        {
            try
            {
                return await DownloadAsync(k, expected);
            }
            finally
            {
                _fetching.TryRemove(k, out _);
            }
        }
    }

    /// <summary>Downloads a whole block into the caches (not the caller's token: other readers may share it).</summary>
    private async Task<byte[]> DownloadAsync(string key, int expected)
    {
        await (_download?.AcquireAsync(expected, CancellationToken.None) ?? ValueTask.CompletedTask);
        var data = await _store.GetAsync(key, null, CancellationToken.None) ?? throw new MissingBlockException(key);
        if (data.Length != expected)
        {
            throw new IOException($"block {key} has {data.Length} bytes, expected {expected}; the object is damaged");
        }
        _disk?.Put(key, data);
        _memory.Put(key, data);
        return data;
    }

    /// <summary>Copies bytes [offset, offset + dest.Length) of a stored slice into <paramref name="dest"/>. Cached
    /// blocks are used as they are; otherwise whole blocks are fetched (and cached) when <paramref name="wholeBlocks"/>
    /// or the read covers the block, else just the needed range.</summary>
    public async Task ReadSliceAsync(ulong sliceId, int sliceSize, int offset, Memory<byte> dest, bool wholeBlocks, CancellationToken ct)
    {
        var reads = BlockLayout.ReadsWithinSlice(sliceSize, BlockSize, offset, dest.Length);
        var tasks = new List<Task>(reads.Count);
        var at = 0;
        foreach (var r in reads)
        {
            var target = dest.Slice(at, r.Length);
            at += r.Length;
            tasks.Add(ReadBlockPartAsync(sliceId, r, target, wholeBlocks, ct));
        }
        await Task.WhenAll(tasks);
    }

    private async Task ReadBlockPartAsync(ulong sliceId, BlockRead r, Memory<byte> target, bool wholeBlocks, CancellationToken ct)
    {
        var key = Key(sliceId, r.Index, r.BlockSize);
        // Counted here only: one count per block part a read needs (read-ahead and repeated lookups are not reads).
        var cached = Cached(key, count: true);
        // A part of a block nobody is downloading is fetched as a range; a block on its way (read-ahead) is joined.
        if (cached is null && !wholeBlocks && r.Length < r.BlockSize && !_fetching.ContainsKey(key))
        {
            await (_download?.AcquireAsync(r.Length, ct) ?? ValueTask.CompletedTask);
            var part = await _store.GetAsync(key, new ByteRange(r.OffsetInBlock, r.Length), ct) ?? throw new MissingBlockException(key);
            if (part.Length != r.Length)
            {
                throw new IOException($"block {key} gave {part.Length} bytes at {r.OffsetInBlock}, expected {r.Length}; the object is damaged");
            }
            part.CopyTo(target);
            return;
        }
        var block = cached ?? await GetBlockAsync(key, r.BlockSize, ct);
        block.AsMemory(r.OffsetInBlock, r.Length).CopyTo(target);
    }

    /// <summary>The bytes of a slice range when they lie in one block that the memory cache holds: the cached array
    /// itself (blocks are immutable and never pooled, so the view stays valid), counted as a memory hit. Null
    /// otherwise.</summary>
    public ReadOnlyMemory<byte>? TryReadInMemory(ulong sliceId, int sliceSize, int offset, int length)
    {
        var reads = BlockLayout.ReadsWithinSlice(sliceSize, BlockSize, offset, length);
        if (reads.Count != 1)
        {
            return null;
        }

        var r = reads[0];
        if (_memory.Get(Key(sliceId, r.Index, r.BlockSize)) is not { } block || block.Length < r.OffsetInBlock + r.Length)
        {
            return null;
        }

        _metrics?.MemoryHits.Inc();
        return block.AsMemory(r.OffsetInBlock, r.Length);
    }

    /// <summary>Starts fetching the blocks of a slice range into the caches, without waiting (bounded; skipped
    /// when every prefetch slot is busy).</summary>
    public void Prefetch(ulong sliceId, int sliceSize, int offset, int length)
    {
        foreach (var r in BlockLayout.ReadsWithinSlice(sliceSize, BlockSize, offset, length))
        {
            var key = Key(sliceId, r.Index, r.BlockSize);
            if (_memory.Get(key) is not null || _fetching.ContainsKey(key) || !_prefetches.Wait(0))
            {
                continue;
            }
            // Registered before it starts, so a read arriving meanwhile joins it instead of downloading again; the
            // work (a disk-cache read, then the download) runs off the caller's thread.
            var done = new TaskCompletionSource<byte[]>(TaskCreationOptions.RunContinuationsAsynchronously);
            if (!_fetching.TryAdd(key, done.Task))
            {
                _prefetches.Release();
                continue;
            }
            var size = r.BlockSize;
            _ = Task.Run(async () =>
            {
                try
                {
                    done.TrySetResult(Cached(key) ?? await DownloadAsync(key, size));
                }
                catch (Exception e)
                {
                    done.TrySetException(e);
                    _ = done.Task.Exception; // observed here: a read that joined gets it too
                    _log.LogDebug("read-ahead of {Key} failed: {Error}", key, e.Message);
                }
                finally
                {
                    _fetching.TryRemove(KeyValuePair.Create(key, done.Task));
                    _prefetches.Release();
                }
            });
        }
    }

    public void Dispose()
    {
        _uploads.Dispose();
        _prefetches.Dispose();
    }
}

/// <summary>One visible piece of a chunk range: bytes of a slice (or a hole when <see cref="SliceId"/> is 0).</summary>
internal readonly record struct Segment(int Pos, int Length, ulong SliceId, int SliceSize, int OffsetInSlice);

internal static class SliceMap
{
    /// <summary>What the chunk shows in [start, end): slices in write order, the newest covering a byte wins;
    /// bytes no slice covers are holes. Segments come back in position order and cover the range exactly.</summary>
    public static List<Segment> Visible(IReadOnlyList<Core.Meta.Slice> slices, int start, int end)
    {
        var segs = new List<Segment> { new(start, end - start, 0, 0, 0) };
        if (end <= start)
        {
            return [];
        }
        foreach (var s in slices)
        {
            var a = Math.Max(start, (long)s.Pos);
            var b = Math.Min(end, (long)s.Pos + s.Length);
            if (a >= b)
            {
                continue;
            }
            var next = new List<Segment>(segs.Count + 2);
            foreach (var g in segs)
            {
                var gEnd = g.Pos + g.Length;
                if (gEnd <= a || g.Pos >= b)
                {
                    next.Add(g);
                    continue;
                }
                if (g.Pos < a)
                {
                    next.Add(g with { Length = (int)(a - g.Pos) });
                }
                if (gEnd > b)
                {
                    var cut = (int)(b - g.Pos);
                    next.Add(g with { Pos = (int)b, Length = gEnd - (int)b, OffsetInSlice = g.OffsetInSlice + cut });
                }
            }
            next.Add(new Segment((int)a, (int)(b - a), s.Id, (int)s.Size, (int)(s.Offset + (a - s.Pos))));
            next.Sort((x, y) => x.Pos.CompareTo(y.Pos));
            segs = next;
        }
        return segs;
    }
}
