// mirrorfs restore: puts files from the trash (/.trash/YYYY-MM-DD-HH/{parent}-{inode}-{name}) back where they were.
using System.CommandLine;
using System.Globalization;
using System.Text;
using Command = System.CommandLine.Command;
using Google.Protobuf;
using MirrorFS.Core.Meta;

namespace MirrorFS.Client.Cli;

/// <summary>What happened (or would happen) to one trash entry.</summary>
public sealed record RestoreRow(string Entry, string Target, string Result, bool Conflict);

public static class RestoreCommand
{
    public const string TrashName = ".trash";

    /// <summary>Entries handled in one run at most.</summary>
    public const int EntriesMax = 1_000_000;

    private const uint ReadDirPage = 1000;

    /// <summary>Entry names are cut at the longest name allowed: one that long may have lost the old name's end.</summary>
    private const int EntryNameBytesMax = 255;

    public static Command Create(CliContext ctx)
    {
        var metaUrl = new Argument<string>("META-URL") { Description = "mirrorfs://HOST:PORT[,HOST:PORT...]/VOLUME" };
        var hours = new Argument<string[]>("HOUR-DIR")
        {
            Description = "Hour directories of the trash (e.g. 2024-05-01-13, as listed in MOUNT/.trash)",
            Arity = ArgumentArity.ZeroOrMore,
        };
        var all = new Option<bool>("--all") { Description = "Every hour directory of the trash" };
        var putBack = new Option<bool>("--put-back") { Description = "Move the files back (without it: only show what would happen)" };
        var tokenFile = MetaConnection.TokenFileOption();
        var cmd = new Command("restore", "Move deleted files from the trash back to their directory under their old name")
        {
            metaUrl, hours, all, putBack, tokenFile,
        };
        cmd.SetAction(CliApp.Guard(ctx, "restore", async (parse, ct) =>
        {
            var url = MetaUrl.Parse(parse.GetValue(metaUrl)!);
            var named = parse.GetValue(hours) ?? [];
            var everything = parse.GetValue(all);
            if (named.Length == 0 && !everything)
            {
                throw new CliException("name one or more hour directories (ls MOUNT/.trash shows them) or use --all");
            }
            if (named.Length > 0 && everything)
            {
                throw new CliException("give hour directories or --all, not both");
            }
            var token = MetaConnection.ResolveToken(url, parse.GetValue(tokenFile), ctx);
            await using var meta = MetaConnection.Open(url, token, ctx);
            await MetaConnection.GetVolumeAsync(meta, url, ct).ConfigureAwait(false);
            var apply = parse.GetValue(putBack);
            var rows = await RunAsync(meta, url, named.Select(h => h.TrimEnd('/').Split('/')[^1]).ToList(), apply, ct).ConfigureAwait(false);
            if (rows.Count == 0)
            {
                await ctx.Out.WriteLineAsync("nothing to restore: the hour directories are empty").ConfigureAwait(false);
                return 0;
            }
            Tables.Write(ctx, null, ["trash entry", "restore to", "result"], rows.Select(r => (IReadOnlyList<string>)[r.Entry, r.Target, r.Result]));
            var conflicts = rows.Count(r => r.Conflict);
            var done = rows.Count - conflicts;
            await ctx.Out.WriteLineAsync(apply
                ? string.Create(CultureInfo.InvariantCulture, $"restored {done}, conflicts {conflicts}")
                : string.Create(CultureInfo.InvariantCulture, $"would restore {done}, conflicts {conflicts} (dry run: add --put-back to move them)")).ConfigureAwait(false);
            if (conflicts > 0)
            {
                await ctx.Err.WriteLineAsync($"mirrorfs restore: {conflicts} entr{(conflicts == 1 ? "y" : "ies")} cannot go back (see the table); they stay in the trash").ConfigureAwait(false);
                return CliApp.Failed;
            }
            return 0;
        }));
        return cmd;
    }

    /// <summary>Restores (or, without <paramref name="apply"/>, checks) the entries of the given hour directories
    /// (none = all of them); an hour directory emptied by the restore is removed.</summary>
    public static async Task<List<RestoreRow>> RunAsync(IMetaClient meta, MetaUrl url, IReadOnlyList<string> hours, bool apply,
        CancellationToken ct)
    {
        var trash = await MetaConnection.CallAsync(url, () => meta.LookupAsync(new LookupRequest
        {
            Parent = VolumePaths.RootInode,
            Name = ByteString.CopyFromUtf8(TrashName),
        }, ct)).ConfigureAwait(false);
        if (trash.Errno == Errno.ENOENT)
        {
            throw new CliException($"volume {url.Volume} has no trash: nothing was deleted while the trash was on");
        }
        if (trash.Errno != Errno.OK)
        {
            throw new CliException($"looking up /{TrashName} in volume {url.Volume} failed: errno {trash.Errno}");
        }
        var trashIno = trash.Attr.Inode;
        var present = await ListAsync(meta, url, trashIno, ct).ConfigureAwait(false);
        var selected = new List<(string Name, ulong Inode)>();
        if (hours.Count == 0)
        {
            selected.AddRange(present.Where(e => PosixMode.IsDir(e.Attr.Mode))
                .Select(e => (Encoding.UTF8.GetString(e.Name.Span), e.Attr.Inode)).OrderBy(e => e.Item1, StringComparer.Ordinal));
        }
        foreach (var h in hours)
        {
            var e = present.FirstOrDefault(x => x.Name.ToStringUtf8() == h && PosixMode.IsDir(x.Attr.Mode))
                    ?? throw new CliException($"/{TrashName}/{h} does not exist in volume {url.Volume}: ls MOUNT/{TrashName} shows the hour directories");
            selected.Add((h, e.Attr.Inode));
        }

        var rows = new List<RestoreRow>();
        var paths = new Dictionary<ulong, string?>();
        foreach (var (hour, hourIno) in selected)
        {
            foreach (var e in await ListAsync(meta, url, hourIno, ct).ConfigureAwait(false))
            {
                if (rows.Count >= EntriesMax)
                {
                    throw new CliException($"more than {EntriesMax} entries: restore fewer hour directories at a time");
                }
                var shown = $"{hour}/{Encoding.UTF8.GetString(e.Name.Span)}";
                if (!TryParseEntry(e.Name.Span, out var parent, out var inode, out var name) || inode != e.Attr.Inode)
                {
                    rows.Add(new RestoreRow(shown, "-", "not a trash entry name: left alone", true));
                    continue;
                }
                if (!paths.TryGetValue(parent, out var dirPath))
                {
                    var p = await MetaConnection.CallAsync(url, () => meta.GetPathAsync(new GetPathRequest { Inode = parent }, ct)).ConfigureAwait(false);
                    dirPath = p.Errno == Errno.OK ? Encoding.UTF8.GetString(p.Path.Span) : null;
                    paths[parent] = dirPath;
                }
                var shownName = Encoding.UTF8.GetString(name);
                if (dirPath is null)
                {
                    rows.Add(new RestoreRow(shown, $"(directory inode {parent})/{shownName}", "conflict: the original directory no longer exists", true));
                    continue;
                }
                var target = dirPath == "/" ? "/" + shownName : dirPath + "/" + shownName;
                if (e.Name.Length == EntryNameBytesMax)
                {
                    // The entry name was cut at 255 bytes: the old name may have been longer.
                    target += " (name may be cut)";
                }
                if (!apply)
                {
                    var exists = await MetaConnection.CallAsync(url, () => meta.LookupAsync(new LookupRequest { Parent = parent, Name = ByteString.CopyFrom(name) }, ct)).ConfigureAwait(false);
                    rows.Add(exists.Errno == Errno.OK
                        ? new RestoreRow(shown, target, "conflict: the name is taken", true)
                        : new RestoreRow(shown, target, "would restore", false));
                    continue;
                }
                var r = await MetaConnection.CallAsync(url, () => meta.RenameAsync(new RenameRequest
                {
                    Parent = hourIno,
                    Name = e.Name,
                    NewParent = parent,
                    NewName = ByteString.CopyFrom(name),
                    Flags = (uint)RenameFlag.Noreplace,
                }, ct)).ConfigureAwait(false);
                rows.Add(r.Errno switch
                {
                    Errno.OK => new RestoreRow(shown, target, "restored", false),
                    Errno.EEXIST => new RestoreRow(shown, target, "conflict: the name is taken", true),
                    Errno.ENOENT => new RestoreRow(shown, target, "conflict: the original directory no longer exists", true),
                    Errno.EDQUOT => new RestoreRow(shown, target, "conflict: the directory's quota is full", true),
                    Errno.ENOSPC => new RestoreRow(shown, target, "conflict: the volume is full", true),
                    _ => new RestoreRow(shown, target, string.Create(CultureInfo.InvariantCulture, $"failed: errno {r.Errno}"), true),
                });
            }
            if (apply)
            {
                // Best effort: an hour directory something still lies in stays.
                await MetaConnection.CallAsync(url, () => meta.RmdirAsync(new RmdirRequest { Parent = trashIno, Name = ByteString.CopyFromUtf8(hour) }, ct)).ConfigureAwait(false);
            }
        }
        return rows;
    }

    /// <summary>Splits "{parent}-{inode}-{name}".</summary>
    public static bool TryParseEntry(ReadOnlySpan<byte> entry, out ulong parent, out ulong inode, out byte[] name)
    {
        parent = inode = 0;
        name = [];
        var a = entry.IndexOf((byte)'-');
        if (a <= 0 || !ulong.TryParse(entry[..a], NumberStyles.None, CultureInfo.InvariantCulture, out parent))
        {
            return false;
        }
        var rest = entry[(a + 1)..];
        var b = rest.IndexOf((byte)'-');
        if (b <= 0 || !ulong.TryParse(rest[..b], NumberStyles.None, CultureInfo.InvariantCulture, out inode) || b + 1 >= rest.Length)
        {
            return false;
        }
        name = rest[(b + 1)..].ToArray();
        return true;
    }

    private static async Task<List<DirEntry>> ListAsync(IMetaClient meta, MetaUrl url, ulong dir, CancellationToken ct)
    {
        var all = new List<DirEntry>();
        ulong offset = 0;
        while (all.Count <= EntriesMax)
        {
            var at = offset;
            var r = await MetaConnection.CallAsync(url, () => meta.ReadDirAsync(new ReadDirRequest { Inode = dir, Offset = at, Limit = ReadDirPage }, ct)).ConfigureAwait(false);
            if (r.Errno != Errno.OK)
            {
                throw new CliException($"listing the trash of volume {url.Volume} failed: errno {r.Errno}");
            }
            foreach (var e in r.Entries)
            {
                offset = e.Offset;
                if (e.Name.Span is not [(byte)'.'] and not [(byte)'.', (byte)'.'])
                {
                    all.Add(e);
                }
            }
            if (r.Eof || r.Entries.Count == 0)
            {
                break;
            }
        }
        return all;
    }
}
