// The server's bytes on the wire, checked with a plain HttpClient so that RpcChannel cannot hide a server bug.
using System.Buffers.Binary;
using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using Google.Protobuf;
using MirrorFS.Core.Rpc;
using MirrorFS.Core.Tests.Protos;

namespace MirrorFS.Core.Tests.Rpc;

public sealed class RpcWireTests
{
    private static readonly TimeSpan WaitMax = TimeSpan.FromSeconds(10);

    [Fact]
    public async Task UnaryResponse_HasGrpcHeadersMessageAndTrailers()
    {
        await using var echo = await EchoServer.StartAsync();

        using var result = await RawCall.SendAsync(echo, "/mirrorfs.test.Echo/Unary", Frame(new EchoRequest { Text = "x" }));

        Assert.Equal(HttpStatusCode.OK, result.Response.StatusCode);
        Assert.Equal(new Version(2, 0), result.Response.Version);
        Assert.Equal("application/grpc", result.ContentType);
        Assert.False(result.Response.Headers.Contains("grpc-status"), "a normal response has the status in trailers");
        var messages = Unframe(result.Body);
        Assert.Single(messages);
        Assert.Equal("x", EchoReply.Parser.ParseFrom(messages[0]).Text);
        Assert.Equal("0", result.Trailer("grpc-status"));
        Assert.Equal("echo", result.Trailer("x-served-by"));
    }

    [Fact]
    public async Task UnknownMethod_IsTrailersOnly()
    {
        await using var echo = await EchoServer.StartAsync();

        using var result = await RawCall.SendAsync(echo, "/mirrorfs.test.Echo/Missing", Frame(new EchoRequest()));

        Assert.Equal(HttpStatusCode.OK, result.Response.StatusCode);
        Assert.Equal("application/grpc", result.ContentType);
        Assert.Equal("12", result.Header("grpc-status"));
        Assert.Empty(result.Body);
        Assert.Null(result.Trailer("grpc-status"));
    }

    [Fact]
    public async Task StatusMessage_IsPercentEncodedAscii()
    {
        await using var echo = await EchoServer.StartAsync();

        using var result = await RawCall.SendAsync(echo, "/mirrorfs.test.Echo/Unary",
            Frame(new EchoRequest { FailCode = 5, FailMessage = "é 100%\n" }));

        Assert.Equal("5", result.Header("grpc-status"));
        Assert.Equal("%C3%A9 100%25%0A", result.Header("grpc-message"));
    }

    [Fact]
    public async Task ServerDeadline_WithoutClientDeadline_IsDeadlineExceeded()
    {
        await using var echo = await EchoServer.StartAsync();
        var watch = Stopwatch.StartNew();

        using var result = await RawCall.SendAsync(echo, "/mirrorfs.test.Echo/Wait", Frame(new EchoRequest()),
            ("grpc-timeout", "200m"));

        Assert.Equal("4", result.Header("grpc-status"));
        Assert.InRange(watch.ElapsedMilliseconds, 150, 5_000);
        await echo.Probe.Cancelled.Task.WaitAsync(WaitMax);
    }

    // Each unit is checked by timing: the call must end no sooner than its deadline, and long before a misread
    // unit (1000x off) would end it. Whether the handler started first depends on load, so it is not asserted.
    [Theory]
    [InlineData("1S", 1_000)]
    [InlineData("1000000u", 1_000)]
    [InlineData("99999999n", 100)]
    [InlineData("1200m", 1_200)]
    public async Task ServerDeadline_AllUnits(string timeout, int expectedMs)
    {
        await using var echo = await EchoServer.StartAsync();
        var watch = Stopwatch.StartNew();

        using var result = await RawCall.SendAsync(echo, "/mirrorfs.test.Echo/Wait", Frame(new EchoRequest()),
            ("grpc-timeout", timeout));

        Assert.Equal("4", result.Header("grpc-status"));
        Assert.InRange(watch.ElapsedMilliseconds, expectedMs - 20, (expectedMs * 10) + 5_000);
    }

    [Fact]
    public async Task MalformedTimeout_Internal()
    {
        await using var echo = await EchoServer.StartAsync();

        using var result = await RawCall.SendAsync(echo, "/mirrorfs.test.Echo/Unary", Frame(new EchoRequest()),
            ("grpc-timeout", "10x"));

        Assert.Equal("13", result.Header("grpc-status"));
        Assert.Equal(0, echo.Probe.Calls.Value);
    }

    [Fact]
    public async Task CompressedMessage_WithUnsupportedEncoding_Unimplemented()
    {
        await using var echo = await EchoServer.StartAsync();
        var body = Frame(new EchoRequest());
        body[0] = 1;

        using var result = await RawCall.SendAsync(echo, "/mirrorfs.test.Echo/Unary", body, ("grpc-encoding", "gzip"));

        Assert.Equal("12", result.Header("grpc-status"));
        Assert.Equal("identity", result.Header("grpc-accept-encoding"));
        Assert.Equal(0, echo.Probe.Calls.Value);
    }

    [Fact]
    public async Task CompressedMessage_WithoutEncoding_Internal()
    {
        await using var echo = await EchoServer.StartAsync();
        var body = Frame(new EchoRequest());
        body[0] = 1;

        using var result = await RawCall.SendAsync(echo, "/mirrorfs.test.Echo/Unary", body);

        Assert.Equal("13", result.Header("grpc-status"));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(3)]
    [InlineData(7)]
    public async Task MissingOrTruncatedRequest_Internal(int bytes)
    {
        await using var echo = await EchoServer.StartAsync();
        var body = Frame(new EchoRequest { Text = "truncated" })[..bytes];

        using var result = await RawCall.SendAsync(echo, "/mirrorfs.test.Echo/Unary", body);

        Assert.Equal("13", result.Header("grpc-status"));
        Assert.Equal(0, echo.Probe.Calls.Value);
    }

    [Fact]
    public async Task TwoRequestMessages_ForUnary_Internal()
    {
        await using var echo = await EchoServer.StartAsync();
        var one = Frame(new EchoRequest { Text = "a" });

        using var result = await RawCall.SendAsync(echo, "/mirrorfs.test.Echo/Unary", [.. one, .. one]);

        Assert.Equal("13", result.Header("grpc-status"));
        Assert.Equal(0, echo.Probe.Calls.Value);
    }

    [Fact]
    public async Task NotGrpcContentType_415()
    {
        await using var echo = await EchoServer.StartAsync();

        using var result = await RawCall.SendAsync(echo, "/mirrorfs.test.Echo/Unary", Frame(new EchoRequest()),
            contentType: "application/json");

        Assert.Equal(HttpStatusCode.UnsupportedMediaType, result.Response.StatusCode);
        Assert.Equal(0, echo.Probe.Calls.Value);
    }

    [Fact]
    public async Task BearerScheme_IsCaseInsensitive()
    {
        await using var echo = await EchoServer.StartAsync(token: "tok");

        using var result = await RawCall.SendAsync(echo, "/mirrorfs.test.Echo/Unary", Frame(new EchoRequest()),
            authorization: "bearer tok");

        Assert.Equal("0", result.Trailer("grpc-status"));
    }

    internal static byte[] Frame(IMessage message)
    {
        var payload = message.ToByteArray();
        var frame = new byte[5 + payload.Length];
        BinaryPrimitives.WriteUInt32BigEndian(frame.AsSpan(1), (uint)payload.Length);
        payload.CopyTo(frame, 5);
        return frame;
    }

    private static List<byte[]> Unframe(byte[] body)
    {
        var messages = new List<byte[]>();
        var offset = 0;
        while (offset < body.Length)
        {
            Assert.Equal(0, body[offset]);
            var length = (int)BinaryPrimitives.ReadUInt32BigEndian(body.AsSpan(offset + 1));
            messages.Add(body[(offset + 5)..(offset + 5 + length)]);
            offset += 5 + length;
        }

        return messages;
    }

    /// <summary>One request sent with a bare HttpClient over HTTP/2 prior knowledge, read to the trailers.</summary>
    internal sealed class RawCall : IDisposable
    {
        private RawCall(HttpResponseMessage response, byte[] body)
        {
            Response = response;
            Body = body;
        }

        public HttpResponseMessage Response { get; }

        public byte[] Body { get; }

        public string? ContentType => Response.Content.Headers.ContentType?.ToString();

        public static async Task<RawCall> SendAsync(
            EchoServer echo,
            string path,
            byte[] body,
            (string Name, string Value)? header = null,
            string contentType = "application/grpc",
            string? authorization = null)
        {
            using var client = new HttpClient(new SocketsHttpHandler { UseProxy = false }) { Timeout = WaitMax };
            using var request = new HttpRequestMessage(HttpMethod.Post, $"http://{echo.Address}{path}")
            {
                Version = HttpVersion.Version20,
                VersionPolicy = HttpVersionPolicy.RequestVersionExact,
                Content = new ByteArrayContent(body),
            };
            request.Content.Headers.ContentType = MediaTypeHeaderValue.Parse(contentType);
            request.Headers.TryAddWithoutValidation("te", "trailers");
            request.Headers.TryAddWithoutValidation("authorization", authorization ?? $"Bearer {echo.Token}");
            if (header is { } h)
            {
                request.Headers.TryAddWithoutValidation(h.Name, h.Value);
            }

            var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
            var bytes = await response.Content.ReadAsByteArrayAsync();
            return new RawCall(response, bytes);
        }

        public string? Header(string name) =>
            Response.Headers.TryGetValues(name, out var values) ? string.Join(",", values) : null;

        public string? Trailer(string name) =>
            Response.TrailingHeaders.TryGetValues(name, out var values) ? string.Join(",", values) : null;

        public void Dispose() => Response.Dispose();
    }
}
