// The metadata client over RPC: knows every member, follows not-leader hints, retries with the same (session, seq).
using System.Collections.Concurrent;
using System.Diagnostics;
using Google.Protobuf;
using MirrorFS.Core.Metrics;
using MirrorFS.Core.Rpc;

namespace MirrorFS.Core.Meta;

public sealed record RpcMetaClientOptions
{
    /// <summary>Every metaserver member as host:port.</summary>
    public required IReadOnlyList<string> Addresses { get; init; }

    public string? BearerToken { get; init; }

    /// <summary>One call's deadline on one member.</summary>
    public int CallTimeoutMs { get; init; } = 10_000;

    /// <summary>How long a call keeps trying across members (leader changes, restarts) before it fails.</summary>
    public int FailoverTimeoutMs { get; init; } = 15_000;

    /// <summary>Pause between rounds over all members when none answered.</summary>
    public int RetryDelayMs { get; init; } = 50;

    /// <summary>When set, every call's latency (failover included) and failures are recorded here by method.</summary>
    public MetricsRegistry? Metrics { get; init; }
}

public sealed partial class RpcMetaClient : IMetaClient
{
    private readonly RpcMetaClientOptions _options;
    private readonly Dictionary<string, RpcChannel> _channels = new(StringComparer.Ordinal);
    private readonly Lock _lock = new();
    private volatile string _current;
    private ulong _highestIndex;
    private readonly HistogramFamily? _latency;
    private readonly CounterFamily? _errors;
    private readonly ConcurrentDictionary<string, (Histogram Latency, Counter Errors)> _series = new(StringComparer.Ordinal);

    public RpcMetaClient(RpcMetaClientOptions options)
    {
        if (options.Addresses.Count == 0)
        {
            throw new ArgumentException("no metaserver address given", nameof(options));
        }
        _options = options;
        _current = options.Addresses[0];
        if (options.Metrics is { } m)
        {
            _latency = m.HistogramFamily("mirrorfs_meta_request_duration_seconds",
                "Metadata call latency in seconds as the client sees it (failover and retries included), by method.",
                Buckets.LatencySeconds, "method");
            _errors = m.CounterFamily("mirrorfs_meta_request_errors_total",
                "Metadata calls that failed with an exception (not an errno reply), by method.", "method");
        }
    }

    /// <summary>The member calls go to first (the last known leader).</summary>
    public string CurrentAddress => _current;

    /// <summary>The highest log index any reply reflected: reads never go back before it.</summary>
    public ulong HighestIndex => Interlocked.Read(ref _highestIndex);

    private RpcChannel Channel(string address)
    {
        lock (_lock)
        {
            if (!_channels.TryGetValue(address, out var ch))
            {
                ch = new RpcChannel(new RpcChannelOptions
                {
                    Address = address,
                    BearerToken = _options.BearerToken,
                });
                _channels[address] = ch;
            }
            return ch;
        }
    }

    private async Task<TReply> CallAsync<TRequest, TReply>(string method, TRequest request, MessageParser<TReply> parser,
        CancellationToken ct)
        where TRequest : IMessage<TRequest>
        where TReply : IMessage<TReply>, IMetaReply
    {
        if (_latency is null)
        {
            return await CallCoreAsync(method, request, parser, ct).ConfigureAwait(false);
        }
        var series = _series.GetOrAdd(method, static (m, f) => (f.Latency.WithLabels(m), f.Errors.WithLabels(m)), (Latency: _latency, Errors: _errors!));
        var start = Stopwatch.GetTimestamp();
        try
        {
            return await CallCoreAsync(method, request, parser, ct).ConfigureAwait(false);
        }
        catch
        {
            series.Errors.Inc();
            throw;
        }
        finally
        {
            series.Latency.ObserveSince(start);
        }
    }

    private async Task<TReply> CallCoreAsync<TRequest, TReply>(string method, TRequest request, MessageParser<TReply> parser,
        CancellationToken ct)
        where TRequest : IMessage<TRequest>
        where TReply : IMessage<TReply>, IMetaReply
    {
        var deadline = Environment.TickCount64 + _options.FailoverTimeoutMs;
        var address = _current;
        HashSet<string>? tried = null; // only failures pay for it
        RpcException? last = null;
        var min = MetaCallContext.MinIndex;
        var metadata = min == 0 ? null
            : new RpcMetadata().Add(MetaRpc.MinIndexHeader, min.ToString(System.Globalization.CultureInfo.InvariantCulture));
        while (true)
        {
            ct.ThrowIfCancellationRequested();
            // One deadline bounds the whole call, hint-following and retries included.
            var remainingMs = deadline - Environment.TickCount64;
            if (remainingMs <= 0 && last is not null)
            {
                break;
            }
            try
            {
                var reply = await Channel(address).UnaryAsync(MetaRpc.ServiceName, method, request, parser,
                    new CallOptions
                    {
                        TimeoutMs = (int)Math.Clamp(remainingMs, 1, _options.CallTimeoutMs),
                        CancellationToken = ct,
                        Metadata = metadata,
                    }).ConfigureAwait(false);
                _current = address;
                NoteIndex(reply.Index);
                return reply;
            }
            catch (RpcException e) when (e.Status is StatusCode.Unavailable or StatusCode.DeadlineExceeded
                                         && !ct.IsCancellationRequested
                                         && e.Trailers.Get(MetaRpc.MirrorBehindTrailer) is null) // the caller decides
            {
                // The same request object, and so the same (session, seq), goes to the next member: the state
                // machine's reply cache makes a repeated mutation return its first result.
                last = e;
                tried ??= new HashSet<string>(StringComparer.Ordinal);
                tried.Add(address);
                var hint = e.Trailers.Get(MetaRpc.LeaderHintTrailer);
                if (hint is not null && !tried.Contains(hint))
                {
                    address = hint;
                    continue;
                }
                var next = _options.Addresses.FirstOrDefault(a => !tried.Contains(a));
                if (next is null)
                {
                    if (Environment.TickCount64 >= deadline)
                    {
                        break;
                    }
                    await Task.Delay((int)Math.Clamp(deadline - Environment.TickCount64, 1, _options.RetryDelayMs), ct).ConfigureAwait(false);
                    tried.Clear();
                    next = _options.Addresses[0];
                }
                address = next;
            }
        }
        throw new MetaUnavailableException(
            $"metaserver {string.Join(",", _options.Addresses)} did not answer {method} within {_options.FailoverTimeoutMs} ms: {last?.Message}",
            last);
    }

    private void NoteIndex(ulong index)
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

    public ValueTask DisposeAsync()
    {
        lock (_lock)
        {
            foreach (var ch in _channels.Values)
            {
                ch.Dispose();
            }
            _channels.Clear();
        }
        return ValueTask.CompletedTask;
    }
}
