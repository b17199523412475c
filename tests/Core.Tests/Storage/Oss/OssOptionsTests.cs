using MirrorFS.Core.Storage;
using MirrorFS.Core.Storage.Oss;

namespace MirrorFS.Core.Tests.Storage.Oss;

public sealed class OssOptionsTests
{
    private static readonly Func<string, string?> NoEnvironment = _ => null;

    private static OssOptions Parse(string uri, Func<string, string?>? env = null) =>
        OssOptions.FromUri(new Uri(uri), env ?? NoEnvironment);

    [Fact]
    public void ParsesANamedEndpointWithUserInfoCredentials()
    {
        var o = Parse("oss://LTAI5tExample:se%2Fcr%2Bet%40x@my-bucket?endpoint=oss-cn-hangzhou.aliyuncs.com");
        Assert.Equal("my-bucket", o.Bucket);
        Assert.Equal("oss-cn-hangzhou.aliyuncs.com", o.Endpoint);
        Assert.Equal("https", o.Scheme);
        Assert.Equal("LTAI5tExample", o.AccessKeyId);
        Assert.Equal("se/cr+et@x", o.AccessKeySecret);
        Assert.Equal("cn-hangzhou", o.Region);
        Assert.Equal(OssSignatureVersion.V4, o.SignatureVersion);
        Assert.False(o.UsesPathStyle);
        Assert.Null(o.SecurityToken);
        Assert.Equal("oss://my-bucket (oss-cn-hangzhou.aliyuncs.com)", o.Description);
    }

    [Fact]
    public void ParsesALocalEndpointWithSchemePortAndQueryCredentials()
    {
        var o = Parse("oss://bkt/some/prefix?endpoint=http://127.0.0.1:9000&region=cn-test&signature=v1"
            + "&access-key=AK&secret-key=S%2BK&security-token=TOKEN&timeout-ms=1500&connect-timeout-ms=200");
        Assert.Equal("127.0.0.1:9000", o.Endpoint);
        Assert.Equal("http", o.Scheme);
        Assert.True(o.UsesPathStyle);
        Assert.Equal(OssSignatureVersion.V1, o.SignatureVersion);
        Assert.Equal(("AK", "S+K", "TOKEN"), (o.AccessKeyId, o.AccessKeySecret, o.SecurityToken));
        Assert.Equal("cn-test", o.Region);
        Assert.Equal((1500, 200), (o.RequestTimeoutMs, o.ConnectTimeoutMs));
        Assert.Equal("oss://bkt (http://127.0.0.1:9000)", o.Description);
    }

    [Fact]
    public void DerivesTheRegionFromInternalAndPublicEndpointsOrFromRegionAlone()
    {
        Assert.Equal("cn-beijing", OssOptions.RegionFromEndpoint("oss-cn-beijing-internal.aliyuncs.com"));
        Assert.Equal("ap-southeast-1", OssOptions.RegionFromEndpoint("oss-ap-southeast-1.aliyuncs.com:443"));
        Assert.Null(OssOptions.RegionFromEndpoint("127.0.0.1:9000"));
        var o = Parse("oss://AK:SK@bkt?region=us-west-1");
        Assert.Equal("oss-us-west-1.aliyuncs.com", o.Endpoint);
        Assert.Equal("us-west-1", o.Region);
    }

    [Fact]
    public void ForcesPathStyleOnRequest()
    {
        Assert.True(Parse("oss://AK:SK@bkt?endpoint=oss.example.com&region=r&path-style=true").UsesPathStyle);
        Assert.False(Parse("oss://AK:SK@bkt?endpoint=localhost:9000&region=r&path-style=false").UsesPathStyle);
        Assert.True(Parse("oss://AK:SK@bkt?endpoint=localhost:9000&region=r").UsesPathStyle);
    }

    [Fact]
    public void TakesCredentialsFromTheEnvironmentInOrder()
    {
        var env = new Dictionary<string, string>
        {
            ["OSS_ACCESS_KEY_ID"] = "ossak", ["OSS_ACCESS_KEY_SECRET"] = "osssk", ["OSS_SESSION_TOKEN"] = "osstok",
            ["ALIBABA_CLOUD_ACCESS_KEY_ID"] = "aliak", ["ALIBABA_CLOUD_ACCESS_KEY_SECRET"] = "alisk",
            ["ALIBABA_CLOUD_SECURITY_TOKEN"] = "alitok",
        };
        var o = Parse("oss://bkt?endpoint=oss-cn-hangzhou.aliyuncs.com", n => env.GetValueOrDefault(n));
        Assert.Equal(("ossak", "osssk", "osstok"), (o.AccessKeyId, o.AccessKeySecret, o.SecurityToken));

        env.Remove("OSS_ACCESS_KEY_ID");
        o = Parse("oss://bkt?endpoint=oss-cn-hangzhou.aliyuncs.com", n => env.GetValueOrDefault(n));
        Assert.Equal(("aliak", "alisk", "alitok"), (o.AccessKeyId, o.AccessKeySecret, o.SecurityToken));

        // Credentials in the URI win over the environment.
        o = Parse("oss://uri-ak:uri-sk@bkt?endpoint=oss-cn-hangzhou.aliyuncs.com", n => env.GetValueOrDefault(n));
        Assert.Equal(("uri-ak", "uri-sk", null), (o.AccessKeyId, o.AccessKeySecret, o.SecurityToken));
    }

    [Theory]
    [InlineData("oss://", "bucket name")]
    [InlineData("oss://AK:SK@Bad_Bucket?endpoint=e.com&region=r", "bucket name")]
    [InlineData("oss://AK:SK@ab?endpoint=e.com&region=r", "bucket name")]
    [InlineData("oss://AK:SK@bkt", "endpoint= is required")]
    [InlineData("oss://AK:SK@bkt?endpoint=127.0.0.1:9000", "region= is required")]
    [InlineData("oss://AK:SK@bkt?endpoint=ftp://h&region=r", "scheme must be http or https")]
    [InlineData("oss://AK:SK@bkt?endpoint=h/path&region=r", "must be host[:port]")]
    [InlineData("oss://AK:SK@bkt?endpoint=h&region=r&signature=v3", "signature must be v4 or v1")]
    [InlineData("oss://AK:SK@bkt?endpoint=h&region=r&colour=blue", "unknown parameter 'colour'")]
    [InlineData("oss://AK:SK@bkt?endpoint=h&region=r&timeout-ms=-5", "timeout-ms must be a positive integer")]
    [InlineData("oss://bkt?endpoint=h&region=r", "no credentials")]
    [InlineData("oss://bkt?endpoint=h&region=r&access-key=AK", "given together")]
    [InlineData("s3://AK:SK@bkt?endpoint=h&region=r", "scheme must be oss://")]
    [InlineData("oss://AK:SK@bkt:99?endpoint=h&region=r", "no port")]
    public void MalformedUrisGetOneLineStatingTheExpectedForm(string uri, string reason)
    {
        var e = Assert.Throws<ArgumentException>(() => Parse(uri));
        Assert.Contains(reason, e.Message, StringComparison.Ordinal);
        Assert.Contains(OssOptions.UriForm, e.Message, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void NoMessageOrDescriptionShowsTheSecret()
    {
        var e = Assert.Throws<ArgumentException>(() => Parse("oss://AK:TopSecret1@bkt?endpoint=h&region=r&bogus=1"));
        Assert.DoesNotContain("TopSecret1", e.Message, StringComparison.Ordinal);
        e = Assert.Throws<ArgumentException>(() => Parse("oss://bkt?endpoint=h&region=r&access-key=AK&secret-key=TopSecret2&bogus=1"));
        Assert.DoesNotContain("TopSecret2", e.Message, StringComparison.Ordinal);
        e = Assert.Throws<ArgumentException>(() => Parse("oss://bkt?endpoint=h&region=r&access-key=AK&secret-key=S&security-token=TopSecret3&x=1"));
        Assert.DoesNotContain("TopSecret3", e.Message, StringComparison.Ordinal);

        var o = Parse("oss://AK:TopSecret4@bkt?endpoint=h&region=r&security-token=TopSecret5");
        Assert.DoesNotContain("TopSecret", o.ToString(), StringComparison.Ordinal);
        Assert.DoesNotContain("TopSecret", o.Description, StringComparison.Ordinal);
    }

    [Fact]
    public void TheFactoryOpensAnOssStoreUnderTheUriPrefix()
    {
        // ObjectStoreFactory calls OssOptions.FromUri and new OssObjectStore(options), then adds the prefix itself.
        var options = Parse("oss://AK:SK@bkt/vol1?endpoint=http://127.0.0.1:9&region=r");
        Assert.Equal("bkt", options.Bucket);
        var store = new OssObjectStore(options);
        Assert.Equal("oss://bkt (http://127.0.0.1:9)", store.Description);
        Assert.IsAssignableFrom<IObjectStore>(store);
    }
}
