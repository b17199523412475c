// mirrorfs load: puts a dump (plain or gzip JSON) into an empty metaserver, keeping inode numbers and slice ids.
using System.CommandLine;
using MirrorFS.Client.Dump;
using MirrorFS.Client.Vfs;
using MirrorFS.Core.Meta;
using MirrorFS.Core.Storage;
using Command = System.CommandLine.Command;

namespace MirrorFS.Client.Cli;

public static class LoadCommand
{
    public static Command Create(CliContext ctx)
    {
        var metaUrl = new Argument<string>("META-URL") { Description = "mirrorfs://HOST:PORT[,HOST:PORT...][/VOLUME] of an empty metaserver" };
        var file = new Argument<string>("FILE") { Description = "A dump written by mirrorfs dump or --backup-meta (plain or gzip), or - for stdin" };
        var storage = new Option<string?>("--storage")
        {
            Description = "Object storage URI to record instead of the dump's (needed when the dump left its secret keys out)",
        };
        var tokenFile = MetaConnection.TokenFileOption();
        var cmd = new Command("load", "Load a metadata dump into an empty metaserver; the files read from the same blocks")
        {
            metaUrl, file, storage, tokenFile,
        };
        cmd.SetAction(CliApp.Guard(ctx, "load", async (parse, ct) =>
        {
            var url = MetaUrl.Parse(parse.GetValue(metaUrl)!, volumeRequired: false);
            var path = parse.GetValue(file)!;
            var token = MetaConnection.ResolveToken(url, parse.GetValue(tokenFile), ctx);
            await using var meta = MetaConnection.Open(url, token, ctx);
            var existing = await CheckEmptyAsync(meta, url, ct).ConfigureAwait(false);
            await using var raw = path == "-"
                ? Console.OpenStandardInput()
                : new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16, FileOptions.Asynchronous);
            var result = await MetaConnection.CallAsync(url, async () =>
            {
                await using var session = await MetaSession.StartAsync(meta, new MetaSessionOptions
                {
                    Info = new ClientInfo { Hostname = Environment.MachineName, MountPoint = "(load)", Pid = (uint)Environment.ProcessId },
                }, ct: ct).ConfigureAwait(false);
                await using var input = await MetaLoader.OpenAsync(raw, ct).ConfigureAwait(false);
                try
                {
                    return await MetaLoader.LoadAsync(input,
                        (req, c) => session.MutateAsync(req, static (m, r, t) => m.LoadEntriesAsync(r, t), c),
                        info => VolumeFor(info, url, existing, parse.GetValue(storage)), ct).ConfigureAwait(false);
                }
                catch (Exception e) when (e is DumpFormatException or MetaLoadException or InvalidDataException)
                {
                    throw new CliException(e.Message);
                }
            }).ConfigureAwait(false);
            await ctx.Out.WriteLineAsync(
                $"loaded volume {result.Info.Volume.Name} into {url.Hosts}: {result.Inodes} inodes, {result.HardLinks} more hard links, " +
                $"{result.Slices} slices in {result.Batches} batches (dumped at log index {result.Info.LogIndex}); ready to mount").ConfigureAwait(false);
            return 0;
        }));
        return cmd;
    }

    /// <summary>Fails unless the metaserver holds nothing: no volume, an unfinished load, or only an empty root.
    /// Returns the formatted volume when there is one. (The metaserver checks again, atomically, at BEGIN.)</summary>
    private static async Task<Volume?> CheckEmptyAsync(IMetaClient meta, MetaUrl url, CancellationToken ct)
    {
        var v = await MetaConnection.CallAsync(url, () => meta.GetVolumeAsync(new GetVolumeRequest(), ct)).ConfigureAwait(false);
        if (v.Errno is Errno.ENOENT or Errno.EBUSY)
        {
            return null;
        }
        if (v.Errno != 0)
        {
            throw new CliException($"metaserver {url.Hosts} could not read the volume: errno {v.Errno}");
        }
        var fs = await MetaConnection.CallAsync(url, () => meta.StatFsAsync(new StatFsRequest(), ct)).ConfigureAwait(false);
        if (fs.Errno != 0 || fs.UsedInodes > 1)
        {
            throw new CliException($"volume {v.Volume.Name} on {url.Hosts} is not empty ({fs.UsedInodes} inodes): load needs a new metaserver or an empty volume");
        }
        return v.Volume;
    }

    /// <summary>The settings BEGIN records: the dump's, with a storage URI that can be used here.</summary>
    private static Volume VolumeFor(DumpInfo info, MetaUrl url, Volume? existing, string? storage)
    {
        var v = info.Volume.Clone();
        // Block keys start with the volume name: a renamed volume would find none of its blocks.
        if (url.Volume.Length > 0 && url.Volume != v.Name)
        {
            throw new CliException($"the dump holds volume {v.Name} but META-URL names {url.Volume}: the name must stay (block keys start with it); use .../{v.Name}");
        }
        if (existing is not null && existing.Name != v.Name)
        {
            throw new CliException($"the metaserver serves volume {existing.Name} but the dump holds {v.Name}: load into a new metaserver");
        }
        if (existing is not null && existing.BlockSize != v.BlockSize)
        {
            throw new CliException($"volume {v.Name} here has block size {existing.BlockSize} but the dump {v.BlockSize}: load into a new metaserver");
        }
        v.Storage = storage ?? existing?.Storage ?? v.Storage;
        if (storage is null && existing is null && info.SecretKeysRemoved)
        {
            throw new CliException($"the dump's storage URI {v.Storage} has its secret keys left out: give the full URI with --storage (or dump with --keep-secret-key)");
        }
        // Parse it now (no network), so a load never records a storage URI no client can open.
        ObjectStoreFactory.OpenRaw(v.Storage).DisposeAsync().AsTask().GetAwaiter().GetResult();
        return v;
    }
}
