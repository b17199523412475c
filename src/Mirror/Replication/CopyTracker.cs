// Which changelog entries still have blocks in flight, and so how far the copy is complete.
namespace MirrorFS.Mirror.Replication;

/// <summary>One block to copy, with the entry that introduced it; or, when <see cref="DeleteSliceIds"/> is set, the
/// deletion of those slices' blocks from the mirror bucket that entry calls for.</summary>
/// <param name="Key">Object key (the same in both buckets); for a deletion, a name unique to its entry.</param>
/// <param name="Size">Stored size in bytes (0 for a deletion).</param>
/// <param name="Entry">Changelog index of the entry that named the block.</param>
/// <param name="TimeNs">That entry's leader time (Unix ns): what lag and pending age are measured from.</param>
public sealed record BlockJob(string Key, int Size, ulong Entry, long TimeNs)
{
    public ulong[]? DeleteSliceIds { get; init; }

    public bool IsDelete => DeleteSliceIds is not null;

    public static BlockJob Delete(ulong entry, long timeNs, ulong[] sliceIds) =>
        new($"delete@{entry}", 0, entry, timeNs) { DeleteSliceIds = sliceIds };
}

/// <summary>
/// Tracks dispatched entries in index order. <see cref="CopiedThrough"/> is the highest index such that every
/// block of every entry up to it is done; <see cref="DispatchedThrough"/> the highest entry handed out. The blocks
/// between the two are the in-flight set a checkpoint keeps. Thread-safe.
/// </summary>
public sealed class CopyTracker
{
    private readonly Lock _lock = new();
    private readonly SortedDictionary<ulong, int> _openEntries = new(); // entry index -> blocks not yet done
    private readonly Dictionary<string, BlockJob> _pending = new(StringComparer.Ordinal);
    private readonly int _pendingBlocksMax;
    private long _pendingBytes;
    private ulong _dispatched;
    private TaskCompletionSource _changed = NewSignal();

    public CopyTracker(ulong copiedThrough, int pendingBlocksMax)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(pendingBlocksMax);
        _dispatched = copiedThrough;
        _pendingBlocksMax = pendingBlocksMax;
    }

    public ulong DispatchedThrough
    {
        get
        {
            lock (_lock)
            {
                return _dispatched;
            }
        }
    }

    public ulong CopiedThrough
    {
        get
        {
            lock (_lock)
            {
                return CopiedThroughLocked();
            }
        }
    }

    private ulong CopiedThroughLocked() => _openEntries.Count == 0 ? _dispatched : _openEntries.Keys.First() - 1;

    /// <summary>Figures for status: blocks and bytes in flight and the oldest entry time among them (0: none).</summary>
    public (int Blocks, long Bytes, long OldestTimeNs) Pending()
    {
        lock (_lock)
        {
            var oldest = 0L;
            foreach (var b in _pending.Values)
            {
                if (oldest == 0 || b.TimeNs < oldest)
                {
                    oldest = b.TimeNs;
                }
            }
            return (_pending.Count, _pendingBytes, oldest);
        }
    }

    /// <summary>What a checkpoint saves: the copy frontier and the blocks in flight.</summary>
    public (ulong CopiedThrough, ulong DispatchedThrough, List<BlockJob> InFlight) Snapshot()
    {
        lock (_lock)
        {
            return (CopiedThroughLocked(), _dispatched, [.. _pending.Values.OrderBy(b => b.Entry)]);
        }
    }

    /// <summary>Waits while the in-flight set is full; an empty set always has room, whatever the entry brings.</summary>
    public async Task WaitForRoomAsync(CancellationToken ct)
    {
        while (true)
        {
            Task signal;
            lock (_lock)
            {
                if (_pending.Count < _pendingBlocksMax)
                {
                    return;
                }
                signal = _changed.Task;
            }
            await signal.WaitAsync(ct).ConfigureAwait(false);
        }
    }

    /// <summary>Records entry <paramref name="entry"/> with its blocks and returns the ones to copy (a key already
    /// in flight is not handed out twice). Entries must come in increasing index order.</summary>
    public List<BlockJob> Dispatch(ulong entry, IReadOnlyList<BlockJob> blocks)
    {
        lock (_lock)
        {
            if (entry <= _dispatched)
            {
                throw new InvalidOperationException($"entry {entry} dispatched after {_dispatched}: entries must come in order");
            }
            _dispatched = entry;
            var fresh = new List<BlockJob>(blocks.Count);
            var count = 0;
            foreach (var b in blocks)
            {
                if (_pending.TryAdd(b.Key, b))
                {
                    _pendingBytes += b.Size;
                    fresh.Add(b);
                    count++;
                }
            }
            if (count > 0)
            {
                _openEntries[entry] = count;
            }
            return fresh;
        }
    }

    /// <summary>Puts back the in-flight set of a checkpoint; returns the blocks to copy again.</summary>
    public List<BlockJob> Restore(ulong copiedThrough, ulong dispatchedThrough, IEnumerable<BlockJob> inFlight)
    {
        lock (_lock)
        {
            if (_pending.Count != 0 || _dispatched != copiedThrough)
            {
                throw new InvalidOperationException("restore needs a fresh tracker at the checkpoint's copied index");
            }
            var jobs = new List<BlockJob>();
            foreach (var b in inFlight)
            {
                if (b.Entry <= copiedThrough || b.Entry > dispatchedThrough || !_pending.TryAdd(b.Key, b))
                {
                    continue;
                }
                _pendingBytes += b.Size;
                _openEntries[b.Entry] = _openEntries.GetValueOrDefault(b.Entry) + 1;
                jobs.Add(b);
            }
            _dispatched = Math.Max(dispatchedThrough, copiedThrough);
            return jobs;
        }
    }

    /// <summary>Marks a block done (copied, found present, or gone from the source).</summary>
    public void Complete(BlockJob block)
    {
        lock (_lock)
        {
            if (!_pending.Remove(block.Key))
            {
                return;
            }
            _pendingBytes -= block.Size;
            var left = _openEntries[block.Entry] - 1;
            if (left == 0)
            {
                _openEntries.Remove(block.Entry);
            }
            else
            {
                _openEntries[block.Entry] = left;
            }
            var signal = _changed;
            _changed = NewSignal();
            signal.TrySetResult();
        }
    }

    /// <summary>Waits until every entry up to <paramref name="index"/> is done.</summary>
    public async Task WaitCopiedThroughAsync(ulong index, CancellationToken ct)
    {
        while (true)
        {
            Task signal;
            lock (_lock)
            {
                if (CopiedThroughLocked() >= index)
                {
                    return;
                }
                signal = _changed.Task;
            }
            await signal.WaitAsync(ct).ConfigureAwait(false);
        }
    }

    /// <summary>Waits until no block is in flight.</summary>
    public async Task WaitDrainedAsync(CancellationToken ct)
    {
        while (true)
        {
            Task signal;
            lock (_lock)
            {
                if (_pending.Count == 0)
                {
                    return;
                }
                signal = _changed.Task;
            }
            await signal.WaitAsync(ct).ConfigureAwait(false);
        }
    }

    /// <summary>Moves both frontiers to <paramref name="index"/> once nothing is in flight (after a full resync).</summary>
    public void ResetTo(ulong index)
    {
        lock (_lock)
        {
            if (_pending.Count != 0)
            {
                throw new InvalidOperationException("cannot move the copy frontier while blocks are in flight");
            }
            _openEntries.Clear();
            _dispatched = index;
        }
    }

    private static TaskCompletionSource NewSignal() => new(TaskCreationOptions.RunContinuationsAsynchronously);
}
