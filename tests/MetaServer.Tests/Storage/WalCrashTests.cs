// Kills a real child process (tests/WalCrashProbe) with SIGKILL while it proposes, then checks that every entry it
// acknowledged is still there after reopening.
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using MirrorFS.MetaServer.Consensus;
using Xunit.Abstractions;

namespace MirrorFS.MetaServer.Tests.Storage;

public class WalCrashTests(ITestOutputHelper output)
{
    private const int AckWaitSecondsMax = 60;

    [Fact]
    public async Task EveryAcknowledgedEntrySurvivesKill9()
    {
        var seed = Environment.TickCount;
        output.WriteLine($"seed {seed}");
        var rng = new Random(seed);
        using var tmp = new TempDir();
        var acked = new List<(ulong Index, string Command)>();
        for (var round = 0; round < 3; round++)
        {
            var killAfter = rng.Next(200, 1500);
            var (ready, acks) = await RunProbeUntilKilled(tmp.Path, round, killAfter);
            // Everything acknowledged by earlier (killed) runs was replayed before this run started proposing.
            var highestAcked = acked.Count == 0 ? 0 : acked.Max(a => a.Index);
            Assert.True(ready >= highestAcked, $"round {round} reopened at {ready}, but entry {highestAcked} was acknowledged before the kill");
            output.WriteLine($"round {round}: reopened at {ready}, {acks.Count} acks before kill (target {killAfter})");
            acked.AddRange(acks);
        }
        Assert.Equal(acked.Count, acked.Select(a => a.Index).Distinct().Count());

        var machine = new HashChainStateMachine();
        await using var log = DurableSingleNodeLog.Open(machine, new DurableLogOptions { Directory = tmp.Path, SnapshotEveryEntries = 0 });
        Assert.True(log.LastSnapshotIndex > 0, "the probe was expected to take snapshots");
        foreach (var (index, command) in acked)
        {
            Assert.True(index <= log.AppliedIndex, $"acknowledged entry {index} ({command}) is missing: applied index is {log.AppliedIndex}");
            var eq = command.IndexOf('=', StringComparison.Ordinal);
            Assert.True(machine.Values.TryGetValue(command[..eq], out var value) && value == command[(eq + 1)..],
                $"acknowledged command {command} (entry {index}) is not in the restored state");
            if (index >= log.Wal.FirstIndex)
            {
                Assert.Equal(command, Encoding.UTF8.GetString(log.Wal.Read(index, index)[0].Payload.Span));
            }
        }
    }

    private async Task<(ulong Ready, List<(ulong Index, string Command)> Acks)> RunProbeUntilKilled(string dir, int round, int killAfter)
    {
        var lines = new ConcurrentQueue<string>();
        var stderr = new ConcurrentQueue<string>();
        var ackCount = 0;
        var psi = new ProcessStartInfo(DotnetHost())
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var a in new[] { "exec", ProbePath(), dir, round.ToString(CultureInfo.InvariantCulture), "8", "16384", "400" })
        {
            psi.ArgumentList.Add(a);
        }
        using var process = new Process { StartInfo = psi };
        process.OutputDataReceived += (_, e) =>
        {
            if (e.Data is { } line)
            {
                lines.Enqueue(line);
                if (line.StartsWith("ack ", StringComparison.Ordinal))
                {
                    Interlocked.Increment(ref ackCount);
                }
            }
        };
        process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is { } line)
            {
                stderr.Enqueue(line);
            }
        };
        Assert.True(process.Start());
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        var deadline = DateTime.UtcNow.AddSeconds(AckWaitSecondsMax);
        while (Volatile.Read(ref ackCount) < killAfter && !process.HasExited && DateTime.UtcNow < deadline)
        {
            await Task.Delay(5);
        }
        var exitedEarly = process.HasExited;
        process.Kill(entireProcessTree: true); // SIGKILL: no flush, no dispose, no finally blocks
        process.WaitForExit(); // also drains the redirected output already written
        Assert.False(exitedEarly, $"probe exited by itself: {string.Join(" | ", stderr)}");
        Assert.True(Volatile.Read(ref ackCount) >= killAfter, $"probe acknowledged only {ackCount} entries in {AckWaitSecondsMax} s: {string.Join(" | ", stderr)}");

        ulong ready = 0;
        var acks = new List<(ulong, string)>();
        foreach (var line in lines)
        {
            var parts = line.Split(' ');
            if (parts is ["ready", var r])
            {
                ready = ulong.Parse(r, CultureInfo.InvariantCulture);
            }
            // Only complete lines count: the kill may cut the last one short.
            else if (parts is ["ack", var i, var cmd, "end"])
            {
                acks.Add((ulong.Parse(i, CultureInfo.InvariantCulture), cmd));
            }
        }
        return (ready, acks);
    }

    private static string DotnetHost()
    {
        var host = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH");
        return !string.IsNullOrEmpty(host) && File.Exists(host) ? host : "dotnet";
    }

    // The probe is built by the test project's build (a reference without its assembly) into its own bin folder,
    // with the same configuration as this test assembly.
    private static string ProbePath()
    {
        var baseDir = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar));
        var tfm = baseDir.Name;
        var configuration = baseDir.Parent!.Name;
        for (var dir = baseDir; dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Mirror.sln")))
            {
                var path = Path.Combine(dir.FullName, "tests", "WalCrashProbe", "bin", configuration, tfm, "WalCrashProbe.dll");
                Assert.True(File.Exists(path), $"crash probe not found at {path}; build tests/MetaServer.Tests (it builds the probe)");
                return path;
            }
        }
        throw new DirectoryNotFoundException($"no Mirror.sln above {AppContext.BaseDirectory}");
    }
}
