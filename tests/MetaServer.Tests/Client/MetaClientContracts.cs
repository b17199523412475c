using MirrorFS.Core.Meta;
using MirrorFS.MetaServer.Consensus;
using MirrorFS.MetaServer.Engine;
using MirrorFS.MetaServer.Hosting;

namespace MirrorFS.MetaServer.Tests.Client;

/// <summary>The contract with the engine called directly (no log durability, no network).</summary>
public sealed class InProcessMetaClientContractTests : MetaClientContractTests
{
    protected override Task<IMetaClient> CreateClientAsync()
    {
        var state = new MetaStateMachine();
        var service = new MetaService(state, new InMemoryLog(state));
        return Task.FromResult<IMetaClient>(service);
    }
}

/// <summary>The contract over the gRPC-wire stack against a durable server with a token.</summary>
public sealed class RpcMetaClientContractTests : MetaClientContractTests
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "mirrorfs-meta-" + Guid.NewGuid().ToString("N")[..12]);
    private MetaServerHost? _host;

    protected override async Task<IMetaClient> CreateClientAsync()
    {
        _host = await MetaServerHost.StartAsync(new MetaServerOptions { DataDirectory = _dir, BearerToken = "contract-token-0123456789" });
        return new RpcMetaClient(new RpcMetaClientOptions { Addresses = [_host.Address], BearerToken = "contract-token-0123456789" });
    }

    protected override async Task DisposeServerAsync()
    {
        if (_host is not null)
        {
            await _host.DisposeAsync();
        }
        Directory.Delete(_dir, recursive: true);
    }
}
