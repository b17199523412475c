// Paths inside a volume (e.g. /projects/a) to inodes and back, through the metaserver (no mount needed).
using System.Text;
using Google.Protobuf;
using MirrorFS.Core.Meta;

namespace MirrorFS.Client.Cli;

public static class VolumePaths
{
    public const ulong RootInode = 1;

    /// <summary>Components looked up at most (deeper paths are refused).</summary>
    public const int DepthMax = 4096;

    /// <summary>The inode of <paramref name="path"/>, a path from the volume's root ("/" or "" is the root).</summary>
    public static async Task<Attr> ResolveAsync(IMetaClient meta, MetaUrl url, string path, CancellationToken ct)
    {
        var parts = path.Split('/', StringSplitOptions.RemoveEmptyEntries);
        if (parts.Length > DepthMax)
        {
            throw new CliException($"path {path} is deeper than {DepthMax} levels");
        }
        var attr = (await MetaConnection.CallAsync(url, () => meta.GetAttrAsync(new GetAttrRequest { Inode = RootInode }, ct)).ConfigureAwait(false)).Attr;
        var walked = "";
        foreach (var part in parts)
        {
            walked += "/" + part;
            var parent = attr.Inode;
            var r = await MetaConnection.CallAsync(url, () => meta.LookupAsync(new LookupRequest
            {
                Parent = parent,
                Name = ByteString.CopyFromUtf8(part),
            }, ct)).ConfigureAwait(false);
            if (r.Errno != Errno.OK)
            {
                throw new CliException(r.Errno == Errno.ENOENT
                    ? $"{walked} does not exist in volume {url.Volume}: give the path from the volume's root, e.g. /dir"
                    : $"looking up {walked} in volume {url.Volume} failed: errno {r.Errno}");
            }
            attr = r.Attr;
        }
        return attr;
    }

    /// <summary>The path of directory <paramref name="inode"/>, or "(inode N)" when the metaserver has none.</summary>
    public static async Task<string> PathOfAsync(IMetaClient meta, MetaUrl url, ulong inode, CancellationToken ct)
    {
        var r = await MetaConnection.CallAsync(url, () => meta.GetPathAsync(new GetPathRequest { Inode = inode }, ct)).ConfigureAwait(false);
        return r.Errno == Errno.OK ? Encoding.UTF8.GetString(r.Path.Span) : $"(inode {inode})";
    }
}
