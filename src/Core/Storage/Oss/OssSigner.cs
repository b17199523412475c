// The two OSS request-signing schemes (V1: HMAC-SHA1, V4: OSS4-HMAC-SHA256) as pure functions of request parts.
using System.Globalization;
using System.Security.Cryptography;
using System.Text;

namespace MirrorFS.Core.Storage.Oss;

/// <summary>
/// Builds the strings OSS signs and the signatures over them. Pure functions: no clock, no I/O, so the
/// documentation's worked examples can be replayed exactly.
/// </summary>
public static class OssSigner
{
    public const string V4Algorithm = "OSS4-HMAC-SHA256";
    public const string UnsignedPayload = "UNSIGNED-PAYLOAD";
    private const string V4Terminator = "aliyun_v4_request";

    /// <summary>Query parameters that V1 signs as sub-resources; any other parameter (prefix, marker, ...) is not signed.</summary>
    private static readonly HashSet<string> V1SignedParameters = new(StringComparer.Ordinal)
    {
        "acl", "uploads", "location", "cors", "logging", "website", "referer", "lifecycle", "delete", "append",
        "tagging", "objectMeta", "uploadId", "partNumber", "security-token", "position", "img", "style",
        "styleName", "replication", "replicationProgress", "replicationLocation", "cname", "bucketInfo", "comp",
        "qos", "live", "status", "vod", "startTime", "endTime", "symlink", "x-oss-process",
        "response-content-type", "response-content-language", "response-expires", "response-cache-control",
        "response-content-disposition", "response-content-encoding", "restore", "versionId", "versioning",
        "versions", "policy", "requestPayment", "encryption", "inventory", "worm", "wormId", "wormExtend",
    };

    /// <summary>V1 CanonicalizedResource: <c>/bucket/key</c> (key not encoded) plus the signed sub-resources,
    /// sorted, as <c>?a&amp;b=c</c>.</summary>
    public static string V1CanonicalResource(string bucket, string key, IEnumerable<KeyValuePair<string, string?>> query)
    {
        ArgumentNullException.ThrowIfNull(query);
        var sb = new StringBuilder("/");
        if (bucket.Length > 0)
        {
            sb.Append(bucket).Append('/').Append(key);
        }
        var sub = query.Where(p => V1SignedParameters.Contains(p.Key))
            .OrderBy(p => p.Key, StringComparer.Ordinal)
            .Select(p => string.IsNullOrEmpty(p.Value) ? p.Key : p.Key + "=" + p.Value)
            .ToList();
        if (sub.Count > 0)
        {
            sb.Append('?').AppendJoin('&', sub);
        }
        return sb.ToString();
    }

    /// <summary>V1 string to sign: <c>VERB\nContent-MD5\nContent-Type\nDate\n</c> + CanonicalizedOSSHeaders
    /// (every <c>x-oss-*</c> header, lowercased, sorted, <c>name:value\n</c>) + CanonicalizedResource.</summary>
    public static string V1StringToSign(string verb, string? contentMd5, string? contentType, string date,
        IEnumerable<KeyValuePair<string, string>> headers, string canonicalResource)
    {
        ArgumentNullException.ThrowIfNull(headers);
        var sb = new StringBuilder();
        sb.Append(verb).Append('\n')
            .Append(contentMd5 ?? "").Append('\n')
            .Append(contentType ?? "").Append('\n')
            .Append(date).Append('\n');
        foreach (var (name, value) in CanonicalHeaders(headers, n => n.StartsWith("x-oss-", StringComparison.Ordinal)))
        {
            sb.Append(name).Append(':').Append(value).Append('\n');
        }
        return sb.Append(canonicalResource).ToString();
    }

    /// <summary>base64(HMAC-SHA1(secret, stringToSign)).</summary>
    public static string V1Signature(string secret, string stringToSign) =>
        Convert.ToBase64String(HMACSHA1.HashData(Encoding.UTF8.GetBytes(secret), Encoding.UTF8.GetBytes(stringToSign)));

    public static string V1Authorization(string accessKeyId, string signature) => $"OSS {accessKeyId}:{signature}";

    /// <summary>V4 canonical URI: <c>/bucket/key</c> with the key URI-encoded ('/' kept), <c>/bucket/</c> for
    /// bucket operations.</summary>
    public static string V4CanonicalUri(string bucket, string key) =>
        bucket.Length == 0 ? "/" : "/" + UriEncode(bucket, keepSlash: false) + "/" + UriEncode(key, keepSlash: true);

    /// <summary>V4 canonical query: every parameter URI-encoded, sorted by encoded name, <c>name=value</c>
    /// or just <c>name</c> when the value is empty, joined with '&amp;'.</summary>
    public static string V4CanonicalQuery(IEnumerable<KeyValuePair<string, string?>> query)
    {
        ArgumentNullException.ThrowIfNull(query);
        return string.Join('&', query
            .Select(p => (Name: UriEncode(p.Key, keepSlash: false), Value: UriEncode(p.Value ?? "", keepSlash: false)))
            .OrderBy(p => p.Name, StringComparer.Ordinal)
            .ThenBy(p => p.Value, StringComparer.Ordinal)
            .Select(p => p.Value.Length == 0 ? p.Name : p.Name + "=" + p.Value));
    }

    /// <summary>
    /// V4 canonical request: VERB, canonical URI, canonical query, canonical headers (content-type, content-md5,
    /// every x-oss-* header and the additional headers; lowercased, trimmed, sorted, each <c>name:value\n</c>),
    /// the additional header names joined with ';', and the hashed payload, separated by '\n'.
    /// </summary>
    public static string V4CanonicalRequest(string verb, string canonicalUri, string canonicalQuery,
        IEnumerable<KeyValuePair<string, string>> headers, IReadOnlyCollection<string> additionalHeaders, string hashedPayload)
    {
        ArgumentNullException.ThrowIfNull(headers);
        ArgumentNullException.ThrowIfNull(additionalHeaders);
        var additional = new HashSet<string>(additionalHeaders.Select(h => h.ToLowerInvariant()), StringComparer.Ordinal);
        var sb = new StringBuilder();
        sb.Append(verb).Append('\n').Append(canonicalUri).Append('\n').Append(canonicalQuery).Append('\n');
        foreach (var (name, value) in CanonicalHeaders(headers, n => IsV4DefaultSignedHeader(n) || additional.Contains(n)))
        {
            sb.Append(name).Append(':').Append(value).Append('\n');
        }
        sb.Append('\n').AppendJoin(';', additional.Order(StringComparer.Ordinal)).Append('\n').Append(hashedPayload);
        return sb.ToString();
    }

    /// <summary>Headers V4 signs without being named in AdditionalHeaders.</summary>
    public static bool IsV4DefaultSignedHeader(string lowerName) =>
        lowerName is "content-type" or "content-md5" || lowerName.StartsWith("x-oss-", StringComparison.Ordinal);

    /// <summary><c>yyyyMMddTHHmmssZ</c>, the x-oss-date format.</summary>
    public static string V4Timestamp(DateTimeOffset time) =>
        time.UtcDateTime.ToString("yyyyMMdd'T'HHmmss'Z'", CultureInfo.InvariantCulture);

    /// <summary><c>yyyyMMdd/region/oss/aliyun_v4_request</c>.</summary>
    public static string V4Scope(string date, string region) => $"{date}/{region}/oss/{V4Terminator}";

    public static string V4StringToSign(string timestamp, string scope, string canonicalRequest) =>
        $"{V4Algorithm}\n{timestamp}\n{scope}\n{Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(canonicalRequest)))}";

    /// <summary>HMAC-SHA256 chain: "aliyun_v4"+secret → date → region → "oss" → "aliyun_v4_request".</summary>
    public static byte[] V4SigningKey(string secret, string date, string region)
    {
        var key = HMACSHA256.HashData(Encoding.UTF8.GetBytes("aliyun_v4" + secret), Encoding.UTF8.GetBytes(date));
        key = HMACSHA256.HashData(key, Encoding.UTF8.GetBytes(region));
        key = HMACSHA256.HashData(key, "oss"u8);
        return HMACSHA256.HashData(key, Encoding.UTF8.GetBytes(V4Terminator));
    }

    /// <summary>Lowercase hex HMAC-SHA256 of the string to sign under the derived signing key.</summary>
    public static string V4Signature(string secret, string date, string region, string stringToSign) =>
        Convert.ToHexStringLower(HMACSHA256.HashData(V4SigningKey(secret, date, region), Encoding.UTF8.GetBytes(stringToSign)));

    public static string V4Authorization(string accessKeyId, string scope, IReadOnlyCollection<string> additionalHeaders, string signature)
    {
        ArgumentNullException.ThrowIfNull(additionalHeaders);
        var additional = additionalHeaders.Count == 0
            ? ""
            : "AdditionalHeaders=" + string.Join(';', additionalHeaders.Select(h => h.ToLowerInvariant()).Order(StringComparer.Ordinal)) + ",";
        return $"{V4Algorithm} Credential={accessKeyId}/{scope},{additional}Signature={signature}";
    }

    /// <summary>RFC 3986 percent-encoding of UTF-8 bytes: A-Z a-z 0-9 - _ . ~ stay, and '/' when asked;
    /// everything else (space, '+', non-ASCII) becomes %XX with uppercase hex.</summary>
    public static string UriEncode(string value, bool keepSlash)
    {
        ArgumentNullException.ThrowIfNull(value);
        var sb = new StringBuilder(value.Length);
        foreach (var b in Encoding.UTF8.GetBytes(value))
        {
            var c = (char)b;
            if (c is (>= 'A' and <= 'Z') or (>= 'a' and <= 'z') or (>= '0' and <= '9') or '-' or '_' or '.' or '~'
                || (keepSlash && c == '/'))
            {
                sb.Append(c);
            }
            else
            {
                sb.Append('%').Append(((int)b).ToString("X2", CultureInfo.InvariantCulture));
            }
        }
        return sb.ToString();
    }

    /// <summary>Selected headers, names lowercased, values trimmed, same-name values joined with ',', sorted by name.</summary>
    private static IEnumerable<KeyValuePair<string, string>> CanonicalHeaders(
        IEnumerable<KeyValuePair<string, string>> headers, Func<string, bool> include)
    {
        var merged = new SortedDictionary<string, string>(StringComparer.Ordinal);
        foreach (var (rawName, rawValue) in headers)
        {
            var name = rawName.Trim().ToLowerInvariant();
            if (!include(name))
            {
                continue;
            }
            var value = rawValue.Trim();
            merged[name] = merged.TryGetValue(name, out var existing) ? existing + "," + value : value;
        }
        return merged;
    }
}
