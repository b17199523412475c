// How S3ObjectStore fails against endpoints that are closed, silent, resetting or erroring (local fake servers).
using System.Diagnostics;
using System.Net;
using System.Net.Http;
using System.Net.Sockets;
using System.Text;
using Amazon.S3;
using MirrorFS.Core.Storage;
using MirrorFS.Core.Storage.S3;

namespace MirrorFS.Core.Tests.Storage.S3;

public sealed class S3FaultTests
{
    private const string Secret = "fault-test-secret-93ab";

    private static S3Options Options(int port, int requestTimeoutMs = 10_000) => new()
    {
        Bucket = "bucket",
        Endpoint = new Uri($"http://127.0.0.1:{port}"),
        PathStyle = true,
        AccessKey = "AK",
        SecretKey = Secret,
        RequestTimeoutMs = requestTimeoutMs,
        ConnectTimeoutMs = 2_000,
    };

    [Fact]
    public async Task ClosedPortIsUnreachableAtOnceAndNotRetried()
    {
        var port = SwiftFixture.FreePort();
        var retrying = new RetryingObjectStore(new S3ObjectStore(Options(port)));
        await using var _ = retrying;
        var watch = Stopwatch.StartNew();
        var e = await Assert.ThrowsAsync<ObjectStoreException>(() => retrying.PutAsync("k", "x"u8.ToArray()));
        Assert.Equal(StoreFailure.Unreachable, e.Failure);
        Assert.Contains("connection refused", e.Message, StringComparison.Ordinal);
        Assert.StartsWith($"s3://bucket (http://127.0.0.1:{port}): PUT 'k' failed", e.Message, StringComparison.Ordinal);
        Assert.DoesNotContain(Secret, e.ToString(), StringComparison.Ordinal);
        Assert.Equal(0, retrying.Retries);
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(5), $"took {watch.Elapsed}");

        var head = await Assert.ThrowsAsync<ObjectStoreException>(() => retrying.HeadAsync("k"));
        Assert.Equal(StoreFailure.Unreachable, head.Failure);
    }

    [Fact]
    public async Task SilentServerTimesOutAsTransient()
    {
        await using var server = new FakeServer(async (client, ct) =>
        {
            await ReadRequestHeadAsync(client, ct);
            await Task.Delay(Timeout.Infinite, ct);
        });
        await using var store = new S3ObjectStore(Options(server.Port, requestTimeoutMs: 500));
        var watch = Stopwatch.StartNew();
        var e = await Assert.ThrowsAsync<ObjectStoreException>(() => store.GetAsync("k"));
        Assert.Equal(StoreFailure.Transient, e.Failure);
        Assert.Contains("GET 'k' failed", e.Message, StringComparison.Ordinal);
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(5), $"took {watch.Elapsed}");
    }

    [Fact]
    public async Task ConnectionResetIsTransient()
    {
        await using var server = new FakeServer(async (client, ct) =>
        {
            await ReadRequestHeadAsync(client, ct);
            client.LingerState = new LingerOption(true, 0);
            client.Close();
        });
        await using var store = new S3ObjectStore(Options(server.Port));
        var e = await Assert.ThrowsAsync<ObjectStoreException>(() => store.GetAsync("k"));
        Assert.True(e.Failure == StoreFailure.Transient, e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Theory]
    [InlineData(503, "SlowDown", StoreFailure.Transient)]
    [InlineData(500, "InternalError", StoreFailure.Transient)]
    [InlineData(502, "", StoreFailure.Transient)]
    [InlineData(403, "AccessDenied", StoreFailure.AccessDenied)]
    [InlineData(403, "InvalidAccessKeyId", StoreFailure.Unauthorized)]
    [InlineData(403, "SignatureDoesNotMatch", StoreFailure.Unauthorized)]
    [InlineData(404, "NoSuchBucket", StoreFailure.NoSuchBucket)]
    [InlineData(400, "InvalidArgument", StoreFailure.BadRequest)]
    public async Task MapsErrorAnswers(int status, string code, StoreFailure expected)
    {
        var body = code.Length == 0 ? "" : $"<?xml version=\"1.0\"?><Error><Code>{code}</Code><Message>line one\nline two</Message></Error>";
        await using var server = new FakeServer(async (client, ct) =>
        {
            await ReadRequestHeadAsync(client, ct);
            var bytes = Encoding.UTF8.GetBytes(body);
            var head = $"HTTP/1.1 {status} Whatever\r\nContent-Type: application/xml\r\nContent-Length: {bytes.Length}\r\nConnection: close\r\n\r\n";
            var stream = client.GetStream();
            await stream.WriteAsync(Encoding.ASCII.GetBytes(head), ct);
            await stream.WriteAsync(bytes, ct);
        });
        await using var store = new S3ObjectStore(Options(server.Port));
        var e = await Assert.ThrowsAsync<ObjectStoreException>(() => store.GetAsync("some/key"));
        Assert.True(e.Failure == expected, $"expected {expected}: {e.Message}");
        Assert.Contains("GET 'some/key' failed", e.Message, StringComparison.Ordinal);
        Assert.Contains($"HTTP {status}", e.Message, StringComparison.Ordinal);
        if (code.Length > 0)
        {
            Assert.Contains(code, e.Message, StringComparison.Ordinal);
        }
        Assert.DoesNotContain('\n', e.Message);
        Assert.DoesNotContain(Secret, e.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public void MapsNameResolutionFailureToUnreachable()
    {
        // Resolving a made-up name would leave loopback, so the mapping is checked on the exception itself.
        var dns = new HttpRequestException(HttpRequestError.NameResolutionError, "Name or service not known",
            new SocketException((int)SocketError.HostNotFound));
        var e = S3Errors.Map("s3://b (http://nowhere:1)", "GET", "k", new AmazonS3Exception("wrapped", dns));
        Assert.Equal(StoreFailure.Unreachable, e.Failure);
        Assert.Contains("host name not found", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ChecksArgumentsBeforeAnyRequest()
    {
        await using var store = new S3ObjectStore(Options(SwiftFixture.FreePort()));
        Assert.Equal(StoreFailure.BadRequest, (await Assert.ThrowsAsync<ObjectStoreException>(() => store.GetAsync(""))).Failure);
        Assert.Equal(StoreFailure.BadRequest, (await Assert.ThrowsAsync<ObjectStoreException>(() => store.ListAsync("", null, 1001))).Failure);
        Assert.Equal(StoreFailure.BadRequest, (await Assert.ThrowsAsync<ObjectStoreException>(
            () => store.DeleteManyAsync(["ok", "/bad"]))).Failure);
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => store.GetAsync("k", new ByteRange(-1, 3)));
        await store.DeleteManyAsync([]);
    }

    private static async Task ReadRequestHeadAsync(TcpClient client, CancellationToken ct)
    {
        var stream = client.GetStream();
        var seen = new List<byte>();
        var buffer = new byte[4096];
        while (!EndsWithBlankLine(seen))
        {
            var n = await stream.ReadAsync(buffer, ct);
            if (n == 0)
            {
                return;
            }
            seen.AddRange(buffer.AsSpan(0, n));
        }

        static bool EndsWithBlankLine(List<byte> b) =>
            b.Count >= 4 && b[^4] == '\r' && b[^3] == '\n' && b[^2] == '\r' && b[^1] == '\n';
    }

    /// <summary>A loopback TCP server that hands each connection to <paramref name="handle"/>.</summary>
    private sealed class FakeServer : IAsyncDisposable
    {
        private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
        private readonly CancellationTokenSource _stop = new();
        private readonly Task _loop;

        public FakeServer(Func<TcpClient, CancellationToken, Task> handle)
        {
            _listener.Start();
            Port = ((IPEndPoint)_listener.LocalEndpoint).Port;
            _loop = Task.Run(async () =>
            {
                while (!_stop.IsCancellationRequested)
                {
                    TcpClient client;
                    try
                    {
                        client = await _listener.AcceptTcpClientAsync(_stop.Token);
                    }
                    catch (OperationCanceledException)
                    {
                        return;
                    }
                    _ = Task.Run(async () =>
                    {
                        using (client)
                        {
                            try
                            {
                                await handle(client, _stop.Token);
                            }
                            catch (Exception e) when (e is OperationCanceledException or IOException or SocketException or ObjectDisposedException)
                            {
                            }
                        }
                    });
                }
            });
        }

        public int Port { get; }

        public async ValueTask DisposeAsync()
        {
            await _stop.CancelAsync();
            _listener.Stop();
            await _loop;
            _stop.Dispose();
        }
    }
}
