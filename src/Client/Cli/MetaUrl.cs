// The META-URL every command takes: mirrorfs://[:TOKEN@]host:port[,host:port...]/VOLUME.
using System.Globalization;
using System.Text.RegularExpressions;

namespace MirrorFS.Client.Cli;

public sealed partial record MetaUrl
{
    public const string Scheme = "mirrorfs://";
    public const string ExpectedForm = "expected mirrorfs://HOST:PORT[,HOST:PORT...]/VOLUME (token as mirrorfs://:TOKEN@HOST:PORT/VOLUME)";
    public const string VolumeNameRule = "lowercase letters, digits and '-', 2 to 63 characters, starting with a letter or digit";

    private MetaUrl(IReadOnlyList<string> addresses, string volume, string? token)
    {
        Addresses = addresses;
        Volume = volume;
        Token = token;
    }

    /// <summary>Every metaserver member as host:port, in the order given.</summary>
    public IReadOnlyList<string> Addresses { get; }

    /// <summary>The volume name; empty when the URL names none (allowed only where the caller says so).</summary>
    public string Volume { get; }

    /// <summary>The bearer token from the URL's user info, if any.</summary>
    public string? Token { get; }

    /// <summary>The members as one string, for messages.</summary>
    public string Hosts => string.Join(",", Addresses);

    /// <summary>The URL without its token: safe to print, and what a mount shows as its source.</summary>
    public override string ToString() => $"{Scheme}{Hosts}/{Volume}";

    /// <summary>The URL for printing: a token, if present, shows as ***.</summary>
    public string Redacted => Token is null ? ToString() : $"{Scheme}:***@{Hosts}/{Volume}";

    public MetaUrl WithToken(string? token) => new(Addresses, Volume, token);

    public static bool IsValidVolumeName(string name) => VolumeName().IsMatch(name);

    /// <summary>Parses a META-URL; throws <see cref="CliException"/> (one line, never echoing a token) when it is not one.</summary>
    public static MetaUrl Parse(string text, bool volumeRequired = true)
    {
        var error = TryParse(text, volumeRequired, out var url);
        return error is null ? url! : throw new CliException(error);
    }

    /// <summary>Null and the URL, or why the text is not a META-URL.</summary>
    public static string? TryParse(string? text, bool volumeRequired, out MetaUrl? url)
    {
        url = null;
        if (string.IsNullOrWhiteSpace(text))
        {
            return $"META-URL is empty: {ExpectedForm}";
        }
        if (!text.StartsWith(Scheme, StringComparison.OrdinalIgnoreCase))
        {
            return $"META-URL '{Shown(text)}' does not start with {Scheme}: {ExpectedForm}";
        }
        var rest = text[Scheme.Length..];
        string? token = null;
        var at = rest.LastIndexOf('@');
        if (at >= 0)
        {
            var userInfo = rest[..at];
            rest = rest[(at + 1)..];
            var colon = userInfo.IndexOf(':');
            var raw = colon >= 0 ? userInfo[(colon + 1)..] : userInfo;
            token = Uri.UnescapeDataString(raw);
            if (token.Length == 0)
            {
                return $"META-URL '{Shown(text)}' has an empty token: {ExpectedForm}";
            }
        }
        var slash = rest.IndexOf('/');
        var hostPart = slash >= 0 ? rest[..slash] : rest;
        var volume = slash >= 0 ? rest[(slash + 1)..].TrimEnd('/') : "";
        if (hostPart.Length == 0)
        {
            return $"META-URL '{Shown(text)}' names no metaserver: {ExpectedForm}";
        }
        var addresses = new List<string>();
        foreach (var a in hostPart.Split(','))
        {
            var e = CheckAddress(a);
            if (e is not null)
            {
                return $"META-URL '{Shown(text)}': {e}: {ExpectedForm}";
            }
            addresses.Add(a);
        }
        if (volume.Length == 0)
        {
            if (volumeRequired)
            {
                return $"META-URL '{Shown(text)}' names no volume: {ExpectedForm}";
            }
        }
        else if (!IsValidVolumeName(volume))
        {
            return $"META-URL '{Shown(text)}' has an invalid volume name '{volume}': use {VolumeNameRule}";
        }
        url = new MetaUrl(addresses, volume, token);
        return null;
    }

    private static string? CheckAddress(string a)
    {
        string host;
        string port;
        if (a.StartsWith('['))
        {
            var close = a.IndexOf("]:", StringComparison.Ordinal);
            if (close < 0)
            {
                return $"address '{a}' needs a port";
            }
            host = a[1..close];
            port = a[(close + 2)..];
        }
        else
        {
            var colon = a.LastIndexOf(':');
            if (colon < 0)
            {
                return $"address '{a}' needs a port";
            }
            host = a[..colon];
            port = a[(colon + 1)..];
        }
        if (host.Length == 0 || host.Contains(':', StringComparison.Ordinal) && !a.StartsWith('['))
        {
            return $"address '{a}' has no valid host";
        }
        if (!HostName().IsMatch(host) && !a.StartsWith('['))
        {
            return $"address '{a}' has no valid host";
        }
        if (!int.TryParse(port, NumberStyles.None, CultureInfo.InvariantCulture, out var p) || p is < 1 or > 65535)
        {
            return $"address '{a}' has no valid port (1-65535)";
        }
        return null;
    }

    // Never print a token, even from a URL that failed to parse.
    private static string Shown(string text)
    {
        if (!text.StartsWith(Scheme, StringComparison.OrdinalIgnoreCase))
        {
            return text.Contains('@', StringComparison.Ordinal) ? "***@" + text[(text.LastIndexOf('@') + 1)..] : text;
        }
        var rest = text[Scheme.Length..];
        var at = rest.LastIndexOf('@');
        return at < 0 ? text : $"{Scheme}:***@{rest[(at + 1)..]}";
    }

    [GeneratedRegex("^[a-z0-9][a-z0-9-]{1,62}$")]
    private static partial Regex VolumeName();

    [GeneratedRegex("^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$")]
    private static partial Regex HostName();
}
