// IObjectStore on Amazon S3 and S3-compatible servers (checked against OpenStack Swift's s3api).
// The store does not retry: every failure surfaces as an ObjectStoreException for RetryingObjectStore to judge.
using System.Net;
using System.Runtime.InteropServices;
using Amazon;
using Amazon.Runtime;
using Amazon.S3;
using Amazon.S3.Model;

namespace MirrorFS.Core.Storage.S3;

public sealed class S3ObjectStore : IObjectStore
{
    /// <summary>Keys per DeleteObjects call: the S3 limit.</summary>
    public const int DeleteBatchKeysMax = 1000;

    /// <summary>ListObjectsV2 calls one ListAsync may make to fill a page the server returned short or empty.</summary>
    private const int ListCallsMax = 16;

    private readonly S3Options _options;
    private readonly AmazonS3Client _client;
    private readonly string _bucket;
    private readonly string _prefix;

    // Set once any call has shown the bucket exists, so a HEAD 404 (which carries no error code) can mean
    // "no such key" without a second request; before that, a 1-byte GET tells a missing key from a missing bucket.
    private volatile bool _bucketSeen;

    public S3ObjectStore(S3Options options) : this(options, Environment.GetEnvironmentVariable)
    {
    }

    /// <param name="environment">Reads AWS_* variables; tests pass their own instead of changing the process's.</param>
    internal S3ObjectStore(S3Options options, Func<string, string?> environment)
    {
        ArgumentNullException.ThrowIfNull(options);
        var bucketError = S3Options.ValidateBucket(options.Bucket);
        if (bucketError is not null)
        {
            throw new ArgumentException($"bad S3 options: {bucketError}", nameof(options));
        }
        if (options.Prefix.Length > 0 && (!options.Prefix.EndsWith('/') || ObjectKeys.Validate(options.Prefix.TrimEnd('/')) is not null))
        {
            throw new ArgumentException($"bad S3 options: prefix '{options.Prefix}' must be a valid key ending with '/'", nameof(options));
        }
        if (options.RequestTimeoutMs <= 0 || options.DeleteBatchTimeoutMs <= 0 || options.ConnectTimeoutMs <= 0 || options.ObjectBytesMax <= 0 || options.ConnectionsMax <= 0)
        {
            throw new ArgumentException("bad S3 options: timeouts and limits must be positive", nameof(options));
        }
        _options = options;
        _bucket = options.Bucket;
        _prefix = options.Prefix;
        Description = $"s3://{_bucket}{(_prefix.Length > 0 ? "/" + _prefix.TrimEnd('/') : "")} ({EndpointText(options)})";

        var config = new AmazonS3Config
        {
            ForcePathStyle = options.PathStyle,
            // RetryingObjectStore owns retries; SDK retries would multiply them and hide failures.
            MaxErrorRetry = 0,
            // Each call is bounded by its own token (Call); this only keeps HttpClient from cutting one short.
            Timeout = TimeSpan.FromMilliseconds(Math.Max(options.RequestTimeoutMs, options.DeleteBatchTimeoutMs)),
            ConnectTimeout = TimeSpan.FromMilliseconds(options.ConnectTimeoutMs),
            MaxConnectionsPerServer = options.ConnectionsMax,
            // Flexible checksums (CRC32 headers and trailers) only where the API demands one: S3-compatible
            // servers such as Swift reject aws-chunked trailers and do not echo checksums back.
            RequestChecksumCalculation = RequestChecksumCalculation.WHEN_REQUIRED,
            ResponseChecksumValidation = ResponseChecksumValidation.WHEN_REQUIRED,
        };
        if (options.Endpoint is { } endpoint)
        {
            config.ServiceURL = endpoint.GetLeftPart(UriPartial.Authority);
            config.AuthenticationRegion = options.Region;
        }
        else
        {
            config.RegionEndpoint = RegionEndpoint.GetBySystemName(options.Region);
        }

        try
        {
            _client = Credentials(options, environment) is { } credentials
                ? new ContentMd5Client(credentials, config)
                : new ContentMd5Client(config);
        }
        catch (AmazonClientException e)
        {
            throw new ObjectStoreException(Description, StoreFailure.Unauthorized,
                $"no AWS credentials found; {S3Errors.CredentialHint}", e);
        }
    }

    public string Description { get; }

    public async Task PutAsync(string key, ReadOnlyMemory<byte> data, CancellationToken ct = default)
    {
        ObjectKeys.Check(Description, key);
        var full = _prefix + key;
        await Call("PUT", full, async t =>
        {
            using var body = MemoryMarshal.TryGetArray(data, out var segment)
                ? new MemoryStream(segment.Array!, segment.Offset, segment.Count, writable: false)
                : new MemoryStream(data.ToArray(), writable: false);
            var request = new PutObjectRequest
            {
                BucketName = _bucket,
                Key = full,
                InputStream = body,
                AutoCloseStream = false,
                ContentType = "application/octet-stream",
                // aws-chunked uploads are not understood by Swift (501); a plain signed body is.
                UseChunkEncoding = false,
            };
            await _client.PutObjectAsync(request, t).ConfigureAwait(false);
            _bucketSeen = true;
            return true;
        }, ct).ConfigureAwait(false);
    }

    public async Task<byte[]?> GetAsync(string key, ByteRange? range = null, CancellationToken ct = default)
    {
        ObjectKeys.Check(Description, key);
        if (range is { } r)
        {
            ObjectKeys.CheckRange(r);
            if (r.Length == 0)
            {
                return await HeadAsync(key, ct).ConfigureAwait(false) is null ? null : [];
            }
        }
        var full = _prefix + key;
        return await Call("GET", full, async t =>
        {
            // A whole object is asked for as the range "0-": the SDK then skips its own MD5 check of the body, which
            // runs in managed code (a fifth of the client's CPU in a cold sequential read from Swift); the ETag is
            // checked below with the platform's MD5 instead.
            var request = new GetObjectRequest { BucketName = _bucket, Key = full, ByteRange = new Amazon.S3.Model.ByteRange("bytes=0-") };
            if (range is { } rr)
            {
                request.ByteRange = rr.Length < 0 || rr.Length > long.MaxValue - rr.Offset
                    ? new Amazon.S3.Model.ByteRange($"bytes={rr.Offset}-")
                    : new Amazon.S3.Model.ByteRange(rr.Offset, rr.Offset + rr.Length - 1);
            }
            try
            {
                using var response = await _client.GetObjectAsync(request, t).ConfigureAwait(false);
                _bucketSeen = true;
                var data = await ReadBodyAsync(response, full, t).ConfigureAwait(false);
                if (range is null)
                {
                    CheckEtag(response, data, full);
                }
                // A server may ignore Range and send the whole object (200 rather than 206).
                return range is not null && response.HttpStatusCode != HttpStatusCode.PartialContent
                    ? ObjectKeys.Slice(data, range)
                    : data;
            }
            catch (AmazonS3Exception e) when (S3Errors.IsNoSuchKey(e))
            {
                _bucketSeen = true;
                return null;
            }
            catch (AmazonS3Exception e) when (S3Errors.IsInvalidRange(e))
            {
                // S3 answers 416 for a range starting at or past the end; the key exists (else 404 came first).
                _bucketSeen = true;
                return [];
            }
        }, ct).ConfigureAwait(false);
    }

    public async Task<ObjectInfo?> HeadAsync(string key, CancellationToken ct = default)
    {
        ObjectKeys.Check(Description, key);
        var full = _prefix + key;
        return await Call("HEAD", full, async t =>
        {
            AmazonS3Exception headError;
            try
            {
                var response = await _client.GetObjectMetadataAsync(
                    new GetObjectMetadataRequest { BucketName = _bucket, Key = full }, t).ConfigureAwait(false);
                _bucketSeen = true;
                return new ObjectInfo(key, response.ContentLength, ToUtc(response.LastModified));
            }
            catch (AmazonS3Exception e) when (e.StatusCode is HttpStatusCode.NotFound or HttpStatusCode.Forbidden)
            {
                headError = e;
            }
            if (headError.StatusCode == HttpStatusCode.NotFound && _bucketSeen)
            {
                return null;
            }
            // A HEAD answer has no body, hence no error code: 404 is "no key" or "no bucket", 403 is "bad
            // credentials" or "no permission". A 1-byte GET of the same key needs the same permission and says which.
            try
            {
                using var probe = await _client.GetObjectAsync(
                    new GetObjectRequest { BucketName = _bucket, Key = full, ByteRange = new Amazon.S3.Model.ByteRange(0, 0) },
                    t).ConfigureAwait(false);
            }
            catch (AmazonS3Exception e) when (S3Errors.IsNoSuchKey(e)
                || (headError.StatusCode == HttpStatusCode.NotFound && S3Errors.IsInvalidRange(e)))
            {
                _bucketSeen = true;
                return null;
            }
            if (headError.StatusCode == HttpStatusCode.NotFound)
            {
                // The key appeared between the two requests: it was missing when asked.
                _bucketSeen = true;
                return null;
            }
            throw headError;
        }, ct).ConfigureAwait(false);
    }

    public async Task DeleteAsync(string key, CancellationToken ct = default)
    {
        ObjectKeys.Check(Description, key);
        var full = _prefix + key;
        await Call("DELETE", full, async t =>
        {
            try
            {
                await _client.DeleteObjectAsync(new DeleteObjectRequest { BucketName = _bucket, Key = full }, t)
                    .ConfigureAwait(false);
            }
            catch (AmazonS3Exception e) when (S3Errors.IsNoSuchKey(e))
            {
                // S3 answers 204 for a missing key; some compatible servers answer 404.
            }
            _bucketSeen = true;
            return true;
        }, ct).ConfigureAwait(false);
    }

    public async Task<ObjectPage> ListAsync(string prefix, string? startAfter = null, int limit = 1000, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(prefix);
        ObjectKeys.CheckLimit(Description, limit);
        var fullPrefix = _prefix + prefix;
        return await Call("LIST", fullPrefix, async t =>
        {
            var objects = new List<ObjectInfo>(Math.Min(limit, 1000));
            string? token = null;
            var truncated = false;
            for (var calls = 0; calls < ListCallsMax; calls++)
            {
                var request = new ListObjectsV2Request
                {
                    BucketName = _bucket,
                    Prefix = fullPrefix.Length > 0 ? fullPrefix : null,
                    MaxKeys = limit - objects.Count,
                };
                if (token is not null)
                {
                    request.ContinuationToken = token;
                }
                else if (startAfter is not null)
                {
                    request.StartAfter = _prefix + startAfter;
                }
                var response = await _client.ListObjectsV2Async(request, t).ConfigureAwait(false);
                _bucketSeen = true;
                foreach (var o in response.S3Objects ?? [])
                {
                    if (o.Key.StartsWith(_prefix, StringComparison.Ordinal))
                    {
                        objects.Add(new ObjectInfo(o.Key[_prefix.Length..], o.Size ?? 0, ToUtc(o.LastModified)));
                    }
                }
                truncated = response.IsTruncated == true;
                token = response.NextContinuationToken;
                // Fill the page when the server returned fewer keys than asked but has more.
                if (!truncated || objects.Count >= limit || string.IsNullOrEmpty(token))
                {
                    break;
                }
            }
            if (truncated && objects.Count == 0)
            {
                throw new ObjectStoreException(Description, StoreFailure.Transient,
                    $"LIST '{fullPrefix}' failed: {ListCallsMax} truncated pages in a row held no keys; a retry may succeed");
            }
            return new ObjectPage(objects, truncated ? objects[^1].Key : null);
        }, ct).ConfigureAwait(false);
    }

    public async Task DeleteManyAsync(IReadOnlyCollection<string> keys, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(keys);
        foreach (var key in keys)
        {
            ObjectKeys.Check(Description, key);
        }
        foreach (var batch in keys.Distinct(StringComparer.Ordinal).Chunk(DeleteBatchKeysMax))
        {
            await Call("DELETE-MANY", _prefix + batch[0], _options.DeleteBatchTimeoutMs, async t =>
            {
                var request = new DeleteObjectsRequest
                {
                    BucketName = _bucket,
                    Quiet = true,
                    Objects = batch.Select(k => new KeyVersion { Key = _prefix + k }).ToList(),
                };
                List<DeleteError>? errors;
                try
                {
                    errors = (await _client.DeleteObjectsAsync(request, t).ConfigureAwait(false)).DeleteErrors;
                }
                catch (DeleteObjectsException e)
                {
                    errors = e.Response?.DeleteErrors;
                }
                _bucketSeen = true;
                ThrowOnDeleteErrors(errors, batch.Length);
                return true;
            }, ct).ConfigureAwait(false);
        }
    }

    public ValueTask DisposeAsync()
    {
        _client.Dispose();
        return ValueTask.CompletedTask;
    }

    private void ThrowOnDeleteErrors(List<DeleteError>? errors, int batchKeys)
    {
        var failed = errors?.Where(e => e.Code != "NoSuchKey").ToList() ?? [];
        if (failed.Count == 0)
        {
            return;
        }
        var first = failed[0];
        var failure = S3Errors.FailureOf(first.Code);
        throw new ObjectStoreException(Description, failure,
            $"DELETE-MANY failed for {failed.Count} of {batchKeys} keys, first '{first.Key}': {first.Code}" +
            (string.IsNullOrEmpty(first.Message) ? "" : $": {S3Errors.OneLine(first.Message)}"));
    }

    /// <summary>Runs one operation under the per-request timeout and maps what it throws. Cancellation by the
    /// caller's token stays an OperationCanceledException.</summary>
    private Task<T> Call<T>(string op, string key, Func<CancellationToken, Task<T>> call, CancellationToken ct) =>
        Call(op, key, _options.RequestTimeoutMs, call, ct);

    private async Task<T> Call<T>(string op, string key, int timeoutMs, Func<CancellationToken, Task<T>> call, CancellationToken ct)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeout.CancelAfter(timeoutMs);
        try
        {
            return await call(timeout.Token).ConfigureAwait(false);
        }
        catch (ObjectStoreException)
        {
            throw;
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            throw;
        }
        catch (OperationCanceledException e)
        {
            throw new ObjectStoreException(Description, StoreFailure.Transient,
                $"{op} '{key}' failed: no answer within {timeoutMs} ms; a retry may succeed", e);
        }
        catch (Exception e)
        {
            throw S3Errors.Map(Description, op, key, e);
        }
    }

    /// <summary>A whole object's body against its ETag when the ETag is a plain MD5: not a multipart object's, and not
    /// one encrypted with SSE-KMS or a customer key, whose ETags are not the MD5 of the data. A mismatch is a damaged
    /// transfer, retried as transient.</summary>
    private void CheckEtag(GetObjectResponse response, byte[] data, string key)
    {
        var hex = response.ETag?.Trim('"');
        var sse = response.ServerSideEncryptionMethod?.Value;
        if (hex is not { Length: 32 } || !hex.All(char.IsAsciiHexDigit)
            || sse is { Length: > 0 } && sse != "AES256"
            || !string.IsNullOrEmpty(response.ServerSideEncryptionCustomerMethod?.Value))
        {
            return;
        }
        var md5 = System.Security.Cryptography.MD5.HashData(data);
        if (!md5.AsSpan().SequenceEqual(Convert.FromHexString(hex)))
        {
            throw new ObjectStoreException(Description, StoreFailure.Transient,
                $"GET '{key}' returned {data.Length} bytes whose MD5 {Convert.ToHexStringLower(md5)} does not match the ETag {hex}");
        }
    }

    private async Task<byte[]> ReadBodyAsync(GetObjectResponse response, string key, CancellationToken ct)
    {
        var length = response.ContentLength;
        if (length > _options.ObjectBytesMax)
        {
            throw new ObjectStoreException(Description, StoreFailure.BadRequest,
                $"GET '{key}' failed: {length} bytes is more than ObjectBytesMax ({_options.ObjectBytesMax}); read it in ranges");
        }
        if (length >= 0)
        {
            var data = new byte[length];
            await response.ResponseStream.ReadExactlyAsync(data, ct).ConfigureAwait(false);
            return data;
        }
        // Unknown length (chunked answer): copy under the same cap.
        using var copy = new MemoryStream();
        var buffer = new byte[81920];
        int n;
        while ((n = await response.ResponseStream.ReadAsync(buffer, ct).ConfigureAwait(false)) > 0)
        {
            if (copy.Length + n > _options.ObjectBytesMax)
            {
                throw new ObjectStoreException(Description, StoreFailure.BadRequest,
                    $"GET '{key}' failed: more than ObjectBytesMax ({_options.ObjectBytesMax}) bytes; read it in ranges");
            }
            copy.Write(buffer, 0, n);
        }
        return copy.ToArray();
    }

    /// <summary>Explicit credentials from the options, else from the AWS_* environment variables; null leaves the
    /// choice to the SDK's default chain (profiles, SSO, container and instance roles).</summary>
    private static AWSCredentials? Credentials(S3Options options, Func<string, string?> environment)
    {
        var (access, secret, token) = options.AccessKey is not null
            ? (options.AccessKey, options.SecretKey, options.SessionToken)
            : (environment("AWS_ACCESS_KEY_ID"), environment("AWS_SECRET_ACCESS_KEY"), environment("AWS_SESSION_TOKEN"));
        if (string.IsNullOrEmpty(access) || string.IsNullOrEmpty(secret))
        {
            return null;
        }
        return string.IsNullOrEmpty(token)
            ? new BasicAWSCredentials(access, secret)
            : new SessionAWSCredentials(access, secret, token);
    }

    private static string EndpointText(S3Options options) =>
        options.Endpoint?.GetLeftPart(UriPartial.Authority) ?? $"https://s3.{options.Region}.amazonaws.com";

    private static DateTimeOffset ToUtc(DateTime? time) => time switch
    {
        null => DateTimeOffset.UnixEpoch,
        { Kind: DateTimeKind.Local } t => new DateTimeOffset(t.ToUniversalTime(), TimeSpan.Zero),
        { } t => new DateTimeOffset(DateTime.SpecifyKind(t, DateTimeKind.Utc), TimeSpan.Zero),
    };
}
