// mirrorfs info: where a file's data lives — its inode, length, and every block object of every slice.
using System.CommandLine;
using Command = System.CommandLine.Command;
using System.Globalization;
using System.Runtime.InteropServices;
using MirrorFS.Core.Layout;
using MirrorFS.Core.Meta;

namespace MirrorFS.Client.Cli;

/// <summary>One block a slice uses. <see cref="Key"/> is "(hole)" for a hole, which has no object.</summary>
/// <param name="FileOffset">Where in the file the used part of the block appears.</param>
/// <param name="BlockSize">Stored size of the block object.</param>
/// <param name="Offset">First byte used within the block.</param>
/// <param name="Length">Bytes used from the block.</param>
public sealed record BlockRow(uint ChunkIndex, ulong SliceId, long FileOffset, string Key, int BlockSize, int Offset, int Length);

public static partial class InfoCommand
{
    public const string Hole = "(hole)";

    /// <summary>Chunks read for one file at most (4 TiB at 64 MiB chunks).</summary>
    public const int ChunksShownMax = 65_536;

    public static Command Create(CliContext ctx)
    {
        var path = new Argument<string>("PATH") { Description = "A file or directory inside a mirrorfs mount" };
        var tokenFile = MetaConnection.TokenFileOption();
        var cmd = new Command("info", "Show a file's inode, length and the object keys of its blocks") { path, tokenFile };
        cmd.SetAction(CliApp.Guard(ctx, "info", async (parse, ct) =>
        {
            var given = parse.GetValue(path)!;
            var full = MountTable.Normalize(given);
            if (!File.Exists(full) && !Directory.Exists(full))
            {
                throw new CliException($"PATH {given} does not exist");
            }
            var mount = MountTable.Containing(MountTable.ReadSelf(), full);
            if (mount is null || mount.FsType != MountTable.MirrorFsType)
            {
                throw new CliException($"PATH {given} is not inside a mirrorfs mount"
                    + (mount is null ? "" : $" (it is on {mount.FsType} at {mount.MountPoint})"));
            }
            if (MetaUrl.TryParse(mount.Source, volumeRequired: true, out var url) is not null)
            {
                throw new CliException($"mount {mount.MountPoint} has source '{mount.Source}', not a META-URL: remount it with this mirrorfs");
            }
            var inode = InodeOf(full);
            var token = MetaConnection.ResolveToken(url!, parse.GetValue(tokenFile), ctx);
            await using var meta = MetaConnection.Open(url!, token, ctx);
            await WriteAsync(ctx, meta, url!, full, inode, ct).ConfigureAwait(false);
            return 0;
        }));
        return cmd;
    }

    /// <summary>Prints what the metaserver knows of <paramref name="inode"/>: attributes and, for a file, its blocks.</summary>
    public static async Task WriteAsync(CliContext ctx, IMetaClient meta, MetaUrl url, string shownPath, ulong inode,
        CancellationToken ct)
    {
        var inv = CultureInfo.InvariantCulture;
        var volume = await MetaConnection.GetVolumeAsync(meta, url, ct).ConfigureAwait(false);
        var attr = await MetaConnection.CallAsync(url, () => meta.GetAttrAsync(new GetAttrRequest { Inode = inode }, ct)).ConfigureAwait(false);
        if (attr.Errno != Errno.OK)
        {
            throw new CliException($"inode {inode} of {shownPath} is unknown to metaserver {url.Hosts} (errno {attr.Errno}): is the mount from this volume?");
        }
        await ctx.Out.WriteLineAsync($"{shownPath}:").ConfigureAwait(false);
        await ctx.Out.WriteLineAsync(string.Create(inv, $"  inode:  {inode}")).ConfigureAwait(false);
        await ctx.Out.WriteLineAsync($"  type:   {TypeName(attr.Attr.Mode)}").ConfigureAwait(false);
        await ctx.Out.WriteLineAsync(string.Create(inv, $"  length: {attr.Attr.Size} ({Sizes.Format((long)attr.Attr.Size)})")).ConfigureAwait(false);
        if ((attr.Attr.Mode & PosixMode.TypeMask) != PosixMode.Regular)
        {
            return;
        }
        var chunks = (long)((attr.Attr.Size + BlockLayout.ChunkSize - 1) / BlockLayout.ChunkSize);
        var rows = new List<BlockRow>();
        for (uint ci = 0; ci < Math.Min(chunks, ChunksShownMax); ci++)
        {
            var index = ci;
            var chunk = await MetaConnection.CallAsync(url,
                () => meta.ReadChunkAsync(new ReadChunkRequest { Inode = inode, ChunkIndex = index }, ct)).ConfigureAwait(false);
            if (chunk.Errno != Errno.OK)
            {
                throw new CliException($"reading chunk {ci} of inode {inode} failed: errno {chunk.Errno}");
            }
            rows.AddRange(Rows(volume.Name, (int)volume.BlockSize, ci, chunk.Slices));
        }
        if (chunks > ChunksShownMax)
        {
            await ctx.Out.WriteLineAsync(string.Create(inv, $"  (only the first {ChunksShownMax} of {chunks} chunks are shown)")).ConfigureAwait(false);
        }
        if (rows.Count == 0)
        {
            await ctx.Out.WriteLineAsync("  no blocks").ConfigureAwait(false);
            return;
        }
        Tables.Write(ctx, null, ["chunk", "slice", "file offset", "object key", "block size", "offset", "length"],
            rows.Select(r => (IReadOnlyList<string>)
            [
                r.ChunkIndex.ToString(inv), r.SliceId.ToString(inv), r.FileOffset.ToString(inv), r.Key,
                r.BlockSize.ToString(inv), r.Offset.ToString(inv), r.Length.ToString(inv),
            ]), new HashSet<int> { 0, 1, 2, 4, 5, 6 });
    }

    /// <summary>The blocks each slice of one chunk uses, in the slices' write order (newest last; where slices
    /// overlap, the newest wins on read).</summary>
    public static IReadOnlyList<BlockRow> Rows(string volume, int blockSize, uint chunkIndex, IEnumerable<Slice> slices)
    {
        var rows = new List<BlockRow>();
        var chunkStart = (long)chunkIndex * BlockLayout.ChunkSize;
        foreach (var s in slices)
        {
            if (s.Length == 0)
            {
                continue;
            }
            if (s.Id == 0)
            {
                rows.Add(new BlockRow(chunkIndex, 0, chunkStart + s.Pos, Hole, 0, 0, (int)s.Length));
                continue;
            }
            var pos = chunkStart + s.Pos;
            foreach (var read in BlockLayout.ReadsWithinSlice((int)s.Size, blockSize, (int)s.Offset, (int)s.Length))
            {
                rows.Add(new BlockRow(chunkIndex, s.Id, pos, BlockLayout.Key(volume, s.Id, read.Index, read.BlockSize),
                    read.BlockSize, read.OffsetInBlock, read.Length));
                pos += read.Length;
            }
        }
        return rows;
    }

    private static string TypeName(uint mode) => (mode & PosixMode.TypeMask) switch
    {
        PosixMode.Regular => "regular file",
        PosixMode.Directory => "directory",
        PosixMode.Symlink => "symbolic link",
        PosixMode.Fifo => "fifo",
        PosixMode.Socket => "socket",
        PosixMode.Char => "character device",
        PosixMode.Block => "block device",
        _ => "unknown",
    };

    /// <summary>The inode number stat(2) reports; on a mirrorfs mount it is the metaserver's inode.</summary>
    public static unsafe ulong InodeOf(string path)
    {
        // struct stat is 144 bytes on x86-64 and 128 on arm64; st_ino is the 8 bytes after st_dev on both.
        var buf = stackalloc byte[256];
        if (Stat(path, buf) != 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            throw new CliException($"stat {path} failed: {Marshal.GetPInvokeErrorMessage(errno)}");
        }
        return *(ulong*)(buf + 8);
    }

    [LibraryImport("libc.so.6", EntryPoint = "stat", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static unsafe partial int Stat(string path, byte* buf);
}
