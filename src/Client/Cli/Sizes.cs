// Human sizes both ways: "64K", "4M", "1G" (binary units) to bytes, and bytes to "4 MiB".
using System.Globalization;

namespace MirrorFS.Client.Cli;

public static class Sizes
{
    /// <summary>Parses a byte count with an optional K, M, G or T suffix (powers of 1024; "KiB", "KB" and "k"
    /// are accepted too). Throws <see cref="CliException"/> naming the expected form.</summary>
    public static long Parse(string text, string what)
    {
        if (!TryParse(text, out var bytes))
        {
            throw new CliException($"{what} '{text}' is not a size: use a number with an optional K, M, G or T suffix (e.g. 4M)");
        }
        return bytes;
    }

    public static bool TryParse(string? text, out long bytes)
    {
        bytes = 0;
        if (string.IsNullOrWhiteSpace(text))
        {
            return false;
        }
        var s = text.Trim();
        var end = 0;
        while (end < s.Length && char.IsAsciiDigit(s[end]))
        {
            end++;
        }
        if (end == 0 || !long.TryParse(s.AsSpan(0, end), NumberStyles.None, CultureInfo.InvariantCulture, out var n))
        {
            return false;
        }
        var shift = s[end..].ToUpperInvariant() switch
        {
            "" or "B" => 0,
            "K" or "KB" or "KIB" => 10,
            "M" or "MB" or "MIB" => 20,
            "G" or "GB" or "GIB" => 30,
            "T" or "TB" or "TIB" => 40,
            _ => -1,
        };
        if (shift < 0 || n > (long.MaxValue >> shift))
        {
            return false;
        }
        bytes = n << shift;
        return true;
    }

    /// <summary>"4 MiB", "64 KiB", "1.5 GiB", "100 B".</summary>
    public static string Format(long bytes)
    {
        string[] units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
        double v = bytes;
        var u = 0;
        while (Math.Abs(v) >= 1024 && u < units.Length - 1)
        {
            v /= 1024;
            u++;
        }
        return u == 0 || v == Math.Floor(v)
            ? string.Create(CultureInfo.InvariantCulture, $"{v:0} {units[u]}")
            : string.Create(CultureInfo.InvariantCulture, $"{v:0.##} {units[u]}");
    }
}
