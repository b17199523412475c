using System.Buffers.Binary;
using System.Globalization;
using System.Text;

namespace MirrorFS.Core.Rpc;

/// <summary>Pieces of the gRPC-over-HTTP/2 wire format shared by the server and the client: header names,
/// message framing, <c>grpc-timeout</c> and <c>grpc-message</c> encodings.</summary>
public static class GrpcProtocol
{
    public const string ContentType = "application/grpc";
    public const string StatusHeader = "grpc-status";
    public const string MessageHeader = "grpc-message";
    public const string TimeoutHeader = "grpc-timeout";
    public const string EncodingHeader = "grpc-encoding";
    public const string AcceptEncodingHeader = "grpc-accept-encoding";

    /// <summary>1 byte compressed flag + 4 bytes big-endian length.</summary>
    public const int FrameHeaderBytes = 5;

    /// <summary>Default for both directions; gRPC's usual receive limit is 4 MiB, MirrorFS moves 4 MiB blocks.</summary>
    public const int DefaultMaxMessageBytes = 16 * 1024 * 1024;

    /// <summary>Longest timeout the wire accepts (8 digits of hours); longer ones are clamped.</summary>
    public static readonly TimeSpan TimeoutMax = TimeSpan.FromHours(99_999_999);

    private static readonly string[] StatusTexts =
        Enumerable.Range(0, 17).Select(i => i.ToString(CultureInfo.InvariantCulture)).ToArray();

    /// <summary>The <c>grpc-status</c> value of a status code.</summary>
    internal static string StatusText(StatusCode status) =>
        (uint)status < (uint)StatusTexts.Length ? StatusTexts[(int)status] : ((int)status).ToString(CultureInfo.InvariantCulture);

    /// <summary>Does <paramref name="contentType"/> name gRPC (<c>application/grpc</c>, <c>+proto</c>, or params)?</summary>
    public static bool IsGrpcContentType(string? contentType)
    {
        if (contentType is null || !contentType.StartsWith(ContentType, StringComparison.OrdinalIgnoreCase))
        {
            return false;
        }

        return contentType.Length == ContentType.Length || contentType[ContentType.Length] is '+' or ';';
    }

    /// <summary>Writes the 5-byte message prefix (uncompressed).</summary>
    public static void WriteFrameHeader(Span<byte> destination, int messageBytes)
    {
        destination[0] = 0;
        BinaryPrimitives.WriteUInt32BigEndian(destination[1..], (uint)messageBytes);
    }

    /// <summary>Formats a timeout as <c>grpc-timeout</c>: at most 8 digits and a unit, rounded up so the server
    /// never sees a shorter budget than the caller gave.</summary>
    public static string FormatTimeout(TimeSpan timeout)
    {
        if (timeout <= TimeSpan.Zero)
        {
            return "1n";
        }

        if (timeout > TimeoutMax)
        {
            timeout = TimeoutMax;
        }

        const long Limit = 100_000_000;
        long ticks = timeout.Ticks;
        long micros = CeilDiv(ticks, TimeSpan.TicksPerMillisecond / 1000);
        if (micros < Limit)
        {
            // Whole milliseconds read better in logs and are what callers usually give.
            return micros % 1000 == 0
                ? (micros / 1000).ToString(CultureInfo.InvariantCulture) + "m"
                : micros.ToString(CultureInfo.InvariantCulture) + "u";
        }

        long millis = CeilDiv(ticks, TimeSpan.TicksPerMillisecond);
        if (millis < Limit)
        {
            return millis.ToString(CultureInfo.InvariantCulture) + "m";
        }

        long seconds = CeilDiv(ticks, TimeSpan.TicksPerSecond);
        if (seconds < Limit)
        {
            return seconds.ToString(CultureInfo.InvariantCulture) + "S";
        }

        long minutes = CeilDiv(ticks, TimeSpan.TicksPerMinute);
        if (minutes < Limit)
        {
            return minutes.ToString(CultureInfo.InvariantCulture) + "M";
        }

        return Math.Min(CeilDiv(ticks, TimeSpan.TicksPerHour), Limit - 1).ToString(CultureInfo.InvariantCulture) + "H";
    }

    /// <summary>Parses <c>grpc-timeout</c> (1-8 digits, unit H M S m u n). False when malformed.</summary>
    public static bool TryParseTimeout(ReadOnlySpan<char> value, out TimeSpan timeout)
    {
        timeout = default;
        if (value.Length is < 2 or > 9)
        {
            return false;
        }

        long amount = 0;
        foreach (var c in value[..^1])
        {
            if (c is < '0' or > '9')
            {
                return false;
            }

            amount = (amount * 10) + (c - '0');
        }

        long ticks = value[^1] switch
        {
            'H' => amount * TimeSpan.TicksPerHour,
            'M' => amount * TimeSpan.TicksPerMinute,
            'S' => amount * TimeSpan.TicksPerSecond,
            'm' => amount * TimeSpan.TicksPerMillisecond,
            'u' => amount * (TimeSpan.TicksPerMillisecond / 1000),
            'n' => CeilDiv(amount, 100),
            _ => -1,
        };
        if (ticks < 0)
        {
            return false;
        }

        timeout = TimeSpan.FromTicks(ticks);
        return true;
    }

    /// <summary>Longest status message sent, in chars; longer ones are cut so the header stays small.</summary>
    public const int StatusMessageCharsMax = 2048;

    /// <summary>Percent-encodes a status message as <c>grpc-message</c> wants: UTF-8, with bytes outside
    /// printable ASCII and '%' itself written as %XX. Messages over <see cref="StatusMessageCharsMax"/> are cut.</summary>
    public static string EncodeMessage(string message)
    {
        if (message.Length > StatusMessageCharsMax)
        {
            var cut = StatusMessageCharsMax;
            if (char.IsHighSurrogate(message[cut - 1]))
            {
                cut--;
            }

            message = string.Concat(message.AsSpan(0, cut), "...");
        }

        bool plain = true;
        foreach (var c in message)
        {
            if (c is < ' ' or > '~' or '%')
            {
                plain = false;
                break;
            }
        }

        if (plain)
        {
            return message;
        }

        var bytes = Encoding.UTF8.GetBytes(message);
        var sb = new StringBuilder(bytes.Length * 3);
        foreach (var b in bytes)
        {
            if (b is < (byte)' ' or > (byte)'~' or (byte)'%')
            {
                sb.Append('%').Append(HexUpper[b >> 4]).Append(HexUpper[b & 0xF]);
            }
            else
            {
                sb.Append((char)b);
            }
        }

        return sb.ToString();
    }

    /// <summary>Reverses <see cref="EncodeMessage"/>. Malformed escapes are kept as text, as the spec asks.</summary>
    public static string DecodeMessage(string value)
    {
        if (!value.Contains('%', StringComparison.Ordinal))
        {
            return value;
        }

        var bytes = new byte[value.Length];
        int n = 0;
        for (int i = 0; i < value.Length; i++)
        {
            char c = value[i];
            if (c == '%' && i + 2 < value.Length && TryHex(value[i + 1], out int hi) && TryHex(value[i + 2], out int lo))
            {
                bytes[n++] = (byte)((hi << 4) | lo);
                i += 2;
            }
            else
            {
                // Header values are ASCII; anything wider is not from a conforming peer, so keep a placeholder.
                bytes[n++] = c <= '\x7F' ? (byte)c : (byte)'?';
            }
        }

        return Encoding.UTF8.GetString(bytes, 0, n);
    }

    /// <summary>The status a client infers from an HTTP status when the response carries no gRPC status.</summary>
    public static StatusCode StatusFromHttp(int httpStatus) => httpStatus switch
    {
        400 => StatusCode.Internal,
        401 => StatusCode.Unauthenticated,
        403 => StatusCode.PermissionDenied,
        404 => StatusCode.Unimplemented,
        429 or 502 or 503 or 504 => StatusCode.Unavailable,
        _ => StatusCode.Unknown,
    };

    private const string HexUpper = "0123456789ABCDEF";

    private static long CeilDiv(long a, long b) => (a + b - 1) / b;

    private static bool TryHex(char c, out int value)
    {
        value = c switch
        {
            >= '0' and <= '9' => c - '0',
            >= 'A' and <= 'F' => c - 'A' + 10,
            >= 'a' and <= 'f' => c - 'a' + 10,
            _ => -1,
        };
        return value >= 0;
    }
}
