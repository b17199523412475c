// Serving the Meta service over the gRPC-wire stack: names, and how engine exceptions become statuses.
using System.Globalization;
using MirrorFS.Core.Rpc;

namespace MirrorFS.Core.Meta;

public static partial class MetaRpc
{
    public const string ServiceName = "mirrorfs.meta.v1.Meta";

    /// <summary>Trailer naming the node a caller should try instead (not-leader replies).</summary>
    public const string LeaderHintTrailer = "mirrorfs-leader";

    /// <summary>Request header: the highest primary index the caller has seen; a mirror answers only once it has
    /// applied that index (see <see cref="MetaCallContext"/>).</summary>
    public const string MinIndexHeader = "mirrorfs-min-index";

    /// <summary>Trailer of a write refused by a mirror: the primary's META-URL (no token), where writes go.</summary>
    public const string PrimaryTrailer = "mirrorfs-primary";

    /// <summary>Trailer of a read a mirror could not serve in time: "applied/wanted" primary indexes. The caller asks
    /// the primary instead; <see cref="RpcMetaClient"/> does not fail over to other mirror members on it.</summary>
    public const string MirrorBehindTrailer = "mirrorfs-mirror-behind";

    private static async Task<T> Invoke<T>(RpcCallContext ctx, Func<Task<T>> call, Func<Exception, RpcException?>? translate)
    {
        // The header becomes the ambient value here, once for every method, so the engine never sees call metadata.
        var header = ctx.RequestHeaders.Get(MinIndexHeader);
        var min = header is not null && ulong.TryParse(header, NumberStyles.None, CultureInfo.InvariantCulture, out var v) ? v : 0;
        using var scope = min == 0 ? null : MetaCallContext.WithMinIndex(min);
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
