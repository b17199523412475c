// The --mirror-of argument: mirrorfs://[:TOKEN@]host:port[,host:port...]/VOLUME of the primary cluster.
using System.Globalization;

namespace MirrorFS.MetaServer.Mirror;

public sealed record PrimaryUrl(IReadOnlyList<string> Addresses, string Volume, string? Token)
{
    public const string Scheme = "mirrorfs://";

    /// <summary>The URL without its token: what the state records and clients are told.</summary>
    public override string ToString() => $"{Scheme}{string.Join(",", Addresses)}/{Volume}";

    /// <summary>Parses a primary META-URL; throws <see cref="ArgumentException"/> with a one-line reason (never the token).</summary>
    public static PrimaryUrl Parse(string text)
    {
        const string form = "expected mirrorfs://HOST:PORT[,HOST:PORT...]/VOLUME";
        if (string.IsNullOrWhiteSpace(text) || !text.StartsWith(Scheme, StringComparison.OrdinalIgnoreCase))
        {
            throw new ArgumentException($"primary URL does not start with {Scheme}: {form}");
        }
        var rest = text[Scheme.Length..];
        string? token = null;
        var at = rest.LastIndexOf('@');
        if (at >= 0)
        {
            var user = rest[..at];
            var colon = user.IndexOf(':');
            token = Uri.UnescapeDataString(colon >= 0 ? user[(colon + 1)..] : user);
            rest = rest[(at + 1)..];
        }
        var slash = rest.IndexOf('/');
        if (slash <= 0)
        {
            throw new ArgumentException($"primary URL {Scheme}{rest} names no volume or no host: {form}");
        }
        var volume = rest[(slash + 1)..].TrimEnd('/');
        if (volume.Length == 0 || volume.Contains('/', StringComparison.Ordinal))
        {
            throw new ArgumentException($"primary URL {Scheme}{rest} has no valid volume name: {form}");
        }
        var addresses = rest[..slash].Split(',');
        foreach (var a in addresses)
        {
            var colon = a.LastIndexOf(':');
            if (colon <= 0 || !int.TryParse(a[(colon + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out var port) || port is < 1 or > 65535)
            {
                throw new ArgumentException($"primary URL address '{a}' needs HOST:PORT: {form}");
            }
        }
        return new PrimaryUrl(addresses, volume, string.IsNullOrEmpty(token) ? null : token);
    }
}
