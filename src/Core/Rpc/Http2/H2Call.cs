using System.Buffers;
using System.Buffers.Binary;

namespace MirrorFS.Core.Rpc.Http2;

/// <summary>How a direct call ended on the wire.</summary>
internal enum H2Outcome
{
    /// <summary>The stream ended; headers, body and trailers are in the call.</summary>
    Completed,

    /// <summary>The server never processed the request (REFUSED_STREAM, or above a GOAWAY's last stream): it is
    /// safe to send again on another path.</summary>
    NotProcessed,
}

/// <summary>One unary call's stream on an <see cref="H2Connection"/>: what the reader thread collects for it, and
/// the task the caller waits on. The task completes on the reader thread without a thread hop.</summary>
internal sealed class H2Call : IDisposable
{
    private readonly TaskCompletionSource<H2Outcome> _done = new(TaskCreationOptions.None);

    /// <summary>Orders <see cref="Append"/> (reader thread) against <see cref="Dispose"/> (the caller, maybe after a
    /// deadline fired while data for the stream was being copied): a returned buffer is never written.</summary>
    private readonly Lock _gate = new();
    private byte[]? _body;
    private bool _disposed;

    public H2Call(string path, int maxMessageBytes)
    {
        Path = path;
        MaxMessageBytes = maxMessageBytes;
    }

    public string Path { get; }

    public int MaxMessageBytes { get; }

    public int StreamId { get; set; }

    public Task<H2Outcome> Task => _done.Task;

    /// <summary>The first header block (":status", "content-type"...; also grpc-status for a trailers-only reply).</summary>
    public List<KeyValuePair<string, string>>? Headers { get; set; }

    /// <summary>The trailing header block; null for a trailers-only reply.</summary>
    public List<KeyValuePair<string, string>>? Trailers { get; set; }

    public int BodyLength { get; private set; }

    /// <summary>Set when the headers show no gRPC response (another HTTP status or content type): the body is then
    /// dropped, since the error is reported from the headers.</summary>
    public bool DiscardBody { get; set; }

    public ReadOnlySpan<byte> Body => _body is null ? default : _body.AsSpan(0, BodyLength);

    /// <summary>Bytes received on this stream since the last WINDOW_UPDATE sent for it.</summary>
    public int UnackedBytes { get; set; }

    /// <summary>Appends DATA payload. Returns an error text (and keeps nothing) when the response's first message
    /// declares a length over the limit, so the stream can be reset instead of buffered.</summary>
    public string? Append(ReadOnlySpan<byte> data)
    {
        lock (_gate)
        {
            return _disposed || DiscardBody ? null : AppendLocked(data);
        }
    }

    private string? AppendLocked(ReadOnlySpan<byte> data)
    {
        var need = BodyLength + data.Length;
        if (_body is null || need > _body.Length)
        {
            var limit = (long)MaxMessageBytes + GrpcProtocol.FrameHeaderBytes;
            var declared = DeclaredLength(data);
            if (declared is { } d && d > MaxMessageBytes)
            {
                return $"{Path} response message of {d} bytes exceeds the limit of {MaxMessageBytes} bytes";
            }

            if (need > limit)
            {
                return $"{Path} sent more than one response message";
            }

            // Grow to the declared frame when it is known, so a large reply is copied once.
            var target = Math.Max(need, declared is { } len ? (int)Math.Min(len + GrpcProtocol.FrameHeaderBytes, limit) : 0);
            var grown = ArrayPool<byte>.Shared.Rent(Math.Max(target, 256));
            if (_body is not null)
            {
                _body.AsSpan(0, BodyLength).CopyTo(grown);
                ArrayPool<byte>.Shared.Return(_body);
            }

            _body = grown;
        }

        data.CopyTo(_body.AsSpan(BodyLength));
        BodyLength = need;
        return null;
    }

    public bool TryComplete(H2Outcome outcome) => _done.TrySetResult(outcome);

    public bool TryFail(Exception error) => _done.TrySetException(error);

    public void Dispose()
    {
        lock (_gate)
        {
            _disposed = true;
            if (_body is { } body)
            {
                _body = null;
                BodyLength = 0;
                ArrayPool<byte>.Shared.Return(body);
            }
        }
    }

    /// <summary>The first message's length once its 5-byte prefix has arrived (across the stored body and the new
    /// data), else null.</summary>
    private long? DeclaredLength(ReadOnlySpan<byte> data)
    {
        Span<byte> prefix = stackalloc byte[GrpcProtocol.FrameHeaderBytes];
        var have = Math.Min(BodyLength, prefix.Length);
        if (have > 0)
        {
            _body.AsSpan(0, have).CopyTo(prefix);
        }

        var more = Math.Min(prefix.Length - have, data.Length);
        data[..more].CopyTo(prefix[have..]);
        return have + more < prefix.Length ? null : BinaryPrimitives.ReadUInt32BigEndian(prefix[1..]);
    }
}
