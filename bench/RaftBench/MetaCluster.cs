// A three-node mirrorfs-meta cluster as real processes on loopback, data on disk, for the bench.
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using MirrorFS.Core.Meta;

namespace MirrorFS.Bench;

internal sealed class MetaCluster : IAsyncDisposable
{
    private const int StartTimeoutMs = 60_000;
    private readonly string _dir;
    private readonly int[] _ports;
    private readonly ChildProcess?[] _nodes;
    private readonly string[] _addresses;

    private MetaCluster(string dir, int[] ports, string token)
    {
        _dir = dir;
        _ports = ports;
        _addresses = ports.Select(p => $"127.0.0.1:{p}").ToArray();
        _nodes = new ChildProcess?[ports.Length];
        Token = token;
    }

    public string Token { get; }

    public int Size => _ports.Length;

    public IReadOnlyList<string> Addresses => _addresses;

    public string Peers => string.Join(',', _ports.Select((p, i) => $"{i + 1}=127.0.0.1:{p}"));

    /// <summary>Node id (1-based) answering on <paramref name="address"/>, or 0.</summary>
    public int IdOf(string address) => Array.IndexOf(_addresses, address) + 1;

    public static async Task<MetaCluster> StartAsync(string dir, int size, int basePort)
    {
        Directory.CreateDirectory(dir);
        var token = Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(16));
        var tokenFile = Path.Combine(dir, "token");
        await File.WriteAllTextAsync(tokenFile, token + "\n");
        File.SetUnixFileMode(tokenFile, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        var ports = basePort > 0 ? Enumerable.Range(basePort, size).ToArray() : FreePorts(size);
        var cluster = new MetaCluster(dir, ports, token);
        try
        {
            await Task.WhenAll(Enumerable.Range(1, size).Select(cluster.StartNodeAsync));
            return cluster;
        }
        catch
        {
            await cluster.DisposeAsync();
            throw;
        }
    }

    /// <summary>Starts (or restarts, on the same data directory and port) node <paramref name="id"/>.</summary>
    public async Task StartNodeAsync(int id)
    {
        var data = Path.Combine(_dir, $"n{id}");
        Directory.CreateDirectory(data);
        var dll = Path.Combine(AppContext.BaseDirectory, "mirrorfs-meta.dll");
        _nodes[id - 1] = await ChildProcess.StartAsync($"mirrorfs-meta node {id}", "dotnet",
            [dll, "serve", "--id", id.ToString(CultureInfo.InvariantCulture), "--data", data,
             "--listen", $"127.0.0.1:{_ports[id - 1]}", "--peers", Peers, "--token-file", Path.Combine(_dir, "token")],
            "mirrorfs-meta listening on ", StartTimeoutMs, Path.Combine(_dir, $"n{id}.log"));
    }

    public async Task KillNodeAsync(int id)
    {
        if (_nodes[id - 1] is { } node)
        {
            await node.DisposeAsync();
            _nodes[id - 1] = null;
        }
    }

    public RpcMetaClient Client(int failoverTimeoutMs = 30_000, int retryDelayMs = 50, int callTimeoutMs = 10_000) =>
        new(new RpcMetaClientOptions
        {
            Addresses = Addresses,
            BearerToken = Token,
            FailoverTimeoutMs = failoverTimeoutMs,
            RetryDelayMs = retryDelayMs,
            CallTimeoutMs = callTimeoutMs,
        });

    /// <summary>Formats the volume once a leader is elected: the first write a fresh cluster accepts.</summary>
    public async Task FormatAsync(Credentials cred)
    {
        await using var c = Client(failoverTimeoutMs: StartTimeoutMs);
        var r = await c.FormatAsync(new FormatRequest { Cred = cred, Volume = new Volume { Name = "raftbench" } });
        if (r.Errno != 0)
        {
            throw new InvalidOperationException($"format of the bench cluster failed with errno {r.Errno}");
        }
    }

    /// <summary>Process ids of the members running now.</summary>
    public IReadOnlyList<int> Pids => [.. _nodes.Where(n => n is not null).Select(n => n!.Pid)];

    public string LogsOf(int id) => _nodes[id - 1]?.LastOutput ?? "(not running)";

    public async ValueTask DisposeAsync()
    {
        for (var id = 1; id <= _nodes.Length; id++)
        {
            await KillNodeAsync(id);
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
