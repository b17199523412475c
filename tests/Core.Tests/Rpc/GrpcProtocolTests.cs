using MirrorFS.Core.Rpc;

namespace MirrorFS.Core.Tests.Rpc;

public sealed class GrpcProtocolTests
{
    [Theory]
    [InlineData("1H", 3_600_000_000_0L)]
    [InlineData("2M", 1_200_000_000L)]
    [InlineData("3S", 30_000_000L)]
    [InlineData("250m", 2_500_000L)]
    [InlineData("7u", 70L)]
    [InlineData("150n", 2L)]
    [InlineData("99999999H", 99_999_999L * 36_000_000_000L)]
    [InlineData("0m", 0L)]
    public void ParseTimeout_AllUnits(string text, long ticks)
    {
        Assert.True(GrpcProtocol.TryParseTimeout(text, out var timeout));
        Assert.Equal(ticks, timeout.Ticks);
    }

    [Theory]
    [InlineData("")]
    [InlineData("m")]
    [InlineData("10")]
    [InlineData("10x")]
    [InlineData("-1m")]
    [InlineData("123456789m")]
    [InlineData("1.5S")]
    [InlineData(" 1S")]
    public void ParseTimeout_RejectsMalformed(string text) =>
        Assert.False(GrpcProtocol.TryParseTimeout(text, out _));

    [Theory]
    [InlineData(1L, "1u")]
    [InlineData(10_000L, "1m")]
    [InlineData(12_345L, "1235u")]
    [InlineData(300L * 10_000, "300m")]
    [InlineData(500L * 10_000_000, "500000m")]
    [InlineData(2L * 86_400 * 10_000_000, "172800S")]
    [InlineData(99_999_999L * 10_000, "99999999m")]
    [InlineData(200L * 86_400 * 10_000_000, "17280000S")]
    public void FormatTimeout_RoundsUpAndFitsEightDigits(long ticks, string expected)
    {
        var text = GrpcProtocol.FormatTimeout(TimeSpan.FromTicks(ticks));
        Assert.Equal(expected, text);
        Assert.True(GrpcProtocol.TryParseTimeout(text, out var back));
        Assert.True(back.Ticks >= ticks, "a formatted timeout must never be shorter than the real one");
    }

    [Fact]
    public void FormatTimeout_HugeIsClampedAndStillParses()
    {
        var text = GrpcProtocol.FormatTimeout(TimeSpan.MaxValue);
        Assert.True(text.Length <= 9);
        Assert.True(GrpcProtocol.TryParseTimeout(text, out _));
    }

    [Theory]
    [InlineData("plain text", "plain text")]
    [InlineData("100%", "100%25")]
    [InlineData("a\nb", "a%0Ab")]
    [InlineData("é", "%C3%A9")]
    [InlineData("🚀", "%F0%9F%9A%80")]
    [InlineData("~ }", "~ }")]
    public void EncodeMessage_PercentEncodesOutsidePrintableAscii(string message, string wire)
    {
        Assert.Equal(wire, GrpcProtocol.EncodeMessage(message));
        Assert.Equal(message, GrpcProtocol.DecodeMessage(wire));
    }

    [Fact]
    public void EncodeMessage_CutsLongMessagesWithoutSplittingSurrogates()
    {
        var message = new string('a', GrpcProtocol.StatusMessageCharsMax - 1) + "🚀" + new string('b', 5000);

        var decoded = GrpcProtocol.DecodeMessage(GrpcProtocol.EncodeMessage(message));

        Assert.Equal(new string('a', GrpcProtocol.StatusMessageCharsMax - 1) + "...", decoded);
    }

    [Theory]
    [InlineData("50%", "50%")]
    [InlineData("%zz", "%zz")]
    [InlineData("%4", "%4")]
    [InlineData("%41%", "A%")]
    [InlineData("%c3%a9", "é")]
    public void DecodeMessage_KeepsMalformedEscapes(string wire, string message) =>
        Assert.Equal(message, GrpcProtocol.DecodeMessage(wire));

    [Theory]
    [InlineData("application/grpc", true)]
    [InlineData("application/grpc+proto", true)]
    [InlineData("application/grpc; charset=utf-8", true)]
    [InlineData("Application/GRPC", true)]
    [InlineData("application/grpc-web", false)]
    [InlineData("application/json", false)]
    [InlineData(null, false)]
    public void IsGrpcContentType(string? contentType, bool expected) =>
        Assert.Equal(expected, GrpcProtocol.IsGrpcContentType(contentType));

    [Fact]
    public void Metadata_RejectsReservedAndInvalid()
    {
        var metadata = new RpcMetadata();
        Assert.Throws<ArgumentException>(() => metadata.Add("grpc-status", "0"));
        Assert.Throws<ArgumentException>(() => metadata.Add("authorization", "Bearer x"));
        Assert.Throws<ArgumentException>(() => metadata.Add("Upper", "x"));
        Assert.Throws<ArgumentException>(() => metadata.Add("x-ok", "line\nbreak"));
        Assert.Throws<InvalidOperationException>(() => RpcMetadata.Empty.Add("x-a", "b"));
        metadata.Add("x-a", "1").Add("x-a", "2");
        Assert.Equal("1", metadata.Get("x-a"));
        Assert.Equal(["1", "2"], metadata.GetAll("x-a"));
    }

    [Theory]
    [InlineData("127.0.0.1:0", "127.0.0.1:0")]
    [InlineData("localhost:7000", "127.0.0.1:7000")]
    [InlineData("[::1]:5", "[::1]:5")]
    [InlineData("0.0.0.0:80", "0.0.0.0:80")]
    public void ParseListen(string listen, string expected) =>
        Assert.Equal(expected, RpcServer.ParseListen(listen).ToString());

    [Theory]
    [InlineData("127.0.0.1")]
    [InlineData("nohost:1")]
    [InlineData("127.0.0.1:70000")]
    public void ParseListen_RejectsBadInput(string listen) =>
        Assert.Throws<ArgumentException>(() => RpcServer.ParseListen(listen));
}
