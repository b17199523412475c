using System.Buffers;
using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Globalization;
using Google.Protobuf;
using MirrorFS.Core.Rpc.Http2;

namespace MirrorFS.Core.Rpc;

/// <summary>Unary calls over the channel's own HTTP/2 connection (<see cref="H2Connection"/>).</summary>
public sealed partial class RpcChannel
{
    /// <summary>After a failed connect, calls use HttpClient (which reports the failure) for this long before the
    /// direct connection is tried again.</summary>
    private const int DirectRetryDelayMs = 1_000;

    private readonly bool _direct;
    private readonly Lock _directLock = new();
    private readonly ConcurrentDictionary<(string Service, string Method), byte[]> _headerBlocks = new();
    private Task<H2Connection?>? _directConnection;
    private long _directRetryAt;
    private bool _disposed;
    private long _directUnaryCalls;
    private long _httpClientUnaryCalls;
    private long _directConnections;

    /// <summary>Direct HTTP/2 connections opened so far (one lives as long as the server keeps it).</summary>
    public long DirectConnectionsOpened => Interlocked.Read(ref _directConnections);

    /// <summary>Unary calls answered over the direct HTTP/2 connection.</summary>
    public long DirectUnaryCalls => Interlocked.Read(ref _directUnaryCalls);

    /// <summary>Unary calls sent through HttpClient (direct path off, unreachable, or not able to take the call).</summary>
    public long HttpClientUnaryCalls => Interlocked.Read(ref _httpClientUnaryCalls);

    private ValueTask<H2Connection?> GetDirectConnectionAsync()
    {
        var task = _directConnection;
        return task is { IsCompletedSuccessfully: true } && task.Result is { IsUsable: true } connection
            ? new ValueTask<H2Connection?>(connection)
            : new ValueTask<H2Connection?>(RenewDirectConnection());
    }

    private Task<H2Connection?> RenewDirectConnection()
    {
        lock (_directLock)
        {
            var task = _directConnection;
            if (_disposed)
            {
                return Task.FromResult<H2Connection?>(null);
            }

            if (task is not null)
            {
                if (!task.IsCompleted || task.Result is { IsUsable: true })
                {
                    return task;
                }

                if (task.Result is null && Environment.TickCount64 < Interlocked.Read(ref _directRetryAt))
                {
                    return task;
                }

                // A connection that closed or got GOAWAY is left to finish its calls; the server closes it.
            }

            _directConnection = task = ConnectDirectAsync();
            return task;
        }
    }

    private async Task<H2Connection?> ConnectDirectAsync()
    {
        try
        {
            var connection = await H2Connection.ConnectAsync(_baseUri.Host, _baseUri.Port, Authority, ConnectTimeoutMs);
            Interlocked.Increment(ref _directConnections);
            return connection;
        }
        catch (Exception)
        {
            // HttpClient makes the call instead and reports why the server cannot be reached.
            Interlocked.Exchange(ref _directRetryAt, Environment.TickCount64 + DirectRetryDelayMs);
            return null;
        }
    }

    private void DisposeDirect()
    {
        Task<H2Connection?>? task;
        lock (_directLock)
        {
            _disposed = true;
            task = _directConnection;
            _directConnection = null;
        }

        if (task is { IsCompletedSuccessfully: true, Result: { } connection })
        {
            connection.Dispose();
        }
    }

    /// <summary>Sends the call on <paramref name="connection"/>. Returns (false, null) when the call was not
    /// processed there (no room now, or refused unprocessed) so it may go through HttpClient.</summary>
    private async Task<(bool Sent, TResponse? Response)> DirectUnaryAsync<TRequest, TResponse>(
        H2Connection connection,
        string service,
        string method,
        TRequest request,
        MessageParser<TResponse> parser,
        CallOptions options)
        where TRequest : IMessage<TRequest>
        where TResponse : IMessage<TResponse>
    {
        var prefix = GetHeaderBlock(service, method);
        var path = $"/{service}/{method}";
        var timeout = TimeoutOf(options, unary: true);
        if (timeout is { } t0 && t0 <= TimeSpan.Zero)
        {
            throw new RpcException(StatusCode.DeadlineExceeded, $"{path} was not sent: its deadline had already passed");
        }

        var size = request.CalculateSize();
        if (size > MaxMessageBytes)
        {
            throw new RpcException(StatusCode.ResourceExhausted,
                $"{path} request message of {size} bytes exceeds the limit of {MaxMessageBytes} bytes");
        }

        var call = new H2Call(path, MaxMessageBytes);
        try
        {
            if (!SendDirect(connection, call, prefix, request, size, timeout, options.Metadata))
            {
                return (false, default);
            }

            Interlocked.Increment(ref _directUnaryCalls);
            H2Outcome outcome;
            var cts = LimitOf(options.CancellationToken, timeout);
            if (cts is null)
            {
                outcome = await call.Task;
            }
            else
            {
                var registration = cts.Token.UnsafeRegister(static state =>
                {
                    var (channel, connection, call, callerToken, timeout) =
                        ((RpcChannel, H2Connection, H2Call, CancellationToken, TimeSpan?))state!;
                    connection.Abandon(call, callerToken.IsCancellationRequested
                        ? new RpcException(StatusCode.Cancelled, $"{call.Path} was cancelled by the caller")
                        : new RpcException(StatusCode.DeadlineExceeded,
                            $"{call.Path} on {channel.Authority} exceeded its deadline of {timeout?.TotalMilliseconds:0.###} ms"));
                }, (this, connection, call, options.CancellationToken, timeout));
                try
                {
                    outcome = await call.Task;
                }
                finally
                {
                    registration.Dispose();
                    cts.Dispose();
                }
            }

            if (outcome == H2Outcome.NotProcessed)
            {
                Interlocked.Decrement(ref _directUnaryCalls);
                return (false, default);
            }

            return (true, Complete(call, parser));
        }
        finally
        {
            call.Dispose();
        }
    }

    /// <summary>A source that fires at the call's limit or when the caller cancels; null when neither can happen.</summary>
    private static CancellationTokenSource? LimitOf(CancellationToken callerToken, TimeSpan? timeout)
    {
        CancellationTokenSource? cts = null;
        if (callerToken.CanBeCanceled)
        {
            cts = CancellationTokenSource.CreateLinkedTokenSource(callerToken);
        }
        else if (timeout is not null)
        {
            cts = new CancellationTokenSource();
        }

        if (timeout is { } limit && limit.TotalMilliseconds < uint.MaxValue - 1)
        {
            cts!.CancelAfter(limit);
        }

        return cts;
    }

    private static bool SendDirect<TRequest>(
        H2Connection connection, H2Call call, byte[] prefix, TRequest request, int size, TimeSpan? timeout, RpcMetadata? metadata)
        where TRequest : IMessage<TRequest>
    {
        var extra = 64;
        if (metadata is { Count: > 0 })
        {
            foreach (var entry in metadata)
            {
                extra += 16 + entry.Key.Length + entry.Value.Length;
            }
        }

        var pool = ArrayPool<byte>.Shared;
        var block = pool.Rent(prefix.Length + extra);
        var body = pool.Rent(GrpcProtocol.FrameHeaderBytes + size);
        try
        {
            prefix.CopyTo(block, 0);
            var length = prefix.Length;
            bool Add(string name, string value)
            {
                var n = HPackWriter.WriteLiteral(block.AsSpan(length), name, value);
                length += Math.Max(n, 0);
                return n >= 0;
            }

            // A header that does not fit the estimate sends the call through HttpClient instead.
            if (timeout is { } t && !Add(GrpcProtocol.TimeoutHeader, GrpcProtocol.FormatTimeout(t)))
            {
                return false;
            }

            if (metadata is { Count: > 0 })
            {
                foreach (var entry in metadata)
                {
                    if (!Add(entry.Key, entry.Value))
                    {
                        return false;
                    }
                }
            }

            GrpcProtocol.WriteFrameHeader(body, size);
            request.WriteTo(body.AsSpan(GrpcProtocol.FrameHeaderBytes, size));
            return connection.TrySend(call, block.AsSpan(0, length), body.AsSpan(0, GrpcProtocol.FrameHeaderBytes + size));
        }
        finally
        {
            pool.Return(block);
            pool.Return(body);
        }
    }

    /// <summary>The request headers every call of one method shares: pseudo-headers, content type, te, user
    /// agent and authorization (never indexed, it is a secret).</summary>
    private byte[] GetHeaderBlock(string service, string method)
    {
        if (_headerBlocks.TryGetValue((service, method), out var block))
        {
            return block;
        }

        var path = GetUri(service, method).AbsolutePath; // validates the names
        var list = new List<byte>(128);
        HPackWriter.WriteIndexed(list, HPackWriter.MethodPostIndex);
        HPackWriter.WriteIndexed(list, HPackWriter.SchemeHttpIndex);
        HPackWriter.WriteLiteral(list, HPackWriter.PathIndex, path);
        HPackWriter.WriteLiteral(list, HPackWriter.AuthorityIndex, Authority);
        HPackWriter.WriteLiteral(list, HPackWriter.ContentTypeIndex, GrpcProtocol.ContentType);
        HPackWriter.WriteLiteral(list, "te", "trailers");
        HPackWriter.WriteLiteral(list, HPackWriter.UserAgentIndex, UserAgent);
        if (_authorization is { } authorization)
        {
            HPackWriter.WriteLiteral(list, HPackWriter.AuthorizationIndex, authorization, neverIndexed: true);
        }

        block = [.. list];
        if (_headerBlocks.Count < UriCacheEntriesMax)
        {
            _headerBlocks.TryAdd((service, method), block);
        }

        return block;
    }

    /// <summary>Turns a finished stream into the response message, or the RpcException it stands for.</summary>
    private TResponse Complete<TResponse>(H2Call call, MessageParser<TResponse> parser)
        where TResponse : IMessage<TResponse>
    {
        var headers = call.Headers!;
        var httpStatus = Find(headers, ":status");
        var hasStatus = TryStatusOf(headers, out var error);
        if (httpStatus != "200")
        {
            var code = int.TryParse(httpStatus, NumberStyles.None, CultureInfo.InvariantCulture, out var n) ? n : 0;
            throw error ?? new RpcException(GrpcProtocol.StatusFromHttp(code),
                $"{call.Path} on {Authority} answered HTTP {httpStatus} instead of a gRPC response");
        }

        if (hasStatus)
        {
            // Trailers-only: the status came with the headers.
            throw error ?? new RpcException(StatusCode.Internal, $"{call.Path} ended with OK but sent no response message");
        }

        var contentType = Find(headers, "content-type");
        if (!GrpcProtocol.IsGrpcContentType(contentType))
        {
            throw new RpcException(StatusCode.Unknown,
                $"{call.Path} on {Authority} answered content-type '{contentType}' instead of application/grpc");
        }

        if (call.Trailers is null || !TryStatusOf(call.Trailers, out error))
        {
            throw new RpcException(StatusCode.Internal, $"{call.Path} on {Authority} ended without a grpc-status trailer");
        }

        if (error is not null)
        {
            throw error;
        }

        var body = call.Body;
        if (body.Length == 0)
        {
            throw new RpcException(StatusCode.Internal, $"{call.Path} ended with OK but sent no response message");
        }

        if (body.Length < GrpcProtocol.FrameHeaderBytes)
        {
            throw new RpcException(StatusCode.Internal, $"{call.Path} response ended inside a message prefix");
        }

        var flag = body[0];
        if (flag != 0)
        {
            throw new RpcException(flag == 1 ? StatusCode.Unimplemented : StatusCode.Internal,
                flag == 1
                    ? $"{call.Path} response message is compressed; this client accepts identity only"
                    : $"{call.Path} response message has an invalid flags byte {flag}");
        }

        var length = BinaryPrimitives.ReadUInt32BigEndian(body[1..]);
        if (length > (uint)MaxMessageBytes)
        {
            throw new RpcException(StatusCode.ResourceExhausted,
                $"{call.Path} response message of {length} bytes exceeds the limit of {MaxMessageBytes} bytes");
        }

        var end = GrpcProtocol.FrameHeaderBytes + (long)length;
        if (body.Length < end)
        {
            throw new RpcException(StatusCode.Internal, $"{call.Path} response ended inside a message");
        }

        if (body.Length > end)
        {
            throw new RpcException(StatusCode.Internal, $"{call.Path} sent more than one response message");
        }

        try
        {
            return parser.ParseFrom(body.Slice(GrpcProtocol.FrameHeaderBytes, (int)length));
        }
        catch (InvalidProtocolBufferException ex)
        {
            throw new RpcException(StatusCode.Internal, $"{call.Path} response message cannot be parsed: {ex.Message}");
        }
    }

    private static string? Find(List<KeyValuePair<string, string>> fields, string name)
    {
        foreach (var field in fields)
        {
            if (field.Key == name)
            {
                return field.Value;
            }
        }

        return null;
    }

    /// <summary>grpc-status of a decoded header block (see <see cref="TryStatusOf"/>).</summary>
    private static bool TryStatusOf(List<KeyValuePair<string, string>> fields, out RpcException? error) =>
        TryStatusOf(Find(fields, GrpcProtocol.StatusHeader), Find(fields, GrpcProtocol.MessageHeader), fields, out error);
}
