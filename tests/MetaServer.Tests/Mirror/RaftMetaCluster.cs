// Three in-process metaserver nodes on Raft (real WAL on disk, in-process Raft transport, real RPC servers), optionally
// in mirror mode: what the mirror tests need until the cluster host lands.
using Microsoft.Extensions.Logging.Abstractions;
using MirrorFS.Core.Meta;
using MirrorFS.Core.Rpc;
using MirrorFS.MetaServer.Consensus;
using MirrorFS.MetaServer.Engine;
using MirrorFS.MetaServer.Hosting;
using MirrorFS.MetaServer.Mirror;
using MirrorFS.MetaServer.Raft;
using MirrorFS.MetaServer.Tests.Storage;

namespace MirrorFS.MetaServer.Tests.Mirror;

internal sealed class RaftMetaCluster : IAsyncDisposable
{
    private readonly TempDir _dir = new();
    private readonly Dictionary<ulong, Node?> _nodes = [];
    private readonly Dictionary<ulong, string> _addresses = [];
    private readonly ulong[] _voters;
    private readonly MirrorHostOptions? _mirror;
    private readonly ulong _snapshotEvery;

    public sealed class Node
    {
        public required ulong Id { get; init; }
        public required MetaStateMachine State { get; init; }
        public required RaftLog Log { get; init; }
        public required MetaService Service { get; init; }
        public required RpcServer Rpc { get; init; }
        public required ChangelogService Changelog { get; init; }
        public MirrorFollower? Follower { get; init; }
    }

    private RaftMetaCluster(int size, MirrorHostOptions? mirror, ulong snapshotEvery)
    {
        _voters = [.. Enumerable.Range(1, size).Select(i => (ulong)i)];
        _mirror = mirror;
        _snapshotEvery = snapshotEvery;
    }

    public static async Task<RaftMetaCluster> StartAsync(int size = 3, MirrorHostOptions? mirror = null, ulong snapshotEvery = 100_000)
    {
        var c = new RaftMetaCluster(size, mirror, snapshotEvery);
        foreach (var id in c._voters)
        {
            await c.StartNodeAsync(id);
        }
        return c;
    }

    public IReadOnlyList<string> Addresses
    {
        get
        {
            lock (_nodes)
            {
                return [.. _voters.Select(id => _addresses[id])];
            }
        }
    }

    public IEnumerable<Node> Running
    {
        get
        {
            lock (_nodes)
            {
                return [.. _nodes.Values.Where(n => n is not null).Select(n => n!)];
            }
        }
    }

    private sealed class Loopback(RaftMetaCluster owner) : IRaftTransport
    {
        public void Send(RaftMessage message)
        {
            lock (owner._nodes)
            {
                owner._nodes.GetValueOrDefault(message.To)?.Log.Receive(message);
            }
        }
    }

    private async Task StartNodeAsync(ulong id)
    {
        var state = new MetaStateMachine();
        var log = RaftLog.Open(state, new RaftLogOptions
        {
            Id = id, InitialVoters = _voters, Directory = _dir.Sub($"n{id}"), Transport = new Loopback(this),
            TickMs = 10, ElectionTicks = 10, HeartbeatTicks = 2, SnapshotEveryEntries = _snapshotEvery,
            AddressOf = n =>
            {
                lock (_nodes)
                {
                    return _addresses.GetValueOrDefault(n);
                }
            },
        });
        var service = _mirror is { } m
            ? new MetaService(state, log) { MirrorOf = m.Primary.ToString(), MirrorStorage = m.MirrorStorage, MirrorReadWaitMs = m.ReadWaitMs }
            : new MetaService(state, log);
        var rpc = new RpcServer(new RpcServerOptions { Listen = "127.0.0.1:0" });
        rpc.MapMetaService(service, MetaServerHost.Translate);
        var changelog = new ChangelogService(service);
        changelog.Map(rpc, e => MetaServerHost.Translate(e));
        await rpc.StartAsync();
        var follower = _mirror is null ? null : new MirrorFollower(service, _mirror.ToFollowerOptions(), NullLogger.Instance);
        lock (_nodes)
        {
            _addresses[id] = rpc.Address;
            _nodes[id] = new Node { Id = id, State = state, Log = log, Service = service, Rpc = rpc, Changelog = changelog, Follower = follower };
        }
        follower?.Start();
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
        Node? node;
        lock (_nodes)
        {
            node = _nodes[id];
            _nodes[id] = null;
        }
        if (node is not null)
        {
            await StopNodeAsync(node);
        }
    }

    private static async Task StopNodeAsync(Node n)
    {
        if (n.Follower is not null)
        {
            await n.Follower.DisposeAsync();
        }
        await n.Rpc.DisposeAsync();
        await n.Changelog.DisposeAsync();
        await n.Log.DisposeAsync();
        n.State.Dispose();
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
