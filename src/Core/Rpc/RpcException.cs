namespace MirrorFS.Core.Rpc;

/// <summary>A call ended with a non-OK gRPC status. Thrown by handlers to choose the status the caller sees,
/// and by <see cref="RpcChannel"/> when a call fails. The message is what travels in <c>grpc-message</c>,
/// so it must never hold a secret.</summary>
public sealed class RpcException : Exception
{
    public RpcException(StatusCode status, string message, Exception? inner = null)
        : this(status, message, trailers: null, inner)
    {
    }

    public RpcException(StatusCode status, string message, RpcMetadata? trailers, Exception? inner = null)
        : base(message, inner)
    {
        if (status == StatusCode.OK)
        {
            throw new ArgumentException("An RpcException cannot carry status OK.", nameof(status));
        }

        Status = status;
        Trailers = trailers ?? RpcMetadata.Empty;
    }

    public StatusCode Status { get; }

    /// <summary>Extra trailers (not <c>grpc-*</c>): sent by the server when a handler throws, received by the
    /// client from the response.</summary>
    public RpcMetadata Trailers { get; }

    public override string ToString() => $"[{Status}] {base.ToString()}";
}
