// mirrorfs objbench: measures an object store directly (big-object throughput, small-object op rates).
using System.CommandLine;
using System.Globalization;
using MirrorFS.Core.Storage;

namespace MirrorFS.Client.Cli;

public static class ObjBenchCommand
{
    public const int CountMax = 100_000;
    public const int ParallelMax = 256;

    public static Command Create(CliContext ctx)
    {
        var uri = new Argument<string>("URI") { Description = "Object storage URI (file:///PATH, s3://..., oss://...)" };
        var bigCount = new Option<int>("--big-count") { Description = "Big objects per parallelism level", DefaultValueFactory = _ => 32 };
        var bigSize = new Option<string>("--big-size") { Description = "Size of a big object", DefaultValueFactory = _ => "4M" };
        var smallCount = new Option<int>("--small-count") { Description = "Small objects per parallelism level", DefaultValueFactory = _ => 200 };
        var smallSize = new Option<string>("--small-size") { Description = "Size of a small object", DefaultValueFactory = _ => "4K" };
        var parallel = new Option<string>("--parallel") { Description = "Parallelism levels, comma-separated", DefaultValueFactory = _ => "1,4,16" };
        var cmd = new Command("objbench", "Benchmark an object store: put/get/head/delete at several parallelism levels")
        {
            uri, bigCount, bigSize, smallCount, smallSize, parallel,
        };
        cmd.SetAction(CliApp.Guard(ctx, "objbench", async (parse, ct) =>
        {
            var options = new ObjectBenchmarkOptions
            {
                BigObjectCount = Count(parse.GetValue(bigCount), "--big-count"),
                BigObjectBytes = ObjectSize(parse.GetValue(bigSize)!, "--big-size"),
                SmallObjectCount = Count(parse.GetValue(smallCount), "--small-count"),
                SmallObjectBytes = ObjectSize(parse.GetValue(smallSize)!, "--small-size"),
                Parallelism = ParseLevels(parse.GetValue(parallel)!),
            };
            var raw = parse.GetValue(uri)!;
            await using var store = ObjectStoreFactory.Open(raw);
            await ctx.Out.WriteLineAsync($"objbench {ObjectStoreFactory.Redact(raw)}").ConfigureAwait(false);
            var figures = await ObjectBenchmark.RunAsync(store, options, p => ctx.Err.WriteLine("  " + p), ct).ConfigureAwait(false);
            await ctx.Out.WriteAsync(ObjectBenchmark.Format(figures)).ConfigureAwait(false);
            return 0;
        }));
        return cmd;
    }

    private static int Count(int n, string what) =>
        n is < 1 or > CountMax ? throw new CliException($"{what} {n} is out of range: use 1 to {CountMax}") : n;

    private static int ObjectSize(string text, string what)
    {
        var bytes = Sizes.Parse(text, what);
        return bytes is < 1 or > 256 << 20
            ? throw new CliException($"{what} {text} is out of range: use 1 byte to 256M")
            : (int)bytes;
    }

    /// <summary>"1,4,16" -> [1, 4, 16]; each level 1..<see cref="ParallelMax"/>.</summary>
    public static int[] ParseLevels(string text)
    {
        var levels = new List<int>();
        foreach (var part in text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
            if (!int.TryParse(part, NumberStyles.None, CultureInfo.InvariantCulture, out var p) || p is < 1 or > ParallelMax)
            {
                throw new CliException($"--parallel '{text}' is not a list of levels: use numbers from 1 to {ParallelMax}, comma-separated (e.g. 1,4,16)");
            }
            levels.Add(p);
        }
        return levels.Count == 0
            ? throw new CliException($"--parallel '{text}' names no level: use e.g. 1,4,16")
            : [.. levels.Distinct()];
    }
}
