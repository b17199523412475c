// Checks a request's OSS V1 or V4 Authorization header the way the OSS API reference describes it.
// Written separately from the client's signer (src/Core/Storage/Oss/OssSigner.cs) on purpose: the two
// implementations check each other, and both are checked against the documentation's worked examples.
using System.Globalization;
using System.Security.Cryptography;
using System.Text;

namespace MirrorFS.Testing.Oss;

/// <summary>A request as the server sees it: decoded bucket, key and query, raw headers.</summary>
internal sealed record ParsedRequest(
    string Method,
    string? Bucket,
    string Key,
    IReadOnlyList<KeyValuePair<string, string>> Query,
    IReadOnlyList<KeyValuePair<string, string>> Headers)
{
    public string? Header(string name)
    {
        var values = Headers.Where(h => string.Equals(h.Key, name, StringComparison.OrdinalIgnoreCase)).Select(h => h.Value).ToList();
        return values.Count == 0 ? null : string.Join(',', values);
    }

    public bool HasQuery(string name) => Query.Any(q => q.Key == name);

    public string? QueryValue(string name) => Query.FirstOrDefault(q => q.Key == name).Value;
}

internal sealed class SignatureVerifier(OssTestServerOptions options, TimeProvider time)
{
    // The sub-resources the V1 reference lists as part of CanonicalizedResource.
    private static readonly HashSet<string> V1SubResources = new(StringComparer.Ordinal)
    {
        "acl", "uploads", "location", "cors", "logging", "website", "referer", "lifecycle", "delete", "append",
        "tagging", "objectMeta", "uploadId", "partNumber", "security-token", "position", "img", "style", "styleName",
        "replication", "replicationProgress", "replicationLocation", "cname", "bucketInfo", "comp", "qos", "live",
        "status", "vod", "startTime", "endTime", "symlink", "x-oss-process", "response-content-type",
        "response-content-language", "response-expires", "response-cache-control", "response-content-disposition",
        "response-content-encoding", "restore", "versionId", "versioning", "versions", "policy", "requestPayment",
        "encryption", "inventory", "worm", "wormId", "wormExtend",
    };

    /// <summary>Null when the request is authentic; otherwise the error OSS would answer.</summary>
    public OssError? Verify(ParsedRequest request)
    {
        var authorization = request.Header("Authorization");
        if (string.IsNullOrEmpty(authorization))
        {
            return OssError.Forbidden("AccessDenied", "You have no right to access this object because of bucket acl.");
        }
        var tokenError = CheckSecurityToken(request);
        if (authorization.StartsWith("OSS4-HMAC-SHA256 ", StringComparison.Ordinal))
        {
            return VerifyV4(request, authorization["OSS4-HMAC-SHA256 ".Length..]) ?? tokenError;
        }
        if (authorization.StartsWith("OSS ", StringComparison.Ordinal))
        {
            return VerifyV1(request, authorization[4..]) ?? tokenError;
        }
        return new OssError(400, "InvalidArgument", "Authorization header is invalid.");
    }

    private OssError? CheckSecurityToken(ParsedRequest request)
    {
        var token = request.Header("x-oss-security-token");
        if (options.SecurityToken is null)
        {
            return token is null ? null
                : OssError.Forbidden("InvalidSecurityToken", "This server takes long-term keys; the request carries a security token.");
        }
        if (token is null || !FixedEquals(token, options.SecurityToken))
        {
            return OssError.Forbidden("InvalidSecurityToken", "The security token you provided is invalid.");
        }
        return null;
    }

    private OssError? VerifyV1(ParsedRequest request, string credentials)
    {
        var colon = credentials.LastIndexOf(':');
        if (colon <= 0)
        {
            return new OssError(400, "InvalidArgument", "Authorization header is invalid.");
        }
        var accessKeyId = credentials[..colon].Trim();
        var signature = credentials[(colon + 1)..].Trim();
        if (!FixedEquals(accessKeyId, options.AccessKeyId))
        {
            return OssError.Forbidden("InvalidAccessKeyId", "The OSS Access Key Id you provided does not exist in our records.")
                .With("OSSAccessKeyId", accessKeyId);
        }

        // The reference: the date is x-oss-date when present, else Date.
        var date = request.Header("x-oss-date") ?? request.Header("Date");
        if (date is null || !DateTimeOffset.TryParseExact(date, "r", CultureInfo.InvariantCulture,
                DateTimeStyles.AssumeUniversal, out var when))
        {
            return OssError.Forbidden("AccessDenied", "OSS authentication requires a valid Date.");
        }
        if (Skewed(when) is { } skew)
        {
            return skew;
        }

        var sb = new StringBuilder();
        sb.Append(request.Method).Append('\n')
            .Append(request.Header("Content-MD5") ?? "").Append('\n')
            .Append(request.Header("Content-Type") ?? "").Append('\n')
            .Append(date).Append('\n');
        foreach (var (name, value) in SelectHeaders(request, n => n.StartsWith("x-oss-", StringComparison.Ordinal)))
        {
            sb.Append(name).Append(':').Append(value).Append('\n');
        }
        sb.Append('/');
        if (request.Bucket is not null)
        {
            sb.Append(request.Bucket).Append('/').Append(request.Key);
        }
        var sub = request.Query.Where(q => V1SubResources.Contains(q.Key))
            .OrderBy(q => q.Key, StringComparer.Ordinal)
            .Select(q => q.Value.Length == 0 ? q.Key : q.Key + "=" + q.Value)
            .ToList();
        if (sub.Count > 0)
        {
            sb.Append('?').AppendJoin('&', sub);
        }
        var stringToSign = sb.ToString();
        var expected = Convert.ToBase64String(HMACSHA1.HashData(
            Encoding.UTF8.GetBytes(options.AccessKeySecret), Encoding.UTF8.GetBytes(stringToSign)));
        return FixedEquals(expected, signature) ? null : Mismatch(accessKeyId, signature, stringToSign, null);
    }

    private OssError? VerifyV4(ParsedRequest request, string fields)
    {
        string? credential = null, additional = null, signature = null;
        foreach (var part in fields.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
            var eq = part.IndexOf('=', StringComparison.Ordinal);
            if (eq <= 0)
            {
                return new OssError(400, "InvalidArgument", "Authorization header is invalid.");
            }
            var value = part[(eq + 1)..].Trim();
            switch (part[..eq].Trim())
            {
                case "Credential": credential = value; break;
                case "AdditionalHeaders": additional = value; break;
                case "Signature": signature = value; break;
                default: return new OssError(400, "InvalidArgument", $"Authorization field '{part[..eq]}' is unknown.");
            }
        }
        var scope = credential?.Split('/');
        if (signature is null || scope is not { Length: 5 } || scope[3] != "oss" || scope[4] != "aliyun_v4_request")
        {
            return new OssError(400, "InvalidArgument", "Authorization needs Credential=AK/date/region/oss/aliyun_v4_request and Signature.");
        }
        var (accessKeyId, day, region) = (scope[0], scope[1], scope[2]);
        if (!FixedEquals(accessKeyId, options.AccessKeyId))
        {
            return OssError.Forbidden("InvalidAccessKeyId", "The OSS Access Key Id you provided does not exist in our records.")
                .With("OSSAccessKeyId", accessKeyId);
        }
        if (options.Region is not null && region != options.Region)
        {
            return new OssError(400, "InvalidArgument", $"Invalid signing region in Authorization header: '{region}', expected '{options.Region}'.");
        }
        var timestamp = request.Header("x-oss-date");
        if (timestamp is null || !DateTimeOffset.TryParseExact(timestamp, "yyyyMMdd'T'HHmmss'Z'", CultureInfo.InvariantCulture,
                DateTimeStyles.AssumeUniversal, out var when))
        {
            return OssError.Forbidden("AccessDenied", "V4 signatures need an x-oss-date header in ISO 8601 basic format.");
        }
        if (timestamp[..8] != day)
        {
            return new OssError(400, "InvalidArgument", "The date in the credential scope does not match x-oss-date.");
        }
        if (Skewed(when) is { } skew)
        {
            return skew;
        }
        var payload = request.Header("x-oss-content-sha256");
        if (payload is null)
        {
            return new OssError(400, "InvalidArgument", "x-oss-content-sha256 is required for V4 signatures.");
        }
        if (payload != "UNSIGNED-PAYLOAD")
        {
            return new OssError(400, "InvalidArgument", "This server accepts only x-oss-content-sha256: UNSIGNED-PAYLOAD.");
        }

        var extra = (additional ?? "").Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(h => h.ToLowerInvariant()).ToHashSet(StringComparer.Ordinal);
        foreach (var name in extra)
        {
            if (request.Header(name) is null)
            {
                return new OssError(400, "InvalidArgument", $"Additional header '{name}' is not in the request.");
            }
        }

        var canonical = new StringBuilder();
        canonical.Append(request.Method).Append('\n');
        canonical.Append(request.Bucket is null ? "/" : "/" + Encode(request.Bucket, false) + "/" + Encode(request.Key, true)).Append('\n');
        canonical.AppendJoin('&', request.Query
            .Select(q => (Name: Encode(q.Key, false), Value: Encode(q.Value, false)))
            .OrderBy(q => q.Name, StringComparer.Ordinal).ThenBy(q => q.Value, StringComparer.Ordinal)
            .Select(q => q.Value.Length == 0 ? q.Name : q.Name + "=" + q.Value)).Append('\n');
        foreach (var (name, value) in SelectHeaders(request, n =>
                     n is "content-type" or "content-md5" || n.StartsWith("x-oss-", StringComparison.Ordinal) || extra.Contains(n)))
        {
            canonical.Append(name).Append(':').Append(value).Append('\n');
        }
        canonical.Append('\n').AppendJoin(';', extra.Order(StringComparer.Ordinal)).Append('\n').Append(payload);
        var canonicalRequest = canonical.ToString();

        var stringToSign = "OSS4-HMAC-SHA256\n" + timestamp + "\n" + string.Join('/', scope[1..]) + "\n"
            + Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(canonicalRequest)));
        var key = Encoding.UTF8.GetBytes("aliyun_v4" + options.AccessKeySecret);
        foreach (var step in new[] { day, region, "oss", "aliyun_v4_request" })
        {
            key = HMACSHA256.HashData(key, Encoding.UTF8.GetBytes(step));
        }
        var expected = Convert.ToHexStringLower(HMACSHA256.HashData(key, Encoding.UTF8.GetBytes(stringToSign)));
        return FixedEquals(expected, signature) ? null : Mismatch(accessKeyId, signature, stringToSign, canonicalRequest);
    }

    private OssError? Skewed(DateTimeOffset when)
    {
        var skew = (time.GetUtcNow() - when).Duration();
        return skew > TimeSpan.FromMinutes(options.ClockSkewMaxMinutes)
            ? OssError.Forbidden("RequestTimeTooSkewed", "The difference between the request time and the current time is too large.")
            : null;
    }

    private static OssError Mismatch(string accessKeyId, string provided, string stringToSign, string? canonicalRequest)
    {
        var error = OssError.Forbidden("SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided. Check your key and signing method.")
            .With("StringToSign", stringToSign)
            .With("SignatureProvided", provided)
            .With("OSSAccessKeyId", accessKeyId);
        return canonicalRequest is null ? error : error.With("CanonicalRequest", canonicalRequest);
    }

    private static SortedDictionary<string, string> SelectHeaders(ParsedRequest request, Func<string, bool> include)
    {
        var selected = new SortedDictionary<string, string>(StringComparer.Ordinal);
        foreach (var (rawName, rawValue) in request.Headers)
        {
            var name = rawName.ToLowerInvariant();
            if (include(name))
            {
                selected[name] = selected.TryGetValue(name, out var prior) ? prior + "," + rawValue.Trim() : rawValue.Trim();
            }
        }
        return selected;
    }

    /// <summary>RFC 3986 encoding of the UTF-8 bytes: unreserved characters (and '/' when kept) stay.</summary>
    internal static string Encode(string value, bool keepSlash)
    {
        var sb = new StringBuilder();
        foreach (var b in Encoding.UTF8.GetBytes(value))
        {
            var unreserved = b is (>= (byte)'a' and <= (byte)'z') or (>= (byte)'A' and <= (byte)'Z') or (>= (byte)'0' and <= (byte)'9')
                or (byte)'-' or (byte)'_' or (byte)'.' or (byte)'~';
            if (unreserved || (keepSlash && b == (byte)'/'))
            {
                sb.Append((char)b);
            }
            else
            {
                sb.Append(CultureInfo.InvariantCulture, $"%{b:X2}");
            }
        }
        return sb.ToString();
    }

    private static bool FixedEquals(string a, string b) =>
        CryptographicOperations.FixedTimeEquals(Encoding.UTF8.GetBytes(a), Encoding.UTF8.GetBytes(b));
}
