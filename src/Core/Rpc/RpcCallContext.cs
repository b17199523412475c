using Microsoft.AspNetCore.Http;

namespace MirrorFS.Core.Rpc;

/// <summary>What a handler knows about the call it serves: metadata, peer, deadline and cancellation.</summary>
public sealed class RpcCallContext
{
    private RpcMetadata? _requestHeaders;
    private RpcMetadata? _responseTrailers;

    private readonly CancellationTokenSource _source;

    internal RpcCallContext(RpcTransport transport, string method, DateTime? deadline, CancellationTokenSource source)
    {
        Transport = transport;
        Method = method;
        Deadline = deadline;
        _source = source;
        CancellationToken = source.Token;
    }

    /// <summary>"/package.Service/Method".</summary>
    public string Method { get; }

    /// <summary>When the caller stops waiting (UTC), or null when it gave no <c>grpc-timeout</c>.</summary>
    public DateTime? Deadline { get; }

    /// <summary>Fires when the caller cancels (RST_STREAM), the deadline passes, or the server shuts down.</summary>
    public CancellationToken CancellationToken { get; }

    /// <summary>The caller as gRPC names it: "ipv4:127.0.0.1:40000", "ipv6:[::1]:40000", or "unknown".</summary>
    public string Peer => Transport.Peer;

    /// <summary>Custom request metadata; protocol headers and <c>authorization</c> are left out.</summary>
    public RpcMetadata RequestHeaders => _requestHeaders ??= Transport.ReadMetadata();

    /// <summary>Extra trailers sent with the final status (OK or not).</summary>
    public RpcMetadata ResponseTrailers => _responseTrailers ??= new RpcMetadata();

    /// <summary>The underlying ASP.NET Core request, for what this context does not expose; null when the call
    /// came over the server's direct HTTP/2 connection handling.</summary>
    public HttpContext? HttpContext => (Transport as KestrelRpcTransport)?.Context;

    internal RpcTransport Transport { get; }

    internal bool HasResponseTrailers => _responseTrailers is { Count: > 0 };

    /// <summary>Set once a message has been written to the response body, flushed or not.</summary>
    internal bool MessageWritten { get; set; }

    /// <summary>Set when the handler has finished; later stream writes fail.</summary>
    internal bool Completed { get; set; }

    /// <summary>Set when the response stream was found closed by the client before RequestAborted fired.</summary>
    internal bool ClientGone { get; private set; }

    /// <summary>Cancels the call now: Kestrel reports a reset stream to writers before it fires RequestAborted,
    /// and the handler must see its token cancelled when its write fails.</summary>
    internal void MarkClientGone()
    {
        ClientGone = true;
        try
        {
            _source.Cancel();
        }
        catch (ObjectDisposedException)
        {
            // The call has already ended.
        }
    }
}
