using MirrorFS.Client.Cli;

namespace MirrorFS.Client.Tests.Cli;

public sealed class SizesTests
{
    [Theory]
    [InlineData("0", 0L)]
    [InlineData("4096", 4096L)]
    [InlineData("64K", 64L << 10)]
    [InlineData("64k", 64L << 10)]
    [InlineData("4M", 4L << 20)]
    [InlineData("4MiB", 4L << 20)]
    [InlineData("16MB", 16L << 20)]
    [InlineData("1G", 1L << 30)]
    [InlineData("2T", 2L << 40)]
    [InlineData(" 8M ", 8L << 20)]
    public void Parses(string text, long bytes) => Assert.Equal(bytes, Sizes.Parse(text, "size"));

    [Theory]
    [InlineData("")]
    [InlineData("M")]
    [InlineData("-4M")]
    [InlineData("4X")]
    [InlineData("4.5M")]
    [InlineData("4 M")]
    [InlineData("99999999999T")]
    public void RejectsWithOneLine(string text)
    {
        var e = Assert.Throws<CliException>(() => Sizes.Parse(text, "--block-size"));
        Assert.Contains("--block-size", e.Message, StringComparison.Ordinal);
        Assert.Contains("e.g. 4M", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(100L, "100 B")]
    [InlineData(4096L, "4 KiB")]
    [InlineData(4L << 20, "4 MiB")]
    [InlineData(3L << 29, "1.5 GiB")]
    public void Formats(long bytes, string text) => Assert.Equal(text, Sizes.Format(bytes));
}
