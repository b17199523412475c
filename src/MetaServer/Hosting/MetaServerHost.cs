// One metaserver node: durable log + state machine + Meta service on the gRPC-wire stack, plus housekeeping.
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using MirrorFS.Core.Meta;
using MirrorFS.Core.Rpc;
using MirrorFS.MetaServer.Consensus;
using MirrorFS.MetaServer.Engine;

namespace MirrorFS.MetaServer.Hosting;

public sealed record MetaServerOptions
{
    public required string DataDirectory { get; init; }

    /// <summary>host:port to listen on; port 0 picks a free one.</summary>
    public string Listen { get; init; } = "127.0.0.1:0";

    /// <summary>Token every call must carry as <c>authorization: Bearer</c>; null means none is checked.</summary>
    public string? BearerToken { get; init; }

    public ulong SnapshotEveryEntries { get; init; } = 100_000;

    /// <summary>A session with no heartbeat for this long is expired and its open files released.</summary>
    public int SessionTimeoutMs { get; init; } = 60_000;

    /// <summary>How often the expiry check runs.</summary>
    public int SessionSweepMs { get; init; } = 10_000;

    public ILoggerFactory? LoggerFactory { get; init; }

    /// <summary>"ip:port" of a plain-HTTP listener serving GET /metrics; null for none.</summary>
    public string? MetricsListen { get; init; }
}

public sealed class MetaServerHost : IAsyncDisposable
{
    private readonly MetaServerOptions _options;
    private readonly ILogger _logger;
    private readonly CancellationTokenSource _stop = new();
    private MetaStateMachine? _state;
    private DurableSingleNodeLog? _log;
    private RpcServer? _rpc;
    private MetaServerMetrics? _metrics;
    private Task? _sweeper;

    private MetaServerHost(MetaServerOptions options)
    {
        _options = options;
        _logger = (options.LoggerFactory ?? NullLoggerFactory.Instance).CreateLogger("mirrorfs-meta");
    }

    public MetaService Service { get; private set; } = null!;

    public DurableSingleNodeLog Log => _log!;

    /// <summary>This node's metrics (RPC, commit latency, indexes, sessions, inodes).</summary>
    public MetaServerMetrics Metrics => _metrics!;

    /// <summary>host:port the server answers on.</summary>
    public string Address => _rpc!.Address;

    public static async Task<MetaServerHost> StartAsync(MetaServerOptions options, CancellationToken ct = default)
    {
        var host = new MetaServerHost(options);
        try
        {
            await host.StartCoreAsync(ct).ConfigureAwait(false);
            return host;
        }
        catch
        {
            await host.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    private async Task StartCoreAsync(CancellationToken ct)
    {
        Directory.CreateDirectory(_options.DataDirectory);
        _state = new MetaStateMachine();
        _log = DurableSingleNodeLog.Open(_state, new DurableLogOptions
        {
            Directory = _options.DataDirectory,
            SnapshotEveryEntries = _options.SnapshotEveryEntries,
        }, _options.LoggerFactory?.CreateLogger("mirrorfs-meta.log"));
        _metrics = new MetaServerMetrics(_state, _log);
        Service = new MetaService(_state, _metrics.Measure(_log));
        _rpc = new RpcServer(new RpcServerOptions
        {
            Listen = _options.Listen,
            BearerToken = _options.BearerToken,
            LoggerFactory = _options.LoggerFactory,
            Metrics = _metrics.Registry,
        });
        _rpc.MapMetaService(Service, Translate);
        await _rpc.StartAsync(ct).ConfigureAwait(false);
        await _metrics.StartListenerAsync(_options.MetricsListen, _options.LoggerFactory, ct).ConfigureAwait(false);
        _sweeper = Task.Run(SweepSessionsAsync, CancellationToken.None);
        _logger.LogInformation("mirrorfs-meta serving on {Address}, data in {Dir}, applied index {Index}",
            Address, _options.DataDirectory, _log.AppliedIndex);
    }

    /// <summary>Engine exceptions as the caller should see them; null leaves the router's INTERNAL.</summary>
    internal static RpcException? Translate(Exception e)
    {
        switch (e)
        {
            case NotLeaderException nl:
                var trailers = new RpcMetadata();
                if (nl.LeaderHint is not null)
                {
                    trailers.Add(MetaRpc.LeaderHintTrailer, nl.LeaderHint);
                }
                return new RpcException(StatusCode.Unavailable, nl.Message, trailers);
            case OperationCanceledException:
                return new RpcException(StatusCode.Cancelled, "call cancelled");
            default:
                return null;
        }
    }

    private async Task SweepSessionsAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            try
            {
                await Task.Delay(_options.SessionSweepMs, _stop.Token).ConfigureAwait(false);
                await Service.ExpireSessionsAsync(TimeSpan.FromMilliseconds(_options.SessionTimeoutMs), _stop.Token)
                    .ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            catch (Exception e)
            {
                _logger.LogWarning(e, "session expiry sweep failed; will try again");
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        if (_rpc is not null)
        {
            await _rpc.DisposeAsync().ConfigureAwait(false);
        }
        if (_metrics is not null)
        {
            await _metrics.DisposeAsync().ConfigureAwait(false);
        }
        if (_sweeper is not null)
        {
            await _sweeper.ConfigureAwait(false);
        }
        if (_log is not null)
        {
            await _log.DisposeAsync().ConfigureAwait(false);
        }
        _state?.Dispose();
        _stop.Dispose();
    }
}
