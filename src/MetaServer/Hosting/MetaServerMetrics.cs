// The metaserver's metrics: RPC latency (through the RPC server), commit latency, log indexes, sessions, inodes,
// and the optional /metrics listener that serves them.
using System.Diagnostics;
using Microsoft.Extensions.Logging;
using MirrorFS.Core.Metrics;
using MirrorFS.MetaServer.Consensus;
using MirrorFS.MetaServer.Engine;

namespace MirrorFS.MetaServer.Hosting;

public sealed class MetaServerMetrics : IAsyncDisposable
{
    private MetricsHttpServer? _listener;

    public MetaServerMetrics(MetaStateMachine state, IReplicatedLog log)
    {
        ProcessMetrics.Register(Registry);
        Commit = Registry.Histogram("mirrorfs_meta_commit_duration_seconds",
            "Seconds from proposing a command to its reply after apply (durable; with Raft, on a quorum).", Buckets.LatencySeconds);
        CommitErrors = Registry.Counter("mirrorfs_meta_commit_errors_total", "Proposals that failed (not leader, shutdown, I/O).");
        ReadBarrier = Registry.Histogram("mirrorfs_meta_read_barrier_duration_seconds",
            "Seconds a linearizable read waited for the read barrier.", Buckets.LatencySeconds);
        Registry.GaugeCallback("mirrorfs_meta_applied_index", "Index of the last log entry applied to the state machine.", () => log.AppliedIndex);
        Registry.GaugeCallback("mirrorfs_meta_commit_index", "Index of the last log entry known committed.", () => log.CommitIndex);
        Registry.GaugeCallback("mirrorfs_meta_sessions", "Client sessions the state holds.", () => state.Usage().Sessions);
        Registry.GaugeCallback("mirrorfs_meta_inodes", "Inodes in the volume.", () => state.Usage().Inodes);
        Registry.GaugeCallback("mirrorfs_meta_open_inodes", "Inodes some session holds open.", () => state.Usage().OpenInodes);
        Registry.GaugeCallback("mirrorfs_meta_used_bytes", "Bytes of file data the volume accounts for.", () => state.Usage().UsedBytes);
    }

    /// <summary>Every metaserver series; also handed to the RPC server for per-method latency.</summary>
    public MetricsRegistry Registry { get; } = new();

    public Histogram Commit { get; }

    public Counter CommitErrors { get; }

    public Histogram ReadBarrier { get; }

    /// <summary>"ip:port" of the /metrics listener, or null when none was asked for.</summary>
    public string? Address => _listener?.Address;

    /// <summary>The log as the service should see it: the same log, with proposals and read barriers timed.</summary>
    public IReplicatedLog Measure(IReplicatedLog log) => new MeasuredLog(log, this);

    /// <summary>Starts serving GET /metrics on <paramref name="listen"/> ("ip:port"); nothing when it is null.</summary>
    public async Task StartListenerAsync(string? listen, ILoggerFactory? loggers, CancellationToken ct)
    {
        if (listen is not null)
        {
            _listener = await MetricsHttpServer.StartAsync(listen, Registry, loggers, ct).ConfigureAwait(false);
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (_listener is not null)
        {
            await _listener.DisposeAsync().ConfigureAwait(false);
        }
    }

    private sealed class MeasuredLog(IReplicatedLog inner, MetaServerMetrics m) : IReplicatedLog
    {
        public ulong CommitIndex => inner.CommitIndex;

        public ulong AppliedIndex => inner.AppliedIndex;

        public async Task<(ulong Index, byte[] Reply)> ProposeAsync(ReadOnlyMemory<byte> command, CancellationToken ct = default)
        {
            var start = Stopwatch.GetTimestamp();
            try
            {
                var r = await inner.ProposeAsync(command, ct).ConfigureAwait(false);
                m.Commit.ObserveSince(start);
                return r;
            }
            catch
            {
                m.CommitErrors.Inc();
                throw;
            }
        }

        public async Task<ulong> ReadBarrierAsync(CancellationToken ct = default)
        {
            var start = Stopwatch.GetTimestamp();
            var index = await inner.ReadBarrierAsync(ct).ConfigureAwait(false);
            m.ReadBarrier.ObserveSince(start);
            return index;
        }

        // The host owns and disposes the real log.
        public ValueTask DisposeAsync() => ValueTask.CompletedTask;
    }
}
