// mirrorfs quota set|get|list|delete|check: directory quotas (bytes and inodes below a directory).
using System.CommandLine;
using System.Globalization;
using Command = System.CommandLine.Command;
using MirrorFS.Core.Meta;

namespace MirrorFS.Client.Cli;

public static class QuotaCommand
{
    /// <summary>Quotas listed at most.</summary>
    public const int QuotasShownMax = 100_000;

    public static Command Create(CliContext ctx)
    {
        var cmd = new Command("quota", "Directory quotas: limit the bytes and inodes below a directory (EDQUOT beyond)");
        cmd.Subcommands.Add(Set(ctx));
        cmd.Subcommands.Add(Get(ctx));
        cmd.Subcommands.Add(List(ctx));
        cmd.Subcommands.Add(Delete(ctx));
        cmd.Subcommands.Add(Check(ctx));
        return cmd;
    }

    private static Argument<string> MetaUrlArgument() => new("META-URL") { Description = "mirrorfs://HOST:PORT[,HOST:PORT...]/VOLUME" };

    private static Option<string> PathOption(bool required) => new("--path")
    {
        Description = "Directory, as a path from the volume's root (e.g. /projects/a)",
        Required = required,
    };

    private static Command Set(CliContext ctx)
    {
        var metaUrl = MetaUrlArgument();
        var path = PathOption(required: true);
        var capacity = new Option<string?>("--capacity") { Description = "Bytes allowed below the directory, e.g. 10G (0 = no byte limit)" };
        var inodes = new Option<long?>("--inodes") { Description = "Files and directories allowed below the directory (0 = no limit)" };
        var tokenFile = MetaConnection.TokenFileOption();
        var cmd = new Command("set", "Set (or change) a directory's quota; the first set counts what is already below it")
        {
            metaUrl, path, capacity, inodes, tokenFile,
        };
        cmd.SetAction(CliApp.Guard(ctx, "quota set", async (parse, ct) =>
        {
            var request = new SetQuotaRequest();
            if (parse.GetValue(capacity) is { } c)
            {
                request.MaxBytes = (ulong)Sizes.Parse(c, "--capacity");
            }
            if (parse.GetValue(inodes) is { } n)
            {
                request.MaxInodes = n >= 0 ? (ulong)n : throw new CliException($"--inodes {n} is out of range: use 0 (no limit) or more");
            }
            if (!request.HasMaxBytes && !request.HasMaxInodes)
            {
                throw new CliException("quota set needs --capacity, --inodes or both");
            }
            return await WithMetaAsync(ctx, parse, metaUrl, tokenFile, ct, async (meta, url) =>
            {
                var dir = await DirectoryAsync(meta, url, parse.GetValue(path)!, ct).ConfigureAwait(false);
                request.Inode = dir.Inode;
                var r = await MetaConnection.CallAsync(url, () => meta.SetQuotaAsync(request, ct)).ConfigureAwait(false);
                Check(r.Errno, "set the quota of", parse.GetValue(path)!, url);
                Table(ctx, [(Normalize(parse.GetValue(path)!), r.Quota)]);
                return 0;
            }).ConfigureAwait(false);
        }));
        return cmd;
    }

    private static Command Get(CliContext ctx)
    {
        var metaUrl = MetaUrlArgument();
        var path = PathOption(required: true);
        var tokenFile = MetaConnection.TokenFileOption();
        var cmd = new Command("get", "Show a directory's quota and usage") { metaUrl, path, tokenFile };
        cmd.SetAction(CliApp.Guard(ctx, "quota get", (parse, ct) => WithMetaAsync(ctx, parse, metaUrl, tokenFile, ct, async (meta, url) =>
        {
            var dir = await DirectoryAsync(meta, url, parse.GetValue(path)!, ct).ConfigureAwait(false);
            var r = await MetaConnection.CallAsync(url, () => meta.GetQuotaAsync(new GetQuotaRequest { Inode = dir.Inode }, ct)).ConfigureAwait(false);
            Check(r.Errno, "read the quota of", parse.GetValue(path)!, url);
            Table(ctx, [(Normalize(parse.GetValue(path)!), r.Quota)]);
            return 0;
        })));
        return cmd;
    }

    private static Command List(CliContext ctx)
    {
        var metaUrl = MetaUrlArgument();
        var tokenFile = MetaConnection.TokenFileOption();
        var cmd = new Command("list", "Show every quota of the volume") { metaUrl, tokenFile };
        cmd.SetAction(CliApp.Guard(ctx, "quota list", (parse, ct) => WithMetaAsync(ctx, parse, metaUrl, tokenFile, ct, async (meta, url) =>
        {
            var rows = new List<(string, Quota)>();
            foreach (var q in await AllAsync(meta, url, ct).ConfigureAwait(false))
            {
                rows.Add((await VolumePaths.PathOfAsync(meta, url, q.Inode, ct).ConfigureAwait(false), q));
            }
            if (rows.Count == 0)
            {
                await ctx.Out.WriteLineAsync($"volume {url.Volume} has no quotas").ConfigureAwait(false);
                return 0;
            }
            Table(ctx, rows.OrderBy(r => r.Item1, StringComparer.Ordinal).ToList());
            return 0;
        })));
        return cmd;
    }

    private static Command Delete(CliContext ctx)
    {
        var metaUrl = MetaUrlArgument();
        var path = PathOption(required: true);
        var tokenFile = MetaConnection.TokenFileOption();
        var cmd = new Command("delete", "Remove a directory's quota") { metaUrl, path, tokenFile };
        cmd.SetAction(CliApp.Guard(ctx, "quota delete", (parse, ct) => WithMetaAsync(ctx, parse, metaUrl, tokenFile, ct, async (meta, url) =>
        {
            var dir = await DirectoryAsync(meta, url, parse.GetValue(path)!, ct).ConfigureAwait(false);
            var r = await MetaConnection.CallAsync(url, () => meta.DeleteQuotaAsync(new DeleteQuotaRequest { Inode = dir.Inode }, ct)).ConfigureAwait(false);
            Check(r.Errno, "delete the quota of", parse.GetValue(path)!, url);
            await ctx.Out.WriteLineAsync($"quota of {Normalize(parse.GetValue(path)!)} deleted").ConfigureAwait(false);
            return 0;
        })));
        return cmd;
    }

    private static Command Check(CliContext ctx)
    {
        var metaUrl = MetaUrlArgument();
        var path = PathOption(required: false);
        var repair = new Option<bool>("--repair") { Description = "Store the recounted usage where it differs" };
        var tokenFile = MetaConnection.TokenFileOption();
        var cmd = new Command("check", "Recount the usage below quota directories and compare (exit 1 on a difference left unrepaired)")
        {
            metaUrl, path, repair, tokenFile,
        };
        cmd.SetAction(CliApp.Guard(ctx, "quota check", (parse, ct) => WithMetaAsync(ctx, parse, metaUrl, tokenFile, ct, async (meta, url) =>
        {
            var targets = new List<(string Path, ulong Inode)>();
            if (parse.GetValue(path) is { } p)
            {
                targets.Add((Normalize(p), (await DirectoryAsync(meta, url, p, ct).ConfigureAwait(false)).Inode));
            }
            else
            {
                foreach (var q in await AllAsync(meta, url, ct).ConfigureAwait(false))
                {
                    targets.Add((await VolumePaths.PathOfAsync(meta, url, q.Inode, ct).ConfigureAwait(false), q.Inode));
                }
            }
            var fix = parse.GetValue(repair);
            var rows = new List<IReadOnlyList<string>>();
            var bad = 0;
            foreach (var (shown, inode) in targets)
            {
                var r = await MetaConnection.CallAsync(url, () => meta.CheckQuotaAsync(new CheckQuotaRequest { Inode = inode, Repair = fix }, ct)).ConfigureAwait(false);
                Check(r.Errno, "check the quota of", shown, url);
                var ok = r.Quota.UsedBytes == r.CountedBytes && r.Quota.UsedInodes == r.CountedInodes;
                bad += ok ? 0 : 1;
                rows.Add(
                [
                    shown,
                    Sizes.Format((long)r.Quota.UsedBytes), Sizes.Format((long)r.CountedBytes),
                    r.Quota.UsedInodes.ToString(CultureInfo.InvariantCulture), r.CountedInodes.ToString(CultureInfo.InvariantCulture),
                    ok ? "ok" : fix ? "repaired" : "DIFFERS",
                ]);
            }
            if (rows.Count == 0)
            {
                await ctx.Out.WriteLineAsync($"volume {url.Volume} has no quotas").ConfigureAwait(false);
                return 0;
            }
            Tables.Write(ctx, null, ["path", "size stored", "size counted", "inodes stored", "inodes counted", "result"], rows, new HashSet<int> { 1, 2, 3, 4 });
            if (bad > 0 && !fix)
            {
                await ctx.Err.WriteLineAsync($"mirrorfs quota check: {bad} quota(s) differ from a recount; run again with --repair to store the count").ConfigureAwait(false);
                return CliApp.Failed;
            }
            return 0;
        })));
        return cmd;
    }

    private static async Task<int> WithMetaAsync(CliContext ctx, ParseResult parse, Argument<string> metaUrl, Option<string?> tokenFile,
        CancellationToken ct, Func<IMetaClient, MetaUrl, Task<int>> body)
    {
        var url = MetaUrl.Parse(parse.GetValue(metaUrl)!);
        var token = MetaConnection.ResolveToken(url, parse.GetValue(tokenFile), ctx);
        await using var meta = MetaConnection.Open(url, token, ctx);
        await MetaConnection.GetVolumeAsync(meta, url, ct).ConfigureAwait(false);
        return await body(meta, url).ConfigureAwait(false);
    }

    private static async Task<Attr> DirectoryAsync(IMetaClient meta, MetaUrl url, string path, CancellationToken ct)
    {
        var attr = await VolumePaths.ResolveAsync(meta, url, path, ct).ConfigureAwait(false);
        return PosixMode.IsDir(attr.Mode) ? attr : throw new CliException($"{path} is not a directory: quotas are set on directories");
    }

    private static async Task<List<Quota>> AllAsync(IMetaClient meta, MetaUrl url, CancellationToken ct)
    {
        var all = new List<Quota>();
        ulong after = 0;
        while (all.Count < QuotasShownMax)
        {
            var start = after;
            var r = await MetaConnection.CallAsync(url, () => meta.ListQuotasAsync(new ListQuotasRequest { StartAfter = start }, ct)).ConfigureAwait(false);
            if (r.Errno != Errno.OK)
            {
                throw new CliException($"listing the quotas of volume {url.Volume} failed: errno {r.Errno}");
            }
            all.AddRange(r.Quotas);
            if (r.Eof || r.Quotas.Count == 0)
            {
                break;
            }
            after = r.Quotas[^1].Inode;
        }
        return all;
    }

    private static void Check(int errno, string what, string path, MetaUrl url)
    {
        switch (errno)
        {
            case Errno.OK:
                return;
            case Errno.ENOENT:
                throw new CliException($"{Normalize(path)} has no quota in volume {url.Volume}: set one with mirrorfs quota set");
            case Errno.EPERM:
                throw new CliException($"metaserver {url.Hosts} refused to {what} {Normalize(path)}: only root may, and not on the trash");
            default:
                throw new CliException($"could not {what} {Normalize(path)} in volume {url.Volume}: errno {errno}");
        }
    }

    private static string Normalize(string path) => "/" + string.Join('/', path.Split('/', StringSplitOptions.RemoveEmptyEntries));

    /// <summary>Percentage of a limit, or "-" without one.</summary>
    public static string Percent(ulong used, ulong max) =>
        max == 0 ? "-" : string.Create(CultureInfo.InvariantCulture, $"{100.0 * used / max:0.#}%");

    private static void Table(CliContext ctx, IReadOnlyList<(string Path, Quota Quota)> rows)
    {
        var inv = CultureInfo.InvariantCulture;
        Tables.Write(ctx, null, ["path", "size used", "size limit", "size %", "inodes used", "inodes limit", "inodes %"],
            rows.Select(r => (IReadOnlyList<string>)
            [
                r.Path,
                Sizes.Format((long)r.Quota.UsedBytes),
                r.Quota.MaxBytes == 0 ? "unlimited" : Sizes.Format((long)r.Quota.MaxBytes),
                Percent(r.Quota.UsedBytes, r.Quota.MaxBytes),
                r.Quota.UsedInodes.ToString(inv),
                r.Quota.MaxInodes == 0 ? "unlimited" : r.Quota.MaxInodes.ToString(inv),
                Percent(r.Quota.UsedInodes, r.Quota.MaxInodes),
            ]), new HashSet<int> { 1, 2, 3, 4, 5, 6 });
    }
}
