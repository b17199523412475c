// Where and how to reach one S3 bucket, parsed from an s3:// URI.
namespace MirrorFS.Core.Storage.S3;

public sealed record S3Options
{
    /// <summary>The URI form every parse error quotes.</summary>
    public const string UriForm =
        "s3://[ACCESS_KEY:SECRET@]bucket[/prefix][?endpoint=http://HOST:PORT&region=REGION&path-style=true|false" +
        "&access-key=AK&secret-key=SECRET&session-token=TOKEN] (percent-encode ':', '/', '+' and '@' in keys)";

    public const string DefaultRegion = "us-east-1";

    /// <summary>Bucket name (S3 rules: 3..63 of a-z, 0-9, '.', '-').</summary>
    public required string Bucket { get; init; }

    /// <summary>Prepended to every key by the store itself: empty, or ends with '/'. <see cref="FromUri"/> leaves it
    /// empty: ObjectStoreFactory puts the store under the URI's path with a PrefixObjectStore.</summary>
    public string Prefix { get; init; } = "";

    /// <summary>An S3-compatible endpoint such as http://127.0.0.1:8080; null means AWS's endpoint for
    /// <see cref="Region"/>.</summary>
    public Uri? Endpoint { get; init; }

    public string Region { get; init; } = DefaultRegion;

    /// <summary>Path-style (http://host/bucket/key) rather than virtual-hosted (http://bucket.host/key) requests.</summary>
    public bool PathStyle { get; init; }

    /// <summary>Explicit credentials; when null the store takes AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY /
    /// AWS_SESSION_TOKEN from the environment, else the SDK's profile and instance chain.</summary>
    public string? AccessKey { get; init; }
    public string? SecretKey { get; init; }
    public string? SessionToken { get; init; }

    /// <summary>Bound on one request, response body included.</summary>
    public int RequestTimeoutMs { get; init; } = 60_000;

    /// <summary>Bound on one DeleteObjects call of up to 1000 keys: some servers (Swift) delete them one by one.</summary>
    public int DeleteBatchTimeoutMs { get; init; } = 300_000;

    /// <summary>Bound on opening a TCP (and TLS) connection.</summary>
    public int ConnectTimeoutMs { get; init; } = 5_000;

    /// <summary>Largest object or range a get will buffer; larger is a BadRequest error.</summary>
    public int ObjectBytesMax { get; init; } = 256 << 20;

    /// <summary>Open connections to the endpoint at most.</summary>
    public int ConnectionsMax { get; init; } = 64;

    /// <summary>Parses <see cref="UriForm"/>; the /prefix is validated but not applied (see <see cref="Prefix"/>).
    /// Throws <see cref="ArgumentException"/> with a one-line message that never repeats a secret.</summary>
    public static S3Options FromUri(Uri uri)
    {
        ArgumentNullException.ThrowIfNull(uri);
        if (!uri.IsAbsoluteUri || !string.Equals(uri.Scheme, "s3", StringComparison.OrdinalIgnoreCase))
        {
            throw Bad("the scheme must be s3");
        }
        if (uri.Fragment.Length > 0)
        {
            throw Bad("a '#fragment' is not allowed (percent-encode '#' in keys as %23)");
        }

        // Uri lower-cases the host; S3 bucket names are lower-case anyway, but say so rather than rename a bucket.
        var authority = AuthorityOf(uri.OriginalString);
        var bucket = authority[(authority.LastIndexOf('@') + 1)..];
        if (bucket.Contains(':', StringComparison.Ordinal))
        {
            throw Bad("a port belongs in endpoint=, not after the bucket name");
        }
        var bucketError = ValidateBucket(bucket);
        if (bucketError is not null)
        {
            throw Bad(bucketError);
        }

        // The path is checked here but applied by ObjectStoreFactory (a PrefixObjectStore), as for every backend.
        var path = Uri.UnescapeDataString(uri.AbsolutePath).Trim('/');
        if (path.Length > 0 && ObjectKeys.Validate(path) is { } pathError)
        {
            throw Bad($"bad prefix: {pathError}");
        }

        string? accessKey = null, secretKey = null, sessionToken = null;
        if (uri.UserInfo.Length > 0)
        {
            var colon = uri.UserInfo.IndexOf(':', StringComparison.Ordinal);
            if (colon <= 0 || colon == uri.UserInfo.Length - 1)
            {
                throw Bad("credentials in the URI must be ACCESS_KEY:SECRET@");
            }
            accessKey = Uri.UnescapeDataString(uri.UserInfo[..colon]);
            secretKey = Uri.UnescapeDataString(uri.UserInfo[(colon + 1)..]);
        }

        Uri? endpoint = null;
        string? region = null;
        bool? pathStyle = null;
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var part in uri.Query.TrimStart('?').Split('&', StringSplitOptions.RemoveEmptyEntries))
        {
            var eq = part.IndexOf('=', StringComparison.Ordinal);
            var name = Uri.UnescapeDataString(eq < 0 ? part : part[..eq]);
            var value = eq < 0 ? "" : Uri.UnescapeDataString(part[(eq + 1)..]);
            if (!seen.Add(name))
            {
                throw Bad($"query parameter '{name}' is given twice");
            }
            switch (name)
            {
                case "endpoint":
                    endpoint = ParseEndpoint(value);
                    break;
                case "region":
                    if (value.Length == 0 || !value.All(c => char.IsAsciiLetterLower(c) || char.IsAsciiDigit(c) || c == '-'))
                    {
                        throw Bad("region must look like us-east-1");
                    }
                    region = value;
                    break;
                case "path-style":
                    pathStyle = value switch
                    {
                        "true" => true,
                        "false" => false,
                        _ => throw Bad("path-style must be true or false"),
                    };
                    break;
                case "access-key":
                    accessKey = accessKey is null ? NonEmpty(name, value) : throw Bad("give the access key either before '@' or as access-key=, not both");
                    break;
                case "secret-key":
                    secretKey = secretKey is null ? NonEmpty(name, value) : throw Bad("give the secret either before '@' or as secret-key=, not both");
                    break;
                case "session-token":
                    sessionToken = NonEmpty(name, value);
                    break;
                default:
                    throw Bad($"unknown query parameter '{name}'");
            }
        }
        if ((accessKey is null) != (secretKey is null))
        {
            throw Bad("give both the access key and the secret, or neither");
        }
        if (sessionToken is not null && accessKey is null)
        {
            throw Bad("session-token needs access-key and secret-key");
        }

        return new S3Options
        {
            Bucket = bucket,
            Endpoint = endpoint,
            Region = region ?? DefaultRegion,
            PathStyle = pathStyle ?? (endpoint is not null && IsIpOrLocalhost(endpoint)),
            AccessKey = accessKey,
            SecretKey = secretKey,
            SessionToken = sessionToken,
        };
    }

    /// <summary>The S3 naming rules for new buckets; null when <paramref name="bucket"/> follows them.</summary>
    public static string? ValidateBucket(string bucket)
    {
        if (bucket.Length is < 3 or > 63)
        {
            return $"bucket name '{bucket}' must be 3 to 63 characters";
        }
        if (!bucket.All(c => char.IsAsciiLetterLower(c) || char.IsAsciiDigit(c) || c is '.' or '-')
            || !char.IsAsciiLetterOrDigit(bucket[0]) || !char.IsAsciiLetterOrDigit(bucket[^1])
            || bucket.Contains("..", StringComparison.Ordinal))
        {
            return $"bucket name '{bucket}' may hold only a-z, 0-9, '.' and '-', starting and ending with a letter or digit";
        }
        return null;
    }

    /// <summary>Secret-free, e.g. <c>S3Options { s3://bucket/prefix (http://127.0.0.1:8080), credentials: uri }</c>.</summary>
    public override string ToString() =>
        $"S3Options {{ s3://{Bucket}/{Prefix} endpoint={Endpoint?.ToString() ?? "(aws)"} region={Region} " +
        $"path-style={PathStyle} credentials={(AccessKey is null ? "environment" : "explicit")} }}";

    internal static bool IsIpOrLocalhost(Uri endpoint) =>
        endpoint.HostNameType is UriHostNameType.IPv4 or UriHostNameType.IPv6
        || string.Equals(endpoint.Host, "localhost", StringComparison.OrdinalIgnoreCase)
        || endpoint.Host.EndsWith(".localhost", StringComparison.OrdinalIgnoreCase);

    private static Uri ParseEndpoint(string value)
    {
        if (!Uri.TryCreate(value, UriKind.Absolute, out var endpoint)
            || (endpoint.Scheme != Uri.UriSchemeHttp && endpoint.Scheme != Uri.UriSchemeHttps)
            || endpoint.Host.Length == 0)
        {
            throw Bad("endpoint must be an absolute http:// or https:// URL such as http://127.0.0.1:8080");
        }
        if (endpoint.AbsolutePath != "/" || endpoint.Query.Length > 0 || endpoint.UserInfo.Length > 0)
        {
            throw Bad("endpoint must be scheme://host[:port] with no path, query or credentials");
        }
        return endpoint;
    }

    private static string AuthorityOf(string uri)
    {
        var start = uri.IndexOf("://", StringComparison.Ordinal) + 3;
        var end = uri.IndexOfAny(['/', '?', '#'], start);
        return end < 0 ? uri[start..] : uri[start..end];
    }

    private static string NonEmpty(string name, string value) =>
        value.Length > 0 ? value : throw Bad($"query parameter '{name}' is empty");

    private static ArgumentException Bad(string problem) =>
        new($"bad S3 URI: {problem}; expected {UriForm}", "uri");
}
