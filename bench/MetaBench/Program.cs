// mirrorfs-metabench: metadata ops/s and latency over RPC on loopback (1 and 16 callers), and heap bytes per file.
//   dotnet run -c Release --project bench/MetaBench -- [--ops 20000] [--files 1000000]
using System.Diagnostics;
using System.Globalization;
using Google.Protobuf;
using MirrorFS.Bench;
using MirrorFS.Core.Meta;
using MirrorFS.MetaServer.Consensus;
using MirrorFS.MetaServer.Engine;
using MirrorFS.MetaServer.Hosting;

var inv = CultureInfo.InvariantCulture;
int Arg(string name, int dflt)
{
    var i = Array.IndexOf(args, name);
    return i >= 0 && i + 1 < args.Length ? int.Parse(args[i + 1], inv) : dflt;
}
var readOps = Arg("--ops", 50_000);
var createOps = Arg("--creates", 8_000);
var files = Arg("--files", 1_000_000);
var root = new Credentials();
const string Token = "metabench-token-0123456789";

// --remote ADDR --token-file F [--idle-ms N]: sequential getattr of the root against a running metaserver, with an
// idle pause between calls (as between the metadata calls of a FUSE workload), to see latency across processes.
var remoteAt = Array.IndexOf(args, "--remote");
if (remoteAt >= 0)
{
    var tokenFile = args[Array.IndexOf(args, "--token-file") + 1];
    var idleMs = Arg("--idle-ms", 0);
    await using var remote = new RpcMetaClient(new RpcMetaClientOptions
    {
        Addresses = [args[remoteAt + 1]], BearerToken = File.ReadAllText(tokenFile).Trim(),
    });
    var samples = new long[Math.Min(readOps, 5_000)];
    for (var i = -200; i < samples.Length; i++)
    {
        if (idleMs > 0)
        {
            Thread.Sleep(idleMs);
        }
        var t0 = Stopwatch.GetTimestamp();
        Check((await remote.GetAttrAsync(new GetAttrRequest { Cred = root, Inode = 1 })).Errno, "getattr");
        if (i >= 0)
        {
            samples[i] = Stopwatch.GetTimestamp() - t0;
        }
    }
    Array.Sort(samples);
    Console.WriteLine(string.Create(inv, $"remote getattr, idle {idleMs} ms between calls: p50 {samples[samples.Length / 2] * 1e6 / Stopwatch.Frequency:F0} µs, p90 {samples[samples.Length * 9 / 10] * 1e6 / Stopwatch.Frequency:F0} µs"));
    return 0;
}

var dir = Path.Combine(Path.GetTempPath(), "mirrorfs-metabench-" + Guid.NewGuid().ToString("N")[..8]);
Console.WriteLine($"metaserver: durable single node (WAL fsync, group commit) in {dir}, RPC over loopback HTTP/2");
Console.WriteLine($"{"op",-16} {"callers",7} {"ops",8} {"ops/s",10} {"p50 µs",9} {"p99 µs",9} {"cpu µs/op",9} {"cs/op",6}");
await using (var host = await MetaServerHost.StartAsync(new MetaServerOptions { DataDirectory = dir, BearerToken = Token }))
{
    await using var setup = Client(host.Address);
    Check((await setup.FormatAsync(new FormatRequest { Cred = root, Volume = new Volume { Name = "bench" } })).Errno, "format");
    // A 1,000-entry directory for readdir.
    var big = (await setup.MkdirAsync(new MkdirRequest { Cred = root, Parent = 1, Name = Name("big"), Mode = 0x1ED })).Attr.Inode;
    for (var i = 0; i < 1000; i++)
    {
        Check((await setup.MknodAsync(new MknodRequest { Cred = root, Parent = big, Name = Name($"e{i:D4}"), Mode = 0x81A4 })).Errno, "mknod");
    }
    foreach (var callers in new[] { 1, 16 })
    {
        var clients = Enumerable.Range(0, callers).Select(_ => Client(host.Address)).ToArray();
        var dirs = new ulong[callers];
        var sessions = new ulong[callers];
        for (var c = 0; c < callers; c++)
        {
            dirs[c] = (await setup.MkdirAsync(new MkdirRequest { Cred = root, Parent = 1, Name = Name($"c{callers}-{c}"), Mode = 0x1ED })).Attr.Inode;
            sessions[c] = (await clients[c].NewSessionAsync(new NewSessionRequest { Cred = root, Info = new ClientInfo { Hostname = "bench" } })).SessionId;
        }
        var created = new List<(ulong Parent, ByteString Name, ulong Inode)>[callers];
        var seqs = new ulong[callers];
        await Measure("create", callers, createOps, async (c, i) =>
        {
            var name = Name($"f{i}");
            var r = await clients[c].CreateAsync(new CreateRequest
            {
                SessionId = sessions[c], Seq = ++seqs[c], AckedSeq = seqs[c] - 1, Cred = root, Parent = dirs[c], Name = name, Mode = 0x81A4,
            });
            Check(r.Errno, "create");
            (created[c] ??= []).Add((dirs[c], name, r.Attr.Inode));
        });
        var all = created.SelectMany(x => x).ToArray();
        await Measure("getattr", callers, readOps, async (c, i) =>
            Check((await clients[c].GetAttrAsync(new GetAttrRequest { Cred = root, Inode = all[i % all.Length].Inode })).Errno, "getattr"));
        await Measure("lookup", callers, readOps, async (c, i) =>
        {
            var e = all[i % all.Length];
            Check((await clients[c].LookupAsync(new LookupRequest { Cred = root, Parent = e.Parent, Name = e.Name })).Errno, "lookup");
        });
        await Measure("readdir 1000", callers, Math.Max(200, readOps / 100), async (c, _) =>
        {
            var r = await clients[c].ReadDirAsync(new ReadDirRequest { Cred = root, Inode = big, Limit = 1024 });
            Check(r.Errno, "readdir");
            if (r.Entries.Count < 1000)
            {
                throw new InvalidOperationException($"readdir returned {r.Entries.Count} entries");
            }
        });
        foreach (var cl in clients)
        {
            await cl.DisposeAsync();
        }
    }
    var stats = host.Log.Stats;
    Console.WriteLine($"log: {stats}");
}
Directory.Delete(dir, recursive: true);

// Heap per file: the engine alone (what a metaserver keeps in memory), 1,000 directories of files.
{
    var before = GC.GetTotalMemory(forceFullCollection: true);
    var state = new MetaStateMachine();
    var service = new MetaService(state, new InMemoryLog(state));
    Check((await service.FormatAsync(new FormatRequest { Cred = root, Volume = new Volume { Name = "mem" } })).Errno, "format");
    var perDir = 1000;
    var sw = Stopwatch.StartNew();
    for (var d = 0; d < files / perDir; d++)
    {
        var parent = (await service.MkdirAsync(new MkdirRequest { Cred = root, Parent = 1, Name = Name($"d{d}"), Mode = 0x1ED })).Attr.Inode;
        for (var i = 0; i < perDir; i++)
        {
            Check((await service.MknodAsync(new MknodRequest { Cred = root, Parent = parent, Name = Name($"file-{i:D6}"), Mode = 0x81A4 })).Errno, "mknod");
        }
    }
    var after = GC.GetTotalMemory(forceFullCollection: true);
    Console.WriteLine($"heap: {files:N0} files in {files / perDir:N0} directories: {(after - before) / (double)files:F0} bytes/file " +
                      $"({(after - before) / 1048576.0:F0} MiB; created in {sw.Elapsed.TotalSeconds:F1} s)");
    GC.KeepAlive(service);
    GC.KeepAlive(state);
}
return 0;

static ByteString Name(string s) => ByteString.CopyFromUtf8(s);

static void Check(int errno, string what)
{
    if (errno != 0)
    {
        throw new InvalidOperationException($"{what} failed with errno {errno}");
    }
}

static RpcMetaClient Client(string address) => new(new RpcMetaClientOptions { Addresses = [address], BearerToken = Token });

static async Task Measure(string op, int callers, int total, Func<int, int, Task> call)
{
    // Warm up outside the measurement: connections, and the JIT's tiers (a method is recompiled optimized only after
    // it has run a few dozen times and a background delay), as BenchmarkDotNet's warm-up iterations do.
    var warm = Math.Max(callers, Math.Min(2_000, total / 5));
    var warmNext = -1;
    await Task.WhenAll(Enumerable.Range(0, callers).Select(c => Task.Run(async () =>
    {
        int w;
        while ((w = Interlocked.Increment(ref warmNext)) < warm)
        {
            await call(c, total + w);
        }
    })));
    await Task.Delay(200); // let the background JIT finish what the warm-up queued
    var lat = new long[total];
    var next = -1;
    var cpu0 = Process.GetCurrentProcess().TotalProcessorTime;
    var cs0 = ProcStat.Sample([Environment.ProcessId]).Switches;
    var sw = Stopwatch.StartNew();
    await Task.WhenAll(Enumerable.Range(0, callers).Select(c => Task.Run(async () =>
    {
        int i;
        while ((i = Interlocked.Increment(ref next)) < total)
        {
            var t0 = Stopwatch.GetTimestamp();
            await call(c, i);
            lat[i] = Stopwatch.GetTimestamp() - t0;
        }
    })));
    var secs = sw.Elapsed.TotalSeconds;
    // Client and server share this process: CPU per op is both ends' cost, and is steadier than latency on a busy machine.
    var cpuUs = (Process.GetCurrentProcess().TotalProcessorTime - cpu0).TotalMicroseconds / total;
    var csPerOp = (double)(ProcStat.Sample([Environment.ProcessId]).Switches - cs0) / total;
    Array.Sort(lat);
    double Us(long ticks) => ticks * 1_000_000.0 / Stopwatch.Frequency;
    Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
        $"{op,-16} {callers,7} {total,8} {total / secs,10:F0} {Us(lat[total / 2]),9:F0} {Us(lat[Math.Min(total - 1, total * 99 / 100)]),9:F0} {cpuUs,9:F0} {csPerOp,6:F1}"));
}
