// Block caches of the read path: a bounded in-memory LRU and an optional bounded on-disk directory.
using Microsoft.Extensions.Logging;

namespace MirrorFS.Client.Vfs;

/// <summary>Whole blocks by object key, in memory, least recently used evicted past <c>bytesMax</c>.</summary>
public sealed class MemoryBlockCache(long bytesMax)
{
    private readonly Dictionary<string, LinkedListNode<(string Key, byte[] Data)>> _map = new(StringComparer.Ordinal);
    private readonly LinkedList<(string Key, byte[] Data)> _lru = new();
    private readonly Lock _lock = new();
    private long _bytes;

    public long Bytes
    {
        get
        {
            lock (_lock)
            {
                return _bytes;
            }
        }
    }

    public byte[]? Get(string key)
    {
        lock (_lock)
        {
            if (!_map.TryGetValue(key, out var node))
            {
                return null;
            }
            _lru.Remove(node);
            _lru.AddFirst(node);
            return node.Value.Data;
        }
    }

    /// <summary>Adds a block (blocks never change, so an existing entry is only refreshed).</summary>
    public void Put(string key, byte[] data)
    {
        if (data.Length > bytesMax)
        {
            return;
        }
        lock (_lock)
        {
            if (_map.TryGetValue(key, out var old))
            {
                _lru.Remove(old);
                _lru.AddFirst(old);
                return;
            }
            _map[key] = _lru.AddFirst((key, data));
            _bytes += data.Length;
            while (_bytes > bytesMax && _lru.Last is { } last)
            {
                _lru.RemoveLast();
                _map.Remove(last.Value.Key);
                _bytes -= last.Value.Data.Length;
            }
        }
    }
}

/// <summary>
/// Whole blocks as files under a directory (the object key is the relative path), bounded in bytes; the oldest
/// written or read file goes first. Files are written to a temp name and renamed, so a crash leaves no torn block.
/// </summary>
public sealed class DiskBlockCache
{
    private readonly string _dir;
    private readonly long _bytesMax;
    private readonly ILogger _log;
    private readonly Lock _lock = new();
    private readonly Dictionary<string, LinkedListNode<(string Key, long Size)>> _map = new(StringComparer.Ordinal);
    private readonly LinkedList<(string Key, long Size)> _lru = new();
    private long _bytes;

    public DiskBlockCache(string directory, long bytesMax, ILogger log)
    {
        _dir = Path.GetFullPath(directory);
        _bytesMax = bytesMax;
        _log = log;
        Directory.CreateDirectory(_dir);
        // Index what an earlier run left, oldest first, so eviction order survives a restart.
        var files = new DirectoryInfo(_dir).EnumerateFiles("*", SearchOption.AllDirectories)
            .Where(f => !f.Name.EndsWith(".tmp", StringComparison.Ordinal))
            .OrderBy(f => f.LastWriteTimeUtc);
        foreach (var f in files)
        {
            var key = Path.GetRelativePath(_dir, f.FullName).Replace(Path.DirectorySeparatorChar, '/');
            _map[key] = _lru.AddFirst((key, f.Length));
            _bytes += f.Length;
        }
        Evict();
    }

    public long Bytes
    {
        get
        {
            lock (_lock)
            {
                return _bytes;
            }
        }
    }

    private string PathOf(string key) => Path.Combine(_dir, key);

    public byte[]? Get(string key)
    {
        lock (_lock)
        {
            if (!_map.TryGetValue(key, out var node))
            {
                return null;
            }
            _lru.Remove(node);
            _lru.AddFirst(node);
        }
        try
        {
            return File.ReadAllBytes(PathOf(key));
        }
        catch (IOException)
        {
            Forget(key);
            return null;
        }
    }

    public void Put(string key, ReadOnlySpan<byte> data)
    {
        if (data.Length > _bytesMax)
        {
            return;
        }
        lock (_lock)
        {
            if (_map.ContainsKey(key))
            {
                return;
            }
        }
        var path = PathOf(key);
        try
        {
            Directory.CreateDirectory(Path.GetDirectoryName(path)!);
            var tmp = path + "." + Guid.NewGuid().ToString("N")[..8] + ".tmp";
            using (var fs = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write))
            {
                fs.Write(data);
            }
            File.Move(tmp, path, overwrite: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            _log.LogWarning("disk cache could not store block {Key}: {Error}", key, e.Message);
            return;
        }
        lock (_lock)
        {
            if (!_map.ContainsKey(key))
            {
                _map[key] = _lru.AddFirst((key, data.Length));
                _bytes += data.Length;
            }
        }
        Evict();
    }

    private void Forget(string key)
    {
        lock (_lock)
        {
            if (_map.Remove(key, out var node))
            {
                _lru.Remove(node);
                _bytes -= node.Value.Size;
            }
        }
    }

    private void Evict()
    {
        while (true)
        {
            string key;
            lock (_lock)
            {
                if (_bytes <= _bytesMax || _lru.Last is not { } last)
                {
                    return;
                }
                key = last.Value.Key;
                _lru.RemoveLast();
                _map.Remove(key);
                _bytes -= last.Value.Size;
            }
            try
            {
                File.Delete(PathOf(key));
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                _log.LogWarning("disk cache could not evict {Key}: {Error}", key, e.Message);
            }
        }
    }
}
