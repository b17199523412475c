// mirrorfs fsck: checks that every block of every live slice exists with the right size; reports broken files by path.
using System.Collections.Concurrent;
using System.CommandLine;
using Command = System.CommandLine.Command;
using System.Globalization;
using System.Text;
using Google.Protobuf;
using MirrorFS.Core.Layout;
using MirrorFS.Core.Meta;
using MirrorFS.Core.Storage;

namespace MirrorFS.Client.Cli;

/// <summary>A file with at least one bad block: its path (or inode when no path reaches it) and the first problem.</summary>
public sealed record BrokenFile(ulong Inode, string Path, string Problem);

public sealed record FsckReport(int Files, int Slices, long Blocks, IReadOnlyList<BrokenFile> Broken);

public static class FsckCommand
{
    public const int ChecksInFlightDefault = 16;
    public const int ChecksInFlightMax = 256;

    /// <summary>Problems shown per broken file are one; broken files listed at most (all are counted).</summary>
    public const int BrokenShownMax = 10_000;

    public static Command Create(CliContext ctx)
    {
        var metaUrl = new Argument<string>("META-URL") { Description = "mirrorfs://HOST:PORT[,HOST:PORT...]/VOLUME" };
        var path = new Argument<string>("PATH") { Description = "Check only files under this path of the volume (default: all)", Arity = ArgumentArity.ZeroOrOne, DefaultValueFactory = _ => "/" };
        var threads = new Option<int>("--threads") { Description = "Object checks in flight", DefaultValueFactory = _ => ChecksInFlightDefault };
        var tokenFile = MetaConnection.TokenFileOption();
        var cmd = new Command("fsck", "Check that every block of every file exists with the right size; exit 1 if any is broken")
        {
            metaUrl, path, threads, tokenFile,
        };
        cmd.SetAction(CliApp.Guard(ctx, "fsck", async (parse, ct) =>
        {
            var url = MetaUrl.Parse(parse.GetValue(metaUrl)!);
            var inFlight = parse.GetValue(threads);
            if (inFlight is < 1 or > ChecksInFlightMax)
            {
                throw new CliException($"--threads must be from 1 to {ChecksInFlightMax}, not {inFlight}");
            }
            var token = MetaConnection.ResolveToken(url, parse.GetValue(tokenFile), ctx);
            await using var meta = MetaConnection.Open(url, token, ctx);
            var volume = await MetaConnection.GetVolumeAsync(meta, url, ct).ConfigureAwait(false);
            await using var store = ObjectStoreFactory.Open(volume.Storage);
            return await RunCoreAsync(ctx, url, meta, store, parse.GetValue(path) ?? "/", inFlight, ct).ConfigureAwait(false);
        }));
        return cmd;
    }

    /// <summary>Checks the volume (or the files under <paramref name="path"/>) and prints the result; 1 when a file is
    /// broken or the check could not be done.</summary>
    public static Task<int> RunAsync(CliContext ctx, MetaUrl url, IMetaClient meta, IObjectStore store, string path, int inFlight,
        CancellationToken ct) =>
        CliApp.Guard(ctx, "fsck", (_, c) => RunCoreAsync(ctx, url, meta, store, path, inFlight, c))(null!, ct); // the body reads no arguments

    private static async Task<int> RunCoreAsync(CliContext ctx, MetaUrl url, IMetaClient meta, IObjectStore store, string path,
        int inFlight, CancellationToken ct)
    {
        var volume = await MetaConnection.GetVolumeAsync(meta, url, ct).ConfigureAwait(false);
        var report = await ProgressView.RunAsync(ctx, view => CheckAsync(url, meta, store, volume, path, inFlight, view, ct)).ConfigureAwait(false);
        var inv = CultureInfo.InvariantCulture;
        foreach (var b in report.Broken.Take(BrokenShownMax))
        {
            await ctx.Out.WriteLineAsync($"broken: {b.Path}: {b.Problem}").ConfigureAwait(false);
        }
        if (report.Broken.Count > BrokenShownMax)
        {
            await ctx.Out.WriteLineAsync(string.Create(inv, $"... and {report.Broken.Count - BrokenShownMax} more broken files")).ConfigureAwait(false);
        }
        await ctx.Out.WriteLineAsync(string.Create(inv,
            $"checked {report.Files} files, {report.Slices} slices, {report.Blocks} blocks under {Display(path)}: {report.Broken.Count} broken files")).ConfigureAwait(false);
        return report.Broken.Count == 0 ? 0 : CliApp.Failed;
    }

    private static string Display(string path) => "/" + path.Trim('/');

    private sealed class SliceUse(uint size, ulong inode)
    {
        public uint Size { get; } = size;

        public List<ulong> Inodes { get; } = [inode];
    }

    private static async Task<FsckReport> CheckAsync(MetaUrl url, IMetaClient meta, IObjectStore store, Volume volume, string path,
        int inFlight, ProgressView view, CancellationToken ct)
    {
        var all = path.Trim('/').Length == 0;
        var files = await WalkAsync(url, meta, path, view.Add("walking the tree"), ct).ConfigureAwait(false);

        var slices = new Dictionary<ulong, SliceUse>();
        var reading = view.Add("reading slices");
        await foreach (var chunk in GcCommand.AllChunksAsync(url, meta, 0, ct).ConfigureAwait(false))
        {
            // From the root, files no path reaches (open but unlinked) are checked too.
            if (all || files.ContainsKey(chunk.Inode))
            {
                foreach (var s in chunk.Slices.Where(s => s.Id != 0))
                {
                    if (slices.TryGetValue(s.Id, out var use))
                    {
                        if (!use.Inodes.Contains(chunk.Inode))
                        {
                            use.Inodes.Add(chunk.Inode);
                        }
                    }
                    else
                    {
                        slices.Add(s.Id, new SliceUse(s.Size, chunk.Inode));
                    }
                }
            }
            reading.Add();
        }
        reading.Done();

        var blockSize = (int)volume.BlockSize;
        var blocks = slices.Sum(kv => (long)BlockLayout.BlockCount(kv.Value.Size, blockSize));
        var checking = view.Add("checking blocks", blocks);
        var problems = new ConcurrentDictionary<ulong, string>();
        var work = slices.SelectMany(kv => BlockLayout.Blocks((int)kv.Value.Size, blockSize)
            .Select(b => (Slice: kv.Key, Key: BlockLayout.Key(volume.Name, kv.Key, b.Index, b.Size), b.Size)));
        await Parallel.ForEachAsync(work, new ParallelOptions { MaxDegreeOfParallelism = inFlight, CancellationToken = ct }, async (w, c) =>
        {
            var info = await store.HeadAsync(w.Key, c).ConfigureAwait(false);
            if (info is null)
            {
                problems.TryAdd(w.Slice, $"block {w.Key} is missing");
            }
            else if (info.Size != w.Size)
            {
                problems.TryAdd(w.Slice, string.Create(CultureInfo.InvariantCulture, $"block {w.Key} has {info.Size} bytes, expected {w.Size}"));
            }
            checking.Add();
        }).ConfigureAwait(false);
        checking.Done();

        var broken = new Dictionary<ulong, BrokenFile>();
        foreach (var (slice, problem) in problems.OrderBy(kv => kv.Key))
        {
            foreach (var inode in slices[slice].Inodes)
            {
                var shown = files.TryGetValue(inode, out var p) ? p : string.Create(CultureInfo.InvariantCulture, $"(inode {inode}: open but unlinked, or created during the check)");
                broken.TryAdd(inode, new BrokenFile(inode, shown, problem));
            }
        }
        var list = broken.Values.OrderBy(b => b.Path, StringComparer.Ordinal).ToList();
        return new FsckReport(files.Count, slices.Count, blocks, list);
    }

    /// <summary>inode -> path of every regular file at or under <paramref name="path"/> (the first path seen for hard links).</summary>
    private static async Task<Dictionary<ulong, string>> WalkAsync(MetaUrl url, IMetaClient meta, string path, ProgressLine line,
        CancellationToken ct)
    {
        var files = new Dictionary<ulong, string>();
        var attr = await ResolveAsync(url, meta, path, ct).ConfigureAwait(false);
        var shown = Display(path);
        if (PosixMode.IsRegular(attr.Mode))
        {
            files.Add(attr.Inode, shown);
            line.Done();
            return files;
        }
        if (!PosixMode.IsDir(attr.Mode))
        {
            line.Done();
            return files;
        }
        var dirs = new Queue<(ulong Inode, string Path)>();
        dirs.Enqueue((attr.Inode, shown == "/" ? "" : shown));
        while (dirs.TryDequeue(out var dir))
        {
            ulong offset = 0;
            while (true)
            {
                var from = offset;
                var page = await MetaConnection.CallAsync(url,
                    () => meta.ReadDirAsync(new ReadDirRequest { Inode = dir.Inode, Offset = from }, ct)).ConfigureAwait(false);
                if (page.Errno == Errno.ENOENT || page.Errno == Errno.ENOTDIR)
                {
                    break; // removed or replaced while walking
                }
                if (page.Errno != 0)
                {
                    throw new CliException($"metaserver {url.Hosts} could not list directory {(dir.Path.Length == 0 ? "/" : dir.Path)}: errno {page.Errno}");
                }
                foreach (var e in page.Entries)
                {
                    offset = e.Offset;
                    var name = e.Name.Span;
                    if (name.SequenceEqual("."u8) || name.SequenceEqual(".."u8))
                    {
                        continue;
                    }
                    var child = dir.Path + "/" + Encoding.UTF8.GetString(name);
                    if (PosixMode.IsDir(e.Attr.Mode))
                    {
                        dirs.Enqueue((e.Attr.Inode, child));
                    }
                    else if (PosixMode.IsRegular(e.Attr.Mode))
                    {
                        files.TryAdd(e.Attr.Inode, child);
                        line.Add();
                    }
                }
                if (page.Eof || page.Entries.Count == 0)
                {
                    break;
                }
            }
        }
        line.Done();
        return files;
    }

    private static async Task<Attr> ResolveAsync(MetaUrl url, IMetaClient meta, string path, CancellationToken ct)
    {
        var root = await MetaConnection.CallAsync(url, () => meta.GetAttrAsync(new GetAttrRequest { Inode = 1 }, ct)).ConfigureAwait(false);
        if (root.Errno != 0)
        {
            throw new CliException($"metaserver {url.Hosts} could not read the root directory: errno {root.Errno}");
        }
        var attr = root.Attr;
        foreach (var part in path.Split('/', StringSplitOptions.RemoveEmptyEntries))
        {
            var parent = attr.Inode;
            var r = await MetaConnection.CallAsync(url,
                () => meta.LookupAsync(new LookupRequest { Parent = parent, Name = ByteString.CopyFromUtf8(part) }, ct)).ConfigureAwait(false);
            if (r.Errno != 0)
            {
                throw new CliException(r.Errno == Errno.ENOENT || r.Errno == Errno.ENOTDIR
                    ? $"PATH {Display(path)} does not exist in volume {url.Volume}: give a path inside the volume, e.g. /dir"
                    : $"looking up {Display(path)} failed: errno {r.Errno}");
            }
            attr = r.Attr;
        }
        return attr;
    }
}
