// Three mirrorfs-meta processes; 8 clients create 1,000 files while the leader is killed with kill -9.
using System.Diagnostics;
using Google.Protobuf;
using MirrorFS.Core.Meta;
using Xunit.Abstractions;

namespace MirrorFS.MetaServer.Tests.Cluster;

[Collection(ProcessClusterCollection.Name)]
public sealed class ProcessFailoverTests(ITestOutputHelper output) : IDisposable
{
    private const int Writers = 8;
    private const int FilesPerWriter = 125;

    /// <summary>Acknowledged creates before the kill: a count, not a time, so a slow machine still kills mid-run.</summary>
    private const int AckedBeforeKill = 250;

    /// <summary>Generous: the 1 s target is measured by <c>bench/RaftBench --failover</c>, not asserted here.</summary>
    private const int FailoverBoundMs = 10_000;

    private static readonly Credentials Root = new();
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "mirrorfs-pfail-" + Guid.NewGuid().ToString("N")[..12]);

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
    public async Task LeaderKilledDuringCreates_EveryAcknowledgedCreateExistsExactlyOnce()
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
        await using (var setup = cluster.Client())
        {
            var f = await setup.FormatAsync(new FormatRequest { Cred = Root, Volume = new Volume { Name = "pfail" } });
            Assert.True(f.Errno is 0 or Errno.EEXIST, $"format failed with errno {f.Errno}"); // EEXIST: a retried format
        }
        var writers = new ProcessWriter[Writers];
        for (var w = 0; w < Writers; w++)
        {
            writers[w] = await ProcessWriter.StartAsync(cluster.Client(), $"w{w}");
        }
        try
        {
            var runs = writers.Select(w => Task.Run(async () =>
            {
                for (var i = 0; i < FilesPerWriter; i++)
                {
                    await w.CreateAsync($"f{i:D3}");
                }
            })).ToArray();

            // Kill the leader (the member that answered the newest create) once enough creates are acknowledged.
            var waitUntil = Environment.TickCount64 + 180_000;
            while (writers.Sum(w => w.Acked) < AckedBeforeKill && Environment.TickCount64 < waitUntil && !runs.Any(r => r.IsFaulted))
            {
                await Task.Delay(10);
            }
            var ackedAtKill = writers.Sum(w => w.Acked);
            Assert.True(ackedAtKill >= AckedBeforeKill, $"only {ackedAtKill} creates acknowledged within 180 s before the kill");
            var leader = writers.SelectMany(w => w.Outcomes).MaxBy(o => o.CompletedAt)!.ServedBy;
            var leaderId = cluster.IdOf(leader);
            Assert.NotEqual(0, leaderId);
            var killedAt = Stopwatch.GetTimestamp();
            await cluster.KillAsync(leaderId);
            output.WriteLine($"kill -9 of leader node {leaderId} ({leader}) after {ackedAtKill} acknowledged creates");

            await Task.WhenAll(runs).WaitAsync(TimeSpan.FromMinutes(5));

            var outcomes = writers.SelectMany(w => w.Outcomes).ToArray();
            Assert.True(ackedAtKill < Writers * FilesPerWriter, "every create finished before the kill: the failover was not exercised");
            var firstAfter = outcomes.Where(o => o.CompletedAt > killedAt && o.ServedBy != leader && o.Errno == 0)
                .MinBy(o => o.CompletedAt);
            Assert.NotNull(firstAfter);
            var failoverMs = (firstAfter.CompletedAt - killedAt) * 1000.0 / Stopwatch.Frequency;
            output.WriteLine($"failover: first create served by new leader node {cluster.IdOf(firstAfter.ServedBy)} " +
                             $"{failoverMs:F0} ms after the kill; creates re-sent after a client gave up: {outcomes.Sum(o => o.Retries)}");

            // Exactly once: no create saw EEXIST (a retried create applied twice would), and each directory lists each
            // name once with the inode its create returned.
            Assert.Equal(Writers * FilesPerWriter, outcomes.Length);
            var failed = outcomes.Where(o => o.Errno != 0).ToArray();
            Assert.True(failed.Length == 0, $"{failed.Length} creates failed, first {failed.FirstOrDefault()}");
            await using (var check = cluster.Client(cluster.Ids.Where(cluster.IsRunning)))
            {
                foreach (var w in writers)
                {
                    var listed = await ProcessWriter.ListAsync(check, w.Dir);
                    var names = listed.Select(e => e.Name).ToArray();
                    Assert.True(names.Length == names.Distinct().Count(), $"directory {w.Dir} lists a name twice");
                    var expected = w.Outcomes.ToDictionary(o => o.Name, o => o.Inode);
                    Assert.Equal(expected.Keys.Order(), names.Order());
                    foreach (var (name, attr) in listed)
                    {
                        Assert.Equal(expected[name], attr.Inode);
                    }
                }
                Assert.Equal(Writers * FilesPerWriter, outcomes.Select(o => o.Inode).Distinct().Count());
            }
            Assert.True(failoverMs < FailoverBoundMs, $"a new leader served its first write {failoverMs:F0} ms after the kill");

            // The killed node comes back and catches up with the others.
            await cluster.StartNodeAsync(leaderId, [1, 2, 3]);
            var status = await cluster.WaitStatusAsync(s => s.AllApplied(3), 120_000, "three members with equal applied indexes");
            output.WriteLine($"after restart of node {leaderId}: applied index {status.Nodes[0].AppliedIndex} on all three");
        }
        finally
        {
            foreach (var w in writers)
            {
                await w.DisposeAsync();
            }
        }
    }
}

