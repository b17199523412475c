// Closed-loop load: N callers each issue one write after another for a fixed time; counts writes and latencies.
using System.Diagnostics;

namespace MirrorFS.Bench;

internal sealed record LoadResult(int Callers, long Writes, double Seconds, double P50Ms, double P99Ms, long Errors, string? FirstError)
{
    public double WritesPerSecond => Writes / Seconds;
}

internal static class LoadRunner
{
    /// <summary>Latency samples kept per caller; writes beyond it are still counted.</summary>
    private const int SamplesPerCallerMax = 4_000_000;

    /// <summary>A run with more failed writes than this stops: the figures would mean nothing.</summary>
    private const long ErrorsMax = 100;

    /// <summary>Runs <paramref name="call"/>(caller, i) from <paramref name="callers"/> tasks: first a warm-up (not
    /// counted), then <paramref name="measureSeconds"/>. Only writes that start and end inside the window count.</summary>
    public static async Task<LoadResult> RunAsync(int callers, double warmupSeconds, double measureSeconds, Func<int, long, Task> call)
    {
        var start = Stopwatch.GetTimestamp() + (long)(warmupSeconds * Stopwatch.Frequency);
        var end = start + (long)(measureSeconds * Stopwatch.Frequency);
        var samples = new List<long>[callers];
        var counts = new long[callers];
        long errors = 0;
        string? firstError = null;
        using var abort = new CancellationTokenSource();
        var tasks = Enumerable.Range(0, callers).Select(c => Task.Run(async () =>
        {
            var mine = samples[c] = new List<long>(1024);
            for (long i = 0; !abort.IsCancellationRequested; i++)
            {
                var t0 = Stopwatch.GetTimestamp();
                if (t0 >= end)
                {
                    return;
                }
                try
                {
                    await call(c, i);
                }
                catch (Exception e)
                {
                    Interlocked.CompareExchange(ref firstError, $"{e.GetType().Name}: {e.Message}", null);
                    if (Interlocked.Increment(ref errors) > ErrorsMax)
                    {
                        await abort.CancelAsync();
                    }
                    continue;
                }
                var t1 = Stopwatch.GetTimestamp();
                if (t0 >= start && t1 <= end)
                {
                    counts[c]++;
                    if (mine.Count < SamplesPerCallerMax)
                    {
                        mine.Add(t1 - t0);
                    }
                }
            }
        })).ToArray();
        await Task.WhenAll(tasks);
        var all = samples.SelectMany(s => s).ToArray();
        Array.Sort(all);
        double Ms(long ticks) => ticks * 1000.0 / Stopwatch.Frequency;
        double Pct(double q) => all.Length == 0 ? double.NaN : Ms(all[Math.Clamp((int)Math.Ceiling(all.Length * q) - 1, 0, all.Length - 1)]);
        return new LoadResult(callers, counts.Sum(), measureSeconds, Pct(0.50), Pct(0.99), errors, firstError);
    }
}
