// The block replicator: follows the primary's changelog and copies every new block to the mirror bucket.
using System.Threading.Channels;
using Google.Protobuf;
using Microsoft.Extensions.Logging;
using MirrorFS.Core.IO;
using MirrorFS.Core.Layout;
using MirrorFS.Core.Meta;
using MirrorFS.Core.Rpc;
using MirrorFS.Core.Storage;

namespace MirrorFS.Mirror.Replication;

public sealed record ReplicatorOptions
{
    /// <summary>Where the checkpoint and status file live.</summary>
    public required string StateDirectory { get; init; }

    /// <summary>The name this replicator reports to the primary with each changelog pull.</summary>
    public string MirrorId { get; init; } = "replicator";

    /// <summary>Blocks copied at once. As many as a mount uploads at once (its --max-uploads default), so the
    /// replicator is not the narrower pipe: with 8, blocks queued behind a burst and lagged seconds (MirrorBench).
    /// Each holds one block in memory: at most 16 × 16 MiB.</summary>
    public int ConcurrencyMax { get; init; } = DefaultConcurrency;

    public const int DefaultConcurrency = 16;

    /// <summary>Copy bandwidth in bytes per second (one direction); 0 = unlimited.</summary>
    public long BandwidthBytesPerSecond { get; init; }

    public int CheckpointEveryMs { get; init; } = 5_000;

    /// <summary>Blocks read from the changelog but not yet copied, at most; reading waits beyond it.</summary>
    public int PendingBlocksMax { get; init; } = 4_096;

    /// <summary>Entries per changelog batch asked for.</summary>
    public uint BatchEntriesMax { get; init; } = 1_000;

    public RetryPolicy Retry { get; init; } = new();

    /// <summary>Longest pause before reopening a failed changelog stream.</summary>
    public int ReconnectDelayMaxMs { get; init; } = 5_000;

    /// <summary>Reopen the stream after this long so the primary hears the copy progress; 0 = only on failure.</summary>
    public int ReportEveryMs { get; init; } = 30_000;

    /// <summary>Pause between asks while the primary has no volume yet.</summary>
    public int VolumeWaitMs { get; init; } = 1_000;

    /// <summary>The volume the primary must serve (the META-URL's); null accepts any.</summary>
    public string? ExpectedVolume { get; init; }
}

public sealed class Replicator
{
    private readonly IChangelogSource _source;
    private readonly Func<Volume, IObjectStore> _openFrom;
    private readonly IObjectStore _to;
    private readonly ReplicatorOptions _options;
    private readonly ILogger _log;
    private readonly TimeProvider _time;
    private IObjectStore? _from;
    private BlockCopier _copier = null!;
    private readonly Channel<BlockJob> _jobs = Channel.CreateUnbounded<BlockJob>(new UnboundedChannelOptions { SingleWriter = true });
    private readonly Channel<BlockJob> _deletes = Channel.CreateUnbounded<BlockJob>(new UnboundedChannelOptions { SingleReader = true });
    private readonly Lock _checkpointLock = new();
    private CopyTracker _tracker = new(0, 1);
    private Volume? _volume;
    private volatile string _state = "starting";

    // Entries up to this index may have been copied by an earlier run: their blocks are looked up in the mirror bucket
    // before copying. Unknown (max) until the first batch tells the primary's commit index.
    private ulong _headFirstThrough = ulong.MaxValue;

    /// <param name="openFrom">Opens the primary bucket once the volume is known (by default the volume's own storage);
    /// the replicator disposes it when it stops.</param>
    public Replicator(IChangelogSource source, Func<Volume, IObjectStore> openFrom, IObjectStore to, ReplicatorOptions options,
        ILogger log, TimeProvider? time = null)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(options.ConcurrencyMax);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(options.CheckpointEveryMs);
        _source = source;
        _openFrom = openFrom;
        _to = to;
        _options = options;
        _log = log;
        _time = time ?? TimeProvider.System;
        Stats = new ReplicatorStats(_time);
    }

    public ReplicatorStats Stats { get; }

    /// <summary>Called after each block is done (tests and the benchmark watch it); must be quick.</summary>
    public Action<BlockJob, CopyOutcome>? BlockDone { get; init; }

    public ulong CopiedThrough => _tracker.CopiedThrough;

    /// <summary>Runs until <paramref name="ct"/> fires, then saves a last checkpoint. Throws only for a state
    /// directory it cannot use.</summary>
    public async Task RunAsync(CancellationToken ct)
    {
        Directory.CreateDirectory(_options.StateDirectory);
        _state = "waiting-for-volume";
        var volume = await WaitForVolumeAsync(ct).ConfigureAwait(false);
        if (volume is null)
        {
            return;
        }
        if (_options.ExpectedVolume is { } expected && volume.Name != expected)
        {
            throw new InvalidDataException($"primary {_source.Description} serves volume {volume.Name}, not {expected}: check the META-URL");
        }
        _volume = volume;
        BlockLayout.CheckBlockSize((int)volume.BlockSize);
        _from = _openFrom(volume);
        // A burst of one second's worth, and at least one block, so that a block passes whatever the rate.
        var bandwidth = new TokenBucket(_options.BandwidthBytesPerSecond,
            Math.Max(_options.BandwidthBytesPerSecond, volume.BlockSize), _time);
        _copier = new BlockCopier(_from, _to, bandwidth, _options.Retry, Stats, _log);
        var cp = Checkpoint.Load(_options.StateDirectory);
        if (cp is not null && cp.VolumeUuid.Length > 0 && cp.VolumeUuid != volume.Uuid)
        {
            throw new InvalidDataException(
                $"state directory {_options.StateDirectory} belongs to volume uuid {cp.VolumeUuid}, but the primary serves {volume.Name} ({volume.Uuid}): use another --state-dir");
        }
        _tracker = new CopyTracker(cp?.CopiedThrough ?? 0, _options.PendingBlocksMax);
        var restored = cp is null ? [] : _tracker.Restore(cp.CopiedThrough, cp.DispatchedThrough, cp.InFlight);
        _log.LogInformation(
            "replicating volume {Volume} from {From} to {To}, changelog of {Primary} from index {Next} ({Restored} blocks in flight at the last checkpoint)",
            volume.Name, _from.Description, _to.Description, _source.Description, _tracker.DispatchedThrough + 1, restored.Count);
        foreach (var job in restored)
        {
            Enqueue(job);
        }

        using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var workers = Enumerable.Range(0, _options.ConcurrencyMax).Select(_ => Task.Run(() => WorkAsync(stop.Token), CancellationToken.None)).ToArray();
        var checkpoints = Task.Run(() => CheckpointLoopAsync(stop.Token), CancellationToken.None);
        var deleter = Task.Run(() => DeleteLoopAsync(volume, stop.Token), CancellationToken.None);
        _state = "running";
        try
        {
            await FollowAsync(volume, stop.Token).ConfigureAwait(false);
        }
        finally
        {
            await stop.CancelAsync().ConfigureAwait(false);
            await Task.WhenAll([.. workers, checkpoints, deleter]).ConfigureAwait(false);
            _state = "stopped";
            SaveCheckpoint();
            await _from.DisposeAsync().ConfigureAwait(false);
            _log.LogInformation("replicator stopped; checkpoint at copied index {Copied}", _tracker.CopiedThrough);
        }
    }

    private async Task<Volume?> WaitForVolumeAsync(CancellationToken ct)
    {
        var attempt = 0;
        while (!ct.IsCancellationRequested)
        {
            try
            {
                var v = await _source.GetVolumeAsync(ct).ConfigureAwait(false);
                if (v is not null)
                {
                    return v;
                }
                if (attempt++ == 0)
                {
                    _log.LogInformation("primary {Primary} has no volume yet; waiting for format", _source.Description);
                }
            }
            catch (Exception e) when (!ct.IsCancellationRequested && IsMetaFailure(e))
            {
                Stats.NoteError($"primary {_source.Description}: {e.Message}");
                if ((attempt & (attempt - 1)) == 0)
                {
                    _log.LogWarning("cannot read the volume from primary {Primary}: {Message}; retrying", _source.Description, e.Message);
                }
                attempt++;
            }
            try
            {
                await Task.Delay(TimeSpan.FromMilliseconds(_options.VolumeWaitMs), _time, ct).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                break;
            }
        }
        return null;
    }

    private static bool IsMetaFailure(Exception e) =>
        e is RpcException or MetaUnavailableException or HttpRequestException or IOException;

    /// <summary>Reads the changelog, stream after stream, and hands each entry's blocks to the workers.</summary>
    private async Task FollowAsync(Volume volume, CancellationToken ct)
    {
        var failures = 0;
        var next = _tracker.DispatchedThrough + 1;
        while (!ct.IsCancellationRequested)
        {
            using var streamStop = CancellationTokenSource.CreateLinkedTokenSource(ct);
            if (_options.ReportEveryMs > 0)
            {
                streamStop.CancelAfter(TimeSpan.FromMilliseconds(_options.ReportEveryMs));
            }
            try
            {
                var request = new WatchChangelogRequest
                {
                    FromIndex = next,
                    MirrorId = _options.MirrorId,
                    MirrorAppliedIndex = _tracker.CopiedThrough,
                    BatchEntriesMax = _options.BatchEntriesMax,
                };
                await foreach (var batch in _source.WatchAsync(request, streamStop.Token).ConfigureAwait(false))
                {
                    failures = 0;
                    Stats.NoteCommitIndex(batch.CommitIndex);
                    if (_headFirstThrough == ulong.MaxValue)
                    {
                        _headFirstThrough = Math.Max(batch.CommitIndex, _tracker.DispatchedThrough);
                    }
                    if (batch.SnapshotRequired)
                    {
                        await ResyncAsync(volume, batch.FirstIndex, ct).ConfigureAwait(false);
                        next = _tracker.DispatchedThrough + 1;
                        break;
                    }
                    // Indexes have gaps: the primary sends only state-changing entries.
                    foreach (var entry in batch.Entries)
                    {
                        if (entry.Index < next)
                        {
                            continue;
                        }
                        await DispatchAsync(volume, entry, ct).ConfigureAwait(false);
                        next = entry.Index + 1;
                    }
                    if (batch.Entries.Count == 0 && batch.CommitIndex >= next)
                    {
                        // An empty batch says every state-changing entry up to its commit index has been sent.
                        _tracker.Dispatch(batch.CommitIndex, []);
                        next = batch.CommitIndex + 1;
                    }
                }
            }
            catch (Exception) when (ct.IsCancellationRequested)
            {
                break;
            }
            catch (Exception) when (streamStop.IsCancellationRequested)
            {
                // Reopened on purpose: the new request carries the copy progress to the primary.
                continue;
            }
            catch (Exception e) when (IsMetaFailure(e))
            {
                failures++;
                Stats.NoteError($"changelog from {_source.Description}: {e.Message}");
                if ((failures & (failures - 1)) == 0)
                {
                    _log.LogWarning("changelog stream from {Primary} failed ({Failures} in a row): {Message}; reconnecting",
                        _source.Description, failures, e.Message);
                }
            }
            var delayMs = failures == 0 ? 0 : Math.Min(_options.ReconnectDelayMaxMs, 50L << Math.Min(failures, 10));
            try
            {
                await Task.Delay(TimeSpan.FromMilliseconds(delayMs), _time, ct).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                break;
            }
        }
    }

    private async Task DispatchAsync(Volume volume, ChangelogEntry entry, CancellationToken ct)
    {
        Interlocked.Increment(ref Stats.EntriesRead);
        List<SliceRef> slices;
        ulong[] deletes;
        try
        {
            var command = Command.Parser.ParseFrom(entry.Command);
            slices = SliceFinder.Find(command);
            deletes = SliceFinder.ConfirmedDeletes(command);
        }
        catch (InvalidProtocolBufferException e)
        {
            // Not something a retry fixes; the entry is reported and passed over.
            Stats.NoteError($"changelog entry {entry.Index} is not a command ({e.Message}); its blocks, if any, are not copied");
            _log.LogError("changelog entry {Index} is not a command: {Message}", entry.Index, e.Message);
            slices = [];
            deletes = [];
        }
        var blocks = new List<BlockJob>();
        foreach (var s in slices)
        {
            foreach (var b in BlockLayout.Blocks((int)s.Size, (int)volume.BlockSize))
            {
                blocks.Add(new BlockJob(BlockLayout.Key(volume.Name, s.Id, b.Index, b.Size), b.Size, entry.Index, entry.TimeNs));
            }
        }
        if (deletes.Length > 0)
        {
            blocks.Add(BlockJob.Delete(entry.Index, entry.TimeNs, deletes));
        }
        if (blocks.Count > 0)
        {
            await _tracker.WaitForRoomAsync(ct).ConfigureAwait(false);
        }
        foreach (var job in _tracker.Dispatch(entry.Index, blocks))
        {
            Enqueue(job);
        }
    }

    private void Enqueue(BlockJob job) => (job.IsDelete ? _deletes : _jobs).Writer.TryWrite(job);

    /// <summary>Deletes, in entry order, the mirror bucket's blocks of slices the primary has deleted from its own
    /// bucket. A deletion waits until every earlier entry is copied, so no copy still running can write a block back
    /// after it is gone; it counts as in flight until done, so a restart does it again (deleting is idempotent).</summary>
    private async Task DeleteLoopAsync(Volume volume, CancellationToken ct)
    {
        try
        {
            await foreach (var job in _deletes.Reader.ReadAllAsync(ct).ConfigureAwait(false))
            {
                await _tracker.WaitCopiedThroughAsync(job.Entry - 1, ct).ConfigureAwait(false);
                await DeleteSlicesAsync(volume, job.DeleteSliceIds!, ct).ConfigureAwait(false);
                _tracker.Complete(job);
                BlockDone?.Invoke(job, CopyOutcome.Deleted);
            }
        }
        catch (Exception) when (ct.IsCancellationRequested)
        {
        }
    }

    /// <summary>Slice ids share a listing directory per thousand ids: one listing per directory finds their blocks.</summary>
    private async Task DeleteSlicesAsync(Volume volume, ulong[] sliceIds, CancellationToken ct)
    {
        foreach (var group in sliceIds.GroupBy(id => $"{BlockLayout.ChunksPrefix(volume.Name)}{id / 1_000_000}/{id / 1_000}/"))
        {
            var ids = group.ToHashSet();
            var keys = new List<string>();
            await foreach (var o in ListAsync(_to, group.Key, ct).ConfigureAwait(false))
            {
                if (BlockLayout.TryParseKey(volume.Name, o.Key, out var block) && ids.Contains(block.SliceId))
                {
                    keys.Add(o.Key);
                }
            }
            foreach (var chunk in keys.Chunk(ObjectKeys.ListLimitMax))
            {
                await _copier.WithRetry("DELETE", _to, chunk[0], async () =>
                {
                    await _to.DeleteManyAsync(chunk, ct).ConfigureAwait(false);
                    return true;
                }, ct).ConfigureAwait(false);
                Interlocked.Add(ref Stats.BlocksDeleted, chunk.Length);
            }
        }
    }

    private async Task WorkAsync(CancellationToken ct)
    {
        try
        {
            await foreach (var job in _jobs.Reader.ReadAllAsync(ct).ConfigureAwait(false))
            {
                var outcome = await _copier.CopyAsync(job.Key, job.Size, job.Entry <= _headFirstThrough, ct).ConfigureAwait(false);
                Record(job, outcome);
                _tracker.Complete(job);
                BlockDone?.Invoke(job, outcome);
            }
        }
        catch (Exception) when (ct.IsCancellationRequested)
        {
            // Stopping: the block being copied (whatever its last try met) stays in the in-flight set and is copied
            // again after a restart.
        }
    }

    private void Record(BlockJob job, CopyOutcome outcome)
    {
        switch (outcome)
        {
            case CopyOutcome.Copied:
                Stats.NoteBlockDone(job, copied: true);
                break;
            case CopyOutcome.AlreadyPresent:
                Stats.NoteBlockDone(job, copied: false);
                break;
            case CopyOutcome.GoneFromSource:
                Interlocked.Increment(ref Stats.BlocksGoneFromSource);
                break;
            case CopyOutcome.DamagedInSource:
                Interlocked.Increment(ref Stats.BlocksDamagedInSource);
                break;
        }
    }

    /// <summary>The primary no longer has the entries after our checkpoint: copy every block the primary bucket holds
    /// and the mirror bucket lacks, then go on from the primary's first entry. Blocks of entries before it were all
    /// stored before those entries committed, so the listing sees them.</summary>
    private async Task ResyncAsync(Volume volume, ulong firstIndex, CancellationToken ct)
    {
        _state = "resyncing";
        Interlocked.Increment(ref Stats.Resyncs);
        _log.LogWarning("primary's changelog starts at {First}, after our index {Next}: resyncing by listing both buckets",
            firstIndex, _tracker.DispatchedThrough + 1);
        await _tracker.WaitDrainedAsync(ct).ConfigureAwait(false);
        var prefix = BlockLayout.ChunksPrefix(volume.Name);
        var missing = MissingInTargetAsync(volume, prefix, ct);
        long copied = 0;
        await Parallel.ForEachAsync(missing, new ParallelOptions { MaxDegreeOfParallelism = _options.ConcurrencyMax, CancellationToken = ct },
            async (o, token) =>
            {
                var job = new BlockJob(o.Key, (int)o.Size, firstIndex - 1, _time.GetUtcNow().ToUnixTimeMilliseconds() * 1_000_000);
                var outcome = await _copier.CopyAsync(o.Key, (int)o.Size, headFirst: false, token).ConfigureAwait(false);
                Record(job, outcome);
                Interlocked.Increment(ref copied);
            }).ConfigureAwait(false);
        _tracker.ResetTo(firstIndex - 1);
        SaveCheckpoint();
        _state = "running";
        _log.LogInformation("resync done: {Copied} blocks looked at; following the changelog from {First}", copied, firstIndex);
    }

    /// <summary>Blocks in the primary bucket that the mirror bucket lacks (or holds with another size), by walking both
    /// sorted listings side by side.</summary>
    private async IAsyncEnumerable<ObjectInfo> MissingInTargetAsync(Volume volume, string prefix,
        [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken ct)
    {
        await using var target = ListAsync(_to, prefix, ct).GetAsyncEnumerator(ct);
        var haveTarget = await target.MoveNextAsync().ConfigureAwait(false);
        await foreach (var o in ListAsync(_copier.Source, prefix, ct).ConfigureAwait(false))
        {
            if (!BlockLayout.TryParseKey(volume.Name, o.Key, out _))
            {
                continue;
            }
            while (haveTarget && string.CompareOrdinal(target.Current.Key, o.Key) < 0)
            {
                haveTarget = await target.MoveNextAsync().ConfigureAwait(false);
            }
            if (haveTarget && target.Current.Key == o.Key && target.Current.Size == o.Size)
            {
                continue;
            }
            yield return o;
        }
    }

    private async IAsyncEnumerable<ObjectInfo> ListAsync(IObjectStore store, string prefix,
        [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken ct)
    {
        string? after = null;
        while (true)
        {
            var page = await _copier.WithRetry("LIST", store, prefix, () => store.ListAsync(prefix, after, ObjectKeys.ListLimitMax, ct), ct)
                .ConfigureAwait(false);
            foreach (var o in page.Objects)
            {
                yield return o;
            }
            if (page.NextStartAfter is null || page.Objects.Count == 0)
            {
                yield break;
            }
            after = page.NextStartAfter;
        }
    }

    private async Task CheckpointLoopAsync(CancellationToken ct)
    {
        // Save first, then wait: `status` finds a status file as soon as the replicator runs.
        while (!ct.IsCancellationRequested)
        {
            try
            {
                SaveCheckpoint();
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                Stats.NoteError($"cannot save the checkpoint in {_options.StateDirectory}: {e.Message}");
                _log.LogError("cannot save the checkpoint in {Dir}: {Message}; will try again", _options.StateDirectory, e.Message);
            }
            try
            {
                await Task.Delay(TimeSpan.FromMilliseconds(_options.CheckpointEveryMs), _time, ct).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    /// <summary>Saves the checkpoint and the status file now.</summary>
    public void SaveCheckpoint()
    {
        lock (_checkpointLock)
        {
            var (copied, dispatched, inFlight) = _tracker.Snapshot();
            var nowMs = _time.GetUtcNow().ToUnixTimeMilliseconds();
            new Checkpoint
            {
                VolumeUuid = _volume?.Uuid ?? "",
                CopiedThrough = copied,
                DispatchedThrough = dispatched,
                SavedUnixMs = nowMs,
                InFlight = inFlight,
            }.Save(_options.StateDirectory);
            Interlocked.Exchange(ref Stats.LastCheckpointUnixMs, nowMs);
            Interlocked.Exchange(ref Stats.LastCheckpointIndex, (long)copied);
            DurableFiles.WriteAtomically(Path.Combine(_options.StateDirectory, ReplicatorStatus.FileName), Status().ToJson());
        }
    }

    /// <summary>The figures as of now.</summary>
    public ReplicatorStatus Status()
    {
        var now = _time.GetUtcNow();
        var nowNs = now.ToUnixTimeMilliseconds() * 1_000_000;
        var (blocks, bytes, oldestNs) = _tracker.Pending();
        var copied = _tracker.CopiedThrough;
        var commit = (ulong)Interlocked.Read(ref Stats.PrimaryCommitIndex);
        var oldestSeconds = oldestNs == 0 ? 0 : Math.Max(0, (nowNs - oldestNs) / 1e9);
        var (p50, p90, p99, max, samples) = Stats.LagPercentiles();
        var (lastError, lastErrorMs) = Stats.LastError();
        return new ReplicatorStatus
        {
            MirrorId = _options.MirrorId,
            State = _state,
            Primary = _source.Description,
            From = _from?.Description ?? "",
            To = _to.Description,
            Volume = _volume?.Name ?? "",
            PrimaryCommitIndex = commit,
            CopiedThroughIndex = copied,
            DispatchedThroughIndex = _tracker.DispatchedThrough,
            LagEntries = commit > copied ? commit - copied : 0,
            LagSeconds = oldestSeconds,
            BlocksPending = blocks,
            BytesPending = bytes,
            OldestPendingSeconds = oldestSeconds,
            CopyRateBytesPerSecond = Stats.CopyRateBytesPerSecond(),
            BlocksCopied = Interlocked.Read(ref Stats.BlocksCopied),
            BytesCopied = Interlocked.Read(ref Stats.BytesCopied),
            BlocksAlreadyPresent = Interlocked.Read(ref Stats.BlocksAlreadyPresent),
            BlocksGoneFromSource = Interlocked.Read(ref Stats.BlocksGoneFromSource),
            BlocksDamagedInSource = Interlocked.Read(ref Stats.BlocksDamagedInSource),
            BlocksDeleted = Interlocked.Read(ref Stats.BlocksDeleted),
            EntriesRead = Interlocked.Read(ref Stats.EntriesRead),
            Resyncs = Interlocked.Read(ref Stats.Resyncs),
            Errors = Interlocked.Read(ref Stats.Errors),
            LastError = lastError,
            LastErrorUnixMs = lastErrorMs,
            LastCheckpointUnixMs = Interlocked.Read(ref Stats.LastCheckpointUnixMs),
            LastCheckpointIndex = (ulong)Interlocked.Read(ref Stats.LastCheckpointIndex),
            BlockLagP50Ms = p50,
            BlockLagP90Ms = p90,
            BlockLagP99Ms = p99,
            BlockLagMaxMs = max,
            BlockLagSamples = samples,
            UpdatedUnixMs = now.ToUnixTimeMilliseconds(),
        };
    }
}
