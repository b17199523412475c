using System.Buffers;
using System.Buffers.Binary;
using System.Net.Sockets;
using static MirrorFS.Core.Rpc.Http2.H2Wire;

namespace MirrorFS.Core.Rpc.Http2;

/// <summary>
/// A client HTTP/2 connection (RFC 9113, cleartext with prior knowledge) that carries unary gRPC calls with as few
/// thread hops as the protocol allows: the caller writes its HEADERS and DATA frames to the socket itself, and one
/// reader thread per connection parses frames and completes each call's task in place, so the caller's code resumes
/// on the reader thread. HttpClient, by contrast, queues the write to a writer task and resumes the caller on the
/// thread pool, which costs two or three context switches per call.
/// <para>It never waits for flow-control credit or a stream slot: when a call does not fit right now,
/// <see cref="TrySend"/> returns false and the channel sends it through HttpClient instead.</para>
/// </summary>
internal sealed class H2Connection : IDisposable
{
    /// <summary>Receive windows this side grants: per stream (SETTINGS_INITIAL_WINDOW_SIZE) and for the connection.
    /// Credit is returned when half is used.</summary>
    private const int StreamReceiveWindow = 8 << 20;
    private const int ConnectionReceiveWindow = 32 << 20;

    /// <summary>A header block (with CONTINUATIONs) larger than this closes the connection.</summary>
    private const int HeaderBlockMax = 256 * 1024;

    private readonly Socket _socket;
    private readonly Lock _writeLock = new();
    private readonly Lock _stateLock = new();
    private readonly Dictionary<int, H2Call> _calls = [];
    private readonly HPackDecoder _decoder = new();
    private readonly Thread _reader;
    private byte[] _writeBuffer = new byte[16 * 1024];

    // Guarded by _stateLock.
    private int _nextStreamId = 1;
    private long _sendWindow = DefaultWindow;
    private int _peerInitialWindow = DefaultWindow;
    private int _peerMaxFrame = 16_384;
    private int _peerMaxStreams = int.MaxValue;
    private int _goAwayLastStream = int.MaxValue;
    private string? _closedReason;

    // Reader thread only.
    private long _connectionUnacked;
    private byte[]? _headerBlock;
    private int _headerBlockLength;
    private int _headerStream;
    private bool _headerEndStream;

    private H2Connection(Socket socket, string authority)
    {
        _socket = socket;
        Authority = authority;
        _reader = new Thread(ReadLoop) { IsBackground = true, Name = "rpc-h2 " + authority };
    }

    public string Authority { get; }

    /// <summary>False once the connection closed, failed or was told to go away; new calls need a new one.</summary>
    public bool IsUsable
    {
        get
        {
            lock (_stateLock)
            {
                return _closedReason is null && _goAwayLastStream == int.MaxValue;
            }
        }
    }

    /// <summary>Opens a TCP connection, sends the preface and settings, and starts the reader thread. Throws
    /// SocketException or OperationCanceledException when the server cannot be reached in time.</summary>
    public static async Task<H2Connection> ConnectAsync(string host, int port, string authority, int timeoutMs)
    {
        var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            using var timeout = new CancellationTokenSource(timeoutMs);
            await socket.ConnectAsync(host, port, timeout.Token);
            var connection = new H2Connection(socket, authority);
            connection.SendPreface();
            connection._reader.Start();
            return connection;
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Sends a unary request: a HEADERS frame holding <paramref name="headerBlock"/> and DATA frames holding
    /// <paramref name="body"/>, the last one ending the stream. Returns false without sending anything when the
    /// connection cannot take the call now (closed, going away, at its stream limit, short of flow-control credit,
    /// or the headers exceed one frame); the caller then uses another path. After true, the call's task reports
    /// the end, and a socket failure fails it.
    /// </summary>
    public bool TrySend(H2Call call, ReadOnlySpan<byte> headerBlock, ReadOnlySpan<byte> body)
    {
        lock (_writeLock)
        {
            int streamId;
            int maxFrame;
            lock (_stateLock)
            {
                if (_nextStreamId > int.MaxValue - 2)
                {
                    // Stream ids are spent: no new streams here (as after a GOAWAY), so the channel opens another
                    // connection; this one ends when the server closes it.
                    _goAwayLastStream = _nextStreamId;
                }

                if (_closedReason is not null || _goAwayLastStream != int.MaxValue
                    || _calls.Count >= _peerMaxStreams
                    || body.Length > _sendWindow || body.Length > _peerInitialWindow
                    || headerBlock.Length > _peerMaxFrame)
                {
                    return false;
                }

                streamId = _nextStreamId;
                _nextStreamId += 2;
                _sendWindow -= body.Length;
                maxFrame = _peerMaxFrame;
                call.StreamId = streamId;
                _calls.Add(streamId, call);
            }

            var dataFrames = Math.Max(1, (body.Length + maxFrame - 1) / maxFrame);
            var total = FrameHeaderBytes + headerBlock.Length + (dataFrames * FrameHeaderBytes) + body.Length;
            var buffer = Reserve(total);
            var at = WriteFrameHeader(buffer, headerBlock.Length, FrameHeaders, FlagEndHeaders, streamId);
            headerBlock.CopyTo(buffer.AsSpan(at));
            at += headerBlock.Length;
            var offset = 0;
            do
            {
                var n = Math.Min(maxFrame, body.Length - offset);
                var last = offset + n == body.Length;
                at += WriteFrameHeader(buffer.AsSpan(at), n, FrameData, last ? FlagEndStream : (byte)0, streamId);
                body.Slice(offset, n).CopyTo(buffer.AsSpan(at));
                at += n;
                offset += n;
            }
            while (offset < body.Length);

            try
            {
                SendLocked(buffer.AsSpan(0, at));
            }
            catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
            {
                // The connection is closing and fails this call with the others.
            }

            return true;
        }
    }

    /// <summary>Gives up on a call (deadline or cancellation): forgets its stream, resets it on the wire so the
    /// server's handler is cancelled, and fails the call's task with <paramref name="error"/>.</summary>
    public void Abandon(H2Call call, Exception error)
    {
        bool removed;
        lock (_stateLock)
        {
            removed = call.StreamId != 0 && _calls.Remove(call.StreamId);
        }

        if (removed)
        {
            SendRstStream(call.StreamId, ErrorCancel);
        }

        call.TryFail(error);
    }

    public void Dispose() => Close("the channel was disposed", sendGoAway: true);

    private void SendPreface()
    {
        Span<byte> frames = stackalloc byte[Preface.Length + FrameHeaderBytes + 12 + FrameHeaderBytes + 4];
        Preface.CopyTo(frames);
        var at = Preface.Length;
        at += WriteFrameHeader(frames[at..], 12, FrameSettings, 0, 0);
        BinaryPrimitives.WriteUInt16BigEndian(frames[at..], 0x2); // SETTINGS_ENABLE_PUSH
        BinaryPrimitives.WriteUInt32BigEndian(frames[(at + 2)..], 0);
        BinaryPrimitives.WriteUInt16BigEndian(frames[(at + 6)..], 0x4); // SETTINGS_INITIAL_WINDOW_SIZE
        BinaryPrimitives.WriteUInt32BigEndian(frames[(at + 8)..], StreamReceiveWindow);
        at += 12;
        at += WriteFrameHeader(frames[at..], 4, FrameWindowUpdate, 0, 0);
        BinaryPrimitives.WriteUInt32BigEndian(frames[at..], ConnectionReceiveWindow - DefaultWindow);
        at += 4;
        lock (_writeLock)
        {
            SendLocked(frames[..at]);
        }
    }

    private void ReadLoop()
    {
        var buffer = new byte[(4 * (ReceiveFrameMax + FrameHeaderBytes)) + 4096];
        var start = 0;
        var end = 0;
        string reason;
        try
        {
            while (true)
            {
                while (end - start < FrameHeaderBytes || end - start < FrameHeaderBytes + PayloadLength(buffer, start))
                {
                    if (end - start >= FrameHeaderBytes && PayloadLength(buffer, start) > ReceiveFrameMax)
                    {
                        throw new H2ProtocolException($"the server sent a frame of {PayloadLength(buffer, start)} bytes, over the {ReceiveFrameMax} allowed");
                    }

                    if (start > 0 && buffer.Length - end < ReceiveFrameMax + FrameHeaderBytes)
                    {
                        Buffer.BlockCopy(buffer, start, buffer, 0, end - start);
                        end -= start;
                        start = 0;
                    }

                    var n = _socket.Receive(buffer, end, buffer.Length - end, SocketFlags.None);
                    if (n == 0)
                    {
                        throw new H2ClosedException("the server closed the connection");
                    }

                    end += n;
                }

                var length = PayloadLength(buffer, start);
                var type = buffer[start + 3];
                var flags = buffer[start + 4];
                var streamId = (int)(BinaryPrimitives.ReadUInt32BigEndian(buffer.AsSpan(start + 5)) & 0x7FFF_FFFF);
                HandleFrame(type, flags, streamId, buffer.AsSpan(start + FrameHeaderBytes, length));
                start += FrameHeaderBytes + length;
                if (start == end)
                {
                    start = end = 0;
                }
            }
        }
        catch (H2ClosedException ex)
        {
            reason = ex.Message;
        }
        catch (H2ProtocolException ex)
        {
            reason = "protocol error: " + ex.Message;
            SendGoAwayQuietly(ErrorProtocol);
        }
        catch (HPackException ex)
        {
            reason = "header decoding failed: " + ex.Message;
            SendGoAwayQuietly(0x9); // COMPRESSION_ERROR
        }
        catch (SocketException ex)
        {
            reason = "the connection failed: " + ex.Message;
        }
        catch (ObjectDisposedException)
        {
            reason = "the connection was closed";
        }
        catch (Exception ex)
        {
            // Nothing else may escape a thread of ours: the process would end.
            reason = "the client failed: " + ex.Message;
        }

        Close(reason, sendGoAway: false);
    }

    private void HandleFrame(byte type, byte flags, int streamId, ReadOnlySpan<byte> payload)
    {
        if (_headerBlock is not null && type != FrameContinuation)
        {
            throw new H2ProtocolException("a header block was interrupted by another frame");
        }

        switch (type)
        {
            case FrameData:
                OnData(flags, streamId, payload);
                break;
            case FrameHeaders:
                OnHeaders(flags, streamId, payload);
                break;
            case FrameContinuation:
                if (_headerBlock is null || streamId != _headerStream)
                {
                    throw new H2ProtocolException("CONTINUATION without a header block in progress");
                }

                AppendHeaderBlock(payload);
                if ((flags & FlagEndHeaders) != 0)
                {
                    EndHeaderBlock();
                }

                break;
            case FrameRstStream:
                if (payload.Length != 4)
                {
                    throw new H2ProtocolException("RST_STREAM of the wrong size");
                }

                OnReset(streamId, (int)BinaryPrimitives.ReadUInt32BigEndian(payload));
                break;
            case FrameSettings:
                if ((flags & FlagAck) == 0)
                {
                    OnSettings(payload);
                }

                break;
            case FramePing:
                if (payload.Length != 8)
                {
                    throw new H2ProtocolException("PING of the wrong size");
                }

                if ((flags & FlagAck) == 0)
                {
                    Span<byte> pong = stackalloc byte[FrameHeaderBytes + 8];
                    WriteFrameHeader(pong, 8, FramePing, FlagAck, 0);
                    payload.CopyTo(pong[FrameHeaderBytes..]);
                    Send(pong);
                }

                break;
            case FrameGoAway:
                if (payload.Length < 8)
                {
                    throw new H2ProtocolException("GOAWAY too short");
                }

                OnGoAway((int)(BinaryPrimitives.ReadUInt32BigEndian(payload) & 0x7FFF_FFFF),
                    (int)BinaryPrimitives.ReadUInt32BigEndian(payload[4..]));
                break;
            case FrameWindowUpdate:
                if (payload.Length != 4)
                {
                    throw new H2ProtocolException("WINDOW_UPDATE of the wrong size");
                }

                if (streamId == 0)
                {
                    lock (_stateLock)
                    {
                        _sendWindow += BinaryPrimitives.ReadUInt32BigEndian(payload) & 0x7FFF_FFFF;
                    }
                }

                // A stream's own window matters only when its data is sent, which happens all at once at the start.
                break;
            case FramePushPromise:
                throw new H2ProtocolException("PUSH_PROMISE although push was disabled");
            default:
                break; // PRIORITY and unknown frame types are ignored (RFC 9113 §4.1, §5.5).
        }
    }

    private void OnData(byte flags, int streamId, ReadOnlySpan<byte> payload)
    {
        if (streamId == 0)
        {
            throw new H2ProtocolException("DATA on stream 0");
        }

        // Flow control counts the whole payload, padding included.
        _connectionUnacked += payload.Length;
        if (_connectionUnacked >= ConnectionReceiveWindow / 2)
        {
            SendWindowUpdate(0, (int)_connectionUnacked);
            _connectionUnacked = 0;
        }

        var data = StripPadding(flags, payload, 0);
        H2Call? call;
        lock (_stateLock)
        {
            _calls.TryGetValue(streamId, out call);
        }

        if (call is null)
        {
            return; // a stream this side reset or gave up on
        }

        if (call.Headers is null)
        {
            FailStream(call, new RpcException(StatusCode.Internal, $"{call.Path} on {Authority} sent DATA before its headers"));
            return;
        }

        if (call.Append(data) is { } error)
        {
            FailStream(call, new RpcException(StatusCode.ResourceExhausted, error));
            return;
        }

        if ((flags & FlagEndStream) != 0)
        {
            Finish(call);
            return;
        }

        call.UnackedBytes += payload.Length;
        if (call.UnackedBytes >= StreamReceiveWindow / 2)
        {
            SendWindowUpdate(streamId, call.UnackedBytes);
            call.UnackedBytes = 0;
        }
    }

    private void OnHeaders(byte flags, int streamId, ReadOnlySpan<byte> payload)
    {
        if (streamId == 0)
        {
            throw new H2ProtocolException("HEADERS on stream 0");
        }

        var skip = (flags & FlagPriority) != 0 ? 5 : 0;
        var fragment = StripPadding(flags, payload, skip);
        _headerStream = streamId;
        _headerEndStream = (flags & FlagEndStream) != 0;
        _headerBlockLength = 0;
        _headerBlock = ArrayPool<byte>.Shared.Rent(Math.Max(fragment.Length, 1024));
        AppendHeaderBlock(fragment);
        if ((flags & FlagEndHeaders) != 0)
        {
            EndHeaderBlock();
        }
    }

    private void AppendHeaderBlock(ReadOnlySpan<byte> fragment)
    {
        var need = _headerBlockLength + fragment.Length;
        if (need > HeaderBlockMax)
        {
            throw new H2ProtocolException($"a header block over {HeaderBlockMax} bytes");
        }

        if (need > _headerBlock!.Length)
        {
            var grown = ArrayPool<byte>.Shared.Rent(need);
            _headerBlock.AsSpan(0, _headerBlockLength).CopyTo(grown);
            ArrayPool<byte>.Shared.Return(_headerBlock);
            _headerBlock = grown;
        }

        fragment.CopyTo(_headerBlock.AsSpan(_headerBlockLength));
        _headerBlockLength = need;
    }

    private void EndHeaderBlock()
    {
        var block = _headerBlock!;
        _headerBlock = null;
        var fields = new List<KeyValuePair<string, string>>(8);
        try
        {
            // Every block is decoded, also for streams nobody waits for, to keep the dynamic table in step.
            _decoder.Decode(block.AsSpan(0, _headerBlockLength), fields);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(block);
        }

        H2Call? call;
        lock (_stateLock)
        {
            _calls.TryGetValue(_headerStream, out call);
        }

        if (call is null)
        {
            return;
        }

        if (call.Headers is null)
        {
            call.Headers = fields;
            call.DiscardBody = !IsGrpcResponse(fields);
        }
        else if (call.Trailers is null && _headerEndStream)
        {
            call.Trailers = fields;
        }
        else
        {
            FailStream(call, new RpcException(StatusCode.Internal, $"{call.Path} on {Authority} sent a header block after its trailers"));
            return;
        }

        if (_headerEndStream)
        {
            Finish(call);
        }
    }

    private void OnReset(int streamId, int errorCode)
    {
        H2Call? call;
        lock (_stateLock)
        {
            _calls.Remove(streamId, out call);
        }

        if (call is null)
        {
            return;
        }

        if (errorCode == ErrorRefusedStream)
        {
            call.TryComplete(H2Outcome.NotProcessed);
            return;
        }

        var code = errorCode switch
        {
            ErrorCancel => StatusCode.Cancelled,
            0xB => StatusCode.ResourceExhausted, // ENHANCE_YOUR_CALM
            0xC => StatusCode.PermissionDenied, // INADEQUATE_SECURITY
            _ => StatusCode.Internal,
        };
        call.TryFail(new RpcException(code, $"{call.Path} on {Authority} was reset by the server (HTTP/2 error 0x{errorCode:X})"));
    }

    private void OnSettings(ReadOnlySpan<byte> payload)
    {
        if (payload.Length % 6 != 0)
        {
            throw new H2ProtocolException("SETTINGS of the wrong size");
        }

        lock (_stateLock)
        {
            for (var i = 0; i < payload.Length; i += 6)
            {
                var id = BinaryPrimitives.ReadUInt16BigEndian(payload[i..]);
                var value = BinaryPrimitives.ReadUInt32BigEndian(payload[(i + 2)..]);
                switch (id)
                {
                    case 0x3: // SETTINGS_MAX_CONCURRENT_STREAMS
                        _peerMaxStreams = (int)Math.Min(value, int.MaxValue);
                        break;
                    case 0x4: // SETTINGS_INITIAL_WINDOW_SIZE
                        if (value > int.MaxValue)
                        {
                            throw new H2ProtocolException("SETTINGS_INITIAL_WINDOW_SIZE above 2^31-1");
                        }

                        _peerInitialWindow = (int)value;
                        break;
                    case 0x5: // SETTINGS_MAX_FRAME_SIZE
                        if (value is < 16_384 or > 16_777_215)
                        {
                            throw new H2ProtocolException($"SETTINGS_MAX_FRAME_SIZE of {value}");
                        }

                        _peerMaxFrame = (int)value;
                        break;
                    default:
                        break; // header table size: requests use no dynamic table; others do not concern a client
                }
            }
        }

        Span<byte> ack = stackalloc byte[FrameHeaderBytes];
        WriteFrameHeader(ack, 0, FrameSettings, FlagAck, 0);
        Send(ack);
    }

    private void OnGoAway(int lastStreamId, int errorCode)
    {
        List<H2Call> refused = [];
        lock (_stateLock)
        {
            _goAwayLastStream = Math.Min(_goAwayLastStream, lastStreamId);
            foreach (var (id, call) in _calls)
            {
                if (id > lastStreamId)
                {
                    refused.Add(call);
                }
            }

            foreach (var call in refused)
            {
                _calls.Remove(call.StreamId);
            }
        }

        // Streams above the last one the server will process never ran: they may go again elsewhere.
        foreach (var call in refused)
        {
            call.TryComplete(H2Outcome.NotProcessed);
        }

        _ = errorCode;
    }

    /// <summary>The stream ended normally: hand the call to its caller, on this thread.</summary>
    private void Finish(H2Call call)
    {
        lock (_stateLock)
        {
            _calls.Remove(call.StreamId);
        }

        call.TryComplete(H2Outcome.Completed);
    }

    /// <summary>This side cannot accept what the stream sent: reset it and fail the call.</summary>
    private void FailStream(H2Call call, Exception error)
    {
        bool removed;
        lock (_stateLock)
        {
            removed = _calls.Remove(call.StreamId);
        }

        if (removed)
        {
            SendRstStream(call.StreamId, ErrorCancel);
        }

        call.TryFail(error);
    }

    private void Close(string reason, bool sendGoAway)
    {
        List<H2Call> pending;
        lock (_stateLock)
        {
            if (_closedReason is not null)
            {
                return;
            }

            _closedReason = reason;
            pending = [.. _calls.Values];
            _calls.Clear();
        }

        if (sendGoAway)
        {
            SendGoAwayQuietly(ErrorNone);
        }

        try
        {
            _socket.Shutdown(SocketShutdown.Both);
        }
        catch (SocketException)
        {
        }
        catch (ObjectDisposedException)
        {
        }

        _socket.Dispose();
        foreach (var call in pending)
        {
            call.TryFail(new RpcException(StatusCode.Unavailable, $"{call.Path} on {Authority} failed: {reason}"));
        }
    }

    private void SendWindowUpdate(int streamId, int increment)
    {
        Span<byte> frame = stackalloc byte[FrameHeaderBytes + 4];
        WriteFrameHeader(frame, 4, FrameWindowUpdate, 0, streamId);
        BinaryPrimitives.WriteUInt32BigEndian(frame[FrameHeaderBytes..], (uint)increment);
        Send(frame);
    }

    private void SendRstStream(int streamId, int errorCode)
    {
        Span<byte> frame = stackalloc byte[FrameHeaderBytes + 4];
        WriteFrameHeader(frame, 4, FrameRstStream, 0, streamId);
        BinaryPrimitives.WriteUInt32BigEndian(frame[FrameHeaderBytes..], (uint)errorCode);
        try
        {
            Send(frame);
        }
        catch (SocketException)
        {
            // The connection is failing; the reader thread closes it and fails what is left.
        }
        catch (ObjectDisposedException)
        {
        }
    }

    private void SendGoAwayQuietly(int errorCode)
    {
        Span<byte> frame = stackalloc byte[FrameHeaderBytes + 8];
        WriteFrameHeader(frame, 8, FrameGoAway, 0, 0);
        BinaryPrimitives.WriteUInt32BigEndian(frame[FrameHeaderBytes..], 0);
        BinaryPrimitives.WriteUInt32BigEndian(frame[(FrameHeaderBytes + 4)..], (uint)errorCode);
        try
        {
            Send(frame);
        }
        catch (SocketException)
        {
        }
        catch (ObjectDisposedException)
        {
        }
    }

    private void Send(ReadOnlySpan<byte> bytes)
    {
        lock (_writeLock)
        {
            SendLocked(bytes);
        }
    }

    /// <summary>Writes all of <paramref name="bytes"/>; a failure closes the connection (failing its calls) and
    /// is rethrown.</summary>
    private void SendLocked(ReadOnlySpan<byte> bytes)
    {
        try
        {
            while (!bytes.IsEmpty)
            {
                var n = _socket.Send(bytes, SocketFlags.None);
                bytes = bytes[n..];
            }
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
            // Fail the calls from another thread: this one may hold the caller's stack.
            var reason = "sending failed: " + ex.Message;
            ThreadPool.UnsafeQueueUserWorkItem(static state => state.Connection.Close(state.Reason, sendGoAway: false),
                (Connection: this, Reason: reason), preferLocal: false);
            throw;
        }
    }

    private byte[] Reserve(int bytes)
    {
        if (_writeBuffer.Length < bytes)
        {
            _writeBuffer = new byte[Math.Max(bytes, _writeBuffer.Length * 2)];
        }
        else if (bytes <= 16 * 1024 && _writeBuffer.Length > 1 << 20)
        {
            _writeBuffer = new byte[16 * 1024]; // do not keep a large message's buffer forever
        }

        return _writeBuffer;
    }

    private static ReadOnlySpan<byte> StripPadding(byte flags, ReadOnlySpan<byte> payload, int skip) =>
        TryStripPadding(flags, payload, skip, out var content)
            ? content
            : throw new H2ProtocolException("padding longer than the frame, or a frame too short for its fields");

    private static bool IsGrpcResponse(List<KeyValuePair<string, string>> fields)
    {
        var ok = false;
        var grpc = false;
        foreach (var (name, value) in fields)
        {
            if (name == ":status")
            {
                ok = value == "200";
            }
            else if (name == "content-type")
            {
                grpc = GrpcProtocol.IsGrpcContentType(value);
            }
        }

        return ok && grpc;
    }

    private static int PayloadLength(byte[] buffer, int start) =>
        (buffer[start] << 16) | (buffer[start + 1] << 8) | buffer[start + 2];

    private sealed class H2ProtocolException(string message) : Exception(message);

    private sealed class H2ClosedException(string message) : Exception(message);
}
