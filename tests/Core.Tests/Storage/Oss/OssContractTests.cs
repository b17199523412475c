// The IObjectStore contract run against OssObjectStore on the project's OSS-protocol server, once per signature.
using MirrorFS.Core.Storage;
using MirrorFS.Core.Storage.Oss;
using MirrorFS.Testing.Oss;

namespace MirrorFS.Core.Tests.Storage.Oss;

/// <summary>One OSS test server on a free loopback port, shared by a test class; every test gets a new bucket.</summary>
public sealed class OssServerFixture : IAsyncLifetime
{
    public const string AccessKeyId = "mirrorfs-test-ak";
    // Characters that must be percent-encoded in a URI, so that the oss:// parsing is exercised too.
    public const string AccessKeySecret = "test/secret+with=odd@chars";
    public const string Region = "cn-hangzhou";

    public OssTestServer Server { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        Server = new OssTestServer(new OssTestServerOptions
        {
            AccessKeyId = AccessKeyId,
            AccessKeySecret = AccessKeySecret,
            Region = Region,
        });
        await Server.StartAsync();
    }

    public async Task DisposeAsync() => await Server.DisposeAsync();

    public string NewBucket()
    {
        var bucket = "t-" + Guid.NewGuid().ToString("N")[..16];
        Server.CreateBucket(bucket);
        return bucket;
    }

    /// <summary>A store for <paramref name="bucket"/> built the way ObjectStoreFactory builds it: from an oss:// URI.</summary>
    public OssObjectStore Store(string bucket, string signature = "v4", string extra = "") =>
        new(OssOptions.FromUri(new Uri(
            $"oss://{AccessKeyId}:{Uri.EscapeDataString(AccessKeySecret)}@{bucket}?endpoint={Server.Endpoint}"
            + $"&region={Region}&signature={signature}{extra}"), _ => null));
}

public sealed class OssV4ContractTests(OssServerFixture fixture) : ObjectStoreContractTests, IClassFixture<OssServerFixture>
{
    protected override Task<IObjectStore> CreateStoreAsync() =>
        Task.FromResult<IObjectStore>(fixture.Store(fixture.NewBucket(), "v4"));
}

public sealed class OssV1ContractTests(OssServerFixture fixture) : ObjectStoreContractTests, IClassFixture<OssServerFixture>
{
    protected override Task<IObjectStore> CreateStoreAsync() =>
        Task.FromResult<IObjectStore>(fixture.Store(fixture.NewBucket(), "v1"));
}

/// <summary>The contract through the factory's shape: a PrefixObjectStore over OSS inside a shared bucket.</summary>
public sealed class OssPrefixedContractTests(OssServerFixture fixture) : ObjectStoreContractTests, IClassFixture<OssServerFixture>
{
    protected override Task<IObjectStore> CreateStoreAsync() =>
        Task.FromResult<IObjectStore>(new PrefixObjectStore(fixture.Store(fixture.NewBucket()), "vol/" + Guid.NewGuid().ToString("N")[..8]));
}
