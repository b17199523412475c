// Compaction: rewrites a chunk made of many slices as one new slice, committed only if the chunk did not change.
using System.Collections.Concurrent;
using Google.Protobuf;
using Microsoft.Extensions.Logging;
using MirrorFS.Core.Layout;
using MirrorFS.Core.Meta;
using MirrorFS.Core.Storage;

namespace MirrorFS.Client.Vfs;

public enum CompactOutcome
{
    /// <summary>The chunk has fewer slices than asked for (or is gone): nothing done.</summary>
    NotNeeded,

    /// <summary>The chunk is one slice now; the old ones wait for delayed deletion.</summary>
    Compacted,

    /// <summary>The chunk changed while it was rewritten; nothing changed and the new blocks were deleted again.</summary>
    Changed,
}

/// <summary>What compacting one chunk did. <see cref="Replaced"/> slices were replaced by one.</summary>
public readonly record struct CompactResult(CompactOutcome Outcome, int Replaced, long Bytes);

/// <summary>
/// Reads a chunk's resolved content (newest slice wins, holes are zeros) between its first and last stored byte,
/// stores it as the blocks of a new slice, then sends CompactChunk with a digest of the slice list it read: the
/// metaserver swaps the list only if it is still that one. Old slices are deleted after <c>deleteDelay</c>, so
/// readers holding the old list keep working meanwhile. One chunk at a time per compactor (up to 64 MiB of memory).
/// In a mount it also runs in the background over the chunks this client wrote to, once they have been quiet.
/// </summary>
public sealed class ChunkCompactor : IAsyncDisposable
{
    /// <summary>Chunks remembered for a background check at most; further writes are not tracked until it drains.</summary>
    public const int CandidatesMax = 10_000;

    /// <summary>Chunks checked per background round at most.</summary>
    public const int ChecksPerRoundMax = 64;

    private const int TransfersMax = 8;

    private readonly MetaSession _session;
    private readonly IObjectStore _store;
    private readonly string _volume;
    private readonly int _blockSize;
    private readonly TimeSpan _deleteDelay;
    private readonly ILogger _log;
    private readonly SemaphoreSlim _one = new(1, 1);
    private readonly ConcurrentDictionary<(ulong Inode, uint Chunk), long> _candidates = new();
    private readonly CancellationTokenSource _stop = new();
    private Task? _loop;

    public ChunkCompactor(MetaSession session, IObjectStore store, string volume, int blockSize, TimeSpan deleteDelay, ILogger log)
    {
        BlockLayout.CheckBlockSize(blockSize);
        ArgumentOutOfRangeException.ThrowIfLessThan(deleteDelay, TimeSpan.Zero);
        _session = session;
        _store = store;
        _volume = volume;
        _blockSize = blockSize;
        _deleteDelay = deleteDelay;
        _log = log;
    }

    /// <summary>Called after a compaction replaced the slices of an inode (the mount drops its cached lists).</summary>
    public Action<ulong>? Compacted { get; init; }

    /// <summary>Compacts chunk <paramref name="chunk"/> of <paramref name="inode"/> if it has at least
    /// <paramref name="minSlices"/> slices. Store and metadata failures propagate (nothing is changed then).</summary>
    public async Task<CompactResult> CompactAsync(ulong inode, uint chunk, int minSlices, CancellationToken ct = default)
    {
        await _one.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            return await CompactCoreAsync(inode, chunk, Math.Max(2, minSlices), ct).ConfigureAwait(false);
        }
        finally
        {
            _one.Release();
        }
    }

    private async Task<CompactResult> CompactCoreAsync(ulong inode, uint chunk, int minSlices, CancellationToken ct)
    {
        var read = await _session.ReadAsync(new ReadChunkRequest { Inode = inode, ChunkIndex = chunk },
            static (m, r, c) => m.ReadChunkAsync(r, c), ct).ConfigureAwait(false);
        if (read.Errno == Errno.ENOENT || (read.Errno == 0 && read.Slices.Count < minSlices))
        {
            return new CompactResult(CompactOutcome.NotNeeded, 0, 0);
        }
        if (read.Errno != 0)
        {
            throw new IOException($"reading chunk {chunk} of inode {inode} failed: errno {read.Errno}");
        }
        var slices = read.Slices.ToArray();
        int start = int.MaxValue, end = 0;
        foreach (var s in slices.Where(s => s.Id != 0))
        {
            start = Math.Min(start, (int)s.Pos);
            end = Math.Max(end, (int)(s.Pos + s.Length));
        }
        var request = new CompactChunkRequest
        {
            Inode = inode,
            ChunkIndex = chunk,
            ExpectedCount = (uint)slices.Length,
            ExpectedDigest = ByteString.CopyFrom(SliceDigest.Of(slices)),
            DeleteDelayNs = _deleteDelay.Ticks * 100,
        };
        var keys = new List<string>();
        if (end > 0)
        {
            var content = await ReadContentAsync(slices, start, end, ct).ConfigureAwait(false);
            var ids = await _session.MutateAsync(new NewSliceIdsRequest { Count = 1 }, static (m, r, c) => m.NewSliceIdsAsync(r, c), ct)
                .ConfigureAwait(false);
            if (ids.Errno != 0)
            {
                throw new IOException($"metaserver gave no slice id for compaction (errno {ids.Errno})");
            }
            var id = ids.FirstId;
            var blocks = BlockLayout.Blocks(content.Length, _blockSize);
            keys.AddRange(blocks.Select(b => BlockLayout.Key(_volume, id, b.Index, b.Size)));
            try
            {
                await Parallel.ForEachAsync(blocks, new ParallelOptions { MaxDegreeOfParallelism = TransfersMax, CancellationToken = ct },
                    async (b, c) => await _store.PutAsync(keys[b.Index], content.AsMemory(b.OffsetInSlice, b.Size), c).ConfigureAwait(false))
                    .ConfigureAwait(false);
            }
            catch
            {
                await DropAsync(keys).ConfigureAwait(false);
                throw;
            }
            request.Slice = new Slice { Id = id, Size = (uint)content.Length, Offset = 0, Length = (uint)content.Length, Pos = (uint)start };
        }
        // Should this call fail, whether it applied is unknown: the new blocks stay (gc finds them if unused).
        var reply = await _session.MutateAsync(request, static (m, r, c) => m.CompactChunkAsync(r, c), ct).ConfigureAwait(false);
        if (reply.Errno != 0 || !reply.Compacted)
        {
            await DropAsync(keys).ConfigureAwait(false);
            if (reply.Errno != 0)
            {
                throw new IOException($"metaserver refused to compact chunk {chunk} of inode {inode}: errno {reply.Errno}");
            }
            return new CompactResult(CompactOutcome.Changed, 0, 0);
        }
        Compacted?.Invoke(inode);
        return new CompactResult(CompactOutcome.Compacted, (int)reply.Replaced, end > 0 ? end - start : 0);
    }

    /// <summary>Bytes [start, end) of the chunk as readers see them.</summary>
    private async Task<byte[]> ReadContentAsync(IReadOnlyList<Slice> slices, int start, int end, CancellationToken ct)
    {
        var content = new byte[end - start];
        var parts = new List<(string Key, BlockRead Read, int At)>();
        foreach (var seg in SliceMap.Visible(slices, start, end).Where(s => s.SliceId != 0))
        {
            var at = seg.Pos - start;
            foreach (var r in BlockLayout.ReadsWithinSlice(seg.SliceSize, _blockSize, seg.OffsetInSlice, seg.Length))
            {
                parts.Add((BlockLayout.Key(_volume, seg.SliceId, r.Index, r.BlockSize), r, at));
                at += r.Length;
            }
        }
        await Parallel.ForEachAsync(parts, new ParallelOptions { MaxDegreeOfParallelism = TransfersMax, CancellationToken = ct },
            async (p, c) =>
            {
                var data = await _store.GetAsync(p.Key, new ByteRange(p.Read.OffsetInBlock, p.Read.Length), c).ConfigureAwait(false)
                           ?? throw new MissingBlockException(p.Key);
                if (data.Length != p.Read.Length)
                {
                    throw new IOException($"block {p.Key} gave {data.Length} bytes at {p.Read.OffsetInBlock}, expected {p.Read.Length}; the object is damaged");
                }
                data.CopyTo(content.AsSpan(p.At));
            }).ConfigureAwait(false);
        return content;
    }

    /// <summary>Deletes blocks of a new slice nothing references (best effort: gc removes what is left).</summary>
    private async Task DropAsync(List<string> keys)
    {
        if (keys.Count == 0)
        {
            return;
        }
        try
        {
            await _store.DeleteManyAsync(keys, CancellationToken.None).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            _log.LogWarning("could not delete {Count} unused blocks of a compaction: {Error}; mirrorfs gc removes them", keys.Count, e.Message);
        }
    }

    // ---- background: chunks this client wrote to ----

    /// <summary>Notes a committed write to a chunk; it is checked once no write touched it for the quiet time.</summary>
    public void Touched(ulong inode, uint chunk)
    {
        if (_candidates.Count < CandidatesMax || _candidates.ContainsKey((inode, chunk)))
        {
            _candidates[(inode, chunk)] = Environment.TickCount64;
        }
    }

    /// <summary>Checks quiet chunks every half <paramref name="quietMs"/> and compacts those with more than
    /// <paramref name="slicesMax"/> slices.</summary>
    public void Start(int slicesMax, int quietMs)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(slicesMax);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(quietMs);
        _loop ??= Task.Run(async () =>
        {
            var ct = _stop.Token;
            while (!ct.IsCancellationRequested)
            {
                try
                {
                    await Task.Delay(Math.Max(100, quietMs / 2), ct).ConfigureAwait(false);
                    var now = Environment.TickCount64;
                    var due = _candidates.Where(kv => now - kv.Value >= quietMs).Select(kv => kv.Key).Take(ChecksPerRoundMax).ToList();
                    foreach (var key in due)
                    {
                        if (_candidates.TryGetValue(key, out var t) && now - t >= quietMs)
                        {
                            _candidates.TryRemove(KeyValuePair.Create(key, t));
                            var r = await CompactAsync(key.Inode, key.Chunk, slicesMax + 1, ct).ConfigureAwait(false);
                            if (r.Outcome == CompactOutcome.Compacted)
                            {
                                _log.LogInformation("compacted chunk {Chunk} of inode {Inode}: {Replaced} slices into one of {Bytes} bytes",
                                    key.Chunk, key.Inode, r.Replaced, r.Bytes);
                            }
                        }
                    }
                }
                catch (OperationCanceledException) when (ct.IsCancellationRequested)
                {
                    return;
                }
                catch (Exception e)
                {
                    _log.LogWarning("background compaction failed: {Error}; will try again on the next write", e.Message);
                }
            }
        }, CancellationToken.None);
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        if (_loop is not null)
        {
            await _loop.ConfigureAwait(false);
        }
        _stop.Dispose();
        _one.Dispose();
    }
}
