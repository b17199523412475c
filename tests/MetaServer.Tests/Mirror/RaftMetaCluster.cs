// A Raft cluster of in-process metaserver hosts (real RPC transport on loopback), optionally in mirror mode.
using MirrorFS.Core.Meta;
using MirrorFS.MetaServer.Engine;
using MirrorFS.MetaServer.Hosting;
using MirrorFS.MetaServer.Mirror;
using MirrorFS.MetaServer.Raft;
using MirrorFS.MetaServer.Tests.Storage;

namespace MirrorFS.MetaServer.Tests.Mirror;

internal sealed class RaftMetaCluster : IAsyncDisposable
{
    private readonly TempDir _dir = new();
    private readonly Dictionary<ulong, MetaServerHost?> _hosts = [];
    private readonly Dictionary<ulong, string> _peers;
    private readonly MirrorHostOptions? _mirror;
    private readonly ulong _snapshotEvery;

    public sealed record Node(ulong Id, MetaServerHost Host)
    {
        public MetaStateMachine State => Host.Service.State;

        public RaftLog Log => Host.Raft!;

        public MirrorFollower? Follower => Host.Follower;

        public ChangelogService Changelog => Host.Changelog;
    }

    private RaftMetaCluster(Dictionary<ulong, string> peers, MirrorHostOptions? mirror, ulong snapshotEvery)
    {
        _peers = peers;
        _mirror = mirror;
        _snapshotEvery = snapshotEvery;
    }

    public static async Task<RaftMetaCluster> StartAsync(int size = 3, MirrorHostOptions? mirror = null, ulong snapshotEvery = 100_000)
    {
        for (var attempt = 1; ; attempt++)
        {
            var peers = Enumerable.Range(1, size).ToDictionary(i => (ulong)i, _ => $"127.0.0.1:{Cluster.ClusterHarness.FreePort()}");
            var c = new RaftMetaCluster(peers, mirror, snapshotEvery);
            try
            {
                foreach (var id in peers.Keys)
                {
                    await c.StartNodeAsync(id);
                }
                return c;
            }
            catch (IOException) when (attempt < 3)
            {
                await c.DisposeAsync(); // a port was taken between picking and binding: pick again
            }
        }
    }

    public IReadOnlyList<string> Addresses => [.. _peers.Values];

    public IEnumerable<Node> Running
    {
        get
        {
            lock (_hosts)
            {
                return [.. _hosts.Where(h => h.Value is not null).Select(h => new Node(h.Key, h.Value!))];
            }
        }
    }

    private async Task StartNodeAsync(ulong id)
    {
        var host = await MetaServerHost.StartAsync(new MetaServerOptions
        {
            DataDirectory = _dir.Sub($"n{id}"),
            Listen = _peers[id],
            NodeId = id,
            Peers = _peers,
            SnapshotEveryEntries = _snapshotEvery,
            ElectionTimeoutMs = 300,
            HeartbeatMs = 50,
            Mirror = _mirror,
        });
        lock (_hosts)
        {
            _hosts[id] = host;
        }
    }

    public async Task<Node> LeaderAsync()
    {
        Node? leader = null;
        await MirrorWorkload.EventuallyAsync(() =>
        {
            leader = Running.FirstOrDefault(n => n.Log.Status.Role == RaftRole.Leader);
            return leader is not null;
        }, "a Raft leader");
        return leader!;
    }

    public async Task StopAsync(ulong id)
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

    public RpcMetaClient Client() => new(new RpcMetaClientOptions { Addresses = Addresses, FailoverTimeoutMs = 30_000 });

    public async ValueTask DisposeAsync()
    {
        foreach (var n in Running)
        {
            await StopAsync(n.Id);
        }
        _dir.Dispose();
    }
}
