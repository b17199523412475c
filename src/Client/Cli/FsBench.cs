// The file-system benchmark behind `mirrorfs bench`: plain file calls on a directory, so it runs on any file system.
using System.Diagnostics;

namespace MirrorFS.Client.Cli;

public sealed record FsBenchOptions
{
    public long BigFileBytes { get; init; } = 1L << 30;
    /// <summary>Small files in total, split over the threads.</summary>
    public int SmallFiles { get; init; } = 1000;
    public int SmallFileBytes { get; init; } = 4 << 10;
    public int Threads { get; init; } = 1;
    /// <summary>Size of one read or write call on the big files.</summary>
    public int IoBytes { get; init; } = 1 << 20;
}

/// <summary>One result: <see cref="Rate"/> in <see cref="Unit"/>, and the mean time of one operation.</summary>
/// <param name="Operations">Operations the latency is averaged over (I/O calls for big files, files otherwise).</param>
public sealed record FsBenchResult(string Test, double Rate, string Unit, double MeanLatencyMs, long Operations, double Seconds);

public static class FsBench
{
    public static async Task<IReadOnlyList<FsBenchResult>> RunAsync(string path, FsBenchOptions o, Action<string>? progress = null,
        CancellationToken ct = default)
    {
        var dir = Path.Combine(Path.GetFullPath(path), $"__mirrorfs_bench_{Environment.ProcessId}_{Guid.NewGuid().ToString("N")[..8]}");
        Directory.CreateDirectory(dir);
        var results = new List<FsBenchResult>();
        try
        {
            var buffer = new byte[o.IoBytes];
            Random.Shared.NextBytes(buffer);
            var small = new byte[o.SmallFileBytes];
            Random.Shared.NextBytes(small);
            var bigMiB = o.BigFileBytes * (double)o.Threads / (1 << 20);
            var bigIos = (o.BigFileBytes + o.IoBytes - 1) / o.IoBytes * o.Threads;

            if (o.BigFileBytes > 0)
            {
                progress?.Invoke($"writing {o.Threads} x {Sizes.Format(o.BigFileBytes)} big file(s)");
                var secs = await Parallel(o.Threads, t => WriteBig(Path.Combine(dir, $"big.{t}"), o, buffer, ct), ct).ConfigureAwait(false);
                results.Add(new FsBenchResult("write big file", bigMiB / secs, "MiB/s", secs * 1000 * o.Threads / bigIos, bigIos, secs));

                progress?.Invoke($"reading {o.Threads} x {Sizes.Format(o.BigFileBytes)} big file(s)");
                secs = await Parallel(o.Threads, t => ReadBig(Path.Combine(dir, $"big.{t}"), o, ct), ct).ConfigureAwait(false);
                results.Add(new FsBenchResult("read big file", bigMiB / secs, "MiB/s", secs * 1000 * o.Threads / bigIos, bigIos, secs));
            }

            if (o.SmallFiles > 0)
            {
                var files = Enumerable.Range(0, o.SmallFiles).Select(i => Path.Combine(dir, $"small.{i}")).ToArray();
                var n = files.Length;
                progress?.Invoke($"writing {n} x {Sizes.Format(o.SmallFileBytes)} small files");
                var secs = await ForEach(files, o.Threads, f => File.WriteAllBytes(f, small), ct).ConfigureAwait(false);
                results.Add(SmallResult("write small files", n, secs, o.Threads));

                progress?.Invoke($"reading {n} small files");
                secs = await ForEach(files, o.Threads, f =>
                {
                    var got = File.ReadAllBytes(f);
                    if (got.Length != small.Length)
                    {
                        throw new IOException($"bench: {f} read back {got.Length} bytes, wrote {small.Length}");
                    }
                }, ct).ConfigureAwait(false);
                results.Add(SmallResult("read small files", n, secs, o.Threads));

                progress?.Invoke($"stat {n} small files");
                secs = await ForEach(files, o.Threads, f =>
                {
                    var info = new FileInfo(f);
                    if (!info.Exists || info.Length != small.Length)
                    {
                        throw new IOException($"bench: stat {f} gave {(info.Exists ? $"{info.Length} bytes" : "nothing")}");
                    }
                }, ct).ConfigureAwait(false);
                results.Add(SmallResult("stat small files", n, secs, o.Threads));
            }
        }
        finally
        {
            progress?.Invoke("cleaning up");
            try
            {
                Directory.Delete(dir, recursive: true);
            }
            catch (IOException e)
            {
                progress?.Invoke($"could not remove {dir}: {e.Message}");
            }
        }
        return results;
    }

    private static FsBenchResult SmallResult(string test, int n, double secs, int threads) =>
        new(test, n / secs, "files/s", secs * 1000 * threads / n, n, secs);

    private static void WriteBig(string file, FsBenchOptions o, byte[] buffer, CancellationToken ct)
    {
        using var fs = new FileStream(file, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1, FileOptions.None);
        for (long done = 0; done < o.BigFileBytes;)
        {
            ct.ThrowIfCancellationRequested();
            var n = (int)Math.Min(buffer.Length, o.BigFileBytes - done);
            fs.Write(buffer, 0, n);
            done += n;
        }
        fs.Flush(flushToDisk: true);
    }

    private static void ReadBig(string file, FsBenchOptions o, CancellationToken ct)
    {
        var buffer = new byte[o.IoBytes];
        using var fs = new FileStream(file, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.SequentialScan);
        long total = 0;
        int n;
        while ((n = fs.Read(buffer, 0, buffer.Length)) > 0)
        {
            ct.ThrowIfCancellationRequested();
            total += n;
        }
        if (total != o.BigFileBytes)
        {
            throw new IOException($"bench: {file} read back {total} bytes, wrote {o.BigFileBytes}");
        }
    }

    // Runs work(thread) on each of the threads at once; returns the wall time in seconds.
    private static async Task<double> Parallel(int threads, Action<int> work, CancellationToken ct)
    {
        var sw = Stopwatch.StartNew();
        await Task.WhenAll(Enumerable.Range(0, threads).Select(t => Task.Run(() => work(t), ct))).ConfigureAwait(false);
        return Math.Max(sw.Elapsed.TotalSeconds, 1e-9);
    }

    // Splits the items over the threads, each thread taking the next unclaimed item.
    private static Task<double> ForEach(string[] items, int threads, Action<string> op, CancellationToken ct)
    {
        var next = -1;
        return Parallel(threads, _ =>
        {
            int i;
            while ((i = Interlocked.Increment(ref next)) < items.Length)
            {
                ct.ThrowIfCancellationRequested();
                op(items[i]);
            }
        }, ct);
    }
}
