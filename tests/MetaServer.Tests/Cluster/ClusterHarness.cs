// Three (or more) in-process Raft metaserver hosts on loopback ports, talking over the real RPC transport.
using System.Net;
using System.Net.Sockets;
using MirrorFS.Core.Meta;
using MirrorFS.MetaServer.Hosting;
using MirrorFS.MetaServer.Raft;
using MirrorFS.MetaServer.Tests.Storage;

namespace MirrorFS.MetaServer.Tests.Cluster;

public sealed class ClusterHarness : IAsyncDisposable
{
    public const string Token = "cluster-test-token-0123456789";

    /// <summary>Generous: the machine is shared, and an election may need a few rounds.</summary>
    public const int WaitMs = 30_000;

    private readonly TempDir _dir = new();
    private readonly Dictionary<ulong, MetaServerHost?> _hosts = [];

    private ClusterHarness(Dictionary<ulong, string> peers, ulong snapshotEvery)
    {
        Peers = peers;
        SnapshotEvery = snapshotEvery;
    }

    /// <summary>Initial members and their addresses.</summary>
    public IReadOnlyDictionary<ulong, string> Peers { get; }

    public ulong SnapshotEvery { get; }

    /// <summary>Addresses of every node ever started (added members included).</summary>
    public Dictionary<ulong, string> Addresses { get; } = [];

    public string TokenFile => Path.Combine(_dir.Path, "token");

    public string Meta => string.Join(",", Addresses.Values);

    public static async Task<ClusterHarness> StartAsync(int nodes = 3, ulong snapshotEvery = 100_000)
    {
        for (var attempt = 1; ; attempt++)
        {
            var peers = Enumerable.Range(1, nodes).ToDictionary(i => (ulong)i, _ => $"127.0.0.1:{FreePort()}");
            var h = new ClusterHarness(peers, snapshotEvery);
            await File.WriteAllTextAsync(h.TokenFile, Token + "\n");
            try
            {
                foreach (var id in peers.Keys)
                {
                    await h.StartNodeAsync(id);
                }
                return h;
            }
            catch (IOException) when (attempt < 3)
            {
                await h.DisposeAsync(); // a port was taken between picking and binding: pick again
            }
        }
    }

    public static int FreePort()
    {
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        return ((IPEndPoint)l.LocalEndpoint).Port;
    }

    public string DataDir(ulong id) => _dir.Sub($"n{id}");

    /// <summary>Starts (or restarts from its directory) node <paramref name="id"/>; a node not among the initial
    /// members joins (waits to be added) on <paramref name="address"/>.</summary>
    public async Task<MetaServerHost> StartNodeAsync(ulong id, string? address = null)
    {
        var join = !Peers.ContainsKey(id);
        address ??= Addresses.GetValueOrDefault(id) ?? Peers.GetValueOrDefault(id) ?? $"127.0.0.1:{FreePort()}";
        var host = await MetaServerHost.StartAsync(new MetaServerOptions
        {
            DataDirectory = DataDir(id),
            Listen = address,
            BearerToken = Token,
            NodeId = id,
            Peers = join ? null : Peers,
            Join = join,
            AdvertiseAddress = join ? address : null,
            SnapshotEveryEntries = SnapshotEvery,
            // Longer than production defaults: this machine is shared by many test processes.
            ElectionTimeoutMs = 500,
            HeartbeatMs = 50,
        });
        lock (_hosts)
        {
            _hosts[id] = host;
            Addresses[id] = address;
        }
        return host;
    }

    public MetaServerHost? Host(ulong id)
    {
        lock (_hosts)
        {
            return _hosts.GetValueOrDefault(id);
        }
    }

    public IReadOnlyList<MetaServerHost> Running
    {
        get
        {
            lock (_hosts)
            {
                return [.. _hosts.Values.OfType<MetaServerHost>()];
            }
        }
    }

    public async Task StopNodeAsync(ulong id)
    {
        MetaServerHost? host;
        lock (_hosts)
        {
            host = _hosts.GetValueOrDefault(id);
            _hosts[id] = null;
        }
        if (host is not null)
        {
            await host.DisposeAsync();
        }
    }

    public static async Task<T> Eventually<T>(Func<T?> probe, string what) where T : class
    {
        var deadline = Environment.TickCount64 + WaitMs;
        while (Environment.TickCount64 < deadline)
        {
            if (probe() is { } v)
            {
                return v;
            }
            await Task.Delay(20);
        }
        throw new TimeoutException($"waited {WaitMs} ms for {what}");
    }

    /// <summary>The running node that is leader and that every other running node follows.</summary>
    public Task<MetaServerHost> LeaderAsync() => Eventually(() =>
    {
        var running = Running;
        var leaders = running.Where(h => h.Raft!.Status.Role == RaftRole.Leader).ToList();
        return leaders.Count == 1 ? leaders[0] : null;
    }, "one leader");

    public static ulong IdOf(MetaServerHost host) => host.Raft!.Id;

    /// <summary>Waits until every running node has applied <paramref name="index"/>.</summary>
    public Task AllAppliedAsync(ulong index) => Eventually(() =>
        Running.All(h => h.Raft!.AppliedIndex >= index) ? "ok" : null, $"every node to apply {index}");

    public RpcMetaClient Client(int failoverTimeoutMs = 30_000) => new(new RpcMetaClientOptions
    {
        Addresses = [.. Addresses.Values],
        BearerToken = Token,
        FailoverTimeoutMs = failoverTimeoutMs,
    });

    /// <summary>Runs the mirrorfs-meta CLI in-process; returns exit code, stdout and stderr.</summary>
    public static async Task<(int Code, string Out, string Err)> CliAsync(params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        var code = await Program.RunAsync(args, output, error);
        return (code, output.ToString(), error.ToString());
    }

    public async ValueTask DisposeAsync()
    {
        List<ulong> ids;
        lock (_hosts)
        {
            ids = [.. _hosts.Keys];
        }
        foreach (var id in ids)
        {
            await StopNodeAsync(id);
        }
        _dir.Dispose();
    }
}
