using System.Text;

namespace MirrorFS.Core.Rpc.Http2;

/// <summary>A header block the peer sent that cannot be decoded; the connection is unusable after it (RFC 7541
/// makes a decoding error a connection error, because the dynamic tables are out of step).</summary>
internal sealed class HPackException(string message) : Exception(message);

/// <summary>HPACK (RFC 7541) encoding helpers for request headers. Requests use literals without indexing only, so
/// the encoder keeps no dynamic table; names that the static table holds are sent by index.</summary>
internal static class HPackWriter
{
    /// <summary>Static-table indexes used by requests.</summary>
    internal const int AuthorityIndex = 1;
    internal const int MethodPostIndex = 3;
    internal const int PathIndex = 4;
    internal const int SchemeHttpIndex = 6;
    internal const int StatusIndex = 8;
    internal const int AuthorizationIndex = 23;
    internal const int ContentTypeIndex = 31;
    internal const int UserAgentIndex = 58;

    /// <summary>An indexed header field (name and value from the static table).</summary>
    public static void WriteIndexed(List<byte> block, int index) => WriteInteger(block, 0x80, 7, index);

    /// <summary>A literal without indexing, the name taken from static index <paramref name="nameIndex"/>; a
    /// <paramref name="neverIndexed"/> field (a secret) asks intermediaries not to compress it either.</summary>
    public static void WriteLiteral(List<byte> block, int nameIndex, string value, bool neverIndexed = false)
    {
        WriteInteger(block, neverIndexed ? (byte)0x10 : (byte)0x00, 4, nameIndex);
        WriteString(block, value);
    }

    /// <summary>A literal without indexing with a new name.</summary>
    public static void WriteLiteral(List<byte> block, string name, string value)
    {
        block.Add(0x00);
        WriteString(block, name);
        WriteString(block, value);
    }

    /// <summary>Same as <see cref="WriteLiteral(List{byte}, int, string, bool)"/> into a buffer writer.</summary>
    public static void WriteLiteral(System.Buffers.IBufferWriter<byte> block, int nameIndex, string value)
    {
        var span = block.GetSpan(5 + IntegerBytes(7, value.Length) + value.Length);
        var at = WriteInteger(span, 0x00, 4, nameIndex);
        at += WriteInteger(span[at..], 0x00, 7, value.Length);
        at += Encoding.Latin1.GetBytes(value, span[at..]);
        block.Advance(at);
    }

    /// <summary>Same as <see cref="WriteLiteral(List{byte}, string, string)"/> into a span; returns the bytes written,
    /// or -1 when they do not fit.</summary>
    public static int WriteLiteral(Span<byte> destination, string name, string value)
    {
        var need = 1 + IntegerBytes(7, name.Length) + name.Length + IntegerBytes(7, value.Length) + value.Length;
        if (need > destination.Length)
        {
            return -1;
        }

        var at = 0;
        destination[at++] = 0x00;
        at += WriteInteger(destination[at..], 0x00, 7, name.Length);
        at += Encoding.Latin1.GetBytes(name, destination[at..]);
        at += WriteInteger(destination[at..], 0x00, 7, value.Length);
        at += Encoding.Latin1.GetBytes(value, destination[at..]);
        return at;
    }

    public static void WriteString(List<byte> block, string value)
    {
        WriteInteger(block, 0x00, 7, value.Length); // no Huffman coding
        foreach (var c in value)
        {
            block.Add(c <= 0xFF ? (byte)c : (byte)'?');
        }
    }

    /// <summary>An integer with an N-bit prefix (RFC 7541 §5.1), <paramref name="flags"/> in the bits above it.</summary>
    public static void WriteInteger(List<byte> block, byte flags, int prefixBits, int value)
    {
        var max = (1 << prefixBits) - 1;
        if (value < max)
        {
            block.Add((byte)(flags | value));
            return;
        }

        block.Add((byte)(flags | max));
        value -= max;
        while (value >= 0x80)
        {
            block.Add((byte)((value & 0x7F) | 0x80));
            value >>= 7;
        }

        block.Add((byte)value);
    }

    private static int WriteInteger(Span<byte> destination, byte flags, int prefixBits, int value)
    {
        var max = (1 << prefixBits) - 1;
        if (value < max)
        {
            destination[0] = (byte)(flags | value);
            return 1;
        }

        var at = 0;
        destination[at++] = (byte)(flags | max);
        value -= max;
        while (value >= 0x80)
        {
            destination[at++] = (byte)((value & 0x7F) | 0x80);
            value >>= 7;
        }

        destination[at++] = (byte)value;
        return at;
    }

    private static int IntegerBytes(int prefixBits, int value)
    {
        var max = (1 << prefixBits) - 1;
        if (value < max)
        {
            return 1;
        }

        var n = 2;
        for (value -= max; value >= 0x80; value >>= 7)
        {
            n++;
        }

        return n;
    }
}

/// <summary>An HPACK decoder (RFC 7541): static table, dynamic table with eviction and size updates, all literal
/// forms, Huffman-coded strings.</summary>
internal sealed class HPackDecoder
{
    /// <summary>RFC 7541 Appendix A.</summary>
    private static readonly (string Name, string Value)[] StaticTable =
    [
        (":authority", ""), (":method", "GET"), (":method", "POST"), (":path", "/"), (":path", "/index.html"),
        (":scheme", "http"), (":scheme", "https"), (":status", "200"), (":status", "204"), (":status", "206"),
        (":status", "304"), (":status", "400"), (":status", "404"), (":status", "500"), ("accept-charset", ""),
        ("accept-encoding", "gzip, deflate"), ("accept-language", ""), ("accept-ranges", ""), ("accept", ""),
        ("access-control-allow-origin", ""), ("age", ""), ("allow", ""), ("authorization", ""),
        ("cache-control", ""), ("content-disposition", ""), ("content-encoding", ""), ("content-language", ""),
        ("content-length", ""), ("content-location", ""), ("content-range", ""), ("content-type", ""),
        ("cookie", ""), ("date", ""), ("etag", ""), ("expect", ""), ("expires", ""), ("from", ""), ("host", ""),
        ("if-match", ""), ("if-modified-since", ""), ("if-none-match", ""), ("if-range", ""),
        ("if-unmodified-since", ""), ("last-modified", ""), ("link", ""), ("location", ""), ("max-forwards", ""),
        ("proxy-authenticate", ""), ("proxy-authorization", ""), ("range", ""), ("referer", ""), ("refresh", ""),
        ("retry-after", ""), ("server", ""), ("set-cookie", ""), ("strict-transport-security", ""),
        ("transfer-encoding", ""), ("user-agent", ""), ("vary", ""), ("via", ""), ("www-authenticate", ""),
    ];

    /// <summary>Per RFC 7541 §4.1 an entry's size is its name and value octets plus 32.</summary>
    private const int EntryOverhead = 32;

    /// <summary>Newest first: index 0 is HPACK index 62.</summary>
    private readonly List<(string Name, string Value)> _dynamic = [];
    private readonly int _maxSizeLimit;
    private int _maxSize;
    private int _size;

    /// <param name="maxTableSize">SETTINGS_HEADER_TABLE_SIZE this side advertised (4096 by default).</param>
    public HPackDecoder(int maxTableSize = 4096)
    {
        _maxSizeLimit = maxTableSize;
        _maxSize = maxTableSize;
    }

    public int DynamicCount => _dynamic.Count;

    public int DynamicSize => _size;

    /// <summary>Decodes a whole header block, appending (name, value) pairs in order.</summary>
    public void Decode(ReadOnlySpan<byte> block, List<KeyValuePair<string, string>> output)
    {
        var at = 0;
        var fieldSeen = false;
        while (at < block.Length)
        {
            var b = block[at];
            if ((b & 0x80) != 0)
            {
                var index = ReadInteger(block, ref at, 7);
                var (name, value) = Lookup(index);
                output.Add(new(name, value));
                fieldSeen = true;
            }
            else if ((b & 0xC0) == 0x40)
            {
                var (name, value) = ReadLiteral(block, ref at, 6);
                Add(name, value);
                output.Add(new(name, value));
                fieldSeen = true;
            }
            else if ((b & 0xE0) == 0x20)
            {
                if (fieldSeen)
                {
                    throw new HPackException("a dynamic table size update came after a header field");
                }

                var size = ReadInteger(block, ref at, 5);
                if (size > _maxSizeLimit)
                {
                    throw new HPackException($"a dynamic table size update to {size} exceeds the advertised {_maxSizeLimit}");
                }

                _maxSize = size;
                Evict(0);
            }
            else
            {
                // 0000xxxx literal without indexing, 0001xxxx literal never indexed: both leave the table alone.
                var (name, value) = ReadLiteral(block, ref at, 4);
                output.Add(new(name, value));
                fieldSeen = true;
            }
        }
    }

    private (string Name, string Value) ReadLiteral(ReadOnlySpan<byte> block, ref int at, int prefixBits)
    {
        var nameIndex = ReadInteger(block, ref at, prefixBits);
        var name = nameIndex == 0 ? ReadString(block, ref at) : Lookup(nameIndex).Name;
        var value = ReadString(block, ref at);
        return (name, value);
    }

    private (string Name, string Value) Lookup(int index)
    {
        if (index <= 0)
        {
            throw new HPackException("header index 0 is invalid");
        }

        if (index <= StaticTable.Length)
        {
            return StaticTable[index - 1];
        }

        var dynamicIndex = index - StaticTable.Length - 1;
        return dynamicIndex < _dynamic.Count
            ? _dynamic[dynamicIndex]
            : throw new HPackException($"header index {index} is beyond the table ({StaticTable.Length + _dynamic.Count} entries)");
    }

    private void Add(string name, string value)
    {
        var entrySize = name.Length + value.Length + EntryOverhead;
        if (entrySize > _maxSize)
        {
            // An entry larger than the table empties it and is not added (RFC 7541 §4.4).
            _dynamic.Clear();
            _size = 0;
            return;
        }

        Evict(entrySize);
        _dynamic.Insert(0, (name, value));
        _size += entrySize;
    }

    /// <summary>Drops the oldest entries until <paramref name="room"/> more octets fit.</summary>
    private void Evict(int room)
    {
        while (_dynamic.Count > 0 && _size + room > _maxSize)
        {
            var (name, value) = _dynamic[^1];
            _size -= name.Length + value.Length + EntryOverhead;
            _dynamic.RemoveAt(_dynamic.Count - 1);
        }
    }

    private static string ReadString(ReadOnlySpan<byte> block, ref int at)
    {
        if (at >= block.Length)
        {
            throw new HPackException("the header block ends inside a string");
        }

        var huffman = (block[at] & 0x80) != 0;
        var length = ReadInteger(block, ref at, 7);
        if (length > block.Length - at)
        {
            throw new HPackException("a header string runs past the end of the block");
        }

        var value = huffman
            ? HPackHuffman.Decode(block.Slice(at, length))
            : Encoding.Latin1.GetString(block.Slice(at, length));
        at += length;
        return value;
    }

    private static int ReadInteger(ReadOnlySpan<byte> block, ref int at, int prefixBits)
    {
        if (at >= block.Length)
        {
            throw new HPackException("the header block ends inside an integer");
        }

        var max = (1 << prefixBits) - 1;
        var value = block[at++] & max;
        if (value < max)
        {
            return value;
        }

        for (var shift = 0; ; shift += 7)
        {
            if (at >= block.Length)
            {
                throw new HPackException("the header block ends inside an integer");
            }

            if (shift > 21)
            {
                throw new HPackException("a header integer is too large");
            }

            var b = block[at++];
            value += (b & 0x7F) << shift;
            if ((b & 0x80) == 0)
            {
                return value;
            }
        }
    }
}

/// <summary>The HPACK string code (RFC 7541 Appendix B). The code is canonical (codes of one length are consecutive
/// and follow symbol order, shorter lengths first), so the table below holds only each symbol's code length and the
/// codes are rebuilt from it.</summary>
internal static class HPackHuffman
{
    private const int EndOfString = 256;

    /// <summary>Code length in bits of symbols 0-255 and of EOS (256).</summary>
    private static readonly byte[] Lengths =
    [
        13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28,
        28, 28, 28, 28, 6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, 5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6,
        12, 10, 13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, 15, 5,
        6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5, 6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, 20, 22, 20, 20, 22,
        22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23, 24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, 22,
        21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, 21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23,
        22, 22, 23, 26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, 19, 21, 26, 27, 27, 26, 27, 24, 21,
        21, 26, 26, 28, 27, 27, 27, 20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, 26, 27, 26, 26, 27,
        27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, 30,
    ];

    private const int LengthMax = 30;

    /// <summary>Per length L: the first code of that length, how many codes have it, and where its symbols start
    /// in <see cref="Symbols"/>.</summary>
    private static readonly uint[] FirstCode = new uint[LengthMax + 1];
    private static readonly int[] CountOf = new int[LengthMax + 1];
    private static readonly int[] SymbolStart = new int[LengthMax + 1];

    /// <summary>Symbols ordered by (code length, symbol).</summary>
    private static readonly short[] Symbols = new short[257];

    /// <summary>Each symbol's code, right-aligned.</summary>
    private static readonly uint[] Codes = new uint[257];

    static HPackHuffman()
    {
        foreach (var length in Lengths)
        {
            CountOf[length]++;
        }

        uint code = 0;
        var start = 0;
        for (var length = 1; length <= LengthMax; length++)
        {
            code <<= 1;
            FirstCode[length] = code;
            SymbolStart[length] = start;
            code += (uint)CountOf[length];
            start += CountOf[length];
        }

        var next = new int[LengthMax + 1];
        for (var symbol = 0; symbol <= EndOfString; symbol++)
        {
            var length = Lengths[symbol];
            var rank = next[length]++;
            Symbols[SymbolStart[length] + rank] = (short)symbol;
            Codes[symbol] = FirstCode[length] + (uint)rank;
        }
    }

    /// <summary>Decodes a Huffman-coded string; the padding must be the most significant bits of EOS (all ones)
    /// and shorter than a byte, and EOS itself must not appear (RFC 7541 §5.2).</summary>
    public static string Decode(ReadOnlySpan<byte> encoded)
    {
        // Every symbol takes at least 5 bits, so 8 bytes hold at most 12 symbols.
        var output = encoded.Length <= 256 ? stackalloc char[encoded.Length * 8 / 5 + 1] : new char[encoded.Length * 8 / 5 + 1];
        var count = 0;
        uint code = 0;
        var length = 0;
        foreach (var b in encoded)
        {
            for (var bit = 7; bit >= 0; bit--)
            {
                code = (code << 1) | (uint)((b >> bit) & 1);
                length++;
                var offset = code - FirstCode[length];
                if (offset < (uint)CountOf[length])
                {
                    var symbol = Symbols[SymbolStart[length] + (int)offset];
                    if (symbol == EndOfString)
                    {
                        throw new HPackException("a Huffman-coded header string contains EOS");
                    }

                    output[count++] = (char)symbol;
                    code = 0;
                    length = 0;
                }
                else if (length == LengthMax)
                {
                    throw new HPackException("a Huffman-coded header string holds an invalid code");
                }
            }
        }

        if (length > 7 || code != (1u << length) - 1)
        {
            throw new HPackException("a Huffman-coded header string has invalid padding");
        }

        return new string(output[..count]);
    }

    /// <summary>Huffman-codes <paramref name="value"/> (Latin-1); used by tests to produce what other encoders send.</summary>
    public static byte[] Encode(string value)
    {
        var bytes = new List<byte>();
        ulong buffer = 0;
        var bits = 0;
        foreach (var c in value)
        {
            var symbol = c <= 0xFF ? c : '?';
            buffer = (buffer << Lengths[symbol]) | Codes[symbol];
            bits += Lengths[symbol];
            while (bits >= 8)
            {
                bits -= 8;
                bytes.Add((byte)(buffer >> bits));
            }
        }

        if (bits > 0)
        {
            bytes.Add((byte)((buffer << (8 - bits)) | (0xFFu >> bits)));
        }

        return [.. bytes];
    }
}
