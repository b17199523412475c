// The standard grpc-js client (tests/interop/grpc-client.js) calls the C# RpcServer: proof of wire compatibility.
using System.Text.Json;
using MirrorFS.Core.Rpc;

namespace MirrorFS.Core.Tests.Rpc;

public sealed class GrpcJsInteropTests
{
    private const string Service = EchoServer.Service;

    [Fact]
    public async Task GrpcJs_UnaryStreamingDeadlineAndAuth()
    {
        var node = await GrpcJsClient.CreateAsync();
        await using var echo = await EchoServer.StartAsync(token: "interop-token");
        var proto = Path.Combine(node.RepoRoot, "tests", "Core.Tests", "Protos", "echo.proto");
        var payload = Enumerable.Range(0, 200_000).Select(i => (byte)(i * 7)).ToArray();

        var results = await node.RunAsync(echo.Address, "interop-token", proto,
        [
            new
            {
                name = "unary",
                service = Service,
                method = "Unary",
                request = new { text = "héllo ✓", payload = Convert.ToBase64String(payload) },
                metadata = new Dictionary<string, string> { ["x-request-id"] = "r-7" },
            },
            new { name = "stream", service = Service, method = "Stream", kind = "server_streaming", request = new { count = 50 } },
            new
            {
                name = "stream-fails",
                service = Service,
                method = "Stream",
                kind = "server_streaming",
                request = new { count = 10, fail_after = 3 },
            },
            new { name = "deadline", service = Service, method = "Wait", request = new { }, timeoutMs = 300 },
            new { name = "no-token", service = Service, method = "Unary", request = new { text = "x" }, noToken = true },
            new { name = "wrong-token", service = Service, method = "Unary", request = new { text = "x" }, token = "nope" },
            new
            {
                name = "status",
                service = Service,
                method = "Unary",
                request = new { fail_code = 5, fail_message = "fichier «été» introuvable 100%" },
            },
            new { name = "unknown", service = Service, method = "Unary", path = "/mirrorfs.test.Echo/Nope", request = new { } },
            new { name = "crash", service = Service, method = "Crash", request = new { } },
        ]);
        var byName = results.ToDictionary(r => r.GetProperty("name").GetString()!);

        var unary = byName["unary"];
        Assert.True(unary.GetProperty("ok").GetBoolean(), unary.ToString());
        var response = unary.GetProperty("response");
        Assert.Equal("héllo ✓", response.GetProperty("text").GetString());
        Assert.Equal(payload, Convert.FromBase64String(response.GetProperty("payload").GetString()!));
        Assert.Equal("r-7", response.GetProperty("metadata").GetProperty("x-request-id").GetString());
        Assert.StartsWith("ipv", response.GetProperty("peer").GetString(), StringComparison.Ordinal);
        Assert.True(response.GetProperty("had_deadline").GetBoolean(), "grpc-js sends grpc-timeout for a deadline");
        Assert.Equal("echo", unary.GetProperty("trailers").GetProperty("x-served-by").GetString());

        var stream = byName["stream"];
        Assert.True(stream.GetProperty("ok").GetBoolean(), stream.ToString());
        Assert.Equal(Enumerable.Range(0, 50),
            stream.GetProperty("responses").EnumerateArray().Select(r => r.GetProperty("index").GetInt32()));

        var failing = byName["stream-fails"];
        AssertStatus(failing, StatusCode.Aborted);
        Assert.Equal("stopped after 3 messages", failing.GetProperty("details").GetString());
        Assert.Equal(3, failing.GetProperty("responses").GetArrayLength());

        AssertStatus(byName["deadline"], StatusCode.DeadlineExceeded);
        await echo.Probe.Cancelled.Task.WaitAsync(TimeSpan.FromSeconds(10));

        AssertStatus(byName["no-token"], StatusCode.Unauthenticated);
        AssertStatus(byName["wrong-token"], StatusCode.Unauthenticated);

        var status = byName["status"];
        AssertStatus(status, StatusCode.NotFound);
        Assert.Equal("fichier «été» introuvable 100%", status.GetProperty("details").GetString());
        Assert.Equal("detail-5", status.GetProperty("trailers").GetProperty("x-fail-detail").GetString());

        AssertStatus(byName["unknown"], StatusCode.Unimplemented);

        var crash = byName["crash"];
        AssertStatus(crash, StatusCode.Internal);
        Assert.DoesNotContain(EchoServer.Secret, crash.GetProperty("details").GetString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task GrpcJs_CancelledStream_CancelsTheHandler()
    {
        var node = await GrpcJsClient.CreateAsync();
        await using var echo = await EchoServer.StartAsync(token: null);
        var proto = Path.Combine(node.RepoRoot, "tests", "Core.Tests", "Protos", "echo.proto");

        var results = await node.RunAsync(echo.Address, token: null, proto,
        [
            new
            {
                name = "cancel",
                service = Service,
                method = "Stream",
                kind = "server_streaming",
                request = new { count = 1_000_000, delay_ms = 5 },
                cancelAfterMessages = 3,
            },
        ]);

        AssertStatus(results[0], StatusCode.Cancelled);
        Assert.Equal("/mirrorfs.test.Echo/Stream", await echo.Probe.Cancelled.Task.WaitAsync(TimeSpan.FromSeconds(10)));
        RpcCallTests.AssertNoErrorLogged(echo);
    }

    private static void AssertStatus(JsonElement result, StatusCode expected)
    {
        Assert.False(result.GetProperty("ok").GetBoolean(), result.ToString());
        Assert.Equal((int)expected, result.GetProperty("code").GetInt32());
    }
}
