// Membership changes on real processes while clients write: add a fourth member, remove one, lose nothing.
using MirrorFS.Core.Meta;
using Xunit.Abstractions;

namespace MirrorFS.MetaServer.Tests.Cluster;

[Collection(ProcessClusterCollection.Name)]
public sealed class ProcessMembershipTests(ITestOutputHelper output) : IDisposable
{
    private const int Writers = 4;

    /// <summary>Acknowledged creates between steps: counts, not times, so each step happens under writes.</summary>
    private const int AcksPerStep = 100;

    private const int StepWaitMs = 180_000;

    private static readonly Credentials Root = new();
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "mirrorfs-pmember-" + Guid.NewGuid().ToString("N")[..12]);

    public void Dispose()
    {
        try
        {
            Directory.Delete(_dir, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    [Fact]
    public async Task AddFourthMemberAndRemoveOneWhileClientsWrite_EveryMemberHasEveryAcknowledgedCreate()
    {
        await using var cluster = await ProcessCluster.StartAsync(_dir, 3, output);
        try
        {
            await Run(cluster);
        }
        catch
        {
            cluster.DumpLogs();
            throw;
        }
    }

    private async Task Run(ProcessCluster cluster)
    {
        var fourth = cluster.AddSlot();
        await using (var setup = cluster.Client())
        {
            var f = await setup.FormatAsync(new FormatRequest { Cred = Root, Volume = new Volume { Name = "pmember" } });
            Assert.True(f.Errno is 0 or Errno.EEXIST, $"format failed with errno {f.Errno}");
        }
        var writers = new ProcessWriter[Writers];
        for (var w = 0; w < Writers; w++)
        {
            // Clients know every address, the joining node's included: it answers once it is up.
            writers[w] = await ProcessWriter.StartAsync(cluster.Client(), $"w{w}");
        }
        using var stop = new CancellationTokenSource();
        var runs = writers.Select(w => Task.Run(async () =>
        {
            for (var i = 0; !stop.IsCancellationRequested; i++)
            {
                await w.CreateAsync($"f{i:D5}");
            }
        })).ToArray();
        try
        {
            await WaitAcksAsync(writers, runs, AcksPerStep);
            await cluster.StartNodeAsync(fourth, cluster.Ids, join: true);
            var add = await cluster.CliAsync("member", "add", fourth.ToString(System.Globalization.CultureInfo.InvariantCulture), cluster.AddressOf(fourth));
            Assert.True(add.ExitCode == 0, $"member add: {add}");
            output.WriteLine($"member add {fourth}: {add.Stdout.Trim()}");
            await cluster.WaitStatusAsync(s => s.Nodes.Count == 4 && s.Nodes.All(n => n.Reachable), StepWaitMs, "four reachable members");

            await WaitAcksAsync(writers, runs, writers.Sum(w => w.Acked) + AcksPerStep);
            const int removed = 1;
            var remove = await cluster.CliAsync("member", "remove", removed.ToString(System.Globalization.CultureInfo.InvariantCulture));
            Assert.True(remove.ExitCode == 0, $"member remove: {remove}");
            output.WriteLine($"member remove {removed}: {remove.Stdout.Trim()}");

            await WaitAcksAsync(writers, runs, writers.Sum(w => w.Acked) + AcksPerStep);
            await stop.CancelAsync();
            await Task.WhenAll(runs).WaitAsync(TimeSpan.FromMinutes(3));
            await cluster.KillAsync(removed);

            var members = cluster.Ids.Where(id => id != removed).ToArray();
            var status = await cluster.WaitStatusAsync(s => s.AllApplied(3) && s.Leaders.Count == 1, StepWaitMs,
                "three members with equal applied indexes");
            Assert.Equal(members, status.Nodes.Select(n => n.Id).Order());
            output.WriteLine($"members {string.Join(",", members)} all applied index {status.Nodes[0].AppliedIndex}; " +
                             $"{writers.Sum(w => w.Acked)} creates acknowledged");

            var outcomes = writers.SelectMany(w => w.Outcomes).ToArray();
            var failed = outcomes.Where(o => o.Errno != 0).ToArray();
            Assert.True(failed.Length == 0, $"{failed.Length} creates failed, first {failed.FirstOrDefault()}");

            // Each member in turn leads and serves the listing: the creates are on every member, not only on one.
            foreach (var id in members)
            {
                var t = await cluster.CliAsync("transfer-leader", id.ToString(System.Globalization.CultureInfo.InvariantCulture));
                Assert.True(t.ExitCode == 0, $"transfer-leader {id}: {t}");
                await cluster.WaitStatusAsync(s => s.Leaders.Count == 1 && s.Leaders[0].Id == id, StepWaitMs, $"node {id} leads");
                await using var only = cluster.Client([id]);
                foreach (var w in writers)
                {
                    var listed = (await ProcessWriter.ListAsync(only, w.Dir)).ToDictionary(e => e.Name, e => e.Attr.Inode);
                    Assert.Equal(w.Outcomes.Count, listed.Count);
                    foreach (var o in w.Outcomes)
                    {
                        Assert.True(listed.TryGetValue(o.Name, out var inode) && inode == o.Inode,
                            $"node {id}: acknowledged create {o.Name} (inode {o.Inode}) in writer directory {w.Dir} is missing or differs");
                    }
                }
            }
        }
        finally
        {
            await stop.CancelAsync();
            await Task.WhenAny(Task.WhenAll(runs), Task.Delay(TimeSpan.FromMinutes(3)));
            foreach (var w in writers)
            {
                await w.DisposeAsync();
            }
        }
    }

    private static async Task WaitAcksAsync(ProcessWriter[] writers, Task[] runs, int count)
    {
        var deadline = Environment.TickCount64 + StepWaitMs;
        while (writers.Sum(w => w.Acked) < count)
        {
            if (runs.FirstOrDefault(r => r.IsFaulted) is { } faulted)
            {
                await faulted; // a writer's failure is the test's failure
            }
            Assert.True(Environment.TickCount64 < deadline, $"fewer than {count} creates acknowledged within {StepWaitMs} ms");
            await Task.Delay(20);
        }
    }
}
