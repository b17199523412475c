// Writes/s and commit latency at each concurrency, mirrorfs-meta then etcd, and the ratio table.
using System.Globalization;
using Google.Protobuf;
using MirrorFS.Core.Meta;

namespace MirrorFS.Bench;

internal static class ThroughputBench
{
    private const int ClusterSize = 3;
    private static readonly Credentials Root = new();

    public static async Task<int> RunAsync(BenchOptions o)
    {
        Console.WriteLine($"raftbench: {ClusterSize}-node clusters on loopback, data on disk under {o.Root}; " +
                          $"{o.Seconds:F0} s per run after {o.WarmupSeconds:F0} s warm-up; callers {string.Join(",", o.Callers)}; " +
                          $"{o.Rounds} round(s), medians shown");
        Console.WriteLine($"machine: {Environment.ProcessorCount} cores, {Environment.OSVersion}, load average {LoadAverage()}");
        var meta = new List<LoadResult>();
        var etcd = new List<LoadResult>();
        var etcdBinary = o.Only is null or "etcd" ? EtcdCluster.FindBinary() : null;
        if (o.Only is null or "etcd" && etcdBinary is null)
        {
            Console.WriteLine("etcd: NOT RUN — etcd is not installed (Debian: apt-get install etcd-server, or run bench/RaftBench/run.sh)");
        }
        // Rounds alternate the systems, each on fresh clusters, so that a change in machine load hits both alike.
        for (var round = 1; round <= o.Rounds; round++)
        {
            if (o.Only is null or "meta")
            {
                Console.WriteLine($"round {round}: mirrorfs-meta, each write a Mknod of a unique name with (session, seq): one committed Raft entry");
                await SettleDiskAsync();
                await using var cluster = await MetaCluster.StartAsync(Path.Combine(o.Root, $"meta{round}"), ClusterSize, basePort: 0);
                await cluster.FormatAsync(Root);
                foreach (var callers in o.Callers)
                {
                    var r = await RunMetaAsync(cluster, callers, o);
                    Print("mirrorfs-meta", r);
                    meta.Add(r);
                }
            }
            if (etcdBinary is not null)
            {
                await SettleDiskAsync();
                await using var cluster = await EtcdCluster.StartAsync(etcdBinary, Path.Combine(o.Root, $"etcd{round}"), ClusterSize);
                var leader = await cluster.LeaderUrlAsync();
                Console.WriteLine($"round {round}: etcd {cluster.Version}, each write a POST /v3/kv/put of a unique key with a " +
                                  $"{o.ValueBytes}-byte value to the leader ({leader})");
                foreach (var callers in o.Callers)
                {
                    using var client = new EtcdPutClient(leader, o.ValueBytes);
                    var r = await LoadRunner.RunAsync(callers, o.WarmupSeconds, o.Seconds, client.PutAsync, cluster.Pids);
                    Print("etcd", r);
                    etcd.Add(r);
                }
            }
        }
        Console.WriteLine($"load average after the runs: {LoadAverage()}");
        if (meta.Count > 0 || etcd.Count > 0)
        {
            Console.WriteLine();
            Console.WriteLine($"{"callers",7} | {"mirrorfs w/s",12} {"p50 ms",7} {"p99 ms",7} | {"etcd w/s",9} {"p50 ms",7} {"p99 ms",7} | " +
                              $"{"w/s ratio",9} {"p50 ratio",9} {"p99 ratio",9}");
            foreach (var callers in o.Callers)
            {
                var m = Median(meta, callers);
                var e = Median(etcd, callers);
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"{callers,7} | {m.Wps,12:F0} {m.P50,7:F2} {m.P99,7:F2} | {e.Wps,9:F0} {e.P50,7:F2} {e.P99,7:F2} | " +
                    $"{m.Wps / e.Wps,9:F2} {m.P50 / e.P50,9:F2} {m.P99 / e.P99,9:F2}"));
            }
            Console.WriteLine("ratios are mirrorfs-meta / etcd: w/s above 1 is faster, latency below 1 is faster");
        }
        var failed = meta.Concat(etcd).Any(r => r.Errors > 0);
        return failed ? 1 : 0;
    }

    /// <summary>Writes back what the previous system left dirty, so its writeback does not slow the next one's fsyncs
    /// (measured: a round that followed etcd ran at half the rate of one that did not).</summary>
    private static async Task SettleDiskAsync()
    {
        try
        {
            using var sync = System.Diagnostics.Process.Start("sync");
            if (sync is not null)
            {
                await sync.WaitForExitAsync();
            }
        }
        catch (System.ComponentModel.Win32Exception)
        {
            // no sync(1): nothing to settle with
        }
        await Task.Delay(2_000);
    }

    /// <summary>Per-figure medians over the rounds at one concurrency (NaN when the system did not run).</summary>
    private static (double Wps, double P50, double P99) Median(List<LoadResult> results, int callers)
    {
        var rs = results.Where(r => r.Callers == callers).ToArray();
        double Mid(IEnumerable<double> xs)
        {
            var a = xs.Order().ToArray();
            return a.Length == 0 ? double.NaN : a.Length % 2 == 1 ? a[a.Length / 2] : (a[a.Length / 2 - 1] + a[a.Length / 2]) / 2;
        }
        return (Mid(rs.Select(r => r.WritesPerSecond)), Mid(rs.Select(r => r.P50Ms)), Mid(rs.Select(r => r.P99Ms)));
    }

    /// <summary>The 1-minute load average: other work on the machine changes every figure here.</summary>
    internal static string LoadAverage()
    {
        try
        {
            return File.ReadAllText("/proc/loadavg").Split(' ')[0];
        }
        catch (IOException)
        {
            return "?";
        }
    }

    private static void Print(string system, LoadResult r)
    {
        var failed = r.Errors > 0 ? $"  {r.Errors} FAILED writes, first: {r.FirstError}" : "";
        var cost = r.Cost is { } c ? string.Create(CultureInfo.InvariantCulture, $"  servers: cpu {c.CpuUs,6:F0} µs/write {c.Switches,5:F1} cs/write") : "";
        if (r.ClientCost is { } cc)
        {
            cost += string.Create(CultureInfo.InvariantCulture, $"  client: cpu {cc.CpuUs,6:F0} µs {cc.Switches,5:F1} cs");
        }
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"  {system,-14} callers {r.Callers,3}: {r.Writes,8} writes {r.WritesPerSecond,8:F0} writes/s  p50 {r.P50Ms,6:F2} ms  p99 {r.P99Ms,6:F2} ms{cost}{failed}"));
    }

    private static async Task<LoadResult> RunMetaAsync(MetaCluster cluster, int callers, BenchOptions o)
    {
        // One client per caller, as each mount is one client; each caller has a session, so every write is exactly-once.
        var clients = Enumerable.Range(0, callers).Select(_ => cluster.Client()).ToArray();
        try
        {
            var dirs = new ulong[callers];
            var sessions = new ulong[callers];
            var seqs = new ulong[callers];
            var run = Guid.NewGuid().ToString("N")[..6];
            await Task.WhenAll(Enumerable.Range(0, callers).Select(async c =>
            {
                var mk = await clients[c].MkdirAsync(new MkdirRequest
                {
                    Cred = Root, Parent = 1, Name = ByteString.CopyFromUtf8($"c{callers}-{c}-{run}"), Mode = 0x1ED,
                });
                Check(mk.Errno, "mkdir");
                dirs[c] = mk.Attr.Inode;
                sessions[c] = (await clients[c].NewSessionAsync(new NewSessionRequest
                {
                    Cred = Root, Info = new ClientInfo { Hostname = "raftbench" },
                })).SessionId;
            }));
            return await LoadRunner.RunAsync(callers, o.WarmupSeconds, o.Seconds, async (c, i) =>
            {
                var seq = ++seqs[c];
                var r = await clients[c].MknodAsync(new MknodRequest
                {
                    SessionId = sessions[c], Seq = seq, AckedSeq = seq - 1, Cred = Root, Parent = dirs[c],
                    Name = ByteString.CopyFromUtf8(string.Create(CultureInfo.InvariantCulture, $"f{i}")), Mode = 0x81A4,
                });
                Check(r.Errno, "mknod");
            }, cluster.Pids);
        }
        finally
        {
            foreach (var c in clients)
            {
                await c.DisposeAsync();
            }
        }
    }

    internal static void Check(int errno, string what)
    {
        if (errno != 0)
        {
            throw new InvalidOperationException($"{what} failed with errno {errno}");
        }
    }
}
