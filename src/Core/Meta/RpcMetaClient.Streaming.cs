// Server-streaming calls of the RPC metadata client: failover until the first message, none after it.
using System.Runtime.CompilerServices;
using Google.Protobuf;
using MirrorFS.Core.Rpc;

namespace MirrorFS.Core.Meta;

public sealed partial class RpcMetaClient
{
    /// <summary>
    /// Opens the stream on the current member and follows not-leader hints and other members (within the failover
    /// deadline) until a first message arrives. A stream cut after that cannot resume where it stopped: the
    /// exception reaches the caller, who starts over.
    /// </summary>
    private async IAsyncEnumerable<TReply> StreamAsync<TRequest, TReply>(string method, TRequest request,
        MessageParser<TReply> parser, [EnumeratorCancellation] CancellationToken ct)
        where TRequest : IMessage<TRequest>
        where TReply : IMessage<TReply>, IMetaReply
    {
        var deadline = Environment.TickCount64 + _options.FailoverTimeoutMs;
        var address = _current;
        var tried = new HashSet<string>(StringComparer.Ordinal);
        while (true)
        {
            ct.ThrowIfCancellationRequested();
            var stream = Channel(address).ServerStreamingAsync(MetaRpc.ServiceName, method, request, parser,
                new CallOptions { CancellationToken = ct }, ct).GetAsyncEnumerator(ct);
            await using (stream.ConfigureAwait(false))
            {
                bool any;
                string? next = null;
                try
                {
                    any = await stream.MoveNextAsync().ConfigureAwait(false);
                }
                catch (RpcException e) when (e.Status is StatusCode.Unavailable or StatusCode.DeadlineExceeded
                                             && !ct.IsCancellationRequested)
                {
                    tried.Add(address);
                    var hint = e.Trailers.Get(MetaRpc.LeaderHintTrailer);
                    next = hint is not null && !tried.Contains(hint)
                        ? hint
                        : _options.Addresses.FirstOrDefault(a => !tried.Contains(a));
                    if (Environment.TickCount64 >= deadline)
                    {
                        throw new MetaUnavailableException(
                            $"metaserver {string.Join(",", _options.Addresses)} did not start {method} within {_options.FailoverTimeoutMs} ms: {e.Message}", e);
                    }
                    if (next is null)
                    {
                        await Task.Delay(_options.RetryDelayMs, ct).ConfigureAwait(false);
                        tried.Clear();
                        next = _options.Addresses[0];
                    }
                    any = false;
                }
                if (next is not null)
                {
                    address = next;
                    continue;
                }
                _current = address;
                if (!any)
                {
                    yield break;
                }
                do
                {
                    NoteIndex(stream.Current.Index);
                    yield return stream.Current;
                }
                while (await stream.MoveNextAsync().ConfigureAwait(false));
                yield break;
            }
        }
    }
}
