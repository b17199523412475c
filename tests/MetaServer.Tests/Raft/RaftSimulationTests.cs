using System.Diagnostics;
using System.Globalization;
using Xunit.Abstractions;

namespace MirrorFS.MetaServer.Tests.Raft;

/// <summary>Seeded whole-cluster simulations. MIRRORFS_RAFT_SEEDS=N runs seeds 1..N (default 300);
/// MIRRORFS_RAFT_SEED=x replays exactly seed x with an event trace.</summary>
public class RaftSimulationTests(ITestOutputHelper output)
{
    private const int DefaultSeeds = 300;

    [Fact]
    public void RaftSimulationKeepsSafetyAndLinearizabilityUnderFaults()
    {
        var one = Environment.GetEnvironmentVariable("MIRRORFS_RAFT_SEED");
        var countText = Environment.GetEnvironmentVariable("MIRRORFS_RAFT_SEEDS");
        var seeds = one is not null
            ? [int.Parse(one, CultureInfo.InvariantCulture)]
            : Enumerable.Range(1, countText is null ? DefaultSeeds : int.Parse(countText, CultureInfo.InvariantCulture)).ToArray();
        var total = new SimStats();
        var sw = Stopwatch.StartNew();
        foreach (var seed in seeds)
        {
            var options = SimOptions.ForSeed(seed);
            var sim = new RaftSimulation(seed, one is null ? options : WithTrace(options));
            try
            {
                sim.Run();
            }
            catch (SimulationFailure e)
            {
                output.WriteLine(e.Message);
                Assert.Fail($"Raft simulation seed {seed} failed: {e.Message.Split('\n')[0]}\n"
                    + $"replay: MIRRORFS_RAFT_SEED={seed} dotnet test tests/MetaServer.Tests --filter Raft");
            }
            total.Add(sim.Stats);
        }
        output.WriteLine($"{seeds.Length} seeds ({seeds[0]}..{seeds[^1]}) in {sw.ElapsedMilliseconds} ms: {total}");
        // The faults must really be exercised, or the run proves little.
        if (seeds.Length >= 50)
        {
            Assert.True(total.SnapshotsInstalled > 0, $"no snapshot was installed: {total}");
            Assert.True(total.TornCrashes > 0, $"no torn crash happened: {total}");
            Assert.True(total.ConfChanges > 0, $"no membership change happened: {total}");
            Assert.True(total.ReadsServed > 0, $"no read was served: {total}");
        }
    }

    private static SimOptions WithTrace(SimOptions o) => new()
    {
        Nodes = o.Nodes, InitialVoters = o.InitialVoters, Membership = o.Membership, Trace = true,
    };
}
