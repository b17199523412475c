// The write-ahead log: checksummed records in segment files, group-committed fsync, torn-tail recovery on open.
using System.Buffers;
using System.Buffers.Binary;
using System.Globalization;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Win32.SafeHandles;

namespace MirrorFS.MetaServer.Storage;

/// <summary>Tuning of a <see cref="WriteAheadLog"/>.</summary>
public sealed class WalOptions
{
    /// <summary>A segment is rolled once appending would take it past this size (a single larger record still gets
    /// a segment of its own).</summary>
    public long SegmentBytesMax { get; init; } = 64L << 20;

    /// <summary>Upper bound on the bytes one <see cref="WriteAheadLog.Read"/> call returns (at least one entry is
    /// always returned).</summary>
    public long ReadBytesMax { get; init; } = 4L << 20;
}

/// <summary>
/// An append-only log of (index, term, payload) entries in segment files <c>{firstIndex:D20}.seg</c>, each starting
/// with a versioned header; records carry a CRC-32C (see <see cref="WalFormat"/>). Writers append (the OS buffers the
/// bytes), then wait for durability: one background fsync covers every record written before it started, so many
/// concurrent appenders share each fsync (group commit), and nobody is told "durable" before that fsync returned.
/// On open every record is verified, and the log is cut at the first torn or damaged record.
/// Memory holds only an index (offset and term per entry), never payloads.
/// </summary>
/// <remarks>An I/O failure while appending or syncing puts the log in a failed state: every waiter and every later
/// call gets an <see cref="IOException"/>. After a failed fsync the kernel may have dropped the dirty pages, so retrying
/// cannot prove anything durable; only reopening (which re-reads what is really on disk) is safe.</remarks>
public sealed class WriteAheadLog : IDisposable
{
    public const string SegmentExtension = ".seg";
    private const string LockFileName = "LOCK";
    private const int ScanChunkBytes = 64 << 10;

    private readonly object _lock = new();
    private readonly SemaphoreSlim _syncGate = new(1, 1); // held while fsyncing; closing a segment waits for it
    private readonly ILogger _logger;
    private readonly WalOptions _options;
    private readonly FileStream _lockFile;
    private readonly List<Segment> _segments;
    private readonly HashSet<Segment> _dirty = [];
    private readonly PriorityQueue<Waiter, ulong> _waiters = new();
    private ulong _lastIndex;
    private ulong _durableIndex;
    private ulong _cutFloor = ulong.MaxValue; // lowest "last index" left by a truncation/reset since the sync round began
    private bool _syncLoopRunning;
    private Exception? _failure;
    private bool _disposed;
    private long _fsyncCount;
    private long _recordsSynced;

    private WriteAheadLog(string directory, WalOptions options, ILogger logger, FileStream lockFile, List<Segment> segments)
    {
        Directory = directory;
        _options = options;
        _logger = logger;
        _lockFile = lockFile;
        _segments = segments;
        _lastIndex = segments[^1].LastIndex;
        _durableIndex = _lastIndex;
    }

    public string Directory { get; }

    /// <summary>Index of the oldest entry still in the log (LastIndex + 1 when the log is empty).</summary>
    public ulong FirstIndex
    {
        get
        {
            lock (_lock)
            {
                return _segments[0].FirstIndex;
            }
        }
    }

    /// <summary>Index of the newest entry written (durable or not); FirstIndex - 1 when the log is empty.</summary>
    public ulong LastIndex
    {
        get
        {
            lock (_lock)
            {
                return _lastIndex;
            }
        }
    }

    /// <summary>Every entry up to this index has been fsynced.</summary>
    public ulong DurableIndex
    {
        get
        {
            lock (_lock)
            {
                return _durableIndex;
            }
        }
    }

    /// <summary>Group-commit fsync rounds so far (each may cover many records).</summary>
    public long FsyncCount => Interlocked.Read(ref _fsyncCount);

    /// <summary>Records made durable by group-commit rounds; divided by <see cref="FsyncCount"/> it is the batch size.</summary>
    public long RecordsSynced => Interlocked.Read(ref _recordsSynced);

    /// <summary>Called before each group-commit fsync, with the segment path: tests block or fail it here.</summary>
    internal Action<string>? SyncHookForTests { get; set; }

    public int SegmentCount
    {
        get
        {
            lock (_lock)
            {
                return _segments.Count;
            }
        }
    }

    /// <summary>Opens (or creates) the log in <paramref name="directory"/>, verifying every record and cutting a
    /// torn or corrupt tail (logged as a warning). Whatever survives is fsynced before this returns, so nothing read
    /// from the log afterwards can vanish in a later power loss.</summary>
    public static WriteAheadLog Open(string directory, WalOptions? options = null, ILogger? logger = null)
    {
        options ??= new WalOptions();
        ArgumentOutOfRangeException.ThrowIfLessThan(options.SegmentBytesMax, WalFormat.SegmentHeaderBytes + WalFormat.RecordHeaderBytes);
        logger ??= NullLogger.Instance;
        System.IO.Directory.CreateDirectory(directory);
        FileStream lockFile;
        try
        {
            // FileShare.None takes an advisory lock on Unix: a second process opening the same log fails here.
            lockFile = new FileStream(Path.Combine(directory, LockFileName), FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
        }
        catch (IOException e)
        {
            throw new IOException($"WAL directory {directory} is in use by another process ({e.Message}); stop it first", e);
        }
        try
        {
            var segments = Recover(directory, logger);
            foreach (var s in segments)
            {
                RandomAccess.FlushToDisk(s.Handle);
            }
            DurableFiles.FsyncDirectory(directory);
            return new WriteAheadLog(directory, options, logger, lockFile, segments);
        }
        catch
        {
            lockFile.Dispose();
            throw;
        }
    }

    /// <summary>The term of the entry at <paramref name="index"/>, or null when the log does not hold it.</summary>
    public ulong? TermAt(ulong index)
    {
        lock (_lock)
        {
            var seg = FindSegment(index);
            return seg is null ? null : seg.Terms[(int)(index - seg.FirstIndex)];
        }
    }

    /// <summary>Appends one entry at LastIndex + 1 and returns its index. Not durable yet: see <see cref="WaitDurableAsync"/>.</summary>
    public ulong Append(ulong term, ReadOnlyMemory<byte> payload)
    {
        lock (_lock)
        {
            var index = _lastIndex + 1;
            AppendLocked([new LogEntry(index, term, payload)]);
            return index;
        }
    }

    /// <summary>Appends entries with the indices they carry; the first must be LastIndex + 1 and the rest contiguous
    /// (a Raft follower truncates conflicting entries first, see <see cref="TruncateSuffix"/>). Not durable yet.</summary>
    public void Append(IReadOnlyList<LogEntry> entries)
    {
        lock (_lock)
        {
            AppendLocked(entries);
        }
    }

    /// <summary>Appends one entry and returns its index once it is durable.</summary>
    public async Task<ulong> AppendAsync(ulong term, ReadOnlyMemory<byte> payload, CancellationToken ct = default)
    {
        var index = Append(term, payload);
        await WaitDurableAsync(index, ct);
        return index;
    }

    /// <summary>Completes once every entry up to <paramref name="index"/> has been fsynced; starts a group-commit
    /// round if none is running. Faults if the log fails or the entry is truncated away before that.</summary>
    public Task WaitDurableAsync(ulong index, CancellationToken ct = default)
    {
        Waiter waiter;
        lock (_lock)
        {
            ThrowIfUnusable();
            if (index > _lastIndex)
            {
                throw new ArgumentOutOfRangeException(nameof(index), $"cannot wait for WAL entry {index}: the last entry written is {_lastIndex}");
            }
            if (index <= _durableIndex)
            {
                return Task.CompletedTask;
            }
            waiter = new Waiter(index);
            _waiters.Enqueue(waiter, index);
            if (!_syncLoopRunning)
            {
                _syncLoopRunning = true;
                _ = Task.Run(SyncLoop);
            }
        }
        return ct.CanBeCanceled ? waiter.Done.Task.WaitAsync(ct) : waiter.Done.Task;
    }

    /// <summary>Makes everything appended so far durable on the calling thread, then releases the waiters it covers.
    /// For a single appender that batches by itself (the Raft loop): no thread hop per round. Throws if the log fails.</summary>
    public void Sync()
    {
        ulong target;
        Segment[] toSync;
        _syncGate.Wait();
        try
        {
            lock (_lock)
            {
                ThrowIfUnusable();
                target = _lastIndex;
                if (target <= _durableIndex && _dirty.Count == 0)
                {
                    return;
                }
                toSync = [.. _dirty];
                _dirty.Clear();
                _cutFloor = ulong.MaxValue; // truncations take the gate, so none can cut below target meanwhile
            }
            try
            {
                foreach (var seg in toSync)
                {
                    if (!seg.IsClosed)
                    {
                        SyncHookForTests?.Invoke(seg.Path);
                        RandomAccess.FlushToDisk(seg.Handle);
                    }
                }
            }
            catch (Exception e)
            {
                lock (_lock)
                {
                    Fail(e);
                }
                throw;
            }
        }
        finally
        {
            _syncGate.Release();
        }
        var done = new List<Waiter>();
        lock (_lock)
        {
            if (target > _durableIndex)
            {
                Interlocked.Add(ref _recordsSynced, (long)(target - _durableIndex));
                _durableIndex = target;
            }
            if (toSync.Length > 0)
            {
                Interlocked.Increment(ref _fsyncCount);
            }
            while (_waiters.TryPeek(out var w, out var idx) && idx <= _durableIndex)
            {
                _waiters.Dequeue();
                done.Add(w);
            }
        }
        foreach (var w in done)
        {
            w.Done.TrySetResult();
        }
    }

    /// <summary>Completes once everything appended before the call is durable.</summary>
    public Task FlushAsync(CancellationToken ct = default)
    {
        ulong last;
        lock (_lock)
        {
            last = _lastIndex;
        }
        return last == 0 ? Task.CompletedTask : WaitDurableAsync(last, ct);
    }

    /// <summary>Reads entries [<paramref name="from"/>, <paramref name="to"/>], stopping early (but after at least one)
    /// before <see cref="WalOptions.ReadBytesMax"/> of records would be exceeded. Each record's checksum is verified
    /// again. Reads hold the append lock (page-cache reads are short; truncation cannot close a file mid-read).</summary>
    public IReadOnlyList<LogEntry> Read(ulong from, ulong to)
    {
        var result = new List<LogEntry>();
        lock (_lock)
        {
            ThrowIfUnusable();
            if (from < _segments[0].FirstIndex || to > _lastIndex || from > to)
            {
                throw new ArgumentOutOfRangeException(nameof(from),
                    $"cannot read WAL entries {from}..{to}: the log holds {_segments[0].FirstIndex}..{_lastIndex}");
            }
            long bytes = 0;
            var i = from;
            while (i <= to && (result.Count == 0 || bytes < _options.ReadBytesMax))
            {
                var seg = FindSegment(i)!;
                var k = (int)(i - seg.FirstIndex);
                var lastInSeg = Math.Min(to, seg.LastIndex);
                var runStart = seg.Offsets[k];
                if (result.Count > 0 && bytes + (seg.EndOf(i) - runStart) > _options.ReadBytesMax)
                {
                    break;
                }
                // Extend the run while within the byte budget; one pread then serves the whole run.
                var j = i;
                while (j < lastInSeg && (seg.EndOf(j + 1) - runStart) + bytes <= _options.ReadBytesMax)
                {
                    j++;
                }
                var runEnd = seg.EndOf(j);
                var buffer = new byte[runEnd - runStart];
                ReadExactly(seg, buffer, runStart);
                var pos = 0;
                for (var idx = i; idx <= j; idx++)
                {
                    var len = (int)BinaryPrimitives.ReadUInt32LittleEndian(buffer.AsSpan(pos));
                    var recordEnd = pos + WalFormat.RecordHeaderBytes + len;
                    var rec = buffer.AsSpan(pos, recordEnd - pos);
                    if (BinaryPrimitives.ReadUInt32LittleEndian(rec[4..]) != Crc32C.Compute(rec[8..])
                        || BinaryPrimitives.ReadUInt64LittleEndian(rec[8..]) != idx)
                    {
                        throw new InvalidDataException(
                            $"WAL entry {idx} in {seg.Path} at offset {runStart + pos} no longer matches its checksum: the disk changed it after the log was opened; restart to cut the log there, or restore this node from a peer");
                    }
                    result.Add(new LogEntry(idx, BinaryPrimitives.ReadUInt64LittleEndian(rec[16..]),
                        buffer.AsMemory(pos + WalFormat.RecordHeaderBytes, len)));
                    pos = recordEnd;
                }
                bytes += buffer.Length;
                i = j + 1;
            }
        }
        return result;
    }

    /// <summary>Every entry in [<paramref name="from"/>, <paramref name="to"/>], read in bounded batches (for replay).</summary>
    public IEnumerable<LogEntry> ReadAll(ulong from, ulong to)
    {
        var next = from;
        while (next <= to)
        {
            var batch = Read(next, to);
            foreach (var e in batch)
            {
                yield return e;
            }
            next = batch[^1].Index + 1;
        }
    }

    /// <summary>Removes every entry at or after <paramref name="fromIndex"/> (a Raft follower's conflicting suffix);
    /// the cut is durable when this returns. Waiters on removed entries fault.</summary>
    public void TruncateSuffix(ulong fromIndex)
    {
        _syncGate.Wait();
        try
        {
            List<Waiter> failed;
            lock (_lock)
            {
                ThrowIfUnusable();
                if (fromIndex > _lastIndex)
                {
                    return;
                }
                if (fromIndex < _segments[0].FirstIndex)
                {
                    throw new ArgumentOutOfRangeException(nameof(fromIndex),
                        $"cannot truncate the WAL from entry {fromIndex}: entries before {_segments[0].FirstIndex} were compacted into a snapshot");
                }
                failed = TakeWaitersFrom(fromIndex);
                var removed = false;
                // Newest first, so a crash part-way leaves a contiguous log.
                while (_segments.Count > 1 && _segments[^1].FirstIndex >= fromIndex)
                {
                    DeleteSegment(_segments[^1]);
                    _segments.RemoveAt(_segments.Count - 1);
                    removed = true;
                }
                var seg = _segments[^1];
                var keep = (int)(fromIndex - seg.FirstIndex);
                var newLength = keep < seg.Offsets.Count ? seg.Offsets[keep] : seg.Length;
                try
                {
                    RandomAccess.SetLength(seg.Handle, newLength);
                    RandomAccess.FlushToDisk(seg.Handle);
                    if (removed)
                    {
                        DurableFiles.FsyncDirectory(Directory);
                    }
                }
                catch (Exception e)
                {
                    Fail(e);
                    throw;
                }
                seg.Offsets.RemoveRange(keep, seg.Offsets.Count - keep);
                seg.Terms.RemoveRange(keep, seg.Terms.Count - keep);
                seg.Length = newLength;
                _lastIndex = fromIndex - 1;
                _durableIndex = Math.Min(_durableIndex, _lastIndex);
                _cutFloor = Math.Min(_cutFloor, _lastIndex);
            }
            var error = new InvalidOperationException($"WAL entries from {fromIndex} were truncated before they became durable");
            foreach (var w in failed)
            {
                w.Done.TrySetException(error);
            }
        }
        finally
        {
            _syncGate.Release();
        }
    }

    /// <summary>Deletes whole segments whose entries are all at or below <paramref name="upToIndex"/> (covered by a
    /// snapshot). The newest segment is always kept, so the log's end is never lost.</summary>
    public int CompactPrefix(ulong upToIndex)
    {
        _syncGate.Wait();
        try
        {
            lock (_lock)
            {
                ThrowIfUnusable();
                var deleted = 0;
                // Oldest first, so a crash part-way leaves a contiguous log.
                while (_segments.Count > 1 && _segments[0].LastIndex <= upToIndex)
                {
                    DeleteSegment(_segments[0]);
                    _segments.RemoveAt(0);
                    deleted++;
                }
                return deleted;
            }
        }
        finally
        {
            _syncGate.Release();
        }
    }

    /// <summary>Drops the whole log and starts it empty at <paramref name="nextIndex"/> (after installing a snapshot
    /// that ends at nextIndex - 1). Durable when this returns.</summary>
    public void Reset(ulong nextIndex)
    {
        ArgumentOutOfRangeException.ThrowIfZero(nextIndex);
        _syncGate.Wait();
        try
        {
            List<Waiter> failed;
            lock (_lock)
            {
                ThrowIfUnusable();
                failed = TakeWaitersFrom(0);
                try
                {
                    // Newest first: a crash part-way leaves an older prefix, which the snapshot covers.
                    for (var i = _segments.Count - 1; i >= 0; i--)
                    {
                        DeleteSegment(_segments[i]);
                    }
                    _segments.Clear();
                    _segments.Add(CreateSegment(Directory, nextIndex));
                }
                catch (Exception e)
                {
                    Fail(e);
                    throw;
                }
                _lastIndex = nextIndex - 1;
                _durableIndex = _lastIndex;
                _cutFloor = Math.Min(_cutFloor, _lastIndex);
            }
            var error = new InvalidOperationException($"the WAL was reset to start at {nextIndex} before these entries became durable");
            foreach (var w in failed)
            {
                w.Done.TrySetException(error);
            }
        }
        finally
        {
            _syncGate.Release();
        }
    }

    /// <summary>Fsyncs what was appended and closes the files. Waiters still pending afterwards fault.</summary>
    public void Dispose()
    {
        _syncGate.Wait();
        try
        {
            List<Waiter> pending;
            lock (_lock)
            {
                if (_disposed)
                {
                    return;
                }
                if (_failure is null)
                {
                    try
                    {
                        // All segments, not just _dirty: a sync round may have taken some out of _dirty and not
                        // yet synced them. Syncing a clean file costs little.
                        foreach (var s in _segments)
                        {
                            RandomAccess.FlushToDisk(s.Handle);
                        }
                        _dirty.Clear();
                        _durableIndex = _lastIndex;
                    }
                    catch (Exception e)
                    {
                        _failure = e;
                        _logger.LogError(e, "WAL {Directory}: final fsync failed; entries after {Durable} may be lost", Directory, _durableIndex);
                    }
                }
                _disposed = true;
                pending = TakeWaitersFrom(0);
                foreach (var s in _segments)
                {
                    s.Close();
                }
                _lockFile.Dispose();
            }
            foreach (var w in pending)
            {
                if (w.Index <= _durableIndex)
                {
                    w.Done.TrySetResult();
                }
                else
                {
                    w.Done.TrySetException(new ObjectDisposedException(nameof(WriteAheadLog), "the WAL was closed before this entry became durable"));
                }
            }
        }
        finally
        {
            _syncGate.Release();
        }
    }

    private void AppendLocked(IReadOnlyList<LogEntry> entries)
    {
        ThrowIfUnusable();
        if (entries.Count == 0)
        {
            return;
        }
        // Validate the whole batch first, so a bad entry never leaves half a batch written.
        for (var n = 0; n < entries.Count; n++)
        {
            var e = entries[n];
            if (e.Index != _lastIndex + 1 + (ulong)n)
            {
                throw new ArgumentException(
                    $"WAL entry index {e.Index} does not follow {_lastIndex + (ulong)n}: appends must be contiguous (truncate the suffix first)", nameof(entries));
            }
            if (e.Payload.Length > WalFormat.PayloadBytesMax)
            {
                throw new ArgumentException(
                    $"WAL entry {e.Index} is {e.Payload.Length} bytes; the limit is {WalFormat.PayloadBytesMax}: split the command", nameof(entries));
            }
        }
        var headers = ArrayPool<byte>.Shared.Rent(entries.Count * WalFormat.RecordHeaderBytes);
        var buffers = new List<ReadOnlyMemory<byte>>(entries.Count * 2);
        try
        {
            var seg = _segments[^1];
            var writeOffset = seg.Length;
            var pendingBytes = 0L;
            var pendingFirst = 0;
            for (var n = 0; n < entries.Count; n++)
            {
                var e = entries[n];
                var recordBytes = WalFormat.RecordHeaderBytes + e.Payload.Length;
                var segmentHasRecords = seg.Offsets.Count > 0 || pendingBytes > 0;
                if (segmentHasRecords && writeOffset + pendingBytes + recordBytes > _options.SegmentBytesMax)
                {
                    WriteRun(seg, buffers, writeOffset, entries, pendingFirst, n);
                    buffers.Clear();
                    pendingBytes = 0;
                    pendingFirst = n;
                    seg = Roll(e.Index);
                    writeOffset = seg.Length;
                }
                var header = headers.AsMemory(n * WalFormat.RecordHeaderBytes, WalFormat.RecordHeaderBytes);
                WalFormat.WriteRecordHeader(header.Span, e.Index, e.Term, e.Payload.Span);
                buffers.Add(header);
                buffers.Add(e.Payload);
                pendingBytes += recordBytes;
            }
            WriteRun(seg, buffers, writeOffset, entries, pendingFirst, entries.Count);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(headers);
        }
    }

    // Writes the encoded records entries[first..end) at the segment's end, then indexes them.
    private void WriteRun(Segment seg, List<ReadOnlyMemory<byte>> buffers, long offset, IReadOnlyList<LogEntry> entries, int first, int end)
    {
        if (first == end)
        {
            return;
        }
        try
        {
            RandomAccess.Write(seg.Handle, buffers, offset);
        }
        catch (Exception e)
        {
            // A partial write leaves bytes we cannot vouch for; the next open cuts them off.
            Fail(e);
            throw;
        }
        var pos = offset;
        for (var n = first; n < end; n++)
        {
            seg.Offsets.Add(pos);
            seg.Terms.Add(entries[n].Term);
            pos += WalFormat.RecordHeaderBytes + entries[n].Payload.Length;
        }
        seg.Length = pos;
        _lastIndex = entries[end - 1].Index;
        _dirty.Add(seg);
    }

    // Starts a new segment; its header and directory entry are fsynced now, so records later acknowledged in it
    // cannot lose their file. The old segment stays dirty until the next group-commit round syncs it.
    private Segment Roll(ulong firstIndex)
    {
        try
        {
            var seg = CreateSegment(Directory, firstIndex);
            _segments.Add(seg);
            return seg;
        }
        catch (Exception e)
        {
            Fail(e);
            throw;
        }
    }

    private async Task SyncLoop()
    {
        while (true)
        {
            // Let appenders that are already runnable (e.g. the ones the previous round just woke) add their records
            // first: one yield costs microseconds and makes each fsync cover far more records.
            await Task.Yield();
            ulong target;
            Segment[] toSync;
            lock (_lock)
            {
                if (_failure is not null || _disposed || _waiters.Count == 0)
                {
                    _syncLoopRunning = false;
                    return;
                }
                target = _lastIndex;
                toSync = [.. _dirty];
                _dirty.Clear();
                _cutFloor = ulong.MaxValue;
            }
            await _syncGate.WaitAsync();
            try
            {
                if (Volatile.Read(ref _disposed))
                {
                    // Dispose synced every segment itself and settled the waiters.
                    lock (_lock)
                    {
                        _syncLoopRunning = false;
                    }
                    return;
                }
                foreach (var s in toSync)
                {
                    // A segment closed meanwhile was deleted (compaction, truncation) or synced by whoever closed it.
                    if (!s.IsClosed)
                    {
                        SyncHookForTests?.Invoke(s.Path);
                        RandomAccess.FlushToDisk(s.Handle);
                    }
                }
            }
            catch (Exception e)
            {
                lock (_lock)
                {
                    Fail(e);
                    _syncLoopRunning = false;
                }
                return;
            }
            finally
            {
                _syncGate.Release();
            }
            var done = new List<Waiter>();
            lock (_lock)
            {
                // A truncation meanwhile may have replaced entries above its cut with new, unsynced ones at the same
                // indices: this round vouches only for entries below the lowest cut.
                target = Math.Min(target, _cutFloor);
                if (target > _durableIndex)
                {
                    Interlocked.Add(ref _recordsSynced, (long)(target - _durableIndex));
                    _durableIndex = target;
                }
                if (toSync.Length > 0)
                {
                    Interlocked.Increment(ref _fsyncCount);
                }
                while (_waiters.TryPeek(out var w, out var idx) && idx <= _durableIndex)
                {
                    _waiters.Dequeue();
                    done.Add(w);
                }
            }
            foreach (var w in done)
            {
                w.Done.TrySetResult();
            }
        }
    }

    private List<Waiter> TakeWaitersFrom(ulong fromIndex)
    {
        var taken = new List<Waiter>();
        var kept = new List<(Waiter, ulong)>();
        while (_waiters.TryDequeue(out var w, out var idx))
        {
            if (idx >= fromIndex)
            {
                taken.Add(w);
            }
            else
            {
                kept.Add((w, idx));
            }
        }
        _waiters.EnqueueRange(kept);
        return taken;
    }

    // Caller holds _lock.
    private void Fail(Exception e)
    {
        if (_failure is not null)
        {
            return;
        }
        _failure = e;
        _logger.LogError(e, "WAL {Directory} failed; entries after {Durable} are not known durable; restart the server to recover from what is on disk", Directory, _durableIndex);
        var error = new IOException($"WAL {Directory} failed ({e.Message}); restart the server to recover from what is on disk", e);
        foreach (var w in TakeWaitersFrom(0))
        {
            w.Done.TrySetException(error);
        }
    }

    private void ThrowIfUnusable()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_failure is not null)
        {
            throw new IOException($"WAL {Directory} failed earlier ({_failure.Message}); restart the server to recover from what is on disk", _failure);
        }
    }

    private Segment? FindSegment(ulong index)
    {
        if (index == 0 || index > _lastIndex)
        {
            return null;
        }
        // Few segments (64 MiB each, compacted behind snapshots): a reverse scan finds recent entries first.
        for (var i = _segments.Count - 1; i >= 0; i--)
        {
            var s = _segments[i];
            if (index >= s.FirstIndex)
            {
                return index <= s.LastIndex ? s : null;
            }
        }
        return null;
    }

    private void DeleteSegment(Segment seg)
    {
        seg.Close();
        _dirty.Remove(seg);
        File.Delete(seg.Path);
    }

    private static void ReadExactly(Segment seg, Span<byte> buffer, long offset)
    {
        while (!buffer.IsEmpty)
        {
            var n = RandomAccess.Read(seg.Handle, buffer, offset);
            if (n <= 0)
            {
                throw new InvalidDataException($"WAL segment {seg.Path} is shorter than its index says (at offset {offset}); was it modified by something else? Restart to re-scan it");
            }
            buffer = buffer[n..];
            offset += n;
        }
    }

    internal static string SegmentFileName(ulong firstIndex) =>
        firstIndex.ToString("D20", CultureInfo.InvariantCulture) + SegmentExtension;

    private static Segment CreateSegment(string directory, ulong firstIndex)
    {
        var path = Path.Combine(directory, SegmentFileName(firstIndex));
        var handle = File.OpenHandle(path, FileMode.Create, FileAccess.ReadWrite, FileShare.Read);
        try
        {
            Span<byte> header = stackalloc byte[WalFormat.SegmentHeaderBytes];
            WalFormat.WriteSegmentHeader(header, firstIndex);
            RandomAccess.Write(handle, header, 0);
            RandomAccess.FlushToDisk(handle);
            DurableFiles.FsyncDirectory(directory);
        }
        catch
        {
            handle.Dispose();
            throw;
        }
        return new Segment(path, firstIndex, handle) { Length = WalFormat.SegmentHeaderBytes };
    }

    // ---- recovery ----

    private static List<Segment> Recover(string directory, ILogger logger)
    {
        var files = new List<(ulong First, string Path)>();
        foreach (var path in System.IO.Directory.EnumerateFiles(directory, "*" + SegmentExtension))
        {
            var stem = Path.GetFileNameWithoutExtension(path);
            if (stem.Length == 20 && ulong.TryParse(stem, NumberStyles.None, CultureInfo.InvariantCulture, out var first) && first > 0)
            {
                files.Add((first, path));
            }
            else
            {
                logger.LogWarning("WAL {Directory}: ignoring {File}: not a segment name", directory, path);
            }
        }
        files.Sort((a, b) => a.First.CompareTo(b.First));

        var segments = new List<Segment>();
        try
        {
            for (var i = 0; i < files.Count; i++)
            {
                var (first, path) = files[i];
                var expected = segments.Count == 0 ? first : segments[^1].LastIndex + 1;
                var scan = ScanSegment(path, first, expected);
                if (scan.Segment is { } seg)
                {
                    segments.Add(seg);
                }
                if (scan.Problem is null)
                {
                    continue;
                }
                // The first bad record ends the log, even if good-looking records follow: an entry is only
                // meaningful after all earlier ones, and a gap cannot be filled, so later records cannot be trusted.
                var later = files.Skip(i + 1).Select(f => f.Path).ToList();
                for (var k = later.Count - 1; k >= 0; k--)
                {
                    File.Delete(later[k]);
                }
                var lastGood = segments.Count == 0 ? first - 1 : segments[^1].LastIndex;
                if (scan.Segment is { } cut)
                {
                    var dropped = scan.FileBytes - cut.Length;
                    RandomAccess.SetLength(cut.Handle, cut.Length);
                    logger.LogWarning(
                        "WAL {Directory}: cut the log after entry {LastGood}: {File} at offset {Offset}: {Problem}; dropped {Bytes} bytes there and {Later} later segment(s) {LaterFiles}",
                        directory, lastGood, path, cut.Length, scan.Problem, dropped, later.Count, string.Join(", ", later.Select(Path.GetFileName)));
                }
                else
                {
                    File.Delete(path);
                    logger.LogWarning(
                        "WAL {Directory}: cut the log after entry {LastGood}: segment {File} is unusable ({Problem}); deleted it and {Later} later segment(s) {LaterFiles}",
                        directory, lastGood, path, scan.Problem, later.Count, string.Join(", ", later.Select(Path.GetFileName)));
                }
                break;
            }
            if (segments.Count == 0)
            {
                // Keep the numbering the log had, so a gap against the snapshot is detected rather than papered over.
                segments.Add(CreateSegment(directory, files.Count > 0 ? files[0].First : 1));
            }
            return segments;
        }
        catch
        {
            foreach (var s in segments)
            {
                s.Close();
            }
            throw;
        }
    }

    private readonly record struct ScanResult(Segment? Segment, string? Problem, long FileBytes);

    // Verifies one segment; returns the good prefix (a null segment when even the header is bad) and the first problem.
    private static ScanResult ScanSegment(string path, ulong nameFirst, ulong expectedFirst)
    {
        var handle = File.OpenHandle(path, FileMode.Open, FileAccess.ReadWrite, FileShare.Read);
        var ok = false;
        try
        {
            var fileBytes = RandomAccess.GetLength(handle);
            Span<byte> head = stackalloc byte[WalFormat.SegmentHeaderBytes];
            var got = ReadAtMost(handle, head, 0);
            var first = WalFormat.ReadSegmentHeader(head[..got], $"WAL segment {path}", out var problem);
            if (first is null)
            {
                return new ScanResult(null, problem, fileBytes);
            }
            if (first != nameFirst)
            {
                return new ScanResult(null, $"header says first entry {first}, file name says {nameFirst}", fileBytes);
            }
            if (first != expectedFirst)
            {
                return new ScanResult(null, $"starts at entry {first} but the previous segment ends at {expectedFirst - 1}", fileBytes);
            }
            var seg = new Segment(path, nameFirst, handle) { Length = WalFormat.SegmentHeaderBytes };
            ok = true;
            var chunk = ArrayPool<byte>.Shared.Rent(ScanChunkBytes);
            try
            {
                var expected = nameFirst;
                long pos = WalFormat.SegmentHeaderBytes;
                Span<byte> rh = stackalloc byte[WalFormat.RecordHeaderBytes];
                while (pos < fileBytes)
                {
                    if (fileBytes - pos < WalFormat.RecordHeaderBytes)
                    {
                        return new ScanResult(seg, $"torn record header ({fileBytes - pos} of {WalFormat.RecordHeaderBytes} bytes)", fileBytes);
                    }
                    ReadAtMost(handle, rh, pos);
                    var len = BinaryPrimitives.ReadUInt32LittleEndian(rh);
                    if (len > WalFormat.PayloadBytesMax)
                    {
                        return new ScanResult(seg, $"record length {len} exceeds the {WalFormat.PayloadBytesMax}-byte limit (corrupt)", fileBytes);
                    }
                    if (pos + WalFormat.RecordHeaderBytes + len > fileBytes)
                    {
                        return new ScanResult(seg, $"torn record ({fileBytes - pos} of {WalFormat.RecordHeaderBytes + len} bytes present)", fileBytes);
                    }
                    var crc = Crc32C.Compute(rh[8..]);
                    var at = pos + WalFormat.RecordHeaderBytes;
                    var left = (long)len;
                    while (left > 0)
                    {
                        var n = ReadAtMost(handle, chunk.AsSpan(0, (int)Math.Min(left, chunk.Length)), at);
                        crc = Crc32C.Append(crc, chunk.AsSpan(0, n));
                        at += n;
                        left -= n;
                    }
                    if (crc != BinaryPrimitives.ReadUInt32LittleEndian(rh[4..]))
                    {
                        return new ScanResult(seg, "record checksum mismatch", fileBytes);
                    }
                    var index = BinaryPrimitives.ReadUInt64LittleEndian(rh[8..]);
                    if (index != expected)
                    {
                        return new ScanResult(seg, $"record has index {index} where {expected} was expected", fileBytes);
                    }
                    seg.Offsets.Add(pos);
                    seg.Terms.Add(BinaryPrimitives.ReadUInt64LittleEndian(rh[16..]));
                    pos += WalFormat.RecordHeaderBytes + len;
                    seg.Length = pos;
                    expected++;
                }
                return new ScanResult(seg, null, fileBytes);
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(chunk);
            }
        }
        finally
        {
            if (!ok)
            {
                handle.Dispose();
            }
        }
    }

    private static int ReadAtMost(SafeFileHandle handle, Span<byte> buffer, long offset)
    {
        var total = 0;
        while (total < buffer.Length)
        {
            var n = RandomAccess.Read(handle, buffer[total..], offset + total);
            if (n <= 0)
            {
                break;
            }
            total += n;
        }
        return total;
    }

    private sealed class Segment(string path, ulong firstIndex, SafeFileHandle handle)
    {
        public string Path { get; } = path;
        public ulong FirstIndex { get; } = firstIndex;
        public SafeFileHandle Handle { get; } = handle;
        public List<long> Offsets { get; } = [];
        public List<ulong> Terms { get; } = [];
        public long Length { get; set; }
        public bool IsClosed { get; private set; }
        public ulong LastIndex => FirstIndex + (ulong)Offsets.Count - 1;

        // End offset of the record with this index (which must be in this segment).
        public long EndOf(ulong index)
        {
            var k = (int)(index - FirstIndex) + 1;
            return k < Offsets.Count ? Offsets[k] : Length;
        }

        public void Close()
        {
            IsClosed = true;
            Handle.Dispose();
        }
    }

    private sealed class Waiter(ulong index)
    {
        public ulong Index { get; } = index;
        public TaskCompletionSource Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }
}
