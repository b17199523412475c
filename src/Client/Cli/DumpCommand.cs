// mirrorfs dump: the volume's whole metadata as versioned JSON (docs/dump-format.md), streamed to a file or stdout.
using System.CommandLine;
using System.IO.Compression;
using MirrorFS.Client.Dump;
using MirrorFS.Core.Meta;
using Command = System.CommandLine.Command;

namespace MirrorFS.Client.Cli;

public static class DumpCommand
{
    public static Command Create(CliContext ctx)
    {
        var metaUrl = new Argument<string>("META-URL") { Description = "mirrorfs://HOST:PORT[,HOST:PORT...]/VOLUME" };
        var file = new Argument<string>("FILE") { Description = "Where to write: a path (gzip-compressed when it ends in .gz), or - for stdout" };
        var keepSecret = new Option<bool>("--keep-secret-key") { Description = "Keep the secret keys of the storage URI in the dump" };
        var tokenFile = MetaConnection.TokenFileOption();
        var cmd = new Command("dump", "Write the volume's metadata (settings, counters, the whole tree) as JSON")
        {
            metaUrl, file, keepSecret, tokenFile,
        };
        cmd.SetAction(CliApp.Guard(ctx, "dump", async (parse, ct) =>
        {
            var url = MetaUrl.Parse(parse.GetValue(metaUrl)!);
            var path = parse.GetValue(file)!;
            var token = MetaConnection.ResolveToken(url, parse.GetValue(tokenFile), ctx);
            await using var meta = MetaConnection.Open(url, token, ctx);
            await MetaConnection.GetVolumeAsync(meta, url, ct).ConfigureAwait(false);
            var keep = parse.GetValue(keepSecret);
            DumpResult result;
            if (path == "-")
            {
                await using var stdout = new TextWriterStream(ctx.Out);
                result = await RunAsync(meta, url, stdout, keep, ct).ConfigureAwait(false);
            }
            else
            {
                result = await WriteFileAsync(meta, url, Path.GetFullPath(path), keep, ct).ConfigureAwait(false);
            }
            // With the dump on stdout, the summary goes to stderr.
            var summary = path == "-" ? ctx.Err : ctx.Out;
            await summary.WriteLineAsync(
                $"dumped volume {url.Volume} at log index {result.Index}: {result.Inodes} inodes, {result.Nodes - result.Inodes} more hard links, " +
                $"{result.Slices} slices{(result.SecretKeysRemoved ? "; secret keys left out (--keep-secret-key keeps them)" : "")}").ConfigureAwait(false);
            return 0;
        }));
        return cmd;
    }

    /// <summary>Writes to FILE.partial and renames it when complete, so a failed dump never looks like a whole one.</summary>
    private static async Task<DumpResult> WriteFileAsync(IMetaClient meta, MetaUrl url, string path, bool keep, CancellationToken ct)
    {
        var partial = path + ".partial";
        DumpResult result;
        try
        {
            await using (var fs = new FileStream(partial, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 16, FileOptions.Asynchronous))
            {
                if (path.EndsWith(".gz", StringComparison.Ordinal))
                {
                    await using var gz = new GZipStream(fs, CompressionLevel.Optimal);
                    result = await RunAsync(meta, url, gz, keep, ct).ConfigureAwait(false);
                }
                else
                {
                    result = await RunAsync(meta, url, fs, keep, ct).ConfigureAwait(false);
                }
            }
            File.Move(partial, path, overwrite: true);
        }
        catch
        {
            File.Delete(partial);
            throw;
        }
        return result;
    }

    private static Task<DumpResult> RunAsync(IMetaClient meta, MetaUrl url, Stream output, bool keep, CancellationToken ct) =>
        MetaConnection.CallAsync(url, async () =>
        {
            try
            {
                return await MetaDumpWriter.WriteAsync(meta.DumpAsync(new DumpRequest(), ct), output, keep, DateTimeOffset.UtcNow, ct)
                    .ConfigureAwait(false);
            }
            catch (DumpFormatException e)
            {
                throw new CliException(e.Message);
            }
        });
}
