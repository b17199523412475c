// Human durations for options such as --backup-meta: "0", "90s", "30m", "1h", "2h30m", "1d".
using System.Globalization;

namespace MirrorFS.Client.Cli;

public static class Durations
{
    /// <summary>A duration of at most 365 days made of number+unit parts (s, m, h, d); "0" is zero.</summary>
    public static TimeSpan Parse(string text, string what)
    {
        if (!TryParse(text, out var d))
        {
            throw new CliException($"{what} '{text}' is not a duration: use e.g. 90s, 30m, 1h, 2h30m, 1d, or 0 for off");
        }
        return d;
    }

    public static bool TryParse(string? text, out TimeSpan duration)
    {
        duration = TimeSpan.Zero;
        var s = text?.Trim() ?? "";
        if (s == "0")
        {
            return true;
        }
        var i = 0;
        double seconds = 0;
        while (i < s.Length)
        {
            var start = i;
            while (i < s.Length && char.IsAsciiDigit(s[i]))
            {
                i++;
            }
            if (i == start || i == s.Length || i - start > 9)
            {
                return false;
            }
            var n = long.Parse(s.AsSpan(start, i - start), NumberStyles.None, CultureInfo.InvariantCulture);
            seconds += char.ToLowerInvariant(s[i]) switch
            {
                's' => n,
                'm' => n * 60.0,
                'h' => n * 3600.0,
                'd' => n * 86400.0,
                _ => double.NaN,
            };
            i++;
        }
        if (s.Length == 0 || double.IsNaN(seconds) || seconds > 365 * 86400.0)
        {
            return false;
        }
        duration = TimeSpan.FromSeconds(seconds);
        return true;
    }
}
