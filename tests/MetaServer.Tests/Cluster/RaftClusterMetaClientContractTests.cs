// The metadata client contract against a three-member Raft cluster over RPC.
using MirrorFS.Core.Meta;
using MirrorFS.MetaServer.Tests.Client;

namespace MirrorFS.MetaServer.Tests.Cluster;

public sealed class RaftClusterMetaClientContractTests : MetaClientContractTests
{
    private ClusterHarness? _cluster;

    protected override async Task<IMetaClient> CreateClientAsync()
    {
        _cluster = await ClusterHarness.StartAsync();
        await _cluster.LeaderAsync();
        return _cluster.Client();
    }

    protected override async Task DisposeServerAsync()
    {
        if (_cluster is not null)
        {
            await _cluster.DisposeAsync();
        }
    }
}
