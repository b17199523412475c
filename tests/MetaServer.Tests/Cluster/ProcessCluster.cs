// A mirrorfs-meta cluster of real processes on loopback for tests: start, kill -9, restart, add nodes, run the CLI.
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using MirrorFS.Core.Meta;
using MirrorFS.MetaServer.Tests.Server;
using Xunit.Abstractions;

namespace MirrorFS.MetaServer.Tests.Cluster;

/// <summary>The process tests share two cores with the rest of the suite: they run one at a time.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class ProcessClusterCollection
{
    public const string Name = "process cluster";
}

public sealed class ProcessCluster : IAsyncDisposable
{
    /// <summary>Fresh ports may be taken by another test between choosing and binding: start again on new ones.</summary>
    private const int StartAttemptsMax = 3;

    /// <summary>A CLI call (a new process) under a loaded machine.</summary>
    private const int CliTimeoutMs = 120_000;

    /// <summary>Lines of each node's output shown when a test fails.</summary>
    private const int DumpLinesMax = 150;

    private readonly ITestOutputHelper _output;
    private readonly string _root;
    private readonly Dictionary<int, int> _ports = [];
    private readonly Dictionary<int, MetaServerProcess?> _nodes = [];
    private readonly Dictionary<int, StringBuilder> _pastOutput = [];
    private readonly string[] _extra;

    private ProcessCluster(string root, ITestOutputHelper output, string[] extra)
    {
        _root = root;
        _output = output;
        _extra = extra;
        TokenFile = Path.Combine(root, "token");
        Token = Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(16));
    }

    public string Token { get; }

    public string TokenFile { get; }

    /// <summary>Ids of the nodes this harness started (running or killed), in order.</summary>
    public IReadOnlyList<int> Ids => _ports.Keys.Order().ToArray();

    public string AddressOf(int id) => $"127.0.0.1:{_ports[id]}";

    /// <summary>Node id listening on <paramref name="address"/>, or 0.</summary>
    public int IdOf(string address) => _ports.FirstOrDefault(p => AddressOf(p.Key) == address).Key;

    /// <summary>Every node's address, in id order.</summary>
    public IReadOnlyList<string> Addresses => Ids.Select(AddressOf).ToArray();

    /// <summary>The initial members' peer list as the CLI takes it (<c>1=host:port,...</c>).</summary>
    public string Peers(IEnumerable<int> ids) => string.Join(',', ids.Select(i => $"{i}={AddressOf(i)}"));

    /// <summary>Starts nodes 1..<paramref name="size"/>, each with its data under <paramref name="root"/>/nID.</summary>
    public static async Task<ProcessCluster> StartAsync(string root, int size, ITestOutputHelper output, params string[] extra)
    {
        for (var attempt = 1; ; attempt++)
        {
            var cluster = new ProcessCluster(Path.Combine(root, $"try{attempt}"), output, extra);
            try
            {
                Directory.CreateDirectory(cluster._root);
                await File.WriteAllTextAsync(cluster.TokenFile, cluster.Token + "\n");
                File.SetUnixFileMode(cluster.TokenFile, UnixFileMode.UserRead | UnixFileMode.UserWrite);
                var ports = FreePorts(size);
                for (var id = 1; id <= size; id++)
                {
                    cluster._ports[id] = ports[id - 1];
                }
                var initial = cluster.Ids.ToArray();
                await Task.WhenAll(initial.Select(id => cluster.StartNodeAsync(id, initial)));
                return cluster;
            }
            catch (InvalidOperationException e) when (attempt < StartAttemptsMax)
            {
                output.WriteLine($"cluster start attempt {attempt} failed, trying fresh ports: {e.Message}");
                await cluster.DisposeAsync();
            }
        }
    }

    /// <summary>Reserves an id and a port for a node that will join later.</summary>
    public int AddSlot()
    {
        var id = _ports.Count == 0 ? 1 : _ports.Keys.Max() + 1;
        _ports[id] = FreePorts(1)[0];
        return id;
    }

    /// <summary>Starts (or restarts, on the same directory and port) node <paramref name="id"/>; <paramref name="peers"/>
    /// are the ids in its --peers list; <paramref name="join"/> makes it wait to be added.</summary>
    public async Task StartNodeAsync(int id, IEnumerable<int> peers, bool join = false)
    {
        if (_nodes.TryGetValue(id, out var running) && running is not null)
        {
            throw new InvalidOperationException($"node {id} is already running");
        }
        var args = new List<string>
        {
            "--id", id.ToString(CultureInfo.InvariantCulture), "--peers", Peers(peers), "--token-file", TokenFile,
        };
        if (join)
        {
            args.Add("--join");
        }
        args.AddRange(_extra);
        _nodes[id] = await MetaServerProcess.StartAsync(Path.Combine(_root, $"n{id}"), AddressOf(id), [.. args]);
    }

    public bool IsRunning(int id) => _nodes.TryGetValue(id, out var p) && p is not null;

    /// <summary>kill -9 of node <paramref name="id"/>; its output is kept for <see cref="DumpLogs"/>.</summary>
    public async Task KillAsync(int id)
    {
        if (_nodes.TryGetValue(id, out var p) && p is not null)
        {
            await p.KillAsync();
            Remember(id, p);
            await p.DisposeAsync();
            _nodes[id] = null;
        }
    }

    private void Remember(int id, MetaServerProcess p)
    {
        if (!_pastOutput.TryGetValue(id, out var sb))
        {
            _pastOutput[id] = sb = new StringBuilder();
        }
        sb.Append(p.Output).AppendLine("---- killed ----");
    }

    public RpcMetaClient Client(IEnumerable<int>? ids = null, int failoverTimeoutMs = 60_000, int callTimeoutMs = 10_000,
        int retryDelayMs = 50) => new(new RpcMetaClientOptions
        {
            Addresses = (ids ?? Ids).Select(AddressOf).ToArray(),
            BearerToken = Token,
            FailoverTimeoutMs = failoverTimeoutMs,
            CallTimeoutMs = callTimeoutMs,
            RetryDelayMs = retryDelayMs,
        });

    /// <summary>Runs <c>mirrorfs-meta ARGS --meta (running members) --token-file F</c>.</summary>
    public Task<CliResult> CliAsync(params string[] args) =>
        RunMetaCliAsync([.. args, "--meta", string.Join(',', Ids.Where(IsRunning).Select(AddressOf)), "--token-file", TokenFile]);

    public static async Task<CliResult> RunMetaCliAsync(IEnumerable<string> args)
    {
        var psi = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "mirrorfs-meta.dll"));
        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(CliTimeoutMs);
        try
        {
            await p.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"mirrorfs-meta {string.Join(' ', psi.ArgumentList.Skip(1))} did not finish within {CliTimeoutMs} ms");
        }
        return new CliResult(p.ExitCode, await stdout, await stderr);
    }

    /// <summary>Polls <c>cluster status --json</c> until <paramref name="done"/> holds; returns the last status.</summary>
    public async Task<ProcessClusterStatus> WaitStatusAsync(Func<ProcessClusterStatus, bool> done, int timeoutMs, string what)
    {
        var deadline = Environment.TickCount64 + timeoutMs;
        string last = "(no status yet)";
        while (true)
        {
            var r = await CliAsync("cluster", "status", "--json");
            if (r.ExitCode == 0)
            {
                var status = ProcessClusterStatus.Parse(r.Stdout);
                if (done(status))
                {
                    return status;
                }
                last = r.Stdout.Trim();
            }
            else
            {
                last = $"exit {r.ExitCode}: {r.Stderr.Trim()}";
            }
            if (Environment.TickCount64 >= deadline)
            {
                throw new TimeoutException($"cluster did not reach '{what}' within {timeoutMs} ms; last status: {last}");
            }
            await Task.Delay(250);
        }
    }

    /// <summary>Writes each node's last lines to the test output (call when a test fails).</summary>
    public void DumpLogs()
    {
        foreach (var id in Ids)
        {
            var text = (_pastOutput.TryGetValue(id, out var past) ? past.ToString() : "") +
                       (_nodes.TryGetValue(id, out var p) && p is not null ? p.Output : "");
            var lines = text.Split('\n');
            _output.WriteLine($"==== node {id} ({AddressOf(id)}), last {Math.Min(lines.Length, DumpLinesMax)} lines ====");
            _output.WriteLine(string.Join('\n', lines.TakeLast(DumpLinesMax)));
        }
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var id in _nodes.Keys.ToArray())
        {
            if (_nodes[id] is { } p)
            {
                await p.DisposeAsync();
                _nodes[id] = null;
            }
        }
    }

    internal static int[] FreePorts(int count)
    {
        // Hold every listener until all are chosen so the same port is not handed out twice.
        var listeners = Enumerable.Range(0, count).Select(_ =>
        {
            var l = new TcpListener(IPAddress.Loopback, 0);
            l.Start();
            return l;
        }).ToArray();
        var ports = listeners.Select(l => ((IPEndPoint)l.LocalEndpoint).Port).ToArray();
        foreach (var l in listeners)
        {
            l.Stop();
        }
        return ports;
    }
}

public sealed record CliResult(int ExitCode, string Stdout, string Stderr)
{
    public override string ToString() => $"exit {ExitCode}; stdout: {Stdout.Trim()}; stderr: {Stderr.Trim()}";
}
