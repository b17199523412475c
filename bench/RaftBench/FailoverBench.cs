// --failover: kill -9 the leader under steady writes, time until a write is served by a new leader, restart, repeat.
using System.Diagnostics;
using System.Globalization;
using Google.Protobuf;
using MirrorFS.Core.Meta;

namespace MirrorFS.Bench;

internal static class FailoverBench
{
    private const int ClusterSize = 3;
    private const int Probers = 4;
    private const int ElectionWaitMs = 30_000;

    /// <summary>Steady writes before each kill, and after a restart so the restarted node has caught up.</summary>
    private const int SettleMs = 3_000;

    private static readonly Credentials Root = new();

    public static async Task<int> RunAsync(BenchOptions o)
    {
        Console.WriteLine($"raftbench --failover: {ClusterSize} mirrorfs-meta processes on loopback, data under {o.Root}; " +
                          $"{Probers} writers; kill -9 of the leader {o.Kills} times; load average {ThroughputBench.LoadAverage()}");
        await using var cluster = await MetaCluster.StartAsync(Path.Combine(o.Root, "meta"), ClusterSize, basePort: 0);
        await cluster.FormatAsync(Root);

        var state = new ProbeState();
        using var stop = new CancellationTokenSource();
        var probers = Enumerable.Range(0, Probers).Select(p => Task.Run(() => ProbeAsync(cluster, p, state, stop.Token))).ToArray();
        var times = new List<double>();
        try
        {
            for (var k = 1; k <= o.Kills; k++)
            {
                await Task.Delay(SettleMs);
                var leader = state.LastServedBy;
                var id = cluster.IdOf(leader);
                if (id == 0)
                {
                    throw new InvalidOperationException($"no write was served in the last {SettleMs} ms (last answer from '{leader}')");
                }
                state.Arm(leader);
                await cluster.KillNodeAsync(id);
                var deadline = Environment.TickCount64 + ElectionWaitMs;
                while (state.FirstAfterKill == 0 && Environment.TickCount64 < deadline)
                {
                    await Task.Delay(5);
                }
                if (state.FirstAfterKill == 0)
                {
                    throw new TimeoutException($"no write was served within {ElectionWaitMs} ms of killing leader node {id}");
                }
                var ms = (state.FirstAfterKill - state.KilledAt) * 1000.0 / Stopwatch.Frequency;
                times.Add(ms);
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"  kill {k}: leader node {id} ({leader}) killed; first write served by node {cluster.IdOf(state.FirstServedBy)} " +
                    $"after {ms:F0} ms"));
                await cluster.StartNodeAsync(id);
            }
        }
        finally
        {
            await stop.CancelAsync();
            await Task.WhenAll(probers);
        }
        var sorted = times.Order().ToArray();
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"election time after kill -9 (kill to first write served by the new leader), ms: " +
            $"{string.Join(" ", times.Select(t => t.ToString("F0", CultureInfo.InvariantCulture)))}; " +
            $"median {sorted[sorted.Length / 2]:F0}, max {sorted[^1]:F0}; writes {state.Writes}, failed {state.Failures}"));
        return state.Failures == 0 ? 0 : 1;
    }

    private static async Task ProbeAsync(MetaCluster cluster, int p, ProbeState state, CancellationToken ct)
    {
        // A short retry pause: the prober's own polling should add little to the measured time.
        await using var client = cluster.Client(failoverTimeoutMs: ElectionWaitMs, retryDelayMs: 5, callTimeoutMs: 2_000);
        var dir = (await client.MkdirAsync(new MkdirRequest { Cred = Root, Parent = 1, Name = ByteString.CopyFromUtf8($"p{p}"), Mode = 0x1ED })).Attr.Inode;
        var session = (await client.NewSessionAsync(new NewSessionRequest { Cred = Root, Info = new ClientInfo { Hostname = "failover" } })).SessionId;
        ulong seq = 0;
        while (!ct.IsCancellationRequested)
        {
            seq++;
            try
            {
                var r = await client.MknodAsync(new MknodRequest
                {
                    SessionId = session, Seq = seq, AckedSeq = seq - 1, Cred = Root, Parent = dir,
                    Name = ByteString.CopyFromUtf8(string.Create(CultureInfo.InvariantCulture, $"f{seq}")), Mode = 0x81A4,
                }, ct);
                // One caller per client, so the member it last talked to is the one that answered this call.
                state.Served(client.CurrentAddress, r.Errno);
            }
            catch (Exception e) when (ct.IsCancellationRequested && e is OperationCanceledException or Core.Rpc.RpcException)
            {
                return; // the call in flight when the run ended
            }
            catch (MetaUnavailableException e)
            {
                state.Failed(e.Message);
            }
        }
    }

    private sealed class ProbeState
    {
        private readonly Lock _lock = new();
        private string _armedFor = "";

        public string LastServedBy { get; private set; } = "";
        public long KilledAt { get; private set; }
        public long FirstAfterKill { get; private set; }
        public string FirstServedBy { get; private set; } = "";
        public long Writes { get; private set; }
        public long Failures { get; private set; }

        public void Arm(string leader)
        {
            lock (_lock)
            {
                _armedFor = leader;
                FirstAfterKill = 0;
                KilledAt = Stopwatch.GetTimestamp();
            }
        }

        public void Served(string address, int errno)
        {
            var now = Stopwatch.GetTimestamp();
            lock (_lock)
            {
                if (errno != 0)
                {
                    Failures++;
                    Console.WriteLine($"  write failed with errno {errno} (served by {address})");
                    return;
                }
                Writes++;
                LastServedBy = address;
                if (FirstAfterKill == 0 && _armedFor.Length > 0 && address != _armedFor)
                {
                    FirstAfterKill = now;
                    FirstServedBy = address;
                }
            }
        }

        public void Failed(string message)
        {
            lock (_lock)
            {
                Failures++;
                Console.WriteLine($"  write failed: {message}");
            }
        }
    }
}
