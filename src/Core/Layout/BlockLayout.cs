// Layout math: file offsets -> 64 MiB chunks -> slices -> blocks, and block object keys both ways.
using System.Globalization;

namespace MirrorFS.Core.Layout;

/// <summary>One piece of a file write or read that lies inside one chunk.</summary>
/// <param name="ChunkIndex">Index of the 64 MiB chunk within the file.</param>
/// <param name="OffsetInChunk">Where the piece starts inside the chunk.</param>
/// <param name="Length">Bytes in the piece (never zero).</param>
/// <param name="BufferOffset">Where the piece starts in the caller's buffer.</param>
public readonly record struct ChunkPiece(long ChunkIndex, int OffsetInChunk, int Length, long BufferOffset);

/// <summary>One stored block of a slice.</summary>
/// <param name="Index">Block index within the slice.</param>
/// <param name="OffsetInSlice">First byte of the block within the slice.</param>
/// <param name="Size">Stored size of the block: the block size, or less for the last one.</param>
public readonly record struct BlockSpan(int Index, int OffsetInSlice, int Size);

/// <summary>The part of one block that a read within a slice needs.</summary>
public readonly record struct BlockRead(int Index, int BlockSize, int OffsetInBlock, int Length);

/// <summary>A parsed block key.</summary>
public readonly record struct BlockKey(ulong SliceId, int Index, int Size);

public static class BlockLayout
{
    public const int ChunkSize = 64 << 20;
    public const int DefaultBlockSize = 4 << 20;
    public const int MinBlockSize = 64 << 10;
    public const int MaxBlockSize = 16 << 20;

    /// <summary>Null when the block size is allowed, otherwise why not.</summary>
    public static string? ValidateBlockSize(long blockSize)
    {
        if (blockSize < MinBlockSize || blockSize > MaxBlockSize)
        {
            return $"block size {blockSize} is out of range: use a power of two from 64 KiB to 16 MiB (e.g. 4M)";
        }
        if ((blockSize & (blockSize - 1)) != 0)
        {
            return $"block size {blockSize} is not a power of two: use a power of two from 64 KiB to 16 MiB (e.g. 4M)";
        }
        return null;
    }

    public static void CheckBlockSize(int blockSize)
    {
        var error = ValidateBlockSize(blockSize);
        if (error is not null)
        {
            throw new ArgumentOutOfRangeException(nameof(blockSize), error);
        }
    }

    public static long ChunkIndex(long fileOffset)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(fileOffset);
        return fileOffset / ChunkSize;
    }

    public static int OffsetInChunk(long fileOffset)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(fileOffset);
        return (int)(fileOffset % ChunkSize);
    }

    /// <summary>Cuts the file range [offset, offset+length) at chunk boundaries. Zero length gives no pieces.</summary>
    public static IReadOnlyList<ChunkPiece> SplitByChunk(long offset, long length)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(offset);
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        if (length > long.MaxValue - offset)
        {
            throw new ArgumentOutOfRangeException(nameof(length), "range ends past the largest file offset");
        }
        var pieces = new List<ChunkPiece>();
        long done = 0;
        while (done < length)
        {
            var pos = offset + done;
            var inChunk = OffsetInChunk(pos);
            var n = (int)Math.Min(length - done, ChunkSize - inChunk);
            pieces.Add(new ChunkPiece(ChunkIndex(pos), inChunk, n, done));
            done += n;
        }
        return pieces;
    }

    /// <summary>Number of blocks a slice of <paramref name="sliceSize"/> bytes is stored as.</summary>
    public static int BlockCount(long sliceSize, int blockSize)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(sliceSize);
        CheckBlockSize(blockSize);
        return (int)((sliceSize + blockSize - 1) / blockSize);
    }

    /// <summary>The blocks of a slice: all of <paramref name="blockSize"/> bytes except a shorter last one.</summary>
    public static IReadOnlyList<BlockSpan> Blocks(int sliceSize, int blockSize)
    {
        var count = BlockCount(sliceSize, blockSize);
        var blocks = new BlockSpan[count];
        for (var i = 0; i < count; i++)
        {
            var start = i * blockSize;
            blocks[i] = new BlockSpan(i, start, Math.Min(blockSize, sliceSize - start));
        }
        return blocks;
    }

    /// <summary>The block reads needed for bytes [offset, offset+length) of a slice of <paramref name="sliceSize"/>
    /// bytes. The range is clipped to the slice.</summary>
    public static IReadOnlyList<BlockRead> ReadsWithinSlice(int sliceSize, int blockSize, int offset, int length)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(sliceSize);
        ArgumentOutOfRangeException.ThrowIfNegative(offset);
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        CheckBlockSize(blockSize);
        var end = (int)Math.Min((long)offset + length, sliceSize);
        var reads = new List<BlockRead>();
        var pos = offset;
        while (pos < end)
        {
            var index = pos / blockSize;
            var blockStart = index * blockSize;
            var size = Math.Min(blockSize, sliceSize - blockStart);
            var n = Math.Min(end, blockStart + size) - pos;
            reads.Add(new BlockRead(index, size, pos - blockStart, n));
            pos += n;
        }
        return reads;
    }

    /// <summary>The object key of a block: <c>{volume}/chunks/{id/1_000_000}/{id/1_000}/{id}_{index}_{size}</c>.</summary>
    public static string Key(string volume, ulong sliceId, int index, int size)
    {
        ArgumentException.ThrowIfNullOrEmpty(volume);
        ArgumentOutOfRangeException.ThrowIfNegative(index);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(size);
        var inv = CultureInfo.InvariantCulture;
        return string.Create(inv, $"{volume}/chunks/{sliceId / 1_000_000}/{sliceId / 1_000}/{sliceId}_{index}_{size}");
    }

    /// <summary>The prefix under which all of a volume's blocks live.</summary>
    public static string ChunksPrefix(string volume) => volume + "/chunks/";

    /// <summary>Parses a key made by <see cref="Key"/> for <paramref name="volume"/>. Anything else — another
    /// volume, a wrong directory for the id, leading zeros, a zero size, stray characters — is not ours.</summary>
    public static bool TryParseKey(string volume, string key, out BlockKey block)
    {
        block = default;
        var prefix = ChunksPrefix(volume);
        if (!key.StartsWith(prefix, StringComparison.Ordinal))
        {
            return false;
        }
        var parts = key.AsSpan(prefix.Length);
        // dir1 / dir2 / id_index_size
        var s1 = parts.IndexOf('/');
        if (s1 <= 0)
        {
            return false;
        }
        var rest = parts[(s1 + 1)..];
        var s2 = rest.IndexOf('/');
        if (s2 <= 0)
        {
            return false;
        }
        var name = rest[(s2 + 1)..];
        if (!TryCanonical(parts[..s1], out var dir1) || !TryCanonical(rest[..s2], out var dir2))
        {
            return false;
        }
        var u1 = name.IndexOf('_');
        if (u1 <= 0)
        {
            return false;
        }
        var afterId = name[(u1 + 1)..];
        var u2 = afterId.IndexOf('_');
        if (u2 <= 0)
        {
            return false;
        }
        if (!TryCanonical(name[..u1], out var id) || !TryCanonical(afterId[..u2], out var index)
            || !TryCanonical(afterId[(u2 + 1)..], out var size))
        {
            return false;
        }
        if (dir1 != id / 1_000_000 || dir2 != id / 1_000 || index > int.MaxValue || size == 0 || size > MaxBlockSize)
        {
            return false;
        }
        block = new BlockKey(id, (int)index, (int)size);
        return true;
    }

    // Decimal digits only, no sign, no leading zero (except "0" itself), fits in ulong.
    private static bool TryCanonical(ReadOnlySpan<char> s, out ulong value)
    {
        value = 0;
        if (s.IsEmpty || s.Length > 20 || (s.Length > 1 && s[0] == '0'))
        {
            return false;
        }
        foreach (var c in s)
        {
            if (c is < '0' or > '9')
            {
                return false;
            }
        }
        return ulong.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out value);
    }
}
