// Connects to the metaserver a META-URL names: finds the token, opens the RPC client, and checks the volume.
using System.CommandLine;
using MirrorFS.Core.Meta;
using MirrorFS.Core.Metrics;
using MirrorFS.Core.Rpc;

namespace MirrorFS.Client.Cli;

public static class MetaConnection
{
    public const string TokenEnvironment = "MIRRORFS_TOKEN";
    private const int TokenFileBytesMax = 4096;

    public static Option<string?> TokenFileOption() => new("--token-file")
    {
        Description = $"File holding the metaserver token (else the URL's :TOKEN@, else ${TokenEnvironment})",
    };

    /// <summary>The token: the URL's own, else the file's, else the environment's; null when none is given.</summary>
    public static string? ResolveToken(MetaUrl url, string? tokenFile, CliContext ctx)
    {
        if (url.Token is not null)
        {
            return url.Token;
        }
        if (tokenFile is not null)
        {
            try
            {
                var info = new FileInfo(tokenFile);
                if (info.Exists && info.Length > TokenFileBytesMax)
                {
                    throw new CliException($"token file {tokenFile} is larger than {TokenFileBytesMax} bytes: it should hold only the token");
                }
                var token = File.ReadAllText(tokenFile).Trim();
                return token.Length == 0
                    ? throw new CliException($"token file {tokenFile} is empty: write the metaserver's token into it")
                    : token;
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new CliException($"cannot read token file {tokenFile}: {e.Message}");
            }
        }
        var env = ctx.Environment(TokenEnvironment);
        return string.IsNullOrWhiteSpace(env) ? null : env.Trim();
    }

    public static RpcMetaClient Open(MetaUrl url, string? token, CliContext ctx, MetricsRegistry? metrics = null) =>
        new(new RpcMetaClientOptions
        {
            Addresses = url.Addresses,
            BearerToken = token,
            CallTimeoutMs = ctx.MetaFailoverTimeoutMs,
            FailoverTimeoutMs = ctx.MetaFailoverTimeoutMs,
            Metrics = metrics,
        });

    /// <summary>Runs one metadata call, turning infrastructure failures into one-line <see cref="CliException"/>s.</summary>
    public static async Task<T> CallAsync<T>(MetaUrl url, Func<Task<T>> call)
    {
        try
        {
            return await call().ConfigureAwait(false);
        }
        catch (MetaUnavailableException e)
        {
            throw new CliException($"cannot reach metaserver {url.Hosts}: {FirstLine(e.InnerException?.Message ?? e.Message)}");
        }
        catch (RpcException e) when (e.Status == StatusCode.Unauthenticated)
        {
            throw new CliException($"metaserver {url.Hosts} refused the token: give the right one with --token-file, ${TokenEnvironment} or mirrorfs://:TOKEN@HOST:PORT/VOLUME");
        }
        catch (RpcException e)
        {
            throw new CliException($"metaserver {url.Hosts} failed the call ({e.Status}): {FirstLine(e.Message)}");
        }
    }

    /// <summary>The volume the metaserver serves; fails unless it is the one the URL names.</summary>
    public static async Task<Volume> GetVolumeAsync(IMetaClient meta, MetaUrl url, CancellationToken ct)
    {
        var reply = await CallAsync(url, () => meta.GetVolumeAsync(new GetVolumeRequest(), ct)).ConfigureAwait(false);
        if (reply.Errno == Errno.ENOENT)
        {
            throw new CliException($"volume {url.Volume} not found on {url.Hosts} (it serves no volume yet): run mirrorfs format first");
        }
        if (reply.Errno == Errno.EBUSY)
        {
            throw new CliException($"volume on {url.Hosts} is being loaded, or a load stopped half-way: wait for mirrorfs load to finish, or run it again");
        }
        if (reply.Errno != 0)
        {
            throw new CliException($"metaserver {url.Hosts} could not read the volume: errno {reply.Errno}");
        }
        if (reply.Volume.Name != url.Volume)
        {
            throw new CliException($"volume {url.Volume} not found on {url.Hosts} (it serves {reply.Volume.Name})");
        }
        return reply.Volume;
    }

    internal static string FirstLine(string s)
    {
        var nl = s.IndexOfAny(['\r', '\n']);
        return nl < 0 ? s : s[..nl];
    }
}
