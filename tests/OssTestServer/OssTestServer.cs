// An HTTP server that speaks the OSS object API (as Alibaba's public API reference describes it) for tests and
// local deployments: PutObject, GetObject (ranges), HeadObject, DeleteObject, ListObjects, DeleteMultipleObjects,
// V1 and V4 signatures, STS tokens, path-style and virtual-hosted-style addressing, and injectable faults.
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using System.Xml;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace MirrorFS.Testing.Oss;

/// <summary>
/// A real OSS-protocol server on a real port. Start it, point a client at <see cref="Endpoint"/> with path-style
/// addressing, and dispose it. Faults for retry tests: <see cref="FailNextRequests"/>,
/// <see cref="DelayNextRequests"/>, <see cref="AbortNextRequests"/>.
/// </summary>
public sealed class OssTestServer : IAsyncDisposable
{
    /// <summary>DeleteMultipleObjects accepts at most this many keys and this many body bytes.</summary>
    public const int DeleteKeysMax = 1000;
    public const int DeleteBodyBytesMax = 2 * 1024 * 1024;
    /// <summary>Injected faults queued at most.</summary>
    public const int FaultsMax = 100_000;
    private const int KeyBytesMax = 1023;

    private readonly OssTestServerOptions _options;
    private readonly BucketStorage _storage;
    private readonly SignatureVerifier _verifier;
    private readonly TimeProvider _time = TimeProvider.System;
    private readonly Lock _faultLock = new();
    private readonly Queue<Fault> _faults = new();
    private readonly string _requestIdPrefix = Convert.ToHexString(RandomNumberGenerator.GetBytes(4));
    private WebApplication? _app;
    private long _requests;

    public OssTestServer(OssTestServerOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (string.IsNullOrEmpty(options.AccessKeyId) || string.IsNullOrEmpty(options.AccessKeySecret))
        {
            throw new ArgumentException("the OSS test server needs an access key id and secret", nameof(options));
        }
        _options = options;
        _storage = new BucketStorage(options.DataDirectory);
        _verifier = new SignatureVerifier(options, _time);
        foreach (var bucket in options.Buckets)
        {
            CreateBucket(bucket);
        }
    }

    /// <summary>The port listened on, known after <see cref="StartAsync"/>.</summary>
    public int Port { get; private set; }

    /// <summary><c>http://127.0.0.1:PORT</c>: what a client's endpoint= should say.</summary>
    public string Endpoint
    {
        get
        {
            var address = IPAddress.Parse(_options.ListenAddress);
            var host = address.AddressFamily == AddressFamily.InterNetworkV6 ? $"[{address}]" : address.ToString();
            return $"http://{host}:{Port.ToString(CultureInfo.InvariantCulture)}";
        }
    }

    /// <summary>Requests received so far, faulted ones included.</summary>
    public long RequestCount => Interlocked.Read(ref _requests);

    public void CreateBucket(string name)
    {
        if (!IsBucketName(name))
        {
            throw new ArgumentException($"'{name}' is not a valid OSS bucket name (3-63 lowercase letters, digits, hyphens)", nameof(name));
        }
        _storage.CreateBucket(name);
    }

    /// <summary>The next <paramref name="count"/> requests get this error instead of being served.</summary>
    public void FailNextRequests(int count, int statusCode = 503, string code = "ServiceUnavailable") =>
        Enqueue(count, new Fault(FaultKind.Fail, statusCode, code, 0));

    /// <summary>The next <paramref name="count"/> requests wait <paramref name="delayMs"/> before being served.</summary>
    public void DelayNextRequests(int count, int delayMs) => Enqueue(count, new Fault(FaultKind.Delay, 0, "", delayMs));

    /// <summary>The next <paramref name="count"/> requests have their connection dropped without an answer.</summary>
    public void AbortNextRequests(int count) => Enqueue(count, new Fault(FaultKind.Abort, 0, "", 0));

    public async Task StartAsync(CancellationToken ct = default)
    {
        if (_app is not null)
        {
            throw new InvalidOperationException("the OSS test server is already started");
        }
        var builder = WebApplication.CreateEmptyBuilder(new WebApplicationOptions());
        builder.Logging.ClearProviders();
        builder.WebHost.UseKestrelCore();
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.AddServerHeader = false;
            kestrel.Limits.MaxRequestBodySize = _options.ObjectBytesMax + 1;
            kestrel.Listen(IPAddress.Parse(_options.ListenAddress), _options.Port,
                listen => listen.Protocols = HttpProtocols.Http1);
        });
        var app = builder.Build();
        app.Run(HandleAsync);
        await app.StartAsync(ct).ConfigureAwait(false);
        var address = app.Services.GetRequiredService<IServer>().Features.GetRequiredFeature<IServerAddressesFeature>()
            .Addresses.First();
        Port = new Uri(address).Port;
        _app = app;
    }

    public async ValueTask DisposeAsync()
    {
        if (_app is { } app)
        {
            _app = null;
            using var stopping = new CancellationTokenSource(TimeSpan.FromSeconds(5));
            await app.StopAsync(stopping.Token).ConfigureAwait(false);
            await app.DisposeAsync().ConfigureAwait(false);
        }
    }

    private void Enqueue(int count, Fault fault)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        lock (_faultLock)
        {
            if (_faults.Count + count > FaultsMax)
            {
                throw new ArgumentOutOfRangeException(nameof(count), $"at most {FaultsMax} faults can be queued");
            }
            for (var i = 0; i < count; i++)
            {
                _faults.Enqueue(fault);
            }
        }
    }

    private Fault? TakeFault()
    {
        lock (_faultLock)
        {
            return _faults.TryDequeue(out var fault) ? fault : null;
        }
    }

    private async Task HandleAsync(HttpContext context)
    {
        var started = Stopwatch.GetTimestamp();
        var number = Interlocked.Increment(ref _requests);
        var requestId = _requestIdPrefix + number.ToString("X16", CultureInfo.InvariantCulture);
        var response = context.Response;
        response.Headers["x-oss-request-id"] = requestId;
        response.Headers.Date = _time.GetUtcNow().ToString("R", CultureInfo.InvariantCulture);
        response.Headers.Server = "MirrorFS-OssTestServer";
        try
        {
            var fault = TakeFault();
            if (fault?.Kind == FaultKind.Abort)
            {
                context.Abort();
                return;
            }
            if (fault?.Kind == FaultKind.Delay)
            {
                await Task.Delay(fault.DelayMs, context.RequestAborted).ConfigureAwait(false);
            }
            var error = fault?.Kind == FaultKind.Fail
                ? new OssError(fault.Status, fault.Code, "Injected fault: the test server was told to fail this request.")
                : await ServeAsync(context).ConfigureAwait(false);
            if (error is not null)
            {
                await WriteErrorAsync(context, error, requestId).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
        {
            // The client went away.
        }
        catch (Microsoft.AspNetCore.Http.BadHttpRequestException e)
        {
            await WriteErrorAsync(context, new OssError(e.StatusCode, "InvalidRequest", e.Message), requestId).ConfigureAwait(false);
        }
        finally
        {
            _options.Log?.Invoke(string.Create(CultureInfo.InvariantCulture,
                $"{context.Request.Method} {context.Features.GetRequiredFeature<IHttpRequestFeature>().RawTarget} -> {response.StatusCode} in {Stopwatch.GetElapsedTime(started).TotalMilliseconds:F1} ms"));
        }
    }

    private async Task<OssError?> ServeAsync(HttpContext context)
    {
        var request = Parse(context, out var parseError);
        if (request is null)
        {
            return parseError;
        }
        if (_verifier.Verify(request) is { } authError)
        {
            return authError;
        }
        if (request.Bucket is null)
        {
            return new OssError(501, "NotImplemented", "This test server does not list buckets.");
        }
        if (!_storage.BucketExists(request.Bucket))
        {
            return new OssError(404, "NoSuchBucket", "The specified bucket does not exist.").With("BucketName", request.Bucket);
        }
        if (request.Key.Length == 0)
        {
            return request.Method switch
            {
                "GET" when OnlyQuery(request, "prefix", "marker", "max-keys", "delimiter", "encoding-type") =>
                    await ListObjectsAsync(context, request).ConfigureAwait(false),
                "POST" when request.HasQuery("delete") && OnlyQuery(request, "delete", "encoding-type") =>
                    await DeleteMultipleAsync(context, request).ConfigureAwait(false),
                _ => new OssError(501, "NotImplemented", $"This test server does not implement {request.Method} on a bucket with this query."),
            };
        }
        if (Encoding.UTF8.GetByteCount(request.Key) > KeyBytesMax || request.Key[0] is '/' or '\\')
        {
            return new OssError(400, "InvalidObjectName", "The specified object is not valid.");
        }
        if (!request.Query.All(q => q.Key.StartsWith("response-", StringComparison.Ordinal)))
        {
            return new OssError(501, "NotImplemented", "This test server does not implement object sub-resources.");
        }
        return request.Method switch
        {
            "PUT" => await PutObjectAsync(context, request).ConfigureAwait(false),
            "GET" => await GetObjectAsync(context, request, withBody: true).ConfigureAwait(false),
            "HEAD" => await GetObjectAsync(context, request, withBody: false).ConfigureAwait(false),
            "DELETE" => DeleteObject(context, request),
            _ => new OssError(405, "MethodNotAllowed", "The specified method is not allowed against this resource."),
        };
    }

    private ParsedRequest? Parse(HttpContext context, out OssError? error)
    {
        error = null;
        var target = context.Features.GetRequiredFeature<IHttpRequestFeature>().RawTarget;
        var question = target.IndexOf('?', StringComparison.Ordinal);
        var path = PercentDecode(question < 0 ? target : target[..question]);
        var query = new List<KeyValuePair<string, string>>();
        if (question >= 0)
        {
            foreach (var part in target[(question + 1)..].Split('&', StringSplitOptions.RemoveEmptyEntries))
            {
                var eq = part.IndexOf('=', StringComparison.Ordinal);
                var name = PercentDecode(eq < 0 ? part : part[..eq]);
                var value = eq < 0 ? "" : PercentDecode(part[(eq + 1)..]);
                if (name is null || value is null)
                {
                    error = new OssError(400, "InvalidURI", "The query string is not valid percent-encoded UTF-8.");
                    return null;
                }
                query.Add(new(name, value));
            }
        }
        if (path is null || !path.StartsWith('/'))
        {
            error = new OssError(400, "InvalidURI", "The request path is not valid percent-encoded UTF-8.");
            return null;
        }

        string? bucket;
        string key;
        var virtualBucket = VirtualHostBucket(context.Request.Host.Host);
        if (virtualBucket is not null)
        {
            bucket = virtualBucket;
            key = path[1..];
        }
        else
        {
            var slash = path.IndexOf('/', 1);
            bucket = slash < 0 ? path[1..] : path[1..slash];
            key = slash < 0 ? "" : path[(slash + 1)..];
            if (bucket.Length == 0)
            {
                bucket = null;
            }
            else if (!IsBucketName(bucket))
            {
                error = new OssError(400, "InvalidBucketName", "The specified bucket is not valid.").With("BucketName", bucket);
                return null;
            }
        }

        var headers = new List<KeyValuePair<string, string>>();
        foreach (var (name, values) in context.Request.Headers)
        {
            foreach (var value in values)
            {
                headers.Add(new(name, value ?? ""));
            }
        }
        return new ParsedRequest(context.Request.Method, bucket, key, query, headers);
    }

    /// <summary><c>bucket.127.0.0.1</c> or <c>bucket.localhost</c> names a bucket; a bare IP or localhost does not.</summary>
    private static string? VirtualHostBucket(string host)
    {
        var dot = host.IndexOf('.', StringComparison.Ordinal);
        if (dot <= 0 || IPAddress.TryParse(host, out _))
        {
            return null;
        }
        var rest = host[(dot + 1)..];
        var candidate = host[..dot];
        var isServiceHost = IPAddress.TryParse(rest, out _) || string.Equals(rest, "localhost", StringComparison.OrdinalIgnoreCase)
            || rest.EndsWith(".aliyuncs.com", StringComparison.OrdinalIgnoreCase);
        return isServiceHost && IsBucketName(candidate) ? candidate : null;
    }

    private async Task<OssError?> PutObjectAsync(HttpContext context, ParsedRequest request)
    {
        if (context.Request.ContentLength > _options.ObjectBytesMax)
        {
            return new OssError(400, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed size.");
        }
        var data = await ReadBodyAsync(context, _options.ObjectBytesMax).ConfigureAwait(false);
        if (data is null)
        {
            return new OssError(400, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed size.");
        }
        if (request.Header("Content-MD5") is { } md5 && md5 != Convert.ToBase64String(MD5.HashData(data)))
        {
            return new OssError(400, "InvalidDigest", "The Content-MD5 you specified did not match what was received.");
        }
        var info = await _storage.WriteAsync(request.Bucket!, request.Key, data, _time.GetUtcNow(), context.RequestAborted)
            .ConfigureAwait(false);
        context.Response.StatusCode = 200;
        context.Response.Headers.ETag = info.ETag;
        context.Response.Headers["Content-MD5"] = Convert.ToBase64String(MD5.HashData(data));
        context.Response.ContentLength = 0;
        return null;
    }

    private async Task<OssError?> GetObjectAsync(HttpContext context, ParsedRequest request, bool withBody)
    {
        var response = context.Response;
        if (!withBody)
        {
            var head = _storage.Head(request.Bucket!, request.Key);
            if (head is null)
            {
                return new OssError(404, "NoSuchKey", "The specified key does not exist.").With("Key", request.Key);
            }
            SetObjectHeaders(response, head);
            response.StatusCode = 200;
            response.ContentLength = head.Size;
            return null;
        }

        var found = await _storage.ReadAsync(request.Bucket!, request.Key, context.RequestAborted).ConfigureAwait(false);
        if (found is not { } stored)
        {
            return new OssError(404, "NoSuchKey", "The specified key does not exist.").With("Key", request.Key);
        }
        var (info, data) = stored;
        SetObjectHeaders(response, info);
        var standard = string.Equals(request.Header("x-oss-range-behavior"), "standard", StringComparison.OrdinalIgnoreCase);
        var range = ParseRange(request.Header("Range"), data.Length);
        if (range is { } r)
        {
            if (r.Start >= data.Length || r.End >= data.Length)
            {
                if (standard && r.Start >= data.Length)
                {
                    response.Headers.ContentRange = $"bytes */{data.Length}";
                    return new OssError(416, "InvalidRange", "The requested range cannot be satisfied.");
                }
                if (!standard)
                {
                    // Without x-oss-range-behavior: standard, OSS answers an out-of-range request with the whole object.
                    range = null;
                }
                else
                {
                    range = (r.Start, data.Length - 1L);
                }
            }
        }
        if (range is { } served)
        {
            var length = (int)(served.End - served.Start + 1);
            response.StatusCode = 206;
            response.Headers.ContentRange = $"bytes {served.Start}-{served.End}/{data.Length}";
            response.ContentLength = length;
            await response.Body.WriteAsync(data.AsMemory((int)served.Start, length), context.RequestAborted).ConfigureAwait(false);
            return null;
        }
        response.StatusCode = 200;
        response.ContentLength = data.Length;
        await response.Body.WriteAsync(data, context.RequestAborted).ConfigureAwait(false);
        return null;
    }

    /// <summary>A single <c>bytes=a-b</c>, <c>bytes=a-</c> or <c>bytes=-n</c> range; null when absent or malformed
    /// (OSS then serves the whole object). The end may lie past the object; the caller decides.</summary>
    private static (long Start, long End)? ParseRange(string? header, long size)
    {
        if (header is null || !header.StartsWith("bytes=", StringComparison.Ordinal) || header.Contains(',', StringComparison.Ordinal))
        {
            return null;
        }
        var spec = header["bytes=".Length..].Trim();
        var dash = spec.IndexOf('-', StringComparison.Ordinal);
        if (dash < 0)
        {
            return null;
        }
        var first = spec[..dash];
        var last = spec[(dash + 1)..];
        if (first.Length == 0)
        {
            if (!long.TryParse(last, NumberStyles.None, CultureInfo.InvariantCulture, out var suffix) || suffix == 0 || size == 0)
            {
                return null;
            }
            return (Math.Max(0, size - suffix), size - 1);
        }
        if (!long.TryParse(first, NumberStyles.None, CultureInfo.InvariantCulture, out var start))
        {
            return null;
        }
        if (last.Length == 0)
        {
            return (start, Math.Max(start, size - 1));
        }
        if (!long.TryParse(last, NumberStyles.None, CultureInfo.InvariantCulture, out var end) || end < start)
        {
            return null;
        }
        return (start, end);
    }

    private static void SetObjectHeaders(HttpResponse response, StoredObject info)
    {
        response.ContentType = "application/octet-stream";
        response.Headers.ETag = info.ETag;
        response.Headers.LastModified = info.LastModified.ToString("R", CultureInfo.InvariantCulture);
        response.Headers.AcceptRanges = "bytes";
        response.Headers["x-oss-object-type"] = "Normal";
        response.Headers["x-oss-storage-class"] = "Standard";
    }

    private OssError? DeleteObject(HttpContext context, ParsedRequest request)
    {
        _storage.Delete(request.Bucket!, request.Key);
        context.Response.StatusCode = 204;
        return null;
    }

    private async Task<OssError?> ListObjectsAsync(HttpContext context, ParsedRequest request)
    {
        var maxKeys = 100;
        if (request.QueryValue("max-keys") is { } text
            && (!int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out maxKeys) || maxKeys is < 1 or > 1000))
        {
            return new OssError(400, "InvalidArgument", "max-keys must be an integer from 1 to 1000.").With("ArgumentName", "max-keys");
        }
        var prefix = request.QueryValue("prefix") ?? "";
        var marker = request.QueryValue("marker") ?? "";
        var delimiter = request.QueryValue("delimiter") ?? "";
        var encodingType = request.QueryValue("encoding-type");
        if (encodingType is not (null or "url"))
        {
            return new OssError(400, "InvalidArgument", "encoding-type must be url.").With("ArgumentName", "encoding-type");
        }
        var encode = encodingType == "url";
        string Out(string s) => encode ? SignatureVerifier.Encode(s, keepSlash: true) : s;

        var (objects, prefixes, truncated, last) = _storage.List(request.Bucket!, prefix, marker, delimiter, maxKeys);
        var xml = Xml(w =>
        {
            w.WriteStartElement("ListBucketResult");
            w.WriteElementString("Name", request.Bucket);
            w.WriteElementString("Prefix", Out(prefix));
            w.WriteElementString("Marker", Out(marker));
            w.WriteElementString("MaxKeys", maxKeys.ToString(CultureInfo.InvariantCulture));
            w.WriteElementString("Delimiter", Out(delimiter));
            if (encode)
            {
                w.WriteElementString("EncodingType", "url");
            }
            w.WriteElementString("IsTruncated", truncated ? "true" : "false");
            if (truncated && last is not null)
            {
                w.WriteElementString("NextMarker", Out(last));
            }
            foreach (var o in objects)
            {
                w.WriteStartElement("Contents");
                w.WriteElementString("Key", Out(o.Key));
                w.WriteElementString("LastModified", o.LastModified.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", CultureInfo.InvariantCulture));
                w.WriteElementString("ETag", o.ETag);
                w.WriteElementString("Type", "Normal");
                w.WriteElementString("Size", o.Size.ToString(CultureInfo.InvariantCulture));
                w.WriteElementString("StorageClass", "Standard");
                w.WriteStartElement("Owner");
                w.WriteElementString("ID", "mirrorfs-test-owner");
                w.WriteElementString("DisplayName", "mirrorfs-test-owner");
                w.WriteEndElement();
                w.WriteEndElement();
            }
            foreach (var p in prefixes)
            {
                w.WriteStartElement("CommonPrefixes");
                w.WriteElementString("Prefix", Out(p));
                w.WriteEndElement();
            }
            w.WriteEndElement();
        });
        await WriteXmlAsync(context, 200, xml).ConfigureAwait(false);
        return null;
    }

    private async Task<OssError?> DeleteMultipleAsync(HttpContext context, ParsedRequest request)
    {
        var body = await ReadBodyAsync(context, DeleteBodyBytesMax).ConfigureAwait(false);
        if (body is null)
        {
            return new OssError(400, "MalformedXML", $"The DeleteMultipleObjects body exceeds {DeleteBodyBytesMax} bytes.");
        }
        var md5 = request.Header("Content-MD5");
        if (md5 is null)
        {
            return new OssError(400, "MissingArgument", "DeleteMultipleObjects requires a Content-MD5 header.").With("ArgumentName", "Content-MD5");
        }
        if (md5 != Convert.ToBase64String(MD5.HashData(body)))
        {
            return new OssError(400, "InvalidDigest", "The Content-MD5 you specified did not match what was received.");
        }

        var keys = new List<string>();
        var quiet = false;
        try
        {
            using var stream = new MemoryStream(body, writable: false);
            using var reader = XmlReader.Create(stream, new XmlReaderSettings { DtdProcessing = DtdProcessing.Prohibit, IgnoreWhitespace = true });
            var document = System.Xml.Linq.XDocument.Load(reader);
            var root = document.Root;
            if (root?.Name.LocalName != "Delete")
            {
                return new OssError(400, "MalformedXML", "The XML you provided was not well-formed or did not validate against our published schema.");
            }
            quiet = string.Equals(root.Elements().FirstOrDefault(e => e.Name.LocalName == "Quiet")?.Value.Trim(), "true",
                StringComparison.OrdinalIgnoreCase);
            foreach (var o in root.Elements().Where(e => e.Name.LocalName == "Object"))
            {
                var key = o.Elements().FirstOrDefault(e => e.Name.LocalName == "Key")?.Value;
                if (string.IsNullOrEmpty(key))
                {
                    return new OssError(400, "MalformedXML", "Every Object needs a non-empty Key.");
                }
                keys.Add(key);
            }
        }
        catch (XmlException)
        {
            return new OssError(400, "MalformedXML", "The XML you provided was not well-formed or did not validate against our published schema.");
        }
        if (keys.Count is 0 or > DeleteKeysMax)
        {
            return new OssError(400, "MalformedXML", $"DeleteMultipleObjects takes 1 to {DeleteKeysMax} keys.");
        }

        foreach (var key in keys)
        {
            _storage.Delete(request.Bucket!, key);
        }
        if (quiet)
        {
            context.Response.StatusCode = 200;
            context.Response.ContentLength = 0;
            return null;
        }
        var encode = request.QueryValue("encoding-type") == "url";
        var xml = Xml(w =>
        {
            w.WriteStartElement("DeleteResult");
            if (encode)
            {
                w.WriteElementString("EncodingType", "url");
            }
            foreach (var key in keys)
            {
                w.WriteStartElement("Deleted");
                w.WriteElementString("Key", encode ? SignatureVerifier.Encode(key, keepSlash: true) : key);
                w.WriteEndElement();
            }
            w.WriteEndElement();
        });
        await WriteXmlAsync(context, 200, xml).ConfigureAwait(false);
        return null;
    }

    private static async Task<byte[]?> ReadBodyAsync(HttpContext context, long bytesMax)
    {
        using var buffer = new MemoryStream();
        var chunk = new byte[64 * 1024];
        int read;
        while ((read = await context.Request.Body.ReadAsync(chunk, context.RequestAborted).ConfigureAwait(false)) > 0)
        {
            if (buffer.Length + read > bytesMax)
            {
                return null;
            }
            buffer.Write(chunk, 0, read);
        }
        return buffer.ToArray();
    }

    private static async Task WriteErrorAsync(HttpContext context, OssError error, string requestId)
    {
        var response = context.Response;
        if (response.HasStarted)
        {
            context.Abort();
            return;
        }
        response.StatusCode = error.Status;
        // HEAD answers carry no body: the status and x-oss-request-id are all a client gets.
        if (HttpMethods.IsHead(context.Request.Method))
        {
            response.ContentLength = 0;
            return;
        }
        var xml = Xml(w =>
        {
            w.WriteStartElement("Error");
            w.WriteElementString("Code", error.Code);
            w.WriteElementString("Message", error.Message);
            w.WriteElementString("RequestId", requestId);
            w.WriteElementString("HostId", context.Request.Host.Value);
            foreach (var (name, value) in error.Extra)
            {
                w.WriteElementString(name, value);
            }
            w.WriteEndElement();
        });
        await WriteXmlAsync(context, error.Status, xml).ConfigureAwait(false);
    }

    private static async Task WriteXmlAsync(HttpContext context, int status, byte[] xml)
    {
        context.Response.StatusCode = status;
        context.Response.ContentType = "application/xml";
        context.Response.ContentLength = xml.Length;
        await context.Response.Body.WriteAsync(xml, context.RequestAborted).ConfigureAwait(false);
    }

    private static byte[] Xml(Action<XmlWriter> write)
    {
        using var stream = new MemoryStream();
        using (var writer = XmlWriter.Create(stream, new XmlWriterSettings { Encoding = new UTF8Encoding(false), CheckCharacters = false }))
        {
            writer.WriteStartDocument();
            write(writer);
            writer.WriteEndDocument();
        }
        return stream.ToArray();
    }

    private static bool OnlyQuery(ParsedRequest request, params string[] allowed) =>
        request.Query.All(q => allowed.Contains(q.Key, StringComparer.Ordinal));

    /// <summary>Percent-decodes to UTF-8 ('+' stays a plus); null when the bytes are not valid UTF-8.</summary>
    private static string? PercentDecode(string text)
    {
        var bytes = new List<byte>(text.Length);
        for (var i = 0; i < text.Length; i++)
        {
            var c = text[i];
            if (c == '%' && i + 2 < text.Length
                && byte.TryParse(text.AsSpan(i + 1, 2), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out var b))
            {
                bytes.Add(b);
                i += 2;
            }
            else
            {
                bytes.AddRange(Encoding.UTF8.GetBytes(c.ToString()));
            }
        }
        try
        {
            return new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(bytes.ToArray());
        }
        catch (DecoderFallbackException)
        {
            return null;
        }
    }

    private static bool IsBucketName(string name) =>
        name.Length is >= 3 and <= 63 && name.All(c => c is (>= 'a' and <= 'z') or (>= '0' and <= '9') or '-')
        && name[0] != '-' && name[^1] != '-';

    private enum FaultKind
    {
        Fail,
        Delay,
        Abort,
    }

    private sealed record Fault(FaultKind Kind, int Status, string Code, int DelayMs);
}
