// Calls the mirrorfs.Cluster admin service: leader-only calls follow not-leader hints across the listed members.
using Google.Protobuf;
using MirrorFS.Core.Meta;
using MirrorFS.Core.Rpc;
using MirrorFS.MetaServer.Hosting;
using MirrorFS.MetaServer.Wire;

namespace MirrorFS.MetaServer.Cli;

/// <summary>What one member answered to Status (or why it did not).</summary>
public sealed record NodeAnswer(string Address, ClusterStatusReply? Reply, string? Error);

public sealed class AdminClient : IDisposable
{
    /// <summary>One call's deadline on one member.</summary>
    public const int CallTimeoutMs = 5_000;

    /// <summary>Status calls are answered locally: a member that needs longer is shown as unreachable.</summary>
    public const int StatusTimeoutMs = 3_000;

    /// <summary>Pause between rounds over all members while none leads (an election in progress).</summary>
    private const int RetryDelayMs = 200;

    /// <summary>Members queried by status beyond those listed (found in the configuration).</summary>
    private const int StatusNodesMax = 64;

    private readonly IReadOnlyList<string> _addresses;
    private readonly string? _token;
    private readonly int _timeoutMs;
    private readonly Dictionary<string, RpcChannel> _channels = new(StringComparer.Ordinal);

    public AdminClient(IReadOnlyList<string> addresses, string? token, int timeoutMs)
    {
        _addresses = addresses;
        _token = token;
        _timeoutMs = timeoutMs;
    }

    /// <summary>Parses --meta: "HOST:PORT[,HOST:PORT...]".</summary>
    public static IReadOnlyList<string> ParseMeta(string? text)
    {
        var list = (text ?? "").Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries).Distinct().ToList();
        if (list.Count == 0)
        {
            throw new CliException("no metaserver given: pass --meta HOST:PORT[,HOST:PORT...]");
        }
        foreach (var a in list)
        {
            if (!ClusterRpc.IsHostPort(a))
            {
                throw new CliException($"--meta address '{a}' is not HOST:PORT");
            }
        }
        return list;
    }

    private RpcChannel Channel(string address)
    {
        lock (_channels)
        {
            if (!_channels.TryGetValue(address, out var ch))
            {
                ch = new RpcChannel(new RpcChannelOptions { Address = address, BearerToken = _token, ConnectTimeoutMs = 2_000 });
                _channels[address] = ch;
            }
            return ch;
        }
    }

    /// <summary>Calls a leader-only method: starts at the first listed member, follows not-leader hints, tries the
    /// others, and keeps going (an election may be running) until the admin timeout.</summary>
    public async Task<TReply> LeaderCallAsync<TRequest, TReply>(string method, TRequest request, MessageParser<TReply> parser, CancellationToken ct)
        where TRequest : IMessage<TRequest>
        where TReply : IMessage<TReply>
    {
        var deadline = Environment.TickCount64 + _timeoutMs;
        var tried = new HashSet<string>(StringComparer.Ordinal);
        var address = _addresses[0];
        RpcException? last = null;
        string? lastAddress = null;
        while (true)
        {
            var remainingMs = deadline - Environment.TickCount64;
            if (remainingMs <= 0)
            {
                break;
            }
            try
            {
                return await Channel(address).UnaryAsync(ClusterRpc.ServiceName, method, request, parser,
                    new CallOptions { TimeoutMs = (int)Math.Min(remainingMs, Math.Max(CallTimeoutMs, _timeoutMs)), CancellationToken = ct }).ConfigureAwait(false);
            }
            catch (RpcException e) when (e.Status == StatusCode.Unavailable && !ct.IsCancellationRequested)
            {
                last = e;
                lastAddress = address;
                tried.Add(address);
                if (e.Trailers.Get(MetaRpc.LeaderHintTrailer) is { } hint && !tried.Contains(hint))
                {
                    address = hint;
                    continue;
                }
                var next = _addresses.FirstOrDefault(a => !tried.Contains(a));
                if (next is null)
                {
                    await Task.Delay((int)Math.Clamp(deadline - Environment.TickCount64, 1, RetryDelayMs), ct).ConfigureAwait(false);
                    tried.Clear();
                    next = _addresses[0];
                }
                address = next;
            }
            catch (RpcException e) when (!ct.IsCancellationRequested)
            {
                throw new CliException(Describe(address, e));
            }
        }
        throw new CliException(last is null
            ? $"no leader answered within {_timeoutMs} ms (tried {string.Join(",", _addresses)})"
            : $"no leader answered within {_timeoutMs} ms (tried {string.Join(",", _addresses)}); last: {Describe(lastAddress!, last)}");
    }

    /// <summary>Calls <paramref name="method"/> on one member.</summary>
    public async Task<TReply> CallAsync<TRequest, TReply>(string address, string method, TRequest request, MessageParser<TReply> parser, int timeoutMs, CancellationToken ct)
        where TRequest : IMessage<TRequest>
        where TReply : IMessage<TReply>
    {
        try
        {
            return await Channel(address).UnaryAsync(ClusterRpc.ServiceName, method, request, parser,
                new CallOptions { TimeoutMs = timeoutMs, CancellationToken = ct }).ConfigureAwait(false);
        }
        catch (RpcException e) when (!ct.IsCancellationRequested)
        {
            throw new CliException(Describe(address, e));
        }
    }

    /// <summary>Asks every listed member, then every member their configurations name that was not listed.</summary>
    public async Task<IReadOnlyList<NodeAnswer>> StatusAllAsync(CancellationToken ct)
    {
        var answers = new Dictionary<string, NodeAnswer>(StringComparer.Ordinal);
        var pending = _addresses.ToList();
        while (pending.Count > 0 && answers.Count < StatusNodesMax)
        {
            var round = await Task.WhenAll(pending.Take(StatusNodesMax - answers.Count).Select(a => StatusOneAsync(a, ct))).ConfigureAwait(false);
            foreach (var a in round)
            {
                answers[a.Address] = a;
            }
            pending = round.Where(a => a.Reply is not null)
                .SelectMany(a => a.Reply!.Members.Select(m => m.Address))
                .Where(a => a.Length > 0 && !answers.ContainsKey(a))
                .Distinct(StringComparer.Ordinal).ToList();
        }
        return [.. answers.Values];
    }

    private async Task<NodeAnswer> StatusOneAsync(string address, CancellationToken ct)
    {
        try
        {
            var reply = await CallAsync(address, "Status", new ClusterStatusRequest(), ClusterStatusReply.Parser, StatusTimeoutMs, ct).ConfigureAwait(false);
            return new NodeAnswer(address, reply, null);
        }
        catch (CliException e)
        {
            return new NodeAnswer(address, null, e.Message);
        }
    }

    public static string Describe(string address, RpcException e) => e.Status switch
    {
        StatusCode.Unauthenticated => $"metaserver {address} refused the token: pass --token-file with the cluster's token",
        StatusCode.Unavailable when e.Message.Contains("not the leader", StringComparison.Ordinal) => $"{address}: {e.Message}",
        StatusCode.Unavailable => $"cannot reach metaserver {address}: {MetaCli.FirstLine(e.Message)}",
        StatusCode.Unimplemented => $"{address} does not serve cluster administration (an older mirrorfs-meta?): {e.Message}",
        _ => $"{address}: {MetaCli.FirstLine(e.Message)}",
    };

    public void Dispose()
    {
        lock (_channels)
        {
            foreach (var ch in _channels.Values)
            {
                ch.Dispose();
            }
            _channels.Clear();
        }
    }
}
