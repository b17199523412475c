using MirrorFS.Core.Storage;
using MirrorFS.Core.Storage.S3;

namespace MirrorFS.Core.Tests.Storage.S3;

/// <summary>The object-store contract against a real Swift s3api, each test on its own prefix of a shared bucket.</summary>
[Collection(SwiftCollection.Name)]
public sealed class S3SwiftContractTests(SwiftFixture swift) : ObjectStoreContractTests
{
    protected override Task<IObjectStore> CreateStoreAsync() =>
        Task.FromResult<IObjectStore>(new S3ObjectStore(swift.Options()));
}

