using MirrorFS.Core.Layout;

namespace MirrorFS.Core.Tests.Layout;

public sealed class BlockLayoutTests
{
    private const int Mi = 1 << 20;
    private const int Bs = BlockLayout.DefaultBlockSize;

    [Fact]
    public void ZeroLengthWriteHasNoPiecesAndZeroSliceHasNoBlocks()
    {
        Assert.Empty(BlockLayout.SplitByChunk(12345, 0));
        Assert.Empty(BlockLayout.Blocks(0, Bs));
        Assert.Equal(0, BlockLayout.BlockCount(0, Bs));
        Assert.Empty(BlockLayout.ReadsWithinSlice(100, Bs, 50, 0));
    }

    [Fact]
    public void WriteCrossingAChunkBoundaryIsSplit()
    {
        var start = (64L * Mi) - 10;
        var pieces = BlockLayout.SplitByChunk(start, 30);
        Assert.Equal([new ChunkPiece(0, (64 * Mi) - 10, 10, 0), new ChunkPiece(1, 0, 20, 10)], pieces);
    }

    [Fact]
    public void WriteSpanningSeveralChunks()
    {
        var pieces = BlockLayout.SplitByChunk(5, (3L * 64 * Mi) + 1);
        Assert.Equal(4, pieces.Count);
        Assert.Equal(new ChunkPiece(0, 5, (64 * Mi) - 5, 0), pieces[0]);
        Assert.Equal(new ChunkPiece(1, 0, 64 * Mi, (64 * Mi) - 5), pieces[1]);
        Assert.Equal(new ChunkPiece(3, 0, 6, (3L * 64 * Mi) - 5), pieces[3]);
        Assert.Equal((3L * 64 * Mi) + 1, pieces.Sum(p => (long)p.Length));
    }

    [Fact]
    public void WriteEndingExactlyOnABoundaryStaysInOneChunk()
    {
        var pieces = BlockLayout.SplitByChunk(64L * Mi, 64 * Mi);
        Assert.Equal([new ChunkPiece(1, 0, 64 * Mi, 0)], pieces);
    }

    [Fact]
    public void OffsetsFarBeyondFourGiB()
    {
        var offset = (5L << 40) + 7; // 5 TiB
        Assert.Equal((5L << 40) / (64 * Mi), BlockLayout.ChunkIndex(offset));
        Assert.Equal(7, BlockLayout.OffsetInChunk(offset));
    }

    [Fact]
    public void LastPartialBlockIsShorter()
    {
        var blocks = BlockLayout.Blocks((2 * Bs) + 1234, Bs);
        Assert.Equal([new BlockSpan(0, 0, Bs), new BlockSpan(1, Bs, Bs), new BlockSpan(2, 2 * Bs, 1234)], blocks);
        var exact = BlockLayout.Blocks(2 * Bs, Bs);
        Assert.Equal(2, exact.Count);
        Assert.Equal(Bs, exact[1].Size);
        Assert.Equal([new BlockSpan(0, 0, 1)], BlockLayout.Blocks(1, Bs));
    }

    [Fact]
    public void ReadWithinSliceSpansBlocksAndIsClipped()
    {
        var size = (2 * Bs) + 100;
        var reads = BlockLayout.ReadsWithinSlice(size, Bs, Bs - 10, 30);
        Assert.Equal([new BlockRead(0, Bs, Bs - 10, 10), new BlockRead(1, Bs, 0, 20)], reads);
        var tail = BlockLayout.ReadsWithinSlice(size, Bs, (2 * Bs) + 50, 1000);
        Assert.Equal([new BlockRead(2, 100, 50, 50)], tail);
        Assert.Empty(BlockLayout.ReadsWithinSlice(size, Bs, size + 5, 10));
    }

    [Theory]
    [InlineData(64 << 10, true)]
    [InlineData(4 << 20, true)]
    [InlineData(16 << 20, true)]
    [InlineData(32 << 10, false)]
    [InlineData(32 << 20, false)]
    [InlineData(3 << 20, false)]
    [InlineData(0, false)]
    [InlineData(-4194304, false)]
    public void BlockSizeRules(long size, bool ok)
    {
        Assert.Equal(ok, BlockLayout.ValidateBlockSize(size) is null);
    }

    [Fact]
    public void KeyHasTheExactShape()
    {
        Assert.Equal("vol/chunks/0/0/1_0_4194304", BlockLayout.Key("vol", 1, 0, 4194304));
        Assert.Equal("vol/chunks/1/1234/1234567_15_100", BlockLayout.Key("vol", 1_234_567, 15, 100));
        var big = (1UL << 32) + 5; // 4294967301
        Assert.Equal("myfs/chunks/4294/4294967/4294967301_3_65536", BlockLayout.Key("myfs", big, 3, 65536));
        Assert.Equal("v/chunks/18446744073709/18446744073709551/18446744073709551615_0_1",
            BlockLayout.Key("v", ulong.MaxValue, 0, 1));
    }

    [Theory]
    [InlineData(1UL, 0, 1)]
    [InlineData(999UL, 2, 4194304)]
    [InlineData(1_000_000UL, 7, 12)]
    [InlineData((1UL << 32) + 1, 15, 16 << 20)]
    [InlineData(ulong.MaxValue, int.MaxValue, 1)]
    public void KeyParsesBack(ulong id, int index, int size)
    {
        var key = BlockLayout.Key("vol", id, index, size);
        Assert.True(BlockLayout.TryParseKey("vol", key, out var parsed));
        Assert.Equal(new BlockKey(id, index, size), parsed);
    }

    [Theory]
    [InlineData("vol/chunks/0/0/1_0")]                  // too few fields
    [InlineData("vol/chunks/0/0/1_0_4_5")]              // too many
    [InlineData("vol/chunks/0/1/1_0_4")]                // wrong id/1000 dir
    [InlineData("vol/chunks/1/0/1_0_4")]                // wrong id/1e6 dir
    [InlineData("vol/chunks/0/0/01_0_4")]               // leading zero
    [InlineData("vol/chunks/0/0/1_0_0")]                // zero size
    [InlineData("vol/chunks/0/0/1_-1_4")]               // sign
    [InlineData("vol/chunks/0/0/1_0_4.tmp")]            // stray suffix
    [InlineData("vol/chunks/0/0/x/1_0_4")]              // extra directory
    [InlineData("vol/chunks/0/0/1_0_33554432")]         // above the largest block size
    [InlineData("vol/chunks/0/0/1_2147483648_4")]       // index beyond int
    [InlineData("vol/chunks/0/0/18446744073709551616_0_4")] // id beyond ulong
    [InlineData("other/chunks/0/0/1_0_4")]              // another volume
    [InlineData("vol2/chunks/0/0/1_0_4")]               // a volume whose name extends ours
    [InlineData("vol/mirrorfs_uuid")]
    [InlineData("vol/meta/dump-2026.json.gz")]
    [InlineData("vol/chunks/")]
    public void ForeignKeysAreNotOurs(string key)
    {
        Assert.False(BlockLayout.TryParseKey("vol", key, out _));
    }
}
