// Opens a store from a URI: file:///path, mem://, s3://bucket?..., oss://bucket?... — wrapped in retries.
using System.Text.RegularExpressions;

namespace MirrorFS.Core.Storage;

/// <summary>A storage URI that cannot be understood. The message is one line and names the expected forms.</summary>
public sealed class StoreUriException(string message) : ArgumentException(message);

public static partial class ObjectStoreFactory
{
    public const string ExpectedForms =
        "expected file:///ABSOLUTE/PATH, s3://BUCKET[/PREFIX]?endpoint=URL&region=REGION&path-style=true "
        + "or oss://BUCKET[/PREFIX]?endpoint=HOST";

    /// <summary>Opens the store a URI names, with transient failures retried.</summary>
    public static IObjectStore Open(string uri, RetryOptions? retry = null) =>
        new RetryingObjectStore(OpenRaw(uri), retry);

    /// <summary>Opens the store a URI names, without the retry decorator.</summary>
    public static IObjectStore OpenRaw(string uri)
    {
        if (string.IsNullOrWhiteSpace(uri))
        {
            throw new StoreUriException($"storage URI is empty: {ExpectedForms}");
        }
        if (!Uri.TryCreate(uri, UriKind.Absolute, out var u))
        {
            throw new StoreUriException($"storage URI '{Redact(uri)}' is malformed: {ExpectedForms}");
        }
        return u.Scheme switch
        {
            "file" => OpenFile(uri, u),
            "mem" => new MemoryObjectStore(),
            "s3" => Prefixed(new S3.S3ObjectStore(S3.S3Options.FromUri(u)), u),
            "oss" => Prefixed(new Oss.OssObjectStore(Oss.OssOptions.FromUri(u)), u),
            _ => throw new StoreUriException($"storage URI '{Redact(uri)}' has unknown scheme '{u.Scheme}': {ExpectedForms}"),
        };
    }

    private static FileObjectStore OpenFile(string raw, Uri u)
    {
        if (!string.IsNullOrEmpty(u.Host) && u.Host != "localhost")
        {
            throw new StoreUriException($"storage URI '{raw}' names host '{u.Host}': a file store is local, use file:///ABSOLUTE/PATH");
        }
        var path = Uri.UnescapeDataString(u.AbsolutePath);
        if (path.Length <= 1)
        {
            throw new StoreUriException($"storage URI '{raw}' has no directory: use file:///ABSOLUTE/PATH");
        }
        return new FileObjectStore(path);
    }

    // A path after the bucket (s3://bucket/some/prefix) puts every key under that prefix.
    private static IObjectStore Prefixed(IObjectStore store, Uri u)
    {
        var prefix = Uri.UnescapeDataString(u.AbsolutePath).Trim('/');
        return prefix.Length == 0 ? store : new PrefixObjectStore(store, prefix);
    }

    /// <summary>The URI with every secret replaced by ***: the password part of user info and secret query values.</summary>
    public static string Redact(string uri)
    {
        var s = UserInfoSecret().Replace(uri, "$1***@");
        return SecretQuery().Replace(s, "$1***");
    }

    [GeneratedRegex(@"^([a-zA-Z][a-zA-Z0-9+.-]*://[^:/@?#]*:)[^@/?#]*@")]
    private static partial Regex UserInfoSecret();

    [GeneratedRegex(@"([?&](?:secret-key|secret_key|secret|access-key-secret|session-token|security-token|token|password)=)[^&#]*",
        RegexOptions.IgnoreCase)]
    private static partial Regex SecretQuery();
}
