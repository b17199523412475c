using System.Buffers.Binary;

namespace MirrorFS.Core.Rpc.Http2;

/// <summary>HTTP/2 (RFC 9113) frame types, flags, error codes and frame helpers shared by the client and server
/// connections.</summary>
internal static class H2Wire
{
    public const byte FrameData = 0x0;
    public const byte FrameHeaders = 0x1;
    public const byte FramePriority = 0x2;
    public const byte FrameRstStream = 0x3;
    public const byte FrameSettings = 0x4;
    public const byte FramePushPromise = 0x5;
    public const byte FramePing = 0x6;
    public const byte FrameGoAway = 0x7;
    public const byte FrameWindowUpdate = 0x8;
    public const byte FrameContinuation = 0x9;

    public const byte FlagEndStream = 0x1;
    public const byte FlagAck = 0x1;
    public const byte FlagEndHeaders = 0x4;
    public const byte FlagPadded = 0x8;
    public const byte FlagPriority = 0x20;

    public const int ErrorNone = 0x0;
    public const int ErrorProtocol = 0x1;
    public const int ErrorInternal = 0x2;
    public const int ErrorFlowControl = 0x3;
    public const int ErrorStreamClosed = 0x5;
    public const int ErrorFrameSize = 0x6;
    public const int ErrorRefusedStream = 0x7;
    public const int ErrorCancel = 0x8;
    public const int ErrorCompression = 0x9;
    public const int ErrorEnhanceYourCalm = 0xb;

    public const int FrameHeaderBytes = 9;

    /// <summary>The window every stream and the connection start with, before SETTINGS and WINDOW_UPDATE.</summary>
    public const int DefaultWindow = 65_535;

    /// <summary>The largest frame either side accepts (the protocol's default SETTINGS_MAX_FRAME_SIZE).</summary>
    public const int ReceiveFrameMax = 16_384;

    public static ReadOnlySpan<byte> Preface => "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"u8;

    public static int WriteFrameHeader(Span<byte> destination, int length, byte type, byte flags, int streamId)
    {
        destination[0] = (byte)(length >> 16);
        destination[1] = (byte)(length >> 8);
        destination[2] = (byte)length;
        destination[3] = type;
        destination[4] = flags;
        BinaryPrimitives.WriteUInt32BigEndian(destination[5..], (uint)streamId);
        return FrameHeaderBytes;
    }

    /// <summary>The frame's content without its padding and the first <paramref name="skip"/> bytes (a HEADERS
    /// frame's priority fields); false when the frame is too short for them.</summary>
    public static bool TryStripPadding(byte flags, ReadOnlySpan<byte> payload, int skip, out ReadOnlySpan<byte> content)
    {
        content = default;
        if ((flags & FlagPadded) == 0)
        {
            if (payload.Length < skip)
            {
                return false;
            }

            content = payload[skip..];
            return true;
        }

        if (payload.Length < 1 + skip || payload[0] > payload.Length - 1 - skip)
        {
            return false;
        }

        content = payload.Slice(1 + skip, payload.Length - 1 - skip - payload[0]);
        return true;
    }
}
