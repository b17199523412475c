// mirrorfs bench: big-file and small-file throughput and latency on a directory (a mount, or any directory).
using System.CommandLine;
using System.Globalization;

namespace MirrorFS.Client.Cli;

public static class BenchCommand
{
    public const int ThreadsMax = 256;
    public const int SmallFilesMax = 10_000_000;
    public const long BigFileBytesMax = 1L << 40;
    public const int SmallFileBytesMax = 64 << 20;

    public static Command Create(CliContext ctx)
    {
        var path = new Argument<string>("PATH") { Description = "Directory to benchmark in (a temporary subdirectory is made and removed)" };
        var bigSize = new Option<string>("--big-file-size") { Description = "Size of each big file (0 skips the big-file tests)", DefaultValueFactory = _ => "1G" };
        var smallFiles = new Option<int>("--small-files") { Description = "Number of small files (0 skips the small-file tests)", DefaultValueFactory = _ => 1000 };
        var smallSize = new Option<string>("--small-size") { Description = "Size of each small file", DefaultValueFactory = _ => "4K" };
        var threads = new Option<int>("--threads") { Description = "Concurrent threads (each writes its own big file)", DefaultValueFactory = _ => 1 };
        var cmd = new Command("bench", "Benchmark a directory: big file write/read, small file write/read/stat")
        {
            path, bigSize, smallFiles, smallSize, threads,
        };
        cmd.SetAction(CliApp.Guard(ctx, "bench", async (parse, ct) =>
        {
            var dir = parse.GetValue(path)!;
            if (!Directory.Exists(dir))
            {
                throw new CliException($"PATH {dir} is not a directory: give a directory inside the mount");
            }
            var big = Sizes.Parse(parse.GetValue(bigSize)!, "--big-file-size");
            var smallBytes = Sizes.Parse(parse.GetValue(smallSize)!, "--small-size");
            var n = parse.GetValue(smallFiles);
            var t = parse.GetValue(threads);
            if (big > BigFileBytesMax)
            {
                throw new CliException($"--big-file-size {Sizes.Format(big)} is too large: use at most 1T");
            }
            if (smallBytes is < 0 or > SmallFileBytesMax)
            {
                throw new CliException($"--small-size {Sizes.Format(smallBytes)} is out of range: use 0 to 64M");
            }
            if (n is < 0 or > SmallFilesMax)
            {
                throw new CliException($"--small-files {n} is out of range: use 0 to {SmallFilesMax}");
            }
            if (t is < 1 or > ThreadsMax)
            {
                throw new CliException($"--threads {t} is out of range: use 1 to {ThreadsMax}");
            }
            var results = await FsBench.RunAsync(dir, new FsBenchOptions
            {
                BigFileBytes = big,
                SmallFiles = n,
                SmallFileBytes = (int)smallBytes,
                Threads = t,
            }, p => ctx.Err.WriteLine("  " + p), ct).ConfigureAwait(false);
            Write(ctx, results);
            return 0;
        }));
        return cmd;
    }

    public static void Write(CliContext ctx, IReadOnlyList<FsBenchResult> results)
    {
        var inv = CultureInfo.InvariantCulture;
        Tables.Write(ctx, null, ["test", "rate", "latency", "ops", "seconds"],
            results.Select(r => (IReadOnlyList<string>)
            [
                r.Test,
                string.Create(inv, $"{r.Rate:F1} {r.Unit}"),
                string.Create(inv, $"{r.MeanLatencyMs:F3} ms/op"),
                r.Operations.ToString(inv),
                string.Create(inv, $"{r.Seconds:F2}"),
            ]), new HashSet<int> { 1, 2, 3, 4 });
    }
}
