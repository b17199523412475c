// The OSS test server answers as the OSS API reference says: raw signed HTTP requests against it, no store in between.
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Security.Cryptography;
using System.Xml.Linq;
using MirrorFS.Core.Storage.Oss;
using MirrorFS.Testing.Oss;

namespace MirrorFS.Core.Tests.Storage.Oss;

public sealed class OssTestServerTests : IAsyncLifetime
{
    private const string KeyId = "raw-ak";
    private const string Secret = "raw-secret";
    private const string Bucket = "raw-bucket";
    private readonly HttpClient _http = new();
    private OssTestServer _server = null!;

    public async Task InitializeAsync()
    {
        _server = new OssTestServer(new OssTestServerOptions { AccessKeyId = KeyId, AccessKeySecret = Secret, Buckets = { Bucket } });
        await _server.StartAsync();
    }

    public async Task DisposeAsync()
    {
        _http.Dispose();
        await _server.DisposeAsync();
    }

    [Fact]
    public async Task EveryAnswerCarriesARequestIdAndErrorsAreNamespaceFreeXml()
    {
        using var put = await SendAsync(HttpMethod.Put, "dir/obj", body: "0123456789"u8.ToArray());
        Assert.Equal(HttpStatusCode.OK, put.StatusCode);
        Assert.Equal("\"781E5E245D69B566979B86E28D23F2C7\"", put.Headers.ETag?.Tag);
        Assert.True(put.Headers.Contains("x-oss-request-id"));

        using var missing = await SendAsync(HttpMethod.Get, "dir/none");
        Assert.Equal(HttpStatusCode.NotFound, missing.StatusCode);
        var error = XDocument.Parse(await missing.Content.ReadAsStringAsync()).Root!;
        Assert.Equal("Error", error.Name.LocalName);
        Assert.Equal("", error.Name.NamespaceName);
        Assert.Equal("NoSuchKey", error.Element("Code")?.Value);
        Assert.Equal(missing.Headers.GetValues("x-oss-request-id").Single(), error.Element("RequestId")?.Value);
        Assert.NotNull(error.Element("Message"));
        Assert.NotNull(error.Element("HostId"));

        using var headMissing = await SendAsync(HttpMethod.Head, "dir/none");
        Assert.Equal(HttpStatusCode.NotFound, headMissing.StatusCode);
        Assert.True(headMissing.Headers.Contains("x-oss-request-id"));

        using var head = await SendAsync(HttpMethod.Head, "dir/obj");
        Assert.Equal(10, head.Content.Headers.ContentLength);
        Assert.NotNull(head.Content.Headers.LastModified);

        using var anonymous = await _http.GetAsync(new Uri($"{_server.Endpoint}/{Bucket}/dir/obj"));
        Assert.Equal(HttpStatusCode.Forbidden, anonymous.StatusCode);
        Assert.Contains("<Code>AccessDenied</Code>", await anonymous.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        Assert.True(anonymous.Headers.Contains("x-oss-request-id"));
    }

    [Theory]
    [InlineData("bytes=2-5", false, 206, "2345", "bytes 2-5/10")]
    [InlineData("bytes=7-", false, 206, "789", "bytes 7-9/10")]
    [InlineData("bytes=-3", false, 206, "789", "bytes 7-9/10")]
    [InlineData("bytes=5-15", false, 200, "0123456789", null)]
    [InlineData("bytes=15-25", false, 200, "0123456789", null)]
    [InlineData("bytes=5-15", true, 206, "56789", "bytes 5-9/10")]
    [InlineData("bytes=15-25", true, 416, null, "bytes */10")]
    [InlineData("bytes=3-1", false, 200, "0123456789", null)]
    public async Task RangesFollowTheReferenceWithAndWithoutStandardBehaviour(string range, bool standard, int status, string? body, string? contentRange)
    {
        using (await SendAsync(HttpMethod.Put, "r", body: "0123456789"u8.ToArray()))
        {
        }
        var headers = new List<KeyValuePair<string, string>> { new("Range", range) };
        if (standard)
        {
            headers.Add(new("x-oss-range-behavior", "standard"));
        }
        using var response = await SendAsync(HttpMethod.Get, "r", headers: headers);
        Assert.Equal(status, (int)response.StatusCode);
        var text = await response.Content.ReadAsStringAsync();
        if (body is not null)
        {
            Assert.Equal(body, text);
        }
        else
        {
            Assert.Contains("<Code>InvalidRange</Code>", text, StringComparison.Ordinal);
        }
        Assert.Equal(contentRange, response.Content.Headers.TryGetValues("Content-Range", out var v) ? v.Single() : null);
    }

    [Fact]
    public async Task ListingPagesWithNextMarkerAndUrlEncoding()
    {
        string[] keys = ["p/a", "p/b c", "p/d+e", "p/ü", "q/z"];
        foreach (var key in keys)
        {
            using (await SendAsync(HttpMethod.Put, key, body: [1]))
            {
            }
        }
        using var first = await SendAsync(HttpMethod.Get, "", query: [new("prefix", "p/"), new("max-keys", "2")]);
        var root = XDocument.Parse(await first.Content.ReadAsStringAsync()).Root!;
        Assert.Equal("ListBucketResult", root.Name.LocalName);
        Assert.Equal("", root.Name.NamespaceName);
        Assert.Equal("true", root.Element("IsTruncated")?.Value);
        Assert.Equal("p/b c", root.Element("NextMarker")?.Value);
        Assert.Equal(["p/a", "p/b c"], root.Elements("Contents").Select(c => c.Element("Key")!.Value));

        using var rest = await SendAsync(HttpMethod.Get, "",
            query: [new("prefix", "p/"), new("marker", "p/b c"), new("encoding-type", "url")]);
        root = XDocument.Parse(await rest.Content.ReadAsStringAsync()).Root!;
        Assert.Equal("false", root.Element("IsTruncated")?.Value);
        Assert.Null(root.Element("NextMarker"));
        Assert.Equal("url", root.Element("EncodingType")?.Value);
        Assert.Equal(["p/d%2Be", "p/%C3%BC"], root.Elements("Contents").Select(c => c.Element("Key")!.Value));

        using var bad = await SendAsync(HttpMethod.Get, "", query: [new("max-keys", "1001")]);
        Assert.Equal(HttpStatusCode.BadRequest, bad.StatusCode);
    }

    [Fact]
    public async Task DigestsAreChecked()
    {
        using var put = await SendAsync(HttpMethod.Put, "k", body: "abc"u8.ToArray(), contentMd5: Convert.ToBase64String(MD5.HashData("abd"u8)));
        Assert.Equal(HttpStatusCode.BadRequest, put.StatusCode);
        Assert.Contains("<Code>InvalidDigest</Code>", await put.Content.ReadAsStringAsync(), StringComparison.Ordinal);

        var xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Delete><Quiet>false</Quiet><Object><Key>k</Key></Object><Object><Key>a&amp;b</Key></Object></Delete>"u8.ToArray();
        using var noMd5 = await SendAsync(HttpMethod.Post, "", query: [new("delete", null)], body: xml, contentType: "application/xml", withMd5: false);
        Assert.Equal(HttpStatusCode.BadRequest, noMd5.StatusCode);

        using var verbose = await SendAsync(HttpMethod.Post, "", query: [new("delete", null)], body: xml, contentType: "application/xml");
        Assert.Equal(HttpStatusCode.OK, verbose.StatusCode);
        var root = XDocument.Parse(await verbose.Content.ReadAsStringAsync()).Root!;
        Assert.Equal(["k", "a&b"], root.Elements("Deleted").Select(d => d.Element("Key")!.Value));
    }

    [Fact]
    public async Task VirtualHostedRequestsNameTheBucketInTheHost()
    {
        using (await SendAsync(HttpMethod.Put, "vh", body: "v"u8.ToArray()))
        {
        }
        using var get = await SendAsync(HttpMethod.Get, "vh", virtualHost: true);
        Assert.Equal(HttpStatusCode.OK, get.StatusCode);
        Assert.Equal("v", await get.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task ADirectoryBackedServerKeepsObjectsAcrossRestarts()
    {
        using var dir = new TempDir();
        var options = new OssTestServerOptions { AccessKeyId = KeyId, AccessKeySecret = Secret, DataDirectory = dir.Path, Buckets = { "disk-bucket" } };
        var key = "a/ü b/" + new string('x', 300);
        await using (var first = new OssTestServer(options))
        {
            await first.StartAsync();
            await using var store = StoreOn(first, "disk-bucket");
            await store.PutAsync(key, "persisted"u8.ToArray());
            await store.PutAsync("gone", "x"u8.ToArray());
            await store.DeleteAsync("gone");
        }
        await using (var second = new OssTestServer(new OssTestServerOptions { AccessKeyId = KeyId, AccessKeySecret = Secret, DataDirectory = dir.Path }))
        {
            await second.StartAsync();
            await using var store = StoreOn(second, "disk-bucket");
            Assert.Equal("persisted"u8.ToArray(), await store.GetAsync(key));
            Assert.Equal([key], (await store.ListAsync("")).Objects.Select(o => o.Key));
        }
    }

    [Fact]
    public async Task TheExecutableServesUntilStopped()
    {
        var dll = typeof(OssTestServer).Assembly.Location;
        using var dir = new TempDir();
        var start = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            ArgumentList = { dll, "--listen", "127.0.0.1:0", "--data", dir.Path, "--bucket", "cli-bucket", "--access-key", KeyId },
            Environment = { ["MIRRORFS_OSS_SECRET_KEY"] = Secret },
        };
        using var process = Process.Start(start)!;
        try
        {
            var readLine = process.StandardOutput.ReadLineAsync();
            var line = await readLine.WaitAsync(TimeSpan.FromSeconds(30));
            Assert.NotNull(line);
            var endpoint = line.Split(' ').Single(w => w.StartsWith("http://", StringComparison.Ordinal));
            await using var store = new OssObjectStore(OssOptions.FromUri(new Uri(
                $"oss://{KeyId}:{Secret}@cli-bucket?endpoint={endpoint}&region=cn-hangzhou"), _ => null));
            await store.PutAsync("k", "from the binary"u8.ToArray());
            Assert.Equal("from the binary"u8.ToArray(), await store.GetAsync("k"));
        }
        finally
        {
            process.Kill();
            await process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(30));
        }

        using var bad = Process.Start(new ProcessStartInfo("dotnet")
        {
            RedirectStandardError = true,
            RedirectStandardOutput = true,
            ArgumentList = { dll, "--listen", "127.0.0.1:0", "--bucket", "x" },
        })!;
        var stderr = await bad.StandardError.ReadToEndAsync().WaitAsync(TimeSpan.FromSeconds(30));
        await bad.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(2, bad.ExitCode);
        Assert.Contains("--access-key and --secret-key are required", stderr, StringComparison.Ordinal);
        Assert.Contains("usage: mirrorfs-oss-testserver --listen", stderr, StringComparison.Ordinal);
    }

    private static OssObjectStore StoreOn(OssTestServer server, string bucket) =>
        new(OssOptions.FromUri(new Uri($"oss://{KeyId}:{Secret}@{bucket}?endpoint={server.Endpoint}&region=cn-hangzhou"), _ => null));

    /// <summary>A V4-signed request made by hand, so that the server's answer is seen as it is.</summary>
    private async Task<HttpResponseMessage> SendAsync(HttpMethod method, string key, byte[]? body = null,
        IReadOnlyList<KeyValuePair<string, string>>? headers = null, IReadOnlyList<KeyValuePair<string, string?>>? query = null,
        string? contentType = null, string? contentMd5 = null, bool withMd5 = true, bool virtualHost = false)
    {
        query ??= [];
        var now = DateTimeOffset.UtcNow;
        var timestamp = OssSigner.V4Timestamp(now);
        var signed = new List<KeyValuePair<string, string>>
        {
            new("x-oss-date", timestamp), new("x-oss-content-sha256", OssSigner.UnsignedPayload),
        };
        signed.AddRange(headers ?? []);
        if (body is not null)
        {
            contentType ??= "application/octet-stream";
            contentMd5 ??= withMd5 ? Convert.ToBase64String(MD5.HashData(body)) : null;
            signed.Add(new("Content-Type", contentType));
            if (contentMd5 is not null)
            {
                signed.Add(new("Content-MD5", contentMd5));
            }
        }
        var scope = OssSigner.V4Scope(timestamp[..8], "cn-hangzhou");
        var canonical = OssSigner.V4CanonicalRequest(method.Method, OssSigner.V4CanonicalUri(Bucket, key),
            OssSigner.V4CanonicalQuery(query), signed, [], OssSigner.UnsignedPayload);
        var signature = OssSigner.V4Signature(Secret, timestamp[..8], "cn-hangzhou", OssSigner.V4StringToSign(timestamp, scope, canonical));

        var path = (virtualHost ? "/" : $"/{Bucket}/") + OssSigner.UriEncode(key, keepSlash: true);
        var queryText = string.Join('&', query.Select(q => q.Value is null
            ? OssSigner.UriEncode(q.Key, false)
            : OssSigner.UriEncode(q.Key, false) + "=" + OssSigner.UriEncode(q.Value, false)));
        var url = _server.Endpoint + path + (queryText.Length > 0 ? "?" + queryText : "");
        using var message = new HttpRequestMessage(method, new Uri(url));
        if (virtualHost)
        {
            message.Headers.Host = $"{Bucket}.127.0.0.1:{_server.Port.ToString(CultureInfo.InvariantCulture)}";
        }
        foreach (var (name, value) in signed.Where(h => !h.Key.StartsWith("Content-", StringComparison.Ordinal)))
        {
            message.Headers.TryAddWithoutValidation(name, value);
        }
        message.Headers.TryAddWithoutValidation("Authorization", OssSigner.V4Authorization(KeyId, scope, [], signature));
        if (body is not null)
        {
            message.Content = new ByteArrayContent(body);
            message.Content.Headers.TryAddWithoutValidation("Content-Type", contentType);
            if (contentMd5 is not null)
            {
                message.Content.Headers.TryAddWithoutValidation("Content-MD5", contentMd5);
            }
        }
        return await _http.SendAsync(message);
    }
}
