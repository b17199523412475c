// mirrorfs config: shows or changes the volume settings running mounts follow (limits, trash days, capacity).
using System.CommandLine;
using System.Globalization;
using Command = System.CommandLine.Command;
using MirrorFS.Core.Meta;

namespace MirrorFS.Client.Cli;

public static class ConfigCommand
{
    public static Command Create(CliContext ctx)
    {
        var metaUrl = new Argument<string>("META-URL") { Description = "mirrorfs://HOST:PORT[,HOST:PORT...]/VOLUME" };
        var upload = new Option<string?>("--upload-limit") { Description = "Upload bandwidth per client, e.g. 100M (bytes per second; 0 = unlimited)" };
        var download = new Option<string?>("--download-limit") { Description = "Download bandwidth per client, e.g. 100M (bytes per second; 0 = unlimited)" };
        var metaOps = new Option<long?>("--meta-ops-limit") { Description = "Metadata calls per second per client (0 = unlimited)" };
        var trashDays = new Option<int?>("--trash-days") { Description = "Days deleted files stay in the trash (0 = no trash)" };
        var capacity = new Option<string?>("--capacity") { Description = "Volume capacity, e.g. 1T (0 = unlimited)" };
        var inodes = new Option<long?>("--inodes") { Description = "Most files and directories the volume may hold (0 = unlimited)" };
        var tokenFile = MetaConnection.TokenFileOption();
        var cmd = new Command("config", "Show the volume settings, or change them; running mounts pick up limits within seconds")
        {
            metaUrl, upload, download, metaOps, trashDays, capacity, inodes, tokenFile,
        };
        cmd.SetAction(CliApp.Guard(ctx, "config", async (parse, ct) =>
        {
            var url = MetaUrl.Parse(parse.GetValue(metaUrl)!);
            var request = new UpdateVolumeRequest();
            if (parse.GetValue(upload) is { } u)
            {
                request.UploadLimitBytes = (ulong)Sizes.Parse(u, "--upload-limit");
            }
            if (parse.GetValue(download) is { } d)
            {
                request.DownloadLimitBytes = (ulong)Sizes.Parse(d, "--download-limit");
            }
            if (parse.GetValue(metaOps) is { } m)
            {
                request.MetaOpsLimit = m is >= 0 and <= uint.MaxValue ? (uint)m : throw new CliException($"--meta-ops-limit {m} is out of range: use 0 to {uint.MaxValue}");
            }
            if (parse.GetValue(trashDays) is { } t)
            {
                request.TrashDays = t is >= 0 and <= FormatCommand.TrashDaysMax ? (uint)t : throw new CliException($"--trash-days {t} is out of range: use 0 to {FormatCommand.TrashDaysMax}");
            }
            if (parse.GetValue(capacity) is { } c)
            {
                request.CapacityBytes = (ulong)Sizes.Parse(c, "--capacity");
            }
            if (parse.GetValue(inodes) is { } n)
            {
                request.InodesMax = n >= 0 ? (ulong)n : throw new CliException($"--inodes {n} is out of range: use 0 (unlimited) or more");
            }
            var token = MetaConnection.ResolveToken(url, parse.GetValue(tokenFile), ctx);
            await using var meta = MetaConnection.Open(url, token, ctx);
            var volume = await MetaConnection.GetVolumeAsync(meta, url, ct).ConfigureAwait(false);
            if (request.CalculateSize() == 0)
            {
                await ctx.Out.WriteAsync(FormatCommand.Describe(volume)).ConfigureAwait(false);
                return 0;
            }
            var reply = await MetaConnection.CallAsync(url, () => meta.UpdateVolumeAsync(request, ct)).ConfigureAwait(false);
            if (reply.Errno != Errno.OK)
            {
                throw new CliException(reply.Errno == Errno.EPERM
                    ? $"metaserver {url.Hosts} refused to change the settings of volume {url.Volume}: only root may"
                    : $"metaserver {url.Hosts} refused to change the settings of volume {url.Volume}: errno {reply.Errno}");
            }
            foreach (var line in Changes(reply.Old, reply.Volume, request))
            {
                await ctx.Out.WriteLineAsync(line).ConfigureAwait(false);
            }
            return 0;
        }));
        return cmd;
    }

    /// <summary>"setting: old -> new" for every setting the request named.</summary>
    public static IEnumerable<string> Changes(Volume old, Volume now, UpdateVolumeRequest r)
    {
        var inv = CultureInfo.InvariantCulture;
        static string Bytes(ulong v, string unit = "") => v == 0 ? "unlimited" : Sizes.Format((long)Math.Min(v, long.MaxValue)) + unit;
        static string Count(ulong v, string unit = "") => v == 0 ? "unlimited" : v.ToString(CultureInfo.InvariantCulture) + unit;
        if (r.HasUploadLimitBytes)
        {
            yield return $"upload limit: {Bytes(old.UploadLimitBytes, "/s")} -> {Bytes(now.UploadLimitBytes, "/s")}";
        }
        if (r.HasDownloadLimitBytes)
        {
            yield return $"download limit: {Bytes(old.DownloadLimitBytes, "/s")} -> {Bytes(now.DownloadLimitBytes, "/s")}";
        }
        if (r.HasMetaOpsLimit)
        {
            yield return $"meta ops limit: {Count(old.MetaOpsLimit, "/s")} -> {Count(now.MetaOpsLimit, "/s")}";
        }
        if (r.HasTrashDays)
        {
            var was = old.TrashEnabled ? old.TrashDays : 0;
            yield return string.Create(inv, $"trash days: {was} -> {now.TrashDays}");
        }
        if (r.HasCapacityBytes)
        {
            yield return $"capacity: {Bytes(old.CapacityBytes)} -> {Bytes(now.CapacityBytes)}";
        }
        if (r.HasInodesMax)
        {
            yield return $"inodes: {Count(old.InodesMax)} -> {Count(now.InodesMax)}";
        }
    }
}
