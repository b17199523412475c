// Serving the Meta service over the gRPC-wire stack: names, and how engine exceptions become statuses.
using MirrorFS.Core.Rpc;

namespace MirrorFS.Core.Meta;

public static partial class MetaRpc
{
    public const string ServiceName = "mirrorfs.meta.v1.Meta";

    /// <summary>Trailer naming the node a caller should try instead (not-leader replies).</summary>
    public const string LeaderHintTrailer = "mirrorfs-leader";

    private static async Task<T> Invoke<T>(Func<Task<T>> call, Func<Exception, RpcException?>? translate)
    {
        try
        {
            return await call().ConfigureAwait(false);
        }
        catch (Exception e) when (e is not RpcException && translate?.Invoke(e) is { } mapped)
        {
            throw mapped;
        }
    }
}

/// <summary>The metaserver cannot be reached or gave no usable answer; the message is one line.</summary>
public sealed class MetaUnavailableException(string message, Exception? inner = null) : Exception(message, inner);
