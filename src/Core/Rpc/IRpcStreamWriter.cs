namespace MirrorFS.Core.Rpc;

/// <summary>Sends the messages of a server-streaming call. One write at a time; each write waits for HTTP/2
/// flow control, so a slow reader slows the handler instead of growing a buffer.</summary>
public interface IRpcStreamWriter<in T>
{
    /// <summary>Sends one message. Throws OperationCanceledException once the call is cancelled or past its
    /// deadline, RpcException(ResourceExhausted) for a message over the size limit, and
    /// InvalidOperationException after the handler has returned or while another write is running.</summary>
    Task WriteAsync(T message);
}
