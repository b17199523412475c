namespace MirrorFS.Core.Rpc;

/// <summary>Settings of an <see cref="RpcChannel"/>.</summary>
public sealed class RpcChannelOptions
{
    /// <summary>"host:port" or "http://host:port" of the server (cleartext HTTP/2).</summary>
    public required string Address { get; init; }

    /// <summary>Sent as <c>authorization: Bearer &lt;token&gt;</c> on every call when set.</summary>
    public string? BearerToken { get; init; }

    /// <summary>Largest request or response message, in bytes (without the 5-byte prefix).</summary>
    public int MaxMessageBytes { get; init; } = GrpcProtocol.DefaultMaxMessageBytes;

    /// <summary>How long opening a TCP connection may take before the call fails UNAVAILABLE.</summary>
    public int ConnectTimeoutMs { get; init; } = 5_000;

    /// <summary>Timeout of a unary call that names no deadline; null for none. Streams have no default.</summary>
    public int? DefaultUnaryTimeoutMs { get; init; } = 30_000;

    /// <summary>Unary calls go over the channel's own HTTP/2 connection (fewer thread hops per call), falling back
    /// to HttpClient when it cannot take a call; streams always use HttpClient. Environment variable
    /// <c>MIRRORFS_RPC_DIRECT=0</c> turns it off for every channel.</summary>
    public bool DirectHttp2 { get; init; } = true;

    /// <summary>Shares connections between channels (e.g. one per metaserver). When null the channel creates
    /// its own with <see cref="RpcChannel.CreateHandler"/> and disposes it; a given one is not disposed.</summary>
    public HttpMessageInvoker? HttpInvoker { get; init; }
}
