// What a mount talks to when its metaserver is a mirror (or a promoted one): routed metadata and two buckets.
using MirrorFS.Client.Vfs;
using MirrorFS.Core.Meta;
using MirrorFS.Core.Storage;

namespace MirrorFS.Client.Cli;

public static class MirrorConnection
{
    public const string PrimaryTokenEnvironment = "MIRRORFS_PRIMARY_TOKEN";

    /// <summary>
    /// For a mirror volume (GetVolume names <see cref="Volume.MirrorOf"/>): metadata through a
    /// <see cref="MirrorMetaClient"/> (reads here, writes to the primary) and blocks from this region's bucket, else
    /// the primary's; writes go to the primary's. For a promoted mirror: its own bucket, then the old primary's.
    /// Otherwise the client and the volume's bucket as they are. The returned client owns <paramref name="meta"/>.
    /// </summary>
    public static (IMetaClient Meta, IObjectStore Store) Open(IMetaClient meta, Volume volume, MetaUrl url, string? token,
        string? primaryToken, CliContext ctx, Func<string, IObjectStore>? openStore = null)
    {
        IObjectStore OpenStore(string uri) => MirrorConnection.OpenStore(uri, openStore);
        if (volume.MirrorOf.Length > 0)
        {
            var primary = MetaUrl.Parse(volume.MirrorOf);
            if (primary.Volume != url.Volume)
            {
                throw new CliException($"mirror {url.Hosts} follows volume {primary.Volume}, not {url.Volume}");
            }
            var primaryClient = MetaConnection.Open(primary.WithToken(null), primaryToken ?? token, ctx);
            var store = new MirrorObjectStore(OpenStore(volume.MirrorStorage.Length > 0 ? volume.MirrorStorage : volume.Storage),
                OpenStore(volume.Storage), writeNear: false);
            return (new MirrorMetaClient(meta, primaryClient), store);
        }
        if (volume.FallbackStorage.Length > 0)
        {
            return (meta, new MirrorObjectStore(OpenStore(volume.Storage), OpenStore(volume.FallbackStorage), writeNear: true));
        }
        return (meta, OpenStore(volume.Storage));
    }

    /// <summary>The primary's token: --primary-token-file, else $MIRRORFS_PRIMARY_TOKEN; null means the mirror's own.</summary>
    public static string? ResolvePrimaryToken(MetaUrl url, string? tokenFile, CliContext ctx)
    {
        if (tokenFile is not null)
        {
            return MetaConnection.ResolveToken(url.WithToken(null), tokenFile, ctx); // a file given is always read
        }
        var env = ctx.Environment(PrimaryTokenEnvironment);
        return string.IsNullOrWhiteSpace(env) ? null : env.Trim();
    }

    private static IObjectStore OpenStore(string uri, Func<string, IObjectStore>? open)
    {
        try
        {
            return open is null ? ObjectStoreFactory.Open(uri) : open(uri);
        }
        catch (StoreUriException e)
        {
            throw new CliException(e.Message);
        }
    }
}
