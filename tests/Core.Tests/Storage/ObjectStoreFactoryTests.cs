using MirrorFS.Core.Storage;

namespace MirrorFS.Core.Tests.Storage;

public sealed class ObjectStoreFactoryTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public async Task OpensAFileStoreWithRetries()
    {
        await using var store = ObjectStoreFactory.Open("file://" + _dir.Path + "/vol");
        Assert.IsType<RetryingObjectStore>(store);
        await store.PutAsync("a", "x"u8.ToArray());
        Assert.True(File.Exists(Path.Combine(_dir.Path, "vol", "a")));
        Assert.Equal("file://" + _dir.Path + "/vol", store.Description);
    }

    [Theory]
    [InlineData("")]
    [InlineData("not a uri")]
    [InlineData("ftp://host/x")]
    [InlineData("file://")]
    [InlineData("file:///")]
    [InlineData("file://otherhost/x")]
    [InlineData("s3://")]
    [InlineData("s3://bucket?endpoint=::bad::")]
    [InlineData("oss://")]
    public void MalformedUrisGetOneLineNamingTheExpectedForm(string uri)
    {
        var e = Assert.ThrowsAny<ArgumentException>(() => ObjectStoreFactory.OpenRaw(uri));
        Assert.DoesNotContain('\n', e.Message);
        Assert.Matches("file://|s3://|oss://", e.Message);
    }

    [Theory]
    [InlineData("s3://AKID:SeCrEt@bucket?endpoint=http://127.0.0.1:8080", "s3://AKID:***@bucket?endpoint=http://127.0.0.1:8080")]
    [InlineData("oss://bucket?endpoint=e&access-key=AK&secret-key=SeCrEt&security-token=ToKeN", "oss://bucket?endpoint=e&access-key=AK&secret-key=***&security-token=***")]
    [InlineData("file:///data/x", "file:///data/x")]
    [InlineData("s3://test%3Atester:SeCrEt@b", "s3://test%3Atester:***@b")]
    public void RedactsSecrets(string uri, string expected)
    {
        var redacted = ObjectStoreFactory.Redact(uri);
        Assert.Equal(expected, redacted);
        Assert.DoesNotContain("SeCrEt", redacted, StringComparison.Ordinal);
    }

    [Fact]
    public void MalformedUriErrorNeverShowsTheSecret()
    {
        var e = Assert.ThrowsAny<ArgumentException>(() => ObjectStoreFactory.OpenRaw("gopher://AK:SeCrEt@x"));
        Assert.DoesNotContain("SeCrEt", e.Message, StringComparison.Ordinal);
    }
}
