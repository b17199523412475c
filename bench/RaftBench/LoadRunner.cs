// Closed-loop load: N callers each issue one write after another for a fixed time; counts writes and latencies.
using System.Diagnostics;

namespace MirrorFS.Bench;

internal sealed record LoadResult(int Callers, long Writes, double Seconds, double P50Ms, double P99Ms, long Errors, string? FirstError)
{
    /// <summary>CPU time (µs) and context switches per write of the cluster's processes, in the window.</summary>
    public (double CpuUs, double Switches)? Cost { get; init; }

    /// <summary>The same for this process, the client.</summary>
    public (double CpuUs, double Switches)? ClientCost { get; init; }

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
    public static async Task<LoadResult> RunAsync(int callers, double warmupSeconds, double measureSeconds, Func<int, long, Task> call,
        IReadOnlyList<int>? pids = null)
    {
        var start = Stopwatch.GetTimestamp() + (long)(warmupSeconds * Stopwatch.Frequency);
        var end = start + (long)(measureSeconds * Stopwatch.Frequency);
        var samples = new List<long>[callers];
        var counts = new long[callers];
        long errors = 0;
        string? firstError = null;
        using var abort = new CancellationTokenSource();
        // Sampled at the window's edges: what the servers and this client spend per write is steadier than latency
        // when other work shares the cores.
        var watched = pids ?? [];
        int[] self = [Environment.ProcessId];
        var sampler = Task.Run(async () =>
        {
            await Task.Delay(TimeSpan.FromSeconds(warmupSeconds));
            var a = ProcStat.Sample(watched);
            var ac = ProcStat.Sample(self);
            await Task.Delay(TimeSpan.FromSeconds(measureSeconds));
            return (a, ProcStat.Sample(watched), ac, ProcStat.Sample(self));
        });
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
        var (s0, s1, c0, c1) = await sampler;
        var writes = counts.Sum();
        return new LoadResult(callers, writes, measureSeconds, Pct(0.50), Pct(0.99), errors, firstError)
        {
            Cost = writes == 0 || watched.Count == 0 ? null : ((s1.CpuUs - s0.CpuUs) / writes, (double)(s1.Switches - s0.Switches) / writes),
            ClientCost = writes == 0 ? null : ((c1.CpuUs - c0.CpuUs) / writes, (double)(c1.Switches - c0.Switches) / writes),
        };
    }
}
