// A token bucket whose rate can change while callers wait: bandwidth (bytes) and metadata call (ops) limits.
using System.Diagnostics;

namespace MirrorFS.Client.Vfs;

/// <summary>
/// Allows <see cref="Rate"/> units per second on average (0 = unlimited), with a burst of one second's worth. Callers
/// wait in arrival order. A request larger than a second's worth waits for a full bucket and then leaves a debt the
/// next callers wait out, so the average holds for blocks bigger than the rate. Waiting happens in short slices that
/// re-read the rate, so a new limit (or none) applies to callers already waiting.
/// </summary>
public sealed class RateLimiter : IDisposable
{
    /// <summary>Longest sleep before the rate is read again.</summary>
    public const int WaitSliceMs = 100;

    private readonly SemaphoreSlim _gate = new(1, 1);
    private readonly Lock _lock = new();
    private long _rate;
    private double _tokens;
    private long _last = Stopwatch.GetTimestamp();

    /// <summary>Units per second; 0 = unlimited.</summary>
    public long Rate => Volatile.Read(ref _rate);

    public void SetRate(long rate)
    {
        rate = Math.Max(0, rate);
        lock (_lock)
        {
            Refill();
            // Coming from unlimited, start with a full second; otherwise keep what was saved (at most a second's worth).
            _tokens = _rate == 0 ? rate : Math.Min(_tokens, rate);
            Volatile.Write(ref _rate, rate);
        }
    }

    private void Refill()
    {
        var now = Stopwatch.GetTimestamp();
        var seconds = (double)(now - _last) / Stopwatch.Frequency;
        _last = now;
        if (_rate > 0)
        {
            _tokens = Math.Min(_rate, _tokens + (seconds * _rate));
        }
    }

    /// <summary>Waits until <paramref name="units"/> may pass.</summary>
    public async ValueTask AcquireAsync(long units, CancellationToken ct = default)
    {
        if (Volatile.Read(ref _rate) == 0 || units <= 0)
        {
            return;
        }
        await _gate.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            while (true)
            {
                int waitMs;
                lock (_lock)
                {
                    if (_rate == 0)
                    {
                        return;
                    }
                    Refill();
                    var need = Math.Min(units, _rate);
                    if (_tokens >= need)
                    {
                        _tokens -= units;
                        return;
                    }
                    waitMs = (int)Math.Ceiling((need - _tokens) * 1000.0 / _rate);
                }
                await Task.Delay(Math.Clamp(waitMs, 1, WaitSliceMs), ct).ConfigureAwait(false);
            }
        }
        finally
        {
            _gate.Release();
        }
    }

    public void Dispose() => _gate.Dispose();
}
