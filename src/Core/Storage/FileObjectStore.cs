// A store in a local directory: the embedded default. Objects are written to a temp file, fsynced and renamed into
// place, so a crash leaves either the old object, the new one, or nothing — never a torn object.
namespace MirrorFS.Core.Storage;

public sealed class FileObjectStore : IObjectStore
{
    /// <summary>Folder under the root for in-flight writes; never listed, and no key may start with it.</summary>
    internal const string TempDirName = ".mirrorfs-tmp";

    private readonly string _root;
    private readonly string _tmp;

    /// <summary>Opens the store at <paramref name="root"/>, creating the directory when <paramref name="create"/>.</summary>
    public FileObjectStore(string root, bool create = true)
    {
        _root = Path.GetFullPath(root);
        Description = "file://" + _root;
        _tmp = Path.Combine(_root, TempDirName);
        try
        {
            if (!create && !Directory.Exists(_root))
            {
                throw new ObjectStoreException(Description, StoreFailure.NoSuchBucket,
                    $"directory {_root} does not exist; create it or check the URI");
            }
            Directory.CreateDirectory(_tmp);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw Fail("open", null, e);
        }
    }

    public string Description { get; }

    public async Task PutAsync(string key, ReadOnlyMemory<byte> data, CancellationToken ct = default)
    {
        var path = PathOf(key);
        var tmp = Path.Combine(_tmp, Guid.NewGuid().ToString("N"));
        try
        {
            await using (var fs = new FileStream(tmp, new FileStreamOptions
            {
                Mode = FileMode.CreateNew,
                Access = FileAccess.Write,
                Options = FileOptions.Asynchronous,
                PreallocationSize = data.Length,
            }))
            {
                await fs.WriteAsync(data, ct).ConfigureAwait(false);
                fs.Flush(flushToDisk: true);
            }
            Directory.CreateDirectory(Path.GetDirectoryName(path)!);
            File.Move(tmp, path, overwrite: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            TryDelete(tmp);
            throw Fail("put", key, e);
        }
        catch
        {
            TryDelete(tmp);
            throw;
        }
    }

    public async Task<byte[]?> GetAsync(string key, ByteRange? range = null, CancellationToken ct = default)
    {
        var path = PathOf(key);
        try
        {
            using var handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read | FileShare.Delete,
                FileOptions.Asynchronous);
            var length = RandomAccess.GetLength(handle);
            long offset = 0, count = length;
            if (range is { } r)
            {
                ObjectKeys.CheckRange(r);
                offset = Math.Min(r.Offset, length);
                count = r.Length < 0 ? length - offset : Math.Min(r.Length, length - offset);
            }
            var buffer = new byte[count];
            var done = 0;
            while (done < count)
            {
                var n = await RandomAccess.ReadAsync(handle, buffer.AsMemory(done), offset + done, ct).ConfigureAwait(false);
                if (n == 0)
                {
                    throw new ObjectStoreException(Description, StoreFailure.Transient, $"get {key}: object shrank while reading");
                }
                done += n;
            }
            return buffer;
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            return null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw Fail("get", key, e);
        }
    }

    public Task<ObjectInfo?> HeadAsync(string key, CancellationToken ct = default)
    {
        var info = new FileInfo(PathOf(key));
        return Task.FromResult(info.Exists ? new ObjectInfo(key, info.Length, info.LastWriteTimeUtc) : null);
    }

    public Task DeleteAsync(string key, CancellationToken ct = default)
    {
        var path = PathOf(key);
        try
        {
            File.Delete(path);
            PruneEmptyParents(Path.GetDirectoryName(path)!);
        }
        catch (DirectoryNotFoundException)
        {
            // Missing key: success.
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw Fail("delete", key, e);
        }
        return Task.CompletedTask;
    }

    public async Task DeleteManyAsync(IReadOnlyCollection<string> keys, CancellationToken ct = default)
    {
        foreach (var key in keys)
        {
            ct.ThrowIfCancellationRequested();
            await DeleteAsync(key, ct).ConfigureAwait(false);
        }
    }

    public Task<ObjectPage> ListAsync(string prefix, string? startAfter = null, int limit = 1000, CancellationToken ct = default)
    {
        ObjectKeys.CheckLimit(Description, limit);
        var result = new List<ObjectInfo>(Math.Min(limit, 1024));
        var truncated = false;
        try
        {
            foreach (var o in Walk(_root, "", prefix, startAfter, ct))
            {
                if (result.Count == limit)
                {
                    truncated = true;
                    break;
                }
                result.Add(o);
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw Fail("list", prefix, e);
        }
        return Task.FromResult(new ObjectPage(result, truncated ? result[^1].Key : null));
    }

    public ValueTask DisposeAsync() => ValueTask.CompletedTask;

    // Yields keys in ordinal order: a directory sorts as "name/" so that "a.txt" < "a/b" as in the keys themselves.
    // Subtrees that cannot hold a key matching the prefix, or that lie wholly at or before startAfter, are skipped.
    private IEnumerable<ObjectInfo> Walk(string dir, string rel, string prefix, string? startAfter,
        CancellationToken ct)
    {
        var entries = new List<(string SortKey, FileSystemInfo Info)>();
        foreach (var info in new DirectoryInfo(dir).EnumerateFileSystemInfos())
        {
            if (rel.Length == 0 && info.Name == TempDirName)
            {
                continue;
            }
            var isDir = (info.Attributes & FileAttributes.Directory) != 0;
            entries.Add((rel + info.Name + (isDir ? "/" : ""), info));
        }
        entries.Sort((a, b) => string.CompareOrdinal(a.SortKey, b.SortKey));
        foreach (var (key, info) in entries)
        {
            ct.ThrowIfCancellationRequested();
            if (info is DirectoryInfo)
            {
                var relevant = key.StartsWith(prefix, StringComparison.Ordinal) || prefix.StartsWith(key, StringComparison.Ordinal);
                var wholeBefore = startAfter is not null && !startAfter.StartsWith(key, StringComparison.Ordinal)
                    && string.CompareOrdinal(key, startAfter) < 0;
                if (!relevant || wholeBefore)
                {
                    continue;
                }
                foreach (var o in Walk(info.FullName, key, prefix, startAfter, ct))
                {
                    yield return o;
                }
            }
            else if (key.StartsWith(prefix, StringComparison.Ordinal)
                && (startAfter is null || string.CompareOrdinal(key, startAfter) > 0))
            {
                var f = (FileInfo)info;
                yield return new ObjectInfo(key, f.Length, f.LastWriteTimeUtc);
            }
        }
    }

    private string PathOf(string key)
    {
        ObjectKeys.Check(Description, key);
        if (key == TempDirName || key.StartsWith(TempDirName + "/", StringComparison.Ordinal))
        {
            throw new ObjectStoreException(Description, StoreFailure.BadRequest, $"object key '{key}' uses the reserved folder {TempDirName}");
        }
        return Path.Combine(_root, key);
    }

    private void PruneEmptyParents(string dir)
    {
        while (dir.Length > _root.Length && dir.StartsWith(_root, StringComparison.Ordinal))
        {
            try
            {
                Directory.Delete(dir); // only succeeds when empty
            }
            catch (IOException)
            {
                return;
            }
            dir = Path.GetDirectoryName(dir)!;
        }
    }

    private static void TryDelete(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (IOException)
        {
        }
    }

    private ObjectStoreException Fail(string op, string? key, Exception e)
    {
        var failure = e switch
        {
            UnauthorizedAccessException => StoreFailure.AccessDenied,
            DirectoryNotFoundException when key is null => StoreFailure.NoSuchBucket,
            _ => StoreFailure.Other,
        };
        var what = key is null ? op : $"{op} {key}";
        return new ObjectStoreException(Description, failure, $"{what}: {e.Message}", e);
    }
}
