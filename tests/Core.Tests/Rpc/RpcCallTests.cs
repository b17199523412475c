// RpcChannel against a real RpcServer on loopback: every outcome a caller can meet.
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Google.Protobuf;
using MirrorFS.Core.Rpc;
using MirrorFS.Core.Tests.Protos;

namespace MirrorFS.Core.Tests.Rpc;

public sealed class RpcCallTests
{
    private const string Service = EchoServer.Service;
    private static readonly TimeSpan WaitMax = TimeSpan.FromSeconds(10);

    [Fact]
    public async Task Unary_RoundTripsMessageMetadataAndPeer()
    {
        await using var echo = await EchoServer.StartAsync();
        using var channel = echo.CreateChannel();
        var payload = ByteString.CopyFrom(Enumerable.Range(0, 300).Select(i => (byte)i).ToArray());

        var reply = await channel.UnaryAsync(Service, "Unary", new EchoRequest { Text = "héllo", Payload = payload },
            EchoReply.Parser, new CallOptions { Metadata = new RpcMetadata().Add("x-request-id", "r-42") });

        Assert.Equal("héllo", reply.Text);
        Assert.Equal(payload, reply.Payload);
        Assert.StartsWith("ipv4:127.0.0.1:", reply.Peer, StringComparison.Ordinal);
        Assert.Equal("r-42", reply.Metadata["x-request-id"]);
        Assert.False(reply.Metadata.ContainsKey("authorization"), "the bearer token must not reach handlers");

        // The channel's default unary timeout travels as grpc-timeout.
        Assert.True(reply.HadDeadline);
    }

    [Fact]
    public async Task Unary_SequentialCallsReuseTheChannel()
    {
        await using var echo = await EchoServer.StartAsync();
        using var channel = echo.CreateChannel();
        for (var i = 0; i < 200; i++)
        {
            var reply = await channel.UnaryAsync(Service, "Unary", new EchoRequest { Text = $"n{i}" }, EchoReply.Parser);
            Assert.Equal($"n{i}", reply.Text);
        }

        Assert.Equal(200, echo.Probe.Calls.Value);

        // All of them went over one direct HTTP/2 connection, none through HttpClient.
        Assert.Equal(200, channel.DirectUnaryCalls);
        Assert.Equal(0, channel.HttpClientUnaryCalls);
        Assert.Equal(1, channel.DirectConnectionsOpened);
    }

    [Fact]
    public async Task ServerStreaming_DeliversManyMessagesInOrder()
    {
        await using var echo = await EchoServer.StartAsync();
        using var channel = echo.CreateChannel();

        var indexes = new List<int>();
        await foreach (var reply in channel.ServerStreamingAsync(Service, "Stream",
            new StreamRequest { Count = 5000, PayloadBytes = 100 }, EchoReply.Parser))
        {
            Assert.Equal(100, reply.Payload.Length);
            indexes.Add(reply.Index);
        }

        Assert.Equal(Enumerable.Range(0, 5000), indexes);
    }

    [Fact]
    public async Task ServerStreaming_ZeroMessages_EndsCleanly()
    {
        await using var echo = await EchoServer.StartAsync();
        using var channel = echo.CreateChannel();

        var count = 0;
        await foreach (var unused in channel.ServerStreamingAsync(Service, "Stream", new StreamRequest(), EchoReply.Parser))
        {
            count++;
        }

        Assert.Equal(0, count);
        Assert.Equal(1, echo.Probe.Calls.Value);
    }

    [Fact]
    public async Task ServerStreaming_EarlyBreak_CancelsTheHandler()
    {
        await using var echo = await EchoServer.StartAsync();
        using var channel = echo.CreateChannel();

        var received = 0;
        await foreach (var reply in channel.ServerStreamingAsync(Service, "Stream",
            new StreamRequest { Count = 1_000_000, DelayMs = 5 }, EchoReply.Parser))
        {
            if (++received == 3)
            {
                break;
            }
        }

        Assert.Equal("/mirrorfs.test.Echo/Stream", await echo.Probe.Cancelled.Task.WaitAsync(WaitMax));
        Assert.True(echo.Probe.StreamMessagesSent < 1000, $"handler kept sending: {echo.Probe.StreamMessagesSent}");
        AssertNoErrorLogged(echo);
    }

    [Fact]
    public async Task ServerStreaming_FailureAfterMessages_ThrowsTheStatusAfterThem()
    {
        await using var echo = await EchoServer.StartAsync();
        using var channel = echo.CreateChannel();

        var indexes = new List<int>();
        var ex = await Assert.ThrowsAsync<RpcException>(async () =>
        {
            await foreach (var reply in channel.ServerStreamingAsync(Service, "Stream",
                new StreamRequest { Count = 10, FailAfter = 4 }, EchoReply.Parser))
            {
                indexes.Add(reply.Index);
            }
        });

        Assert.Equal([0, 1, 2, 3], indexes);
        Assert.Equal(StatusCode.Aborted, ex.Status);
        Assert.Equal("stopped after 4 messages", ex.Message);
    }

    [Fact]
    public async Task ServerStreaming_EnumeratorCancellation_CancelsCall()
    {
        await using var echo = await EchoServer.StartAsync();
        using var channel = echo.CreateChannel();
        using var cts = new CancellationTokenSource();

        var ex = await Assert.ThrowsAsync<RpcException>(async () =>
        {
            await foreach (var reply in channel.ServerStreamingAsync(Service, "Stream",
                new StreamRequest { Count = 1_000_000, DelayMs = 5 }, EchoReply.Parser).WithCancellation(cts.Token))
            {
                if (reply.Index == 2)
                {
                    await cts.CancelAsync();
                }
            }
        });

        Assert.Equal(StatusCode.Cancelled, ex.Status);
        await echo.Probe.Cancelled.Task.WaitAsync(WaitMax);
        AssertNoErrorLogged(echo);
    }

    [Fact]
    public async Task Unary_DeadlineExceeded_FailsInTimeAndCancelsTheHandler()
    {
        await using var echo = await EchoServer.StartAsync();
        using var channel = echo.CreateChannel();

        var watch = Stopwatch.StartNew();
        var ex = await Assert.ThrowsAsync<RpcException>(() =>
            channel.UnaryAsync(Service, "Wait", new EchoRequest(), EchoReply.Parser, new CallOptions { TimeoutMs = 300 }));
        watch.Stop();

        Assert.Equal(StatusCode.DeadlineExceeded, ex.Status);
        Assert.InRange(watch.ElapsedMilliseconds, 250, 5_000);
        var serverDeadline = await echo.Probe.WaitStarted.Task.WaitAsync(WaitMax);
        Assert.NotNull(serverDeadline);
        await echo.Probe.Cancelled.Task.WaitAsync(WaitMax);
    }

    [Fact]
    public async Task Unary_AbsoluteDeadline_IsUsed()
    {
        await using var echo = await EchoServer.StartAsync();
        using var channel = echo.CreateChannel();

        var ex = await Assert.ThrowsAsync<RpcException>(() => channel.UnaryAsync(Service, "Wait", new EchoRequest(),
            EchoReply.Parser, new CallOptions { Deadline = DateTime.UtcNow.AddMilliseconds(200) }));

        Assert.Equal(StatusCode.DeadlineExceeded, ex.Status);
        var serverDeadline = await echo.Probe.WaitStarted.Task.WaitAsync(WaitMax);
        Assert.InRange(serverDeadline!.Value, DateTime.UtcNow.AddSeconds(-10), DateTime.UtcNow.AddSeconds(1));
    }

    [Fact]
    public async Task Unary_PastDeadline_FailsWithoutSending()
    {
        await using var echo = await EchoServer.StartAsync();
        using var channel = echo.CreateChannel();

        var ex = await Assert.ThrowsAsync<RpcException>(() => channel.UnaryAsync(Service, "Unary", new EchoRequest(),
            EchoReply.Parser, new CallOptions { Deadline = DateTime.UtcNow.AddSeconds(-1) }));

        Assert.Equal(StatusCode.DeadlineExceeded, ex.Status);
        Assert.Equal(0, echo.Probe.Calls.Value);
    }

    [Fact]
    public async Task Unary_CallerCancellation_ReachesTheHandler()
    {
        await using var echo = await EchoServer.StartAsync();
        using var channel = echo.CreateChannel();
        using var cts = new CancellationTokenSource();

        var call = channel.UnaryAsync(Service, "Wait", new EchoRequest(), EchoReply.Parser,
            new CallOptions { CancellationToken = cts.Token });
        await echo.Probe.WaitStarted.Task.WaitAsync(WaitMax);
        await cts.CancelAsync();

        var ex = await Assert.ThrowsAsync<RpcException>(() => call);
        Assert.Equal(StatusCode.Cancelled, ex.Status);
        Assert.Equal("/mirrorfs.test.Echo/Wait", await echo.Probe.Cancelled.Task.WaitAsync(WaitMax));
        AssertNoErrorLogged(echo);
    }

    [Theory]
    [InlineData(StatusCode.NotFound, "fichier «été» introuvable: 100% sûr ✓ 🚀")]
    [InlineData(StatusCode.FailedPrecondition, "plain ascii with %41 and trailing space ")]
    [InlineData(StatusCode.Unknown, "line one\nline two\ttab")]
    [InlineData(StatusCode.Unauthenticated, "")]
    public async Task Status_AndMessage_RoundTrip(StatusCode status, string message)
    {
        await using var echo = await EchoServer.StartAsync();
        using var channel = echo.CreateChannel();

        var ex = await Assert.ThrowsAsync<RpcException>(() => channel.UnaryAsync(Service, "Unary",
            new EchoRequest { FailCode = (int)status, FailMessage = message }, EchoReply.Parser));

        Assert.Equal(status, ex.Status);
        Assert.Equal(message, ex.Message);
        Assert.Equal("detail-" + (int)status, ex.Trailers.Get("x-fail-detail"));
    }

    [Fact]
    public async Task AllStatusCodes_RoundTrip()
    {
        await using var echo = await EchoServer.StartAsync();
        using var channel = echo.CreateChannel();

        foreach (var status in Enum.GetValues<StatusCode>().Where(s => s != StatusCode.OK))
        {
            var ex = await Assert.ThrowsAsync<RpcException>(() => channel.UnaryAsync(Service, "Unary",
                new EchoRequest { FailCode = (int)status, FailMessage = status.ToString() }, EchoReply.Parser));
            Assert.Equal(status, ex.Status);
            Assert.Equal(status.ToString(), ex.Message);
        }
    }

    [Fact]
    public async Task RequestOverServerLimit_ResourceExhausted_HandlerNotCalled()
    {
        await using var echo = await EchoServer.StartAsync(maxMessageBytes: 64 * 1024);
        using var channel = echo.CreateChannel(maxMessageBytes: 1024 * 1024);

        var ex = await Assert.ThrowsAsync<RpcException>(() => channel.UnaryAsync(Service, "Unary",
            new EchoRequest { Payload = ByteString.CopyFrom(new byte[100 * 1024]) }, EchoReply.Parser));

        Assert.Equal(StatusCode.ResourceExhausted, ex.Status);
        Assert.Contains("exceeds the limit of 65536 bytes", ex.Message, StringComparison.Ordinal);
        Assert.Equal(0, echo.Probe.Calls.Value);

        // The connection stays usable.
        var reply = await channel.UnaryAsync(Service, "Unary", new EchoRequest { Text = "after" }, EchoReply.Parser);
        Assert.Equal("after", reply.Text);
    }

    [Fact]
    public async Task RequestOverClientLimit_ResourceExhausted_NothingSent()
    {
        await using var echo = await EchoServer.StartAsync();
        using var channel = echo.CreateChannel(maxMessageBytes: 1000);

        var ex = await Assert.ThrowsAsync<RpcException>(() => channel.UnaryAsync(Service, "Unary",
            new EchoRequest { Payload = ByteString.CopyFrom(new byte[2000]) }, EchoReply.Parser));

        Assert.Equal(StatusCode.ResourceExhausted, ex.Status);
        Assert.Equal(0, echo.Probe.Calls.Value);
    }

    [Fact]
    public async Task ResponseOverClientLimit_ResourceExhausted()
    {
        await using var echo = await EchoServer.StartAsync();
        using var channel = echo.CreateChannel(maxMessageBytes: 10_000);

        var ex = await Assert.ThrowsAsync<RpcException>(() => channel.UnaryAsync(Service, "Unary",
            new EchoRequest { ReplyBytes = 50_000 }, EchoReply.Parser));

        Assert.Equal(StatusCode.ResourceExhausted, ex.Status);
        Assert.Contains("response message", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ResponseOverServerLimit_ResourceExhausted()
    {
        await using var echo = await EchoServer.StartAsync(maxMessageBytes: 10_000);
        using var channel = echo.CreateChannel();

        var ex = await Assert.ThrowsAsync<RpcException>(() => channel.UnaryAsync(Service, "Unary",
            new EchoRequest { ReplyBytes = 50_000 }, EchoReply.Parser));

        Assert.Equal(StatusCode.ResourceExhausted, ex.Status);
    }

    [Fact]
    public async Task LargeMessages_BothWays()
    {
        await using var echo = await EchoServer.StartAsync(maxMessageBytes: 8 * 1024 * 1024);
        using var channel = echo.CreateChannel(maxMessageBytes: 8 * 1024 * 1024);
        var seed = Environment.TickCount;
        Console.WriteLine($"LargeMessages_BothWays seed {seed}");
        var bytes = new byte[4 * 1024 * 1024];
        new Random(seed).NextBytes(bytes);

        var reply = await channel.UnaryAsync(Service, "Unary",
            new EchoRequest { Payload = ByteString.CopyFrom(bytes) }, EchoReply.Parser);

        Assert.True(reply.Payload.Span.SequenceEqual(bytes));
    }

    [Fact]
    public async Task UnknownMethod_Unimplemented()
    {
        await using var echo = await EchoServer.StartAsync();
        using var channel = echo.CreateChannel();

        var ex = await Assert.ThrowsAsync<RpcException>(() =>
            channel.UnaryAsync(Service, "NoSuchMethod", new EchoRequest(), EchoReply.Parser));
        var ex2 = await Assert.ThrowsAsync<RpcException>(() =>
            channel.UnaryAsync("mirrorfs.test.Nope", "Unary", new EchoRequest(), EchoReply.Parser));

        Assert.Equal(StatusCode.Unimplemented, ex.Status);
        Assert.Contains("/mirrorfs.test.Echo/NoSuchMethod", ex.Message, StringComparison.Ordinal);
        Assert.Equal(StatusCode.Unimplemented, ex2.Status);
    }

    [Theory]
    [InlineData(null)]
    [InlineData("wrong-token")]
    [InlineData("test-token-but-longer")]
    [InlineData("test-toke")]
    public async Task MissingOrWrongToken_Unauthenticated_HandlerNotCalled(string? token)
    {
        await using var echo = await EchoServer.StartAsync(token: "test-token");
        using var channel = echo.CreateChannel(token: token, useServerToken: false);

        var ex = await Assert.ThrowsAsync<RpcException>(() =>
            channel.UnaryAsync(Service, "Unary", new EchoRequest(), EchoReply.Parser));
        var streamEx = await Assert.ThrowsAsync<RpcException>(async () =>
        {
            await foreach (var unused in channel.ServerStreamingAsync(Service, "Stream",
                new StreamRequest { Count = 1 }, EchoReply.Parser))
            {
            }
        });

        Assert.Equal(StatusCode.Unauthenticated, ex.Status);
        Assert.Equal(StatusCode.Unauthenticated, streamEx.Status);
        Assert.DoesNotContain("test-token", ex.Message, StringComparison.Ordinal);
        Assert.Equal(0, echo.Probe.Calls.Value);
    }

    [Fact]
    public async Task ServerWithoutToken_AcceptsAnyCaller()
    {
        await using var echo = await EchoServer.StartAsync(token: null);
        using var channel = echo.CreateChannel(token: "whatever");

        var reply = await channel.UnaryAsync(Service, "Unary", new EchoRequest { Text = "open" }, EchoReply.Parser);

        Assert.Equal("open", reply.Text);
    }

    [Fact]
    public async Task HandlerException_Internal_WithoutLeakingDetails()
    {
        await using var echo = await EchoServer.StartAsync();
        using var channel = echo.CreateChannel();

        var ex = await Assert.ThrowsAsync<RpcException>(() =>
            channel.UnaryAsync(Service, "Crash", new EchoRequest(), EchoReply.Parser));

        Assert.Equal(StatusCode.Internal, ex.Status);
        Assert.DoesNotContain(EchoServer.Secret, ex.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("InvalidOperationException", ex.Message, StringComparison.Ordinal);

        // The stack goes to the server log instead.
        Assert.Contains(echo.Logs.Lines, line =>
            line.StartsWith("Error", StringComparison.Ordinal) && line.Contains("InvalidOperationException", StringComparison.Ordinal));
    }

    [Fact]
    public async Task ConcurrentCalls_32_AllInFlightAtOnce()
    {
        const int Calls = 32;
        await using var echo = await EchoServer.StartAsync();
        using var channel = echo.CreateChannel();

        // Every handler waits until all 32 have arrived: this only completes if the calls really overlap.
        var arrived = 0;
        var allArrived = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        echo.Probe.OnUnary = async token =>
        {
            if (Interlocked.Increment(ref arrived) == Calls)
            {
                allArrived.TrySetResult();
            }

            await allArrived.Task.WaitAsync(token);
        };

        var calls = Enumerable.Range(0, Calls).Select(i => channel.UnaryAsync(Service, "Unary",
            new EchoRequest { Text = $"call-{i}" }, EchoReply.Parser, new CallOptions { TimeoutMs = 10_000 })).ToArray();
        var replies = await Task.WhenAll(calls).WaitAsync(TimeSpan.FromSeconds(15));

        Assert.Equal(Enumerable.Range(0, Calls).Select(i => $"call-{i}"), replies.Select(r => r.Text));
    }

    [Fact]
    public async Task ConnectionRefused_Unavailable_NamesTheAddress()
    {
        // A port that was free a moment ago: nothing listens on it.
        using var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        var port = ((IPEndPoint)probe.LocalEndpoint).Port;
        probe.Stop();
        using var channel = new RpcChannel(new RpcChannelOptions { Address = $"127.0.0.1:{port}", ConnectTimeoutMs = 2_000 });

        var ex = await Assert.ThrowsAsync<RpcException>(() =>
            channel.UnaryAsync(Service, "Unary", new EchoRequest(), EchoReply.Parser));

        Assert.Equal(StatusCode.Unavailable, ex.Status);
        Assert.StartsWith($"cannot connect to 127.0.0.1:{port}: ", ex.Message, StringComparison.Ordinal);
    }

    /// <summary>Cancellation is normal: it must not be logged as a handler failure.</summary>
    internal static void AssertNoErrorLogged(EchoServer echo) =>
        Assert.DoesNotContain(echo.Logs.Lines, line => line.StartsWith("Error", StringComparison.Ordinal));

    [Fact]
    public async Task ServerDispose_CancelsStreamingCall()
    {
        var echo = await EchoServer.StartAsync();
        using var channel = echo.CreateChannel();
        var received = 0;

        var consume = Task.Run(async () =>
        {
            await foreach (var unused in channel.ServerStreamingAsync(Service, "Stream",
                new StreamRequest { Count = 1_000_000, DelayMs = 10 }, EchoReply.Parser))
            {
                Interlocked.Increment(ref received);
            }
        });
        while (Volatile.Read(ref received) < 2)
        {
            await Task.Delay(10);
        }

        await echo.DisposeAsync().AsTask().WaitAsync(WaitMax);

        var ex = await Assert.ThrowsAsync<RpcException>(() => consume.WaitAsync(WaitMax));
        Assert.Contains(ex.Status, new[] { StatusCode.Unavailable, StatusCode.Cancelled, StatusCode.Internal });
        await echo.Probe.Cancelled.Task.WaitAsync(WaitMax);
    }
}
