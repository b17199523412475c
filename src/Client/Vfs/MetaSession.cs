// A client session over IMetaClient: heartbeats, (seq, acked_seq) on every mutation, same-seq retries, highest index.
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using MirrorFS.Core.Meta;

namespace MirrorFS.Client.Vfs;

public sealed record MetaSessionOptions
{
    /// <summary>Pause between heartbeats; keep it well under the server's session timeout (5 min by default).</summary>
    public int HeartbeatIntervalMs { get; init; } = 20_000;

    /// <summary>Extra attempts of one mutating call (same seq) after an infrastructure failure.</summary>
    public int RetriesMax { get; init; } = 3;

    /// <summary>Pause before the first retry; doubles each time.</summary>
    public int RetryDelayMs { get; init; } = 100;

    public ClientInfo? Info { get; init; }
}

/// <summary>
/// Owns one metadata session. Every mutating request goes through <see cref="MutateAsync{TReq,TReply}"/>, which
/// stamps session id, a fresh seq and the acked seq (every seq below the oldest one still in flight), and retries an
/// infrastructure failure with the same seq so the server applies the call exactly once.
/// </summary>
public sealed class MetaSession : IAsyncDisposable
{
    private readonly IMetaClient _meta;
    private readonly MetaSessionOptions _options;
    private readonly ILogger _log;
    private readonly Lock _lock = new();
    private readonly SortedSet<ulong> _inFlight = [];
    private readonly CancellationTokenSource _stop = new();
    private ulong _nextSeq;
    private ulong _highestIndex;
    private Task? _heartbeat;
    private int _disposed;

    private MetaSession(IMetaClient meta, MetaSessionOptions options, ILogger log, ulong sessionId)
    {
        _meta = meta;
        _options = options;
        _log = log;
        SessionId = sessionId;
    }

    public IMetaClient Meta => _meta;

    /// <summary>Limits this session's calls per second (heartbeats excepted); unlimited until given a rate.</summary>
    public RateLimiter OpsLimiter { get; } = new();

    public ulong SessionId { get; private set; }

    /// <summary>The highest log index any reply of this session reflected.</summary>
    public ulong HighestIndex => Interlocked.Read(ref _highestIndex);

    public static async Task<MetaSession> StartAsync(IMetaClient meta, MetaSessionOptions? options = null,
        ILogger? log = null, CancellationToken ct = default)
    {
        options ??= new MetaSessionOptions();
        var reply = await meta.NewSessionAsync(new NewSessionRequest { Cred = new Credentials(), Info = options.Info ?? new ClientInfo() }, ct);
        if (reply.Errno != 0)
        {
            throw new IOException($"metaserver refused a new session: errno {reply.Errno}; check the volume is formatted");
        }
        var session = new MetaSession(meta, options, log ?? NullLogger.Instance, reply.SessionId);
        session.NoteIndex(reply.Index);
        session._heartbeat = Task.Run(session.HeartbeatLoopAsync);
        return session;
    }

    /// <summary>Records a reply's index (reads included) so the highest index never goes back.</summary>
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

    /// <summary>A read call: no session header, only index tracking.</summary>
    public async Task<TReply> ReadAsync<TReq, TReply>(TReq request, Func<IMetaClient, TReq, CancellationToken, Task<TReply>> call,
        CancellationToken ct = default)
        where TReq : IReadRequest
        where TReply : IMetaReply
    {
        await OpsLimiter.AcquireAsync(1, ct);
        var reply = await call(_meta, request, ct);
        NoteIndex(reply.Index);
        return reply;
    }

    /// <summary>Sends a mutating request exactly once: one seq, retried on infrastructure failures (bounded).</summary>
    public async Task<TReply> MutateAsync<TReq, TReply>(TReq request, Func<IMetaClient, TReq, CancellationToken, Task<TReply>> call,
        CancellationToken ct = default)
        where TReq : IMutatingRequest
        where TReply : IMetaReply
    {
        ulong seq;
        lock (_lock)
        {
            seq = ++_nextSeq;
            _inFlight.Add(seq);
            request.SessionId = SessionId;
            request.Seq = seq;
            request.AckedSeq = _inFlight.Min - 1;
        }
        request.Cred ??= new Credentials();
        try
        {
            await OpsLimiter.AcquireAsync(1, ct);
            var delayMs = _options.RetryDelayMs;
            for (var attempt = 0; ; attempt++)
            {
                try
                {
                    var reply = await call(_meta, request, ct);
                    NoteIndex(reply.Index);
                    if (reply.Errno == Errno.ENOTCONN)
                    {
                        _log.LogWarning("metadata session {Session} is unknown to the server (expired?): {Request} failed",
                            SessionId, typeof(TReq).Name);
                    }
                    return reply;
                }
                catch (Exception e) when (e is not OperationCanceledException && attempt < _options.RetriesMax)
                {
                    _log.LogWarning("metadata call {Request} seq {Seq} failed ({Error}); retrying with the same seq",
                        typeof(TReq).Name, seq, e.Message);
                    await Task.Delay(delayMs, ct);
                    delayMs = Math.Min(delayMs * 2, 5_000);
                }
            }
        }
        finally
        {
            // Done either way: the server may forget the reply (a call given up on is not retried again).
            lock (_lock)
            {
                _inFlight.Remove(seq);
            }
        }
    }

    private ulong AckedSeq()
    {
        lock (_lock)
        {
            return _inFlight.Count == 0 ? _nextSeq : _inFlight.Min - 1;
        }
    }

    private async Task HeartbeatLoopAsync()
    {
        var ct = _stop.Token;
        while (!ct.IsCancellationRequested)
        {
            try
            {
                await Task.Delay(_options.HeartbeatIntervalMs, ct);
                // seq 0: a heartbeat needs no deduplication.
                var reply = await _meta.HeartbeatAsync(new HeartbeatRequest { SessionId = SessionId, AckedSeq = AckedSeq(), Cred = new Credentials() }, ct);
                NoteIndex(reply.Index);
                if (reply.Errno != 0)
                {
                    _log.LogWarning("heartbeat of session {Session} got errno {Errno}", SessionId, reply.Errno);
                }
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                _log.LogWarning("heartbeat of session {Session} failed: {Error}", SessionId, e.Message);
            }
        }
    }

    /// <summary>Stops heartbeats and closes the session (its open files are released by the server).</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }
        await _stop.CancelAsync();
        if (_heartbeat is not null)
        {
            await _heartbeat;
        }
        _stop.Dispose();
        OpsLimiter.Dispose();
        try
        {
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            await _meta.CloseSessionAsync(new CloseSessionRequest { SessionId = SessionId, AckedSeq = AckedSeq(), Cred = new Credentials() }, cts.Token);
        }
        catch (Exception e)
        {
            _log.LogWarning("closing session {Session} failed: {Error}; the server expires it later", SessionId, e.Message);
        }
    }
}
