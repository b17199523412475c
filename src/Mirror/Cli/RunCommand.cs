// mirrorfs-mirror run: the block replicator daemon.
using System.CommandLine;
using System.Security.Cryptography;
using System.Text;
using Microsoft.Extensions.Logging;
using MirrorFS.Core.Storage;
using MirrorFS.Mirror.Replication;
using MirrorFS.Mirror.Status;
using Command = System.CommandLine.Command;

namespace MirrorFS.Mirror.Cli;

public static class RunCommand
{
    public static Command Create(MirrorCliContext ctx)
    {
        var primary = new Option<string>("--primary") { Description = "The primary region's META-URL: mirrorfs://HOST:PORT[,...]/VOLUME", Required = true };
        var from = new Option<string?>("--from") { Description = "Primary bucket URI (default: the volume's storage as formatted)" };
        var to = new Option<string>("--to") { Description = "Mirror bucket URI: s3://..., oss://..., file:///...", Required = true };
        var stateDir = new Option<string>("--state-dir") { Description = "Directory for the checkpoint and status file", DefaultValueFactory = _ => "./mirrorfs-replicator" };
        var concurrency = new Option<int>("--concurrency") { Description = "Blocks copied at once", DefaultValueFactory = _ => ReplicatorOptions.DefaultConcurrency };
        var bandwidth = new Option<string>("--bandwidth") { Description = "Copy bandwidth in bytes per second, e.g. 100M (0 = unlimited)", DefaultValueFactory = _ => "0" };
        var checkpointEvery = new Option<string>("--checkpoint-every") { Description = "How often the checkpoint is saved", DefaultValueFactory = _ => "5s" };
        var metrics = new Option<string?>("--metrics") { Description = "HOST:PORT to serve GET /metrics and /status on (off by default)" };
        var mirrorId = new Option<string?>("--mirror-id")
        {
            Description = "Name reported to the primary with each changelog pull (default: the mirror metaserver's default id for the same bucket URI, plus /blocks)",
        };
        var tokenFile = MirrorCli.TokenFileOption();
        var cmd = new Command("run", "Copy every new block from the primary bucket to the mirror bucket, following the changelog")
        {
            primary, from, to, stateDir, concurrency, bandwidth, checkpointEvery, metrics, mirrorId, tokenFile,
        };
        cmd.SetAction(MirrorCli.Guard(ctx, "run", async (parse, ct) =>
        {
            var target = MetaTarget.Parse(parse.GetValue(primary)!);
            var token = target.ResolveToken(parse.GetValue(tokenFile), ctx);
            var every = MirrorCli.ParseDuration(parse.GetValue(checkpointEvery)!, "--checkpoint-every");
            var conc = parse.GetValue(concurrency);
            if (conc is < 1 or > 1024)
            {
                throw new MirrorCliException($"--concurrency {conc} is outside 1..1024");
            }
            var options = new ReplicatorOptions
            {
                StateDirectory = Path.GetFullPath(parse.GetValue(stateDir)!),
                MirrorId = parse.GetValue(mirrorId) ?? DefaultMirrorId(parse.GetValue(to)!),
                ConcurrencyMax = conc,
                BandwidthBytesPerSecond = MirrorCli.ParseBytes(parse.GetValue(bandwidth)!, "--bandwidth"),
                CheckpointEveryMs = (int)Math.Clamp(every.TotalMilliseconds, 100, 3_600_000),
                ExpectedVolume = target.Volume,
            };
            var fromUri = parse.GetValue(from);
            await using var toStore = ObjectStoreFactory.OpenRaw(parse.GetValue(to)!);
            var fromStore = fromUri is null ? null : ObjectStoreFactory.OpenRaw(fromUri);
            using var loggers = LoggerFactory.Create(b => b.AddSimpleConsole(o =>
            {
                o.SingleLine = true;
                o.TimestampFormat = "HH:mm:ss.fff ";
            }).SetMinimumLevel(LogLevel.Information));
            await using var source = new RpcChangelogSource(target.Addresses, token);
            var replicator = new Replicator(source, v => fromStore ?? ObjectStoreFactory.OpenRaw(v.Storage), toStore, options,
                loggers.CreateLogger("mirrorfs-mirror"));
            StatusServer? server = null;
            if (parse.GetValue(metrics) is { } listen)
            {
                server = await StatusServer.StartAsync(listen, replicator.Status, ct).ConfigureAwait(false);
                await ctx.Out.WriteLineAsync($"mirrorfs-mirror: metrics on http://{server.Address}/metrics, status on http://{server.Address}/status").ConfigureAwait(false);
            }
            try
            {
                await replicator.RunAsync(ct).ConfigureAwait(false);
            }
            finally
            {
                if (server is not null)
                {
                    await server.DisposeAsync().ConfigureAwait(false);
                }
            }
            return 0;
        }));
        return cmd;
    }

    /// <summary>"mirror-&lt;hash of the bucket URI&gt;/blocks": the mirror metaserver of the same bucket reports as
    /// "mirror-&lt;hash&gt;", so status pairs the two.</summary>
    public static string DefaultMirrorId(string mirrorBucketUri) =>
        "mirror-" + Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(mirrorBucketUri)))[..12] + BlocksSuffix;

    public const string BlocksSuffix = "/blocks";
}
