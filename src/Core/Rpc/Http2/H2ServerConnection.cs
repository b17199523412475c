using System.Buffers;
using System.Buffers.Binary;
using System.Globalization;
using System.IO.Pipelines;
using System.Net.Sockets;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.Extensions.Logging;
using static MirrorFS.Core.Rpc.Http2.H2Wire;

namespace MirrorFS.Core.Rpc.Http2;

/// <summary>
/// The server side of one cleartext HTTP/2 connection (RFC 9113, prior knowledge), run as Kestrel connection
/// middleware: Kestrel listens, accepts and reads the socket; this class parses the frames and serves gRPC calls.
/// <para>Kestrel's own HTTP/2 layer queues every request to the thread pool and every response to a writer task, two
/// thread hops per call. Here a call is dispatched once its request has wholly arrived (unary and server-streaming
/// calls carry one message), on the thread that read it, and its response frames go to the socket from the thread
/// that finishes the handler; a call answered from memory costs no hop at all.</para>
/// <para>Sends are non-blocking: what the socket does not take at once is queued and written by one asynchronous
/// sender, so a slow reader never blocks the I/O thread. DATA frames respect the peer's stream and connection
/// windows; a response that does not fit waits for WINDOW_UPDATE.</para>
/// </summary>
internal sealed class H2ServerConnection
{
    /// <summary>Receive windows granted: per stream (SETTINGS_INITIAL_WINDOW_SIZE) and for the connection. Credit
    /// is returned when half is used.</summary>
    private const int StreamReceiveWindow = 1 << 20;
    private const int ConnectionReceiveWindow = 16 << 20;

    /// <summary>Bytes the asynchronous sender may hold for a slow reader before a streaming handler's next write waits
    /// (a peer's large flow-control window alone does not bound this side's memory).</summary>
    private const int UnsentMax = 1 << 20;

    /// <summary>A request header block (with CONTINUATIONs) larger than this closes the connection.</summary>
    private const int HeaderBlockMax = 64 * 1024;

    private readonly ConnectionContext _context;
    private readonly Socket _socket;
    private readonly RpcRouter _router;
    private readonly ILogger _logger;
    private readonly int _maxStreams;
    private readonly int _bodyCap;
    private readonly Lock _lock = new();
    private readonly Dictionary<int, H2ServerStream> _streams = [];
    private readonly HPackDecoder _decoder = new();

    // Guarded by _lock.
    private byte[] _out = new byte[16 * 1024];
    private int _outLength;
    private readonly ArrayBufferWriter<byte> _backlog = new();
    private bool _sending;
    private Task? _drain;
    private long _unsent;
    private TaskCompletionSource<bool>? _roomWaiter;
    private long _sendWindow = DefaultWindow;
    private int _peerInitialWindow = DefaultWindow;
    private int _peerMaxFrame = 16_384;
    private readonly List<H2ServerStream> _blocked = [];
    private bool _closed;
    private bool _goAwaySent;
    private int _lastStreamId;

    // Reader only.
    private long _connectionUnacked;
    private byte[]? _headerBlock;
    private int _headerBlockLength;
    private int _headerStream;
    private bool _headerEndStream;

    private H2ServerConnection(ConnectionContext context, Socket socket, RpcRouter router, int maxStreams,
        ILogger logger)
    {
        _context = context;
        _socket = socket;
        _router = router;
        _maxStreams = maxStreams;
        _logger = logger;

        // Enough to keep the first bytes of an oversized or doubled message, so the router can name the error.
        _bodyCap = router.MaxMessageBytes + GrpcProtocol.FrameHeaderBytes + 1;
        Peer = H2ServerStream.FormatPeer(context.RemoteEndPoint);
    }

    public string Peer { get; }

    /// <summary>Connection middleware for a Kestrel endpoint: serves the connection when it runs on a socket;
    /// anything else goes on to Kestrel's own HTTP/2 layer.</summary>
    public static Func<ConnectionDelegate, ConnectionDelegate> Middleware(RpcRouter router, int maxStreams,
        ILogger logger, Action accepted) =>
        next => context =>
        {
            if (context.Features.Get<IConnectionSocketFeature>()?.Socket is not { } socket)
            {
                return next(context);
            }

            accepted();
            return new H2ServerConnection(context, socket, router, maxStreams, logger).RunAsync();
        };

    private async Task RunAsync()
    {
        var input = _context.Transport.Input;
        var closing = _context.Features.Get<IConnectionLifetimeNotificationFeature>()?.ConnectionClosedRequested
            ?? CancellationToken.None;
        using var closingRegistration = closing.UnsafeRegister(
            static state => ((H2ServerConnection)state!).BeginGoAway(), this);
        _socket.Blocking = false;
        var prefaceSeen = false;
        try
        {
            SendSettings();
            while (true)
            {
                var result = await input.ReadAsync();
                var buffer = result.Buffer;
                try
                {
                    if (!prefaceSeen)
                    {
                        if (buffer.Length < Preface.Length)
                        {
                            if (result.IsCompleted)
                            {
                                return;
                            }

                            continue;
                        }

                        if (!buffer.Slice(0, Preface.Length).ToArray().AsSpan().SequenceEqual(Preface))
                        {
                            // Not HTTP/2 with prior knowledge (an HTTP/1.1 request, say): nothing to answer it with.
                            _logger.LogDebug("Connection from {Peer} did not start with the HTTP/2 preface", Peer);
                            return;
                        }

                        prefaceSeen = true;
                        buffer = buffer.Slice(Preface.Length);
                    }

                    ReadFrames(ref buffer);
                }
                catch (H2ConnectionError error)
                {
                    _logger.LogDebug("HTTP/2 connection from {Peer} failed: {Reason}", Peer, error.Message);
                    SendGoAway(error.Code);
                    return;
                }
                finally
                {
                    input.AdvanceTo(buffer.Start, buffer.End);
                }

                if (result.IsCompleted || IsDone())
                {
                    return;
                }
            }
        }
        catch (Exception ex) when (ex is IOException or SocketException or ConnectionResetException
                                       or ObjectDisposedException or OperationCanceledException)
        {
            // The peer went away.
        }
        finally
        {
            // A graceful end (GOAWAY sent, no streams left) first lets the sender write what the socket had not
            // taken yet: the last answers' trailers may be among it.
            Task? drain;
            lock (_lock)
            {
                drain = _sending && !_closed ? _drain : null;
            }

            if (drain is not null)
            {
                try
                {
                    await drain.WaitAsync(TimeSpan.FromSeconds(5));
                }
                catch (TimeoutException)
                {
                    // The peer stopped reading; it loses what it did not take.
                }
            }

            CloseAll();
            await input.CompleteAsync();
        }
    }

    private bool IsDone()
    {
        lock (_lock)
        {
            return _closed || (_goAwaySent && _streams.Count == 0);
        }
    }

    private void ReadFrames(ref ReadOnlySequence<byte> buffer)
    {
        Span<byte> header = stackalloc byte[FrameHeaderBytes];
        byte[]? rented = null;
        try
        {
            while (buffer.Length >= FrameHeaderBytes)
            {
                buffer.Slice(0, FrameHeaderBytes).CopyTo(header);
                var length = (header[0] << 16) | (header[1] << 8) | header[2];
                if (length > ReceiveFrameMax)
                {
                    throw new H2ConnectionError(ErrorFrameSize, $"a frame of {length} bytes exceeds {ReceiveFrameMax}");
                }

                if (buffer.Length < FrameHeaderBytes + length)
                {
                    return;
                }

                var type = header[3];
                var flags = header[4];
                var streamId = (int)(BinaryPrimitives.ReadUInt32BigEndian(header[5..]) & 0x7FFF_FFFF);
                var payloadSequence = buffer.Slice(FrameHeaderBytes, length);
                ReadOnlySpan<byte> payload;
                if (payloadSequence.IsSingleSegment)
                {
                    payload = payloadSequence.FirstSpan;
                }
                else
                {
                    rented ??= ArrayPool<byte>.Shared.Rent(ReceiveFrameMax);
                    payloadSequence.CopyTo(rented);
                    payload = rented.AsSpan(0, length);
                }

                HandleFrame(type, flags, streamId, payload);
                buffer = buffer.Slice(FrameHeaderBytes + length);
            }
        }
        finally
        {
            if (rented is not null)
            {
                ArrayPool<byte>.Shared.Return(rented);
            }
        }
    }

    private void HandleFrame(byte type, byte flags, int streamId, ReadOnlySpan<byte> payload)
    {
        if (_headerBlock is not null && (type != FrameContinuation || streamId != _headerStream))
        {
            throw new H2ConnectionError(ErrorProtocol, "a header block was interrupted by another frame");
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
                if (_headerBlock is null)
                {
                    throw new H2ConnectionError(ErrorProtocol, "CONTINUATION without a header block");
                }

                AppendHeaderBlock(payload);
                if ((flags & FlagEndHeaders) != 0)
                {
                    EndHeaderBlock();
                }

                break;
            case FramePriority:
                break;
            case FrameRstStream:
                if (streamId == 0 || payload.Length != 4)
                {
                    throw new H2ConnectionError(ErrorProtocol, "a malformed RST_STREAM");
                }

                OnReset(streamId);
                break;
            case FrameSettings:
                if (streamId != 0)
                {
                    throw new H2ConnectionError(ErrorProtocol, "SETTINGS on a stream");
                }

                if ((flags & FlagAck) == 0)
                {
                    OnSettings(payload);
                }

                break;
            case FramePushPromise:
                throw new H2ConnectionError(ErrorProtocol, "a client sent PUSH_PROMISE");
            case FramePing:
                if (payload.Length != 8 || streamId != 0)
                {
                    throw new H2ConnectionError(ErrorFrameSize, "a malformed PING");
                }

                if ((flags & FlagAck) == 0)
                {
                    lock (_lock)
                    {
                        AppendFrame(8, FramePing, FlagAck, 0);
                        AppendBytes(payload);
                        FlushOut();
                    }
                }

                break;
            case FrameGoAway:
                // The client will open no more streams; the ones it has keep running.
                break;
            case FrameWindowUpdate:
                OnWindowUpdate(streamId, payload);
                break;
            default:
                // Unknown frame types are ignored (RFC 9113 §4.1).
                break;
        }
    }

    private void OnData(byte flags, int streamId, ReadOnlySpan<byte> payload)
    {
        if (streamId == 0)
        {
            throw new H2ConnectionError(ErrorProtocol, "DATA on stream 0");
        }

        // Flow control counts the whole frame, padding included; the connection's credit comes back at once.
        var frameLength = payload.Length;
        _connectionUnacked += frameLength;
        if (_connectionUnacked >= ConnectionReceiveWindow / 2)
        {
            SendWindowUpdate(0, (int)_connectionUnacked);
            _connectionUnacked = 0;
        }

        var data = StripPadding(flags, payload);
        H2ServerStream? stream;
        lock (_lock)
        {
            _streams.TryGetValue(streamId, out stream);
            if (stream is null && streamId > _lastStreamId)
            {
                throw new H2ConnectionError(ErrorProtocol, $"DATA on idle stream {streamId}");
            }
        }

        if (stream is null || stream.RequestEnded)
        {
            // A stream already answered or reset: the data has nowhere to go.
            if (stream is not null)
            {
                SendReset(streamId, ErrorStreamClosed);
            }

            return;
        }

        stream.AppendBody(data, _bodyCap);
        if ((flags & FlagEndStream) != 0)
        {
            stream.RequestEnded = true;
            Dispatch(stream);
            return;
        }

        stream.ReceiveUnacked += frameLength;
        if (stream.ReceiveUnacked >= StreamReceiveWindow / 2)
        {
            SendWindowUpdate(streamId, (int)stream.ReceiveUnacked);
            stream.ReceiveUnacked = 0;
        }
    }

    private void OnHeaders(byte flags, int streamId, ReadOnlySpan<byte> payload)
    {
        if (streamId == 0 || (streamId & 1) == 0)
        {
            throw new H2ConnectionError(ErrorProtocol, $"HEADERS on stream {streamId}");
        }

        var block = StripPadding(flags, payload, (flags & FlagPriority) != 0 ? 5 : 0);
        _headerBlock = ArrayPool<byte>.Shared.Rent(Math.Max(block.Length, 1024));
        _headerBlockLength = 0;
        _headerStream = streamId;
        _headerEndStream = (flags & FlagEndStream) != 0;
        AppendHeaderBlock(block);
        if ((flags & FlagEndHeaders) != 0)
        {
            EndHeaderBlock();
        }
    }

    private void AppendHeaderBlock(ReadOnlySpan<byte> fragment)
    {
        if (_headerBlockLength + fragment.Length > HeaderBlockMax)
        {
            throw new H2ConnectionError(ErrorEnhanceYourCalm, $"a header block larger than {HeaderBlockMax} bytes");
        }

        if (_headerBlock!.Length - _headerBlockLength < fragment.Length)
        {
            var grown = ArrayPool<byte>.Shared.Rent(Math.Max(_headerBlockLength + fragment.Length, _headerBlock.Length * 2));
            _headerBlock.AsSpan(0, _headerBlockLength).CopyTo(grown);
            ArrayPool<byte>.Shared.Return(_headerBlock);
            _headerBlock = grown;
        }

        fragment.CopyTo(_headerBlock.AsSpan(_headerBlockLength));
        _headerBlockLength += fragment.Length;
    }

    private void EndHeaderBlock()
    {
        var block = _headerBlock!;
        var streamId = _headerStream;
        _headerBlock = null;
        var fields = new List<KeyValuePair<string, string>>(8);
        try
        {
            _decoder.Decode(block.AsSpan(0, _headerBlockLength), fields);
        }
        catch (HPackException ex)
        {
            throw new H2ConnectionError(ErrorCompression, ex.Message);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(block);
        }

        H2ServerStream? stream;
        bool refuse;
        lock (_lock)
        {
            if (_streams.TryGetValue(streamId, out stream))
            {
                refuse = false;
            }
            else if (streamId <= _lastStreamId)
            {
                // Trailers or headers for a stream this side has already finished: nothing left to do with them.
                return;
            }
            else
            {
                _lastStreamId = streamId;
                refuse = _goAwaySent || _closed || _streams.Count >= _maxStreams;
                if (!refuse)
                {
                    stream = new H2ServerStream(this, streamId, fields, _peerInitialWindow);
                    _streams.Add(streamId, stream);
                }
            }
        }

        if (refuse)
        {
            SendReset(streamId, ErrorRefusedStream);
            return;
        }

        if (stream!.RequestEnded)
        {
            return;
        }

        // END_STREAM here: a request without a body, or the request's trailers.
        var isNew = stream.Serve is null;
        stream.RequestEnded = _headerEndStream;
        if (isNew && !Admit(stream))
        {
            return;
        }

        if (stream.RequestEnded)
        {
            Dispatch(stream);
        }
    }

    /// <summary>Lets the router check a new stream's headers; false when it has answered the stream already.</summary>
    private bool Admit(H2ServerStream stream)
    {
        try
        {
            stream.Serve = _router.AdmitDirect(stream);
        }
        catch (Exception ex)
        {
            _logger.LogError(ex, "RPC admission failed");
            Drop(stream);
        }

        return stream.Serve is not null;
    }

    /// <summary>Ends a stream this side cannot serve with RST_STREAM INTERNAL_ERROR and forgets it.</summary>
    private void Drop(H2ServerStream stream)
    {
        lock (_lock)
        {
            if (_streams.Remove(stream.Id))
            {
                stream.Reset = true;
                ReleaseLocked(stream, drained: false);
                AppendReset(stream.Id, ErrorInternal);
                FlushOut();
            }
        }

        stream.Abort();
    }

    private void Dispatch(H2ServerStream stream)
    {
        try
        {
            var served = stream.Serve!();
            if (!served.IsCompleted)
            {
                served.ContinueWith(static (task, state) => ((ILogger)state!).LogError(task.Exception,
                        "RPC dispatch failed"), _logger, CancellationToken.None,
                    TaskContinuationOptions.OnlyOnFaulted | TaskContinuationOptions.ExecuteSynchronously,
                    TaskScheduler.Default);
            }
            else if (served.IsFaulted)
            {
                _logger.LogError(served.Exception, "RPC dispatch failed");
            }
        }
        catch (Exception ex)
        {
            _logger.LogError(ex, "RPC dispatch failed");
            Drop(stream);
        }
    }

    private void OnReset(int streamId)
    {
        H2ServerStream? stream;
        lock (_lock)
        {
            if (!_streams.Remove(streamId, out stream))
            {
                if (streamId > _lastStreamId)
                {
                    throw new H2ConnectionError(ErrorProtocol, $"RST_STREAM on idle stream {streamId}");
                }

                return;
            }

            stream.Reset = true;
            ReleaseLocked(stream, drained: false);
        }

        stream.Abort();
        WakeIfDone();
    }

    private void OnSettings(ReadOnlySpan<byte> payload)
    {
        if (payload.Length % 6 != 0)
        {
            throw new H2ConnectionError(ErrorFrameSize, "a SETTINGS frame whose length is not a multiple of 6");
        }

        lock (_lock)
        {
            for (var at = 0; at < payload.Length; at += 6)
            {
                var id = BinaryPrimitives.ReadUInt16BigEndian(payload[at..]);
                var value = BinaryPrimitives.ReadUInt32BigEndian(payload[(at + 2)..]);
                switch (id)
                {
                    case 0x4: // INITIAL_WINDOW_SIZE: applies to every open stream by the difference.
                        if (value > int.MaxValue)
                        {
                            throw new H2ConnectionError(ErrorFlowControl, "SETTINGS_INITIAL_WINDOW_SIZE above 2^31-1");
                        }

                        var delta = (long)value - _peerInitialWindow;
                        _peerInitialWindow = (int)value;
                        foreach (var stream in _streams.Values)
                        {
                            stream.SendWindow += delta;
                        }

                        break;
                    case 0x5: // MAX_FRAME_SIZE
                        if (value is < 16_384 or > 16_777_215)
                        {
                            throw new H2ConnectionError(ErrorProtocol, "SETTINGS_MAX_FRAME_SIZE out of range");
                        }

                        _peerMaxFrame = (int)value;
                        break;
                }
            }

            AppendFrame(0, FrameSettings, FlagAck, 0);
            PumpLocked();
            FlushOut();
        }
    }

    private void OnWindowUpdate(int streamId, ReadOnlySpan<byte> payload)
    {
        if (payload.Length != 4)
        {
            throw new H2ConnectionError(ErrorFrameSize, "a malformed WINDOW_UPDATE");
        }

        var increment = (int)(BinaryPrimitives.ReadUInt32BigEndian(payload) & 0x7FFF_FFFF);
        lock (_lock)
        {
            if (streamId == 0)
            {
                if (increment == 0)
                {
                    throw new H2ConnectionError(ErrorProtocol, "a WINDOW_UPDATE of 0 for the connection");
                }

                _sendWindow += increment;
                if (_sendWindow > int.MaxValue)
                {
                    throw new H2ConnectionError(ErrorFlowControl, "the connection window exceeds 2^31-1");
                }
            }
            else if (_streams.TryGetValue(streamId, out var stream))
            {
                stream.SendWindow += increment;
                if (increment == 0 || stream.SendWindow > int.MaxValue)
                {
                    // A stream error: the stream ends, the connection goes on.
                    _streams.Remove(streamId);
                    stream.Reset = true;
                    ReleaseLocked(stream, drained: false);
                    AppendReset(streamId, increment == 0 ? ErrorProtocol : ErrorFlowControl);
                    FlushOut();
                    ThreadPool.UnsafeQueueUserWorkItem(static s => s.Abort(), stream, preferLocal: false);
                    return;
                }
            }

            PumpLocked();
            FlushOut();
        }
    }

    /// <summary>Sends response headers (once), <paramref name="data"/> as far as the windows allow (the rest is kept
    /// in order), and, when <paramref name="trailers"/> are given, the trailers that end the stream once all data
    /// has gone. Nothing written yet and trailers given makes a trailers-only response. The task completes true when
    /// everything handed over so far has gone to the socket, false when the stream or connection is gone.</summary>
    internal Task<bool> Send(H2ServerStream stream, ReadOnlySpan<byte> data,
        List<KeyValuePair<string, string>>? responseHeaders, List<KeyValuePair<string, string>>? trailers)
    {
        lock (_lock)
        {
            if (_closed || stream.Reset || stream.Ended)
            {
                return Task.FromResult(false);
            }

            if (!stream.HeadersSent)
            {
                stream.HeadersSent = true;
                var trailersOnly = data.IsEmpty && trailers is not null;
                AppendHeaders(stream.Id, 200, responseHeaders, trailersOnly ? trailers : null, endStream: trailersOnly);
                if (trailersOnly)
                {
                    stream.Ended = true;
                    FinishLocked(stream);
                    return Task.FromResult(true);
                }
            }

            if (stream.PendingLength > 0)
            {
                Keep(stream, data);
            }
            else
            {
                var sent = SendDataLocked(stream, data);
                if (sent < data.Length)
                {
                    Keep(stream, data[sent..]);
                }
            }

            if (trailers is not null)
            {
                var block = IsOkStatusOnly(trailers) ? OkTrailerBlock : EncodeBlock(0, null, trailers);
                if (stream.PendingLength == 0)
                {
                    AppendHeaderBlockFrames(stream.Id, block, endStream: true);
                    stream.Ended = true;
                    FinishLocked(stream);
                    return Task.FromResult(true);
                }

                stream.PendingTrailers = block;
            }

            FlushOut();
            if (stream.PendingLength == 0)
            {
                if (_unsent > UnsentMax && !_closed)
                {
                    _roomWaiter ??= new TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously);
                    return _roomWaiter.Task;
                }

                return Task.FromResult(!_closed);
            }

            stream.Drained ??= new TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously);
            return stream.Drained.Task;
        }
    }

    /// <summary>A plain HTTP answer (405, 415) that ends the stream.</summary>
    internal void SendHttpStatus(H2ServerStream stream, int status)
    {
        lock (_lock)
        {
            if (_closed || stream.Reset || stream.Ended)
            {
                return;
            }

            stream.HeadersSent = true;
            stream.Ended = true;
            AppendHeaders(stream.Id, status, null, null, endStream: true);
            FinishLocked(stream);
        }
    }

    /// <summary>Stream ended by this side: sends what is buffered and forgets the stream.</summary>
    private void FinishLocked(H2ServerStream stream)
    {
        if (!stream.RequestEnded)
        {
            // Answered before its request ended (refused at its headers): the client may stop sending (RFC 9113 §8.1).
            AppendReset(stream.Id, ErrorNone);
        }

        FlushOut();
        _streams.Remove(stream.Id);
        ReleaseLocked(stream, drained: true);
        if (_goAwaySent && _streams.Count == 0)
        {
            _context.Transport.Input.CancelPendingRead();
        }
    }

    private void ReleaseLocked(H2ServerStream stream, bool drained)
    {
        _blocked.Remove(stream);
        stream.Pending = null;
        stream.PendingLength = 0;
        stream.PendingTrailers = null;
        stream.Drained?.TrySetResult(drained);
    }

    private void WakeIfDone()
    {
        if (IsDone())
        {
            _context.Transport.Input.CancelPendingRead();
        }
    }

    /// <summary>Sends what the windows allow of each blocked stream's kept data, then its trailers.</summary>
    private void PumpLocked()
    {
        for (var i = 0; i < _blocked.Count && _sendWindow > 0;)
        {
            var stream = _blocked[i];
            var sent = SendDataLocked(stream, stream.Pending.AsSpan(stream.PendingOffset, stream.PendingLength));
            stream.PendingOffset += sent;
            stream.PendingLength -= sent;
            if (stream.PendingLength > 0)
            {
                i++;
                continue;
            }

            _blocked.RemoveAt(i);
            stream.Pending = null;
            stream.PendingOffset = 0;
            if (stream.PendingTrailers is { } trailers)
            {
                AppendHeaderBlockFrames(stream.Id, trailers, endStream: true);
                stream.Ended = true;
                _streams.Remove(stream.Id);
                stream.PendingTrailers = null;
            }

            stream.Drained?.TrySetResult(true);
            stream.Drained = null;
        }

        if (_goAwaySent && _streams.Count == 0)
        {
            _context.Transport.Input.CancelPendingRead();
        }
    }

    private void Keep(H2ServerStream stream, ReadOnlySpan<byte> data)
    {
        if (data.IsEmpty)
        {
            return;
        }

        var pending = stream.Pending;
        var have = stream.PendingLength;
        if (pending is null || pending.Length - stream.PendingOffset - have < data.Length)
        {
            var grown = new byte[Math.Max(have + data.Length, (pending?.Length ?? 0) * 2)];
            pending?.AsSpan(stream.PendingOffset, have).CopyTo(grown);
            stream.Pending = pending = grown;
            stream.PendingOffset = 0;
        }

        data.CopyTo(pending.AsSpan(stream.PendingOffset + have));
        stream.PendingLength = have + data.Length;
        if (!_blocked.Contains(stream))
        {
            _blocked.Add(stream);
        }
    }

    /// <summary>Appends DATA frames for as much of <paramref name="data"/> as the windows allow; returns the count.</summary>
    private int SendDataLocked(H2ServerStream stream, ReadOnlySpan<byte> data)
    {
        var sent = 0;
        while (sent < data.Length)
        {
            var chunk = (int)Math.Min(Math.Min(data.Length - sent, _peerMaxFrame), Math.Min(_sendWindow, stream.SendWindow));
            if (chunk <= 0)
            {
                break;
            }

            AppendFrame(chunk, FrameData, 0, stream.Id);
            AppendBytes(data.Slice(sent, chunk));
            _sendWindow -= chunk;
            stream.SendWindow -= chunk;
            sent += chunk;
        }

        return sent;
    }

    /// <summary>":status: 200" and "content-type: application/grpc", the response headers of nearly every call.</summary>
    private static readonly byte[] OkHeaderBlock = EncodeBlock(200, null, null);

    /// <summary>"grpc-status: 0" alone, the trailers of nearly every call.</summary>
    private static readonly byte[] OkTrailerBlock = EncodeBlock(0, null, [new(GrpcProtocol.StatusHeader, "0")]);

    private static byte[] EncodeBlock(int status, List<KeyValuePair<string, string>>? headers,
        List<KeyValuePair<string, string>>? trailers)
    {
        var block = new ArrayBufferWriter<byte>(64);
        EncodeFields(block, status, headers, trailers);
        return block.WrittenSpan.ToArray();
    }

    private static bool IsOkStatusOnly(List<KeyValuePair<string, string>> trailers) =>
        trailers is [{ Key: GrpcProtocol.StatusHeader, Value: "0" }];

    private void AppendHeaders(int streamId, int status, List<KeyValuePair<string, string>>? headers,
        List<KeyValuePair<string, string>>? trailers, bool endStream)
    {
        if (status == 200 && headers is null && trailers is null)
        {
            AppendHeaderBlockFrames(streamId, OkHeaderBlock, endStream);
            return;
        }

        var block = new ArrayBufferWriter<byte>(128);
        EncodeFields(block, status, headers, trailers);
        AppendHeaderBlockFrames(streamId, block.WrittenSpan, endStream);
    }

    /// <summary>HPACK-encodes a response header block: literals without indexing (no dynamic table, no Huffman),
    /// names from the static table where it has them.</summary>
    private static void EncodeFields(ArrayBufferWriter<byte> block, int status,
        List<KeyValuePair<string, string>>? headers, List<KeyValuePair<string, string>>? trailers)
    {
        if (status == 200)
        {
            block.GetSpan(1)[0] = 0x88; // static index 8 ":status: 200"
            block.Advance(1);
        }

        if (status != 0)
        {
            if (status != 200)
            {
                HPackWriter.WriteLiteral(block, HPackWriter.StatusIndex, status.ToString(CultureInfo.InvariantCulture));
            }

            HPackWriter.WriteLiteral(block, HPackWriter.ContentTypeIndex, GrpcProtocol.ContentType);
        }

        foreach (var set in (ReadOnlySpan<List<KeyValuePair<string, string>>?>)[headers, trailers])
        {
            if (set is null)
            {
                continue;
            }

            foreach (var (name, value) in set)
            {
                var span = block.GetSpan(16 + name.Length * 2 + value.Length * 2);
                var n = HPackWriter.WriteLiteral(span, name, value);
                block.Advance(n);
            }
        }
    }

    private void AppendHeaderBlockFrames(int streamId, ReadOnlySpan<byte> block, bool endStream)
    {
        var first = true;
        do
        {
            var chunk = Math.Min(block.Length, _peerMaxFrame);
            var last = chunk == block.Length;
            var flags = (byte)((last ? FlagEndHeaders : 0) | (first && endStream ? FlagEndStream : 0));
            AppendFrame(chunk, first ? FrameHeaders : FrameContinuation, flags, streamId);
            AppendBytes(block[..chunk]);
            block = block[chunk..];
            first = false;
        }
        while (!block.IsEmpty);
    }

    private void SendSettings()
    {
        Span<byte> settings = stackalloc byte[18];
        BinaryPrimitives.WriteUInt16BigEndian(settings, 0x3); // MAX_CONCURRENT_STREAMS
        BinaryPrimitives.WriteUInt32BigEndian(settings[2..], (uint)_maxStreams);
        BinaryPrimitives.WriteUInt16BigEndian(settings[6..], 0x4); // INITIAL_WINDOW_SIZE
        BinaryPrimitives.WriteUInt32BigEndian(settings[8..], StreamReceiveWindow);
        BinaryPrimitives.WriteUInt16BigEndian(settings[12..], 0x6); // MAX_HEADER_LIST_SIZE
        BinaryPrimitives.WriteUInt32BigEndian(settings[14..], HeaderBlockMax);
        Span<byte> increment = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(increment, ConnectionReceiveWindow - DefaultWindow);
        lock (_lock)
        {
            AppendFrame(settings.Length, FrameSettings, 0, 0);
            AppendBytes(settings);
            AppendFrame(4, FrameWindowUpdate, 0, 0);
            AppendBytes(increment);
            FlushOut();
        }
    }

    private void SendWindowUpdate(int streamId, int increment)
    {
        Span<byte> payload = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(payload, (uint)increment);
        lock (_lock)
        {
            AppendFrame(4, FrameWindowUpdate, 0, streamId);
            AppendBytes(payload);
            FlushOut();
        }
    }

    private void SendReset(int streamId, int errorCode)
    {
        lock (_lock)
        {
            AppendReset(streamId, errorCode);
            FlushOut();
        }
    }

    private void AppendReset(int streamId, int errorCode)
    {
        Span<byte> payload = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(payload, (uint)errorCode);
        AppendFrame(4, FrameRstStream, 0, streamId);
        AppendBytes(payload);
    }

    /// <summary>Kestrel asked the connection to close (the server is stopping): no new streams; the connection
    /// ends when the open ones have.</summary>
    private void BeginGoAway()
    {
        SendGoAway(ErrorNone);
        WakeIfDone();
    }

    private void SendGoAway(int errorCode)
    {
        Span<byte> payload = stackalloc byte[8];
        lock (_lock)
        {
            if (_goAwaySent || _closed)
            {
                return;
            }

            _goAwaySent = true;
            BinaryPrimitives.WriteUInt32BigEndian(payload, (uint)_lastStreamId);
            BinaryPrimitives.WriteUInt32BigEndian(payload[4..], (uint)errorCode);
            AppendFrame(8, FrameGoAway, 0, 0);
            AppendBytes(payload);
            FlushOut();
        }
    }

    /// <summary>The connection is over: every open call sees its token fire and later sends do nothing.</summary>
    private void CloseAll()
    {
        H2ServerStream[] open;
        lock (_lock)
        {
            _closed = true;
            ReleaseRoomWaiterLocked(false);
            open = [.. _streams.Values];
            foreach (var stream in open)
            {
                stream.Reset = true;
                ReleaseLocked(stream, drained: false);
            }

            _streams.Clear();
        }

        foreach (var stream in open)
        {
            stream.Abort();
        }
    }

    private void AppendFrame(int length, byte type, byte flags, int streamId)
    {
        Reserve(FrameHeaderBytes + length);
        _outLength += WriteFrameHeader(_out.AsSpan(_outLength), length, type, flags, streamId);
    }

    private void AppendBytes(ReadOnlySpan<byte> bytes)
    {
        Reserve(bytes.Length);
        bytes.CopyTo(_out.AsSpan(_outLength));
        _outLength += bytes.Length;
    }

    private void Reserve(int bytes)
    {
        if (_out.Length - _outLength < bytes)
        {
            var grown = new byte[Math.Max(_outLength + bytes, _out.Length * 2)];
            _out.AsSpan(0, _outLength).CopyTo(grown);
            _out = grown;
        }
    }

    /// <summary>Writes the assembled frames: straight to the socket as far as it takes them without blocking, the rest
    /// through the one asynchronous sender, which keeps their order.</summary>
    private void FlushOut()
    {
        if (_outLength == 0)
        {
            return;
        }

        var bytes = _out.AsSpan(0, _outLength);
        _outLength = 0;
        if (_closed)
        {
            return;
        }

        if (!_sending)
        {
            while (!bytes.IsEmpty)
            {
                var n = _socket.Send(bytes, SocketFlags.None, out var error);
                if (error == SocketError.Success)
                {
                    bytes = bytes[n..];
                    continue;
                }

                if (error is SocketError.WouldBlock or SocketError.TryAgain)
                {
                    break;
                }

                _logger.LogDebug("Sending to {Peer} failed: {Error}", Peer, error);
                _closed = true;
                AbortQuietly();
                return;
            }

            if (bytes.IsEmpty)
            {
                ShrinkOut();
                return;
            }

            _sending = true;
            _unsent += bytes.Length;
            bytes.CopyTo(_backlog.GetSpan(bytes.Length));
            _backlog.Advance(bytes.Length);
            _drain = Task.Run(DrainBacklogAsync); // not under this lock, which the caller holds
            return;
        }

        _unsent += bytes.Length;
        bytes.CopyTo(_backlog.GetSpan(bytes.Length));
        _backlog.Advance(bytes.Length);
    }

    private void ShrinkOut()
    {
        if (_out.Length > 1 << 20)
        {
            _out = new byte[16 * 1024]; // do not keep a large response's buffer forever
        }
    }

    private async Task DrainBacklogAsync()
    {
        try
        {
            while (true)
            {
                byte[] chunk;
                lock (_lock)
                {
                    if (_backlog.WrittenCount == 0 || _closed)
                    {
                        _sending = false;
                        _backlog.Clear();
                        _unsent = 0;
                        ReleaseRoomWaiterLocked(!_closed);
                        return;
                    }

                    chunk = _backlog.WrittenSpan.ToArray();
                    _backlog.Clear();
                }

                var at = 0;
                while (at < chunk.Length)
                {
                    at += await _socket.SendAsync(chunk.AsMemory(at), SocketFlags.None);
                }

                lock (_lock)
                {
                    _unsent -= chunk.Length;
                    if (_unsent <= UnsentMax / 2)
                    {
                        ReleaseRoomWaiterLocked(true);
                    }
                }
            }
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
            _logger.LogDebug("Sending to {Peer} failed: {Error}", Peer, ex.Message);
            lock (_lock)
            {
                _closed = true;
                _sending = false;
                ReleaseRoomWaiterLocked(false);
            }

            AbortQuietly();
        }
    }

    private void ReleaseRoomWaiterLocked(bool sent)
    {
        _roomWaiter?.TrySetResult(sent);
        _roomWaiter = null;
    }

    private void AbortQuietly()
    {
        try
        {
            _context.Abort();
        }
        catch (ObjectDisposedException)
        {
            // Kestrel has already closed the connection.
        }
    }

    private static ReadOnlySpan<byte> StripPadding(byte flags, ReadOnlySpan<byte> payload, int skip = 0) =>
        TryStripPadding(flags, payload, skip, out var content)
            ? content
            : throw new H2ConnectionError(ErrorProtocol, "padding longer than the frame, or a frame too short for its fields");

    /// <summary>A connection error (RFC 9113 §5.4.1): GOAWAY with the code, then the connection closes.</summary>
    private sealed class H2ConnectionError(int code, string message) : Exception(message)
    {
        public int Code { get; } = code;
    }
}
