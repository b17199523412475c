using System.Buffers;
using System.Net;

namespace MirrorFS.Core.Rpc.Http2;

/// <summary>One request stream of an <see cref="H2ServerConnection"/>: its headers and wholly received body, and the
/// response it sends. The handler writes messages into <see cref="ResponseBody"/>; flushing hands them to the
/// connection, which sends as much as the peer's flow-control windows allow and keeps the rest.</summary>
internal sealed class H2ServerStream : RpcTransport
{
    private readonly H2ServerConnection _connection;
    private readonly List<KeyValuePair<string, string>> _headers;
    private readonly CancellationTokenSource _aborted = new();
    private readonly ArrayBufferWriter<byte> _response = new(256);
    private List<KeyValuePair<string, string>>? _responseHeaders;
    private byte[]? _body;
    private int _bodyLength;
    private bool _bodyOverflow;

    public H2ServerStream(H2ServerConnection connection, int id, List<KeyValuePair<string, string>> headers, int sendWindow)
    {
        _connection = connection;
        Id = id;
        _headers = headers;
        SendWindow = sendWindow;
        foreach (var (name, value) in headers)
        {
            switch (name)
            {
                case ":method":
                    HttpMethod = value;
                    break;
                case ":path":
                    Path = value;
                    break;
                case "content-type":
                    ContentType ??= value;
                    break;
                case "authorization":
                    AuthorizationCount++;
                    Authorization = value;
                    break;
                case "grpc-timeout":
                    Timeout ??= value;
                    break;
            }
        }

        if (AuthorizationCount != 1)
        {
            Authorization = null;
        }
    }

    public int Id { get; }

    public string? HttpMethod { get; }

    public string Path { get; } = string.Empty;

    public string? ContentType { get; }

    /// <summary>The authorization header when exactly one came, else null.</summary>
    public string? Authorization { get; }

    public int AuthorizationCount { get; }

    public string? Timeout { get; }

    // Reader thread only.
    internal bool RequestEnded { get; set; }

    /// <summary>Serves the call once its request body has arrived (the router admitted it at its headers).</summary>
    internal Func<Task>? Serve { get; set; }

    internal long ReceiveUnacked { get; set; }

    // Guarded by the connection's lock.
    internal long SendWindow { get; set; }

    internal bool HeadersSent { get; set; }

    internal bool Ended { get; set; }

    internal bool Reset { get; set; }

    internal byte[]? Pending { get; set; }

    internal int PendingOffset { get; set; }

    internal int PendingLength { get; set; }

    internal byte[]? PendingTrailers { get; set; }

    internal TaskCompletionSource<bool>? Drained { get; set; }

    public override CancellationToken Aborted => _aborted.Token;

    public override string Peer => _connection.Peer;

    public override IBufferWriter<byte> ResponseBody => _response;

    public override ReadOnlySequence<byte>? BufferedRequestBody =>
        _body is null ? ReadOnlySequence<byte>.Empty : new ReadOnlySequence<byte>(_body, 0, _bodyLength);

    /// <summary>Stores request DATA up to <paramref name="cap"/> bytes; beyond that only the first bytes are kept,
    /// which is enough for the router to name the error (too large, or more than one message).</summary>
    internal void AppendBody(ReadOnlySpan<byte> data, int cap)
    {
        if (_bodyOverflow || data.IsEmpty)
        {
            return;
        }

        var room = cap - _bodyLength;
        if (data.Length > room)
        {
            _bodyOverflow = true;
            data = data[..room];
        }

        if (_body is null || _body.Length - _bodyLength < data.Length)
        {
            var grown = new byte[Math.Min(cap, Math.Max(_bodyLength + data.Length, _body is null ? 256 : _body.Length * 2))];
            _body?.AsSpan(0, _bodyLength).CopyTo(grown);
            _body = grown;
        }

        data.CopyTo(_body.AsSpan(_bodyLength));
        _bodyLength += data.Length;
    }

    public override string? RequestHeader(string name)
    {
        foreach (var (key, value) in _headers)
        {
            if (key == name)
            {
                return value;
            }
        }

        return null;
    }

    public override RpcMetadata ReadMetadata()
    {
        var metadata = new RpcMetadata();
        foreach (var (key, value) in _headers)
        {
            if (!key.StartsWith(':') && !RpcMetadata.IsReservedKey(key))
            {
                metadata.AddReceived(key, value);
            }
        }

        return metadata;
    }

    public override void SetResponseHeader(string name, string value)
    {
        _responseHeaders ??= [];
        _responseHeaders.RemoveAll(h => h.Key == name);
        _responseHeaders.Add(new(name, value));
    }

    public override ValueTask<bool> FlushAsync(CancellationToken cancellationToken)
    {
        var drained = _connection.Send(this, _response.WrittenSpan, _responseHeaders, trailers: null);
        _response.ResetWrittenCount();
        return drained.IsCompleted ? new ValueTask<bool>(drained.Result) : WaitAsync(drained, cancellationToken);

        static async ValueTask<bool> WaitAsync(Task<bool> drained, CancellationToken cancellationToken) =>
            await drained.WaitAsync(cancellationToken);
    }

    public override void Finish(StatusCode status, string? message, RpcMetadata? extra, RpcMetadata? trailers,
        bool messageWritten)
    {
        var fields = new List<KeyValuePair<string, string>>(4)
        {
            new(GrpcProtocol.StatusHeader, GrpcProtocol.StatusText(status)),
        };
        if (!string.IsNullOrEmpty(message))
        {
            fields.Add(new(GrpcProtocol.MessageHeader, GrpcProtocol.EncodeMessage(message)));
        }

        foreach (var set in (ReadOnlySpan<RpcMetadata?>)[extra, trailers])
        {
            if (set is not null)
            {
                fields.AddRange(set);
            }
        }

        _connection.Send(this, _response.WrittenSpan, _responseHeaders, fields);
        _response.ResetWrittenCount();
    }

    /// <summary>Answers a request that is not gRPC with a bare HTTP status.</summary>
    internal void RespondWithHttpStatus(int status) => _connection.SendHttpStatus(this, status);

    /// <summary>The client reset the stream or the connection ended: the call's token fires.</summary>
    internal void Abort()
    {
        try
        {
            _aborted.Cancel();
        }
        catch (AggregateException)
        {
            // A handler's cancellation callback failed; the call still ends.
        }
    }

    internal static string FormatPeer(EndPoint? endPoint) =>
        endPoint is IPEndPoint ip ? RpcTransport.FormatPeer(ip.Address, ip.Port) : "unknown";
}
