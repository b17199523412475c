// mirrorfs-mirror verify: diffs the namespace and block presence of a mirror region against its primary.
using System.CommandLine;
using System.Globalization;
using MirrorFS.Core.Meta;
using MirrorFS.Core.Rpc;
using MirrorFS.Core.Storage;
using MirrorFS.Mirror.Verify;
using Command = System.CommandLine.Command;

namespace MirrorFS.Mirror.Cli;

public static class VerifyCommand
{
    /// <summary>Pause between passes while the mirror catches up.</summary>
    public const int PassPauseMs = 1_000;

    public static Command Create(MirrorCliContext ctx)
    {
        var primary = new Option<string>("--primary") { Description = "The primary region's META-URL", Required = true };
        var mirror = new Option<string>("--mirror") { Description = "The mirror region's META-URL", Required = true };
        var mirrorStorage = new Option<string?>("--mirror-storage") { Description = "The mirror bucket URI (default: what the mirror cluster names)" };
        var wait = new Option<string>("--wait")
        {
            Description = "How long differences may persist (the mirror catching up) before they are reported",
            DefaultValueFactory = _ => "60s",
        };
        var tokenFile = MirrorCli.TokenFileOption();
        var mirrorTokenFile = MirrorCli.TokenFileOption("--mirror-token-file", "mirror metaserver");
        var cmd = new Command("verify", "Compare the mirror region with the primary: names, types, attributes, lengths, slice lists, blocks; exit 1 on any difference")
        {
            primary, mirror, mirrorStorage, wait, tokenFile, mirrorTokenFile,
        };
        cmd.SetAction(MirrorCli.Guard(ctx, "verify", async (parse, ct) =>
        {
            var p = MetaTarget.Parse(parse.GetValue(primary)!);
            var m = MetaTarget.Parse(parse.GetValue(mirror)!);
            var deadline = DateTime.UtcNow + MirrorCli.ParseDuration(parse.GetValue(wait)!, "--wait");
            await using var pc = p.OpenClient(p.ResolveToken(parse.GetValue(tokenFile), ctx), ctx);
            await using var mc = m.OpenClient(m.ResolveToken(parse.GetValue(mirrorTokenFile), ctx), ctx);
            var pv = await p.CallAsync(() => pc.GetVolumeAsync(new GetVolumeRequest(), ct)).ConfigureAwait(false);
            if (pv.Errno != 0 || pv.Volume.Name != p.Volume)
            {
                throw new MirrorCliException($"primary {p.Hosts} does not serve volume {p.Volume} (errno {pv.Errno}, serves '{pv.Volume?.Name}')");
            }
            var mv = await m.CallAsync(() => mc.GetVolumeAsync(new GetVolumeRequest(), ct)).ConfigureAwait(false);
            if (mv.Errno != 0 || mv.Volume.Name != m.Volume)
            {
                throw new MirrorCliException($"mirror {m.Hosts} does not serve volume {m.Volume} yet (errno {mv.Errno}, serves '{mv.Volume?.Name}')");
            }
            var bucketUri = parse.GetValue(mirrorStorage) ?? (mv.Volume.MirrorStorage.Length > 0 ? mv.Volume.MirrorStorage : null);
            await using var bucket = bucketUri is null ? null : ObjectStoreFactory.Open(bucketUri);
            if (bucket is null)
            {
                await ctx.Out.WriteLineAsync("note: the mirror cluster names no bucket and --mirror-storage is not given: blocks are not checked").ConfigureAwait(false);
            }
            var diff = new RegionDiff(pc, mc, MetaCallContext.WithMinIndex, bucket, pv.Volume, new VerifyLimits());
            var (result, index, passes) = await RunPassesAsync(diff, pc, p, deadline, ct).ConfigureAwait(false);
            var inv = CultureInfo.InvariantCulture;
            if (result.Clean)
            {
                await ctx.Out.WriteLineAsync(string.Create(inv,
                    $"verify: clean at primary index {index}: {result.Inodes} inodes and {result.Blocks} blocks compared ({passes} pass(es))")).ConfigureAwait(false);
                return 0;
            }
            foreach (var d in result.Differences)
            {
                await ctx.Out.WriteLineAsync(d).ConfigureAwait(false);
            }
            await ctx.Out.WriteLineAsync(string.Create(inv,
                $"verify: {result.DifferenceCount} difference(s) at primary index {index} ({result.BlocksMissing} block(s) missing from the mirror bucket; {result.Inodes} inodes compared; {passes} pass(es))")).ConfigureAwait(false);
            return MirrorCli.Failed;
        }));
        return cmd;
    }

    /// <summary>Compares at the primary's current index until a pass is clean or the deadline passes: a difference
    /// may be the mirror (or the replicator) still catching up, or a write landing during the walk.</summary>
    private static async Task<(VerifyResult Result, ulong Index, int Passes)> RunPassesAsync(RegionDiff diff, IMetaClient primary,
        MetaTarget p, DateTime deadline, CancellationToken ct)
    {
        for (var pass = 1; ; pass++)
        {
            var at = (await p.CallAsync(() => primary.GetVolumeAsync(new GetVolumeRequest(), ct)).ConfigureAwait(false)).Index;
            VerifyResult result;
            try
            {
                result = await diff.RunAsync(at, ct).ConfigureAwait(false);
            }
            catch (Exception e) when (e is RpcException or MetaUnavailableException && DateTime.UtcNow < deadline)
            {
                // The mirror has not applied the index yet (it answers "behind"): wait for it.
                await Task.Delay(PassPauseMs, ct).ConfigureAwait(false);
                continue;
            }
            catch (RpcException e)
            {
                throw new MirrorCliException($"the mirror did not answer at primary index {at}: {MirrorCli.FirstLine(e.Message)}");
            }
            if (result.Clean || DateTime.UtcNow >= deadline)
            {
                return (result, at, pass);
            }
            await Task.Delay(PassPauseMs, ct).ConfigureAwait(false);
        }
    }
}
