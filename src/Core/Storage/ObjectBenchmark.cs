// Measures a store the way `juicefs objbench` does: big-object throughput and small-object op rates at several
// parallelism levels. Used by `mirrorfs objbench` and the standalone bench program.
using System.Diagnostics;
using System.Globalization;
using System.Text;

namespace MirrorFS.Core.Storage;

public sealed record ObjectBenchmarkOptions
{
    public int[] Parallelism { get; init; } = [1, 4, 16];
    public int BigObjectBytes { get; init; } = 4 << 20;
    /// <summary>Big objects per parallelism level (at least the level itself is used).</summary>
    public int BigObjectCount { get; init; } = 32;
    public int SmallObjectBytes { get; init; } = 4 << 10;
    /// <summary>Small objects per parallelism level.</summary>
    public int SmallObjectCount { get; init; } = 200;
}

/// <summary>One measured figure: <see cref="Value"/> in <see cref="Unit"/> at <see cref="Parallel"/> callers.</summary>
public sealed record BenchFigure(string Test, int Parallel, double Value, string Unit, double P50Ms, double P99Ms);

public static class ObjectBenchmark
{
    public static async Task<IReadOnlyList<BenchFigure>> RunAsync(IObjectStore store, ObjectBenchmarkOptions options,
        Action<string>? progress = null, CancellationToken ct = default)
    {
        var figures = new List<BenchFigure>();
        var run = "__objbench/" + Guid.NewGuid().ToString("N")[..12];
        var big = new byte[options.BigObjectBytes];
        var small = new byte[options.SmallObjectBytes];
        Random.Shared.NextBytes(big);
        Random.Shared.NextBytes(small);
        var bigMiB = options.BigObjectBytes / (1024.0 * 1024.0);
        try
        {
            foreach (var p in options.Parallelism)
            {
                var bigKeys = Enumerable.Range(0, Math.Max(p, options.BigObjectCount)).Select(i => $"{run}/p{p}/big/{i}").ToArray();
                var smallKeys = Enumerable.Range(0, options.SmallObjectCount).Select(i => $"{run}/p{p}/small/{i}").ToArray();

                progress?.Invoke($"{p} parallel: {bigKeys.Length} x {Size(options.BigObjectBytes)} put");
                var (secs, lat) = await TimeAll(bigKeys, p, k => store.PutAsync(k, big, ct), ct).ConfigureAwait(false);
                figures.Add(Figure($"put {Size(options.BigObjectBytes)}", p, bigKeys.Length * bigMiB / secs, "MiB/s", lat));

                progress?.Invoke($"{p} parallel: {bigKeys.Length} x {Size(options.BigObjectBytes)} get");
                (secs, lat) = await TimeAll(bigKeys, p, async k =>
                {
                    var data = await store.GetAsync(k, null, ct).ConfigureAwait(false);
                    if (data is null || data.Length != big.Length)
                    {
                        throw new InvalidOperationException($"objbench: {k} came back {(data is null ? "missing" : $"with {data.Length} bytes")}");
                    }
                }, ct).ConfigureAwait(false);
                figures.Add(Figure($"get {Size(options.BigObjectBytes)}", p, bigKeys.Length * bigMiB / secs, "MiB/s", lat));

                progress?.Invoke($"{p} parallel: {smallKeys.Length} x {Size(options.SmallObjectBytes)} put/head/get/delete");
                (secs, lat) = await TimeAll(smallKeys, p, k => store.PutAsync(k, small, ct), ct).ConfigureAwait(false);
                figures.Add(Figure($"put {Size(options.SmallObjectBytes)}", p, smallKeys.Length / secs, "ops/s", lat));
                (secs, lat) = await TimeAll(smallKeys, p, async k =>
                {
                    if (await store.HeadAsync(k, ct).ConfigureAwait(false) is null)
                    {
                        throw new InvalidOperationException($"objbench: head {k} found nothing");
                    }
                }, ct).ConfigureAwait(false);
                figures.Add(Figure($"head {Size(options.SmallObjectBytes)}", p, smallKeys.Length / secs, "ops/s", lat));
                (secs, lat) = await TimeAll(smallKeys, p, k => store.GetAsync(k, null, ct), ct).ConfigureAwait(false);
                figures.Add(Figure($"get {Size(options.SmallObjectBytes)}", p, smallKeys.Length / secs, "ops/s", lat));
                (secs, lat) = await TimeAll(smallKeys, p, k => store.DeleteAsync(k, ct), ct).ConfigureAwait(false);
                figures.Add(Figure($"delete {Size(options.SmallObjectBytes)}", p, smallKeys.Length / secs, "ops/s", lat));

                await store.DeleteManyAsync(bigKeys, ct).ConfigureAwait(false);
            }
        }
        finally
        {
            var left = new List<string>();
            await foreach (var o in store.ListAllAsync(run + "/", ct: CancellationToken.None).ConfigureAwait(false))
            {
                left.Add(o.Key);
            }
            if (left.Count > 0)
            {
                await store.DeleteManyAsync(left, CancellationToken.None).ConfigureAwait(false);
            }
        }
        return figures;
    }

    /// <summary>The figures as a text table: one row per test, one column per parallelism level.</summary>
    public static string Format(IReadOnlyList<BenchFigure> figures)
    {
        var levels = figures.Select(f => f.Parallel).Distinct().Order().ToArray();
        var tests = figures.Select(f => f.Test).Distinct().ToArray();
        var inv = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        sb.Append(inv, $"{"test",-14}");
        foreach (var p in levels)
        {
            sb.Append(inv, $" | {$"{p} parallel",-28}");
        }
        sb.AppendLine();
        sb.Append(new string('-', 14 + (levels.Length * 31))).AppendLine();
        foreach (var t in tests)
        {
            sb.Append(inv, $"{t,-14}");
            foreach (var p in levels)
            {
                var f = figures.FirstOrDefault(x => x.Test == t && x.Parallel == p);
                var cell = f is null ? "-" : string.Create(inv, $"{f.Value,9:F1} {f.Unit} p50 {f.P50Ms:F1} ms");
                sb.Append(inv, $" | {cell,-28}");
            }
            sb.AppendLine();
        }
        return sb.ToString();
    }

    private static BenchFigure Figure(string test, int p, double value, string unit, double[] latMs) =>
        new(test, p, value, unit, Percentile(latMs, 0.50), Percentile(latMs, 0.99));

    private static double Percentile(double[] sorted, double q) =>
        sorted.Length == 0 ? 0 : sorted[Math.Min(sorted.Length - 1, (int)(q * sorted.Length))];

    private static string Size(int bytes) =>
        bytes >= 1 << 20 ? $"{bytes >> 20} MiB" : bytes >= 1 << 10 ? $"{bytes >> 10} KiB" : $"{bytes} B";

    // Runs op over all keys with p in flight; returns elapsed seconds and sorted per-op latencies in ms.
    private static async Task<(double Seconds, double[] LatencyMs)> TimeAll(string[] keys, int p, Func<string, Task> op,
        CancellationToken ct)
    {
        var lat = new double[keys.Length];
        var next = -1;
        var sw = Stopwatch.StartNew();
        var workers = Enumerable.Range(0, p).Select(async _ =>
        {
            int i;
            while ((i = Interlocked.Increment(ref next)) < keys.Length)
            {
                ct.ThrowIfCancellationRequested();
                var t0 = Stopwatch.GetTimestamp();
                await op(keys[i]).ConfigureAwait(false);
                lat[i] = Stopwatch.GetElapsedTime(t0).TotalMilliseconds;
            }
        });
        await Task.WhenAll(workers).ConfigureAwait(false);
        var secs = sw.Elapsed.TotalSeconds;
        Array.Sort(lat);
        return (secs, lat);
    }
}
