using MirrorFS.Client.Cli;

namespace MirrorFS.Client.Tests.Cli;

public sealed class MetaUrlTests
{
    [Fact]
    public void ParsesOneMember()
    {
        var u = MetaUrl.Parse("mirrorfs://127.0.0.1:9400/myfs");
        Assert.Equal(["127.0.0.1:9400"], u.Addresses);
        Assert.Equal("myfs", u.Volume);
        Assert.Null(u.Token);
        Assert.Equal("mirrorfs://127.0.0.1:9400/myfs", u.ToString());
        Assert.Equal(u.ToString(), u.Redacted);
    }

    [Fact]
    public void ParsesSeveralMembersAndTheToken()
    {
        var u = MetaUrl.Parse("mirrorfs://:s3cr%2Ft@meta-1.example:9400,meta-2:9401,[::1]:9402/vol-2/");
        Assert.Equal(["meta-1.example:9400", "meta-2:9401", "[::1]:9402"], u.Addresses);
        Assert.Equal("vol-2", u.Volume);
        Assert.Equal("s3cr/t", u.Token);
        Assert.Equal("mirrorfs://meta-1.example:9400,meta-2:9401,[::1]:9402/vol-2", u.ToString());
        Assert.Equal("mirrorfs://:***@meta-1.example:9400,meta-2:9401,[::1]:9402/vol-2", u.Redacted);
        Assert.DoesNotContain("s3cr", u.Redacted, StringComparison.Ordinal);
    }

    [Fact]
    public void VolumeMayBeLeftOutOnlyWhenAllowed()
    {
        Assert.Equal("", MetaUrl.Parse("mirrorfs://h:1", volumeRequired: false).Volume);
        var e = Assert.Throws<CliException>(() => MetaUrl.Parse("mirrorfs://h:1"));
        Assert.Contains("names no volume", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("")]
    [InlineData("http://h:1/v1")]
    [InlineData("mirrorfs:///v1")]
    [InlineData("mirrorfs://host/v1")]
    [InlineData("mirrorfs://host:0/v1")]
    [InlineData("mirrorfs://host:70000/v1")]
    [InlineData("mirrorfs://host:x/v1")]
    [InlineData("mirrorfs://h:1,/v1")]
    [InlineData("mirrorfs://h_x:1/v1")]
    [InlineData("mirrorfs://h:1/UPPER")]
    [InlineData("mirrorfs://h:1/-lead")]
    [InlineData("mirrorfs://h:1/a")]
    [InlineData("mirrorfs://h:1/a/b")]
    [InlineData("mirrorfs://:@h:1/v1")]
    public void RejectsWithTheExpectedFormOrTheNameRule(string text)
    {
        var e = Assert.Throws<CliException>(() => MetaUrl.Parse(text));
        Assert.DoesNotContain('\n', e.Message);
        Assert.True(e.Message.Contains(MetaUrl.ExpectedForm, StringComparison.Ordinal)
                    || e.Message.Contains(MetaUrl.VolumeNameRule, StringComparison.Ordinal), e.Message);
    }

    [Fact]
    public void ErrorsNeverEchoTheToken()
    {
        var e = Assert.Throws<CliException>(() => MetaUrl.Parse("mirrorfs://:TOPSECRET@host:notaport/v1"));
        Assert.DoesNotContain("TOPSECRET", e.Message, StringComparison.Ordinal);
        e = Assert.Throws<CliException>(() => MetaUrl.Parse("https://:TOPSECRET@host:1/v1"));
        Assert.DoesNotContain("TOPSECRET", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("ab", true)]
    [InlineData("my-fs-01", true)]
    [InlineData("0abc", true)]
    [InlineData("a", false)]
    [InlineData("-ab", false)]
    [InlineData("My", false)]
    [InlineData("a_b", false)]
    public void VolumeNames(string name, bool valid) => Assert.Equal(valid, MetaUrl.IsValidVolumeName(name));

    [Fact]
    public void VolumeNameAtMost63Characters()
    {
        Assert.True(MetaUrl.IsValidVolumeName(new string('a', 63)));
        Assert.False(MetaUrl.IsValidVolumeName(new string('a', 64)));
    }

    [Fact]
    public void TokenComesFromTheUrlThenTheFileThenTheEnvironment()
    {
        var file = Path.GetTempFileName();
        try
        {
            File.WriteAllText(file, "from-file\n");
            var env = new CliContext(TextWriter.Null, TextWriter.Null, k => k == MetaConnection.TokenEnvironment ? "from-env" : null);
            Assert.Equal("from-url", MetaConnection.ResolveToken(MetaUrl.Parse("mirrorfs://:from-url@h:1/v1"), file, env));
            Assert.Equal("from-file", MetaConnection.ResolveToken(MetaUrl.Parse("mirrorfs://h:1/v1"), file, env));
            Assert.Equal("from-env", MetaConnection.ResolveToken(MetaUrl.Parse("mirrorfs://h:1/v1"), null, env));
            var none = new CliContext(TextWriter.Null, TextWriter.Null, _ => null);
            Assert.Null(MetaConnection.ResolveToken(MetaUrl.Parse("mirrorfs://h:1/v1"), null, none));
            Assert.Throws<CliException>(() => MetaConnection.ResolveToken(MetaUrl.Parse("mirrorfs://h:1/v1"), file + ".missing", none));
        }
        finally
        {
            File.Delete(file);
        }
    }
}
