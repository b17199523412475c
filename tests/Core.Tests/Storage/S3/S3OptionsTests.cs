using MirrorFS.Core.Storage.S3;

namespace MirrorFS.Core.Tests.Storage.S3;

public sealed class S3OptionsTests
{
    [Fact]
    public void ParsesTheFullForm()
    {
        var o = S3Options.FromUri(new Uri(
            "s3://my-bucket/vol/one?endpoint=http://127.0.0.1:8080&region=eu-west-2&path-style=false"));
        Assert.Equal("my-bucket", o.Bucket);
        Assert.Equal("", o.Prefix); // applied by ObjectStoreFactory with a PrefixObjectStore
        Assert.Equal(new Uri("http://127.0.0.1:8080"), o.Endpoint);
        Assert.Equal("eu-west-2", o.Region);
        Assert.False(o.PathStyle);
        Assert.Null(o.AccessKey);
        Assert.Null(o.SecretKey);
    }

    [Theory]
    [InlineData("s3://bucket", null, false)]
    [InlineData("s3://bucket?endpoint=http://127.0.0.1:8080", "http://127.0.0.1:8080/", true)]
    [InlineData("s3://bucket?endpoint=http://[::1]:8080", "http://[::1]:8080/", true)]
    [InlineData("s3://bucket?endpoint=http://localhost:9000", "http://localhost:9000/", true)]
    [InlineData("s3://bucket?endpoint=https://s3.example.com", "https://s3.example.com/", false)]
    [InlineData("s3://bucket/?endpoint=https://s3.example.com&path-style=true", "https://s3.example.com/", true)]
    public void DefaultsPathStyleByEndpoint(string uri, string? endpoint, bool pathStyle)
    {
        var o = S3Options.FromUri(new Uri(uri));
        Assert.Equal(endpoint, o.Endpoint?.ToString());
        Assert.Equal(pathStyle, o.PathStyle);
        Assert.Equal("", o.Prefix);
        Assert.Equal(S3Options.DefaultRegion, o.Region);
    }

    [Fact]
    public void DecodesCredentialsInUserInfo()
    {
        var o = S3Options.FromUri(new Uri("s3://test%3Atester:se%2Fcr+et%40x@bucket?endpoint=http://127.0.0.1:1"));
        Assert.Equal("test:tester", o.AccessKey);
        Assert.Equal("se/cr+et@x", o.SecretKey);
        Assert.Null(o.SessionToken);
    }

    [Fact]
    public void ReadsCredentialsFromTheQuery()
    {
        var o = S3Options.FromUri(new Uri(
            "s3://bucket/p?access-key=AKIDEXAMPLE&secret-key=wJal%2FrXUtnFEMI%2BK7MDENG&session-token=tok%3D%3D"));
        Assert.Equal("AKIDEXAMPLE", o.AccessKey);
        Assert.Equal("wJal/rXUtnFEMI+K7MDENG", o.SecretKey);
        Assert.Equal("tok==", o.SessionToken);
        Assert.Equal("", o.Prefix);
    }

    [Fact]
    public void ToStringHidesTheSecret()
    {
        var o = S3Options.FromUri(new Uri("s3://AK:hidden-secret-value@bucket?session-token=hidden-token-value"));
        Assert.DoesNotContain("hidden-secret-value", o.ToString(), StringComparison.Ordinal);
        Assert.DoesNotContain("hidden-token-value", o.ToString(), StringComparison.Ordinal);
        Assert.Contains("bucket", o.ToString(), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("http://bucket")]
    [InlineData("s3://Bu")]
    [InlineData("s3://bucket_with_underscore")]
    [InlineData("s3://bucket:9000")]
    [InlineData("s3://bucket/a//b")]
    [InlineData("s3://bucket?endpoint=ftp://127.0.0.1")]
    [InlineData("s3://bucket?endpoint=http://127.0.0.1:8080/some/path")]
    [InlineData("s3://bucket?endpoint=not-a-url")]
    [InlineData("s3://bucket?region=US_EAST")]
    [InlineData("s3://bucket?path-style=maybe")]
    [InlineData("s3://bucket?colour=blue")]
    [InlineData("s3://bucket?region=us-east-1&region=us-east-2")]
    [InlineData("s3://AK:hidden-secret-value@bucket?access-key=AK2")]
    [InlineData("s3://bucket?access-key=AK")]
    [InlineData("s3://bucket?secret-key=hidden-secret-value")]
    [InlineData("s3://bucket?session-token=hidden-secret-value")]
    [InlineData("s3://AK:@bucket")]
    [InlineData("s3://bucket#frag")]
    public void RejectsMalformedUrisWithTheExpectedForm(string uri)
    {
        var e = Assert.Throws<ArgumentException>(() => S3Options.FromUri(new Uri(uri)));
        Assert.Contains("expected s3://", e.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("hidden-secret-value", e.Message, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public async Task StoreDescriptionNamesBucketPrefixAndEndpointButNoSecret()
    {
        var o = S3Options.FromUri(new Uri("s3://AK:hidden-secret-value@bucket?endpoint=http://127.0.0.1:8080"));
        await using var store = new S3ObjectStore(o with { Prefix = "vol/" });
        Assert.Equal("s3://bucket/vol (http://127.0.0.1:8080)", store.Description);
        await using var aws = new S3ObjectStore(S3Options.FromUri(new Uri("s3://AK:x@bucket?region=eu-west-1")));
        Assert.Equal("s3://bucket (https://s3.eu-west-1.amazonaws.com)", aws.Description);
    }
}
