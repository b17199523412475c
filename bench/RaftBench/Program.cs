// mirrorfs-raftbench: committed metadata writes/s and commit latency of a three-node mirrorfs-meta cluster (real
// processes, loopback, data on disk) next to etcd 3.4 at the same concurrency; or, with --failover, election times
// after kill -9 of the leader.
//   bench/RaftBench/run.sh [--seconds 10] [--warmup 15] [--callers 1,64] [--rounds 1] [--only meta|etcd] [--failover [--kills 5]]
using System.Globalization;
using MirrorFS.Bench;

var inv = CultureInfo.InvariantCulture;
string? Opt(string name)
{
    var i = Array.IndexOf(args, name);
    return i >= 0 && i + 1 < args.Length ? args[i + 1] : null;
}
bool Flag(string name) => args.Contains(name);

var options = new BenchOptions
{
    Seconds = double.Parse(Opt("--seconds") ?? "10", inv),
    // A fresh .NET process keeps recompiling hot code (tiered JIT) for several seconds, longer on two busy cores;
    // measured with a 2 s warm-up, that JIT work was most of the servers' CPU at one caller. Both systems get the same.
    WarmupSeconds = double.Parse(Opt("--warmup") ?? "15", inv),
    Callers = (Opt("--callers") ?? "1,64").Split(',').Select(s => int.Parse(s, inv)).ToArray(),
    Only = Opt("--only"),
    ValueBytes = int.Parse(Opt("--value-bytes") ?? "256", inv),
    Kills = int.Parse(Opt("--kills") ?? "5", inv),
    Rounds = int.Parse(Opt("--rounds") ?? "1", inv),
    Root = Path.Combine(Opt("--dir") ?? "/tmp", "raftbench-" + Guid.NewGuid().ToString("N")[..8]),
    Keep = Flag("--keep"),
};
if (options.Only is not (null or "meta" or "etcd"))
{
    Console.Error.WriteLine($"raftbench: --only takes meta or etcd, not {options.Only}");
    return 2;
}

try
{
    return Flag("--failover")
        ? await FailoverBench.RunAsync(options)
        : await ThroughputBench.RunAsync(options);
}
catch (Exception e) when (e is InvalidOperationException or TimeoutException or IOException)
{
    Console.Error.WriteLine($"raftbench: {e.Message}");
    return 1;
}
finally
{
    if (!options.Keep)
    {
        try
        {
            Directory.Delete(options.Root, recursive: true);
        }
        catch (DirectoryNotFoundException)
        {
        }
    }
}

internal sealed record BenchOptions
{
    public double Seconds { get; init; }
    public double WarmupSeconds { get; init; }
    public required int[] Callers { get; init; }
    public string? Only { get; init; }
    public int ValueBytes { get; init; }
    public int Kills { get; init; }
    public int Rounds { get; init; }
    public required string Root { get; init; }
    public bool Keep { get; init; }
}
