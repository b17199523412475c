// The one seam between MirrorFS and any object storage backend.
namespace MirrorFS.Core.Storage;

/// <summary>An object's key, size and last-modified time as a listing or head reports it.</summary>
public sealed record ObjectInfo(string Key, long Size, DateTimeOffset LastModified);

/// <summary>One page of a listing. <see cref="NextStartAfter"/> is null when the listing is complete.</summary>
public sealed record ObjectPage(IReadOnlyList<ObjectInfo> Objects, string? NextStartAfter);

/// <summary>A byte range of an object: <see cref="Offset"/> and at most <see cref="Length"/> bytes (-1: to the end).</summary>
public readonly record struct ByteRange(long Offset, long Length)
{
    public static ByteRange From(long offset) => new(offset, -1);
}

/// <summary>
/// Object storage as MirrorFS uses it. Every call is idempotent. "Not found" is one outcome for every
/// backend: <see cref="GetAsync"/> and <see cref="HeadAsync"/> return null, <see cref="DeleteAsync"/> succeeds.
/// Stores report failures as <see cref="ObjectStoreException"/> and do not retry; <see cref="RetryingObjectStore"/> retries the transient ones.
/// </summary>
public interface IObjectStore : IAsyncDisposable
{
    /// <summary>A short, secret-free description such as <c>s3://bucket (http://127.0.0.1:8080)</c>.</summary>
    string Description { get; }

    /// <summary>Stores the whole object, replacing any object with the same key.</summary>
    Task PutAsync(string key, ReadOnlyMemory<byte> data, CancellationToken ct = default);

    /// <summary>Reads the object, or the part of it in <paramref name="range"/>; null when the key does not exist.
    /// A range starting at or past the end gives an empty result.</summary>
    Task<byte[]?> GetAsync(string key, ByteRange? range = null, CancellationToken ct = default);

    /// <summary>The object's size and mtime, or null when the key does not exist.</summary>
    Task<ObjectInfo?> HeadAsync(string key, CancellationToken ct = default);

    /// <summary>Deletes the object; a missing key is success.</summary>
    Task DeleteAsync(string key, CancellationToken ct = default);

    /// <summary>One page of keys that start with <paramref name="prefix"/> and sort (ordinal, UTF-8) after
    /// <paramref name="startAfter"/>, in ascending order, at most <paramref name="limit"/> of them.</summary>
    Task<ObjectPage> ListAsync(string prefix, string? startAfter = null, int limit = 1000, CancellationToken ct = default);

    /// <summary>Deletes every key given; missing keys are success.</summary>
    Task DeleteManyAsync(IReadOnlyCollection<string> keys, CancellationToken ct = default);
}

public static class ObjectStoreExtensions
{
    /// <summary>Every object under <paramref name="prefix"/>, page by page.</summary>
    public static async IAsyncEnumerable<ObjectInfo> ListAllAsync(this IObjectStore store, string prefix,
        string? startAfter = null, int pageSize = 1000,
        [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken ct = default)
    {
        var after = startAfter;
        while (true)
        {
            var page = await store.ListAsync(prefix, after, pageSize, ct).ConfigureAwait(false);
            foreach (var o in page.Objects)
            {
                yield return o;
            }
            if (page.NextStartAfter is null || page.Objects.Count == 0)
            {
                yield break;
            }
            after = page.NextStartAfter;
        }
    }
}
