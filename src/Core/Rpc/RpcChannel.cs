using System.Collections.Concurrent;
using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Runtime.CompilerServices;
using Google.Protobuf;

namespace MirrorFS.Core.Rpc;

/// <summary>A gRPC client for one server over a shared HTTP/2 connection pool (cleartext, prior knowledge).
/// Thread-safe; create one per server and reuse it. Every failure surfaces as <see cref="RpcException"/>.</summary>
public sealed partial class RpcChannel : IDisposable
{
    private const string UserAgent = "mirrorfs-rpc/1";

    /// <summary>Bounds the path cache; services have a handful of methods.</summary>
    private const int UriCacheEntriesMax = 1024;

    private readonly HttpMessageInvoker _invoker;
    private readonly bool _ownsInvoker;
    private readonly Uri _baseUri;
    private readonly string? _authorization;
    private readonly ConcurrentDictionary<(string Service, string Method), Uri> _uris = new();

    public RpcChannel(RpcChannelOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.MaxMessageBytes <= 0)
        {
            throw new ArgumentOutOfRangeException(nameof(options), "MaxMessageBytes must be positive.");
        }

        _baseUri = ParseAddress(options.Address);
        Authority = $"{_baseUri.Host}:{_baseUri.Port}";
        if (options.BearerToken is { } token)
        {
            if (token.Length == 0 || !RpcMetadata.IsValidValue(token))
            {
                throw new ArgumentException("BearerToken must be non-empty printable ASCII.", nameof(options));
            }

            _authorization = "Bearer " + token;
        }

        MaxMessageBytes = options.MaxMessageBytes;
        _direct = options.DirectHttp2 && Environment.GetEnvironmentVariable("MIRRORFS_RPC_DIRECT") != "0";
        ConnectTimeoutMs = options.ConnectTimeoutMs;
        DefaultUnaryTimeoutMs = options.DefaultUnaryTimeoutMs;
        _ownsInvoker = options.HttpInvoker is null;
        _invoker = options.HttpInvoker ?? new HttpMessageInvoker(CreateHandler(options.ConnectTimeoutMs), disposeHandler: true);
    }

    /// <summary>"host:port" of the server, as used in error messages.</summary>
    public string Authority { get; }

    public int MaxMessageBytes { get; }

    public int ConnectTimeoutMs { get; }

    public int? DefaultUnaryTimeoutMs { get; }

    /// <summary>The connection pool settings RpcChannel uses; pass one (wrapped in an HttpMessageInvoker) to
    /// several channels to share it.</summary>
    public static SocketsHttpHandler CreateHandler(int connectTimeoutMs = 5_000) => new()
    {
        // One connection carries at most the server's stream limit; more calls open more connections.
        EnableMultipleHttp2Connections = true,
        ConnectTimeout = TimeSpan.FromMilliseconds(connectTimeoutMs),
        UseProxy = false,
        UseCookies = false,
        AllowAutoRedirect = false,
        AutomaticDecompression = DecompressionMethods.None,
        PooledConnectionIdleTimeout = TimeSpan.FromMinutes(5),

        // Pings find a dead peer under a long stream that would otherwise wait forever.
        KeepAlivePingDelay = TimeSpan.FromSeconds(20),
        KeepAlivePingTimeout = TimeSpan.FromSeconds(10),
        KeepAlivePingPolicy = HttpKeepAlivePingPolicy.WithActiveRequests,
    };

    /// <summary>Makes a unary call. Throws RpcException with the server's status, or with UNAVAILABLE,
    /// DEADLINE_EXCEEDED, CANCELLED, RESOURCE_EXHAUSTED for what happens on the way.</summary>
    public async Task<TResponse> UnaryAsync<TRequest, TResponse>(
        string service,
        string method,
        TRequest request,
        MessageParser<TResponse> parser,
        CallOptions options = default)
        where TRequest : IMessage<TRequest>
        where TResponse : IMessage<TResponse>
    {
        ArgumentNullException.ThrowIfNull(request);
        ArgumentNullException.ThrowIfNull(parser);
        if (_direct && await GetDirectConnectionAsync() is { } connection)
        {
            var (sent, response) = await DirectUnaryAsync(connection, service, method, request, parser, options);
            if (sent)
            {
                return response!;
            }
        }

        return await HttpClientUnaryAsync(service, method, request, parser, options);
    }

    private async Task<TResponse> HttpClientUnaryAsync<TRequest, TResponse>(
        string service,
        string method,
        TRequest request,
        MessageParser<TResponse> parser,
        CallOptions options)
        where TRequest : IMessage<TRequest>
        where TResponse : IMessage<TResponse>
    {
        Interlocked.Increment(ref _httpClientUnaryCalls);
        using var call = new ClientCall(this, GetUri(service, method), options, unary: true, CancellationToken.None);
        await call.StartAsync(request);
        if (!await call.ReadMessageAsync())
        {
            throw new RpcException(StatusCode.Internal, $"{call.Path} ended with OK but sent no response message");
        }

        var response = call.Parse(parser);
        if (await call.ReadMessageAsync())
        {
            throw new RpcException(StatusCode.Internal, $"{call.Path} sent more than one response message");
        }

        return response;
    }

    /// <summary>Makes a server-streaming call. Messages arrive as the server sends them; stopping the enumeration
    /// early cancels the call on the server.</summary>
    public async IAsyncEnumerable<TResponse> ServerStreamingAsync<TRequest, TResponse>(
        string service,
        string method,
        TRequest request,
        MessageParser<TResponse> parser,
        CallOptions options = default,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
        where TRequest : IMessage<TRequest>
        where TResponse : IMessage<TResponse>
    {
        ArgumentNullException.ThrowIfNull(request);
        ArgumentNullException.ThrowIfNull(parser);
        using var call = new ClientCall(this, GetUri(service, method), options, unary: false, cancellationToken);
        await call.StartAsync(request);
        while (await call.ReadMessageAsync())
        {
            yield return call.Parse(parser);
        }
    }

    public void Dispose()
    {
        DisposeDirect();
        if (_ownsInvoker)
        {
            _invoker.Dispose();
        }
    }

    /// <summary>A call's status from grpc-status and grpc-message (null when absent) and the header block's
    /// fields: false when there is no status; otherwise the failure as an exception carrying the custom trailers as
    /// metadata, or null for OK.</summary>
    private static bool TryStatusOf(string? statusText, string? messageText, IEnumerable<KeyValuePair<string, string>> fields,
        out RpcException? error)
    {
        error = null;
        if (statusText is null)
        {
            return false;
        }

        var code = int.TryParse(statusText, NumberStyles.None, CultureInfo.InvariantCulture, out var n)
            && n is >= 0 and <= 16 ? (StatusCode)n : StatusCode.Unknown;
        if (code == StatusCode.OK)
        {
            return true;
        }

        var message = messageText is null ? string.Empty : GrpcProtocol.DecodeMessage(messageText);
        RpcMetadata? trailers = null;
        foreach (var (key, value) in fields)
        {
            if (RpcMetadata.IsReservedKey(key) || !RpcMetadata.IsValidKey(key)
                || key is "date" or "server" or "content-encoding" or "vary")
            {
                continue;
            }

            trailers ??= new RpcMetadata();
            trailers.AddReceived(key, value);
        }

        error = new RpcException(code, message, trailers);
        return true;
    }

    /// <summary>The call's time limit: the earlier of its timeout and deadline, else the channel's unary default.</summary>
    private TimeSpan? TimeoutOf(CallOptions options, bool unary)
    {
        TimeSpan? timeout = options.TimeoutMs is { } ms ? TimeSpan.FromMilliseconds(ms) : null;
        if (options.Deadline is { } deadline)
        {
            var remaining = deadline.ToUniversalTime() - DateTime.UtcNow;
            timeout = timeout is { } t && t < remaining ? t : remaining;
        }

        if (timeout is null && unary && DefaultUnaryTimeoutMs is { } defaultMs)
        {
            timeout = TimeSpan.FromMilliseconds(defaultMs);
        }

        return timeout;
    }

    private Uri GetUri(string service, string method)
    {
        if (_uris.TryGetValue((service, method), out var uri))
        {
            return uri;
        }

        if (string.IsNullOrEmpty(service) || string.IsNullOrEmpty(method)
            || service.Contains('/', StringComparison.Ordinal) || method.Contains('/', StringComparison.Ordinal))
        {
            throw new ArgumentException($"Invalid gRPC method '{service}/{method}'; use 'package.Service' and 'Method'.");
        }

        uri = new Uri(_baseUri, $"/{service}/{method}");
        if (_uris.Count < UriCacheEntriesMax)
        {
            _uris.TryAdd((service, method), uri);
        }

        return uri;
    }

    private static Uri ParseAddress(string address)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(address);
        var text = address.Contains("://", StringComparison.Ordinal) ? address : "http://" + address;
        if (!Uri.TryCreate(text, UriKind.Absolute, out var uri)
            || uri.Scheme is not ("http" or "https")
            || (uri.AbsolutePath != "/" && uri.AbsolutePath.Length > 0))
        {
            throw new ArgumentException(
                $"Invalid RPC address '{address}': use host:port or http://host:port, e.g. 127.0.0.1:7000.", nameof(address));
        }

        return new Uri($"{uri.Scheme}://{uri.Host}:{uri.Port}/");
    }

    /// <summary>One call in flight: owns the HTTP exchange, the call's cancellation, and the frame reader.</summary>
    private sealed class ClientCall : IDisposable
    {
        private readonly RpcChannel _channel;
        private readonly Uri _uri;
        private readonly CallOptions _options;
        private readonly CancellationToken _callerToken;
        private readonly CancellationTokenSource? _cts;
        private readonly TimeSpan? _timeout;
        private HttpRequestMessage? _request;
        private HttpResponseMessage? _response;
        private GrpcFrameReader? _reader;
        private bool _finished;

        public ClientCall(RpcChannel channel, Uri uri, CallOptions options, bool unary, CancellationToken callerToken)
        {
            _channel = channel;
            _uri = uri;
            _options = options;
            _callerToken = callerToken;
            Path = uri.AbsolutePath;

            var timeout = channel.TimeoutOf(options, unary);
            _timeout = timeout;
            var first = options.CancellationToken;
            if (first.CanBeCanceled && callerToken.CanBeCanceled)
            {
                _cts = CancellationTokenSource.CreateLinkedTokenSource(first, callerToken);
            }
            else if (first.CanBeCanceled || callerToken.CanBeCanceled)
            {
                _cts = CancellationTokenSource.CreateLinkedTokenSource(first.CanBeCanceled ? first : callerToken);
            }
            else if (timeout is not null)
            {
                _cts = new CancellationTokenSource();
            }

            if (timeout is { } limit && limit > TimeSpan.Zero && limit.TotalMilliseconds < uint.MaxValue - 1)
            {
                _cts!.CancelAfter(limit);
            }

            Token = _cts?.Token ?? CancellationToken.None;
        }

        public string Path { get; }

        private CancellationToken Token { get; }

        public async Task StartAsync<TRequest>(TRequest message)
            where TRequest : IMessage<TRequest>
        {
            if (_timeout is { } timeout && timeout <= TimeSpan.Zero)
            {
                throw new RpcException(StatusCode.DeadlineExceeded, $"{Path} was not sent: its deadline had already passed");
            }

            var size = message.CalculateSize();
            if (size > _channel.MaxMessageBytes)
            {
                throw new RpcException(StatusCode.ResourceExhausted,
                    $"{Path} request message of {size} bytes exceeds the limit of {_channel.MaxMessageBytes} bytes");
            }

            var request = new HttpRequestMessage(HttpMethod.Post, _uri)
            {
                Version = HttpVersion.Version20,
                VersionPolicy = HttpVersionPolicy.RequestVersionExact,
                Content = new GrpcRequestContent<TRequest>(message, size),
            };
            _request = request;
            var headers = request.Headers;
            headers.TryAddWithoutValidation("TE", "trailers");
            headers.TryAddWithoutValidation("User-Agent", UserAgent);
            if (_channel._authorization is { } authorization)
            {
                headers.TryAddWithoutValidation("Authorization", authorization);
            }

            if (_timeout is { } t)
            {
                headers.TryAddWithoutValidation(GrpcProtocol.TimeoutHeader, GrpcProtocol.FormatTimeout(t));
            }

            if (_options.Metadata is { Count: > 0 } metadata)
            {
                foreach (var entry in metadata)
                {
                    headers.TryAddWithoutValidation(entry.Key, entry.Value);
                }
            }

            try
            {
                _response = await _channel._invoker.SendAsync(request, Token);
            }
            catch (Exception ex)
            {
                throw Map(ex);
            }

            var response = _response;
            var hasStatus = TryReadStatus(response.Headers, out var error);
            if (response.StatusCode != HttpStatusCode.OK)
            {
                throw error ?? new RpcException(GrpcProtocol.StatusFromHttp((int)response.StatusCode),
                    $"{Path} on {_channel.Authority} answered HTTP {(int)response.StatusCode} instead of a gRPC response");
            }

            if (hasStatus)
            {
                // Trailers-only response: no messages, the status came with the headers.
                _finished = true;
                if (error is not null)
                {
                    throw error;
                }

                return;
            }

            if (!response.Content.Headers.NonValidated.TryGetValues("Content-Type", out var contentType)
                || !GrpcProtocol.IsGrpcContentType(contentType.ToString()))
            {
                throw new RpcException(StatusCode.Unknown,
                    $"{Path} on {_channel.Authority} answered content-type '{contentType}' instead of application/grpc");
            }

            try
            {
                var stream = await response.Content.ReadAsStreamAsync(Token);
                _reader = new GrpcFrameReader(stream, _channel.MaxMessageBytes);
            }
            catch (Exception ex)
            {
                throw Map(ex);
            }
        }

        /// <summary>True with a message in the reader; false at the end of an OK call; throws on a failed one.</summary>
        public async ValueTask<bool> ReadMessageAsync()
        {
            if (_finished)
            {
                return false;
            }

            try
            {
                if (await _reader!.ReadMessageAsync(Path, Token))
                {
                    return true;
                }
            }
            catch (Exception ex)
            {
                throw Map(ex);
            }

            _finished = true;
            if (!TryReadStatus(_response!.TrailingHeaders, out var error))
            {
                throw new RpcException(StatusCode.Internal, $"{Path} on {_channel.Authority} ended without a grpc-status trailer");
            }

            return error is null ? false : throw error;
        }

        public T Parse<T>(MessageParser<T> parser)
            where T : IMessage<T>
        {
            try
            {
                return parser.ParseFrom(_reader!.Payload.Span);
            }
            catch (InvalidProtocolBufferException ex)
            {
                throw new RpcException(StatusCode.Internal, $"{Path} response message cannot be parsed: {ex.Message}");
            }
        }

        public void Dispose()
        {
            _reader?.Dispose();

            // Disposing a response not read to its end resets the stream, which cancels the call on the server.
            _response?.Dispose();
            _request?.Dispose();
            _cts?.Dispose();
        }

        /// <summary>Reads grpc-status from headers or trailers (see <see cref="TryStatusOf"/>).</summary>
        private static bool TryReadStatus(HttpHeaders headers, out RpcException? error)
        {
            var view = headers.NonValidated;
            var status = view.TryGetValues(GrpcProtocol.StatusHeader, out var statusValues) ? statusValues.ToString() : null;
            var message = view.TryGetValues(GrpcProtocol.MessageHeader, out var messageValues) ? messageValues.ToString() : null;
            return TryStatusOf(status, message, Fields(view), out error);
        }

        private static IEnumerable<KeyValuePair<string, string>> Fields(HttpHeadersNonValidated view)
        {
            foreach (var header in view)
            {
                var key = header.Key.ToLowerInvariant();
                foreach (var value in header.Value)
                {
                    yield return new(key, value);
                }
            }
        }

        private RpcException Map(Exception ex)
        {
            switch (ex)
            {
                case RpcException rpc:
                    return rpc;
                case OperationCanceledException or IOException or HttpRequestException
                    when _options.CancellationToken.IsCancellationRequested || _callerToken.IsCancellationRequested:
                    return new RpcException(StatusCode.Cancelled, $"{Path} was cancelled by the caller", ex);
                case OperationCanceledException or IOException or HttpRequestException when Token.IsCancellationRequested:
                    return new RpcException(StatusCode.DeadlineExceeded,
                        $"{Path} on {_channel.Authority} exceeded its deadline of {_timeout?.TotalMilliseconds:0.###} ms", ex);
            }

            var protocol = ex as HttpProtocolException ?? ex.InnerException as HttpProtocolException;
            if (protocol is not null)
            {
                // HTTP/2 error codes as the gRPC spec maps RST_STREAM / GOAWAY.
                var code = protocol.ErrorCode switch
                {
                    0x7 => StatusCode.Unavailable, // REFUSED_STREAM
                    0x8 => StatusCode.Cancelled, // CANCEL
                    0xB => StatusCode.ResourceExhausted, // ENHANCE_YOUR_CALM
                    0xC => StatusCode.PermissionDenied, // INADEQUATE_SECURITY
                    _ => StatusCode.Internal,
                };
                return new RpcException(code, $"{Path} on {_channel.Authority} was reset: {protocol.Message}", ex);
            }

            return ex switch
            {
                HttpRequestException { HttpRequestError: HttpRequestError.ConnectionError or HttpRequestError.NameResolutionError }
                    => new RpcException(StatusCode.Unavailable, $"cannot connect to {_channel.Authority}: {ex.Message}", ex),
                HttpRequestException { HttpRequestError: HttpRequestError.VersionNegotiationError }
                    => new RpcException(StatusCode.Unavailable,
                        $"cannot call {_channel.Authority}: it does not serve cleartext HTTP/2 ({ex.Message})", ex),
                OperationCanceledException
                    => new RpcException(StatusCode.Unavailable,
                        $"cannot connect to {_channel.Authority}: no connection within {_channel.ConnectTimeoutMs} ms", ex),
                HttpRequestException or IOException
                    => new RpcException(StatusCode.Unavailable, $"{Path} on {_channel.Authority} failed: {ex.Message}", ex),
                _ => new RpcException(StatusCode.Unknown, $"{Path} on {_channel.Authority} failed: {ex.Message}", ex),
            };
        }
    }
}
