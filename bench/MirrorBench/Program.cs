// mirrorfs-mirrorbench: metadata and block lag between a primary and a mirror region under a sustained write load.
//   dotnet run -c Release --project bench/MirrorBench -- [--writers 20] [--seconds 60] [--oss-primary|--s3-primary]
//       [--mirror-bucket oss|file|swift] [--write-mibps 48] [--large-every 20] [--concurrency 16] [--base-port 9700]
//       [--dir DIR] [--keep]
// The regions are deploy/regions.sh's (three metaservers each, the real replicator, real FUSE mounts); writers write
// files into the primary mount. Metadata lag: each primary index's commit time (its changelog entry's time) to the
// first moment the mirror reports it applied (polled every PollMs). Block lag: the replicator's own per-block figures
// (slice commit to block present in the mirror bucket).
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using MirrorFS.Core.Meta;
using MirrorFS.Mirror.Replication;

const double MetaTargetMs = 500;
const double BlockTargetMs = 2_000;
const int PollMs = 5;
const int DrainWaitMs = 180_000;
const int SmallBytesMin = 1 << 10;
const int SmallBytesMax = 64 << 10;
const int LargeBytesMin = 4 << 20;
const int LargeBytesMax = 32 << 20;
const int ChunkBytes = 1 << 20;

var inv = CultureInfo.InvariantCulture;
string? Opt(string name) { var i = Array.IndexOf(args, name); return i >= 0 && i + 1 < args.Length ? args[i + 1] : null; }
int IntOpt(string name, int dflt, int min, int max)
{
    var v = Opt(name) is { } s ? int.Parse(s, inv) : dflt;
    return v >= min && v <= max ? v : throw new ArgumentException($"{name} {v} is outside {min}..{max}");
}
var writers = IntOpt("--writers", 20, 1, 256);
var seconds = IntOpt("--seconds", 60, 5, 3600);
var writeMiBps = IntOpt("--write-mibps", 48, 1, 10_000);
var largeEvery = IntOpt("--large-every", 20, 1, 1_000_000);
var basePort = IntOpt("--base-port", 9700, 1024, 65_000);
var concurrency = IntOpt("--concurrency", ReplicatorOptions.DefaultConcurrency, 1, 1024);
var primaryKind = args.Contains("--s3-primary") ? "swift" : "oss";
// Swift is slow for small PUTs (~95/s here): the default mirror bucket is the fast OSS-protocol server.
var mirrorKind = Opt("--mirror-bucket") ?? "oss";
if (mirrorKind is not ("oss" or "file" or "swift"))
{
    Console.Error.WriteLine($"mirrorbench: --mirror-bucket '{mirrorKind}' is not oss, file or swift");
    return 2;
}
var keep = args.Contains("--keep");
var dir = Opt("--dir") ?? Path.Combine(Path.GetTempPath(), "mirrorfs-mirrorbench-" + Guid.NewGuid().ToString("N")[..8]);
var repo = RepoRoot();
var seed = Environment.TickCount;

Console.WriteLine(string.Create(inv, $"mirrorbench: {writers} writers for {seconds} s at up to {writeMiBps} MiB/s in all; small files {SmallBytesMin >> 10}-{SmallBytesMax >> 10} KiB, "
    + $"one in {largeEvery} large ({LargeBytesMin >> 20}-{LargeBytesMax >> 20} MiB); primary bucket {primaryKind}, mirror bucket {mirrorKind}; replicator concurrency {concurrency}; seed {seed}; dir {dir}"));

var env = new Dictionary<string, string>
{
    ["REGIONS_PRIMARY_BUCKET"] = primaryKind,
    ["REGIONS_MIRROR_BUCKET"] = mirrorKind,
    ["REGIONS_REPLICATOR_ARGS"] = $"--concurrency {concurrency.ToString(inv)}",
};
if (Script(["start", dir, basePort.ToString(inv)], env) != 0)
{
    Console.Error.WriteLine($"mirrorbench: regions did not start; logs in {dir}");
    Script(["stop", dir], env);
    return 1;
}
var code = 1;
try
{
    if (Script(["mount", dir], env) != 0)
    {
        Console.Error.WriteLine($"mirrorbench: mounting failed; logs in {dir}");
        return 1;
    }
    code = await RunAsync();
}
finally
{
    if (!keep)
    {
        Script(["stop", dir], env, quiet: true);
        if (Opt("--dir") is null)
        {
            // Gigabytes of blocks in two buckets: a directory the benchmark chose itself goes with it.
            try
            {
                Directory.Delete(dir, recursive: true);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                Console.Error.WriteLine($"mirrorbench: could not remove {dir}: {e.Message}");
            }
        }
    }
    else
    {
        Console.WriteLine($"regions kept running: bash deploy/regions.sh stop {dir}");
    }
}
return code;

async Task<int> RunAsync()
{
    var primaryHosts = Enumerable.Range(1, 3).Select(i => $"127.0.0.1:{basePort + i}").ToArray();
    var mirrorHosts = Enumerable.Range(11, 3).Select(i => $"127.0.0.1:{basePort + i}").ToArray();
    var primaryToken = File.ReadAllText(Path.Combine(dir, "primary", "token")).Trim();
    var mirrorToken = File.ReadAllText(Path.Combine(dir, "mirror", "token")).Trim();
    await using var primary = new RpcMetaClient(new RpcMetaClientOptions { Addresses = primaryHosts, BearerToken = primaryToken });
    await using var mirror = new RpcMetaClient(new RpcMetaClientOptions { Addresses = mirrorHosts, BearerToken = mirrorToken });
    await using var changelog = new RpcChangelogSource(primaryHosts, primaryToken);
    using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(5) };
    var statusUrl = $"http://127.0.0.1:{basePort + 22}/status";

    using var stop = new CancellationTokenSource();
    var startIndex = (await primary.GetVolumeAsync(new GetVolumeRequest())).Index;
    // Primary commit time per index (entries that carry a time) and (applied index, when seen) from the mirror.
    var commits = new List<(ulong Index, long TimeNs)>();
    var shipped = new List<double>(); // commit to arrival in this process's own changelog stream: the primary's part

    var applied = new List<(ulong Index, long SeenNs)>();
    var commitsLock = new Lock();
    var watch = Task.Run(async () =>
    {
        var next = startIndex + 1;
        while (!stop.IsCancellationRequested)
        {
            try
            {
                await foreach (var batch in changelog.WatchAsync(new WatchChangelogRequest { FromIndex = next, BatchEntriesMax = 1024 }, stop.Token))
                {
                    var arrived = NowNs();
                    lock (commitsLock)
                    {
                        foreach (var e in batch.Entries.Where(e => e.TimeNs > 0))
                        {
                            commits.Add((e.Index, e.TimeNs));
                            shipped.Add(Math.Max(0, (arrived - e.TimeNs) / 1e6));
                        }
                    }
                    if (batch.Entries.Count > 0)
                    {
                        next = Math.Max(next, batch.Entries[^1].Index + 1);
                    }
                }
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested)
            {
                break;
            }
            catch (Exception)
            {
                await Task.Delay(100, CancellationToken.None); // a failover or a busy moment: ask again
            }
        }
    });
    var poll = Task.Run(async () =>
    {
        ulong last = 0;
        while (!stop.IsCancellationRequested)
        {
            try
            {
                var r = await mirror.ListMirrorsAsync(new ListMirrorsRequest(), stop.Token);
                var now = NowNs();
                if (r.Follow is { } f && f.AppliedIndex > last)
                {
                    last = f.AppliedIndex;
                    lock (commitsLock)
                    {
                        applied.Add((last, now));
                    }
                }
                await Task.Delay(PollMs, stop.Token);
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested)
            {
                break;
            }
            catch (Exception)
            {
                await Task.Delay(100, CancellationToken.None); // a failover or a busy moment: ask again
            }
        }
    });

    var before = await ReplicatorAsync(http, statusUrl);
    var random = new Random(seed);
    var data = new byte[LargeBytesMax + SmallBytesMax];
    random.NextBytes(data);
    long written = 0, files = 0, largeFiles = 0, errors = 0;
    var clock = Stopwatch.StartNew();
    var loadMs = seconds * 1000L;
    var threads = Enumerable.Range(0, writers).Select(w => new Thread(() =>
    {
        var rnd = new Random(seed + w);
        var wdir = Path.Combine(dir, "primary-mnt", $"w{w:D2}");
        Directory.CreateDirectory(wdir);
        for (var n = 0; clock.ElapsedMilliseconds < loadMs; n++)
        {
            var large = rnd.Next(largeEvery) == 0;
            var size = large ? rnd.Next(LargeBytesMin, LargeBytesMax + 1) : rnd.Next(SmallBytesMin, SmallBytesMax + 1);
            var offset = rnd.Next(data.Length - size);
            try
            {
                using (var f = new FileStream(Path.Combine(wdir, $"f{n:D6}"), FileMode.CreateNew, FileAccess.Write, FileShare.None, 0))
                {
                    for (var at = 0; at < size; at += ChunkBytes)
                    {
                        var len = Math.Min(ChunkBytes, size - at);
                        // Shared pacing: the load stays below what the machine can copy, as the targets assume.
                        // Past the load's end the files under way finish at full speed.
                        var due = Interlocked.Add(ref written, len) * 1000.0 / (writeMiBps * 1048576.0);
                        long now;
                        while ((now = clock.ElapsedMilliseconds) < loadMs && due - now > 1)
                        {
                            Thread.Sleep((int)Math.Min(due - now, 200));
                        }
                        f.Write(data, offset + at, len);
                    }
                }
                Interlocked.Increment(ref files);
                if (large)
                {
                    Interlocked.Increment(ref largeFiles);
                }
            }
            catch (IOException)
            {
                Interlocked.Increment(ref errors);
            }
        }
    }) { IsBackground = true, Name = $"writer-{w}" }).ToList();
    threads.ForEach(t => t.Start());
    while (threads.Any(t => t.IsAlive))
    {
        await Task.Delay(200);
    }
    var loadSeconds = clock.Elapsed.TotalSeconds;
    var afterLoad = await ReplicatorAsync(http, statusUrl);
    Console.WriteLine(string.Create(inv, $"load: {files} files ({largeFiles} large), {written / 1048576.0:F0} MiB written in {loadSeconds:F1} s "
        + $"({written / 1048576.0 / loadSeconds:F1} MiB/s), {errors} write errors"));

    // Drain: every entry applied in the mirror and every block copied, so each sample is measured to its end.
    var target = (await primary.GetVolumeAsync(new GetVolumeRequest())).Index;
    var drain = Stopwatch.StartNew();
    ReplicatorStatus? end = afterLoad;
    while (drain.ElapsedMilliseconds < DrainWaitMs)
    {
        end = await ReplicatorAsync(http, statusUrl);
        ulong appliedNow;
        lock (commitsLock)
        {
            appliedNow = applied.Count > 0 ? applied[^1].Index : 0;
        }
        if (appliedNow >= target && end is { BlocksPending: 0 } && end.CopiedThroughIndex >= target)
        {
            break;
        }
        await Task.Delay(200);
    }
    var drainSeconds = drain.Elapsed.TotalSeconds;
    Console.WriteLine(string.Create(inv, $"drained in {drainSeconds:F1} s after the load (primary index {target})"));
    await stop.CancelAsync();
    await Task.WhenAll(watch, poll);

    // Metadata lag per committed index: first applied sample at or past it.
    List<(ulong Index, long TimeNs)> c;
    lock (commitsLock)
    {
        c = [.. commits];
    }
    var lags = new List<double>(c.Count);
    var unmatched = 0;
    var j = 0;
    foreach (var (index, timeNs) in c.OrderBy(x => x.Index))
    {
        while (j < applied.Count && applied[j].Index < index)
        {
            j++;
        }
        if (j == applied.Count)
        {
            unmatched++;
            continue;
        }
        lags.Add(Math.Max(0, (applied[j].SeenNs - timeNs) / 1e6));
    }
    lags.Sort();
    Console.WriteLine();
    Console.WriteLine($"{"figure",-34} {"p50",10} {"p99",10} {"max",10} {"samples",8}  target");
    Line("metadata lag (commit -> applied)", lags.Count == 0 ? 0 : Pct(lags, 0.5), lags.Count == 0 ? 0 : Pct(lags, 0.99), lags.Count == 0 ? 0 : lags[^1],
        lags.Count, MetaTargetMs);
    shipped.Sort();
    if (shipped.Count > 0)
    {
        Console.WriteLine(string.Create(inv, $"{"  of which primary (commit -> shipped)",-34} {Pct(shipped, 0.5),7:F0} ms {Pct(shipped, 0.99),7:F0} ms {shipped[^1],7:F0} ms {shipped.Count,8}"));
    }
    if (end is null)
    {
        Console.WriteLine("block lag: the replicator's /status did not answer");
    }
    else
    {
        Line("block lag (commit -> in mirror)", end.BlockLagP50Ms, end.BlockLagP99Ms, end.BlockLagMaxMs, end.BlockLagSamples, BlockTargetMs);
    }
    if (unmatched > 0)
    {
        Console.WriteLine(string.Create(inv, $"({unmatched} committed entries were not applied in the mirror by the end)"));
    }
    if (before is not null && afterLoad is not null && end is not null)
    {
        var duringMiB = (afterLoad.BytesCopied - before.BytesCopied) / 1048576.0;
        var allMiB = (end.BytesCopied - before.BytesCopied) / 1048576.0;
        var allSeconds = loadSeconds + drainSeconds;
        Console.WriteLine(string.Create(inv, $"copy throughput: {allMiB / allSeconds:F1} MiB/s over the load and the drain ({allMiB:F0} MiB in "
            + $"{end.BlocksCopied - before.BlocksCopied} blocks, {allSeconds:F1} s; {duringMiB / loadSeconds:F1} MiB/s during the load) against "
            + $"{written / 1048576.0 / loadSeconds:F1} MiB/s written; replicator errors {end.Errors - before.Errors}"));
    }
    Console.WriteLine();
    Console.WriteLine("$ bash deploy/regions.sh status DIR");
    Script(["status", dir], env);
    return 0;
}

void Line(string what, double p50, double p99, double max, int samples, double targetMs) =>
    Console.WriteLine(string.Create(inv, $"{what,-34} {p50,7:F0} ms {p99,7:F0} ms {max,7:F0} ms {samples,8}  p99 <= {targetMs:F0} ms: {(p99 <= targetMs ? "PASS" : "MISS")}"));

static double Pct(List<double> sorted, double q) => sorted[Math.Clamp((int)Math.Ceiling(q * sorted.Count) - 1, 0, sorted.Count - 1)];

static long NowNs() => (DateTime.UtcNow.Ticks - DateTime.UnixEpoch.Ticks) * 100;

static async Task<ReplicatorStatus?> ReplicatorAsync(HttpClient http, string url)
{
    try
    {
        var bytes = await http.GetByteArrayAsync(url);
        return ReplicatorStatus.FromJson(bytes);
    }
    catch (Exception e) when (e is HttpRequestException or TaskCanceledException or JsonException)
    {
        return null;
    }
}

int Script(string[] a, Dictionary<string, string> e, bool quiet = false)
{
    var psi = new ProcessStartInfo("bash") { UseShellExecute = false, WorkingDirectory = repo, RedirectStandardOutput = quiet };
    psi.ArgumentList.Add(Path.Combine(repo, "deploy", "regions.sh"));
    foreach (var x in a)
    {
        psi.ArgumentList.Add(x);
    }
    foreach (var (k, v) in e)
    {
        psi.Environment[k] = v;
    }
    using var p = Process.Start(psi) ?? throw new InvalidOperationException("could not start bash");
    if (quiet)
    {
        p.StandardOutput.ReadToEnd();
    }
    p.WaitForExit();
    return p.ExitCode;
}

static string RepoRoot()
{
    for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
    {
        if (File.Exists(Path.Combine(d.FullName, "deploy", "regions.sh")))
        {
            return d.FullName;
        }
    }
    throw new InvalidOperationException($"deploy/regions.sh not found above {AppContext.BaseDirectory}");
}
