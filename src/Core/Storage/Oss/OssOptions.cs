// Connection settings for an Alibaba Cloud OSS bucket, parsed from an oss:// URI.
using System.Globalization;
using System.Net;
using System.Text.RegularExpressions;

namespace MirrorFS.Core.Storage.Oss;

/// <summary>Which OSS request-signing scheme to use.</summary>
public enum OssSignatureVersion
{
    /// <summary>HMAC-SHA1 over the canonical request (<c>Authorization: OSS ak:sig</c>).</summary>
    V1,
    /// <summary>OSS4-HMAC-SHA256 with a region-scoped signing key; the recommended scheme.</summary>
    V4,
}

/// <summary>
/// Everything <see cref="OssObjectStore"/> needs to reach one bucket. Build it with <see cref="FromUri"/> or
/// directly. <see cref="ToString"/> never shows the secret.
/// </summary>
public sealed partial record OssOptions
{
    public const string UriForm =
        "oss://[ACCESS_KEY_ID:SECRET@]bucket[/prefix]?endpoint=oss-cn-hangzhou.aliyuncs.com[&region=cn-hangzhou][&signature=v4|v1]";

    /// <summary>Bucket name (3-63 characters: lowercase letters, digits, hyphens).</summary>
    public required string Bucket { get; init; }

    /// <summary>Endpoint host with an optional port, no scheme: <c>oss-cn-hangzhou.aliyuncs.com</c>, <c>127.0.0.1:9000</c>.</summary>
    public required string Endpoint { get; init; }

    /// <summary>"https" (default) or "http".</summary>
    public string Scheme { get; init; } = "https";

    public required string AccessKeyId { get; init; }
    public required string AccessKeySecret { get; init; }

    /// <summary>STS security token, sent as <c>x-oss-security-token</c>; null for long-term keys.</summary>
    public string? SecurityToken { get; init; }

    /// <summary>Region id such as <c>cn-hangzhou</c>; required by V4 signing.</summary>
    public string? Region { get; init; }

    public OssSignatureVersion SignatureVersion { get; init; } = OssSignatureVersion.V4;

    /// <summary>Null: path style for IP and localhost endpoints, virtual-hosted style otherwise.</summary>
    public bool? PathStyle { get; init; }

    /// <summary>Upper bound on one request, from sending to the last byte of the response.</summary>
    public int RequestTimeoutMs { get; init; } = 30_000;

    /// <summary>Upper bound on opening one TCP connection.</summary>
    public int ConnectTimeoutMs { get; init; } = 5_000;

    /// <summary>Connections kept open to the endpoint at most.</summary>
    public int ConnectionsMax { get; init; } = 64;

    /// <summary>True when requests go to <c>endpoint/bucket/key</c> rather than <c>bucket.endpoint/key</c>.</summary>
    public bool UsesPathStyle => PathStyle ?? IsIpOrLocalhost(HostOf(Endpoint));

    /// <summary>A secret-free name such as <c>oss://bucket (oss-cn-hangzhou.aliyuncs.com)</c>.</summary>
    public string Description => $"oss://{Bucket} ({(Scheme == "https" ? "" : Scheme + "://")}{Endpoint})";

    public override string ToString() => Description;

    /// <summary>
    /// Parses <c>oss://[AK:SECRET@]bucket[/prefix]?endpoint=...&amp;region=...&amp;signature=v4</c>.
    /// Credentials come from the URI's user info, else the <c>access-key</c>/<c>secret-key</c>/<c>security-token</c>
    /// query parameters, else the environment (OSS_ACCESS_KEY_ID, OSS_ACCESS_KEY_SECRET, OSS_SESSION_TOKEN, or
    /// ALIBABA_CLOUD_ACCESS_KEY_ID, ALIBABA_CLOUD_ACCESS_KEY_SECRET, ALIBABA_CLOUD_SECURITY_TOKEN).
    /// Other query parameters: <c>path-style=true|false</c>, <c>timeout-ms</c>, <c>connect-timeout-ms</c>,
    /// <c>connections-max</c>. Throws <see cref="ArgumentException"/> with a one-line message on bad input.
    /// A path after the bucket is not part of these options: <see cref="ObjectStoreFactory"/> puts the store under
    /// that prefix with a <see cref="PrefixObjectStore"/>.
    /// </summary>
    public static OssOptions FromUri(Uri uri, Func<string, string?>? environment = null)
    {
        ArgumentNullException.ThrowIfNull(uri);
        environment ??= Environment.GetEnvironmentVariable;
        var shown = Redact(uri);
        if (!uri.IsAbsoluteUri || !string.Equals(uri.Scheme, "oss", StringComparison.OrdinalIgnoreCase))
        {
            throw Bad(shown, "the scheme must be oss://");
        }

        // Uri lowercases the host, so read the bucket from the original text: capitals are not allowed.
        var bucket = RawHost(uri.OriginalString);
        if (!BucketName().IsMatch(bucket))
        {
            throw Bad(shown, $"'{bucket}' is not a valid bucket name (3-63 lowercase letters, digits, hyphens)");
        }
        if (!uri.IsDefaultPort)
        {
            throw Bad(shown, "a bucket has no port; put host:port in endpoint=");
        }

        var query = ParseQuery(uri, shown);
        string? Take(string name) => query.Remove(name, out var v) ? v : null;

        var endpointText = Take("endpoint");
        var region = Take("region");
        var signatureText = Take("signature");
        var pathStyleText = Take("path-style");
        var timeoutText = Take("timeout-ms");
        var connectTimeoutText = Take("connect-timeout-ms");
        var connectionsText = Take("connections-max");
        var queryKey = Take("access-key");
        var querySecret = Take("secret-key");
        var queryToken = Take("security-token");
        if (query.Count > 0)
        {
            throw Bad(shown, $"unknown parameter '{query.Keys.First()}'");
        }

        if (string.IsNullOrEmpty(endpointText))
        {
            if (string.IsNullOrEmpty(region))
            {
                throw Bad(shown, "endpoint= is required (or region= to use oss-REGION.aliyuncs.com)");
            }
            endpointText = $"oss-{region}.aliyuncs.com";
        }
        var (scheme, endpoint) = ParseEndpoint(endpointText, shown);
        region = string.IsNullOrEmpty(region) ? RegionFromEndpoint(endpoint) : region;

        var version = signatureText?.ToUpperInvariant() switch
        {
            null or "" or "V4" or "4" => OssSignatureVersion.V4,
            "V1" or "1" => OssSignatureVersion.V1,
            _ => throw Bad(shown, $"signature must be v4 or v1, not '{signatureText}'"),
        };
        if (version == OssSignatureVersion.V4 && string.IsNullOrEmpty(region))
        {
            throw Bad(shown, $"region= is required for signature v4 when the endpoint '{endpoint}' is not oss-REGION.aliyuncs.com");
        }

        bool? pathStyle = pathStyleText?.ToUpperInvariant() switch
        {
            null or "" => null,
            "TRUE" or "1" or "YES" => true,
            "FALSE" or "0" or "NO" => false,
            _ => throw Bad(shown, $"path-style must be true or false, not '{pathStyleText}'"),
        };

        string? keyId = null, secret = null, token = null;
        if (!string.IsNullOrEmpty(uri.UserInfo))
        {
            var colon = uri.UserInfo.IndexOf(':', StringComparison.Ordinal);
            if (colon <= 0 || colon == uri.UserInfo.Length - 1)
            {
                throw Bad(shown, "user info must be ACCESS_KEY_ID:SECRET (percent-encode '/', '+', '@' and ':' in the secret)");
            }
            keyId = Uri.UnescapeDataString(uri.UserInfo[..colon]);
            secret = Uri.UnescapeDataString(uri.UserInfo[(colon + 1)..]);
            token = queryToken;
        }
        else if (!string.IsNullOrEmpty(queryKey) || !string.IsNullOrEmpty(querySecret))
        {
            if (string.IsNullOrEmpty(queryKey) || string.IsNullOrEmpty(querySecret))
            {
                throw Bad(shown, "access-key and secret-key must be given together");
            }
            (keyId, secret, token) = (queryKey, querySecret, queryToken);
        }
        else
        {
            keyId = NonEmpty(environment("OSS_ACCESS_KEY_ID"));
            if (keyId is not null)
            {
                secret = NonEmpty(environment("OSS_ACCESS_KEY_SECRET"));
                token = NonEmpty(environment("OSS_SESSION_TOKEN"));
            }
            else
            {
                keyId = NonEmpty(environment("ALIBABA_CLOUD_ACCESS_KEY_ID"));
                secret = NonEmpty(environment("ALIBABA_CLOUD_ACCESS_KEY_SECRET"));
                token = NonEmpty(environment("ALIBABA_CLOUD_SECURITY_TOKEN"));
            }
            token ??= queryToken;
            if (keyId is null || secret is null)
            {
                throw Bad(shown, "no credentials: use oss://ACCESS_KEY_ID:SECRET@bucket, access-key=&secret-key=, "
                    + "or set OSS_ACCESS_KEY_ID and OSS_ACCESS_KEY_SECRET");
            }
        }

        return new OssOptions
        {
            Bucket = bucket,
            Endpoint = endpoint,
            Scheme = scheme,
            AccessKeyId = keyId!,
            AccessKeySecret = secret!,
            SecurityToken = NonEmpty(token),
            Region = NonEmpty(region),
            SignatureVersion = version,
            PathStyle = pathStyle,
            RequestTimeoutMs = PositiveInt(timeoutText, 30_000, "timeout-ms", shown),
            ConnectTimeoutMs = PositiveInt(connectTimeoutText, 5_000, "connect-timeout-ms", shown),
            ConnectionsMax = PositiveInt(connectionsText, 64, "connections-max", shown),
        };
    }

    /// <summary>The region in an <c>oss-REGION[-internal].aliyuncs.com</c> endpoint, else null.</summary>
    public static string? RegionFromEndpoint(string endpoint)
    {
        var m = AliyunEndpoint().Match(HostOf(endpoint));
        return m.Success ? m.Groups["region"].Value : null;
    }

    /// <summary>The URI as text with the user info and any secret-key/security-token value hidden.</summary>
    public static string Redact(Uri uri)
    {
        ArgumentNullException.ThrowIfNull(uri);
        var text = uri.OriginalString;
        if (!string.IsNullOrEmpty(uri.UserInfo))
        {
            text = text.Replace(uri.UserInfo + "@", "***@", StringComparison.Ordinal);
        }
        return SecretParameter().Replace(text, "$1=***");
    }

    internal static string HostOf(string endpoint)
    {
        if (endpoint.StartsWith('['))
        {
            var close = endpoint.IndexOf(']', StringComparison.Ordinal);
            return close > 0 ? endpoint[1..close] : endpoint;
        }
        var colon = endpoint.LastIndexOf(':');
        return colon >= 0 && endpoint.IndexOf(':', StringComparison.Ordinal) == colon ? endpoint[..colon] : endpoint;
    }

    private static string RawHost(string text)
    {
        var start = text.IndexOf("://", StringComparison.Ordinal) + 3;
        var end = text.IndexOfAny(['/', '?', '#'], start);
        var authority = end < 0 ? text[start..] : text[start..end];
        authority = authority[(authority.LastIndexOf('@') + 1)..];
        var colon = authority.IndexOf(':', StringComparison.Ordinal);
        return colon < 0 ? authority : authority[..colon];
    }

    private static bool IsIpOrLocalhost(string host) =>
        IPAddress.TryParse(host, out _) || string.Equals(host, "localhost", StringComparison.OrdinalIgnoreCase);

    private static (string Scheme, string Endpoint) ParseEndpoint(string text, string shown)
    {
        var scheme = "https";
        var rest = text;
        var sep = text.IndexOf("://", StringComparison.Ordinal);
        if (sep >= 0)
        {
            scheme = text[..sep].ToLowerInvariant();
            rest = text[(sep + 3)..];
            if (scheme is not ("http" or "https"))
            {
                throw Bad(shown, $"endpoint scheme must be http or https, not '{scheme}'");
            }
        }
        rest = rest.TrimEnd('/');
        if (rest.Length == 0 || rest.Contains('/', StringComparison.Ordinal) || rest.Contains('@', StringComparison.Ordinal)
            || Uri.CheckHostName(HostOf(rest)) == UriHostNameType.Unknown)
        {
            throw Bad(shown, $"endpoint '{text}' must be host[:port], optionally with http:// or https://");
        }
        return (scheme, rest.ToLowerInvariant());
    }

    private static Dictionary<string, string> ParseQuery(Uri uri, string shown)
    {
        var result = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        foreach (var part in uri.Query.TrimStart('?').Split('&', StringSplitOptions.RemoveEmptyEntries))
        {
            var eq = part.IndexOf('=', StringComparison.Ordinal);
            var name = Uri.UnescapeDataString(eq < 0 ? part : part[..eq]);
            // '+' stays a plus: secrets may contain it, and no client here encodes spaces as '+'.
            var value = eq < 0 ? "" : Uri.UnescapeDataString(part[(eq + 1)..]);
            if (!result.TryAdd(name, value))
            {
                throw Bad(shown, $"parameter '{name}' is given twice");
            }
        }
        return result;
    }

    private static int PositiveInt(string? text, int fallback, string name, string shown)
    {
        if (string.IsNullOrEmpty(text))
        {
            return fallback;
        }
        if (!int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var v) || v <= 0)
        {
            throw Bad(shown, $"{name} must be a positive integer, not '{text}'");
        }
        return v;
    }

    private static string? NonEmpty(string? s) => string.IsNullOrEmpty(s) ? null : s;

    private static ArgumentException Bad(string shown, string why) =>
        new($"bad OSS URI '{shown}': {why}; expected {UriForm}");

    [GeneratedRegex("^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")]
    private static partial Regex BucketName();

    [GeneratedRegex(@"^oss-(?<region>[a-z0-9-]+?)(-internal)?\.aliyuncs\.com$", RegexOptions.IgnoreCase)]
    private static partial Regex AliyunEndpoint();

    [GeneratedRegex("(secret-key|security-token)=[^&]*", RegexOptions.IgnoreCase)]
    private static partial Regex SecretParameter();
}
