// The replicator's running figures: counters, copy rate, block-lag samples, and the last error.
namespace MirrorFS.Mirror.Replication;

public sealed class ReplicatorStats
{
    /// <summary>Block-lag samples kept for percentiles (the most recent ones).</summary>
    public const int LagSamplesMax = 8192;

    /// <summary>Window the copy rate is averaged over.</summary>
    public const int RateWindowSeconds = 10;

    private readonly Lock _lock = new();
    private readonly double[] _lagMs = new double[LagSamplesMax];
    private readonly long[] _rateBytes = new long[RateWindowSeconds + 1];
    private readonly long[] _rateSecond = new long[RateWindowSeconds + 1];
    private readonly TimeProvider _time;
    private int _lagCount;
    private int _lagNext;
    private string? _lastError;
    private long _lastErrorUnixMs;

    public ReplicatorStats(TimeProvider? time = null) => _time = time ?? TimeProvider.System;

    public long BlocksCopied;
    public long BytesCopied;
    public long BlocksAlreadyPresent;
    public long BlocksGoneFromSource;
    public long BlocksDamagedInSource;
    public long BlocksDeleted;
    public long Errors;
    public long EntriesRead;
    public long Resyncs;
    public long PrimaryCommitIndex;
    public long LastCheckpointUnixMs;
    public long LastCheckpointIndex;

    public void NoteError(string message)
    {
        Interlocked.Increment(ref Errors);
        lock (_lock)
        {
            _lastError = message;
            _lastErrorUnixMs = _time.GetUtcNow().ToUnixTimeMilliseconds();
        }
    }

    public (string? Message, long UnixMs) LastError()
    {
        lock (_lock)
        {
            return (_lastError, _lastErrorUnixMs);
        }
    }

    public void NoteCommitIndex(ulong index)
    {
        var seen = Interlocked.Read(ref PrimaryCommitIndex);
        while ((long)index > seen)
        {
            var was = Interlocked.CompareExchange(ref PrimaryCommitIndex, (long)index, seen);
            if (was == seen)
            {
                return;
            }
            seen = was;
        }
    }

    /// <summary>A block reached the mirror bucket (or was found there): lag is measured from its entry's time.</summary>
    public void NoteBlockDone(BlockJob block, bool copied)
    {
        var nowMs = _time.GetUtcNow().ToUnixTimeMilliseconds();
        if (copied)
        {
            Interlocked.Increment(ref BlocksCopied);
            Interlocked.Add(ref BytesCopied, block.Size);
        }
        else
        {
            Interlocked.Increment(ref BlocksAlreadyPresent);
        }
        lock (_lock)
        {
            _lagMs[_lagNext] = Math.Max(0, nowMs - (block.TimeNs / 1_000_000.0));
            _lagNext = (_lagNext + 1) % LagSamplesMax;
            _lagCount = Math.Min(_lagCount + 1, LagSamplesMax);
            if (copied)
            {
                var second = nowMs / 1000;
                var slot = (int)(second % _rateBytes.Length);
                if (_rateSecond[slot] != second)
                {
                    _rateSecond[slot] = second;
                    _rateBytes[slot] = 0;
                }
                _rateBytes[slot] += block.Size;
            }
        }
    }

    /// <summary>Bytes copied per second over the last <see cref="RateWindowSeconds"/> whole seconds.</summary>
    public double CopyRateBytesPerSecond()
    {
        var now = _time.GetUtcNow().ToUnixTimeMilliseconds() / 1000;
        long sum = 0;
        lock (_lock)
        {
            for (var i = 0; i < _rateBytes.Length; i++)
            {
                // The current second is still filling up: count the whole seconds before it.
                if (_rateSecond[i] < now && _rateSecond[i] >= now - RateWindowSeconds)
                {
                    sum += _rateBytes[i];
                }
            }
        }
        return sum / (double)RateWindowSeconds;
    }

    /// <summary>Block-lag percentiles (ms) over the recent samples; zeros when there are none.</summary>
    public (double P50, double P90, double P99, double Max, int Samples) LagPercentiles()
    {
        double[] copy;
        lock (_lock)
        {
            copy = _lagMs.AsSpan(0, _lagCount).ToArray();
        }
        if (copy.Length == 0)
        {
            return (0, 0, 0, 0, 0);
        }
        Array.Sort(copy);
        return (Percentile(copy, 0.50), Percentile(copy, 0.90), Percentile(copy, 0.99), copy[^1], copy.Length);
    }

    public static double Percentile(double[] sorted, double q) =>
        sorted[Math.Clamp((int)Math.Ceiling(q * sorted.Length) - 1, 0, sorted.Length - 1)];
}
