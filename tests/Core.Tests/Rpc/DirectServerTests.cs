// The server's own HTTP/2 connection handling (Kestrel connection middleware), driven by raw frames and by .NET's
// HttpClient, and compared with Kestrel's HTTP/2 layer.
using System.Buffers.Binary;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Sockets;
using Google.Protobuf;
using MirrorFS.Core.Rpc;
using MirrorFS.Core.Rpc.Http2;
using MirrorFS.Core.Tests.Protos;

namespace MirrorFS.Core.Tests.Rpc;

public sealed class DirectServerTests
{
    private const string Service = EchoServer.Service;
    private static readonly TimeSpan WaitMax = TimeSpan.FromSeconds(10);

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task BothServerModes_ServeUnaryAndStreamingCalls(bool directServer)
    {
        await using var echo = await EchoServer.StartAsync(directServer: directServer);
        using var channel = echo.CreateChannel();

        var reply = await channel.UnaryAsync(Service, "Unary", new EchoRequest { Text = "x" }, EchoReply.Parser,
            new CallOptions { Metadata = new RpcMetadata().Add("x-mode", "m") });
        var count = 0;
        await foreach (var message in channel.ServerStreamingAsync(Service, "Stream",
            new StreamRequest { Count = 50, PayloadBytes = 10 }, EchoReply.Parser))
        {
            Assert.Equal(count++, message.Index);
        }

        Assert.Equal("x", reply.Text);
        Assert.Equal("m", reply.Metadata["x-mode"]);
        Assert.Equal(50, count);
        Assert.Equal(directServer, echo.Server.DirectConnectionsAccepted > 0);
    }

    [Fact]
    public async Task HuffmanCodedHeaders_DynamicTable_AndPing()
    {
        // nghttp2-based clients (grpc-js) Huffman-code header strings and index repeated ones.
        await using var echo = await EchoServer.StartAsync();
        using var h2 = await RawH2.ConnectAsync(echo.Address);
        h2.Send(0x6, 0, 0, [1, 2, 3, 4, 5, 6, 7, 8]); // PING

        var first = RequestBlock(echo.Token!, extra: block =>
        {
            block.Add(0x40); // literal with incremental indexing, new name: enters the dynamic table
            HuffmanString(block, "x-trace");
            HuffmanString(block, "abc");
        });
        h2.Send(0x1, 0x4, 1, first);
        h2.Send(0x0, 0x1, 1, RpcWireTests.Frame(new EchoRequest { Text = "one" }));
        var (headers1, data1, trailers1, frames) = h2.ReadResponse(1);

        Assert.Contains(frames, f => f.Type == 0x6 && f.Flags == 0x1 && f.Payload.SequenceEqual(new byte[] { 1, 2, 3, 4, 5, 6, 7, 8 }));
        Assert.Contains(new KeyValuePair<string, string>(":status", "200"), headers1);
        Assert.Contains(new KeyValuePair<string, string>("grpc-status", "0"), trailers1);
        var reply1 = EchoReply.Parser.ParseFrom(data1.AsSpan(5));
        Assert.Equal("one", reply1.Text);
        Assert.Equal("abc", reply1.Metadata["x-trace"]);

        // Stream 3 names the same header by its dynamic-table index (62).
        var second = RequestBlock(echo.Token!, extra: block => block.Add(0xBE));
        h2.Send(0x1, 0x4, 3, second);
        h2.Send(0x0, 0x1, 3, RpcWireTests.Frame(new EchoRequest { Text = "two" }));
        var (_, data3, trailers3, _) = h2.ReadResponse(3);

        Assert.Contains(new KeyValuePair<string, string>("grpc-status", "0"), trailers3);
        var reply3 = EchoReply.Parser.ParseFrom(data3.AsSpan(5));
        Assert.Equal("two", reply3.Text);
        Assert.Equal("abc", reply3.Metadata["x-trace"]);
    }

    [Fact]
    public async Task AWrongToken_IsAnsweredAtTheHeaders_BeforeAnyBodyIsBuffered()
    {
        await using var echo = await EchoServer.StartAsync();
        using var h2 = await RawH2.ConnectAsync(echo.Address);

        // HEADERS without END_STREAM: the body would follow, but the answer comes first.
        h2.Send(0x1, 0x4, 1, RequestBlock("not-the-token"));
        var (headers, data, _, _) = h2.ReadResponse(1);

        Assert.Contains(new KeyValuePair<string, string>("grpc-status", "16"), headers);
        Assert.Empty(data);
        var reset = h2.ReadUntil(f => f.Type == 0x3 && f.StreamId == 1);
        Assert.Equal(0u, BinaryPrimitives.ReadUInt32BigEndian(reset.Payload)); // NO_ERROR: stop sending
        Assert.Equal(0, echo.Probe.Calls.Value);

        // Data the client had already sent for that stream is dropped; the connection carries on.
        h2.Send(0x0, 0x1, 1, RpcWireTests.Frame(new EchoRequest { Text = "late" }));
        h2.Send(0x1, 0x4, 3, RequestBlock(echo.Token!));
        h2.Send(0x0, 0x1, 3, RpcWireTests.Frame(new EchoRequest { Text = "ok" }));
        var (_, data3, trailers3, _) = h2.ReadResponse(3);
        Assert.Contains(new KeyValuePair<string, string>("grpc-status", "0"), trailers3);
        Assert.Equal("ok", EchoReply.Parser.ParseFrom(data3.AsSpan(5)).Text);
    }

    [Fact]
    public async Task DataOnAnIdleStream_IsAConnectionError()
    {
        await using var echo = await EchoServer.StartAsync();
        using var h2 = await RawH2.ConnectAsync(echo.Address);

        h2.Send(0x0, 0x1, 5, [0, 0, 0, 0, 0]);

        var frames = h2.ReadUntilClosed();
        var goAway = Assert.Single(frames, f => f.Type == 0x7);
        Assert.Equal(1u, BinaryPrimitives.ReadUInt32BigEndian(goAway.Payload.AsSpan(4))); // PROTOCOL_ERROR

        // The server itself carries on.
        using var channel = echo.CreateChannel();
        Assert.Equal("ok", (await channel.UnaryAsync(Service, "Unary", new EchoRequest { Text = "ok" }, EchoReply.Parser)).Text);
    }

    [Fact]
    public async Task Http11Request_IsClosedWithoutHarm()
    {
        await using var echo = await EchoServer.StartAsync();
        var (host, port) = Split(echo.Address);
        using (var socket = new Socket(SocketType.Stream, ProtocolType.Tcp))
        {
            await socket.ConnectAsync(host, port);
            await socket.SendAsync("POST /mirrorfs.test.Echo/Unary HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"u8.ToArray());
            var buffer = new byte[4096];
            socket.ReceiveTimeout = (int)WaitMax.TotalMilliseconds;

            // The server's SETTINGS may arrive first; then the connection closes.
            while (socket.Receive(buffer) > 0)
            {
            }
        }

        using var channel = echo.CreateChannel();
        Assert.Equal("ok", (await channel.UnaryAsync(Service, "Unary", new EchoRequest { Text = "ok" }, EchoReply.Parser)).Text);
    }

    [Fact]
    public async Task StreamsBeyondTheLimit_AreRefused_AndResetCancelsTheHandler()
    {
        await using var echo = await EchoServer.StartAsync(maxStreams: 1);
        using var h2 = await RawH2.ConnectAsync(echo.Address);

        h2.Send(0x1, 0x4, 1, RequestBlock(echo.Token!, method: "Wait"));
        h2.Send(0x0, 0x1, 1, RpcWireTests.Frame(new EchoRequest()));
        await echo.Probe.WaitStarted.Task.WaitAsync(WaitMax);

        h2.Send(0x1, 0x4, 3, RequestBlock(echo.Token!));
        h2.Send(0x0, 0x1, 3, RpcWireTests.Frame(new EchoRequest()));
        var refused = h2.ReadUntil(f => f.Type == 0x3 && f.StreamId == 3);
        Assert.Equal(7u, BinaryPrimitives.ReadUInt32BigEndian(refused.Payload)); // REFUSED_STREAM

        h2.Send(0x3, 0, 1, [0, 0, 0, 8]); // RST_STREAM CANCEL
        Assert.Equal("/mirrorfs.test.Echo/Wait", await echo.Probe.Cancelled.Task.WaitAsync(WaitMax));
    }

    [Fact]
    public async Task StreamingResponse_LargerThanTheClientsWindow_WaitsForCredit()
    {
        // HttpClient starts each stream with a 64 KiB window; 40 messages of 100 KB need many WINDOW_UPDATEs.
        await using var echo = await EchoServer.StartAsync();
        using var client = new HttpClient(new SocketsHttpHandler { UseProxy = false, InitialHttp2StreamWindowSize = 65_535 })
        {
            Timeout = WaitMax,
        };
        using var request = new HttpRequestMessage(HttpMethod.Post, $"http://{echo.Address}/{Service}/Stream")
        {
            Version = HttpVersion.Version20,
            VersionPolicy = HttpVersionPolicy.RequestVersionExact,
            Content = new ByteArrayContent(RpcWireTests.Frame(new StreamRequest { Count = 40, PayloadBytes = 100_000 })),
        };
        request.Content.Headers.ContentType = MediaTypeHeaderValue.Parse("application/grpc");
        request.Headers.TryAddWithoutValidation("te", "trailers");
        request.Headers.TryAddWithoutValidation("authorization", $"Bearer {echo.Token}");

        using var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        var body = await response.Content.ReadAsByteArrayAsync();

        var messages = 0;
        for (var at = 0; at < body.Length; messages++)
        {
            var length = (int)BinaryPrimitives.ReadUInt32BigEndian(body.AsSpan(at + 1));
            Assert.Equal(messages, EchoReply.Parser.ParseFrom(body.AsSpan(at + 5, length)).Index);
            at += 5 + length;
        }

        Assert.Equal(40, messages);
        Assert.Equal("0", response.TrailingHeaders.GetValues("grpc-status").Single());
    }

    [Fact]
    public async Task SlowReaderWithAHugeWindow_HoldsBackTheHandler_ThenGetsEveryMessageInOrder()
    {
        // The client grants a 2 GiB window and reads nothing for a while: flow control does not stop the server,
        // so its own bound on unsent bytes must make the streaming handler wait.
        await using var echo = await EchoServer.StartAsync();
        using var h2 = await RawH2.ConnectAsync(echo.Address, initialWindow: int.MaxValue);
        h2.Send(0x1, 0x4, 1, RequestBlock(echo.Token!, method: "Stream"));
        h2.Send(0x0, 0x1, 1, RpcWireTests.Frame(new StreamRequest { Count = 40, PayloadBytes = 1_000_000 }));

        var sent = -1;
        for (var i = 0; i < 50 && echo.Probe.StreamMessagesSent != sent; i++)
        {
            sent = echo.Probe.StreamMessagesSent;
            await Task.Delay(100);
        }

        Assert.InRange(echo.Probe.StreamMessagesSent, 1, 39); // 40 MB cannot all be in socket buffers

        var (_, data, trailers, _) = h2.ReadResponse(1);
        var index = 0;
        for (var at = 0; at < data.Length; index++)
        {
            var length = (int)BinaryPrimitives.ReadUInt32BigEndian(data.AsSpan(at + 1));
            var reply = EchoReply.Parser.ParseFrom(data.AsSpan(at + 5, length));
            Assert.Equal(index, reply.Index);
            Assert.Equal(1_000_000, reply.Payload.Length);
            at += 5 + length;
        }

        Assert.Equal(40, index);
        Assert.Contains(new KeyValuePair<string, string>("grpc-status", "0"), trailers);
    }

    private static byte[] RequestBlock(string token, string method = "Unary", Action<List<byte>>? extra = null)
    {
        var block = new List<byte> { 0x83, 0x86 }; // :method POST, :scheme http
        block.Add(0x04); // literal without indexing, name :path
        HuffmanString(block, $"/{Service}/{method}");
        block.Add(0x01); // :authority
        HuffmanString(block, "localhost");
        block.Add(0x0F); // content-type (index 31: 15 + 16)
        block.Add(0x10);
        HuffmanString(block, "application/grpc");
        block.Add(0x00);
        HuffmanString(block, "te");
        HuffmanString(block, "trailers");
        block.Add(0x1F); // authorization (index 23, never indexed: 15 + 8)
        block.Add(0x08);
        HuffmanString(block, "Bearer " + token);
        extra?.Invoke(block);
        return [.. block];
    }

    private static void HuffmanString(List<byte> block, string value)
    {
        var coded = HPackHuffman.Encode(value);
        HPackWriter.WriteInteger(block, 0x80, 7, coded.Length);
        block.AddRange(coded);
    }

    private static (string Host, int Port) Split(string address)
    {
        var colon = address.LastIndexOf(':');
        return (address[..colon], int.Parse(address[(colon + 1)..], System.Globalization.CultureInfo.InvariantCulture));
    }

    private sealed record Frame(byte Type, byte Flags, int StreamId, byte[] Payload);

    /// <summary>A bare HTTP/2 client: the preface and empty SETTINGS on connect, then frames by hand.</summary>
    private sealed class RawH2 : IDisposable
    {
        private readonly Socket _socket;
        private readonly HPackDecoder _decoder = new();

        private RawH2(Socket socket) => _socket = socket;

        public static async Task<RawH2> ConnectAsync(string address, int? initialWindow = null)
        {
            var (host, port) = Split(address);
            var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { ReceiveTimeout = (int)WaitMax.TotalMilliseconds };
            await socket.ConnectAsync(host, port);
            var h2 = new RawH2(socket);
            socket.Send("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"u8);
            if (initialWindow is { } window)
            {
                var settings = new byte[6];
                BinaryPrimitives.WriteUInt16BigEndian(settings, 0x4); // INITIAL_WINDOW_SIZE
                BinaryPrimitives.WriteInt32BigEndian(settings.AsSpan(2), window);
                h2.Send(0x4, 0, 0, settings);
                var increment = new byte[4];
                BinaryPrimitives.WriteInt32BigEndian(increment, window - 65_535);
                h2.Send(0x8, 0, 0, increment); // the connection's window too
            }
            else
            {
                h2.Send(0x4, 0, 0, []);
            }

            return h2;
        }

        public void Send(byte type, byte flags, int streamId, byte[] payload)
        {
            var frame = new byte[9 + payload.Length];
            frame[0] = (byte)(payload.Length >> 16);
            frame[1] = (byte)(payload.Length >> 8);
            frame[2] = (byte)payload.Length;
            frame[3] = type;
            frame[4] = flags;
            BinaryPrimitives.WriteInt32BigEndian(frame.AsSpan(5), streamId);
            payload.CopyTo(frame, 9);
            _socket.Send(frame);
        }

        public Frame? Read()
        {
            var header = new byte[9];
            if (!Fill(header))
            {
                return null;
            }

            var payload = new byte[(header[0] << 16) | (header[1] << 8) | header[2]];
            Assert.True(Fill(payload), "the connection closed inside a frame");
            return new Frame(header[3], header[4], BinaryPrimitives.ReadInt32BigEndian(header.AsSpan(5)) & 0x7FFFFFFF, payload);
        }

        public Frame ReadUntil(Func<Frame, bool> match)
        {
            while (true)
            {
                var frame = Read() ?? throw new InvalidOperationException("the connection closed");
                if (match(frame))
                {
                    return frame;
                }
            }
        }

        public List<Frame> ReadUntilClosed()
        {
            var frames = new List<Frame>();
            while (Read() is { } frame)
            {
                frames.Add(frame);
            }

            return frames;
        }

        /// <summary>Reads a stream's response to its end: header fields, DATA bytes, trailer fields, and every frame.</summary>
        public (List<KeyValuePair<string, string>> Headers, byte[] Data, List<KeyValuePair<string, string>> Trailers, List<Frame> Frames)
            ReadResponse(int streamId)
        {
            var headers = new List<KeyValuePair<string, string>>();
            var trailers = new List<KeyValuePair<string, string>>();
            var data = new List<byte>();
            var frames = new List<Frame>();
            while (true)
            {
                var frame = Read() ?? throw new InvalidOperationException("the connection closed");
                frames.Add(frame);
                if (frame.Type == 0x1)
                {
                    _decoder.Decode(frame.Payload, headers.Count == 0 ? headers : trailers);
                }
                else if (frame.Type == 0x0 && frame.StreamId == streamId)
                {
                    data.AddRange(frame.Payload);
                }

                if (frame.StreamId == streamId && (frame.Flags & 0x1) != 0 && frame.Type is 0x0 or 0x1)
                {
                    return (headers, [.. data], trailers, frames);
                }
            }
        }

        public void Dispose() => _socket.Dispose();

        private bool Fill(byte[] buffer)
        {
            var at = 0;
            while (at < buffer.Length)
            {
                int n;
                try
                {
                    n = _socket.Receive(buffer, at, buffer.Length - at, SocketFlags.None);
                }
                catch (SocketException ex) when (ex.SocketErrorCode == SocketError.ConnectionReset)
                {
                    n = 0;
                }

                if (n == 0)
                {
                    return at == 0 ? false : throw new InvalidOperationException("the connection closed inside a frame");
                }

                at += n;
            }

            return true;
        }
    }
}
