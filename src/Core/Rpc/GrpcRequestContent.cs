using System.Buffers;
using System.Net;
using Google.Protobuf;

namespace MirrorFS.Core.Rpc;

/// <summary>HTTP content holding one framed request message; serialized into a pooled buffer when sent (again on
/// a transparent retry by the handler).</summary>
internal sealed class GrpcRequestContent<T> : HttpContent
    where T : IMessage<T>
{
    private readonly T _message;
    private readonly int _size;

    public GrpcRequestContent(T message, int size)
    {
        _message = message;
        _size = size;
        Headers.TryAddWithoutValidation("Content-Type", GrpcProtocol.ContentType);
    }

    protected override Task SerializeToStreamAsync(Stream stream, TransportContext? context) =>
        SerializeToStreamAsync(stream, context, CancellationToken.None);

    protected override async Task SerializeToStreamAsync(Stream stream, TransportContext? context, CancellationToken cancellationToken)
    {
        var frameBytes = GrpcProtocol.FrameHeaderBytes + _size;
        var buffer = ArrayPool<byte>.Shared.Rent(frameBytes);
        try
        {
            GrpcProtocol.WriteFrameHeader(buffer, _size);
            _message.WriteTo(buffer.AsSpan(GrpcProtocol.FrameHeaderBytes, _size));
            await stream.WriteAsync(buffer.AsMemory(0, frameBytes), cancellationToken);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    protected override bool TryComputeLength(out long length)
    {
        length = GrpcProtocol.FrameHeaderBytes + _size;
        return true;
    }
}
