// What the mirrorfs-mirror subcommands share: output writers, one-line failures, META-URLs, tokens, sizes, durations.
using System.CommandLine;
using System.Globalization;
using MirrorFS.Core.Meta;
using MirrorFS.Core.Rpc;
using MirrorFS.Core.Storage;

namespace MirrorFS.Mirror.Cli;

/// <summary>A failure the user can act on: printed as one line, exit code 1.</summary>
public sealed class MirrorCliException(string message) : Exception(message);

public sealed class MirrorCliContext(TextWriter output, TextWriter error, Func<string, string?>? environment = null)
{
    public TextWriter Out { get; } = output;

    public TextWriter Err { get; } = error;

    public Func<string, string?> Environment { get; } = environment ?? System.Environment.GetEnvironmentVariable;

    /// <summary>How long a metadata call keeps trying across members before the command gives up.</summary>
    public int MetaFailoverTimeoutMs { get; init; } = 10_000;
}

/// <summary>A parsed META-URL: mirrorfs://[:TOKEN@]HOST:PORT[,HOST:PORT...]/VOLUME.</summary>
public sealed record MetaTarget(IReadOnlyList<string> Addresses, string Volume, string? Token)
{
    public const string ExpectedForm = "expected mirrorfs://HOST:PORT[,HOST:PORT...]/VOLUME (token as mirrorfs://:TOKEN@HOST:PORT/VOLUME)";
    private const string Scheme = "mirrorfs://";

    public string Hosts => string.Join(",", Addresses);

    public override string ToString() => $"{Scheme}{Hosts}/{Volume}";

    public static MetaTarget Parse(string text)
    {
        if (!text.StartsWith(Scheme, StringComparison.OrdinalIgnoreCase))
        {
            throw new MirrorCliException($"META-URL '{Shown(text)}' does not start with {Scheme}: {ExpectedForm}");
        }
        var rest = text[Scheme.Length..];
        string? token = null;
        var at = rest.LastIndexOf('@');
        if (at >= 0)
        {
            var user = rest[..at];
            token = Uri.UnescapeDataString(user.Contains(':', StringComparison.Ordinal) ? user[(user.IndexOf(':', StringComparison.Ordinal) + 1)..] : user);
            rest = rest[(at + 1)..];
        }
        var slash = rest.IndexOf('/', StringComparison.Ordinal);
        var hosts = slash < 0 ? rest : rest[..slash];
        var volume = slash < 0 ? "" : rest[(slash + 1)..].TrimEnd('/');
        var addresses = hosts.Split(',', StringSplitOptions.RemoveEmptyEntries);
        foreach (var a in addresses)
        {
            var colon = a.LastIndexOf(':');
            if (colon <= 0 || !int.TryParse(a.AsSpan(colon + 1), NumberStyles.None, CultureInfo.InvariantCulture, out var port) || port is < 1 or > 65535)
            {
                throw new MirrorCliException($"META-URL '{Shown(text)}': address '{a}' needs HOST:PORT: {ExpectedForm}");
            }
        }
        if (addresses.Length == 0 || volume.Length == 0 || token?.Length == 0)
        {
            throw new MirrorCliException($"META-URL '{Shown(text)}' needs at least one HOST:PORT, a volume, and no empty token: {ExpectedForm}");
        }
        return new MetaTarget(addresses, volume, token);
    }

    // Never print a token, even from a URL that failed to parse.
    private static string Shown(string text)
    {
        var at = text.LastIndexOf('@');
        return at < 0 ? text : $"{Scheme}:***@{text[(at + 1)..]}";
    }

    /// <summary>The token: the URL's own, else the file's, else $MIRRORFS_TOKEN; null when none is given.</summary>
    public string? ResolveToken(string? tokenFile, MirrorCliContext ctx)
    {
        if (Token is not null)
        {
            return Token;
        }
        if (tokenFile is not null)
        {
            try
            {
                var t = File.ReadAllText(tokenFile).Trim();
                return t.Length == 0 ? throw new MirrorCliException($"token file {tokenFile} is empty: write the metaserver's token into it") : t;
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new MirrorCliException($"cannot read token file {tokenFile}: {e.Message}");
            }
        }
        var env = ctx.Environment("MIRRORFS_TOKEN");
        return string.IsNullOrWhiteSpace(env) ? null : env.Trim();
    }

    public RpcMetaClient OpenClient(string? token, MirrorCliContext ctx) => new(new RpcMetaClientOptions
    {
        Addresses = Addresses,
        BearerToken = token,
        CallTimeoutMs = ctx.MetaFailoverTimeoutMs,
        FailoverTimeoutMs = ctx.MetaFailoverTimeoutMs,
    });

    /// <summary>Runs one metadata call; infrastructure failures become one-line <see cref="MirrorCliException"/>s.</summary>
    public async Task<T> CallAsync<T>(Func<Task<T>> call)
    {
        try
        {
            return await call().ConfigureAwait(false);
        }
        catch (MetaUnavailableException e)
        {
            throw new MirrorCliException($"cannot reach metaserver {Hosts}: {MirrorCli.FirstLine(e.InnerException?.Message ?? e.Message)}");
        }
        catch (RpcException e) when (e.Status == StatusCode.Unauthenticated)
        {
            throw new MirrorCliException($"metaserver {Hosts} refused the token: give the right one with --token-file, $MIRRORFS_TOKEN or mirrorfs://:TOKEN@HOST:PORT/VOLUME");
        }
        catch (RpcException e)
        {
            throw new MirrorCliException($"metaserver {Hosts} failed the call ({e.Status}): {MirrorCli.FirstLine(e.Message)}");
        }
    }
}

public static class MirrorCli
{
    public const int Failed = 1;
    public const int Usage = 2;

    public static Option<string?> TokenFileOption(string name = "--token-file", string? what = null) => new(name)
    {
        Description = $"File holding the {what ?? "metaserver"} token (else the URL's :TOKEN@, else $MIRRORFS_TOKEN)",
    };

    /// <summary>Wraps a command body: failures a user can act on print as one line and give <see cref="Failed"/>.</summary>
    public static Func<ParseResult, CancellationToken, Task<int>> Guard(MirrorCliContext ctx, string command,
        Func<ParseResult, CancellationToken, Task<int>> body) =>
        async (parse, ct) =>
        {
            string message;
            try
            {
                return await body(parse, ct).ConfigureAwait(false);
            }
            catch (MirrorCliException e)
            {
                message = e.Message;
            }
            catch (StoreUriException e)
            {
                message = e.Message;
            }
            catch (ObjectStoreException e)
            {
                message = $"object storage failed: {e.Message}";
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                message = "interrupted";
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidDataException or ArgumentException)
            {
                message = e.Message;
            }
            await ctx.Err.WriteLineAsync($"mirrorfs-mirror {command}: {FirstLine(message)}").ConfigureAwait(false);
            return Failed;
        };

    public static string FirstLine(string s)
    {
        var nl = s.IndexOfAny(['\r', '\n']);
        return nl < 0 ? s : s[..nl];
    }

    /// <summary>"100M", "64K", "1G" (powers of 1024) or a plain byte count; "0" means none.</summary>
    public static long ParseBytes(string text, string what)
    {
        var s = text.Trim();
        var end = 0;
        while (end < s.Length && char.IsAsciiDigit(s[end]))
        {
            end++;
        }
        var shift = s[end..].ToUpperInvariant() switch
        {
            "" or "B" => 0,
            "K" or "KB" or "KIB" => 10,
            "M" or "MB" or "MIB" => 20,
            "G" or "GB" or "GIB" => 30,
            _ => -1,
        };
        if (end == 0 || shift < 0 || !long.TryParse(s.AsSpan(0, end), NumberStyles.None, CultureInfo.InvariantCulture, out var n)
            || n > (long.MaxValue >> shift))
        {
            throw new MirrorCliException($"{what} '{text}' is not a size: use a number with an optional K, M or G suffix (e.g. 100M)");
        }
        return n << shift;
    }

    /// <summary>"5s", "500ms", "2m", or plain seconds.</summary>
    public static TimeSpan ParseDuration(string text, string what)
    {
        var s = text.Trim();
        var end = 0;
        while (end < s.Length && (char.IsAsciiDigit(s[end]) || s[end] == '.'))
        {
            end++;
        }
        if (end == 0 || !double.TryParse(s.AsSpan(0, end), NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var n))
        {
            throw new MirrorCliException($"{what} '{text}' is not a duration: use e.g. 500ms, 5s or 2m");
        }
        return s[end..] switch
        {
            "ms" => TimeSpan.FromMilliseconds(n),
            "" or "s" => TimeSpan.FromSeconds(n),
            "m" => TimeSpan.FromMinutes(n),
            "h" => TimeSpan.FromHours(n),
            _ => throw new MirrorCliException($"{what} '{text}' is not a duration: use e.g. 500ms, 5s or 2m"),
        };
    }
}
