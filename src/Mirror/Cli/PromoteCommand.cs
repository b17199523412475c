// mirrorfs-mirror promote: turns a mirror cluster into the primary after the primary is lost.
using System.CommandLine;
using System.Globalization;
using MirrorFS.Core.Meta;
using Command = System.CommandLine.Command;

namespace MirrorFS.Mirror.Cli;

public static class PromoteCommand
{
    public static Command Create(MirrorCliContext ctx)
    {
        var mirror = new Option<string>("--mirror") { Description = "The mirror region's META-URL", Required = true };
        var tokenFile = MirrorCli.TokenFileOption();
        var cmd = new Command("promote", "Make a mirror cluster the primary: it stops following and accepts writes; prints the primary index it had reached")
        {
            mirror, tokenFile,
        };
        cmd.SetAction(MirrorCli.Guard(ctx, "promote", async (parse, ct) =>
        {
            var m = MetaTarget.Parse(parse.GetValue(mirror)!);
            await using var client = m.OpenClient(m.ResolveToken(parse.GetValue(tokenFile), ctx), ctx);
            var before = await m.CallAsync(() => client.ListMirrorsAsync(new ListMirrorsRequest(), ct)).ConfigureAwait(false);
            var reply = await m.CallAsync(() => client.PromoteAsync(new PromoteRequest(), ct)).ConfigureAwait(false);
            if (reply.Errno == Errno.EINVAL)
            {
                throw new MirrorCliException($"{m.Hosts} is not a mirror cluster (it is a primary already): nothing to promote");
            }
            if (reply.Errno != 0)
            {
                throw new MirrorCliException($"{m.Hosts} refused the promotion: errno {reply.Errno}");
            }
            var inv = CultureInfo.InvariantCulture;
            await ctx.Out.WriteLineAsync(string.Create(inv,
                $"promoted {m}: it had applied primary index {reply.PrimaryIndex}; it now accepts writes")).ConfigureAwait(false);
            var heard = before.Follow?.PrimaryCommitIndex ?? 0;
            await ctx.Out.WriteLineAsync(heard > reply.PrimaryIndex
                ? string.Create(inv, $"the old primary had reported index {heard}: entries {reply.PrimaryIndex + 1}..{heard} (at least) are lost")
                : string.Create(inv, $"the old primary last reported index {heard}: nothing it reported is lost (entries it committed later, if any, are)")).ConfigureAwait(false);
            return 0;
        }));
        return cmd;
    }
}
