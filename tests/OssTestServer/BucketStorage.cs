// Objects of the test server's buckets, in memory or in a directory (one data and one metadata file per object).
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;

namespace MirrorFS.Testing.Oss;

/// <summary>What the server knows about a stored object.</summary>
public sealed record StoredObject(string Key, long Size, string ETag, DateTimeOffset LastModified);

/// <summary>
/// Buckets and their objects. Thread-safe. The key index lives in memory, sorted by UTF-8 byte order as OSS
/// lists; with a data directory every object is also a file pair under <c>DIR/bucket/</c>, reloaded at start.
/// </summary>
internal sealed class BucketStorage
{
    private readonly string? _directory;
    private readonly Lock _lock = new();
    private readonly Dictionary<string, SortedDictionary<string, Entry>> _buckets = new(StringComparer.Ordinal);

    public BucketStorage(string? directory)
    {
        _directory = directory;
        if (directory is null)
        {
            return;
        }
        Directory.CreateDirectory(directory);
        foreach (var bucketDir in Directory.EnumerateDirectories(directory))
        {
            var index = new SortedDictionary<string, Entry>(Utf8Order.Instance);
            foreach (var metaPath in Directory.EnumerateFiles(bucketDir, "*.meta"))
            {
                var meta = JsonSerializer.Deserialize<MetaFile>(File.ReadAllText(metaPath));
                if (meta is not null && File.Exists(Path.ChangeExtension(metaPath, ".data")))
                {
                    index[meta.Key] = new Entry(new StoredObject(meta.Key, meta.Size, meta.ETag,
                        DateTimeOffset.FromUnixTimeSeconds(meta.LastModifiedUnixSeconds)), null);
                }
            }
            _buckets[Path.GetFileName(bucketDir)] = index;
        }
    }

    public void CreateBucket(string bucket)
    {
        lock (_lock)
        {
            if (_buckets.ContainsKey(bucket))
            {
                return;
            }
            if (_directory is not null)
            {
                Directory.CreateDirectory(Path.Combine(_directory, bucket));
            }
            _buckets[bucket] = new SortedDictionary<string, Entry>(Utf8Order.Instance);
        }
    }

    public bool BucketExists(string bucket)
    {
        lock (_lock)
        {
            return _buckets.ContainsKey(bucket);
        }
    }

    public StoredObject? Head(string bucket, string key)
    {
        lock (_lock)
        {
            return _buckets.TryGetValue(bucket, out var index) && index.TryGetValue(key, out var e) ? e.Info : null;
        }
    }

    public async Task<(StoredObject Info, byte[] Data)?> ReadAsync(string bucket, string key, CancellationToken ct)
    {
        Entry entry;
        lock (_lock)
        {
            if (!_buckets.TryGetValue(bucket, out var index) || !index.TryGetValue(key, out entry!))
            {
                return null;
            }
        }
        if (entry.Data is not null)
        {
            return (entry.Info, entry.Data);
        }
        try
        {
            return (entry.Info, await File.ReadAllBytesAsync(DataPath(bucket, key), ct).ConfigureAwait(false));
        }
        catch (FileNotFoundException)
        {
            // Deleted or replaced between the index look-up and the read.
            return null;
        }
    }

    public async Task<StoredObject> WriteAsync(string bucket, string key, byte[] data, DateTimeOffset now, CancellationToken ct)
    {
        var info = new StoredObject(key, data.Length, "\"" + Convert.ToHexString(MD5.HashData(data)) + "\"",
            DateTimeOffset.FromUnixTimeSeconds(now.ToUnixTimeSeconds()));
        if (_directory is null)
        {
            lock (_lock)
            {
                _buckets[bucket][key] = new Entry(info, data);
            }
            return info;
        }

        // Write both files under temporary names and rename: a crash leaves the old object or the new one.
        var dataPath = DataPath(bucket, key);
        var metaPath = Path.ChangeExtension(dataPath, ".meta");
        var suffix = "." + Guid.NewGuid().ToString("N") + ".tmp";
        await File.WriteAllBytesAsync(dataPath + suffix, data, ct).ConfigureAwait(false);
        var meta = new MetaFile(key, info.Size, info.ETag, info.LastModified.ToUnixTimeSeconds());
        await File.WriteAllTextAsync(metaPath + suffix, JsonSerializer.Serialize(meta), ct).ConfigureAwait(false);
        lock (_lock)
        {
            File.Move(dataPath + suffix, dataPath, overwrite: true);
            File.Move(metaPath + suffix, metaPath, overwrite: true);
            _buckets[bucket][key] = new Entry(info, null);
        }
        return info;
    }

    public void Delete(string bucket, string key)
    {
        lock (_lock)
        {
            if (!_buckets.TryGetValue(bucket, out var index) || !index.Remove(key) || _directory is null)
            {
                return;
            }
            var dataPath = DataPath(bucket, key);
            File.Delete(Path.ChangeExtension(dataPath, ".meta"));
            File.Delete(dataPath);
        }
    }

    /// <summary>Up to <paramref name="limit"/> keys (objects, then common prefixes, merged in order) after
    /// <paramref name="marker"/>; Truncated says whether more follow.</summary>
    public (List<StoredObject> Objects, List<string> CommonPrefixes, bool Truncated, string? LastReturned) List(
        string bucket, string prefix, string marker, string delimiter, int limit)
    {
        var objects = new List<StoredObject>();
        var prefixes = new List<string>();
        string? last = null;
        lock (_lock)
        {
            foreach (var (key, entry) in _buckets[bucket])
            {
                if (!key.StartsWith(prefix, StringComparison.Ordinal) || Utf8Order.Instance.Compare(key, marker) <= 0)
                {
                    continue;
                }
                string? common = null;
                if (delimiter.Length > 0)
                {
                    var at = key.IndexOf(delimiter, prefix.Length, StringComparison.Ordinal);
                    if (at >= 0)
                    {
                        common = key[..(at + delimiter.Length)];
                        if (prefixes.Count > 0 && prefixes[^1] == common)
                        {
                            continue;
                        }
                        if (Utf8Order.Instance.Compare(common, marker) <= 0)
                        {
                            continue;
                        }
                    }
                }
                if (objects.Count + prefixes.Count == limit)
                {
                    return (objects, prefixes, true, last);
                }
                if (common is not null)
                {
                    prefixes.Add(common);
                    last = common;
                }
                else
                {
                    objects.Add(entry.Info);
                    last = key;
                }
            }
        }
        return (objects, prefixes, false, last);
    }

    private string DataPath(string bucket, string key) =>
        Path.Combine(_directory!, bucket, Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(key))) + ".data");

    private sealed record Entry(StoredObject Info, byte[]? Data);

    private sealed record MetaFile(string Key, long Size, string ETag, long LastModifiedUnixSeconds);
}

/// <summary>Orders strings as their UTF-8 bytes order, which is Unicode code point order (UTF-16 ordinal is not).</summary>
internal sealed class Utf8Order : IComparer<string>
{
    public static readonly Utf8Order Instance = new();

    public int Compare(string? x, string? y)
    {
        if (ReferenceEquals(x, y))
        {
            return 0;
        }
        if (x is null || y is null)
        {
            return x is null ? -1 : 1;
        }
        var a = x.EnumerateRunes();
        var b = y.EnumerateRunes();
        while (true)
        {
            var hasA = a.MoveNext();
            var hasB = b.MoveNext();
            if (!hasA || !hasB)
            {
                return hasA ? 1 : hasB ? -1 : 0;
            }
            var c = a.Current.Value.CompareTo(b.Current.Value);
            if (c != 0)
            {
                return c;
            }
        }
    }
}
