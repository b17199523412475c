// deploy/cluster.sh as a user runs it: start three members, see one leader in cluster status, write, stop.
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Google.Protobuf;
using MirrorFS.Core.Meta;
using Xunit.Abstractions;

namespace MirrorFS.MetaServer.Tests.Cluster;

[Collection(ProcessClusterCollection.Name)]
public sealed class ProcessClusterScriptTests(ITestOutputHelper output) : IDisposable
{
    private const int ScriptTimeoutMs = 180_000;
    private const int PortTriesMax = 50;
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "mirrorfs-pscript-" + Guid.NewGuid().ToString("N")[..12]);

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
    public async Task StartShowsThreeMembersAndOneLeaderThenStopEndsThem()
    {
        var basePort = FreeBasePort();
        var start = await ScriptAsync("start", _dir, basePort.ToString(CultureInfo.InvariantCulture));
        int[] pids = [];
        try
        {
            Assert.True(start.ExitCode == 0, $"cluster.sh start: {start}");
            pids = Enumerable.Range(1, 3).Select(i => int.Parse(File.ReadAllText(Path.Combine(_dir, $"n{i}.pid")).Trim(), CultureInfo.InvariantCulture)).ToArray();
            var members = File.ReadAllText(Path.Combine(_dir, "members")).Trim();
            Assert.Equal(string.Join(',', Enumerable.Range(1, 3).Select(i => $"127.0.0.1:{basePort + i}")), members);

            // The script returns once a leader serves; status may still see a member catching up under load.
            ProcessClusterStatus? status = null;
            var deadline = Environment.TickCount64 + 60_000;
            while (Environment.TickCount64 < deadline)
            {
                var r = await ProcessCluster.RunMetaCliAsync(["cluster", "status", "--json", "--meta", members, "--token-file", Path.Combine(_dir, "token")]);
                Assert.True(r.ExitCode == 0, $"cluster status: {r}");
                status = ProcessClusterStatus.Parse(r.Stdout);
                if (status.Nodes.Count == 3 && status.Nodes.All(n => n.Reachable) && status.Leaders.Count == 1)
                {
                    break;
                }
                await Task.Delay(250);
            }
            Assert.NotNull(status);
            Assert.Equal([1, 2, 3], status.Nodes.Select(n => n.Id).Order());
            Assert.True(status.Nodes.All(n => n.Reachable), status.Json);
            Assert.Single(status.Leaders);

            await using (var c = new RpcMetaClient(new RpcMetaClientOptions
            {
                Addresses = members.Split(','),
                BearerToken = File.ReadAllText(Path.Combine(_dir, "token")).Trim(),
                FailoverTimeoutMs = 60_000,
            }))
            {
                var f = await c.FormatAsync(new FormatRequest { Cred = new Credentials(), Volume = new Volume { Name = "script" } });
                Assert.True(f.Errno is 0 or Errno.EEXIST, $"format failed with errno {f.Errno}");
                var mk = await c.MkdirAsync(new MkdirRequest { Cred = new Credentials(), Parent = 1, Name = ByteString.CopyFromUtf8("d"), Mode = 0x1ED });
                Assert.Equal(0, mk.Errno);
            }

            var stop = await ScriptAsync("stop", _dir);
            Assert.True(stop.ExitCode == 0, $"cluster.sh stop: {stop}");
            Assert.All(pids, pid => Assert.False(Alive(pid), $"member pid {pid} still runs after cluster.sh stop"));
            Assert.Empty(Directory.GetFiles(_dir, "n*.pid"));
        }
        catch
        {
            output.WriteLine($"start: {start}");
            foreach (var log in Directory.Exists(_dir) ? Directory.GetFiles(_dir, "n*.log") : [])
            {
                output.WriteLine($"==== {log} ====\n{string.Join('\n', File.ReadLines(log).TakeLast(80))}");
            }
            throw;
        }
        finally
        {
            if (Directory.Exists(_dir) && Directory.GetFiles(_dir, "n*.pid").Length > 0)
            {
                await ScriptAsync("stop", _dir); // a failed start leaves its members running
            }
            foreach (var pid in pids.Where(Alive))
            {
                using var p = Process.GetProcessById(pid);
                p.Kill();
            }
        }
    }

    private static bool Alive(int pid)
    {
        try
        {
            using var p = Process.GetProcessById(pid);
            return !p.HasExited;
        }
        catch (ArgumentException)
        {
            return false;
        }
    }

    /// <summary>A base port whose next three ports are free, below the ephemeral range (no clash with client sockets).</summary>
    private static int FreeBasePort()
    {
        for (var i = 0; i < PortTriesMax; i++)
        {
            var b = Random.Shared.Next(20_000, 30_000);
            var listeners = new List<TcpListener>();
            try
            {
                for (var k = 1; k <= 3; k++)
                {
                    var l = new TcpListener(IPAddress.Loopback, b + k);
                    l.Start();
                    listeners.Add(l);
                }
                return b;
            }
            catch (SocketException)
            {
            }
            finally
            {
                listeners.ForEach(l => l.Stop());
            }
        }
        throw new InvalidOperationException($"no three consecutive free ports found in {PortTriesMax} tries");
    }

    private static async Task<CliResult> ScriptAsync(params string[] args)
    {
        var psi = new ProcessStartInfo("bash")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        psi.ArgumentList.Add(Path.Combine(RepoRoot(), "deploy", "cluster.sh"));
        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }
        // The build the tests run against, not a Release build the script would make.
        psi.Environment["MIRRORFS_META"] = Path.Combine(AppContext.BaseDirectory, "mirrorfs-meta");
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(ScriptTimeoutMs);
        await p.WaitForExitAsync(timeout.Token);
        return new CliResult(p.ExitCode, await stdout, await stderr);
    }

    private static string RepoRoot()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
        {
            if (File.Exists(Path.Combine(d.FullName, "Mirror.sln")))
            {
                return d.FullName;
            }
        }
        throw new DirectoryNotFoundException($"no Mirror.sln above {AppContext.BaseDirectory}");
    }
}
