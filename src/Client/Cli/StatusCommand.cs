// mirrorfs status: the volume's settings (secrets redacted) and the client sessions the metaserver knows.
using System.CommandLine;
using Command = System.CommandLine.Command;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using MirrorFS.Core.Meta;
using MirrorFS.Core.Storage;

namespace MirrorFS.Client.Cli;

public static class StatusCommand
{
    /// <summary>Sessions read at most (pages of the server's default size).</summary>
    public const int SessionsShownMax = 100_000;

    public static Command Create(CliContext ctx)
    {
        var metaUrl = new Argument<string>("META-URL") { Description = "mirrorfs://HOST:PORT[,HOST:PORT...]/VOLUME" };
        var json = new Option<bool>("--json") { Description = "Print JSON instead of tables" };
        var tokenFile = MetaConnection.TokenFileOption();
        var cmd = new Command("status", "Show the volume's settings and its client sessions") { metaUrl, json, tokenFile };
        cmd.SetAction(CliApp.Guard(ctx, "status", async (parse, ct) =>
        {
            var url = MetaUrl.Parse(parse.GetValue(metaUrl)!);
            var token = MetaConnection.ResolveToken(url, parse.GetValue(tokenFile), ctx);
            await using var meta = MetaConnection.Open(url, token, ctx);
            var (volume, sessions) = await ReadAsync(meta, url, ct).ConfigureAwait(false);
            var now = DateTimeOffset.UtcNow;
            if (parse.GetValue(json))
            {
                await ctx.Out.WriteLineAsync(Json(volume, sessions, now)).ConfigureAwait(false);
            }
            else
            {
                Tables.Write(ctx, $"volume {volume.Name} on {url.Hosts}", ["setting", "value"],
                    FormatCommand.Settings(volume).Select(kv => (IReadOnlyList<string>)[kv.Key, kv.Value]));
                if (sessions.Count == 0)
                {
                    await ctx.Out.WriteLineAsync("no client sessions").ConfigureAwait(false);
                }
                else
                {
                    Tables.Write(ctx, $"{sessions.Count} client session(s)",
                        ["session", "host", "mount point", "pid", "version", "last active", "open inodes"],
                        sessions.Select(s => SessionRow(s, now)), new HashSet<int> { 0, 3, 6 });
                }
            }
            return 0;
        }));
        return cmd;
    }

    public static async Task<(Volume Volume, IReadOnlyList<SessionEntry> Sessions)> ReadAsync(IMetaClient meta, MetaUrl url,
        CancellationToken ct)
    {
        var volume = await MetaConnection.GetVolumeAsync(meta, url, ct).ConfigureAwait(false);
        var sessions = new List<SessionEntry>();
        ulong after = 0;
        while (sessions.Count < SessionsShownMax)
        {
            var page = await MetaConnection.CallAsync(url,
                () => meta.ListSessionsAsync(new ListSessionsRequest { StartAfter = after }, ct)).ConfigureAwait(false);
            if (page.Errno != Errno.OK)
            {
                throw new CliException($"metaserver {url.Hosts} could not list sessions: errno {page.Errno}");
            }
            sessions.AddRange(page.Sessions);
            if (page.Eof || page.Sessions.Count == 0)
            {
                break;
            }
            after = page.Sessions[^1].SessionId;
        }
        return (volume, sessions);
    }

    private static IReadOnlyList<string> SessionRow(SessionEntry s, DateTimeOffset now)
    {
        var inv = CultureInfo.InvariantCulture;
        var i = s.Info ?? new ClientInfo();
        return
        [
            s.SessionId.ToString(inv), i.Hostname, i.MountPoint, i.Pid.ToString(inv), i.Version,
            Age(s.LastActiveNs, now), s.OpenInodes.ToString(inv),
        ];
    }

    internal static string Age(long ns, DateTimeOffset now)
    {
        var seconds = (now.ToUnixTimeMilliseconds() - (ns / 1_000_000)) / 1000.0;
        return seconds < 0 ? "now" : string.Create(CultureInfo.InvariantCulture, $"{seconds:0.0} s ago");
    }

    public static string Json(Volume v, IReadOnlyList<SessionEntry> sessions, DateTimeOffset now)
    {
        var settings = new JsonObject
        {
            ["name"] = v.Name,
            ["uuid"] = v.Uuid,
            ["storage"] = ObjectStoreFactory.Redact(v.Storage),
            ["blockSize"] = v.BlockSize,
            ["chunkSize"] = v.ChunkSize,
            ["trashDays"] = v.TrashDays,
            ["capacityBytes"] = v.CapacityBytes,
            ["inodesMax"] = v.InodesMax,
            ["createdNs"] = v.CreatedNs,
        };
        var list = new JsonArray();
        foreach (var s in sessions)
        {
            var i = s.Info ?? new ClientInfo();
            list.Add(new JsonObject
            {
                ["sessionId"] = s.SessionId,
                ["hostname"] = i.Hostname,
                ["mountPoint"] = i.MountPoint,
                ["pid"] = i.Pid,
                ["version"] = i.Version,
                ["lastActiveNs"] = s.LastActiveNs,
                ["idleSeconds"] = Math.Max(0, (now.ToUnixTimeMilliseconds() - (s.LastActiveNs / 1_000_000)) / 1000.0),
                ["openInodes"] = s.OpenInodes,
            });
        }
        var root = new JsonObject { ["volume"] = settings, ["sessions"] = list };
        return root.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }
}
