// A one-node IReplicatedLog: commands are committed by an fsynced WAL entry, applied in order, snapshotted now and then.
using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using MirrorFS.MetaServer.Storage;

namespace MirrorFS.MetaServer.Consensus;

/// <summary>Settings of a <see cref="DurableSingleNodeLog"/>.</summary>
public sealed class DurableLogOptions
{
    /// <summary>Holds <c>wal/</c> (segments) and <c>snap/</c> (snapshots).</summary>
    public required string Directory { get; init; }

    public long SegmentBytesMax { get; init; } = 64L << 20;

    /// <summary>A snapshot is taken after this many entries applied since the last one; 0 = only on demand.</summary>
    public ulong SnapshotEveryEntries { get; init; } = 100_000;

    /// <summary>Snapshots kept on disk; with 2 or more, the WAL keeps entries back to the oldest kept one, so a damaged
    /// newest snapshot can be replaced by an older one plus replay.</summary>
    public int SnapshotsKept { get; init; } = 2;

    /// <summary>Proposals accepted but not yet answered; further proposers wait (back-pressure) for a free slot.</summary>
    public int PendingProposalsMax { get; init; } = 4096;

    /// <summary>Largest command accepted.</summary>
    public int CommandBytesMax { get; init; } = 16 << 20;
}

/// <summary>Figures for benchmarks and status pages.</summary>
public readonly record struct DurableLogStats(
    ulong CommitIndex, ulong AppliedIndex, ulong LastSnapshotIndex, long FsyncCount, double AverageBatchSize, long SnapshotCount);

/// <summary>
/// <see cref="IReplicatedLog"/> for a single node. A proposal is appended to the <see cref="WriteAheadLog"/> (term fixed
/// at <see cref="FixedTerm"/>), committed when the group-commit fsync covering it returns, then applied by the one
/// applier task in index order; the reply goes back to the proposer. On open the newest good snapshot is restored and
/// the WAL replayed after it. Snapshots are taken every <see cref="DurableLogOptions.SnapshotEveryEntries"/> or on
/// <see cref="SnapshotAsync"/>; the applier writes them itself, so applying pauses while a snapshot is written
/// (appends and fsyncs go on, up to <see cref="DurableLogOptions.PendingProposalsMax"/> waiting proposals).
/// </summary>
/// <remarks>If the WAL fails or <see cref="IStateMachine.Apply"/> throws, the log stops: the state machine's state is
/// no longer known to match the log, so every pending and later call fails until the process restarts and replays.</remarks>
public sealed partial class DurableSingleNodeLog : IReplicatedLog
{
    /// <summary>Term of every entry until Raft arrives.</summary>
    public const ulong FixedTerm = 1;

    private readonly IStateMachine _machine;
    private readonly DurableLogOptions _options;
    private readonly ILogger _logger;
    private readonly WriteAheadLog _wal;
    private readonly SnapshotStore _snapshots;
    private readonly Channel<WorkItem> _queue = Channel.CreateUnbounded<WorkItem>(new UnboundedChannelOptions { SingleReader = true });
    private readonly SemaphoreSlim _slots;
    private readonly object _proposeLock = new(); // makes queue order equal index order
    private readonly object _barrierLock = new();
    private readonly PriorityQueue<TaskCompletionSource<ulong>, ulong> _barriers = new();
    private readonly Task _applier;
    private ulong _applied;
    private ulong _lastSnapshotIndex;
    private ulong _nextAutoSnapshotAt;
    private long _snapshotCount;
    private bool _closed;
    private Exception? _failure;

    private DurableSingleNodeLog(IStateMachine machine, DurableLogOptions options, ILogger logger, WriteAheadLog wal, SnapshotStore snapshots, ulong applied, ulong lastSnapshotIndex)
    {
        _machine = machine;
        _options = options;
        _logger = logger;
        _wal = wal;
        _snapshots = snapshots;
        _applied = applied;
        _lastSnapshotIndex = lastSnapshotIndex;
        _nextAutoSnapshotAt = NextAutoSnapshot(lastSnapshotIndex);
        _slots = new SemaphoreSlim(options.PendingProposalsMax, options.PendingProposalsMax);
        _applier = Task.Run(ApplyLoop);
    }

    public ulong CommitIndex => _wal.DurableIndex;

    public ulong AppliedIndex => Volatile.Read(ref _applied);

    public ulong LastSnapshotIndex => Volatile.Read(ref _lastSnapshotIndex);

    public DurableLogStats Stats
    {
        get
        {
            var fsyncs = _wal.FsyncCount;
            return new DurableLogStats(CommitIndex, AppliedIndex, LastSnapshotIndex, fsyncs,
                fsyncs == 0 ? 0 : (double)_wal.RecordsSynced / fsyncs, Interlocked.Read(ref _snapshotCount));
        }
    }

    /// <summary>The WAL underneath (for inspection and tests).</summary>
    public WriteAheadLog Wal => _wal;

    /// <summary>Opens the log in <see cref="DurableLogOptions.Directory"/>: restores the newest good snapshot into
    /// <paramref name="machine"/> (which must be empty), then replays every WAL entry after it (replies discarded).</summary>
    public static DurableSingleNodeLog Open(IStateMachine machine, DurableLogOptions options, ILogger? logger = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(options.PendingProposalsMax, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(options.SnapshotsKept, 1);
        logger ??= NullLogger.Instance;
        if (machine.AppliedIndex != 0)
        {
            throw new ArgumentException($"the state machine must be empty when the log opens (its applied index is {machine.AppliedIndex})", nameof(machine));
        }
        System.IO.Directory.CreateDirectory(options.Directory);
        var snapshots = new SnapshotStore(Path.Combine(options.Directory, "snap"), options.SnapshotsKept, logger);
        var wal = WriteAheadLog.Open(Path.Combine(options.Directory, "wal"), new WalOptions { SegmentBytesMax = options.SegmentBytesMax }, logger);
        try
        {
            ulong snapshotIndex = 0;
            using (var snap = snapshots.OpenNewest())
            {
                if (snap is not null)
                {
                    machine.RestoreSnapshot(snap.Body);
                    if (machine.AppliedIndex != snap.Info.Index)
                    {
                        throw new InvalidDataException(
                            $"snapshot {snap.Info.Path} restored to applied index {machine.AppliedIndex}, but its header says {snap.Info.Index}; the state machine's snapshot format disagrees with the file");
                    }
                    snapshotIndex = snap.Info.Index;
                    logger.LogInformation("Restored snapshot {Path} (index {Index})", snap.Info.Path, snap.Info.Index);
                }
            }
            var applied = snapshotIndex;
            if (wal.LastIndex < applied)
            {
                // Everything the WAL still holds is inside the snapshot; continue numbering after the snapshot.
                logger.LogWarning("WAL {Directory} ends at entry {Last}, before the snapshot at {Snapshot}; restarting the WAL at {Next}",
                    wal.Directory, wal.LastIndex, applied, applied + 1);
                wal.Reset(applied + 1);
            }
            else if (wal.FirstIndex > applied + 1)
            {
                throw new InvalidDataException(
                    $"WAL {wal.Directory} starts at entry {wal.FirstIndex} but the newest good snapshot ends at {applied}: entries {applied + 1}..{wal.FirstIndex - 1} are lost; restore this node's data directory from a backup");
            }
            if (wal.LastIndex > applied)
            {
                var from = applied + 1;
                foreach (var e in wal.ReadAll(from, wal.LastIndex))
                {
                    machine.Apply(e.Index, e.Payload.Span);
                    applied = e.Index;
                }
                logger.LogInformation("Replayed WAL entries {From}..{To}", from, applied);
            }
            return new DurableSingleNodeLog(machine, options, logger, wal, snapshots, applied, snapshotIndex);
        }
        catch
        {
            wal.Dispose();
            throw;
        }
    }

    /// <summary>Appends, waits for the group-commit fsync, waits for the apply, returns (index, reply). Cancelling
    /// <paramref name="ct"/> after the command was appended only stops the wait: the entry still commits and applies.</summary>
    public async Task<(ulong Index, byte[] Reply)> ProposeAsync(ReadOnlyMemory<byte> command, CancellationToken ct = default)
    {
        if (command.Length > _options.CommandBytesMax)
        {
            throw new ArgumentException($"command is {command.Length} bytes; the limit is {_options.CommandBytesMax} (CommandBytesMax)", nameof(command));
        }
        ThrowIfUnusable();
        await _slots.WaitAsync(ct);
        Proposal p;
        try
        {
            // Copied: the applier reads the command after this method may have returned (on cancellation), and it
            // must apply exactly the bytes the WAL holds.
            var copy = command.ToArray();
            lock (_proposeLock)
            {
                ThrowIfUnusable();
                ulong index;
                try
                {
                    index = _wal.Append(FixedTerm, copy);
                }
                catch (Exception e)
                {
                    // Only an I/O failure gets here (we number the entries ourselves); the WAL is now failed too.
                    Stop(e, _wal.LastIndex + 1);
                    throw;
                }
                p = new Proposal(index, copy);
                _queue.Writer.TryWrite(p);
            }
        }
        catch
        {
            _slots.Release();
            throw;
        }
        return await p.Done.Task.WaitAsync(ct);
    }

    /// <summary>Completes once every entry committed before the call has been applied; returns the applied index.</summary>
    public Task<ulong> ReadBarrierAsync(CancellationToken ct = default)
    {
        ThrowIfUnusable();
        var target = _wal.DurableIndex;
        var applied = AppliedIndex;
        if (applied >= target)
        {
            return Task.FromResult(applied);
        }
        var tcs = new TaskCompletionSource<ulong>(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_barrierLock)
        {
            _barriers.Enqueue(tcs, target);
        }
        // The applier may have passed the target between the check and the enqueue.
        CompleteBarriers();
        return tcs.Task.WaitAsync(ct);
    }

    /// <summary>Writes a snapshot of the state as applied now (after everything queued before this call), then compacts
    /// the WAL. Returns null when there is nothing new since the last snapshot.</summary>
    public Task<SnapshotInfo?> SnapshotAsync(CancellationToken ct = default)
    {
        var request = new SnapshotRequest();
        lock (_proposeLock)
        {
            ThrowIfUnusable();
            _queue.Writer.TryWrite(request);
        }
        return request.Done.Task.WaitAsync(ct);
    }

    /// <summary>Stops accepting work, applies and answers what was already accepted, fsyncs and closes the WAL.</summary>
    public async ValueTask DisposeAsync()
    {
        lock (_proposeLock)
        {
            if (_closed)
            {
                return;
            }
            _closed = true;
            _queue.Writer.TryComplete();
        }
        await _applier;
        _wal.Dispose();
        FailBarriers(new ObjectDisposedException(nameof(DurableSingleNodeLog), "the log was closed"));
    }

    private async Task ApplyLoop()
    {
        var reader = _queue.Reader;
        while (await reader.WaitToReadAsync())
        {
            while (reader.TryRead(out var item))
            {
                if (Volatile.Read(ref _failure) is { } failure)
                {
                    FailItem(item, failure);
                    continue;
                }
                switch (item)
                {
                    case Proposal p:
                        ApplyProposal(p);
                        break;
                    case SnapshotRequest r:
                        try
                        {
                            r.Done.TrySetResult(TakeSnapshot());
                        }
                        catch (Exception e)
                        {
                            _logger.LogError(e, "Snapshot at index {Index} failed; the WAL is intact, so nothing is lost", AppliedIndex);
                            r.Done.TrySetException(e);
                        }
                        break;
                }
            }
        }
    }

    private void ApplyProposal(Proposal p)
    {
        byte[] reply;
        try
        {
            // Group commit on the applier's own thread: one fsync covers every entry appended so far (the ones
            // queued behind this proposal included), and an entry an earlier round covered needs none. Syncing here
            // rather than through the WAL's background round saves two thread hops per commit.
            if (p.Index > _wal.DurableIndex)
            {
                _wal.Sync();
            }

            reply = _machine.Apply(p.Index, p.Command);
        }
        catch (Exception e)
        {
            Stop(e, p.Index);
            FailItem(p, _failure!);
            return;
        }
        Volatile.Write(ref _applied, p.Index);
        p.Done.TrySetResult((p.Index, reply));
        _slots.Release();
        CompleteBarriers();
        if (_options.SnapshotEveryEntries > 0 && p.Index >= _nextAutoSnapshotAt)
        {
            try
            {
                TakeSnapshot();
            }
            catch (Exception e)
            {
                _logger.LogError(e, "Automatic snapshot at index {Index} failed; retrying after {Every} more entries (the WAL is intact)", p.Index, _options.SnapshotEveryEntries);
            }
            _nextAutoSnapshotAt = p.Index + _options.SnapshotEveryEntries;
        }
    }

    // Runs on the applier, so the state machine is not applying while it writes its snapshot.
    private SnapshotInfo? TakeSnapshot()
    {
        var index = AppliedIndex;
        if (index == 0 || index == _lastSnapshotIndex)
        {
            return null;
        }
        var term = _wal.TermAt(index) ?? FixedTerm;
        var info = _snapshots.Write(index, term, _machine.WriteSnapshot);
        Volatile.Write(ref _lastSnapshotIndex, index);
        Interlocked.Increment(ref _snapshotCount);
        _nextAutoSnapshotAt = NextAutoSnapshot(index);
        // Compact only up to the oldest snapshot kept, so if the newest turns out damaged on the next open, the older
        // one plus the WAL after it still rebuilds the state. With a single snapshot kept there is no fallback.
        var kept = _snapshots.List();
        var compactTo = _options.SnapshotsKept == 1 ? index : kept.Count >= 2 ? kept[^1].Index : 0;
        var deleted = compactTo > 0 ? _wal.CompactPrefix(compactTo) : 0;
        _logger.LogInformation("Snapshot {Path} written (index {Index}, {Bytes} bytes); compacted {Segments} WAL segment(s) up to {CompactTo}",
            info.Path, index, info.BodyBytes, deleted, compactTo);
        return info;
    }

    private ulong NextAutoSnapshot(ulong lastSnapshot) =>
        _options.SnapshotEveryEntries == 0 ? ulong.MaxValue : lastSnapshot + _options.SnapshotEveryEntries;

    private void Stop(Exception e, ulong index)
    {
        var failure = new InvalidOperationException(
            $"the replicated log stopped at entry {index} ({e.Message}); restart the server to replay from disk", e);
        if (Interlocked.CompareExchange(ref _failure, failure, null) is null)
        {
            _logger.LogCritical(e, "Replicated log stopped at entry {Index}: the state machine may no longer match the log; restart to replay", index);
        }
        FailBarriers(_failure!);
    }

    private void FailItem(WorkItem item, Exception failure)
    {
        switch (item)
        {
            case Proposal p:
                p.Done.TrySetException(failure);
                _slots.Release();
                break;
            case SnapshotRequest r:
                r.Done.TrySetException(failure);
                break;
        }
    }

    private void CompleteBarriers()
    {
        var done = new List<TaskCompletionSource<ulong>>();
        var applied = AppliedIndex;
        lock (_barrierLock)
        {
            while (_barriers.TryPeek(out var tcs, out var target) && target <= applied)
            {
                _barriers.Dequeue();
                done.Add(tcs);
            }
        }
        foreach (var tcs in done)
        {
            tcs.TrySetResult(applied);
        }
    }

    private void FailBarriers(Exception e)
    {
        var all = new List<TaskCompletionSource<ulong>>();
        lock (_barrierLock)
        {
            while (_barriers.TryDequeue(out var tcs, out _))
            {
                all.Add(tcs);
            }
        }
        foreach (var tcs in all)
        {
            tcs.TrySetException(e);
        }
    }

    private void ThrowIfUnusable()
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _closed), this);
        if (Volatile.Read(ref _failure) is { } failure)
        {
            throw new InvalidOperationException(failure.Message, failure.InnerException);
        }
    }

    private abstract class WorkItem;

    private sealed class Proposal(ulong index, byte[] command) : WorkItem
    {
        public ulong Index { get; } = index;
        public byte[] Command { get; } = command;
        public TaskCompletionSource<(ulong, byte[])> Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    private sealed class SnapshotRequest : WorkItem
    {
        public TaskCompletionSource<SnapshotInfo?> Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }
}
