using System.Buffers;
using System.Buffers.Binary;
using System.Diagnostics;
using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using System.IO.Pipelines;
using System.Security.Cryptography;
using System.Text;
using Google.Protobuf;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace MirrorFS.Core.Rpc;

/// <summary>Serves gRPC calls from HTTP/2 requests: looks the method up by path, checks the bearer token,
/// reads the request message, runs the handler under the call's deadline, and writes messages and the status.
/// <see cref="RpcServer"/> runs one on its own Kestrel; <see cref="RpcRouterExtensions.UseRpc"/> mounts one in
/// an existing WebApplication.</summary>
public sealed class RpcRouter
{
    /// <summary>Longest authorization header looked at; a longer one cannot match and is not hashed.</summary>
    private const int AuthorizationCharsMax = 1024;

    /// <summary>Responses up to this size are serialized into one contiguous span.</summary>
    private const int ContiguousWriteBytesMax = 64 * 1024;

    private readonly Lock _mapLock = new();
    private readonly byte[]? _tokenHash;
    private string? _lastAccepted;
    private readonly int _maxMessageBytes;
    private readonly ILogger _logger;
    private readonly CancellationTokenSource _stopping = new();
    private readonly RpcServerMetrics? _metrics;

    // Copy-on-write: lookups on the hot path take no lock.
    private volatile Dictionary<string, RpcMethodHandler> _methods = new(StringComparer.Ordinal);

    public RpcRouter(RpcServerOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.MaxMessageBytes <= 0)
        {
            throw new ArgumentOutOfRangeException(nameof(options), "MaxMessageBytes must be positive.");
        }

        if (options.BearerToken is { } token)
        {
            if (token.Length == 0 || !RpcMetadata.IsValidValue(token))
            {
                throw new ArgumentException("BearerToken must be non-empty printable ASCII.", nameof(options));
            }

            _tokenHash = SHA256.HashData(Encoding.UTF8.GetBytes(token));
        }

        _maxMessageBytes = options.MaxMessageBytes;
        _logger = options.LoggerFactory?.CreateLogger<RpcRouter>() ?? NullLogger<RpcRouter>.Instance;
        _metrics = options.Metrics is null ? null : new RpcServerMetrics(options.Metrics);
    }

    public int MaxMessageBytes => _maxMessageBytes;

    /// <summary>The paths ("/pkg.Service/Method") served.</summary>
    public IReadOnlyCollection<string> Methods => _methods.Keys;

    /// <summary>Registers a unary method. The handler's return value is the response; throw RpcException to
    /// answer with a status.</summary>
    public void MapUnary<TRequest, TResponse>(
        string service,
        string method,
        MessageParser<TRequest> parser,
        Func<TRequest, RpcCallContext, Task<TResponse>> handler)
        where TRequest : IMessage<TRequest>
        where TResponse : IMessage<TResponse>
    {
        ArgumentNullException.ThrowIfNull(parser);
        ArgumentNullException.ThrowIfNull(handler);
        Add(new UnaryMethod<TRequest, TResponse>(MethodPath(service, method), parser, handler));
    }

    /// <summary>Registers a server-streaming method: one request, any number of responses written through the
    /// writer; returning ends the stream with OK.</summary>
    public void MapServerStreaming<TRequest, TResponse>(
        string service,
        string method,
        MessageParser<TRequest> parser,
        Func<TRequest, IRpcStreamWriter<TResponse>, RpcCallContext, Task> handler)
        where TRequest : IMessage<TRequest>
        where TResponse : IMessage<TResponse>
    {
        ArgumentNullException.ThrowIfNull(parser);
        ArgumentNullException.ThrowIfNull(handler);
        Add(new ServerStreamingMethod<TRequest, TResponse>(MethodPath(service, method), parser, handler));
    }

    /// <summary>Cancels calls in flight and answers new ones with UNAVAILABLE. Used when the server stops.</summary>
    public void Shutdown() => _stopping.Cancel();

    /// <summary>Serves one request as a gRPC call; anything not gRPC gets a plain HTTP error.</summary>
    public Task HandleAsync(HttpContext context)
    {
        var request = context.Request;
        if (!HttpMethods.IsPost(request.Method))
        {
            context.Response.StatusCode = StatusCodes.Status405MethodNotAllowed;
            return Task.CompletedTask;
        }

        if (!GrpcProtocol.IsGrpcContentType(request.ContentType))
        {
            context.Response.StatusCode = StatusCodes.Status415UnsupportedMediaType;
            return Task.CompletedTask;
        }

        if (!HttpProtocol.IsHttp2(request.Protocol) && !HttpProtocol.IsHttp3(request.Protocol))
        {
            // gRPC needs trailers, which HTTP/1.1 cannot carry here.
            context.Response.StatusCode = StatusCodes.Status426UpgradeRequired;
            return Task.CompletedTask;
        }

        var response = context.Response;
        response.ContentType = GrpcProtocol.ContentType;

        // gRPC bounds each message, not the body; Kestrel's body limit would cut server-side streams short.
        var bodySize = context.Features.Get<IHttpMaxRequestBodySizeFeature>();
        if (bodySize is { IsReadOnly: false })
        {
            bodySize.MaxRequestBodySize = null;
        }

        var authorization = request.Headers.Authorization;
        var transport = new KestrelRpcTransport(context);
        return TryAdmit(transport, request.Path.Value ?? string.Empty, authorization.Count == 1 ? authorization[0] : null,
            request.Headers[GrpcProtocol.TimeoutHeader] is { Count: > 0 } timeoutHeader ? timeoutHeader[0] : null,
            out var method, out var timeout)
            ? ServeAsync(transport, method, timeout)
            : Task.CompletedTask;
    }

    /// <summary>Checks a call from the server's direct HTTP/2 handling as soon as its headers arrive, so a request
    /// that is refused (not gRPC, no valid token, unknown method) is answered at once and its body is never
    /// buffered. Returns what serves the call once its body has arrived, or null when it has been answered.</summary>
    internal Func<Task>? AdmitDirect(Http2.H2ServerStream stream)
    {
        if (stream.HttpMethod != "POST")
        {
            stream.RespondWithHttpStatus(StatusCodes.Status405MethodNotAllowed);
            return null;
        }

        if (!GrpcProtocol.IsGrpcContentType(stream.ContentType))
        {
            stream.RespondWithHttpStatus(StatusCodes.Status415UnsupportedMediaType);
            return null;
        }

        return TryAdmit(stream, stream.Path, stream.Authorization, stream.Timeout, out var method, out var timeout)
            ? () => ServeAsync(stream, method, timeout)
            : null;
    }

    /// <summary>The checks every call passes before its handler runs: token, method, shutdown, deadline syntax. A
    /// call that fails one is answered here (trailers-only) and false returned.</summary>
    private bool TryAdmit(RpcTransport transport, string path, string? authorization, string? timeoutHeader,
        [NotNullWhen(true)] out RpcMethodHandler? method, out TimeSpan? timeout)
    {
        timeout = null;
        method = null;

        // Authentication comes before the method lookup so that strangers cannot probe which methods exist.
        if (!IsAuthorized(authorization))
        {
            transport.Finish(StatusCode.Unauthenticated,
                "missing or wrong bearer token: send 'authorization: Bearer <token>' with the cluster's token", null, null,
                messageWritten: false);
            return false;
        }

        if (!_methods.TryGetValue(path, out method))
        {
            transport.Finish(StatusCode.Unimplemented, $"unknown method {Truncate(path)}", null, null, messageWritten: false);
            return false;
        }

        if (_stopping.IsCancellationRequested)
        {
            transport.Finish(StatusCode.Unavailable, "server is shutting down; retry on another replica", null, null,
                messageWritten: false);
            return false;
        }

        if (timeoutHeader is not null)
        {
            if (!GrpcProtocol.TryParseTimeout(timeoutHeader, out var parsed))
            {
                transport.Finish(StatusCode.Internal, $"malformed grpc-timeout '{Truncate(timeoutHeader)}'", null, null,
                    messageWritten: false);
                return false;
            }

            timeout = parsed;
        }

        return true;
    }

    /// <summary>Middleware form: serves gRPC requests for mapped methods, passes the rest on.</summary>
    internal Task HandleOrNextAsync(HttpContext context, RequestDelegate next)
    {
        var path = context.Request.Path.Value;
        if (path is not null && _methods.ContainsKey(path))
        {
            return HandleAsync(context);
        }

        return next(context);
    }

    private async Task ServeAsync(RpcTransport transport, RpcMethodHandler method, TimeSpan? timeout)
    {
        if (method.Series is not { } series)
        {
            await ServeCoreAsync(transport, method, timeout);
            return;
        }
        var start = Stopwatch.GetTimestamp();
        var status = StatusCode.Unknown;
        try
        {
            status = await ServeCoreAsync(transport, method, timeout);
        }
        finally
        {
            series.Record(status, start);
        }
    }

    private async Task<StatusCode> ServeCoreAsync(RpcTransport transport, RpcMethodHandler method, TimeSpan? timeout)
    {
        var aborted = transport.Aborted;
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(aborted, _stopping.Token);
        DateTime? deadline = null;
        if (timeout is { } t)
        {
            deadline = DateTime.UtcNow + t;

            // CancelAfter takes at most ~49 days; a longer deadline is no deadline in practice.
            if (t.TotalMilliseconds < uint.MaxValue - 1)
            {
                cts.CancelAfter(t);
            }
        }

        var call = new RpcCallContext(transport, method.Path, deadline, cts);
        StatusCode status = StatusCode.OK;
        string? message = null;
        RpcMetadata? extraTrailers = null;
        try
        {
            await method.InvokeAsync(this, call);
            if (cts.IsCancellationRequested)
            {
                // The handler finished, but too late: the caller has stopped waiting for this answer.
                (status, message) = CancelledStatus(call);
            }
        }
        catch (RpcException ex)
        {
            status = ex.Status;
            message = ex.Message;
            extraTrailers = ex.Trailers;
        }
        catch (Exception) when (aborted.IsCancellationRequested || call.ClientGone)
        {
            // The client reset the stream; nobody is left to answer.
            return StatusCode.Cancelled;
        }
        catch (Exception ex) when (cts.IsCancellationRequested)
        {
            _logger.LogDebug(ex, "RPC {Method} stopped after cancellation", method.Path);
            (status, message) = CancelledStatus(call);
        }
        catch (Exception ex)
        {
            _logger.LogError(ex, "RPC {Method} from {Peer} failed with an unhandled exception", method.Path, call.Peer);
            status = StatusCode.Internal;
            message = $"internal error in {method.Path}; details are in the server log";
        }
        finally
        {
            call.Completed = true;
        }

        if (aborted.IsCancellationRequested || call.ClientGone)
        {
            return StatusCode.Cancelled;
        }

        transport.Finish(status, message, extraTrailers, call.HasResponseTrailers ? call.ResponseTrailers : null,
            call.MessageWritten);
        return status;
    }

    private (StatusCode, string) CancelledStatus(RpcCallContext call) =>
        _stopping.IsCancellationRequested
            ? (StatusCode.Unavailable, "server is shutting down; retry on another replica")
            : (StatusCode.DeadlineExceeded, $"deadline exceeded in {call.Method}");

    /// <summary>Reads the one request message of a unary or server-streaming call.</summary>
    internal async ValueTask<T> ReadSingleMessageAsync<T>(RpcCallContext call, MessageParser<T> parser)
        where T : IMessage<T>
    {
        T? message = default;
        var have = false;
        if (call.Transport.BufferedRequestBody is { } body)
        {
            ConsumeRequest(call, parser, ref body, completed: true, ref message, ref have);
            return message!;
        }

        var reader = call.HttpContext!.Request.BodyReader;
        var token = call.CancellationToken;
        while (true)
        {
            var result = await reader.ReadAsync(token);
            var buffer = result.Buffer;
            var consumed = buffer.Start;
            try
            {
                if (ConsumeRequest(call, parser, ref buffer, result.IsCompleted, ref message, ref have))
                {
                    return message!;
                }

                consumed = have ? buffer.Start : consumed;

                if (result.IsCanceled)
                {
                    throw new OperationCanceledException(token);
                }
            }
            finally
            {
                reader.AdvanceTo(consumed, buffer.End);
            }
        }
    }

    /// <summary>Takes the request message from what has arrived; true when the call's one message is complete and
    /// the body has ended. Throws the call's status for compressed, oversized, missing, truncated or extra messages.
    /// </summary>
    private bool ConsumeRequest<T>(RpcCallContext call, MessageParser<T> parser, ref ReadOnlySequence<byte> buffer,
        bool completed, ref T? message, ref bool have)
        where T : IMessage<T>
    {
        if (!have && buffer.Length >= GrpcProtocol.FrameHeaderBytes)
        {
            var length = ReadFrameHeader(call, buffer);
            if (buffer.Length - GrpcProtocol.FrameHeaderBytes >= length)
            {
                message = Parse(parser, buffer.Slice(GrpcProtocol.FrameHeaderBytes, length), call.Method);
                have = true;
                buffer = buffer.Slice(GrpcProtocol.FrameHeaderBytes + length);
            }
        }

        if (have && !buffer.IsEmpty)
        {
            throw new RpcException(StatusCode.Internal, $"{call.Method} takes one request message but the client sent more");
        }

        if (!completed)
        {
            return false;
        }

        return have
            ? true
            : throw new RpcException(StatusCode.Internal, buffer.IsEmpty
                ? $"{call.Method} got no request message"
                : $"{call.Method} got a truncated request message");
    }

    /// <summary>Appends one framed message to the response without flushing.</summary>
    internal void WriteMessage<T>(RpcCallContext call, T message)
        where T : IMessage<T>
    {
        var size = message.CalculateSize();
        if (size > _maxMessageBytes)
        {
            throw new RpcException(StatusCode.ResourceExhausted,
                $"{call.Method} response message of {size} bytes exceeds the limit of {_maxMessageBytes} bytes");
        }

        var writer = call.Transport.ResponseBody;
        if (size <= ContiguousWriteBytesMax)
        {
            var span = writer.GetSpan(GrpcProtocol.FrameHeaderBytes + size);
            GrpcProtocol.WriteFrameHeader(span, size);
            message.WriteTo(span.Slice(GrpcProtocol.FrameHeaderBytes, size));
            writer.Advance(GrpcProtocol.FrameHeaderBytes + size);
        }
        else
        {
            GrpcProtocol.WriteFrameHeader(writer.GetSpan(GrpcProtocol.FrameHeaderBytes), size);
            writer.Advance(GrpcProtocol.FrameHeaderBytes);
            message.WriteTo(writer);
        }

        call.MessageWritten = true;
    }

    private int ReadFrameHeader(RpcCallContext call, in ReadOnlySequence<byte> buffer)
    {
        Span<byte> header = stackalloc byte[GrpcProtocol.FrameHeaderBytes];
        buffer.Slice(0, GrpcProtocol.FrameHeaderBytes).CopyTo(header);
        var flag = header[0];
        if (flag == 1)
        {
            var encoding = call.Transport.RequestHeader(GrpcProtocol.EncodingHeader) ?? string.Empty;
            if (encoding.Length == 0 || encoding == "identity")
            {
                throw new RpcException(StatusCode.Internal,
                    "request message is marked compressed but no grpc-encoding was given");
            }

            call.Transport.SetResponseHeader(GrpcProtocol.AcceptEncodingHeader, "identity");
            throw new RpcException(StatusCode.Unimplemented,
                $"grpc-encoding '{Truncate(encoding)}' is not supported; send uncompressed messages (identity)");
        }

        if (flag != 0)
        {
            throw new RpcException(StatusCode.Internal, $"request message has an invalid flags byte {flag}");
        }

        var length = BinaryPrimitives.ReadUInt32BigEndian(header[1..]);
        if (length > (uint)_maxMessageBytes)
        {
            throw new RpcException(StatusCode.ResourceExhausted,
                $"{call.Method} request message of {length} bytes exceeds the limit of {_maxMessageBytes} bytes");
        }

        return (int)length;
    }

    private static T Parse<T>(MessageParser<T> parser, in ReadOnlySequence<byte> payload, string method)
        where T : IMessage<T>
    {
        try
        {
            return parser.ParseFrom(payload);
        }
        catch (InvalidProtocolBufferException ex)
        {
            throw new RpcException(StatusCode.Internal, $"{method} cannot parse the request message: {ex.Message}");
        }
    }

    /// <param name="value">The one authorization header, or null when there was none or more than one.</param>
    private bool IsAuthorized(string? value)
    {
        if (_tokenHash is null)
        {
            return true;
        }

        const string Scheme = "Bearer ";
        if (value is null || value.Length > AuthorizationCharsMax
            || !value.StartsWith(Scheme, StringComparison.OrdinalIgnoreCase))
        {
            return false;
        }

        // Kestrel reuses a connection's header value strings, and the HPACK decoder returns the string of a
        // dynamic-table entry each time it is indexed: one already accepted needs no second hash.
        if (ReferenceEquals(value, Volatile.Read(ref _lastAccepted)))
        {
            return true;
        }

        // Hashing first makes the comparison independent of where the strings differ and of their lengths.
        var presented = value.AsSpan(Scheme.Length).Trim();
        Span<byte> utf8 = stackalloc byte[AuthorizationCharsMax * 3];
        var count = Encoding.UTF8.GetBytes(presented, utf8);
        Span<byte> hash = stackalloc byte[SHA256.HashSizeInBytes];
        SHA256.HashData(utf8[..count], hash);
        if (!CryptographicOperations.FixedTimeEquals(hash, _tokenHash))
        {
            return false;
        }
        Volatile.Write(ref _lastAccepted, value);
        return true;
    }

    private void Add(RpcMethodHandler handler)
    {
        handler.Series = _metrics?.For(handler.Path);
        lock (_mapLock)
        {
            if (_methods.ContainsKey(handler.Path))
            {
                throw new InvalidOperationException($"RPC method {handler.Path} is already mapped.");
            }

            _methods = new Dictionary<string, RpcMethodHandler>(_methods, StringComparer.Ordinal)
            {
                [handler.Path] = handler,
            };
        }
    }

    private static string MethodPath(string service, string method)
    {
        if (string.IsNullOrWhiteSpace(service) || service.Contains('/', StringComparison.Ordinal))
        {
            throw new ArgumentException($"Invalid gRPC service name '{service}'; use 'package.Service'.", nameof(service));
        }

        if (string.IsNullOrWhiteSpace(method) || method.Contains('/', StringComparison.Ordinal))
        {
            throw new ArgumentException($"Invalid gRPC method name '{method}'.", nameof(method));
        }

        return $"/{service}/{method}";
    }

    /// <summary>Bounds client-supplied text echoed in a status message.</summary>
    private static string Truncate(string value) => value.Length <= 200 ? value : value[..200] + "...";

    private abstract class RpcMethodHandler(string path)
    {
        public string Path { get; } = path;

        /// <summary>Latency and status series; null when the router records no metrics.</summary>
        public RpcServerMetrics.MethodSeries? Series { get; set; }

        public abstract Task InvokeAsync(RpcRouter router, RpcCallContext call);
    }

    private sealed class UnaryMethod<TRequest, TResponse>(
        string path,
        MessageParser<TRequest> parser,
        Func<TRequest, RpcCallContext, Task<TResponse>> handler) : RpcMethodHandler(path)
        where TRequest : IMessage<TRequest>
        where TResponse : IMessage<TResponse>
    {
        public override async Task InvokeAsync(RpcRouter router, RpcCallContext call)
        {
            var request = await router.ReadSingleMessageAsync(call, parser);
            var response = await handler(request, call)
                ?? throw new InvalidOperationException($"Handler of {Path} returned null.");

            // A late answer is not sent: the caller has already been told DEADLINE_EXCEEDED or has left.
            call.CancellationToken.ThrowIfCancellationRequested();

            // Not flushed: Kestrel sends headers, the message and the trailers together when the call ends.
            router.WriteMessage(call, response);
        }
    }

    private sealed class ServerStreamingMethod<TRequest, TResponse>(
        string path,
        MessageParser<TRequest> parser,
        Func<TRequest, IRpcStreamWriter<TResponse>, RpcCallContext, Task> handler) : RpcMethodHandler(path)
        where TRequest : IMessage<TRequest>
        where TResponse : IMessage<TResponse>
    {
        public override async Task InvokeAsync(RpcRouter router, RpcCallContext call)
        {
            var request = await router.ReadSingleMessageAsync(call, parser);
            await handler(request, new StreamWriter<TResponse>(router, call), call);
        }
    }

    private sealed class StreamWriter<T>(RpcRouter router, RpcCallContext call) : IRpcStreamWriter<T>
        where T : IMessage<T>
    {
        private int _writing;

        public async Task WriteAsync(T message)
        {
            ArgumentNullException.ThrowIfNull(message);
            if (call.Completed)
            {
                throw new InvalidOperationException($"The {call.Method} call has finished; it cannot send more messages.");
            }

            if (Interlocked.Exchange(ref _writing, 1) != 0)
            {
                throw new InvalidOperationException($"Another write on {call.Method} is still running; await each write.");
            }

            try
            {
                call.CancellationToken.ThrowIfCancellationRequested();
                router.WriteMessage(call, message);
                bool sent;
                try
                {
                    sent = await call.Transport.FlushAsync(call.CancellationToken);
                }
                catch (Exception ex) when (ex is not OperationCanceledException)
                {
                    // A broken connection: treat like a reset so the handler sees its token cancelled.
                    call.MarkClientGone();
                    throw new OperationCanceledException("The client connection is gone.", ex, call.CancellationToken);
                }

                if (!sent)
                {
                    // The client reset the stream or left; Kestrel may not have fired RequestAborted yet.
                    call.MarkClientGone();
                    throw new OperationCanceledException(call.CancellationToken);
                }
            }
            finally
            {
                Volatile.Write(ref _writing, 0);
            }
        }
    }
}

/// <summary>Mounts an <see cref="RpcRouter"/> in an existing ASP.NET Core pipeline. Kestrel must serve HTTP/2 on
/// the endpoint the gRPC clients use.</summary>
public static class RpcRouterExtensions
{
    public static IApplicationBuilder UseRpc(this IApplicationBuilder app, RpcRouter router)
    {
        ArgumentNullException.ThrowIfNull(router);
        return app.Use((context, next) => router.HandleOrNextAsync(context, next));
    }
}
