// Where the replicator reads committed entries and the volume settings from: the primary's leader over RPC.
using System.Runtime.CompilerServices;
using MirrorFS.Core.Meta;
using MirrorFS.Core.Rpc;

namespace MirrorFS.Mirror.Replication;

public interface IChangelogSource : IAsyncDisposable
{
    /// <summary>A short, secret-free name for messages.</summary>
    string Description { get; }

    /// <summary>The volume settings; null while the volume is not formatted yet.</summary>
    Task<Volume?> GetVolumeAsync(CancellationToken ct);

    /// <summary>One changelog stream from <c>request.FromIndex</c>. It ends or throws when the connection does; the
    /// caller opens a new one from where it got to.</summary>
    IAsyncEnumerable<ChangelogBatch> WatchAsync(WatchChangelogRequest request, CancellationToken ct);
}

/// <summary>Reads the changelog from whichever primary member leads: a follower's not-leader answer names the leader
/// (or the next member is tried), and the next stream goes there.</summary>
public sealed class RpcChangelogSource : IChangelogSource
{
    private readonly RpcMetaClient _meta;
    private readonly IReadOnlyList<string> _addresses;
    private readonly string? _token;
    private readonly Dictionary<string, RpcChannel> _channels = new(StringComparer.Ordinal);
    private readonly Lock _lock = new();
    private volatile string _current;

    public RpcChangelogSource(IReadOnlyList<string> addresses, string? token)
    {
        if (addresses.Count == 0)
        {
            throw new ArgumentException("no primary metaserver address given", nameof(addresses));
        }
        _addresses = addresses;
        _token = token;
        _current = addresses[0];
        _meta = new RpcMetaClient(new RpcMetaClientOptions { Addresses = addresses, BearerToken = token });
    }

    public string Description => string.Join(",", _addresses);

    public async Task<Volume?> GetVolumeAsync(CancellationToken ct)
    {
        var reply = await _meta.GetVolumeAsync(new GetVolumeRequest(), ct).ConfigureAwait(false);
        return reply.Errno == 0 ? reply.Volume : null;
    }

    public async IAsyncEnumerable<ChangelogBatch> WatchAsync(WatchChangelogRequest request,
        [EnumeratorCancellation] CancellationToken ct)
    {
        var address = _current;
        var stream = Channel(address).ServerStreamingAsync(MetaRpc.ServiceName, "WatchChangelog", request,
            ChangelogBatch.Parser, new CallOptions { CancellationToken = ct }, ct);
        await using var e = stream.GetAsyncEnumerator(ct);
        while (true)
        {
            bool more;
            try
            {
                more = await e.MoveNextAsync().ConfigureAwait(false);
            }
            catch (RpcException ex) when (!ct.IsCancellationRequested)
            {
                // Not the leader (its hint says who is), gone, or failing: the next stream tries elsewhere.
                var hint = ex.Trailers.Get(MetaRpc.LeaderHintTrailer);
                _current = hint is not null && hint != address ? hint : NextAfter(address);
                throw;
            }
            if (!more)
            {
                yield break;
            }
            yield return e.Current;
        }
    }

    private string NextAfter(string address)
    {
        var i = -1;
        for (var k = 0; k < _addresses.Count; k++)
        {
            if (_addresses[k] == address)
            {
                i = k;
                break;
            }
        }
        return _addresses[(i + 1) % _addresses.Count];
    }

    private RpcChannel Channel(string address)
    {
        lock (_lock)
        {
            if (!_channels.TryGetValue(address, out var ch))
            {
                ch = new RpcChannel(new RpcChannelOptions { Address = address, BearerToken = _token });
                _channels[address] = ch;
            }
            return ch;
        }
    }

    public async ValueTask DisposeAsync()
    {
        lock (_lock)
        {
            foreach (var ch in _channels.Values)
            {
                ch.Dispose();
            }
            _channels.Clear();
        }
        await _meta.DisposeAsync().ConfigureAwait(false);
    }
}
