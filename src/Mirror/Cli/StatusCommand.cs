// mirrorfs-mirror status: per mirror, how far its metadata and its blocks have come, from the primary's table, the
// mirror clusters and the replicators.
using System.CommandLine;
using MirrorFS.Core.Meta;
using MirrorFS.Mirror.Replication;
using MirrorFS.Mirror.Status;
using Command = System.CommandLine.Command;

namespace MirrorFS.Mirror.Cli;

public static class StatusCommand
{
    /// <summary>Bound on reading one replicator's /status.</summary>
    public const int ReplicatorTimeoutMs = 5_000;

    public static Command Create(MirrorCliContext ctx)
    {
        var primary = new Option<string>("--primary") { Description = "The primary region's META-URL", Required = true };
        var mirror = new Option<string[]>("--mirror") { Description = "A mirror region's META-URL (repeatable): adds its own figures", AllowMultipleArgumentsPerToken = false };
        var replicator = new Option<string[]>("--replicator")
        {
            Description = "A replicator's metrics address HOST:PORT or its --state-dir (repeatable): adds blocks and bytes pending, copy rate, errors, checkpoint",
        };
        var json = new Option<bool>("--json") { Description = "Print JSON" };
        var watch = new Option<bool>("--watch") { Description = "Print again every --interval until interrupted" };
        var interval = new Option<string>("--interval") { Description = "Pause between prints with --watch", DefaultValueFactory = _ => "2s" };
        var tokenFile = MirrorCli.TokenFileOption();
        var mirrorTokenFile = MirrorCli.TokenFileOption("--mirror-token-file", "mirror metaserver");
        var cmd = new Command("status", "Show each mirror's lag: metadata applied, blocks copied and pending, copy rate, errors, last checkpoint")
        {
            primary, mirror, replicator, json, watch, interval, tokenFile, mirrorTokenFile,
        };
        cmd.SetAction(MirrorCli.Guard(ctx, "status", async (parse, ct) =>
        {
            var p = MetaTarget.Parse(parse.GetValue(primary)!);
            var pause = MirrorCli.ParseDuration(parse.GetValue(interval)!, "--interval");
            await using var primaryClient = p.OpenClient(p.ResolveToken(parse.GetValue(tokenFile), ctx), ctx);
            var mirrorClients = new List<(MetaTarget Target, RpcMetaClient Client)>();
            foreach (var m in parse.GetValue(mirror) ?? [])
            {
                var t = MetaTarget.Parse(m);
                mirrorClients.Add((t, t.OpenClient(t.ResolveToken(parse.GetValue(mirrorTokenFile), ctx), ctx)));
            }
            using var http = new HttpClient { Timeout = TimeSpan.FromMilliseconds(ReplicatorTimeoutMs) };
            try
            {
                do
                {
                    var listed = await p.CallAsync(() => primaryClient.ListMirrorsAsync(new ListMirrorsRequest(), ct)).ConfigureAwait(false);
                    if (listed.Errno != 0)
                    {
                        throw new MirrorCliException($"primary {p.Hosts} could not list its mirrors: errno {listed.Errno}");
                    }
                    var follows = new List<(string, ListMirrorsReply)>();
                    foreach (var (t, c) in mirrorClients)
                    {
                        var r = await t.CallAsync(() => c.ListMirrorsAsync(new ListMirrorsRequest(), ct)).ConfigureAwait(false);
                        follows.Add((t.Hosts, r));
                    }
                    var replicators = new List<ReplicatorStatus>();
                    foreach (var where in parse.GetValue(replicator) ?? [])
                    {
                        replicators.Add(await ReadReplicatorAsync(http, where, ct).ConfigureAwait(false));
                    }
                    var reports = MirrorReport.Build(listed, follows, replicators, DateTimeOffset.UtcNow);
                    var text = parse.GetValue(json)
                        ? MirrorReport.Json(p.ToString(), listed.CommitIndex, reports) + "\n"
                        : MirrorReport.Table(p.ToString(), listed.CommitIndex, reports);
                    await ctx.Out.WriteAsync(text).ConfigureAwait(false);
                    await ctx.Out.FlushAsync(ct).ConfigureAwait(false);
                    if (!parse.GetValue(watch))
                    {
                        break;
                    }
                    try
                    {
                        await Task.Delay(pause, ct).ConfigureAwait(false);
                    }
                    catch (OperationCanceledException)
                    {
                        break;
                    }
                    await ctx.Out.WriteLineAsync().ConfigureAwait(false);
                }
                while (!ct.IsCancellationRequested);
            }
            finally
            {
                foreach (var (_, c) in mirrorClients)
                {
                    await c.DisposeAsync().ConfigureAwait(false);
                }
            }
            return 0;
        }));
        return cmd;
    }

    /// <summary>A replicator's figures from its state directory's status file, or from its /status endpoint.</summary>
    public static async Task<ReplicatorStatus> ReadReplicatorAsync(HttpClient http, string where, CancellationToken ct)
    {
        try
        {
            byte[] json;
            if (Directory.Exists(where))
            {
                json = await File.ReadAllBytesAsync(Path.Combine(where, ReplicatorStatus.FileName), ct).ConfigureAwait(false);
            }
            else
            {
                var url = where.Contains("://", StringComparison.Ordinal) ? where.TrimEnd('/') : "http://" + where;
                json = await http.GetByteArrayAsync(url.EndsWith("/status", StringComparison.Ordinal) ? url : url + "/status", ct).ConfigureAwait(false);
            }
            return ReplicatorStatus.FromJson(json) ?? throw new MirrorCliException($"replicator {where} gave an empty status");
        }
        catch (Exception e) when (e is HttpRequestException or IOException or TaskCanceledException or System.Text.Json.JsonException
                                      && !ct.IsCancellationRequested)
        {
            throw new MirrorCliException($"cannot read replicator status from {where}: {MirrorCli.FirstLine(e.Message)} (give its --metrics HOST:PORT or its --state-dir)");
        }
    }
}
