using System.Collections;

namespace MirrorFS.Core.Rpc;

/// <summary>gRPC custom metadata: ordered key/value pairs sent as HTTP/2 headers or trailers. Keys are lower-case
/// ASCII (<c>0-9 a-z _ - .</c>); values are printable ASCII. Keys ending in <c>-bin</c> carry base64 text here.</summary>
public sealed class RpcMetadata : IReadOnlyList<KeyValuePair<string, string>>
{
    /// <summary>Most entries a single metadata set may hold; HTTP/2 header lists are bounded too.</summary>
    public const int EntriesMax = 256;

    private readonly List<KeyValuePair<string, string>> _entries = [];
    private readonly bool _readOnly;

    public RpcMetadata()
    {
    }

    private RpcMetadata(bool readOnly) => _readOnly = readOnly;

    /// <summary>An empty set that cannot be changed.</summary>
    public static RpcMetadata Empty { get; } = new(readOnly: true);

    public int Count => _entries.Count;

    public KeyValuePair<string, string> this[int index] => _entries[index];

    /// <summary>Adds an entry; throws ArgumentException for a key or value gRPC cannot carry.</summary>
    public RpcMetadata Add(string key, string value)
    {
        if (_readOnly)
        {
            throw new InvalidOperationException("This metadata set is read-only.");
        }

        if (!IsValidKey(key))
        {
            throw new ArgumentException(
                $"Invalid gRPC metadata key '{key}': use lower-case letters, digits, '_', '-', '.'.", nameof(key));
        }

        if (IsReservedKey(key))
        {
            throw new ArgumentException(
                $"gRPC metadata key '{key}' is reserved for the protocol; choose another name.", nameof(key));
        }

        if (!IsValidValue(value))
        {
            throw new ArgumentException(
                $"Invalid value for gRPC metadata key '{key}': use printable ASCII (base64 for '-bin' keys).",
                nameof(value));
        }

        if (_entries.Count >= EntriesMax)
        {
            throw new InvalidOperationException($"gRPC metadata holds at most {EntriesMax} entries.");
        }

        _entries.Add(new(key, value));
        return this;
    }

    /// <summary>The first value for <paramref name="key"/>, or null.</summary>
    public string? Get(string key)
    {
        foreach (var entry in _entries)
        {
            if (string.Equals(entry.Key, key, StringComparison.Ordinal))
            {
                return entry.Value;
            }
        }

        return null;
    }

    /// <summary>Every value for <paramref name="key"/>, in order.</summary>
    public IEnumerable<string> GetAll(string key)
    {
        foreach (var entry in _entries)
        {
            if (string.Equals(entry.Key, key, StringComparison.Ordinal))
            {
                yield return entry.Value;
            }
        }
    }

    public IEnumerator<KeyValuePair<string, string>> GetEnumerator() => _entries.GetEnumerator();

    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();

    /// <summary>Adds an entry received from the wire without the reserved-key check, skipping what is invalid.</summary>
    internal void AddReceived(string key, string value)
    {
        if (_entries.Count < EntriesMax && IsValidKey(key) && IsValidValue(value))
        {
            _entries.Add(new(key, value));
        }
    }

    internal static bool IsValidKey(string key)
    {
        if (string.IsNullOrEmpty(key))
        {
            return false;
        }

        foreach (var c in key)
        {
            if (!(c is >= 'a' and <= 'z' or >= '0' and <= '9' or '_' or '-' or '.'))
            {
                return false;
            }
        }

        return true;
    }

    internal static bool IsValidValue(string value)
    {
        foreach (var c in value)
        {
            if (c is < ' ' or > '~')
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>Headers the protocol owns: callers may not set them, and handlers do not see them (authorization
    /// stays out so a handler that logs its metadata cannot leak the token).</summary>
    internal static bool IsReservedKey(string key) =>
        key.StartsWith("grpc-", StringComparison.Ordinal)
        || key is "content-type" or "te" or "authorization" or "user-agent" or "host" or "content-length"
            or "connection" or "transfer-encoding" or "upgrade" or "keep-alive";
}
