// The leader-side trash purge job: every few minutes, deletes trash hour directories older than the volume's trash days.
using Microsoft.Extensions.Logging;
using MirrorFS.MetaServer.Consensus;
using MirrorFS.MetaServer.Engine;

namespace MirrorFS.MetaServer.Hosting;

/// <summary>
/// Runs on every node and acts on the leader only (a proposal racing a leadership change fails with
/// <see cref="NotLeaderException"/>, which is quietly ignored). The cut-off comes from this node's clock; apply uses only the time the command carries.
/// </summary>
public sealed class TrashPurger : IAsyncDisposable
{
    private readonly MetaService _service;
    private readonly TimeProvider _time;
    private readonly ILogger _log;
    private readonly int _intervalMs;
    private readonly Func<bool> _isLeader;
    private readonly CancellationTokenSource _stop = new();
    private Task? _loop;

    /// <param name="isLeader">Whether this node leads now (passes are skipped otherwise); null: always.</param>
    public TrashPurger(MetaService service, int intervalMs, ILogger log, TimeProvider? time = null, Func<bool>? isLeader = null)
    {
        _isLeader = isLeader ?? (() => true);
        _service = service;
        _intervalMs = Math.Max(1, intervalMs);
        _log = log;
        _time = time ?? TimeProvider.System;
    }

    public void Start() => _loop ??= Task.Run(LoopAsync, CancellationToken.None);

    /// <summary>One purge pass as if the clock read <paramref name="now"/>; returns the names deleted.</summary>
    public async Task<ulong> RunOnceAsync(DateTimeOffset now, CancellationToken ct = default)
    {
        var (formatted, days) = _service.State.TrashSetting();
        if (!formatted)
        {
            return 0;
        }
        var removed = await _service.PurgeTrashAsync(now, days, ct).ConfigureAwait(false);
        if (removed > 0)
        {
            _log.LogInformation("trash purge deleted {Count} entries older than {Days} days", removed, days);
        }
        return removed;
    }

    private async Task LoopAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            try
            {
                await Task.Delay(_intervalMs, _stop.Token).ConfigureAwait(false);
                if (!_isLeader())
                {
                    continue; // the leader's clock decides what is old; a follower's proposal would only be refused
                }
                await RunOnceAsync(_time.GetUtcNow(), _stop.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (_stop.IsCancellationRequested)
            {
                return;
            }
            catch (NotLeaderException)
            {
                // Another node leads; its own job purges.
            }
            catch (Exception e)
            {
                _log.LogWarning(e, "trash purge failed; will try again");
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        if (_loop is not null)
        {
            await _loop.ConfigureAwait(false);
        }
        _stop.Dispose();
    }
}
