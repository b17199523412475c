// deploy/regions.sh end to end: start both regions, mount both, a file written in the primary mount reads back
// identically in the mirror mount, and again after kill -9 of the primary's leader and of the mirror's leader; status
// reports the mirror; stop leaves no process and no mount behind.
using System.Net;
using System.Net.Sockets;
using MirrorFS.Client.Tests.Mount;
using MirrorFS.Core.Tests.Storage.S3;
using Xunit.Abstractions;

namespace MirrorFS.Mirror.Tests.EndToEnd;

[Collection(RegionCollection.Name)]
public sealed class RegionsScriptTests(SwiftFixture swift, ITestOutputHelper output)
{
    /// <summary>Start may build four Release projects first on a loaded 2-core machine.</summary>
    private const int StartTimeoutMs = 900_000;

    private const int StepTimeoutMs = 120_000;

    /// <summary>Offsets from BASEPORT the script listens on (see deploy/regions.sh).</summary>
    private static readonly int[] PortOffsets = [1, 2, 3, 11, 12, 13, 20, 21, 22];

    private static string RepoRoot()
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

    /// <summary>A BASEPORT whose nine ports are free now (the script checks again and names a taken one).</summary>
    private static int FreeBasePort(Random random)
    {
        for (var attempt = 0; attempt < 50; attempt++)
        {
            var b = random.Next(20_000, 40_000);
            var listeners = new List<TcpListener>();
            try
            {
                foreach (var o in PortOffsets)
                {
                    var l = new TcpListener(IPAddress.Loopback, b + o);
                    l.Start();
                    listeners.Add(l);
                }
                return b;
            }
            catch (SocketException)
            {
                // taken: try another base
            }
            finally
            {
                listeners.ForEach(l => l.Stop());
            }
        }
        throw new InvalidOperationException("no BASEPORT with nine free ports found in 50 tries");
    }

    private async Task<ShellResult> ScriptAsync(string args, int timeoutMs = StepTimeoutMs)
    {
        var r = await Shell.RunAsync($"bash deploy/regions.sh {args}", RepoRoot(), timeoutMs);
        output.WriteLine($"$ bash deploy/regions.sh {args}  (exit {r.Code})\n{r.Out}{r.Err}");
        return r;
    }

    private static async Task<string> LeftoversAsync(string dir)
    {
        var r = await Shell.RunAsync($"pgrep -af -- '{dir}/' | grep -v pgrep || true", "/");
        var mounts = File.ReadAllLines("/proc/self/mountinfo").Where(l => l.Contains(dir, StringComparison.Ordinal));
        return (r.Out + string.Join('\n', mounts)).Trim();
    }

    [Fact]
    public async Task StartMountWriteReadInMirrorStatusStop_LeavesNothingRunning()
    {
        Assert.True(swift.Port > 0); // the collection's Swift runs beside the script's own; it only shares the machine
        var seed = Environment.TickCount;
        output.WriteLine($"seed {seed}");
        var random = new Random(seed);
        var dir = Directory.CreateTempSubdirectory("mirrorfs-regions-sh-").FullName;
        var stopped = false;
        try
        {
            var basePort = FreeBasePort(random);
            var start = await ScriptAsync($"start '{dir}' {basePort}", StartTimeoutMs);
            Assert.True(start.Code == 0, $"regions.sh start failed:\n{start.Err}");
            Assert.Contains("both regions are up", start.Out, StringComparison.Ordinal);
            var mount = await ScriptAsync($"mount '{dir}'");
            Assert.True(mount.Code == 0, $"regions.sh mount failed:\n{mount.Err}");
            var primaryFile = Path.Combine(dir, "primary-mnt", "hello.bin");
            var mirrorFile = Path.Combine(dir, "mirror-mnt", "hello.bin");
            Assert.True(MountEnv.IsMounted(Path.Combine(dir, "primary-mnt")) && MountEnv.IsMounted(Path.Combine(dir, "mirror-mnt")));

            var data = new byte[2_500_000 + random.Next(100_000)]; // three blocks of the default 1 MiB and a bit
            random.NextBytes(data);
            await Blocking.RunAsync(() => File.WriteAllBytes(primaryFile, data));
            var deadline = Environment.TickCount64 + RegionEnv.WaitMs;
            byte[]? seen = null;
            while (Environment.TickCount64 < deadline)
            {
                seen = await Blocking.RunAsync(() => File.Exists(mirrorFile) ? File.ReadAllBytes(mirrorFile) : null);
                if (seen is not null && seen.AsSpan().SequenceEqual(data))
                {
                    break;
                }
                await Task.Delay(250);
            }
            Assert.True(seen is not null, $"{mirrorFile} did not appear within {RegionEnv.WaitMs} ms");
            Assert.True(seen.AsSpan().SequenceEqual(data), $"{mirrorFile} holds {seen.Length} bytes that differ from the {data.Length} written in the primary");

            // kill -9 of the primary's leader: the mirror follows the new leader. Then of the mirror's leader: another
            // mirror member carries on. After each, a new file written in the primary reads back in the mirror.
            var metaBin = Path.Combine(RepoRoot(), "src", "MetaServer", "bin", "Release", "net10.0", "mirrorfs-meta");
            foreach (var (region, offset) in new[] { ("primary", 0), ("mirror", 10) })
            {
                var members = string.Join(',', new[] { 1, 2, 3 }.Select(i => $"127.0.0.1:{basePort + offset + i}"));
                var cluster = await Shell.RunAsync($"'{metaBin}' cluster status --meta {members} --json --token-file '{dir}/{region}/token'", "/");
                Assert.True(cluster.Code == 0, $"{region} cluster status failed:\n{cluster.Out}{cluster.Err}");
                var leader = System.Text.Json.JsonDocument.Parse(cluster.Out).RootElement.GetProperty("leader").GetInt32();
                Assert.InRange(leader, 1, 3);
                var pid = int.Parse(File.ReadAllText(Path.Combine(dir, region, $"n{leader}.pid")).Trim(), System.Globalization.CultureInfo.InvariantCulture);
                output.WriteLine($"kill -9 of the {region} leader, member {leader} (pid {pid})");
                Assert.Equal(0, (await Shell.RunAsync($"kill -9 {pid}", "/")).Code);

                var after = new byte[300_000 + random.Next(100_000)];
                random.NextBytes(after);
                var name = $"after-{region}-leader.bin";
                // The primary mount retries a write until its cluster has a new leader (bounded by the step timeout).
                await Blocking.RunAsync(() => File.WriteAllBytes(Path.Combine(dir, "primary-mnt", name), after));
                var copy = Path.Combine(dir, "mirror-mnt", name);
                var until = Environment.TickCount64 + RegionEnv.WaitMs;
                byte[]? got = null;
                while (Environment.TickCount64 < until)
                {
                    got = await Blocking.RunAsync(() => File.Exists(copy) ? File.ReadAllBytes(copy) : null);
                    if (got is not null && got.AsSpan().SequenceEqual(after))
                    {
                        break;
                    }
                    await Task.Delay(250);
                }
                Assert.True(got is not null && got.AsSpan().SequenceEqual(after),
                    $"after the {region} leader's kill -9, {copy} did not read back what the primary wrote within {RegionEnv.WaitMs} ms");
            }

            var status = await ScriptAsync($"status '{dir}'");
            Assert.True(status.Code == 0, $"regions.sh status failed:\n{status.Err}");
            Assert.Contains("state following", status.Out, StringComparison.Ordinal);
            var json = await ScriptAsync($"status '{dir}' --json");
            Assert.True(json.Code == 0, $"regions.sh status --json failed:\n{json.Err}");
            Assert.Contains("\"mirrorState\": \"following\"", json.Out, StringComparison.Ordinal);

            var stop = await ScriptAsync($"stop '{dir}'");
            stopped = true;
            Assert.True(stop.Code == 0, $"regions.sh stop failed:\n{stop.Err}");
            Assert.Equal("", await LeftoversAsync(dir));
        }
        finally
        {
            if (!stopped)
            {
                await ScriptAsync($"stop '{dir}'");
                foreach (var log in Directory.EnumerateFiles(dir, "*.log", SearchOption.AllDirectories).Take(20))
                {
                    var lines = File.ReadAllLines(log);
                    output.WriteLine($"--- {log} (last 30 lines) ---\n{string.Join('\n', lines.TakeLast(30))}");
                }
            }
            try
            {
                Directory.Delete(dir, recursive: true);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                output.WriteLine($"could not remove {dir}: {e.Message}");
            }
        }
    }
}
