// CRC-32C (Castagnoli), the checksum of every WAL record, snapshot and hard-state file.
using System.Buffers.Binary;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;

namespace MirrorFS.MetaServer.Storage;

/// <summary>
/// CRC-32C with the usual conventions (reflected polynomial 0x82F63B78, initial value and final xor 0xFFFFFFFF), so
/// <c>Compute("123456789") == 0xE3069283</c>. Uses the SSE4.2 / ARMv8 CRC instructions when present and a
/// slicing-by-8 table otherwise. System.IO.Hashing is not served here, hence our own.
/// </summary>
public static class Crc32C
{
    private const uint Polynomial = 0x82F63B78u; // 0x1EDC6F41 bit-reversed
    private static readonly uint[] Table = BuildTable();

    /// <summary>The CRC-32C of <paramref name="data"/>.</summary>
    public static uint Compute(ReadOnlySpan<byte> data) => Append(0, data);

    /// <summary>Extends <paramref name="crc"/> (a finished CRC of earlier bytes, 0 for none) with <paramref name="data"/>:
    /// <c>Append(Compute(a), b) == Compute(a ++ b)</c>.</summary>
    public static uint Append(uint crc, ReadOnlySpan<byte> data) => ~Update(~crc, data);

    /// <summary>The table-only path, exposed so tests check it against the hardware path.</summary>
    internal static uint ComputeSoftware(ReadOnlySpan<byte> data) => ~UpdateSoftware(0xFFFFFFFFu, data);

    private static uint Update(uint state, ReadOnlySpan<byte> data)
    {
        if (Sse42.X64.IsSupported)
        {
            ulong s = state;
            while (data.Length >= 8)
            {
                s = Sse42.X64.Crc32(s, BinaryPrimitives.ReadUInt64LittleEndian(data));
                data = data[8..];
            }
            state = (uint)s;
            foreach (var b in data)
            {
                state = Sse42.Crc32(state, b);
            }
            return state;
        }
        if (Sse42.IsSupported)
        {
            while (data.Length >= 4)
            {
                state = Sse42.Crc32(state, BinaryPrimitives.ReadUInt32LittleEndian(data));
                data = data[4..];
            }
            foreach (var b in data)
            {
                state = Sse42.Crc32(state, b);
            }
            return state;
        }
        if (Crc32.Arm64.IsSupported)
        {
            while (data.Length >= 8)
            {
                state = Crc32.Arm64.ComputeCrc32C(state, BinaryPrimitives.ReadUInt64LittleEndian(data));
                data = data[8..];
            }
            foreach (var b in data)
            {
                state = Crc32.ComputeCrc32C(state, b);
            }
            return state;
        }
        return UpdateSoftware(state, data);
    }

    // Slicing-by-8: eight 256-entry tables, table k = CRC of a byte followed by k zero bytes.
    private static uint UpdateSoftware(uint state, ReadOnlySpan<byte> data)
    {
        var t = Table;
        while (data.Length >= 8)
        {
            var lo = BinaryPrimitives.ReadUInt32LittleEndian(data) ^ state;
            var hi = BinaryPrimitives.ReadUInt32LittleEndian(data[4..]);
            state = t[(7 * 256) + (lo & 0xFF)] ^ t[(6 * 256) + ((lo >> 8) & 0xFF)]
                ^ t[(5 * 256) + ((lo >> 16) & 0xFF)] ^ t[(4 * 256) + (lo >> 24)]
                ^ t[(3 * 256) + (hi & 0xFF)] ^ t[(2 * 256) + ((hi >> 8) & 0xFF)]
                ^ t[256 + ((hi >> 16) & 0xFF)] ^ t[hi >> 24];
            data = data[8..];
        }
        foreach (var b in data)
        {
            state = t[(state ^ b) & 0xFF] ^ (state >> 8);
        }
        return state;
    }

    private static uint[] BuildTable()
    {
        var t = new uint[8 * 256];
        for (uint i = 0; i < 256; i++)
        {
            var c = i;
            for (var k = 0; k < 8; k++)
            {
                c = (c & 1) != 0 ? (c >> 1) ^ Polynomial : c >> 1;
            }
            t[i] = c;
        }
        for (var i = 0; i < 256; i++)
        {
            for (var k = 1; k < 8; k++)
            {
                var prev = t[((k - 1) * 256) + i];
                t[(k * 256) + i] = t[prev & 0xFF] ^ (prev >> 8);
            }
        }
        return t;
    }
}
