// Compares a mirror region with its primary: the namespace (names, types, attributes, lengths, slice lists, link
// targets, xattrs) by walking both trees, and block presence by listing the mirror bucket.
using System.Globalization;
using System.Text;
using Google.Protobuf;
using MirrorFS.Core.Layout;
using MirrorFS.Core.Meta;
using MirrorFS.Core.Storage;

namespace MirrorFS.Mirror.Verify;

public sealed record VerifyLimits
{
    /// <summary>Differences kept (and printed); the walk goes on counting past it.</summary>
    public int DifferencesMax { get; init; } = 1_000;

    /// <summary>Inodes visited at most: a bound on the walk, not an expected size.</summary>
    public long InodesMax { get; init; } = 50_000_000;

    /// <summary>Mirror bucket objects held in memory for the presence check.</summary>
    public long BucketKeysMax { get; init; } = 50_000_000;

    public int ReadDirPage { get; init; } = 1_000;
}

public sealed class VerifyResult
{
    public List<string> Differences { get; } = [];

    /// <summary>Differences found, including those past <see cref="VerifyLimits.DifferencesMax"/>.</summary>
    public long DifferenceCount { get; set; }

    public long Inodes { get; set; }

    public long Blocks { get; set; }

    public long BlocksMissing { get; set; }

    public bool Clean => DifferenceCount == 0;
}

/// <summary>
/// One comparison pass. Mirror calls run inside <c>mirrorReadsAt(index)</c>, so that the mirror answers at the
/// primary index the pass is pinned to (the caller makes sure the primary holds still, or re-runs the pass).
/// </summary>
public sealed class RegionDiff(IMetaClient primary, IMetaClient mirror, Func<ulong, IDisposable?> mirrorReadsAt,
    IObjectStore? mirrorBucket, Volume volume, VerifyLimits limits)
{
    private static readonly Credentials Root = new();
    private VerifyResult _result = new();
    private ulong _index;

    public async Task<VerifyResult> RunAsync(ulong index, CancellationToken ct)
    {
        _result = new VerifyResult();
        _index = index;
        var blocks = new Dictionary<string, int>(StringComparer.Ordinal);
        var visited = new HashSet<ulong>();
        var queue = new Queue<(string Path, ulong Inode)>();
        queue.Enqueue(("/", 1));
        while (queue.Count > 0 && _result.Inodes < limits.InodesMax)
        {
            ct.ThrowIfCancellationRequested();
            var (path, inode) = queue.Dequeue();
            if (!visited.Add(inode))
            {
                continue; // another hard link to an inode already compared
            }
            _result.Inodes++;
            var p = await primary.GetAttrAsync(new GetAttrRequest { Cred = Root, Inode = inode }, ct).ConfigureAwait(false);
            var m = await OnMirror(() => mirror.GetAttrAsync(new GetAttrRequest { Cred = Root, Inode = inode }, ct)).ConfigureAwait(false);
            if (p.Errno != 0 || m.Errno != 0)
            {
                if (p.Errno != m.Errno)
                {
                    Differ(path, $"getattr errno: primary {p.Errno}, mirror {m.Errno}");
                }
                continue;
            }
            CompareAttr(path, p.Attr, m.Attr);
            await CompareXattrsAsync(path, inode, ct).ConfigureAwait(false);
            var mode = p.Attr.Mode;
            if (PosixMode.IsDir(mode) && PosixMode.IsDir(m.Attr.Mode))
            {
                await CompareDirAsync(path, inode, queue, ct).ConfigureAwait(false);
            }
            else if (PosixMode.IsRegular(mode) && PosixMode.IsRegular(m.Attr.Mode))
            {
                await CompareChunksAsync(path, inode, Math.Max(p.Attr.Size, m.Attr.Size), blocks, ct).ConfigureAwait(false);
            }
            else if (PosixMode.IsSymlink(mode) && PosixMode.IsSymlink(m.Attr.Mode))
            {
                var pt = await primary.ReadLinkAsync(new ReadLinkRequest { Cred = Root, Inode = inode }, ct).ConfigureAwait(false);
                var mt = await OnMirror(() => mirror.ReadLinkAsync(new ReadLinkRequest { Cred = Root, Inode = inode }, ct)).ConfigureAwait(false);
                if (pt.Errno != mt.Errno || pt.Target != mt.Target)
                {
                    Differ(path, $"symlink target: primary '{Show(pt.Target)}', mirror '{Show(mt.Target)}'");
                }
            }
        }
        if (queue.Count > 0)
        {
            Differ("/", $"walk stopped after {limits.InodesMax} inodes (limit): the rest was not compared");
        }
        _result.Blocks = blocks.Count;
        if (mirrorBucket is not null && blocks.Count > 0)
        {
            await CheckBlocksAsync(blocks, ct).ConfigureAwait(false);
        }
        return _result;
    }

    private async Task<T> OnMirror<T>(Func<Task<T>> call)
    {
        using (mirrorReadsAt(_index))
        {
            return await call().ConfigureAwait(false);
        }
    }

    private void Differ(string path, string what)
    {
        _result.DifferenceCount++;
        if (_result.Differences.Count < limits.DifferencesMax)
        {
            _result.Differences.Add($"{path}: {what}");
        }
    }

    private void CompareAttr(string path, Attr p, Attr m)
    {
        void Field<T>(string name, T a, T b)
            where T : IEquatable<T>
        {
            if (!a.Equals(b))
            {
                Differ(path, string.Create(CultureInfo.InvariantCulture, $"{name}: primary {a}, mirror {b}"));
            }
        }
        Field("inode", p.Inode, m.Inode);
        Field("type", PosixMode.Type(p.Mode), PosixMode.Type(m.Mode));
        Field("mode", p.Mode & PosixMode.PermMask, m.Mode & PosixMode.PermMask);
        Field("uid", p.Uid, m.Uid);
        Field("gid", p.Gid, m.Gid);
        Field("nlink", p.Nlink, m.Nlink);
        Field("size", p.Size, m.Size);
        Field("rdev", p.Rdev, m.Rdev);
        Field("atime_ns", p.AtimeNs, m.AtimeNs);
        Field("mtime_ns", p.MtimeNs, m.MtimeNs);
        Field("ctime_ns", p.CtimeNs, m.CtimeNs);
    }

    private async Task CompareXattrsAsync(string path, ulong inode, CancellationToken ct)
    {
        var p = await primary.ListXattrAsync(new ListXattrRequest { Cred = Root, Inode = inode }, ct).ConfigureAwait(false);
        var m = await OnMirror(() => mirror.ListXattrAsync(new ListXattrRequest { Cred = Root, Inode = inode }, ct)).ConfigureAwait(false);
        var pn = p.Names.Select(Show).Order(StringComparer.Ordinal).ToList();
        var mn = m.Names.Select(Show).Order(StringComparer.Ordinal).ToList();
        if (!pn.SequenceEqual(mn))
        {
            Differ(path, $"xattr names: primary [{string.Join(",", pn)}], mirror [{string.Join(",", mn)}]");
            return;
        }
        foreach (var name in p.Names)
        {
            var pv = await primary.GetXattrAsync(new GetXattrRequest { Cred = Root, Inode = inode, Name = name }, ct).ConfigureAwait(false);
            var mv = await OnMirror(() => mirror.GetXattrAsync(new GetXattrRequest { Cred = Root, Inode = inode, Name = name }, ct)).ConfigureAwait(false);
            if (pv.Errno != mv.Errno || pv.Value != mv.Value)
            {
                Differ(path, $"xattr {Show(name)} differs ({pv.Value.Length} vs {mv.Value.Length} bytes)");
            }
        }
    }

    private async Task CompareDirAsync(string path, ulong inode, Queue<(string, ulong)> queue, CancellationToken ct)
    {
        var p = await ListAsync(primary, inode, false, ct).ConfigureAwait(false);
        var m = await ListAsync(mirror, inode, true, ct).ConfigureAwait(false);
        foreach (var (name, attr) in p)
        {
            var child = path == "/" ? "/" + name : path + "/" + name;
            if (!m.TryGetValue(name, out var mAttr))
            {
                Differ(child, "missing in the mirror");
                continue;
            }
            if (attr.Inode != mAttr.Inode)
            {
                Differ(child, $"names inode {attr.Inode} in the primary, {mAttr.Inode} in the mirror");
                continue;
            }
            queue.Enqueue((child, attr.Inode));
        }
        foreach (var name in m.Keys.Where(n => !p.ContainsKey(n)))
        {
            Differ(path == "/" ? "/" + name : path + "/" + name, "only in the mirror");
        }
    }

    private async Task<Dictionary<string, Attr>> ListAsync(IMetaClient meta, ulong inode, bool isMirror, CancellationToken ct)
    {
        var entries = new Dictionary<string, Attr>(StringComparer.Ordinal);
        ulong offset = 0;
        while (true)
        {
            var request = new ReadDirRequest { Cred = Root, Inode = inode, Offset = offset, Limit = (uint)limits.ReadDirPage };
            var page = isMirror
                ? await OnMirror(() => meta.ReadDirAsync(request, ct)).ConfigureAwait(false)
                : await meta.ReadDirAsync(request, ct).ConfigureAwait(false);
            if (page.Errno != 0)
            {
                throw new IOException($"readdir of inode {inode} on the {(isMirror ? "mirror" : "primary")} failed with errno {page.Errno}");
            }
            foreach (var e in page.Entries)
            {
                var name = Show(e.Name);
                if (name is not ("." or ".."))
                {
                    entries[name] = e.Attr;
                }
            }
            if (page.Eof || page.Entries.Count == 0)
            {
                return entries;
            }
            offset = page.Entries[^1].Offset;
        }
    }

    private async Task CompareChunksAsync(string path, ulong inode, ulong size, Dictionary<string, int> blocks, CancellationToken ct)
    {
        var chunks = (size + BlockLayout.ChunkSize - 1) / BlockLayout.ChunkSize;
        for (uint c = 0; c < chunks; c++)
        {
            var request = new ReadChunkRequest { Cred = Root, Inode = inode, ChunkIndex = c };
            var p = await primary.ReadChunkAsync(request, ct).ConfigureAwait(false);
            var m = await OnMirror(() => mirror.ReadChunkAsync(request, ct)).ConfigureAwait(false);
            if (p.Errno != m.Errno || !p.Slices.SequenceEqual(m.Slices))
            {
                Differ(path, $"chunk {c} slices: primary {Slices(p)}, mirror {Slices(m)}");
            }
            foreach (var s in p.Slices)
            {
                if (s.Id == 0 || s.Size == 0)
                {
                    continue;
                }
                foreach (var b in BlockLayout.Blocks((int)s.Size, (int)volume.BlockSize))
                {
                    blocks[BlockLayout.Key(volume.Name, s.Id, b.Index, b.Size)] = b.Size;
                }
            }
        }
    }

    private async Task CheckBlocksAsync(Dictionary<string, int> wanted, CancellationToken ct)
    {
        var present = new Dictionary<string, long>(StringComparer.Ordinal);
        await foreach (var o in mirrorBucket!.ListAllAsync(BlockLayout.ChunksPrefix(volume.Name), ct: ct).ConfigureAwait(false))
        {
            if (wanted.ContainsKey(o.Key))
            {
                present[o.Key] = o.Size;
            }
            if (present.Count > limits.BucketKeysMax)
            {
                throw new IOException($"mirror bucket holds more than {limits.BucketKeysMax} wanted blocks: too many to check in memory");
            }
        }
        foreach (var (key, size) in wanted.OrderBy(kv => kv.Key, StringComparer.Ordinal))
        {
            if (!present.TryGetValue(key, out var have))
            {
                _result.BlocksMissing++;
                Differ("blocks", $"{key} is missing from the mirror bucket {mirrorBucket!.Description}");
            }
            else if (have != size)
            {
                _result.BlocksMissing++;
                Differ("blocks", $"{key} has {have} bytes in the mirror bucket, expected {size}");
            }
        }
    }

    private static string Slices(ReadChunkReply r) => r.Errno != 0
        ? $"errno {r.Errno}"
        : "[" + string.Join(" ", r.Slices.Select(s => string.Create(CultureInfo.InvariantCulture, $"{s.Id}:{s.Size}/{s.Offset}+{s.Length}@{s.Pos}"))) + "]";

    private static string Show(ByteString b) => Encoding.UTF8.GetString(b.Span);
}
