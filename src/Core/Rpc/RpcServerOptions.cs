using Microsoft.Extensions.Logging;
using MirrorFS.Core.Metrics;

namespace MirrorFS.Core.Rpc;

/// <summary>Settings of an <see cref="RpcServer"/> (and of an <see cref="RpcRouter"/> hosted elsewhere).</summary>
public sealed class RpcServerOptions
{
    /// <summary>"ip:port" to listen on (cleartext HTTP/2); port 0 picks a free one. "localhost:port" means
    /// 127.0.0.1. Ignored when the router is hosted in an existing WebApplication.</summary>
    public string Listen { get; init; } = "127.0.0.1:0";

    /// <summary>When set, every call must carry <c>authorization: Bearer &lt;token&gt;</c>.</summary>
    public string? BearerToken { get; init; }

    /// <summary>Largest request or response message, in bytes (without the 5-byte prefix).</summary>
    public int MaxMessageBytes { get; init; } = GrpcProtocol.DefaultMaxMessageBytes;

    /// <summary>Most concurrent calls (HTTP/2 streams) per client connection.</summary>
    public int MaxStreamsPerConnection { get; init; } = 256;

    /// <summary>How long DisposeAsync lets calls finish after cancelling them.</summary>
    public int ShutdownTimeoutMs { get; init; } = 5_000;

    /// <summary>Runs socket I/O continuations on the I/O thread instead of queueing them to the thread pool
    /// (Kestrel's UnsafePreferInlineScheduling): one thread hop less per call. Safe because no handler blocks.</summary>
    public bool InlineScheduling { get; init; } = Environment.GetEnvironmentVariable("MIRRORFS_RPC_INLINE") != "0";

    /// <summary>Serves calls with the server's own HTTP/2 frame handling, run as Kestrel connection middleware, instead
    /// of Kestrel's HTTP/2 layer: a call is served on the thread that read it and answered from the thread that
    /// finished it, without the thread-pool hops Kestrel's layer makes for every request and response. On by
    /// default; <c>MIRRORFS_RPC_DIRECT_SERVER=0</c> turns it off.</summary>
    public bool DirectHttp2 { get; init; } = Environment.GetEnvironmentVariable("MIRRORFS_RPC_DIRECT_SERVER") != "0";

    /// <summary>When set, each call's latency and status are recorded here by method.</summary>
    public MetricsRegistry? Metrics { get; init; }

    /// <summary>Where failures are logged (stack traces of handler exceptions go here, never to the caller).</summary>
    public ILoggerFactory? LoggerFactory { get; init; }
}
