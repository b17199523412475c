// The fingerprint of a chunk's slice list that CompactChunk compares: client and engine must compute it alike.
using System.Buffers.Binary;
using System.Security.Cryptography;

namespace MirrorFS.Core.Meta;

/// <summary>
/// SHA-256 over the slices in list order, each as 24 little-endian bytes: id (8), size, offset, length, pos (4
/// each). Equal digests mean equal lists, and since blocks are immutable, equal chunk content.
/// FROZEN: CompactChunk commands in the log carry digests made this way.
/// </summary>
public sealed class SliceDigest : IDisposable
{
    public const int SliceBytes = 24;

    private readonly IncrementalHash _hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);

    public void Add(ulong id, uint size, uint offset, uint length, uint pos)
    {
        Span<byte> b = stackalloc byte[SliceBytes];
        BinaryPrimitives.WriteUInt64LittleEndian(b, id);
        BinaryPrimitives.WriteUInt32LittleEndian(b[8..], size);
        BinaryPrimitives.WriteUInt32LittleEndian(b[12..], offset);
        BinaryPrimitives.WriteUInt32LittleEndian(b[16..], length);
        BinaryPrimitives.WriteUInt32LittleEndian(b[20..], pos);
        _hash.AppendData(b);
    }

    public byte[] Finish() => _hash.GetHashAndReset();

    public static byte[] Of(IEnumerable<Slice> slices)
    {
        using var d = new SliceDigest();
        foreach (var s in slices)
        {
            d.Add(s.Id, s.Size, s.Offset, s.Length, s.Pos);
        }
        return d.Finish();
    }

    public void Dispose() => _hash.Dispose();
}
