// One metaserver node: durable log (single node, or a Raft member) + state machine + services on the gRPC-wire stack.
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using MirrorFS.Core.Meta;
using MirrorFS.Core.Rpc;
using MirrorFS.MetaServer.Consensus;
using MirrorFS.MetaServer.Engine;
using MirrorFS.MetaServer.Raft;

namespace MirrorFS.MetaServer.Hosting;

public sealed record MetaServerOptions
{
    public required string DataDirectory { get; init; }

    /// <summary>host:port to listen on; port 0 picks a free one.</summary>
    public string Listen { get; init; } = "127.0.0.1:0";

    /// <summary>Token every call must carry as <c>authorization: Bearer</c>; null means none is checked. Members of a
    /// cluster send it to each other too, so all must share it.</summary>
    public string? BearerToken { get; init; }

    public ulong SnapshotEveryEntries { get; init; } = 100_000;

    /// <summary>A session with no heartbeat for this long is expired and its open files released.</summary>
    public int SessionTimeoutMs { get; init; } = 60_000;

    /// <summary>How often the expiry check runs (on the leader only).</summary>
    public int SessionSweepMs { get; init; } = 10_000;

    /// <summary>How often the leader deletes trash hour directories older than the volume's trash days.</summary>
    public int TrashPurgeMs { get; init; } = 300_000;

    public ILoggerFactory? LoggerFactory { get; init; }

    /// <summary>Raft member id (non-zero) for cluster mode; 0 runs the single-node log without Raft.</summary>
    public ulong NodeId { get; init; }

    /// <summary>Cluster mode: the initial members and their addresses (this node included), used when the data
    /// directory holds no configuration yet. None means a one-member cluster others can be added to.</summary>
    public IReadOnlyDictionary<ulong, string>? Peers { get; init; }

    /// <summary>Cluster mode: start with no configuration and wait to be added (member add) by the leader. Peers, if
    /// given, only say where the other members are.</summary>
    public bool Join { get; init; }

    /// <summary>host:port other members and clients reach this node on; default: this node's entry in
    /// <see cref="Peers"/>, else the listen address.</summary>
    public string? AdvertiseAddress { get; init; }

    /// <summary>A follower that hears no leader for a random time in [this, 2 × this) campaigns.</summary>
    public int ElectionTimeoutMs { get; init; } = 300;

    /// <summary>How often a leader sends heartbeats.</summary>
    public int HeartbeatMs { get; init; } = 50;

    /// <summary>Size at which a WAL segment is rolled (compaction frees whole segments).</summary>
    public long WalSegmentBytesMax { get; init; } = 64L << 20;

    /// <summary>Snapshots kept on disk; the WAL keeps entries back to the oldest one.</summary>
    public int SnapshotsKept { get; init; } = 2;

    /// <summary>Mirror mode: follow this primary and refuse writes (see <see cref="Mirror.MirrorFollower"/>).</summary>
    public Mirror.MirrorHostOptions? Mirror { get; init; }

    /// <summary>"ip:port" of a plain-HTTP listener serving GET /metrics; null for none.</summary>
    public string? MetricsListen { get; init; }
}

public sealed class MetaServerHost : IAsyncDisposable
{
    /// <summary>In the data directory: the Raft member id it belongs to (a guard against mixing nodes or modes).</summary>
    public const string NodeIdFileName = "raft-node-id";

    private readonly MetaServerOptions _options;
    private readonly ILogger _logger;
    private readonly CancellationTokenSource _stop = new();
    private MetaStateMachine? _state;
    private DurableSingleNodeLog? _single;
    private RaftLog? _raft;
    private RpcRaftTransport? _transport;
    private RpcServer? _rpc;
    private MetaServerMetrics? _metrics;
    private Task? _sweeper;
    private Mirror.ChangelogService? _changelog;
    private Mirror.MirrorFollower? _follower;

    private MetaServerHost(MetaServerOptions options)
    {
        _options = options;
        _logger = (options.LoggerFactory ?? NullLoggerFactory.Instance).CreateLogger("mirrorfs-meta");
    }

    public MetaService Service { get; private set; } = null!;

    /// <summary>The single-node log (not in cluster mode).</summary>
    public DurableSingleNodeLog Log => _single ?? throw new InvalidOperationException("this metaserver is a Raft member; use Raft");

    /// <summary>The Raft log in cluster mode, else null.</summary>
    public RaftLog? Raft => _raft;

    public RpcRaftTransport? Transport => _transport;

    public IReplicatedLog ReplicatedLog => (IReplicatedLog?)_raft ?? _single!;

    public MetaServerOptions Options => _options;

    /// <summary>The trash purge job (tests run a pass at a chosen time with RunOnceAsync).</summary>
    public TrashPurger TrashPurger { get; private set; } = null!;

    /// <summary>The changelog service (primary side of mirroring).</summary>
    public Mirror.ChangelogService Changelog => _changelog!;

    /// <summary>The mirror follower; null unless started with <see cref="MetaServerOptions.Mirror"/>.</summary>
    public Mirror.MirrorFollower? Follower => _follower;

    /// <summary>This node's metrics (RPC, commit latency, indexes, sessions, inodes).</summary>
    public MetaServerMetrics Metrics => _metrics!;

    /// <summary>host:port the server answers on.</summary>
    public string Address => _rpc!.Address;

    /// <summary>host:port this node tells others to use (its advertised address in cluster mode).</summary>
    public string PublicAddress => _transport?.SelfAddress is { Length: > 0 } a ? a : Address;

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
        CheckDataDirectoryMode();
        _state = new MetaStateMachine();
        var cluster = _options.NodeId != 0;
        if (cluster)
        {
            OpenRaft();
        }
        else
        {
            _single = DurableSingleNodeLog.Open(_state, new DurableLogOptions
            {
                Directory = _options.DataDirectory,
                SnapshotEveryEntries = _options.SnapshotEveryEntries,
                SegmentBytesMax = _options.WalSegmentBytesMax,
                SnapshotsKept = _options.SnapshotsKept,
            }, _options.LoggerFactory?.CreateLogger("mirrorfs-meta.log"));
        }
        _metrics = new MetaServerMetrics(_state, ReplicatedLog);
        var measured = _metrics.Measure(ReplicatedLog);
        Service = _options.Mirror is { } m
            ? new MetaService(_state, measured) { MirrorOf = m.Primary.ToString(), MirrorStorage = m.MirrorStorage, MirrorReadWaitMs = m.ReadWaitMs, DumpSpoolDirectory = _options.DataDirectory }
            : new MetaService(_state, measured) { DumpSpoolDirectory = _options.DataDirectory };
        _rpc = new RpcServer(new RpcServerOptions
        {
            Listen = _options.Listen,
            BearerToken = _options.BearerToken,
            LoggerFactory = _options.LoggerFactory,
            Metrics = _metrics.Registry,
            MaxMessageBytes = cluster ? RaftRpc.MaxMessageBytes : GrpcProtocol.DefaultMaxMessageBytes,
        });
        _rpc.MapMetaService(Service, Translate);
        if (_raft is not null)
        {
            _rpc.MapRaftService(_transport!, () => _raft);
        }
        _rpc.MapClusterService(new ClusterAdmin(this), Translate);
        _changelog = new Mirror.ChangelogService(Service, null, _options.LoggerFactory?.CreateLogger("mirrorfs-meta.changelog"),
            ReplicatedLog as IChangelogSource);
        _changelog.Map(_rpc, e => Translate(e));
        await _rpc.StartAsync(ct).ConfigureAwait(false);
        await _metrics.StartListenerAsync(_options.MetricsListen, _options.LoggerFactory, ct).ConfigureAwait(false);
        if (_transport is not null && string.IsNullOrEmpty(_transport.SelfAddress))
        {
            _transport.SelfAddress = _rpc.Address;
        }
        if (_options.Mirror is { } mirror)
        {
            _follower = new Mirror.MirrorFollower(Service, mirror.ToFollowerOptions(), _options.LoggerFactory?.CreateLogger("mirrorfs-meta.mirror"));
            _follower.Start();
        }
        _sweeper = Task.Run(SweepSessionsAsync, CancellationToken.None);
        (TrashPurger = new TrashPurger(Service, _options.TrashPurgeMs, _logger,
            isLeader: () => _raft is not { Status.Role: not RaftRole.Leader })).Start();
        if (_raft is null)
        {
            _logger.LogInformation("mirrorfs-meta serving on {Address}, data in {Dir}, applied index {Index}",
                Address, _options.DataDirectory, _single!.AppliedIndex);
        }
        else
        {
            _logger.LogInformation("mirrorfs-meta node {Id} serving on {Address} (advertised {Public}), data in {Dir}, applied index {Index}, voters {Voters}",
                _options.NodeId, Address, PublicAddress, _options.DataDirectory, _raft.AppliedIndex,
                _options.Join ? "(joining)" : string.Join(",", InitialVoters()));
        }
    }

    private IReadOnlyList<ulong> InitialVoters() =>
        _options.Join ? [] : _options.Peers is { Count: > 0 } p ? [.. p.Keys.Order()] : [_options.NodeId];

    private void OpenRaft()
    {
        var o = _options;
        if (!o.Join && o.Peers is { Count: > 0 } peers && !peers.ContainsKey(o.NodeId))
        {
            throw new ArgumentException($"the peer list ({string.Join(",", peers.Keys.Order())}) does not name this node's id {o.NodeId}; add {o.NodeId}=HOST:PORT or use --join");
        }
        var self = o.AdvertiseAddress
                   ?? (o.Peers is not null && o.Peers.TryGetValue(o.NodeId, out var p) ? p : null)
                   ?? DialableListen(o.Listen);
        var addresses = new Dictionary<ulong, string>(o.Peers ?? new Dictionary<ulong, string>());
        if (self is not null)
        {
            addresses[o.NodeId] = self;
        }
        var tickMs = Math.Max(1, o.HeartbeatMs / 2);
        _transport = new RpcRaftTransport(new RpcRaftTransportOptions
        {
            SelfId = o.NodeId,
            SelfAddress = self ?? "",
            BearerToken = o.BearerToken,
            Peers = addresses,
            LoggerFactory = o.LoggerFactory,
        });
        var transport = _transport;
        _raft = RaftLog.Open(_state!, new RaftLogOptions
        {
            Id = o.NodeId,
            InitialVoters = InitialVoters(),
            InitialAddresses = addresses,
            Directory = o.DataDirectory,
            Transport = transport,
            TickMs = tickMs,
            HeartbeatTicks = 2,
            ElectionTicks = Math.Max(3, o.ElectionTimeoutMs / tickMs),
            SnapshotEveryEntries = o.SnapshotEveryEntries,
            AddressOf = transport.AddressOf,
        });
        var raft = _raft;
        transport.Deliver = raft.Receive;
    }

    /// <summary>The listen address when others can dial it as is (not a wildcard, not port 0).</summary>
    private static string? DialableListen(string listen)
    {
        var ep = RpcServerEndpoint(listen);
        return ep is null || ep.Port == 0 || ep.Address.Equals(System.Net.IPAddress.Any) || ep.Address.Equals(System.Net.IPAddress.IPv6Any)
            ? null
            : listen;
    }

    private static System.Net.IPEndPoint? RpcServerEndpoint(string listen) =>
        listen.StartsWith("localhost:", StringComparison.OrdinalIgnoreCase)
            ? new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, int.TryParse(listen.AsSpan(10), out var port) ? port : 0)
            : System.Net.IPEndPoint.TryParse(listen, out var ep) ? ep : null;

    /// <summary>A data directory serves one mode and one member: refuse to start a Raft member on a single-node log
    /// (its WAL records differ) or on another member's directory.</summary>
    private void CheckDataDirectoryMode()
    {
        var dir = _options.DataDirectory;
        var idFile = Path.Combine(dir, NodeIdFileName);
        var recorded = File.Exists(idFile) ? File.ReadAllText(idFile).Trim() : null;
        var id = _options.NodeId.ToString(System.Globalization.CultureInfo.InvariantCulture);
        if (_options.NodeId == 0)
        {
            if (recorded is not null)
            {
                throw new ArgumentException($"data directory {dir} belongs to Raft member {recorded}; start it with --id {recorded} and its peers");
            }
            return;
        }
        if (recorded is null)
        {
            if (Directory.Exists(Path.Combine(dir, "wal")))
            {
                throw new ArgumentException($"data directory {dir} holds a single-node metaserver's log; start it without --id, or give the Raft member an empty directory");
            }
            Storage.DurableFiles.WriteAtomically(idFile, System.Text.Encoding.ASCII.GetBytes(id + "\n"));
        }
        else if (recorded != id)
        {
            throw new ArgumentException($"data directory {dir} belongs to Raft member {recorded}, not {id}; give each member its own directory");
        }
    }

    /// <summary>Engine exceptions as the caller should see them; null leaves the router's INTERNAL.</summary>
    internal RpcException? Translate(Exception e)
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
            case MirrorReadOnlyException or MirrorBehindException:
                return Mirror.MirrorErrors.Translate(e);
            case MembershipChangeException mc:
                return new RpcException(StatusCode.FailedPrecondition, mc.Message);
            case OperationCanceledException or ObjectDisposedException when _stop.IsCancellationRequested:
                // The node is stopping: the call may go to another member (same session and seq, so at most once).
                return new RpcException(StatusCode.Unavailable, "metaserver node is shutting down; retry on another member");
            case OperationCanceledException:
                return new RpcException(StatusCode.Cancelled, "call cancelled");
            case IOException when _raft is not null:
                return new RpcException(StatusCode.Unavailable, $"metaserver node {_options.NodeId} failed: {e.Message}");
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
                if (_raft is { Status.Role: not RaftRole.Leader })
                {
                    continue; // only the leader judges idleness by its clock and proposes the expiry
                }
                await Service.ExpireSessionsAsync(TimeSpan.FromMilliseconds(_options.SessionTimeoutMs), _stop.Token)
                    .ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            catch (NotLeaderException)
            {
                // Leadership moved between the check and the proposal.
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
        if (_follower is not null)
        {
            await _follower.DisposeAsync().ConfigureAwait(false);
        }
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
        if (TrashPurger is not null)
        {
            await TrashPurger.DisposeAsync().ConfigureAwait(false);
        }
        if (_changelog is not null)
        {
            await _changelog.DisposeAsync().ConfigureAwait(false);
        }
        if (_raft is not null)
        {
            await _raft.DisposeAsync().ConfigureAwait(false);
        }
        if (_transport is not null)
        {
            await _transport.DisposeAsync().ConfigureAwait(false);
        }
        if (_single is not null)
        {
            await _single.DisposeAsync().ConfigureAwait(false);
        }
        _state?.Dispose();
        _stop.Dispose();
    }
}
