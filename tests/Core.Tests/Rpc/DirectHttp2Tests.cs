// The channel's own HTTP/2 connection for unary calls: HPACK, flow control, fallback to HttpClient, reconnects.
using System.Net;
using System.Net.Sockets;
using Google.Protobuf;
using MirrorFS.Core.Rpc;
using MirrorFS.Core.Rpc.Http2;
using MirrorFS.Core.Tests.Protos;

namespace MirrorFS.Core.Tests.Rpc;

public sealed class DirectHttp2Tests
{
    private const string Service = EchoServer.Service;

    private static byte[] Hex(string hex) => Convert.FromHexString(hex.Replace(" ", string.Empty, StringComparison.Ordinal));

    [Fact]
    public void HPackDecoder_DecodesTheRfc7541RequestExamplesInOrder()
    {
        // RFC 7541 C.3: three requests on one connection, without Huffman coding; the dynamic table carries over.
        var decoder = new HPackDecoder();
        var fields = new List<KeyValuePair<string, string>>();

        decoder.Decode(Hex("8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d"), fields);
        Assert.Equal(
            [new(":method", "GET"), new(":scheme", "http"), new(":path", "/"), new(":authority", "www.example.com")],
            fields);
        Assert.Equal(57, decoder.DynamicSize);

        fields.Clear();
        decoder.Decode(Hex("8286 84be 5808 6e6f 2d63 6163 6865"), fields);
        Assert.Equal(new KeyValuePair<string, string>(":authority", "www.example.com"), fields[3]);
        Assert.Equal(new KeyValuePair<string, string>("cache-control", "no-cache"), fields[4]);
        Assert.Equal(110, decoder.DynamicSize);

        fields.Clear();
        decoder.Decode(Hex("8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65"), fields);
        Assert.Equal(
            [
                new(":method", "GET"), new(":scheme", "https"), new(":path", "/index.html"),
                new(":authority", "www.example.com"), new("custom-key", "custom-value"),
            ],
            fields);
        Assert.Equal(3, decoder.DynamicCount);
        Assert.Equal(164, decoder.DynamicSize);
    }

    [Fact]
    public void HPackDecoder_SizeUpdateEvictsAndBadInputIsRefused()
    {
        var decoder = new HPackDecoder();
        var fields = new List<KeyValuePair<string, string>>();
        decoder.Decode(Hex("400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65"), fields);
        Assert.Equal(1, decoder.DynamicCount);

        // A size update to 0 empties the table; index 62 is then out of range.
        decoder.Decode(Hex("20"), fields);
        Assert.Equal(0, decoder.DynamicCount);
        Assert.Throws<HPackException>(() => decoder.Decode(Hex("be"), fields));

        // Above the advertised table size, Huffman padding that is not all ones, a string running past the block,
        // index 0.
        Assert.Throws<HPackException>(() => new HPackDecoder().Decode(Hex("3fe2 1f"), fields));
        Assert.Throws<HPackException>(() => new HPackDecoder().Decode(Hex("0081 0001 61"), fields));
        Assert.Throws<HPackException>(() => new HPackDecoder().Decode(Hex("0005 6162"), fields));
        Assert.Throws<HPackException>(() => new HPackDecoder().Decode(Hex("80"), fields));
    }

    [Fact]
    public void HPackDecoder_HuffmanStrings_Rfc7541C4()
    {
        // RFC 7541 C.4: the C.3 requests again, with every literal Huffman-coded (as grpc-js and nghttp2 send them).
        var decoder = new HPackDecoder();
        var fields = new List<KeyValuePair<string, string>>();
        decoder.Decode(Hex("8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff"), fields);
        Assert.Equal([new(":method", "GET"), new(":scheme", "http"), new(":path", "/"), new(":authority", "www.example.com")], fields);

        fields.Clear();
        decoder.Decode(Hex("8286 84be 5886 a8eb 1064 9cbf"), fields);
        Assert.Equal(
            [new(":method", "GET"), new(":scheme", "http"), new(":path", "/"), new(":authority", "www.example.com"), new("cache-control", "no-cache")],
            fields);

        fields.Clear();
        decoder.Decode(Hex("8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf"), fields);
        Assert.Equal(
            [
                new(":method", "GET"), new(":scheme", "https"), new(":path", "/index.html"), new(":authority", "www.example.com"),
                new("custom-key", "custom-value"),
            ],
            fields);
        Assert.Equal(164, decoder.DynamicSize);

        // Every byte value survives a round trip through the encoder, including the 30-bit codes.
        var all = new string(Enumerable.Range(0, 256).Select(i => (char)i).ToArray());
        Assert.Equal(all, HPackHuffman.Decode(HPackHuffman.Encode(all)));
        Assert.Equal(Hex("f1e3 c2e5 f23a 6ba0 ab90 f4ff"), HPackHuffman.Encode("www.example.com"));

        // EOS inside the string (30 ones), and padding of a whole byte or more, are errors.
        Assert.Throws<HPackException>(() => HPackHuffman.Decode(Hex("ffff fffc")));
        Assert.Throws<HPackException>(() => HPackHuffman.Decode(Hex("f1e3 c2e5 f23a 6ba0 ab90 f4ff ff")));
    }

    [Fact]
    public void HPackWriter_LiteralsRoundTripThroughTheDecoder()
    {
        var longValue = new string('v', 300); // a length that needs a multi-byte integer
        var block = new List<byte>();
        HPackWriter.WriteIndexed(block, HPackWriter.MethodPostIndex);
        HPackWriter.WriteLiteral(block, HPackWriter.PathIndex, "/a.B/C");
        HPackWriter.WriteLiteral(block, HPackWriter.AuthorizationIndex, "Bearer x", neverIndexed: true);
        HPackWriter.WriteLiteral(block, "x-long", longValue);
        var span = new byte[400];
        var n = HPackWriter.WriteLiteral(span, "grpc-timeout", "100m");
        block.AddRange(span.AsSpan(0, n).ToArray());
        Assert.Equal(-1, HPackWriter.WriteLiteral(new byte[4], "grpc-timeout", "100m"));

        var fields = new List<KeyValuePair<string, string>>();
        new HPackDecoder().Decode(block.ToArray(), fields);

        Assert.Equal(
            [
                new(":method", "POST"), new(":path", "/a.B/C"), new("authorization", "Bearer x"), new("x-long", longValue),
                new("grpc-timeout", "100m"),
            ],
            fields);
    }

    [Fact]
    public async Task LargeReplies_ReturnFlowControlCredit()
    {
        // 12 replies of 3 MiB are 36 MiB: more than the 32 MiB connection window this side grants, so the calls
        // only finish if the reader hands credit back (WINDOW_UPDATE) as it consumes data.
        await using var echo = await EchoServer.StartAsync(maxMessageBytes: 4 << 20);
        using var channel = echo.CreateChannel(maxMessageBytes: 4 << 20);
        for (var i = 0; i < 12; i++)
        {
            var reply = await channel.UnaryAsync(Service, "Unary", new EchoRequest { Text = $"r{i}", ReplyBytes = 3 << 20 },
                EchoReply.Parser, new CallOptions { TimeoutMs = 20_000 });
            Assert.Equal(3 << 20, reply.Payload.Length);
            Assert.Equal($"r{i}", reply.Text);
        }

        Assert.Equal(12, channel.DirectUnaryCalls);
        Assert.Equal(1, channel.DirectConnectionsOpened);
    }

    [Fact]
    public async Task RequestOverTheServersWindow_GoesThroughHttpClient()
    {
        // Kestrel grants 768 KiB per stream; the direct path never waits for credit, so a 2 MiB request falls back.
        await using var echo = await EchoServer.StartAsync(maxMessageBytes: 4 << 20);
        using var channel = echo.CreateChannel(maxMessageBytes: 4 << 20);
        var bytes = new byte[2 << 20];
        new Random(7).NextBytes(bytes);

        var big = await channel.UnaryAsync(Service, "Unary", new EchoRequest { Payload = ByteString.CopyFrom(bytes) }, EchoReply.Parser);
        var small = await channel.UnaryAsync(Service, "Unary", new EchoRequest { Text = "small" }, EchoReply.Parser);

        Assert.True(big.Payload.Span.SequenceEqual(bytes));
        Assert.Equal("small", small.Text);
        Assert.Equal(1, channel.HttpClientUnaryCalls);
        Assert.Equal(1, channel.DirectUnaryCalls);
    }

    [Fact]
    public async Task ServerRestart_CallsFailUnavailableThenReconnect()
    {
        var port = FreePort();
        var echo = await EchoServer.StartAsync(port: port);
        using var channel = new RpcChannel(new RpcChannelOptions
        {
            Address = $"127.0.0.1:{port}", BearerToken = echo.Token, ConnectTimeoutMs = 2_000,
        });
        Assert.Equal("a", (await channel.UnaryAsync(Service, "Unary", new EchoRequest { Text = "a" }, EchoReply.Parser)).Text);
        await echo.DisposeAsync();

        var down = await Assert.ThrowsAsync<RpcException>(() =>
            channel.UnaryAsync(Service, "Unary", new EchoRequest { Text = "b" }, EchoReply.Parser));
        Assert.Equal(StatusCode.Unavailable, down.Status);

        await using var again = await EchoServer.StartAsync(port: port);
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (channel.DirectConnectionsOpened < 2 && DateTime.UtcNow < deadline)
        {
            // Right after a failed connect the channel uses HttpClient for a second; every call must succeed anyway.
            Assert.Equal("c", (await channel.UnaryAsync(Service, "Unary", new EchoRequest { Text = "c" }, EchoReply.Parser)).Text);
            await Task.Delay(50);
        }

        Assert.Equal(2, channel.DirectConnectionsOpened);
        var direct = channel.DirectUnaryCalls;
        Assert.Equal("d", (await channel.UnaryAsync(Service, "Unary", new EchoRequest { Text = "d" }, EchoReply.Parser)).Text);
        Assert.Equal(direct + 1, channel.DirectUnaryCalls);
    }

    [Fact]
    public async Task DirectOff_EveryUnaryCallUsesHttpClient()
    {
        await using var echo = await EchoServer.StartAsync();
        using var channel = echo.CreateChannel(direct: false);

        for (var i = 0; i < 5; i++)
        {
            Assert.Equal($"n{i}", (await channel.UnaryAsync(Service, "Unary", new EchoRequest { Text = $"n{i}" }, EchoReply.Parser)).Text);
        }

        var ex = await Assert.ThrowsAsync<RpcException>(() => channel.UnaryAsync(Service, "Unary",
            new EchoRequest { FailCode = (int)StatusCode.NotFound, FailMessage = "gone" }, EchoReply.Parser));
        Assert.Equal(StatusCode.NotFound, ex.Status);
        Assert.Equal(6, channel.HttpClientUnaryCalls);
        Assert.Equal(0, channel.DirectUnaryCalls);
        Assert.Equal(0, channel.DirectConnectionsOpened);
    }

    [Fact]
    public async Task ManyConcurrentCalls_ShareOneConnection()
    {
        await using var echo = await EchoServer.StartAsync();
        using var channel = echo.CreateChannel();
        await channel.UnaryAsync(Service, "Unary", new EchoRequest { Text = "warm" }, EchoReply.Parser);

        var replies = await Task.WhenAll(Enumerable.Range(0, 64).Select(i => Task.Run(() =>
            channel.UnaryAsync(Service, "Unary", new EchoRequest { Text = $"c{i}", DelayMs = i % 3 }, EchoReply.Parser))));

        Assert.Equal(Enumerable.Range(0, 64).Select(i => $"c{i}"), replies.Select(r => r.Text));
        Assert.Equal(1, channel.DirectConnectionsOpened);
        Assert.Equal(65, channel.DirectUnaryCalls + channel.HttpClientUnaryCalls);
        Assert.True(channel.DirectUnaryCalls >= 60, $"only {channel.DirectUnaryCalls} of 65 calls went direct");
    }

    private static int FreePort()
    {
        using var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        return ((IPEndPoint)probe.LocalEndpoint).Port;
    }
}
