// Serving server-streaming Meta methods: every message the engine yields goes out as one stream message.
using MirrorFS.Core.Rpc;

namespace MirrorFS.Core.Meta;

public static partial class MetaRpc
{
    private static async Task InvokeStream<T>(Func<IAsyncEnumerable<T>> call, IRpcStreamWriter<T> writer,
        Func<Exception, RpcException?>? translate)
    {
        try
        {
            await foreach (var message in call().ConfigureAwait(false))
            {
                await writer.WriteAsync(message).ConfigureAwait(false);
            }
        }
        catch (Exception e) when (e is not RpcException && translate?.Invoke(e) is { } mapped)
        {
            throw mapped;
        }
    }
}
