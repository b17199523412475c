// Primary side of changelog shipping: WatchChangelog and GetSnapshot streams, and the mirrors' progress.
using System.Collections.Concurrent;
using Google.Protobuf;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using MirrorFS.Core.Meta;
using MirrorFS.Core.Rpc;
using MirrorFS.MetaServer.Consensus;
using MirrorFS.MetaServer.Engine;

namespace MirrorFS.MetaServer.Mirror;

public sealed record ChangelogOptions
{
    /// <summary>An idle stream sends an empty batch this often (keep-alive, carrying the commit index).</summary>
    public int KeepAliveMs { get; init; } = 2_000;

    public uint BatchEntriesDefault { get; init; } = 1024;

    public uint BatchEntriesMax { get; init; } = 16_384;

    /// <summary>Command bytes in one batch (at least one entry is always sent).</summary>
    public int BatchBytesMax { get; init; } = 1 << 20;

    /// <summary>How often the leader records mirrors' progress in the state (only when it says something new).</summary>
    public int ProgressPersistMs { get; init; } = 2_000;

    /// <summary>Changelog streams open at once on this node; more are refused with RESOURCE_EXHAUSTED.</summary>
    public int StreamsMax { get; init; } = 64;

    public int SnapshotChunkBytesDefault { get; init; } = 1 << 20;
}

/// <summary>
/// Serves the committed, state-changing entries of this cluster's log to mirrors (leader only), and the state as a
/// snapshot for mirrors whose position was compacted away. Each stream's request carries the puller's progress: the
/// leader keeps it live, registers a new mirror in the state at once (so block deletion waits for it), and records
/// progress every <see cref="ChangelogOptions.ProgressPersistMs"/> when a mirror has passed an entry other than an
/// earlier progress record (recording every report would make a new entry for the mirror to report, forever).
/// </summary>
public sealed class ChangelogService : IAsyncDisposable
{
    private readonly MetaService _service;
    private readonly MetaStateMachine _state;
    private readonly IReplicatedLog _log;
    private readonly IChangelogSource? _source;
    private readonly ChangelogOptions _options;
    private readonly ILogger _logger;
    private readonly ConcurrentDictionary<string, Live> _live = new(StringComparer.Ordinal);
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _persister;
    private int _streams;

    /// <param name="source">The log to read entries back from, when <paramref name="service"/>'s log is a wrapper
    /// (e.g. the metrics one) around it; default: the service's log itself.</param>
    public ChangelogService(MetaService service, ChangelogOptions? options = null, ILogger? logger = null, IChangelogSource? source = null)
    {
        _service = service;
        _state = service.State;
        _log = service.Log;
        _source = source ?? service.Log as IChangelogSource;
        _options = options ?? new ChangelogOptions();
        _logger = logger ?? NullLogger.Instance;
        service.MirrorGate.Live = LiveMirrors;
        _persister = Task.Run(PersistLoopAsync);
    }

    /// <summary>Streams open now.</summary>
    public int OpenStreams => Volatile.Read(ref _streams);

    private sealed class Live
    {
        public ulong Applied;
        public long LastSeenNs;
        public long RegisteredNs;
        public int Connected;
    }

    /// <summary>Progress heard live by this node (meaningful on the leader).</summary>
    public IReadOnlyCollection<MirrorInfo> LiveMirrors()
    {
        var list = new List<MirrorInfo>();
        foreach (var (id, l) in _live)
        {
            lock (l)
            {
                list.Add(new MirrorInfo { MirrorId = id, AppliedIndex = l.Applied, LastSeenNs = l.LastSeenNs, RegisteredNs = l.RegisteredNs, Connected = l.Connected > 0 });
            }
        }
        return list;
    }

    /// <summary>Serves WatchChangelog and GetSnapshot on <paramref name="server"/>.</summary>
    public void Map(RpcServer server, Func<Exception, RpcException?> translate)
    {
        server.MapServerStreaming<WatchChangelogRequest, ChangelogBatch>(MetaRpc.ServiceName, "WatchChangelog",
            WatchChangelogRequest.Parser, (req, writer, ctx) => Guard(() => WatchAsync(req, writer.WriteAsync, ctx.CancellationToken), translate));
        server.MapServerStreaming<GetSnapshotRequest, SnapshotChunk>(MetaRpc.ServiceName, "GetSnapshot",
            GetSnapshotRequest.Parser, (req, writer, ctx) => Guard(() => SnapshotAsync(req, writer.WriteAsync, ctx.CancellationToken), translate));
    }

    private static async Task Guard(Func<Task> call, Func<Exception, RpcException?> translate)
    {
        try
        {
            await call().ConfigureAwait(false);
        }
        catch (Exception e) when (e is not RpcException && translate(e) is { } mapped)
        {
            throw mapped;
        }
    }

    /// <summary>The WatchChangelog stream (see meta.proto). Returns when the caller leaves or this node stops leading.</summary>
    public async Task WatchAsync(WatchChangelogRequest request, Func<ChangelogBatch, Task> send, CancellationToken ct)
    {
        if (_source is not { } source)
        {
            throw new RpcException(StatusCode.Unimplemented, "this metaserver's log cannot be read back, so it cannot ship a changelog");
        }
        if (_service.IsMirror)
        {
            throw new RpcException(StatusCode.FailedPrecondition, "this cluster is itself a mirror: point mirrors at the primary");
        }
        if (request.MirrorId.Length > MirrorLimits.MirrorIdBytesMax)
        {
            throw new RpcException(StatusCode.InvalidArgument, $"mirror_id is longer than {MirrorLimits.MirrorIdBytesMax} bytes");
        }
        if (Interlocked.Increment(ref _streams) > _options.StreamsMax)
        {
            Interlocked.Decrement(ref _streams);
            throw new RpcException(StatusCode.ResourceExhausted, $"{_options.StreamsMax} changelog streams are open on this node (StreamsMax); retry later");
        }
        Live? live = null;
        try
        {
            await _log.ReadBarrierAsync(ct).ConfigureAwait(false); // leader only; NotLeader carries the hint
            var from = Math.Max(request.FromIndex, 1);
            if (request.MirrorId.Length > 0)
            {
                live = await RegisterAsync(request.MirrorId, Math.Min(request.MirrorAppliedIndex, from - 1), ct).ConfigureAwait(false);
            }
            var batchMax = request.BatchEntriesMax == 0 ? _options.BatchEntriesDefault : Math.Min(request.BatchEntriesMax, _options.BatchEntriesMax);
            while (true)
            {
                ct.ThrowIfCancellationRequested();
                var info = _state.MirrorRoleInfo();
                var logical = info.LogicalIndex;
                if (info.Role == MirrorRole.Mirror)
                {
                    throw new RpcException(StatusCode.FailedPrecondition, "this cluster became a mirror: point mirrors at the primary");
                }
                // A promoted mirror's own log holds its primary's entries wrapped until the promotion: not served.
                var first = Math.Max(Logical(source.FirstLogIndex, info.IndexOffset), info.PromotedIndex + 1);
                if (from < first && from <= logical)
                {
                    await send(new ChangelogBatch { SnapshotRequired = true, FirstIndex = first, CommitIndex = logical }).ConfigureAwait(false);
                    return;
                }
                if (from <= logical)
                {
                    IReadOnlyList<CommittedEntry> read;
                    try
                    {
                        read = source.ReadCommitted(LogIndexOf(from, info.IndexOffset), LogIndexOf(logical, info.IndexOffset));
                    }
                    catch (LogCompactedException e)
                    {
                        await send(new ChangelogBatch { SnapshotRequired = true, FirstIndex = Logical(e.FirstIndex, info.IndexOffset), CommitIndex = logical }).ConfigureAwait(false);
                        return;
                    }
                    if (read.Count == 0)
                    {
                        await Task.Delay(10, ct).ConfigureAwait(false); // applied but not yet visible to the reader
                        continue;
                    }
                    var batch = new ChangelogBatch { CommitIndex = logical, FirstIndex = first };
                    var bytes = 0;
                    var scanned = from - 1;
                    foreach (var e in read)
                    {
                        if (e.IsCommand && batch.Entries.Count > 0 && (batch.Entries.Count >= batchMax || bytes + e.Command.Length > _options.BatchBytesMax))
                        {
                            break;
                        }
                        scanned = Logical(e.Index, info.IndexOffset);
                        if (e.IsCommand)
                        {
                            batch.Entries.Add(new ChangelogEntry { Index = scanned, TimeNs = CommandTime(e.Command.Span), Command = ByteString.CopyFrom(e.Command.Span) });
                            bytes += e.Command.Length;
                        }
                    }
                    if (batch.Entries.Count > 0)
                    {
                        await send(batch).ConfigureAwait(false);
                    }
                    if (batch.Entries.Count == 0 || scanned > batch.Entries[^1].Index)
                    {
                        // Entries after the last one sent change nothing: tell the mirror it has them all.
                        await send(new ChangelogBatch { CommitIndex = scanned, FirstIndex = first }).ConfigureAwait(false);
                    }
                    from = scanned + 1;
                    Touch(live);
                    continue;
                }
                using (var wait = CancellationTokenSource.CreateLinkedTokenSource(ct))
                {
                    wait.CancelAfter(_options.KeepAliveMs);
                    try
                    {
                        await _state.WaitForIndexAsync(from, wait.Token).ConfigureAwait(false);
                        continue;
                    }
                    catch (OperationCanceledException) when (!ct.IsCancellationRequested)
                    {
                    }
                }
                await _log.ReadBarrierAsync(ct).ConfigureAwait(false); // still the leader?
                await send(new ChangelogBatch { CommitIndex = from - 1, FirstIndex = first }).ConfigureAwait(false);
                Touch(live);
            }
        }
        finally
        {
            Interlocked.Decrement(ref _streams);
            if (live is not null)
            {
                lock (live)
                {
                    live.Connected--;
                }
            }
        }
    }

    private static ulong Logical(ulong logIndex, long offset) => (ulong)((long)logIndex + offset);

    private static ulong LogIndexOf(ulong logical, long offset) => (ulong)((long)logical - offset);

    /// <summary>The command's now_ns (field 4), read without parsing the whole command.</summary>
    internal static long CommandTime(ReadOnlySpan<byte> command)
    {
        try
        {
            var input = new CodedInputStream(command.ToArray());
            uint tag;
            while ((tag = input.ReadTag()) != 0)
            {
                if (tag == 32)
                {
                    return input.ReadInt64();
                }
                if (WireFormat.GetTagFieldNumber(tag) > 4)
                {
                    return 0; // fields are written in number order: there is no time
                }
                input.SkipLastField();
            }
        }
        catch (InvalidProtocolBufferException)
        {
        }
        return 0;
    }

    private void Touch(Live? live)
    {
        if (live is not null)
        {
            lock (live)
            {
                live.LastSeenNs = _service.NowNs;
            }
        }
    }

    private async Task<Live?> RegisterAsync(string id, ulong applied, CancellationToken ct)
    {
        var now = _service.NowNs;
        if (!_live.TryGetValue(id, out var live))
        {
            if (_live.Count >= MirrorLimits.MirrorsMax)
            {
                throw new RpcException(StatusCode.ResourceExhausted, $"{MirrorLimits.MirrorsMax} mirrors are known; remove one or reuse a mirror id");
            }
            live = _live.GetOrAdd(id, _ => new Live { RegisteredNs = now });
        }
        lock (live)
        {
            live.Applied = Math.Max(live.Applied, applied);
            live.LastSeenNs = now;
            live.Connected++;
        }
        if (!_state.MirrorProgressTable().Any(m => m.MirrorId == id))
        {
            // Durable before any entry goes out: from now on no block it may still need is deleted.
            await _service.ProposeMirrorProgressAsync([new MirrorInfo { MirrorId = id, AppliedIndex = applied, LastSeenNs = now, RegisteredNs = now }], ct)
                .ConfigureAwait(false);
            _logger.LogInformation("Mirror {Mirror} registered at primary index {Index}", id, applied);
        }
        return live;
    }

    private async Task PersistLoopAsync()
    {
        var ct = _stop.Token;
        while (!ct.IsCancellationRequested)
        {
            try
            {
                await Task.Delay(_options.ProgressPersistMs, ct).ConfigureAwait(false);
                await PersistProgressAsync(ct).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                return;
            }
            catch (NotLeaderException)
            {
                // Only the leader records progress; a new leader hears the mirrors again when they reconnect.
            }
            catch (Exception e)
            {
                _logger.LogWarning("Recording mirror progress failed: {Error}; will try again", e.Message);
            }
        }
    }

    /// <summary>Records live progress that says something new (see the class summary); false when nothing was due.</summary>
    public async Task<bool> PersistProgressAsync(CancellationToken ct = default)
    {
        if (_live.IsEmpty || _service.IsMirror)
        {
            return false;
        }
        var durable = _state.MirrorProgressTable().ToDictionary(m => m.MirrorId, StringComparer.Ordinal);
        var lastChange = _state.LastChangeIndex;
        var due = new List<MirrorInfo>();
        foreach (var l in LiveMirrors())
        {
            if (!durable.TryGetValue(l.MirrorId, out var d) || (l.AppliedIndex > d.AppliedIndex && lastChange > d.AppliedIndex))
            {
                l.Connected = false;
                due.Add(l);
            }
        }
        if (due.Count == 0)
        {
            return false;
        }
        await _service.ProposeMirrorProgressAsync(due, ct).ConfigureAwait(false);
        return true;
    }

    /// <summary>The GetSnapshot stream: the state as of now, in pieces.</summary>
    public async Task SnapshotAsync(GetSnapshotRequest request, Func<SnapshotChunk, Task> send, CancellationToken ct)
    {
        if (_service.IsMirror)
        {
            throw new RpcException(StatusCode.FailedPrecondition, "this cluster is itself a mirror: bootstrap from the primary");
        }
        await _log.ReadBarrierAsync(ct).ConfigureAwait(false);
        var chunkMax = request.ChunkBytesMax == 0 ? _options.SnapshotChunkBytesDefault : (int)Math.Min(request.ChunkBytesMax, MirrorLimits.BootstrapChunkBytesMax);
        using var body = new MemoryStream();
        var index = _state.WriteSnapshotAt(body);
        var bytes = body.GetBuffer();
        var total = body.Length;
        _logger.LogInformation("Sending a snapshot at primary index {Index} ({Bytes} bytes) to {Mirror}", index, total, request.MirrorId);
        long offset = 0;
        do
        {
            var n = (int)Math.Min(chunkMax, total - offset);
            await send(new SnapshotChunk
            {
                Index = index,
                Offset = (ulong)offset,
                Data = ByteString.CopyFrom(bytes, (int)offset, n),
                TotalBytes = (ulong)total,
                Last = offset + n == total,
            }).ConfigureAwait(false);
            offset += n;
        }
        while (offset < total);
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        await _persister.ConfigureAwait(false);
        _stop.Dispose();
    }
}
