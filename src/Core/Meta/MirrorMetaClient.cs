// The metadata client of a mirror-region mount: reads from the mirror at the client's index, writes to the primary.
using MirrorFS.Core.Rpc;

namespace MirrorFS.Core.Meta;

public sealed record MirrorMetaClientOptions
{
    /// <summary>After the mirror cluster could not be reached at all, reads go to the primary for this long before
    /// the mirror is tried again (a lagging mirror is retried at once: it answers quickly).</summary>
    public int MirrorRetryAfterMs { get; init; } = 5_000;
}

/// <summary>
/// Routes every call of a client in a mirror region. Reads (<see cref="IReadRequest"/>) go to the mirror with the
/// highest primary index this client has seen as their minimum (<see cref="MetaCallContext"/>); when the mirror has not
/// applied it in time, or cannot be reached, the primary answers. Writes and anything else go to the primary, and the
/// index of every reply is noted, so the client reads its own writes and never reads an older state than one it saw.
/// <see cref="ListMirrorsRequest"/> and <see cref="PromoteRequest"/> are for the mirror cluster itself.
/// </summary>
public sealed partial class MirrorMetaClient : IMetaClient
{
    private readonly IMetaClient _mirror;
    private readonly IMetaClient _primary;
    private readonly MirrorMetaClientOptions _options;
    private readonly bool _ownsClients;
    private ulong _highestIndex;
    private long _mirrorDownUntil;
    private long _mirrorReads;
    private long _primaryReads;

    public MirrorMetaClient(IMetaClient mirror, IMetaClient primary, MirrorMetaClientOptions? options = null, bool ownsClients = true)
    {
        _mirror = mirror;
        _primary = primary;
        _options = options ?? new MirrorMetaClientOptions();
        _ownsClients = ownsClients;
    }

    public IMetaClient Mirror => _mirror;

    public IMetaClient Primary => _primary;

    /// <summary>The highest primary index any reply reflected (writes included).</summary>
    public ulong HighestIndex => Interlocked.Read(ref _highestIndex);

    /// <summary>Reads the mirror answered.</summary>
    public long MirrorReads => Interlocked.Read(ref _mirrorReads);

    /// <summary>Reads the primary answered because the mirror was behind or unreachable.</summary>
    public long PrimaryReads => Interlocked.Read(ref _primaryReads);

    /// <summary>Raises <see cref="HighestIndex"/> to <paramref name="index"/> (it never goes down).</summary>
    public void NoteIndex(ulong index)
    {
        var seen = Interlocked.Read(ref _highestIndex);
        while (index > seen)
        {
            var was = Interlocked.CompareExchange(ref _highestIndex, index, seen);
            if (was == seen)
            {
                return;
            }
            seen = was;
        }
    }

    private async Task<TReply> RouteAsync<TRequest, TReply>(TRequest request,
        Func<IMetaClient, TRequest, CancellationToken, Task<TReply>> call, CancellationToken ct)
        where TReply : IMetaReply
    {
        if (request is PromoteRequest or ListMirrorsRequest)
        {
            return await call(_mirror, request, ct).ConfigureAwait(false);
        }
        if (request is IReadRequest && Environment.TickCount64 >= Interlocked.Read(ref _mirrorDownUntil))
        {
            try
            {
                TReply reply;
                using (MetaCallContext.WithMinIndex(Math.Max(HighestIndex, MetaCallContext.MinIndex)))
                {
                    reply = await call(_mirror, request, ct).ConfigureAwait(false);
                }
                Interlocked.Increment(ref _mirrorReads);
                NoteIndex(reply.Index);
                return reply;
            }
            catch (RpcException e) when (e.Trailers.Get(MetaRpc.MirrorBehindTrailer) is not null && !ct.IsCancellationRequested)
            {
                // The mirror has not caught up with what this client saw: the primary has.
            }
            catch (MetaUnavailableException) when (!ct.IsCancellationRequested)
            {
                Interlocked.Exchange(ref _mirrorDownUntil, Environment.TickCount64 + _options.MirrorRetryAfterMs);
            }
            Interlocked.Increment(ref _primaryReads);
        }
        var answer = await call(_primary, request, ct).ConfigureAwait(false);
        NoteIndex(answer.Index);
        return answer;
    }

    public async ValueTask DisposeAsync()
    {
        if (_ownsClients)
        {
            await _mirror.DisposeAsync().ConfigureAwait(false);
            await _primary.DisposeAsync().ConfigureAwait(false);
        }
    }
}
