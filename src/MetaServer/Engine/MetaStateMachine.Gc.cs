// Block deletion and compaction in the state machine: which pending deletes may go, confirming them, listing every
// chunk's slices (gc, fsck, compaction), and replacing a fragmented chunk's slices by one.
using System.Runtime.CompilerServices;
using Google.Protobuf;
using MirrorFS.Core.Meta;

namespace MirrorFS.MetaServer.Engine;

public sealed partial class MetaStateMachine
{
    /// <summary>
    /// THE place that decides whether a pending slice's blocks may be deleted now. Today: once a compacted slice's
    /// delay has passed (readers may still hold the old slice list until then). The mirror issue adds here: only
    /// after every mirror has applied past <see cref="PendingSlice.Index"/>, the entry that dropped it.
    /// </summary>
    private static bool Deletable(in PendingSlice p, long nowNs) => p.NotBeforeNs <= nowNs;

    // ---- apply ----

    private ConfirmDeletesReply ConfirmDeletes(ConfirmDeletesRequest r)
    {
        if (r.SliceIds.Count > GcLimits.ConfirmDeletesMax)
        {
            return new ConfirmDeletesReply { Errno = Errno.EINVAL };
        }
        uint removed = 0;
        foreach (var id in r.SliceIds)
        {
            if (_s.Pending.Remove(id))
            {
                removed++;
            }
        }
        return new ConfirmDeletesReply { Removed = removed };
    }

    private CompactChunkReply CompactChunk(CompactChunkRequest r)
    {
        ref var rec = ref Rec(r.Inode);
        if (Unsafe.IsNullRef(ref rec))
        {
            return new CompactChunkReply { Errno = Errno.ENOENT };
        }
        if (!rec.IsRegular)
        {
            return new CompactChunkReply { Errno = rec.IsDir ? Errno.EISDIR : Errno.EINVAL };
        }
        var sl = r.Slice is { Id: not 0 } s ? s : null;
        if (r.DeleteDelayNs < 0 || r.DeleteDelayNs > GcLimits.CompactDeleteDelayNsMax || r.ExpectedCount == 0
            || (sl is not null && (sl.Id >= _s.NextSliceId || sl.Length == 0 || (ulong)sl.Offset + sl.Length > sl.Size
                                   || sl.Size > MetaLimits.ChunkBytes || (ulong)sl.Pos + sl.Length > MetaLimits.ChunkBytes)))
        {
            return new CompactChunkReply { Errno = Errno.EINVAL };
        }
        var key = new ChunkKey(r.Inode, r.ChunkIndex);
        if (!_s.Chunks.TryGetValue(key, out var slices) || slices.Count != r.ExpectedCount
            || !Digest(slices).AsSpan().SequenceEqual(r.ExpectedDigest.Span))
        {
            return new CompactChunkReply(); // changed since it was read: the caller's new slice is unused
        }
        // Bytes a reader sees from stored slices: later slices win, so a later hole hides what lies under it.
        var shown = new List<(uint Lo, uint Hi)>();
        foreach (var old in slices)
        {
            if (sl is not null && old.Id == sl.Id)
            {
                return new CompactChunkReply { Errno = Errno.EINVAL }; // the new slice must be new
            }
            Cover(shown, old.Pos, old.Pos + old.Length, old.Id != 0);
        }
        uint start = uint.MaxValue, end = 0;
        foreach (var (lo, hi) in shown)
        {
            start = Math.Min(start, lo);
            end = Math.Max(end, hi);
        }
        // The new slice must span every byte a stored slice showed (holes outside it read as zeros anyway), or a
        // reader would lose data; no new slice is right only for a chunk of holes.
        if (sl is null ? end > 0 : end > 0 && (sl.Pos > start || sl.Pos + sl.Length < end))
        {
            return new CompactChunkReply { Errno = Errno.EINVAL };
        }
        var notBefore = _now + r.DeleteDelayNs;
        foreach (var old in slices)
        {
            if (old.Id != 0)
            {
                _s.Pending.TryAdd(old.Id, new PendingSlice(old.Id, old.Size, _index, _now, Math.Max(notBefore, 1)));
            }
        }
        var replaced = (uint)slices.Count;
        if (sl is null)
        {
            _s.Chunks.Remove(key);
        }
        else
        {
            slices.Clear();
            slices.Add(new SliceRec(sl.Id, sl.Size, sl.Offset, sl.Length, sl.Pos));
            slices.TrimExcess();
        }
        return new CompactChunkReply { Compacted = true, Replaced = replaced };
    }

    private static byte[] Digest(List<SliceRec> slices)
    {
        using var d = new SliceDigest();
        foreach (var s in slices)
        {
            d.Add(s.Id, s.Size, s.Offset, s.Length, s.Pos);
        }
        return d.Finish();
    }

    // ---- reads ----

    /// <summary>Pending deletes after <c>start_after</c> in slice id order; eligibility is judged at <paramref name="nowNs"/>
    /// (the leader's clock: reads are not replicated, so a clock is fine here).</summary>
    public ListPendingDeletesReply ListPendingDeletes(ListPendingDeletesRequest r, long nowNs)
    {
        var limit = r.Limit == 0 ? GcLimits.ListPendingDefault : (int)Math.Min(r.Limit, GcLimits.ListPendingMax);
        _lock.EnterReadLock();
        try
        {
            var reply = new ListPendingDeletesReply { Index = _s.AppliedIndex, Total = (ulong)_s.Pending.Count };
            var ids = Smallest(_s.Pending, r.StartAfter, limit, (in PendingSlice p) => !r.EligibleOnly || Deletable(p, nowNs), out var more);
            foreach (var id in ids)
            {
                var p = _s.Pending[id];
                reply.Entries.Add(new PendingDelete
                {
                    SliceId = p.Id,
                    Size = p.Size,
                    Index = p.Index,
                    TimeNs = p.TimeNs,
                    NotBeforeNs = p.NotBeforeNs,
                    Eligible = Deletable(p, nowNs),
                });
            }
            reply.Eof = !more;
            return reply;
        }
        finally
        {
            _lock.ExitReadLock();
        }
    }

    /// <summary>Chunks after (after_inode, after_chunk) in key order with their slices, at most a page of chunks
    /// and (unless one chunk alone is bigger) <see cref="GcLimits.ListSlicesSlicesMax"/> slices.</summary>
    public ListSlicesReply ListSlices(ListSlicesRequest r)
    {
        var limit = r.Limit == 0 ? GcLimits.ListSlicesDefault : (int)Math.Min(r.Limit, GcLimits.ListSlicesMax);
        var min = (int)Math.Min(r.MinSlices, int.MaxValue);
        _lock.EnterReadLock();
        try
        {
            var reply = new ListSlicesReply { Index = _s.AppliedIndex };
            var keys = Smallest(_s.Chunks, new ChunkKey(r.AfterInode, r.AfterChunk), limit,
                (in List<SliceRec> list) => list.Count >= min, out var more);
            var slices = 0;
            foreach (var key in keys)
            {
                var list = _s.Chunks[key];
                if (reply.Chunks.Count > 0 && slices + list.Count > GcLimits.ListSlicesSlicesMax)
                {
                    more = true;
                    break;
                }
                slices += list.Count;
                var chunk = new ChunkSlices { Inode = key.Inode, ChunkIndex = key.Index };
                foreach (var s in list)
                {
                    chunk.Slices.Add(new Slice { Id = s.Id, Size = s.Size, Offset = s.Offset, Length = s.Length, Pos = s.Pos });
                }
                reply.Chunks.Add(chunk);
            }
            reply.Eof = !more;
            return reply;
        }
        finally
        {
            _lock.ExitReadLock();
        }
    }

    private delegate bool Match<TValue>(in TValue value);

    /// <summary>
    /// The <paramref name="limit"/> smallest keys above <paramref name="after"/> whose value matches, in order, found
    /// with one pass over the table and a bounded max-heap (the tables are hash maps; a page costs O(n log limit)).
    /// <paramref name="more"/> tells whether further matching keys exist.
    /// </summary>
    private static List<TKey> Smallest<TKey, TValue>(Dictionary<TKey, TValue> table, TKey after, int limit, Match<TValue> match,
        out bool more)
        where TKey : notnull, IComparable<TKey>
    {
        var heap = new PriorityQueue<TKey, TKey>(limit + 1, Comparer<TKey>.Create(static (a, b) => b.CompareTo(a)));
        more = false;
        foreach (var (key, value) in table)
        {
            if (key.CompareTo(after) <= 0 || !match(value))
            {
                continue;
            }
            if (heap.Count < limit)
            {
                heap.Enqueue(key, key);
            }
            else
            {
                more = true;
                if (key.CompareTo(heap.Peek()) < 0)
                {
                    heap.DequeueEnqueue(key, key);
                }
            }
        }
        var keys = new List<TKey>(heap.Count);
        while (heap.Count > 0)
        {
            keys.Add(heap.Dequeue());
        }
        keys.Reverse();
        return keys;
    }

    /// <summary>How many pending deletes there are and how many may be deleted at <paramref name="nowNs"/> (tests, status).</summary>
    internal (int Total, int Eligible) PendingCounts(long nowNs)
    {
        _lock.EnterReadLock();
        try
        {
            var eligible = 0;
            foreach (var p in _s.Pending.Values)
            {
                if (Deletable(p, nowNs))
                {
                    eligible++;
                }
            }
            return (_s.Pending.Count, eligible);
        }
        finally
        {
            _lock.ExitReadLock();
        }
    }
}

/// <summary>Limits of the deletion and compaction calls.</summary>
internal static class GcLimits
{
    public const int ConfirmDeletesMax = 10_000;
    public const long CompactDeleteDelayNsMax = 30L * 24 * 3600 * 1_000_000_000;
    public const int ListPendingDefault = 1000;
    public const int ListPendingMax = 10_000;
    public const int ListSlicesDefault = 1000;
    public const int ListSlicesMax = 10_000;

    /// <summary>Slices one ListSlices reply carries at most (about 2.5 MB), unless a single chunk has more.</summary>
    public const int ListSlicesSlicesMax = 100_000;

    /// <summary>Replaces [lo, hi) in <paramref name="ranges"/> by data (<paramref name="data"/>) or by nothing (a hole).</summary>
    private static void Cover(List<(uint Lo, uint Hi)> ranges, uint lo, uint hi, bool data)
    {
        for (var i = ranges.Count - 1; i >= 0; i--)
        {
            var (a, b) = ranges[i];
            if (b <= lo || a >= hi)
            {
                continue;
            }
            ranges.RemoveAt(i);
            if (a < lo)
            {
                ranges.Add((a, lo));
            }
            if (b > hi)
            {
                ranges.Add((hi, b));
            }
        }
        if (data && hi > lo)
        {
            ranges.Add((lo, hi));
        }
    }
}
