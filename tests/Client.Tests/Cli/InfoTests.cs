using System.Text;
using MirrorFS.Client.Cli;
using MirrorFS.Core.Layout;
using MirrorFS.Core.Meta;

namespace MirrorFS.Client.Tests.Cli;

public sealed class InfoTests
{
    private const int Block = 1 << 20;

    [Fact]
    public void OneSliceSpanningBlocks()
    {
        // 2.5 MiB slice at chunk position 100: blocks of 1 MiB, 1 MiB and 0.5 MiB.
        var size = (Block * 2) + (Block / 2);
        var rows = InfoCommand.Rows("vol", Block, 0, [new Slice { Id = 7, Size = (uint)size, Offset = 0, Length = (uint)size, Pos = 100 }]);
        Assert.Equal(
        [
            new BlockRow(0, 7, 100, "vol/chunks/0/0/7_0_1048576", Block, 0, Block),
            new BlockRow(0, 7, 100 + Block, "vol/chunks/0/0/7_1_1048576", Block, 0, Block),
            new BlockRow(0, 7, 100 + (2 * Block), "vol/chunks/0/0/7_2_524288", Block / 2, 0, Block / 2),
        ], rows);
    }

    [Fact]
    public void PartOfASliceInALaterChunkAndAHole()
    {
        // The slice shows bytes [Block - 10, Block + 20) of its 3 MiB object at position 0 of chunk 2.
        var slices = new[]
        {
            new Slice { Id = 1_234_567, Size = 3 * Block, Offset = Block - 10, Length = 30, Pos = 0 },
            new Slice { Id = 0, Size = 0, Offset = 0, Length = 4096, Pos = 8192 },
            new Slice { Id = 9, Size = 10, Offset = 0, Length = 0, Pos = 0 }, // empty: nothing to show
        };
        var rows = InfoCommand.Rows("v1", Block, 2, slices);
        long chunk2 = 2L * BlockLayout.ChunkSize;
        Assert.Equal(
        [
            new BlockRow(2, 1_234_567, chunk2, BlockLayout.Key("v1", 1_234_567, 0, Block), Block, Block - 10, 10),
            new BlockRow(2, 1_234_567, chunk2 + 10, BlockLayout.Key("v1", 1_234_567, 1, Block), Block, 0, 20),
            new BlockRow(2, 0, chunk2 + 8192, InfoCommand.Hole, 0, 0, 4096),
        ], rows);
        Assert.Equal("v1/chunks/1/1234/1234567_0_1048576", rows[0].Key);
    }

    [Fact]
    public async Task WritesInodeLengthAndBlocksFromTheMetaserver()
    {
        await using var f = await MetaServerFixture.StartAsync();
        var formatted = await CliHarness.RunAsync("format", f.Url("myfs"), "myfs", "--storage", f.StorageUri, "--block-size", "1M");
        Assert.True(formatted.ExitCode == 0, formatted.Err);
        await using var meta = new RpcMetaClient(new RpcMetaClientOptions { Addresses = [f.Host.Address], BearerToken = MetaServerFixture.Token });
        var file = await meta.MknodAsync(new MknodRequest { Parent = 1, Name = Google.Protobuf.ByteString.CopyFrom(Encoding.UTF8.GetBytes("f")), Mode = 0x81A4 });
        Assert.Equal(0, file.Errno);
        var ids = await meta.NewSliceIdsAsync(new NewSliceIdsRequest { Count = 2 });
        var size = Block + 5;
        Assert.Equal(0, (await meta.WriteSliceAsync(new WriteSliceRequest
        {
            Inode = file.Attr.Inode, ChunkIndex = 0, Slice = new Slice { Id = ids.FirstId, Size = (uint)size, Length = (uint)size },
        })).Errno);
        Assert.Equal(0, (await meta.WriteSliceAsync(new WriteSliceRequest
        {
            Inode = file.Attr.Inode, ChunkIndex = 1, Slice = new Slice { Id = ids.FirstId + 1, Size = 100, Length = 100, Pos = 0 },
        })).Errno);

        var o = new StringWriter();
        var ctx = new CliContext(o, TextWriter.Null, _ => null);
        await InfoCommand.WriteAsync(ctx, meta, MetaUrl.Parse(f.Url("myfs")), "/mnt/f", file.Attr.Inode, CancellationToken.None);
        var text = o.ToString();
        Assert.Contains($"inode:  {file.Attr.Inode}", text, StringComparison.Ordinal);
        Assert.Contains($"length: {BlockLayout.ChunkSize + 100}", text, StringComparison.Ordinal);
        Assert.Contains(BlockLayout.Key("myfs", ids.FirstId, 0, Block), text, StringComparison.Ordinal);
        Assert.Contains(BlockLayout.Key("myfs", ids.FirstId, 1, 5), text, StringComparison.Ordinal);
        Assert.Contains(BlockLayout.Key("myfs", ids.FirstId + 1, 0, 100), text, StringComparison.Ordinal);
    }

    [Fact]
    public async Task PathOutsideAMountIsOneLine()
    {
        var dir = Directory.CreateTempSubdirectory("mirrorfs-info-");
        try
        {
            var run = await CliHarness.RunAsync("info", dir.FullName);
            Assert.Equal(1, run.ExitCode);
            Assert.Single(run.ErrLines);
            Assert.Contains("is not inside a mirrorfs mount", run.Err, StringComparison.Ordinal);
        }
        finally
        {
            dir.Delete();
        }
    }

    [Fact]
    public void InodeOfMatchesTheFileSystem()
    {
        var file = Path.GetTempFileName();
        try
        {
            var ino = InfoCommand.InodeOf(file);
            Assert.NotEqual(0UL, ino);
            // A hard link shares the inode; a different file does not.
            var link = file + ".link";
            File.CreateSymbolicLink(link, file);
            Assert.Equal(ino, InfoCommand.InodeOf(link)); // stat follows the link
            File.Delete(link);
            var other = Path.GetTempFileName();
            Assert.NotEqual(ino, InfoCommand.InodeOf(other));
            File.Delete(other);
        }
        finally
        {
            File.Delete(file);
        }
    }
}
