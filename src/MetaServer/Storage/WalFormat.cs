// The on-disk encodings of WAL segments, snapshot headers and the hard-state file. Frozen by golden tests: change
// nothing here; add a new version instead.
using System.Buffers.Binary;

namespace MirrorFS.MetaServer.Storage;

internal static class WalFormat
{
    public const uint Version = 1;

    // Segment header, 32 bytes, little-endian:
    //   [0..8) magic "MFS-WAL\0" | [8..12) version u32 | [12..16) reserved u32 = 0 | [16..24) first index u64
    //   | [24..28) reserved u32 = 0 | [28..32) crc32c of bytes [0..28)
    public const int SegmentHeaderBytes = 32;
    public static ReadOnlySpan<byte> SegmentMagic => "MFS-WAL\0"u8;

    // Record, 24-byte header then payload, little-endian:
    //   [0..4) payload length u32 | [4..8) crc32c of everything after this field (index, term, payload)
    //   | [8..16) index u64 | [16..24) term u64 | [24..24+length) payload
    public const int RecordHeaderBytes = 24;

    /// <summary>Largest payload the format accepts; a larger length field is treated as corruption, so a flipped bit
    /// in a length can never make recovery allocate or read gigabytes.</summary>
    public const int PayloadBytesMax = 64 << 20;

    // Snapshot file header, 48 bytes, little-endian, followed by the body:
    //   [0..8) magic "MFS-SNAP" | [8..12) version u32 | [12..16) reserved u32 = 0 | [16..24) last included index u64
    //   | [24..32) its term u64 | [32..40) body length u64 | [40..44) crc32c of the body | [44..48) crc32c of [0..44)
    public const int SnapshotHeaderBytes = 48;
    public static ReadOnlySpan<byte> SnapshotMagic => "MFS-SNAP"u8;

    // Hard-state file, 44 bytes, little-endian:
    //   [0..8) magic "MFS-HARD" | [8..12) version u32 | [12..16) reserved u32 = 0 | [16..24) term u64
    //   | [24..32) voted-for node id u64 (0 = none) | [32..40) commit index u64 | [40..44) crc32c of [0..40)
    public const int HardStateBytes = 44;
    public static ReadOnlySpan<byte> HardStateMagic => "MFS-HARD"u8;

    public static void WriteSegmentHeader(Span<byte> dest, ulong firstIndex)
    {
        dest[..SegmentHeaderBytes].Clear();
        SegmentMagic.CopyTo(dest);
        BinaryPrimitives.WriteUInt32LittleEndian(dest[8..], Version);
        BinaryPrimitives.WriteUInt64LittleEndian(dest[16..], firstIndex);
        BinaryPrimitives.WriteUInt32LittleEndian(dest[28..], Crc32C.Compute(dest[..28]));
    }

    /// <summary>Parses a segment header; null with a reason when it is damaged. An intact header of another format
    /// version throws <see cref="NotSupportedException"/> (<paramref name="what"/> names the file in the message).</summary>
    public static ulong? ReadSegmentHeader(ReadOnlySpan<byte> src, string what, out string? problem) =>
        CheckHeader(src, SegmentMagic, SegmentHeaderBytes, 28, what, out problem, $"header is {src.Length} bytes, expected {SegmentHeaderBytes}")
            ? BinaryPrimitives.ReadUInt64LittleEndian(src[16..])
            : null;

    // The checks every header shares: length, magic, header checksum at crcOffset, then the format version.
    private static bool CheckHeader(ReadOnlySpan<byte> src, ReadOnlySpan<byte> magic, int headerBytes, int crcOffset,
        string what, out string? problem, string shortProblem)
    {
        if (src.Length < headerBytes)
        {
            problem = shortProblem;
            return false;
        }
        if (!src[..8].SequenceEqual(magic))
        {
            problem = "bad magic";
            return false;
        }
        if (BinaryPrimitives.ReadUInt32LittleEndian(src[crcOffset..]) != Crc32C.Compute(src[..crcOffset]))
        {
            problem = "header checksum mismatch";
            return false;
        }
        var version = BinaryPrimitives.ReadUInt32LittleEndian(src[8..]);
        if (version != Version)
        {
            // Intact but newer: refuse rather than treat it as damage, which would delete or skip it.
            throw new NotSupportedException($"{what} has format version {version}; this build reads version {Version}: run a newer mirrorfs-meta");
        }
        problem = null;
        return true;
    }

    /// <summary>Writes a record header for <paramref name="payload"/>; the checksum covers index, term and payload.</summary>
    public static void WriteRecordHeader(Span<byte> dest, ulong index, ulong term, ReadOnlySpan<byte> payload)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(dest, (uint)payload.Length);
        BinaryPrimitives.WriteUInt64LittleEndian(dest[8..], index);
        BinaryPrimitives.WriteUInt64LittleEndian(dest[16..], term);
        var crc = Crc32C.Append(Crc32C.Compute(dest[8..RecordHeaderBytes]), payload);
        BinaryPrimitives.WriteUInt32LittleEndian(dest[4..], crc);
    }

    public static void EncodeRecord(Span<byte> dest, ulong index, ulong term, ReadOnlySpan<byte> payload)
    {
        WriteRecordHeader(dest, index, term, payload);
        payload.CopyTo(dest[RecordHeaderBytes..]);
    }

    public static void WriteSnapshotHeader(Span<byte> dest, ulong index, ulong term, ulong bodyLength, uint bodyCrc)
    {
        dest[..SnapshotHeaderBytes].Clear();
        SnapshotMagic.CopyTo(dest);
        BinaryPrimitives.WriteUInt32LittleEndian(dest[8..], Version);
        BinaryPrimitives.WriteUInt64LittleEndian(dest[16..], index);
        BinaryPrimitives.WriteUInt64LittleEndian(dest[24..], term);
        BinaryPrimitives.WriteUInt64LittleEndian(dest[32..], bodyLength);
        BinaryPrimitives.WriteUInt32LittleEndian(dest[40..], bodyCrc);
        BinaryPrimitives.WriteUInt32LittleEndian(dest[44..], Crc32C.Compute(dest[..44]));
    }

    public readonly record struct SnapshotHeader(ulong Index, ulong Term, ulong BodyLength, uint BodyCrc);

    public static SnapshotHeader? ReadSnapshotHeader(ReadOnlySpan<byte> src, string what, out string? problem) =>
        CheckHeader(src, SnapshotMagic, SnapshotHeaderBytes, 44, what, out problem, $"file is shorter than the {SnapshotHeaderBytes}-byte header")
            ? new SnapshotHeader(
                BinaryPrimitives.ReadUInt64LittleEndian(src[16..]),
                BinaryPrimitives.ReadUInt64LittleEndian(src[24..]),
                BinaryPrimitives.ReadUInt64LittleEndian(src[32..]),
                BinaryPrimitives.ReadUInt32LittleEndian(src[40..]))
            : null;

    public static void WriteHardState(Span<byte> dest, HardState state)
    {
        dest[..HardStateBytes].Clear();
        HardStateMagic.CopyTo(dest);
        BinaryPrimitives.WriteUInt32LittleEndian(dest[8..], Version);
        BinaryPrimitives.WriteUInt64LittleEndian(dest[16..], state.Term);
        BinaryPrimitives.WriteUInt64LittleEndian(dest[24..], state.VotedFor);
        BinaryPrimitives.WriteUInt64LittleEndian(dest[32..], state.Commit);
        BinaryPrimitives.WriteUInt32LittleEndian(dest[40..], Crc32C.Compute(dest[..40]));
    }

    public static HardState? ReadHardState(ReadOnlySpan<byte> src, string what, out string? problem)
    {
        if (src.Length != HardStateBytes)
        {
            problem = $"file is {src.Length} bytes, expected {HardStateBytes}";
            return null;
        }
        return CheckHeader(src, HardStateMagic, HardStateBytes, 40, what, out problem, "")
            ? new HardState(
                BinaryPrimitives.ReadUInt64LittleEndian(src[16..]),
                BinaryPrimitives.ReadUInt64LittleEndian(src[24..]),
                BinaryPrimitives.ReadUInt64LittleEndian(src[32..]))
            : null;
    }
}
