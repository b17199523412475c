// `mirrorfs-meta serve`: a single-node metaserver, or (with --id) a member of a Raft cluster.
using System.CommandLine;
using Microsoft.Extensions.Logging;
using MirrorFS.MetaServer.Hosting;

namespace MirrorFS.MetaServer.Cli;

public static class ServeCommand
{
    public static Command Create(MetaCliContext ctx)
    {
        var id = new Option<ulong?>("--id") { Description = "This member's Raft id (non-zero); without it the metaserver runs as one node without Raft" };
        var data = new Option<string?>("--data") { Description = "Data directory (log, snapshots, token)" };
        var listen = new Option<string?>("--listen") { Description = $"Address to listen on (default: this member's --peers entry, else {ServeConfig.DefaultListen})" };
        var peers = new Option<string?>("--peers") { Description = "Initial members as ID=HOST:PORT,ID=HOST:PORT,... (this member included)" };
        var config = new Option<string?>("--config") { Description = "JSON file with id, data, listen, peers, token-file (flags override it)" };
        var join = new Option<bool>("--join") { Description = "Start with no configuration and wait to be added with 'member add'" };
        var advertise = new Option<string?>("--advertise") { Description = "HOST:PORT other members and clients use for this one (default: its --peers entry, else --listen)" };
        var tokenFile = new Option<string?>("--token-file")
        {
            Description = "File holding the bearer token clients and members must send (default: DATA/token, created on first start)",
        };
        var noAuth = new Option<bool>("--no-auth") { Description = "Accept calls without a token (loopback testing only)" };
        var snapshotEvery = new Option<ulong?>("--snapshot-every") { Description = "Take a snapshot after this many log entries (default 100000)" };
        var electionMs = new Option<int?>("--election-timeout-ms") { Description = "Raft election timeout (default 300; the actual one is random in [T, 2T))" };
        var heartbeatMs = new Option<int?>("--heartbeat-ms") { Description = "Raft heartbeat interval (default 50)" };
        var metrics = new Option<string?>("--metrics") { Description = "Serve Prometheus metrics at http://ADDR/metrics, e.g. 127.0.0.1:9568" };
        var cmd = new Command("serve", "Run a metaserver: a single node, or a Raft cluster member with --id")
        {
            id, data, listen, peers, config, join, advertise, tokenFile, noAuth, snapshotEvery, electionMs, heartbeatMs, metrics,
        };
        var mirror = new MirrorServeOptions();
        mirror.AddTo(cmd);
        cmd.SetAction(MetaCli.Guard(ctx, "serve", async (parse, ct) =>
        {
            var flags = new ServeConfig
            {
                Id = parse.GetValue(id),
                Data = parse.GetValue(data),
                Listen = parse.GetValue(listen),
                Peers = parse.GetValue(peers) is { } p ? ServeConfig.ParsePeers(p) : null,
                TokenFile = parse.GetValue(tokenFile),
                NoAuth = parse.GetValue(noAuth) ? true : null,
                Join = parse.GetValue(join) ? true : null,
                Advertise = parse.GetValue(advertise),
                SnapshotEvery = parse.GetValue(snapshotEvery),
                ElectionTimeoutMs = parse.GetValue(electionMs),
                HeartbeatMs = parse.GetValue(heartbeatMs),
            };
            var settings = parse.GetValue(config) is { } file ? ServeConfig.Load(file).OverriddenBy(flags) : flags;
            settings.Validate();
            return await RunAsync(ctx, settings, mirror.Build(parse), parse.GetValue(metrics), ct).ConfigureAwait(false);
        }));
        return cmd;
    }

    private static async Task<int> RunAsync(MetaCliContext ctx, ServeConfig settings, Mirror.MirrorHostOptions? mirror, string? metricsListen,
        CancellationToken ct)
    {
        var dir = Path.GetFullPath(settings.Data!);
        string? token = null;
        try
        {
            Directory.CreateDirectory(dir);
            if (settings.NoAuth != true)
            {
                token = Tokens.LoadOrCreate(settings.TokenFile ?? Path.Combine(dir, "token"));
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CliException($"cannot use data directory {dir}: {e.Message}");
        }
        using var loggers = LoggerFactory.Create(b => b.AddSimpleConsole(o =>
        {
            o.SingleLine = true;
            o.TimestampFormat = "HH:mm:ss.fff ";
        }).SetMinimumLevel(LogLevel.Information).AddFilter("Microsoft", LogLevel.Warning)
            .AddFilter("Microsoft.Extensions.Hosting.Internal.Host", LogLevel.None)); // its start failures are reported in one line below
        MetaServerHost host;
        try
        {
            host = await MetaServerHost.StartAsync(settings.ToHostOptions(token, loggers) with { Mirror = mirror, MetricsListen = metricsListen }, ct)
                .ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or InvalidDataException or ArgumentException or FormatException)
        {
            throw new CliException($"cannot start: {e.Message}");
        }
        await using (host.ConfigureAwait(false))
        {
            await ctx.Out.WriteLineAsync($"mirrorfs-meta listening on {host.Address}").ConfigureAwait(false);
            if (host.Metrics.Address is { } m)
            {
                await ctx.Out.WriteLineAsync($"mirrorfs-meta metrics at http://{m}/metrics").ConfigureAwait(false);
            }
            await ctx.Out.FlushAsync(ct).ConfigureAwait(false);
            try
            {
                await Task.Delay(Timeout.Infinite, ct).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
            }
        }
        return 0;
    }
}
