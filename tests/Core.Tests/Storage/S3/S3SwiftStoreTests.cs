// S3ObjectStore behaviour beyond the contract (credentials, buckets, URIs, limits) against the real Swift s3api.
using System.Diagnostics;
using System.Text;
using MirrorFS.Core.Storage;
using MirrorFS.Core.Storage.S3;

namespace MirrorFS.Core.Tests.Storage.S3;

[Collection(SwiftCollection.Name)]
public sealed class S3SwiftStoreTests(SwiftFixture swift)
{
    private const string WrongSecret = "not-the-secret-7c1f";

    /// <summary>Runs every operation and returns what each threw.</summary>
    private static async Task<List<ObjectStoreException>> FailAll(IObjectStore store)
    {
        var errors = new List<ObjectStoreException>();
        Func<Task>[] ops =
        [
            () => store.PutAsync("k", "x"u8.ToArray()),
            () => store.GetAsync("k"),
            () => store.GetAsync("k", new ByteRange(1, 5)),
            () => store.HeadAsync("k"),
            () => store.DeleteAsync("k"),
            () => store.ListAsync(""),
            () => store.DeleteManyAsync(["k", "k2"]),
        ];
        foreach (var op in ops)
        {
            errors.Add(await Assert.ThrowsAsync<ObjectStoreException>(op));
        }
        return errors;
    }

    private static void AssertOneLineWithout(ObjectStoreException e, string secret, string description)
    {
        Assert.DoesNotContain(secret, e.ToString(), StringComparison.Ordinal);
        Assert.DoesNotContain('\n', e.Message);
        Assert.StartsWith(description + ": ", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task WrongSecretIsUnauthorizedWithoutTheSecretAndIsNotRetried()
    {
        await using var store = new S3ObjectStore(swift.Options() with { SecretKey = WrongSecret });
        foreach (var e in await FailAll(store))
        {
            Assert.True(e.Failure == StoreFailure.Unauthorized, $"expected Unauthorized: {e.Message}");
            AssertOneLineWithout(e, WrongSecret, store.Description);
        }

        var retrying = new RetryingObjectStore(new S3ObjectStore(swift.Options() with { SecretKey = WrongSecret }));
        await using var _ = retrying;
        var watch = Stopwatch.StartNew();
        var put = await Assert.ThrowsAsync<ObjectStoreException>(() => retrying.PutAsync("k", "x"u8.ToArray()));
        Assert.Equal(StoreFailure.Unauthorized, put.Failure);
        Assert.Equal(0, retrying.Retries);
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(10), $"took {watch.Elapsed}");
    }

    [Fact]
    public async Task UnknownAccessKeyIsUnauthorized()
    {
        await using var store = new S3ObjectStore(swift.Options() with { AccessKey = "nobody:nobody", SecretKey = WrongSecret });
        foreach (var e in await FailAll(store))
        {
            Assert.True(e.Failure == StoreFailure.Unauthorized, $"expected Unauthorized: {e.Message}");
            AssertOneLineWithout(e, WrongSecret, store.Description);
        }
    }

    [Fact]
    public async Task MissingBucketIsNoSuchBucket()
    {
        var bucket = "mirrorfs-missing-" + Guid.NewGuid().ToString("N")[..8];
        await using var store = new S3ObjectStore(swift.Options(bucket));
        foreach (var e in await FailAll(store))
        {
            Assert.True(e.Failure == StoreFailure.NoSuchBucket, $"expected NoSuchBucket: {e.Message}");
            Assert.Contains(bucket, e.Message, StringComparison.Ordinal);
            AssertOneLineWithout(e, SwiftFixture.SecretKey, store.Description);
        }
    }

    [Fact]
    public async Task HeadOfMissingKeyIsNullBeforeAndAfterTheBucketIsKnown()
    {
        // The first HEAD 404 of a store is told apart from a missing bucket by a probe; later ones are not.
        await using var store = new S3ObjectStore(swift.Options());
        Assert.Null(await store.HeadAsync("absent"));
        Assert.Null(await store.HeadAsync("absent"));
        await store.PutAsync("present", new byte[3]);
        Assert.Equal(3, (await store.HeadAsync("present"))!.Size);
    }

    [Fact]
    public async Task UriWithCredentialsInUserInfoRoundTrips()
    {
        var prefix = swift.Options().Prefix.TrimEnd('/');
        // The tempauth user "test:tester" needs its ':' percent-encoded before '@'.
        var uri = new Uri($"s3://test%3Atester:testing@{swift.Bucket}/{prefix}?endpoint={swift.Endpoint}&region=us-east-1");
        // What ObjectStoreFactory builds: the URI's path becomes a PrefixObjectStore around the bucket's store.
        await using var store = new PrefixObjectStore(new S3ObjectStore(S3Options.FromUri(uri)), prefix);
        Assert.Equal($"s3://{swift.Bucket} ({swift.Endpoint.ToString().TrimEnd('/')})/{prefix}", store.Description);
        await store.PutAsync("a/b", "hello"u8.ToArray());
        Assert.Equal("hello"u8.ToArray(), await store.GetAsync("a/b"));
        Assert.Equal(["a/b"], (await store.ListAsync("")).Objects.Select(o => o.Key).ToArray());

        // The prefix is applied once: a store on the bare bucket sees the key right under it.
        await using var bare = new S3ObjectStore(swift.Options() with { Prefix = "" });
        Assert.Equal("hello"u8.ToArray(), await bare.GetAsync($"{prefix}/a/b"));
        await store.DeleteAsync("a/b");
        Assert.Null(await bare.HeadAsync($"{prefix}/a/b"));
    }

    [Fact]
    public async Task StoreOptionPrefixKeepsKeysApart()
    {
        await using var store = new S3ObjectStore(swift.Options());
        await using var bare = new S3ObjectStore(swift.Options() with { Prefix = "" });
        var prefix = store.Description.Split(' ')[0][$"s3://{swift.Bucket}/".Length..];
        await store.PutAsync("k", "v"u8.ToArray());
        Assert.Equal("v"u8.ToArray(), await bare.GetAsync($"{prefix}/k"));
        Assert.Equal(["k"], (await store.ListAsync("")).Objects.Select(o => o.Key).ToArray());
        Assert.Equal("k", (await store.HeadAsync("k"))!.Key);
    }

    [Fact]
    public async Task CredentialsComeFromTheEnvironmentWhenTheUriHasNone()
    {
        var options = swift.Options() with { AccessKey = null, SecretKey = null };
        var env = new Dictionary<string, string>
        {
            ["AWS_ACCESS_KEY_ID"] = SwiftFixture.AccessKey,
            ["AWS_SECRET_ACCESS_KEY"] = SwiftFixture.SecretKey,
        };
        await using (var store = new S3ObjectStore(options, name => env.GetValueOrDefault(name)))
        {
            await store.PutAsync("env", "from env"u8.ToArray());
            Assert.Equal("from env"u8.ToArray(), await store.GetAsync("env"));
        }

        env["AWS_SECRET_ACCESS_KEY"] = WrongSecret;
        await using (var store = new S3ObjectStore(options, name => env.GetValueOrDefault(name)))
        {
            var e = await Assert.ThrowsAsync<ObjectStoreException>(() => store.GetAsync("env"));
            Assert.Equal(StoreFailure.Unauthorized, e.Failure);
            AssertOneLineWithout(e, WrongSecret, store.Description);
        }
    }

    [Fact]
    public async Task DeletesManyMoreKeysThanOneBatchHolds()
    {
        await using var store = new S3ObjectStore(swift.Options());
        var keys = Enumerable.Range(0, S3ObjectStore.DeleteBatchKeysMax + 5).Select(i => $"d/{i:D5}").ToList();
        // Only a few exist: the batches must still cover every key, missing ones included.
        var present = new[] { keys[0], keys[999], keys[1000], keys[^1] };
        foreach (var k in present)
        {
            await store.PutAsync(k, Encoding.UTF8.GetBytes(k));
        }
        await store.DeleteManyAsync(keys);
        foreach (var k in present)
        {
            Assert.Null(await store.HeadAsync(k));
        }
        Assert.Empty((await store.ListAsync("d/")).Objects);
    }

    [Fact]
    public async Task RangesOfEmptyObjectsAndEmptyRangesAreEmpty()
    {
        await using var store = new S3ObjectStore(swift.Options());
        await store.PutAsync("empty", ReadOnlyMemory<byte>.Empty);
        Assert.Empty((await store.GetAsync("empty", ByteRange.From(0)))!);
        Assert.Empty((await store.GetAsync("empty", new ByteRange(0, 10)))!);
        await store.PutAsync("ten", new byte[10]);
        Assert.Empty((await store.GetAsync("ten", new ByteRange(3, 0)))!);
        Assert.Null(await store.GetAsync("absent", new ByteRange(3, 0)));
        Assert.Equal(7, (await store.GetAsync("ten", new ByteRange(3, long.MaxValue)))!.Length);
    }

    [Fact]
    public async Task RefusesToBufferMoreThanObjectBytesMax()
    {
        await using var store = new S3ObjectStore(swift.Options() with { ObjectBytesMax = 1000 });
        await store.PutAsync("big", new byte[1001]);
        var e = await Assert.ThrowsAsync<ObjectStoreException>(() => store.GetAsync("big"));
        Assert.Equal(StoreFailure.BadRequest, e.Failure);
        Assert.Contains("ObjectBytesMax", e.Message, StringComparison.Ordinal);
        Assert.Equal(1000, (await store.GetAsync("big", new ByteRange(1, 1000)))!.Length);
    }

    [Fact]
    public async Task PutsFromASliceOfALargerArray()
    {
        await using var store = new S3ObjectStore(swift.Options());
        var buffer = Enumerable.Range(0, 100).Select(i => (byte)i).ToArray();
        await store.PutAsync("slice", buffer.AsMemory(10, 20));
        Assert.Equal(buffer[10..30], await store.GetAsync("slice"));
    }
}
