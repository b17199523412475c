// Mirror side of changelog shipping: the mirror cluster's leader pulls the primary's entries and proposes them locally.
using System.Globalization;
using Google.Protobuf;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using MirrorFS.Core.Meta;
using MirrorFS.Core.Rpc;
using MirrorFS.MetaServer.Consensus;
using MirrorFS.MetaServer.Engine;

namespace MirrorFS.MetaServer.Mirror;

public sealed record MirrorFollowerOptions
{
    public required PrimaryUrl Primary { get; init; }

    /// <summary>Bearer token of the primary cluster (else the URL's).</summary>
    public string? PrimaryToken { get; init; }

    /// <summary>This region's bucket (recorded in the state, shown to mirror clients).</summary>
    public string MirrorStorage { get; init; } = "";

    /// <summary>How the primary knows this mirror cluster (the same on every node of it).</summary>
    public required string MirrorId { get; init; }

    /// <summary>A stream is reopened this often so the request reports fresh progress to the primary.</summary>
    public int RenewMs { get; init; } = 3_000;

    /// <summary>No batch (not even a keep-alive) for this long: the stream is dropped and reopened.</summary>
    public int SilenceMs { get; init; } = 10_000;

    /// <summary>A node that does not lead the mirror cluster checks again after this long.</summary>
    public int StandbyPollMs { get; init; } = 300;

    /// <summary>First pause after a failure; doubles up to <see cref="RetryDelayMaxMs"/>.</summary>
    public int RetryDelayMs { get; init; } = 100;

    public int RetryDelayMaxMs { get; init; } = 2_000;

    public uint BatchEntriesMax { get; init; } = 1024;

    public uint SnapshotChunkBytes { get; init; } = 1 << 20;

    public int CallTimeoutMs { get; init; } = 10_000;
}

/// <summary>
/// Runs on every node of a mirror cluster; acts only while the node leads it. Records the mirror role, then streams
/// the primary's entries from the newest one applied here (following whichever primary member leads) and proposes
/// each batch as one <see cref="MirrorEntriesRequest"/>; falls back to the primary's snapshot when the primary no
/// longer has the entries. Stops for good once the cluster is promoted.
/// </summary>
public sealed class MirrorFollower : IAsyncDisposable
{
    private readonly MetaService _service;
    private readonly MetaStateMachine _state;
    private readonly MirrorFollowerOptions _o;
    private readonly ILogger _logger;
    private readonly Dictionary<string, RpcChannel> _channels = new(StringComparer.Ordinal);
    private readonly CancellationTokenSource _stop = new();
    private readonly Lock _statusLock = new();
    private readonly MirrorFollowStatus _status;
    private Task? _run;
    private bool _volumeChecked;
    private int _addressIndex;
    private string? _leaderHint;

    public MirrorFollower(MetaService service, MirrorFollowerOptions options, ILogger? logger = null)
    {
        _service = service;
        _state = service.State;
        _o = options;
        _logger = logger ?? NullLogger.Instance;
        _status = new MirrorFollowStatus { Primary = options.Primary.ToString(), State = "connecting" };
        service.FollowStatus = Status;
    }

    public void Start() => _run ??= Task.Run(() => RunAsync(_stop.Token));

    /// <summary>A copy of what the follower is doing now.</summary>
    public MirrorFollowStatus Status()
    {
        var info = _state.MirrorRoleInfo();
        lock (_statusLock)
        {
            var s = _status.Clone();
            s.AppliedIndex = info.LogicalIndex;
            s.AppliedTimeNs = info.AppliedTimeNs;
            s.PromotedIndex = info.PromotedIndex;
            if (info.Role == MirrorRole.Promoted)
            {
                s.State = "promoted";
                s.PrimaryAddress = "";
            }
            return s;
        }
    }

    private void SetStatus(Action<MirrorFollowStatus> change)
    {
        lock (_statusLock)
        {
            change(_status);
        }
    }

    private async Task RunAsync(CancellationToken ct)
    {
        var delay = _o.RetryDelayMs;
        while (!ct.IsCancellationRequested)
        {
            try
            {
                if (_state.Role == MirrorRole.Promoted)
                {
                    SetStatus(s => s.State = "promoted");
                    _logger.LogInformation("This cluster was promoted at primary index {Index}: no longer following {Primary}",
                        _state.MirrorRoleInfo().PromotedIndex, _o.Primary);
                    return;
                }
                try
                {
                    await _service.Log.ReadBarrierAsync(ct).ConfigureAwait(false);
                }
                catch (NotLeaderException)
                {
                    SetStatus(s =>
                    {
                        s.State = "standby";
                        s.PrimaryAddress = "";
                    });
                    await Task.Delay(_o.StandbyPollMs, ct).ConfigureAwait(false);
                    continue;
                }
                await CheckVolumeAsync(ct).ConfigureAwait(false);
                await EnsureSetupAsync(ct).ConfigureAwait(false);
                var progressed = await FollowOnceAsync(ct).ConfigureAwait(false);
                SetStatus(s => s.LastError = "");
                if (progressed)
                {
                    delay = _o.RetryDelayMs;
                }
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                return;
            }
            catch (NotLeaderException)
            {
                continue; // lost the mirror cluster's leadership mid-way; the next round finds out
            }
            catch (Exception e)
            {
                var line = OneLine(e);
                SetStatus(s =>
                {
                    s.LastError = line;
                    s.State = "connecting";
                });
                _logger.LogWarning("Following primary {Primary} failed: {Error}; retrying in {Delay} ms", _o.Primary, line, delay);
                try
                {
                    await Task.Delay(delay, ct).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
                delay = Math.Min(delay * 2, _o.RetryDelayMaxMs);
            }
        }
    }

    private static string OneLine(Exception e)
    {
        var m = e is RpcException r ? $"{r.Status}: {r.Message}" : e.Message;
        var nl = m.IndexOfAny(['\r', '\n']);
        return nl < 0 ? m : m[..nl];
    }

    /// <summary>Once per process: the primary must serve the volume the URL names (a wrong URL would mirror another
    /// volume into this one).</summary>
    private async Task CheckVolumeAsync(CancellationToken ct)
    {
        if (_volumeChecked)
        {
            return;
        }
        var address = CurrentAddress;
        GetVolumeReply reply;
        try
        {
            reply = await Channel(address).UnaryAsync(MetaRpc.ServiceName, "GetVolume", new GetVolumeRequest(), GetVolumeReply.Parser,
                new CallOptions { TimeoutMs = _o.CallTimeoutMs, CancellationToken = ct }).ConfigureAwait(false);
        }
        catch (RpcException e) when (!ct.IsCancellationRequested)
        {
            MoveOn(e);
            if (e.Status == StatusCode.Unavailable && e.Trailers.Get(MetaRpc.LeaderHintTrailer) is not null)
            {
                return; // asked a follower: the leader is checked next
            }
            throw;
        }
        if (reply.Errno == 0 && reply.Volume.Name != _o.Primary.Volume)
        {
            throw new InvalidOperationException($"primary {address} serves volume {reply.Volume.Name}, not {_o.Primary.Volume}: check --mirror-of");
        }
        _volumeChecked = reply.Errno == 0; // an unformatted primary is checked again later
    }

    /// <summary>Records the mirror role (and the primary and bucket) in the state when it does not say so yet.</summary>
    private async Task EnsureSetupAsync(CancellationToken ct)
    {
        var info = _state.MirrorRoleInfo();
        var primary = _o.Primary.ToString();
        if (info.Role == MirrorRole.Mirror && info.Primary == primary && info.MirrorStorage == _o.MirrorStorage)
        {
            return;
        }
        var reply = HeartbeatReply.Parser.ParseFrom(await _service.ProposeMirrorCommandAsync(
            new Command { MirrorSetup = new MirrorSetupRequest { Primary = primary, MirrorStorage = _o.MirrorStorage } }, ct).ConfigureAwait(false));
        switch (reply.Errno)
        {
            case 0:
                _logger.LogInformation("This cluster mirrors {Primary} (bucket {Storage})", primary,
                    Core.Storage.ObjectStoreFactory.Redact(_o.MirrorStorage));
                return;
            case Errno.EEXIST:
                throw new InvalidOperationException("this metaserver's data directory holds a primary volume of its own; a mirror needs an empty one");
            default:
                throw new InvalidOperationException($"recording the mirror role failed with errno {reply.Errno}");
        }
    }

    private string CurrentAddress => _leaderHint ?? _o.Primary.Addresses[_addressIndex % _o.Primary.Addresses.Count];

    private RpcChannel Channel(string address)
    {
        if (!_channels.TryGetValue(address, out var ch))
        {
            ch = new RpcChannel(new RpcChannelOptions { Address = address, BearerToken = _o.PrimaryToken ?? _o.Primary.Token });
            _channels[address] = ch;
        }
        return ch;
    }

    /// <summary>After a failed call: go to the member the primary named, else the next one.</summary>
    private void MoveOn(RpcException? e)
    {
        var hint = e?.Trailers.Get(MetaRpc.LeaderHintTrailer);
        if (hint is not null && hint != _leaderHint)
        {
            _leaderHint = hint;
            return;
        }
        _leaderHint = null;
        _addressIndex++;
    }

    /// <summary>One stream: from open until renewal, silence, an error, or a bootstrap. True when entries arrived.</summary>
    private async Task<bool> FollowOnceAsync(CancellationToken ct)
    {
        var address = CurrentAddress;
        var expected = _state.LogicalIndex + 1;
        var request = new WatchChangelogRequest
        {
            FromIndex = expected,
            MirrorId = _o.MirrorId,
            MirrorAppliedIndex = expected - 1,
            BatchEntriesMax = _o.BatchEntriesMax,
        };
        using var renew = CancellationTokenSource.CreateLinkedTokenSource(ct);
        using var silence = CancellationTokenSource.CreateLinkedTokenSource(ct);
        renew.CancelAfter(_o.RenewMs);
        silence.CancelAfter(_o.SilenceMs);
        using var stream = CancellationTokenSource.CreateLinkedTokenSource(renew.Token, silence.Token);
        var progressed = false;
        try
        {
            var batches = Channel(address).ServerStreamingAsync(MetaRpc.ServiceName, "WatchChangelog", request,
                ChangelogBatch.Parser, new CallOptions { CancellationToken = stream.Token }, stream.Token);
            await using var e = batches.GetAsyncEnumerator(stream.Token);
            // A MoveNextAsync started while merging and not finished yet: awaited first in the next round.
            ValueTask<bool>? pending = null;
            try
            {
                while (await (pending ?? e.MoveNextAsync()).ConfigureAwait(false))
                {
                    pending = null;
                    var batch = e.Current;
                    Note(batch, address, silence);
                    if (batch.SnapshotRequired)
                    {
                        _logger.LogInformation("Primary {Address} no longer holds entry {From} (its log starts at {First}): bootstrapping from its snapshot",
                            address, expected, batch.FirstIndex);
                        await BootstrapAsync(address, ct).ConfigureAwait(false);
                        return true;
                    }
                    var through = Through(batch);
                    if (through < expected)
                    {
                        continue; // a keep-alive saying nothing new
                    }
                    var cmd = new Command { MirrorEntries = new MirrorEntriesRequest { FromIndex = expected } };
                    cmd.MirrorEntries.Entries.Add(batch.Entries);
                    var bytes = batch.CalculateSize();
                    // Batches that arrived while the last proposal committed go into this one: one commit of the mirror
                    // cluster per batch would let a busy primary outrun it (each commit waits for its disks).
                    while (cmd.MirrorEntries.Entries.Count < _o.BatchEntriesMax && bytes < MergeBytesMax)
                    {
                        var next = e.MoveNextAsync();
                        if (!next.IsCompleted)
                        {
                            pending = next;
                            break;
                        }
                        if (!await next.ConfigureAwait(false))
                        {
                            pending = ValueTask.FromResult(false);
                            break;
                        }
                        var more = e.Current;
                        Note(more, address, silence);
                        if (more.SnapshotRequired)
                        {
                            pending = ValueTask.FromResult(true); // handled on its own in the next round
                            break;
                        }
                        cmd.MirrorEntries.Entries.Add(more.Entries);
                        through = Math.Max(through, Through(more));
                        bytes += more.CalculateSize();
                    }
                    cmd.MirrorEntries.ThroughIndex = through;
                    // Not the stream's token: a renewal must not abandon a batch half-proposed.
                    var reply = MirrorEntriesReply.Parser.ParseFrom(await _service.ProposeMirrorCommandAsync(cmd, ct).ConfigureAwait(false));
                    if (reply.Errno != 0)
                    {
                        // EINVAL: the state moved differently than this stream assumed (e.g. a bootstrap); EPERM: promoted.
                        _logger.LogInformation("Mirrored batch {From}..{Through} refused (errno {Errno}); reopening from the state", expected, through, reply.Errno);
                        return progressed;
                    }
                    expected = through + 1;
                    progressed = true;
                }
            }
            finally
            {
                if (pending is { IsCompleted: false } unfinished)
                {
                    // Leaving with a read outstanding: end the stream and let that read finish before disposal.
                    await stream.CancelAsync().ConfigureAwait(false);
                    try
                    {
                        await unfinished.ConfigureAwait(false);
                    }
                    catch (Exception ex) when (ex is OperationCanceledException or RpcException or IOException or HttpRequestException)
                    {
                        // the stream is being abandoned
                    }
                }
            }
            MoveOn(null); // the primary ended the stream (it stopped leading, or shut down)
        }
        catch (Exception e) when (e is OperationCanceledException or RpcException { Status: StatusCode.Cancelled }
                                  && stream.IsCancellationRequested && !ct.IsCancellationRequested)
        {
            if (silence.IsCancellationRequested && !renew.IsCancellationRequested)
            {
                MoveOn(null);
                throw new TimeoutException($"primary {address} sent nothing for {_o.SilenceMs} ms");
            }
        }
        catch (RpcException e) when (!ct.IsCancellationRequested)
        {
            MoveOn(e);
            if (e.Status == StatusCode.Unavailable && e.Trailers.Get(MetaRpc.LeaderHintTrailer) is not null)
            {
                return progressed; // a follower pointed at its leader: go there at once
            }
            throw;
        }
        return progressed;
    }

    /// <summary>Entries merged into one proposal, at most (about the primary's own batch size).</summary>
    private const int MergeBytesMax = 1 << 20;

    /// <summary>The last primary index a batch accounts for: its last entry, or for a keep-alive its commit index.</summary>
    private static ulong Through(ChangelogBatch batch) => batch.Entries.Count > 0 ? batch.Entries[^1].Index : batch.CommitIndex;

    /// <summary>Status and the silence timer after any batch.</summary>
    private void Note(ChangelogBatch batch, string address, CancellationTokenSource silence)
    {
        silence.CancelAfter(_o.SilenceMs);
        var now = DateTime.UtcNow;
        SetStatus(s =>
        {
            s.State = "following";
            s.PrimaryAddress = address;
            s.LastContactNs = (now.Ticks - DateTime.UnixEpoch.Ticks) * 100;
            s.PrimaryCommitIndex = Math.Max(s.PrimaryCommitIndex, batch.CommitIndex);
            if (batch.Entries.Count > 0)
            {
                s.PrimaryCommitTimeNs = Math.Max(s.PrimaryCommitTimeNs, batch.Entries[^1].TimeNs);
            }
        });
    }

    /// <summary>Installs the primary's current snapshot through this cluster's log, piece by piece.</summary>
    private async Task BootstrapAsync(string address, CancellationToken ct)
    {
        SetStatus(s => s.State = "bootstrapping");
        var request = new GetSnapshotRequest { MirrorId = _o.MirrorId, ChunkBytesMax = _o.SnapshotChunkBytes };
        ulong index = 0;
        ulong total = 0;
        try
        {
            await foreach (var chunk in Channel(address).ServerStreamingAsync(MetaRpc.ServiceName, "GetSnapshot", request,
                               SnapshotChunk.Parser, new CallOptions { CancellationToken = ct }, ct).ConfigureAwait(false))
            {
                index = chunk.Index;
                total = chunk.TotalBytes;
                var cmd = new Command
                {
                    MirrorBootstrap = new MirrorBootstrapRequest
                    {
                        PrimaryIndex = chunk.Index, Offset = chunk.Offset, Data = chunk.Data, TotalBytes = chunk.TotalBytes, Last = chunk.Last,
                    },
                };
                var reply = HeartbeatReply.Parser.ParseFrom(await _service.ProposeMirrorCommandAsync(cmd, ct).ConfigureAwait(false));
                if (reply.Errno != 0)
                {
                    throw new InvalidDataException($"snapshot piece at offset {chunk.Offset} of primary index {chunk.Index} was refused (errno {reply.Errno})");
                }
                if (chunk.Last)
                {
                    SetStatus(s =>
                    {
                        s.Bootstraps++;
                        s.State = "following";
                    });
                    _logger.LogInformation("Bootstrapped from the primary's snapshot at index {Index} ({Bytes} bytes)", index, total);
                    return;
                }
            }
        }
        catch (RpcException e) when (!ct.IsCancellationRequested)
        {
            MoveOn(e);
            throw;
        }
        throw new IOException(string.Create(CultureInfo.InvariantCulture,
            $"primary {address} ended the snapshot stream early (index {index}, {total} bytes expected)"));
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        if (_run is not null)
        {
            await _run.ConfigureAwait(false);
        }
        foreach (var ch in _channels.Values)
        {
            ch.Dispose();
        }
        _stop.Dispose();
    }
}
