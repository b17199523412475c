// The write path of one inode: buffers contiguous writes as slices, uploads full blocks while writing continues,
// and commits each slice with WriteSlice only after all of its blocks are stored, in write order.
using System.Numerics;
using Microsoft.Extensions.Logging;
using MirrorFS.Core.Layout;
using MirrorFS.Core.Meta;

namespace MirrorFS.Client.Vfs;

/// <summary>Bytes buffered across all writers, bounded: a writer waits for room (backpressure).</summary>
internal sealed class ByteBudget(long bytesMax)
{
    private readonly Lock _lock = new();
    private readonly LinkedList<(long Bytes, TaskCompletionSource Tcs)> _waiters = new();
    private long _used;

    public long BytesMax => bytesMax;

    public long Used
    {
        get
        {
            lock (_lock)
            {
                return _used;
            }
        }
    }

    /// <summary>Takes <paramref name="bytes"/> (at most the whole budget); calls <paramref name="onShortage"/> once
    /// when it has to wait. False after <paramref name="timeoutMs"/>.</summary>
    public async Task<bool> AcquireAsync(long bytes, Action onShortage, int timeoutMs, CancellationToken ct)
    {
        bytes = Math.Min(bytes, bytesMax);
        LinkedListNode<(long, TaskCompletionSource)> node;
        lock (_lock)
        {
            if (_waiters.Count == 0 && _used + bytes <= bytesMax)
            {
                _used += bytes;
                return true;
            }
            node = _waiters.AddLast((bytes, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)));
        }
        onShortage();
        var granted = node.Value.Item2.Task;
        try
        {
            // WaitAsync drops its timer as soon as the space is granted; a Task.Delay would stay armed.
            await granted.WaitAsync(TimeSpan.FromMilliseconds(timeoutMs), ct);
            return true;
        }
        catch (TimeoutException)
        {
        }
        lock (_lock)
        {
            if (granted.IsCompleted)
            {
                return true;
            }
            _waiters.Remove(node);
            Grant();
        }
        return false;
    }

    public void Release(long bytes)
    {
        bytes = Math.Min(bytes, bytesMax);
        lock (_lock)
        {
            _used -= bytes;
            Grant();
        }
    }

    // First come, first served: a large waiter is not overtaken forever by small ones.
    private void Grant()
    {
        while (_waiters.First is { } first && _used + first.Value.Bytes <= bytesMax)
        {
            _waiters.RemoveFirst();
            _used += first.Value.Bytes;
            first.Value.Tcs.TrySetResult();
        }
    }
}

/// <summary>Slice ids reserved from the metaserver in batches.</summary>
internal sealed class SliceIdPool(MetaSession session, uint batch) : IDisposable
{
    private readonly SemaphoreSlim _gate = new(1, 1);
    private ulong _next;
    private uint _left;

    public async Task<ulong> NextAsync(CancellationToken ct)
    {
        await _gate.WaitAsync(ct);
        try
        {
            if (_left == 0)
            {
                var reply = await session.MutateAsync(new NewSliceIdsRequest { Count = Math.Clamp(batch, 1u, 1_000_000u) },
                    static (m, r, c) => m.NewSliceIdsAsync(r, c), ct);
                if (reply.Errno != 0 || reply.Count == 0)
                {
                    throw new IOException($"metaserver gave no slice ids (errno {reply.Errno})");
                }
                _next = reply.FirstId;
                _left = reply.Count;
            }
            _left--;
            return _next++;
        }
        finally
        {
            _gate.Release();
        }
    }

    public void Dispose() => _gate.Dispose();
}

/// <summary>A slice being written: a position in its chunk and its bytes as blocks of the volume's block size.</summary>
internal sealed class SliceBuffer(uint chunkIndex, int pos, Task<ulong> id)
{
    public uint ChunkIndex { get; } = chunkIndex;

    public int Pos { get; } = pos;

    public Task<ulong> Id { get; } = id;

    public int Length { get; set; }

    public List<byte[]> Blocks { get; } = [];

    public List<Task> Uploads { get; } = [];

    /// <summary>The caller of the latest write: WriteSlice runs as them (it may clear set-uid bits).</summary>
    public Credentials Cred { get; set; } = new();
}

internal sealed class FileWriter
{
    private readonly ulong _inode;
    private readonly BlockStore _blocks;
    private readonly SliceIdPool _ids;
    private readonly MetaSession _session;
    private readonly ByteBudget _budget;
    private readonly VfsOptions _options;
    private readonly Action<uint, Attr> _committed;
    private readonly Action _shortage;
    private readonly ILogger _log;
    private readonly Lock _lock = new();
    private readonly Dictionary<uint, SliceBuffer> _open = [];
    private Task _chain = Task.CompletedTask;
    private int _pending;
    private long _dirtyEnd;
    private int _errno;

    /// <summary>First buffer of a slice's first block; it grows fourfold as writes need, up to the block size.</summary>
    internal const int FirstBufferBytes = 64 * 1024;

    public FileWriter(ulong inode, BlockStore blocks, SliceIdPool ids, MetaSession session, ByteBudget budget,
        VfsOptions options, Action<uint, Attr> committed, Action shortage, ILogger log)
    {
        _inode = inode;
        _blocks = blocks;
        _ids = ids;
        _session = session;
        _budget = budget;
        _options = options;
        _committed = committed;
        _shortage = shortage;
        _log = log;
    }

    /// <summary>True while some written bytes are not committed yet.</summary>
    public bool Dirty
    {
        get
        {
            lock (_lock)
            {
                return _open.Count > 0 || _pending > 0;
            }
        }
    }

    /// <summary>The end of the furthest buffered byte (0 when clean): the file is at least this long.</summary>
    public long DirtyEnd
    {
        get
        {
            lock (_lock)
            {
                return _open.Count > 0 || _pending > 0 ? _dirtyEnd : 0;
            }
        }
    }

    public int PeekError() => Volatile.Read(ref _errno);

    private void Fail(int errno)
    {
        Interlocked.CompareExchange(ref _errno, errno, 0);
    }

    /// <summary>Buffers a write; returns 0 or the errno of an earlier failed upload or commit.</summary>
    public async Task<int> WriteAsync(long offset, ReadOnlyMemory<byte> data, Credentials cred, CancellationToken ct)
    {
        var bs = _blocks.BlockSize;
        var done = 0;
        while (done < data.Length)
        {
            var err = PeekError();
            if (err != 0)
            {
                return err;
            }
            var pos = offset + done;
            // At most one block's worth per step, never across a chunk end: one budget grant, one slice.
            var inChunk = BlockLayout.OffsetInChunk(pos);
            var n = (int)Math.Min(Math.Min(data.Length - done, bs - (pos % bs)), BlockLayout.ChunkSize - inChunk);
            if (!await _budget.AcquireAsync(n, _shortage, _options.BufferWaitMs, ct))
            {
                _log.LogError("write to inode {Inode} waited over {Ms} ms for buffer space; is object storage reachable?",
                    _inode, _options.BufferWaitMs);
                return Errno.EIO;
            }
            lock (_lock)
            {
                if (_open.Count == 0 && _pending == 0)
                {
                    _dirtyEnd = 0; // clean: an old end (before a truncate) no longer counts
                }
                Append((uint)BlockLayout.ChunkIndex(pos), inChunk, data.Span.Slice(done, n), cred);
                _dirtyEnd = Math.Max(_dirtyEnd, pos + n);
            }
            done += n;
        }
        return PeekError();
    }

    private void Append(uint chunk, int inChunk, ReadOnlySpan<byte> bytes, Credentials cred)
    {
        if (_open.TryGetValue(chunk, out var s) && s.Pos + s.Length != inChunk)
        {
            Freeze(s);
            s = null;
        }
        if (s is null)
        {
            s = new SliceBuffer(chunk, inChunk, _ids.NextAsync(CancellationToken.None));
            _open[chunk] = s;
        }
        s.Cred = cred;
        var bs = _blocks.BlockSize;
        var at = 0;
        while (at < bytes.Length)
        {
            var inSlice = s.Length;
            var blockIndex = inSlice / bs;
            var inBlock = inSlice % bs;
            var n = Math.Min(bs - inBlock, bytes.Length - at);
            if (blockIndex == s.Blocks.Count)
            {
                // A slice's first block starts small and grows, so a small file does not cost a whole block of
                // memory (4 MiB zeroed on the large object heap per file); later blocks of a slice are full size.
                s.Blocks.Add(blockIndex == 0 && n < bs
                    ? new byte[Math.Min(bs, Math.Max(FirstBufferBytes, (int)BitOperations.RoundUpToPowerOf2((uint)n)))]
                    : GC.AllocateUninitializedArray<byte>(bs));
            }
            var block = s.Blocks[blockIndex];
            if (inBlock + n > block.Length)
            {
                var grown = GC.AllocateUninitializedArray<byte>((int)Math.Min(bs, Math.Max((long)inBlock + n, (long)block.Length * 4)));
                block.AsSpan(0, inBlock).CopyTo(grown);
                s.Blocks[blockIndex] = grown;
                block = grown;
            }
            bytes.Slice(at, n).CopyTo(block.AsSpan(inBlock));
            s.Length += n;
            at += n;
            if (inBlock + n == bs)
            {
                // A full block never changes again: upload it now, while writing continues.
                s.Uploads.Add(UploadAsync(s, blockIndex, block));
            }
        }
        if (s.Pos + s.Length == BlockLayout.ChunkSize)
        {
            Freeze(s);
        }
    }

    private async Task UploadAsync(SliceBuffer s, int index, byte[] data)
    {
        try
        {
            var id = await s.Id;
            await _blocks.UploadAsync(_blocks.Key(id, index, data.Length), data, CancellationToken.None);
        }
        catch
        {
            // Surface the failure on the next write already, not only when the slice ends.
            Fail(Errno.EIO);
            throw;
        }
    }

    /// <summary>Ends a slice (call under the lock): uploads its partial last block, then queues its commit.</summary>
    private void Freeze(SliceBuffer s)
    {
        _open.Remove(s.ChunkIndex);
        var bs = _blocks.BlockSize;
        var tail = s.Length % bs;
        if (tail != 0)
        {
            var last = s.Blocks.Count - 1;
            s.Uploads.Add(UploadAsync(s, last, s.Blocks[last].AsSpan(0, tail).ToArray()));
        }
        _pending++;
        _chain = CommitAsync(s, _chain);
    }

    private async Task CommitAsync(SliceBuffer s, Task previous)
    {
        try
        {
            ulong id = 0;
            var stored = false;
            try
            {
                await Task.WhenAll(s.Uploads);
                id = await s.Id;
                stored = true;
            }
            catch (Exception e)
            {
                _log.LogError("upload of a slice of inode {Inode} (chunk {Chunk}, {Bytes} bytes) failed; not committing it: {Error}",
                    _inode, s.ChunkIndex, s.Length, e.Message);
                Fail(Errno.EIO);
            }
            // Newest wins on read, so slices commit in the order they were written.
            await previous;
            if (!stored)
            {
                return;
            }
            var reply = await _session.MutateAsync(new WriteSliceRequest
            {
                Cred = s.Cred,
                Inode = _inode,
                ChunkIndex = s.ChunkIndex,
                Slice = new Slice { Id = id, Size = (uint)s.Length, Offset = 0, Length = (uint)s.Length, Pos = (uint)s.Pos },
            }, static (m, r, c) => m.WriteSliceAsync(r, c), CancellationToken.None);
            if (reply.Errno != 0)
            {
                _log.LogWarning("WriteSlice of inode {Inode} chunk {Chunk} gave errno {Errno}", _inode, s.ChunkIndex, reply.Errno);
                Fail(reply.Errno);
                return;
            }
            _committed(s.ChunkIndex, reply.Attr);
        }
        catch (Exception e)
        {
            _log.LogError(e, "commit of a slice of inode {Inode} chunk {Chunk} failed", _inode, s.ChunkIndex);
            Fail(Errno.EIO);
        }
        finally
        {
            s.Blocks.Clear();
            _budget.Release(s.Length);
            lock (_lock)
            {
                _pending--;
            }
        }
    }

    /// <summary>Ends every open slice so its blocks upload and it commits (used under buffer pressure).</summary>
    public void FreezeAll()
    {
        lock (_lock)
        {
            foreach (var s in _open.Values.ToList())
            {
                Freeze(s);
            }
        }
    }

    /// <summary>Commits everything written so far; returns 0 or the first error since the last flush (and clears it).</summary>
    public async Task<int> FlushAsync()
    {
        Task chain;
        lock (_lock)
        {
            foreach (var s in _open.Values.ToList())
            {
                Freeze(s);
            }
            chain = _chain;
        }
        await chain;
        return Interlocked.Exchange(ref _errno, 0);
    }
}
