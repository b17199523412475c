// Bounds copy bandwidth: bytes per second with a burst allowance.
namespace MirrorFS.Mirror.Replication;

/// <summary>A token bucket over bytes. A taker may run the bucket into debt (so that a block larger than the burst
/// still passes); later takers wait until the debt is paid back at the configured rate.</summary>
public sealed class TokenBucket
{
    private readonly long _bytesPerSecond;
    private readonly long _burstBytes;
    private readonly TimeProvider _time;
    private readonly Lock _lock = new();
    private double _tokens;
    private long _lastTicks;

    /// <param name="bytesPerSecond">Rate; 0 means unlimited.</param>
    /// <param name="burstBytes">Tokens the bucket holds at most (what may pass at once after a quiet spell).</param>
    public TokenBucket(long bytesPerSecond, long burstBytes, TimeProvider? time = null)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(bytesPerSecond);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(burstBytes);
        _bytesPerSecond = bytesPerSecond;
        _burstBytes = burstBytes;
        _time = time ?? TimeProvider.System;
        _tokens = burstBytes;
        _lastTicks = _time.GetTimestamp();
    }

    public bool Unlimited => _bytesPerSecond == 0;

    /// <summary>Waits until <paramref name="bytes"/> may pass.</summary>
    public async ValueTask TakeAsync(long bytes, CancellationToken ct)
    {
        if (Unlimited)
        {
            return;
        }
        while (true)
        {
            TimeSpan wait;
            lock (_lock)
            {
                Refill();
                if (_tokens > 0)
                {
                    _tokens -= bytes;
                    return;
                }
                wait = TimeSpan.FromSeconds((1 - _tokens) / _bytesPerSecond);
            }
            await Task.Delay(wait < TimeSpan.FromMilliseconds(1) ? TimeSpan.FromMilliseconds(1) : wait, _time, ct)
                .ConfigureAwait(false);
        }
    }

    private void Refill()
    {
        var now = _time.GetTimestamp();
        var seconds = _time.GetElapsedTime(_lastTicks, now).TotalSeconds;
        _lastTicks = now;
        _tokens = Math.Min(_burstBytes, _tokens + seconds * _bytesPerSecond);
    }
}
