// How OssObjectStore reports what goes wrong: bad credentials, missing buckets, dead endpoints, 5xx, drops, stalls.
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using MirrorFS.Core.Storage;
using MirrorFS.Core.Storage.Oss;
using MirrorFS.Testing.Oss;
using Xunit.Abstractions;

namespace MirrorFS.Core.Tests.Storage.Oss;

public sealed class OssFailureTests(OssServerFixture fixture, ITestOutputHelper output) : IClassFixture<OssServerFixture>
{
    private const string WrongSecret = "Wr0ngSecretValue";

    private OssObjectStore StoreWithSecret(string bucket, string secret, string signature, string accessKeyId = OssServerFixture.AccessKeyId) =>
        new(OssOptions.FromUri(new Uri(
            $"oss://{accessKeyId}:{Uri.EscapeDataString(secret)}@{bucket}?endpoint={fixture.Server.Endpoint}"
            + $"&region={OssServerFixture.Region}&signature={signature}"), _ => null));

    [Theory]
    [InlineData("v4")]
    [InlineData("v1")]
    public async Task AWrongSecretIsUnauthorizedAndNeverShown(string signature)
    {
        var bucket = fixture.NewBucket();
        await using var store = StoreWithSecret(bucket, WrongSecret, signature);

        var put = await Assert.ThrowsAsync<ObjectStoreException>(() => store.PutAsync("dir/k", "x"u8.ToArray()));
        Assert.Equal(StoreFailure.Unauthorized, put.Failure);
        Assert.False(put.IsTransient);
        Assert.Contains("SignatureDoesNotMatch", put.Message, StringComparison.Ordinal);
        Assert.Contains("put 'dir/k'", put.Message, StringComparison.Ordinal);
        Assert.Contains("request id", put.Message, StringComparison.Ordinal);
        Assert.StartsWith($"oss://{bucket} (http://127.0.0.1:", put.Message, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', put.Message);

        // HEAD errors have no body; the store still tells what went wrong.
        var head = await Assert.ThrowsAsync<ObjectStoreException>(() => store.HeadAsync("dir/k"));
        Assert.Equal(StoreFailure.Unauthorized, head.Failure);
        Assert.Contains("SignatureDoesNotMatch", head.Message, StringComparison.Ordinal);

        foreach (var e in new[] { put, head,
                     await Assert.ThrowsAsync<ObjectStoreException>(() => store.ListAsync("")),
                     await Assert.ThrowsAsync<ObjectStoreException>(() => store.DeleteManyAsync(["a", "b"])) })
        {
            output.WriteLine(e.Message);
            Assert.Equal(StoreFailure.Unauthorized, e.Failure);
            Assert.DoesNotContain(WrongSecret, e.Message, StringComparison.Ordinal);
            Assert.DoesNotContain(OssServerFixture.AccessKeySecret, e.Message, StringComparison.Ordinal);
            Assert.DoesNotContain(WrongSecret, e.ToString(), StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task AnUnknownAccessKeyIsUnauthorized()
    {
        await using var store = StoreWithSecret(fixture.NewBucket(), OssServerFixture.AccessKeySecret, "v4", accessKeyId: "NoSuchKeyId");
        var e = await Assert.ThrowsAsync<ObjectStoreException>(() => store.GetAsync("k"));
        Assert.Equal(StoreFailure.Unauthorized, e.Failure);
        Assert.Contains("InvalidAccessKeyId", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("v4")]
    [InlineData("v1")]
    public async Task AMissingBucketIsNoSuchBucketForEveryOperation(string signature)
    {
        await using var store = fixture.Store("no-such-bucket-here", signature);
        var failures = new List<ObjectStoreException>
        {
            await Assert.ThrowsAsync<ObjectStoreException>(() => store.PutAsync("k", "x"u8.ToArray())),
            await Assert.ThrowsAsync<ObjectStoreException>(() => store.GetAsync("k")),
            await Assert.ThrowsAsync<ObjectStoreException>(() => store.GetAsync("k", new ByteRange(0, 10))),
            await Assert.ThrowsAsync<ObjectStoreException>(() => store.HeadAsync("k")),
            await Assert.ThrowsAsync<ObjectStoreException>(() => store.DeleteAsync("k")),
            await Assert.ThrowsAsync<ObjectStoreException>(() => store.ListAsync("p/")),
            await Assert.ThrowsAsync<ObjectStoreException>(() => store.DeleteManyAsync(["a"])),
        };
        foreach (var e in failures)
        {
            output.WriteLine(e.Message);
            Assert.Equal(StoreFailure.NoSuchBucket, e.Failure);
            Assert.Contains("NoSuchBucket", e.Message, StringComparison.Ordinal);
            Assert.Contains("create bucket 'no-such-bucket-here'", e.Message, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task AClosedPortFailsFastAsUnreachable()
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();

        await using var store = new OssObjectStore(OssOptions.FromUri(new Uri(
            $"oss://AK:SK@bkt?endpoint=http://127.0.0.1:{port}&region=cn-hangzhou"), _ => null));
        var clock = Stopwatch.StartNew();
        var e = await Assert.ThrowsAsync<ObjectStoreException>(() => store.GetAsync("k"));
        clock.Stop();
        output.WriteLine(e.Message);
        Assert.Equal(StoreFailure.Unreachable, e.Failure);
        Assert.False(e.IsTransient);
        Assert.Contains("connection refused", e.Message, StringComparison.Ordinal);
        Assert.Contains($"127.0.0.1:{port}", e.Message, StringComparison.Ordinal);
        Assert.True(clock.ElapsedMilliseconds < 3_000, $"took {clock.ElapsedMilliseconds} ms");
    }

    [Fact]
    public async Task ServiceUnavailableIsTransientAndTheRetryDecoratorRidesItOut()
    {
        await using var server = await StartServerAsync(new OssTestServerOptions());
        await using var store = StoreOn(server, "bkt-one");

        server.FailNextRequests(1);
        var e = await Assert.ThrowsAsync<ObjectStoreException>(() => store.PutAsync("k", "v"u8.ToArray()));
        Assert.Equal(StoreFailure.Transient, e.Failure);
        Assert.Contains("HTTP 503 ServiceUnavailable", e.Message, StringComparison.Ordinal);

        server.FailNextRequests(1, 500, "InternalError");
        Assert.Equal(StoreFailure.Transient, (await Assert.ThrowsAsync<ObjectStoreException>(() => store.HeadAsync("k"))).Failure);

        await using var retrying = new RetryingObjectStore(StoreOn(server, "bkt-one"), new RetryOptions { BaseDelayMs = 1, DelayMaxMs = 10 });
        server.FailNextRequests(3);
        await retrying.PutAsync("k", "v"u8.ToArray());
        Assert.Equal(3, retrying.Retries);
        Assert.Equal("v"u8.ToArray(), await retrying.GetAsync("k"));
    }

    [Fact]
    public async Task ADroppedConnectionIsTransient()
    {
        await using var server = await StartServerAsync(new OssTestServerOptions());
        await using var store = StoreOn(server, "bkt-one");
        server.AbortNextRequests(1);
        var e = await Assert.ThrowsAsync<ObjectStoreException>(() => store.GetAsync("k"));
        output.WriteLine(e.Message);
        Assert.Equal(StoreFailure.Transient, e.Failure);
        Assert.Null(await store.GetAsync("k"));
    }

    [Fact]
    public async Task AStalledAnswerTimesOutAsTransient()
    {
        await using var server = await StartServerAsync(new OssTestServerOptions());
        await using var store = StoreOn(server, "bkt-one", "&timeout-ms=300");
        server.DelayNextRequests(1, 10_000);
        var clock = Stopwatch.StartNew();
        var e = await Assert.ThrowsAsync<ObjectStoreException>(() => store.PutAsync("k", "v"u8.ToArray()));
        output.WriteLine(e.Message);
        Assert.Equal(StoreFailure.Transient, e.Failure);
        Assert.Contains("300 ms", e.Message, StringComparison.Ordinal);
        Assert.True(clock.ElapsedMilliseconds < 5_000, $"took {clock.ElapsedMilliseconds} ms");

        // The caller's own cancellation is not a store failure.
        server.DelayNextRequests(1, 10_000);
        using var cancel = new CancellationTokenSource(100);
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => store.GetAsync("k", ct: cancel.Token));
    }

    [Theory]
    [InlineData("v4")]
    [InlineData("v1")]
    public async Task StsTokensAreSentAndChecked(string signature)
    {
        await using var server = await StartServerAsync(new OssTestServerOptions { SecurityToken = "sts-token/123+abc" });
        await using (var good = StoreOn(server, "bkt-one", $"&signature={signature}&security-token={Uri.EscapeDataString("sts-token/123+abc")}"))
        {
            await good.PutAsync("k", "v"u8.ToArray());
            Assert.Equal("v"u8.ToArray(), await good.GetAsync("k"));
            Assert.Single((await good.ListAsync("")).Objects);
        }
        await using (var wrong = StoreOn(server, "bkt-one", $"&signature={signature}&security-token=other"))
        {
            var e = await Assert.ThrowsAsync<ObjectStoreException>(() => wrong.GetAsync("k"));
            Assert.Equal(StoreFailure.Unauthorized, e.Failure);
            Assert.Contains("InvalidSecurityToken", e.Message, StringComparison.Ordinal);
            Assert.DoesNotContain("sts-token/123+abc", e.Message, StringComparison.Ordinal);
        }
        await using (var none = StoreOn(server, "bkt-one", $"&signature={signature}"))
        {
            Assert.Equal(StoreFailure.Unauthorized, (await Assert.ThrowsAsync<ObjectStoreException>(() => none.GetAsync("k"))).Failure);
        }
    }

    [Fact]
    public async Task AClockOffByAnHourIsReportedAsSuch()
    {
        var options = OssOptions.FromUri(new Uri(
            $"oss://{OssServerFixture.AccessKeyId}:{Uri.EscapeDataString(OssServerFixture.AccessKeySecret)}@{fixture.NewBucket()}"
            + $"?endpoint={fixture.Server.Endpoint}&region={OssServerFixture.Region}"), _ => null);
        await using var store = new OssObjectStore(options, null, new ShiftedTime(TimeSpan.FromHours(1)));
        var e = await Assert.ThrowsAsync<ObjectStoreException>(() => store.PutAsync("k", "v"u8.ToArray()));
        output.WriteLine(e.Message);
        Assert.Equal(StoreFailure.Unauthorized, e.Failure);
        Assert.Contains("RequestTimeTooSkewed", e.Message, StringComparison.Ordinal);
        Assert.Contains("clock", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task VirtualHostedStyleReachesTheBucketThroughItsHostName()
    {
        var bucket = fixture.NewBucket();
        var options = OssOptions.FromUri(new Uri(
            $"oss://{OssServerFixture.AccessKeyId}:{Uri.EscapeDataString(OssServerFixture.AccessKeySecret)}@{bucket}"
            + $"?endpoint={fixture.Server.Endpoint}&region={OssServerFixture.Region}&path-style=false"), _ => null);
        Assert.False(options.UsesPathStyle);
        // bucket.127.0.0.1 does not resolve: connect to the server's port whatever the host name says.
        var port = fixture.Server.Port;
        var handler = new SocketsHttpHandler
        {
            ConnectCallback = async (context, ct) =>
            {
                var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
                await socket.ConnectAsync(IPAddress.Loopback, port, ct);
                return new NetworkStream(socket, ownsSocket: true);
            },
        };
        await using var store = new OssObjectStore(options, handler, null);
        await store.PutAsync("vh/a b", "hello"u8.ToArray());
        Assert.Equal("hello"u8.ToArray(), await store.GetAsync("vh/a b"));
        Assert.Equal(["vh/a b"], (await store.ListAsync("vh/")).Objects.Select(o => o.Key));

        await using var pathStyle = fixture.Store(bucket);
        Assert.Equal("hello"u8.ToArray(), await pathStyle.GetAsync("vh/a b"));
    }

    private static async Task<OssTestServer> StartServerAsync(OssTestServerOptions options)
    {
        options.AccessKeyId = OssServerFixture.AccessKeyId;
        options.AccessKeySecret = OssServerFixture.AccessKeySecret;
        options.Buckets.Add("bkt-one");
        var server = new OssTestServer(options);
        await server.StartAsync();
        return server;
    }

    private static OssObjectStore StoreOn(OssTestServer server, string bucket, string extra = "") =>
        new(OssOptions.FromUri(new Uri(
            $"oss://{OssServerFixture.AccessKeyId}:{Uri.EscapeDataString(OssServerFixture.AccessKeySecret)}@{bucket}"
            + $"?endpoint={server.Endpoint}&region={OssServerFixture.Region}{extra}"), _ => null));

    private sealed class ShiftedTime(TimeSpan shift) : TimeProvider
    {
        public override DateTimeOffset GetUtcNow() => System.GetUtcNow() + shift;
    }
}
