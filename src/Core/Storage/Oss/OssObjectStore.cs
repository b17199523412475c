// IObjectStore over the Alibaba Cloud OSS REST API, spoken directly through HttpClient.
using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using System.Xml;
using System.Xml.Linq;

namespace MirrorFS.Core.Storage.Oss;

/// <summary>
/// One OSS bucket (optionally under a key prefix) as an <see cref="IObjectStore"/>. Every request is signed
/// (V4 by default, V1 on request), bounded by <see cref="OssOptions.RequestTimeoutMs"/>, and never retried here:
/// failures surface as <see cref="ObjectStoreException"/> classified so that a retrying decorator retries only
/// what can succeed later.
/// </summary>
public sealed class OssObjectStore : IObjectStore
{
    /// <summary>DeleteMultipleObjects takes at most this many keys per request.</summary>
    public const int DeleteBatchMax = 1000;

    private const int ErrorBodyBytesMax = 64 * 1024;
    private const int XmlBodyBytesMax = 16 * 1024 * 1024;
    private const int ErrorMessageCharsMax = 300;

    private static readonly UriCreationOptions RawUri = new() { DangerousDisablePathAndQueryCanonicalization = true };
    private static readonly KeyValuePair<string, string?>[] NoQuery = [];
    private static readonly KeyValuePair<string, string>[] NoHeaders = [];

    private readonly OssOptions _options;
    private readonly HttpClient _http;
    private readonly TimeProvider _time;
    private readonly string _baseUrl;
    private readonly string _bucketPath;
    // Set once any request proves the bucket exists; lets a 404 on HEAD (which has no body) mean "no such key".
    private volatile bool _bucketSeen;

    public OssObjectStore(OssOptions options)
        : this(options, null, null)
    {
    }

    internal OssObjectStore(OssOptions options, HttpMessageHandler? handler, TimeProvider? time)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (string.IsNullOrEmpty(options.AccessKeyId) || string.IsNullOrEmpty(options.AccessKeySecret))
        {
            throw new ArgumentException($"{options.Description}: an access key id and secret are required", nameof(options));
        }
        if (options.SignatureVersion == OssSignatureVersion.V4 && string.IsNullOrEmpty(options.Region))
        {
            throw new ArgumentException($"{options.Description}: signature v4 needs a region (e.g. cn-hangzhou)", nameof(options));
        }
        _options = options;
        _time = time ?? TimeProvider.System;
        handler ??= new SocketsHttpHandler
        {
            ConnectTimeout = TimeSpan.FromMilliseconds(options.ConnectTimeoutMs),
            MaxConnectionsPerServer = options.ConnectionsMax,
            PooledConnectionIdleTimeout = TimeSpan.FromSeconds(60),
            // Recycle connections so that DNS changes of the endpoint are picked up.
            PooledConnectionLifetime = TimeSpan.FromMinutes(5),
            AutomaticDecompression = DecompressionMethods.None,
            AllowAutoRedirect = false,
            UseCookies = false,
        };
        // The per-request timeout is ours (a linked token), so HttpClient's own is off.
        _http = new HttpClient(handler, disposeHandler: true) { Timeout = Timeout.InfiniteTimeSpan };
        _baseUrl = options.UsesPathStyle
            ? $"{options.Scheme}://{options.Endpoint}"
            : $"{options.Scheme}://{options.Bucket}.{options.Endpoint}";
        _bucketPath = options.UsesPathStyle ? "/" + options.Bucket + "/" : "/";
        Description = options.Description;
    }

    public string Description { get; }

    public OssOptions Options => _options;

    public async Task PutAsync(string key, ReadOnlyMemory<byte> data, CancellationToken ct = default)
    {
        CheckKey(key);
        var md5 = Convert.ToBase64String(MD5.HashData(data.Span));
        var request = new OssRequest(HttpMethod.Put, key, NoQuery, data, "application/octet-stream", md5, NoHeaders);
        await ExecuteAsync("put", key, request, async (response, token) =>
        {
            if (response.StatusCode != HttpStatusCode.OK)
            {
                throw await ErrorAsync("put", key, response, token).ConfigureAwait(false);
            }
            return true;
        }, ct).ConfigureAwait(false);
    }

    public async Task<byte[]?> GetAsync(string key, ByteRange? range = null, CancellationToken ct = default)
    {
        CheckKey(key);
        if (range is { } r)
        {
            ObjectKeys.CheckRange(r);
            if (r.Length == 0)
            {
                return await HeadAsync(key, ct).ConfigureAwait(false) is null ? null : [];
            }
        }

        var headers = new List<KeyValuePair<string, string>>();
        if (range is { } rr)
        {
            var end = rr.Length < 0 ? "" : (rr.Offset + rr.Length - 1).ToString(CultureInfo.InvariantCulture);
            headers.Add(new("Range", $"bytes={rr.Offset.ToString(CultureInfo.InvariantCulture)}-{end}"));
            // Standard behaviour: 416 for a start past the end, a clipped 206 for an end past it. Without it OSS
            // answers an out-of-range request with the whole object (200), which is handled below as well.
            headers.Add(new("x-oss-range-behavior", "standard"));
        }
        var request = new OssRequest(HttpMethod.Get, key, NoQuery, null, null, null, headers);
        return await ExecuteAsync("get", key, request, async (response, token) =>
        {
            switch (response.StatusCode)
            {
                case HttpStatusCode.OK:
                    {
                        var body = await response.Content.ReadAsByteArrayAsync(token).ConfigureAwait(false);
                        return ObjectKeys.Slice(body, range);
                    }
                case HttpStatusCode.PartialContent:
                    {
                        var start = ContentRangeStart(response);
                        if (range is not { } asked || start != asked.Offset)
                        {
                            throw Fail(StoreFailure.Other, "get", key,
                                $"OSS answered a range request for offset {range?.Offset} with Content-Range starting at {start}");
                        }
                        var body = await response.Content.ReadAsByteArrayAsync(token).ConfigureAwait(false);
                        return asked.Length >= 0 && body.Length > asked.Length ? body[..(int)asked.Length] : body;
                    }
                case HttpStatusCode.RequestedRangeNotSatisfiable:
                    return [];
                case HttpStatusCode.NotFound:
                    {
                        var error = await ReadErrorAsync(response, token).ConfigureAwait(false);
                        if (error.Code is null or "NoSuchKey")
                        {
                            _bucketSeen |= error.Code is not null;
                            return null;
                        }
                        throw ToException("get", key, response.StatusCode, error);
                    }
                default:
                    throw await ErrorAsync("get", key, response, token).ConfigureAwait(false);
            }
        }, ct).ConfigureAwait(false);
    }

    public async Task<ObjectInfo?> HeadAsync(string key, CancellationToken ct = default)
    {
        CheckKey(key);
        var request = new OssRequest(HttpMethod.Head, key, NoQuery, null, null, null, NoHeaders);
        var (status, info) = await ExecuteAsync("head", key, request, (response, token) =>
        {
            if (response.StatusCode == HttpStatusCode.OK)
            {
                return Task.FromResult((response.StatusCode, (ObjectInfo?)ToInfo(key, response, response.Content.Headers.ContentLength ?? 0)));
            }
            if ((int)response.StatusCode >= 500)
            {
                // A HEAD answer has no body: the status and request id are all there is.
                throw ToException("head", key, response.StatusCode, new OssError(null, null, RequestId(response)));
            }
            return Task.FromResult((response.StatusCode, (ObjectInfo?)null));
        }, ct).ConfigureAwait(false);
        if (status == HttpStatusCode.OK || (status == HttpStatusCode.NotFound && _bucketSeen))
        {
            return info;
        }
        // A 404 before the bucket is known to exist, or a 4xx refusal: ask again with a GET, whose error has a body
        // that says which (NoSuchKey or NoSuchBucket, SignatureDoesNotMatch or AccessDenied, ...).
        return await ProbeAsync(key, ct).ConfigureAwait(false);
    }

    public async Task DeleteAsync(string key, CancellationToken ct = default)
    {
        CheckKey(key);
        var request = new OssRequest(HttpMethod.Delete, key, NoQuery, null, null, null, NoHeaders);
        await ExecuteAsync("delete", key, request, async (response, token) =>
        {
            if (response.StatusCode is HttpStatusCode.NoContent or HttpStatusCode.OK)
            {
                return true;
            }
            if (response.StatusCode == HttpStatusCode.NotFound)
            {
                var error = await ReadErrorAsync(response, token).ConfigureAwait(false);
                if (error.Code is null or "NoSuchKey")
                {
                    return true;
                }
                throw ToException("delete", key, response.StatusCode, error);
            }
            throw await ErrorAsync("delete", key, response, token).ConfigureAwait(false);
        }, ct).ConfigureAwait(false);
    }

    public async Task<ObjectPage> ListAsync(string prefix, string? startAfter = null, int limit = 1000, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(prefix);
        ObjectKeys.CheckLimit(Description, limit);
        var query = new List<KeyValuePair<string, string?>>
        {
            new("encoding-type", "url"),
            new("max-keys", limit.ToString(CultureInfo.InvariantCulture)),
            new("prefix", prefix),
        };
        if (!string.IsNullOrEmpty(startAfter))
        {
            // OSS's marker is exclusive: listing starts after it, which is exactly startAfter.
            query.Add(new("marker", startAfter));
        }
        var request = new OssRequest(HttpMethod.Get, "", query, null, null, null, NoHeaders);
        return await ExecuteAsync("list", prefix, request, async (response, token) =>
        {
            if (response.StatusCode != HttpStatusCode.OK)
            {
                throw await ErrorAsync("list", prefix, response, token).ConfigureAwait(false);
            }
            var xml = await ReadXmlAsync("list", prefix, response, token).ConfigureAwait(false);
            return ParseListing(xml, prefix);
        }, ct).ConfigureAwait(false);
    }

    public async Task DeleteManyAsync(IReadOnlyCollection<string> keys, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(keys);
        var distinct = keys.Distinct(StringComparer.Ordinal).Select(CheckKey).ToList();
        foreach (var batch in distinct.Chunk(DeleteBatchMax))
        {
            await DeleteBatchAsync(batch, ct).ConfigureAwait(false);
        }
    }

    public ValueTask DisposeAsync()
    {
        _http.Dispose();
        return ValueTask.CompletedTask;
    }

    private async Task DeleteBatchAsync(string[] fullKeys, CancellationToken ct)
    {
        var body = DeleteRequestBody(fullKeys);
        var md5 = Convert.ToBase64String(MD5.HashData(body));
        var operation = $"delete-many of {fullKeys.Length} keys from";
        var label = fullKeys[0];
        var query = new KeyValuePair<string, string?>[] { new("delete", null) };
        var request = new OssRequest(HttpMethod.Post, "", query, body, "application/xml", md5, NoHeaders);
        await ExecuteAsync(operation, label, request, async (response, token) =>
        {
            if (response.StatusCode != HttpStatusCode.OK)
            {
                throw await ErrorAsync(operation, label, response, token).ConfigureAwait(false);
            }
            // Quiet mode: an empty body means every key is gone; anything listed as an error is a failure.
            var bytes = await ReadBoundedAsync(response, XmlBodyBytesMax, token).ConfigureAwait(false);
            if (bytes.Length > 0)
            {
                var root = ParseXml(operation, label, bytes).Root;
                var failed = root?.Elements().FirstOrDefault(e => e.Name.LocalName == "Error");
                if (failed is not null)
                {
                    throw Fail(StoreFailure.Other, operation, label,
                        $"OSS did not delete '{Child(failed, "Key")}': {Child(failed, "Code")} {Child(failed, "Message")}");
                }
            }
            return true;
        }, ct).ConfigureAwait(false);
    }

    private static byte[] DeleteRequestBody(string[] fullKeys)
    {
        using var stream = new MemoryStream();
        var settings = new XmlWriterSettings { Encoding = new UTF8Encoding(false), Indent = false };
        using (var writer = XmlWriter.Create(stream, settings))
        {
            writer.WriteStartDocument();
            writer.WriteStartElement("Delete");
            writer.WriteElementString("Quiet", "true");
            foreach (var key in fullKeys)
            {
                writer.WriteStartElement("Object");
                writer.WriteElementString("Key", key);
                writer.WriteEndElement();
            }
            writer.WriteEndElement();
            writer.WriteEndDocument();
        }
        return stream.ToArray();
    }

    /// <summary>A one-byte ranged GET (same permission as HEAD) in place of a HEAD whose bodiless error was
    /// ambiguous: its error body names the cause.</summary>
    private async Task<ObjectInfo?> ProbeAsync(string key, CancellationToken ct)
    {
        var headers = new KeyValuePair<string, string>[] { new("Range", "bytes=0-0") };
        var request = new OssRequest(HttpMethod.Get, key, NoQuery, null, null, null, headers);
        return await ExecuteAsync("head", key, request, async (response, token) =>
        {
            switch (response.StatusCode)
            {
                case HttpStatusCode.OK:
                    return ToInfo(key, response, response.Content.Headers.ContentLength ?? 0);
                case HttpStatusCode.PartialContent:
                    return ToInfo(key, response, response.Content.Headers.ContentRange?.Length ?? 0);
                case HttpStatusCode.NotFound:
                    {
                        var error = await ReadErrorAsync(response, token).ConfigureAwait(false);
                        if (error.Code is null or "NoSuchKey")
                        {
                            _bucketSeen |= error.Code is not null;
                            return null;
                        }
                        throw ToException("head", key, response.StatusCode, error);
                    }
                default:
                    throw await ErrorAsync("head", key, response, token).ConfigureAwait(false);
            }
        }, ct).ConfigureAwait(false);
    }

    private ObjectPage ParseListing(XDocument xml, string prefix)
    {
        var root = xml.Root ?? throw Fail(StoreFailure.Other, "list", prefix, "OSS answered with an empty XML document");
        var encoded = string.Equals(Child(root, "EncodingType"), "url", StringComparison.OrdinalIgnoreCase);
        string Decode(string s) => encoded ? Uri.UnescapeDataString(s.Replace('+', ' ')) : s;

        var objects = new List<ObjectInfo>();
        string? lastKey = null;
        foreach (var item in root.Elements().Where(e => e.Name.LocalName == "Contents"))
        {
            var key = Decode(Child(item, "Key") ?? "");
            lastKey = key;
            var size = long.Parse(Child(item, "Size") ?? "0", NumberStyles.None, CultureInfo.InvariantCulture);
            var modified = DateTimeOffset.Parse(Child(item, "LastModified") ?? "1970-01-01T00:00:00Z",
                CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal | DateTimeStyles.AdjustToUniversal);
            objects.Add(new ObjectInfo(key, size, modified));
        }

        string? next = null;
        if (string.Equals(Child(root, "IsTruncated"), "true", StringComparison.OrdinalIgnoreCase))
        {
            var marker = Child(root, "NextMarker");
            next = string.IsNullOrEmpty(marker) ? lastKey ?? "" : Decode(marker);
            if (next.Length == 0 && objects.Count == 0)
            {
                throw Fail(StoreFailure.Other, "list", prefix, "OSS said the listing is truncated but gave no NextMarker");
            }
        }
        return new ObjectPage(objects, next);
    }

    private async Task<T> ExecuteAsync<T>(string operation, string key, OssRequest request,
        Func<HttpResponseMessage, CancellationToken, Task<T>> onResponse, CancellationToken ct)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeout.CancelAfter(_options.RequestTimeoutMs);
        try
        {
            using var message = BuildMessage(request);
            using var response = await _http.SendAsync(message, HttpCompletionOption.ResponseHeadersRead, timeout.Token)
                .ConfigureAwait(false);
            if ((int)response.StatusCode is (>= 200 and < 300) or 416)
            {
                _bucketSeen = true;
            }
            return await onResponse(response, timeout.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            throw;
        }
        catch (OperationCanceledException e)
        {
            throw Fail(StoreFailure.Transient, operation, key,
                $"no complete answer within {_options.RequestTimeoutMs} ms (timeout-ms); the endpoint is slow or the network is lossy", e);
        }
        catch (HttpRequestException e)
        {
            throw NetworkFailure(operation, key, e);
        }
        catch (IOException e)
        {
            throw Fail(StoreFailure.Transient, operation, key, $"the connection broke: {OneLine(e.Message)}", e);
        }
    }

    private HttpRequestMessage BuildMessage(OssRequest request)
    {
        var now = _time.GetUtcNow();
        var date = now.ToString("R", CultureInfo.InvariantCulture);
        var signed = new List<KeyValuePair<string, string>> { new("Date", date) };
        if (_options.SecurityToken is { } token)
        {
            signed.Add(new("x-oss-security-token", token));
        }
        if (_options.SignatureVersion == OssSignatureVersion.V4)
        {
            signed.Add(new("x-oss-date", OssSigner.V4Timestamp(now)));
            signed.Add(new("x-oss-content-sha256", OssSigner.UnsignedPayload));
        }
        foreach (var header in request.Headers)
        {
            signed.Add(header);
        }
        var withContent = new List<KeyValuePair<string, string>>(signed);
        if (request.ContentType is not null)
        {
            withContent.Add(new("Content-Type", request.ContentType));
        }
        if (request.ContentMd5 is not null)
        {
            withContent.Add(new("Content-MD5", request.ContentMd5));
        }

        string authorization;
        if (_options.SignatureVersion == OssSignatureVersion.V4)
        {
            var region = _options.Region!;
            var timestamp = OssSigner.V4Timestamp(now);
            var scope = OssSigner.V4Scope(timestamp[..8], region);
            var canonical = OssSigner.V4CanonicalRequest(request.Method.Method,
                OssSigner.V4CanonicalUri(_options.Bucket, request.Key), OssSigner.V4CanonicalQuery(request.Query),
                withContent, [], OssSigner.UnsignedPayload);
            var stringToSign = OssSigner.V4StringToSign(timestamp, scope, canonical);
            authorization = OssSigner.V4Authorization(_options.AccessKeyId, scope, [],
                OssSigner.V4Signature(_options.AccessKeySecret, timestamp[..8], region, stringToSign));
        }
        else
        {
            var resource = OssSigner.V1CanonicalResource(_options.Bucket, request.Key, request.Query);
            var stringToSign = OssSigner.V1StringToSign(request.Method.Method, request.ContentMd5, request.ContentType,
                date, signed, resource);
            authorization = OssSigner.V1Authorization(_options.AccessKeyId,
                OssSigner.V1Signature(_options.AccessKeySecret, stringToSign));
        }

        var url = new StringBuilder(_baseUrl).Append(_bucketPath).Append(OssSigner.UriEncode(request.Key, keepSlash: true));
        var separator = '?';
        foreach (var (name, value) in request.Query)
        {
            url.Append(separator).Append(OssSigner.UriEncode(name, keepSlash: false));
            if (value is not null)
            {
                url.Append('=').Append(OssSigner.UriEncode(value, keepSlash: false));
            }
            separator = '&';
        }

        var message = new HttpRequestMessage(request.Method, new Uri(url.ToString(), RawUri))
        {
            Version = HttpVersion.Version11,
            VersionPolicy = HttpVersionPolicy.RequestVersionOrLower,
        };
        foreach (var (name, value) in signed)
        {
            message.Headers.TryAddWithoutValidation(name, value);
        }
        message.Headers.TryAddWithoutValidation("Authorization", authorization);
        if (request.Body is { } body)
        {
            message.Content = new ReadOnlyMemoryContent(body);
            message.Content.Headers.ContentLength = body.Length;
            if (request.ContentType is not null)
            {
                message.Content.Headers.ContentType = MediaTypeHeaderValue.Parse(request.ContentType);
            }
            if (request.ContentMd5 is not null)
            {
                message.Content.Headers.TryAddWithoutValidation("Content-MD5", request.ContentMd5);
            }
        }
        return message;
    }

    private ObjectStoreException NetworkFailure(string operation, string key, HttpRequestException e)
    {
        var socket = FindInner<SocketException>(e);
        var where = $"{_options.Scheme}://{(_options.UsesPathStyle ? "" : _options.Bucket + ".")}{_options.Endpoint}";
        if (e.HttpRequestError == HttpRequestError.NameResolutionError
            || socket?.SocketErrorCode is SocketError.HostNotFound or SocketError.TryAgain or SocketError.NoData)
        {
            return Fail(StoreFailure.Unreachable, operation, key, $"cannot resolve {where}; check endpoint=", e);
        }
        if (socket?.SocketErrorCode is SocketError.ConnectionRefused)
        {
            return Fail(StoreFailure.Unreachable, operation, key,
                $"connection refused by {where}; check endpoint= and that the server is running", e);
        }
        if (socket?.SocketErrorCode is SocketError.NetworkUnreachable or SocketError.HostUnreachable or SocketError.AddressNotAvailable)
        {
            return Fail(StoreFailure.Unreachable, operation, key, $"no route to {where}; check endpoint= and the network", e);
        }
        if (e.HttpRequestError == HttpRequestError.SecureConnectionError)
        {
            return Fail(StoreFailure.Unreachable, operation, key,
                $"TLS handshake with {where} failed: {OneLine(e.Message)}; check the endpoint's scheme and certificate", e);
        }
        var cause = e.InnerException is { } inner ? $"{e.Message} ({inner.Message})" : e.Message;
        return Fail(StoreFailure.Transient, operation, key, $"connection to {where} failed: {OneLine(cause)}", e);
    }

    private async Task<ObjectStoreException> ErrorAsync(string operation, string key, HttpResponseMessage response, CancellationToken ct) =>
        ToException(operation, key, response.StatusCode, await ReadErrorAsync(response, ct).ConfigureAwait(false));

    private ObjectStoreException ToException(string operation, string key, HttpStatusCode status, OssError error)
    {
        var code = error.Code;
        var numeric = (int)status;
        var (failure, hint) = code switch
        {
            "InvalidAccessKeyId" or "SignatureDoesNotMatch" or "InvalidSecurityToken" or "SecurityTokenExpired"
                or "AccessKeyIdAndSecurityTokenNotMatch" or "SecurityTokenNotSupported" =>
                (StoreFailure.Unauthorized, "check the access key id, secret and security token"),
            "RequestTimeTooSkewed" => (StoreFailure.Unauthorized, "this machine's clock is off by more than 15 minutes; fix it"),
            "AccessDenied" => (StoreFailure.AccessDenied, $"grant this access key the needed permission on bucket '{_options.Bucket}'"),
            "NoSuchBucket" => (StoreFailure.NoSuchBucket, $"create bucket '{_options.Bucket}' or fix the bucket name or endpoint"),
            "RequestTimeout" or "InternalError" or "ServiceUnavailable" or "SlowDown" or "Throttling" =>
                (StoreFailure.Transient, "transient; a retry may succeed"),
            _ when numeric >= 500 || numeric == 429 => (StoreFailure.Transient, "transient; a retry may succeed"),
            _ when numeric == 403 => (StoreFailure.AccessDenied, "the request was refused"),
            _ when numeric == 400 => (StoreFailure.BadRequest, "the request was rejected as invalid"),
            _ => (StoreFailure.Other, "unexpected answer"),
        };
        var text = new StringBuilder($"{operation} '{key}' failed: HTTP {numeric}");
        if (code is not null)
        {
            text.Append(' ').Append(code);
        }
        if (!string.IsNullOrEmpty(error.Message))
        {
            text.Append(": ").Append(OneLine(error.Message));
        }
        if (error.RequestId is not null)
        {
            text.Append(" (request id ").Append(error.RequestId).Append(')');
        }
        text.Append("; ").Append(hint);
        return new ObjectStoreException(Description, failure, text.ToString());
    }

    private ObjectStoreException Fail(StoreFailure failure, string operation, string key, string why, Exception? inner = null) =>
        new(Description, failure, $"{operation} '{key}' failed: {why}", inner);

    private static async Task<OssError> ReadErrorAsync(HttpResponseMessage response, CancellationToken ct)
    {
        var requestId = RequestId(response);
        byte[] body;
        try
        {
            body = await ReadBoundedAsync(response, ErrorBodyBytesMax, ct).ConfigureAwait(false);
        }
        catch (InvalidDataException)
        {
            return new OssError(null, "error body too large", requestId);
        }
        if (body.Length == 0)
        {
            return new OssError(null, null, requestId);
        }
        try
        {
            var root = XDocument.Parse(Encoding.UTF8.GetString(body)).Root;
            if (root is null || root.Name.LocalName != "Error")
            {
                return new OssError(null, null, requestId);
            }
            return new OssError(Child(root, "Code"), Child(root, "Message"), Child(root, "RequestId") ?? requestId);
        }
        catch (XmlException)
        {
            return new OssError(null, null, requestId);
        }
    }

    private async Task<XDocument> ReadXmlAsync(string operation, string key, HttpResponseMessage response, CancellationToken ct)
    {
        byte[] body;
        try
        {
            body = await ReadBoundedAsync(response, XmlBodyBytesMax, ct).ConfigureAwait(false);
        }
        catch (InvalidDataException e)
        {
            throw Fail(StoreFailure.Other, operation, key, e.Message, e);
        }
        return ParseXml(operation, key, body);
    }

    private XDocument ParseXml(string operation, string key, byte[] body)
    {
        try
        {
            using var stream = new MemoryStream(body, writable: false);
            using var reader = XmlReader.Create(stream, new XmlReaderSettings { DtdProcessing = DtdProcessing.Prohibit });
            return XDocument.Load(reader);
        }
        catch (XmlException e)
        {
            throw Fail(StoreFailure.Transient, operation, key, $"OSS answered with malformed XML: {OneLine(e.Message)}", e);
        }
    }

    private static async Task<byte[]> ReadBoundedAsync(HttpResponseMessage response, int bytesMax, CancellationToken ct)
    {
        if (response.Content.Headers.ContentLength > bytesMax)
        {
            throw new InvalidDataException($"response body of {response.Content.Headers.ContentLength} bytes exceeds {bytesMax}");
        }
        using var stream = await response.Content.ReadAsStreamAsync(ct).ConfigureAwait(false);
        using var buffer = new MemoryStream();
        var chunk = new byte[16 * 1024];
        int read;
        while ((read = await stream.ReadAsync(chunk, ct).ConfigureAwait(false)) > 0)
        {
            if (buffer.Length + read > bytesMax)
            {
                throw new InvalidDataException($"response body exceeds {bytesMax} bytes");
            }
            buffer.Write(chunk, 0, read);
        }
        return buffer.ToArray();
    }

    private static ObjectInfo ToInfo(string key, HttpResponseMessage response, long size) =>
        new(key, size, response.Content.Headers.LastModified ?? DateTimeOffset.UnixEpoch);

    private static long ContentRangeStart(HttpResponseMessage response) =>
        response.Content.Headers.ContentRange?.From ?? -1;

    private string CheckKey(string key)
    {
        ArgumentNullException.ThrowIfNull(key);
        ObjectKeys.Check(Description, key);
        return key;
    }

    private static string? Child(XElement parent, string localName) =>
        parent.Elements().FirstOrDefault(e => e.Name.LocalName == localName)?.Value.Trim();

    private static string? RequestId(HttpResponseMessage response) => Header(response, "x-oss-request-id");

    private static string? Header(HttpResponseMessage response, string name) =>
        response.Headers.TryGetValues(name, out var values) ? values.FirstOrDefault() : null;

    private static T? FindInner<T>(Exception e) where T : Exception
    {
        for (var current = e.InnerException; current is not null; current = current.InnerException)
        {
            if (current is T match)
            {
                return match;
            }
        }
        return null;
    }

    private static string OneLine(string text)
    {
        var flat = string.Join(' ', text.Split(['\r', '\n', '\t'], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
        return flat.Length > ErrorMessageCharsMax ? flat[..ErrorMessageCharsMax] + "..." : flat;
    }

    private sealed record OssRequest(HttpMethod Method, string Key, IReadOnlyList<KeyValuePair<string, string?>> Query,
        ReadOnlyMemory<byte>? Body, string? ContentType, string? ContentMd5, IReadOnlyList<KeyValuePair<string, string>> Headers);

    private sealed record OssError(string? Code, string? Message, string? RequestId);
}
