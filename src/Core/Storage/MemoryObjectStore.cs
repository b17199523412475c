// An in-memory object store for tests.
namespace MirrorFS.Core.Storage;

public sealed class MemoryObjectStore : IObjectStore
{
    private readonly SortedDictionary<string, (byte[] Data, DateTimeOffset Modified)> _objects = new(StringComparer.Ordinal);
    private readonly Lock _lock = new();
    private readonly TimeProvider _time;

    public MemoryObjectStore(TimeProvider? time = null) => _time = time ?? TimeProvider.System;

    public string Description => "mem://";

    public int Count
    {
        get
        {
            lock (_lock)
            {
                return _objects.Count;
            }
        }
    }

    public Task PutAsync(string key, ReadOnlyMemory<byte> data, CancellationToken ct = default)
    {
        ObjectKeys.Check(Description, key);
        ct.ThrowIfCancellationRequested();
        var copy = data.ToArray();
        lock (_lock)
        {
            _objects[key] = (copy, _time.GetUtcNow());
        }
        return Task.CompletedTask;
    }

    public Task<byte[]?> GetAsync(string key, ByteRange? range = null, CancellationToken ct = default)
    {
        ObjectKeys.Check(Description, key);
        ct.ThrowIfCancellationRequested();
        lock (_lock)
        {
            if (!_objects.TryGetValue(key, out var o))
            {
                return Task.FromResult<byte[]?>(null);
            }
            return Task.FromResult<byte[]?>(ObjectKeys.Slice(o.Data, range));
        }
    }

    public Task<ObjectInfo?> HeadAsync(string key, CancellationToken ct = default)
    {
        ObjectKeys.Check(Description, key);
        lock (_lock)
        {
            return Task.FromResult(_objects.TryGetValue(key, out var o) ? new ObjectInfo(key, o.Data.Length, o.Modified) : null);
        }
    }

    public Task DeleteAsync(string key, CancellationToken ct = default)
    {
        ObjectKeys.Check(Description, key);
        lock (_lock)
        {
            _objects.Remove(key);
        }
        return Task.CompletedTask;
    }

    public Task<ObjectPage> ListAsync(string prefix, string? startAfter = null, int limit = 1000, CancellationToken ct = default)
    {
        ObjectKeys.CheckLimit(Description, limit);
        lock (_lock)
        {
            var result = new List<ObjectInfo>();
            var truncated = false;
            foreach (var (key, o) in _objects)
            {
                if (!key.StartsWith(prefix, StringComparison.Ordinal)
                    || (startAfter is not null && string.CompareOrdinal(key, startAfter) <= 0))
                {
                    continue;
                }
                if (result.Count == limit)
                {
                    truncated = true;
                    break;
                }
                result.Add(new ObjectInfo(key, o.Data.Length, o.Modified));
            }
            return Task.FromResult(new ObjectPage(result, truncated ? result[^1].Key : null));
        }
    }

    public Task DeleteManyAsync(IReadOnlyCollection<string> keys, CancellationToken ct = default)
    {
        lock (_lock)
        {
            foreach (var k in keys)
            {
                _objects.Remove(k);
            }
        }
        return Task.CompletedTask;
    }

    public ValueTask DisposeAsync() => ValueTask.CompletedTask;
}
