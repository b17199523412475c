using System.Buffers;
using System.Buffers.Binary;

namespace MirrorFS.Core.Rpc;

/// <summary>Reads length-prefixed gRPC messages from a response stream into one pooled buffer that grows up to
/// the message size limit. <see cref="Payload"/> is valid until the next read.</summary>
internal sealed class GrpcFrameReader : IDisposable
{
    private const int InitialBufferBytes = 4096;

    private readonly Stream _stream;
    private readonly int _maxMessageBytes;
    private byte[] _buffer;
    private int _start;
    private int _end;
    private int _skip;

    public GrpcFrameReader(Stream stream, int maxMessageBytes)
    {
        _stream = stream;
        _maxMessageBytes = maxMessageBytes;
        _buffer = ArrayPool<byte>.Shared.Rent(InitialBufferBytes);
    }

    public ReadOnlyMemory<byte> Payload { get; private set; }

    /// <summary>Reads the next message; false at a clean end of stream. Throws RpcException for a truncated,
    /// compressed, or oversized message.</summary>
    public async ValueTask<bool> ReadMessageAsync(string method, CancellationToken cancellationToken)
    {
        _start += _skip;
        _skip = 0;
        Payload = default;
        if (!await FillAsync(GrpcProtocol.FrameHeaderBytes, cancellationToken))
        {
            return _end == _start
                ? false
                : throw new RpcException(StatusCode.Internal, $"{method} response ended inside a message prefix");
        }

        var flag = _buffer[_start];
        if (flag != 0)
        {
            throw new RpcException(flag == 1 ? StatusCode.Unimplemented : StatusCode.Internal,
                flag == 1
                    ? $"{method} response message is compressed; this client accepts identity only"
                    : $"{method} response message has an invalid flags byte {flag}");
        }

        var length = BinaryPrimitives.ReadUInt32BigEndian(_buffer.AsSpan(_start + 1, 4));
        if (length > (uint)_maxMessageBytes)
        {
            throw new RpcException(StatusCode.ResourceExhausted,
                $"{method} response message of {length} bytes exceeds the limit of {_maxMessageBytes} bytes");
        }

        var frameBytes = GrpcProtocol.FrameHeaderBytes + (int)length;
        if (!await FillAsync(frameBytes, cancellationToken))
        {
            throw new RpcException(StatusCode.Internal, $"{method} response ended inside a message");
        }

        Payload = _buffer.AsMemory(_start + GrpcProtocol.FrameHeaderBytes, (int)length);
        _skip = frameBytes;
        return true;
    }

    public void Dispose()
    {
        var buffer = _buffer;
        _buffer = [];
        Payload = default;
        if (buffer.Length > 0)
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>Ensures <paramref name="needed"/> unread bytes are buffered; false if the stream ends first.</summary>
    private async ValueTask<bool> FillAsync(int needed, CancellationToken cancellationToken)
    {
        while (_end - _start < needed)
        {
            if (_buffer.Length - _start < needed)
            {
                MakeRoom(needed);
            }

            var read = await _stream.ReadAsync(_buffer.AsMemory(_end), cancellationToken);
            if (read == 0)
            {
                return false;
            }

            _end += read;
        }

        return true;
    }

    private void MakeRoom(int needed)
    {
        var buffered = _end - _start;
        if (_buffer.Length >= needed)
        {
            Buffer.BlockCopy(_buffer, _start, _buffer, 0, buffered);
        }
        else
        {
            var frameMax = GrpcProtocol.FrameHeaderBytes + _maxMessageBytes;
            var size = Math.Max(needed, (int)Math.Min((long)_buffer.Length * 2, frameMax));
            var bigger = ArrayPool<byte>.Shared.Rent(size);
            Buffer.BlockCopy(_buffer, _start, bigger, 0, buffered);
            ArrayPool<byte>.Shared.Return(_buffer);
            _buffer = bigger;
        }

        _start = 0;
        _end = buffered;
    }
}
