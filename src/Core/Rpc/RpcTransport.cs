using System.Buffers;
using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Http;

namespace MirrorFS.Core.Rpc;

/// <summary>The HTTP/2 stream a call arrived on, as the router sees it: request headers, the response body, and how
/// the call ends. Two kinds exist: Kestrel's own HTTP/2 requests (<see cref="KestrelRpcTransport"/>) and the streams
/// of the server's direct HTTP/2 connections (<see cref="Http2.H2ServerStream"/>).</summary>
internal abstract class RpcTransport
{
    /// <summary>Fires when the client resets the stream or the connection drops.</summary>
    public abstract CancellationToken Aborted { get; }

    /// <summary>The caller as gRPC names it: "ipv4:127.0.0.1:40000", "ipv6:[::1]:40000", or "unknown".</summary>
    public abstract string Peer { get; }

    /// <summary>Where response messages are written; sent by <see cref="FlushAsync"/> or <see cref="Finish"/>.</summary>
    public abstract IBufferWriter<byte> ResponseBody { get; }

    /// <summary>The request body when it is already wholly received, else null (it is then read from
    /// <see cref="KestrelRpcTransport.Context"/>).</summary>
    public abstract ReadOnlySequence<byte>? BufferedRequestBody { get; }

    /// <summary>The first value of a request header (lower-case name), or null.</summary>
    public abstract string? RequestHeader(string name);

    /// <summary>Custom request metadata: protocol headers and <c>authorization</c> left out.</summary>
    public abstract RpcMetadata ReadMetadata();

    /// <summary>Sets a response header; only before anything was sent.</summary>
    public abstract void SetResponseHeader(string name, string value);

    /// <summary>Sends what the response body holds. False when the client has gone (reset or disconnected).</summary>
    public abstract ValueTask<bool> FlushAsync(CancellationToken cancellationToken);

    /// <summary>Ends the call with its status: trailers after the messages, or a trailers-only response when nothing
    /// was written.</summary>
    public abstract void Finish(StatusCode status, string? message, RpcMetadata? extra, RpcMetadata? trailers,
        bool messageWritten);

    /// <summary>Formats a peer address the gRPC way.</summary>
    public static string FormatPeer(IPAddress? address, int port)
    {
        if (address is { IsIPv4MappedToIPv6: true })
        {
            address = address.MapToIPv4();
        }

        return address switch
        {
            null => "unknown",
            { AddressFamily: AddressFamily.InterNetworkV6 } ip => $"ipv6:[{ip}]:{port}",
            IPAddress ip => $"ipv4:{ip}:{port}",
        };
    }
}

/// <summary>A call served by Kestrel's HTTP/2 implementation (the router hosted in a WebApplication, or
/// <see cref="RpcServerOptions.DirectHttp2"/> turned off).</summary>
internal sealed class KestrelRpcTransport(HttpContext context) : RpcTransport
{
    public HttpContext Context { get; } = context;

    public override CancellationToken Aborted => Context.RequestAborted;

    public override string Peer => FormatPeer(Context.Connection.RemoteIpAddress, Context.Connection.RemotePort);

    public override IBufferWriter<byte> ResponseBody => Context.Response.BodyWriter;

    public override ReadOnlySequence<byte>? BufferedRequestBody => null;

    public override string? RequestHeader(string name)
    {
        var values = Context.Request.Headers[name];
        return values.Count > 0 ? values[0] : null;
    }

    public override RpcMetadata ReadMetadata()
    {
        var metadata = new RpcMetadata();
        foreach (var header in Context.Request.Headers)
        {
            // Kestrel names known headers in canonical case ("User-Agent"); gRPC metadata keys are lower-case.
            var key = header.Key.ToLowerInvariant();

            // Pseudo-headers (":path") and protocol headers are not metadata.
            if (key.StartsWith(':') || RpcMetadata.IsReservedKey(key))
            {
                continue;
            }

            foreach (var value in header.Value)
            {
                if (value is not null)
                {
                    metadata.AddReceived(key, value);
                }
            }
        }

        return metadata;
    }

    public override void SetResponseHeader(string name, string value) => Context.Response.Headers[name] = value;

    public override async ValueTask<bool> FlushAsync(CancellationToken cancellationToken)
    {
        var result = await Context.Response.BodyWriter.FlushAsync(cancellationToken);

        // Kestrel reports a reset stream to writers before it fires RequestAborted.
        return !result.IsCanceled && !result.IsCompleted;
    }

    public override void Finish(StatusCode status, string? message, RpcMetadata? extra, RpcMetadata? trailers,
        bool messageWritten)
    {
        var response = Context.Response;
        if (!response.HasStarted && !messageWritten)
        {
            // Trailers-only: the status travels in the one HEADERS frame.
            var headers = response.Headers;
            headers[GrpcProtocol.StatusHeader] = GrpcProtocol.StatusText(status);
            if (!string.IsNullOrEmpty(message))
            {
                headers[GrpcProtocol.MessageHeader] = GrpcProtocol.EncodeMessage(message);
            }

            foreach (var set in (ReadOnlySpan<RpcMetadata?>)[extra, trailers])
            {
                if (set is null)
                {
                    continue;
                }

                foreach (var entry in set)
                {
                    headers.Append(entry.Key, entry.Value);
                }
            }

            return;
        }

        if (!response.SupportsTrailers())
        {
            // Cannot happen on HTTP/2; without trailers the caller could not tell success from failure.
            Context.Abort();
            return;
        }

        response.AppendTrailer(GrpcProtocol.StatusHeader, GrpcProtocol.StatusText(status));
        if (!string.IsNullOrEmpty(message))
        {
            response.AppendTrailer(GrpcProtocol.MessageHeader, GrpcProtocol.EncodeMessage(message));
        }

        foreach (var set in (ReadOnlySpan<RpcMetadata?>)[extra, trailers])
        {
            if (set is null)
            {
                continue;
            }

            foreach (var entry in set)
            {
                response.AppendTrailer(entry.Key, entry.Value);
            }
        }
    }
}
