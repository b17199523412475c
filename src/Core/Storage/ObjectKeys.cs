// Checks and helpers every store shares: key validity, ranges, listing limits.
using System.Text;

namespace MirrorFS.Core.Storage;

public static class ObjectKeys
{
    /// <summary>Longest key in UTF-8 bytes that every backend accepts (S3 and OSS allow 1024).</summary>
    public const int KeyBytesMax = 1024;

    /// <summary>Largest page a listing may ask for (S3 and OSS cap at 1000).</summary>
    public const int ListLimitMax = 1000;

    /// <summary>Throws a one-line BadRequest error unless <paramref name="key"/> is a key every backend can hold.</summary>
    public static void Check(string store, string key)
    {
        var error = Validate(key);
        if (error is not null)
        {
            throw new ObjectStoreException(store, StoreFailure.BadRequest, error);
        }
    }

    public static string? Validate(string key)
    {
        if (string.IsNullOrEmpty(key))
        {
            return "object key is empty";
        }
        if (key[0] == '/' || key.EndsWith('/'))
        {
            return $"object key '{key}' must not start or end with '/'";
        }
        if (Encoding.UTF8.GetByteCount(key) > KeyBytesMax)
        {
            return $"object key is longer than {KeyBytesMax} bytes";
        }
        foreach (var segment in key.Split('/'))
        {
            if (segment.Length == 0 || segment == "." || segment == "..")
            {
                return $"object key '{key}' has an empty, '.' or '..' path segment";
            }
        }
        foreach (var c in key)
        {
            if (char.IsControl(c))
            {
                return "object key contains a control character";
            }
        }
        return null;
    }

    public static void CheckLimit(string store, int limit)
    {
        if (limit < 1 || limit > ListLimitMax)
        {
            throw new ObjectStoreException(store, StoreFailure.BadRequest, $"list limit {limit} is outside 1..{ListLimitMax}");
        }
    }

    /// <summary>The part of <paramref name="data"/> that <paramref name="range"/> selects; empty past the end.</summary>
    public static byte[] Slice(byte[] data, ByteRange? range)
    {
        if (range is not { } r)
        {
            return data;
        }
        CheckRange(r);
        if (r.Offset >= data.Length)
        {
            return [];
        }
        var len = r.Length < 0 ? data.Length - r.Offset : Math.Min(r.Length, data.Length - r.Offset);
        return data.AsSpan((int)r.Offset, (int)len).ToArray();
    }

    public static void CheckRange(ByteRange r)
    {
        if (r.Offset < 0 || r.Length < -1)
        {
            throw new ArgumentOutOfRangeException(nameof(r), $"byte range ({r.Offset}, {r.Length}) is invalid");
        }
    }
}
