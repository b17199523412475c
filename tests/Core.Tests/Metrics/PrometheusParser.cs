// A strict reader of the Prometheus text format 0.0.4, for tests: it fails on anything a scraper would reject.
using System.Globalization;
using System.Text;

namespace MirrorFS.Core.Tests.Metrics;

public sealed record Sample(string Name, IReadOnlyDictionary<string, string> Labels, double Value)
{
    public string? Label(string name) => Labels.TryGetValue(name, out var v) ? v : null;
}

public sealed record Family(string Name, string Help, string Type, List<Sample> Samples);

public static class PrometheusParser
{
    /// <summary>Parses a whole exposition; throws FormatException naming the line on any violation.</summary>
    public static Dictionary<string, Family> Parse(string text)
    {
        var families = new Dictionary<string, Family>(StringComparer.Ordinal);
        Family? current = null;
        string? pendingHelpName = null;
        string? pendingHelp = null;
        var lineNo = 0;
        if (text.Length > 0 && !text.EndsWith('\n'))
        {
            throw new FormatException("exposition does not end with a newline");
        }
        foreach (var line in text.Split('\n'))
        {
            lineNo++;
            if (line.Length == 0)
            {
                continue;
            }
            if (line.StartsWith("# HELP ", StringComparison.Ordinal))
            {
                var rest = line["# HELP ".Length..];
                var sp = rest.IndexOf(' ', StringComparison.Ordinal);
                pendingHelpName = sp < 0 ? rest : rest[..sp];
                pendingHelp = sp < 0 ? "" : UnescapeHelp(rest[(sp + 1)..], lineNo);
                CheckName(pendingHelpName, lineNo);
                continue;
            }
            if (line.StartsWith("# TYPE ", StringComparison.Ordinal))
            {
                var parts = line["# TYPE ".Length..].Split(' ');
                if (parts.Length != 2 || parts[1] is not ("counter" or "gauge" or "histogram" or "summary" or "untyped"))
                {
                    throw new FormatException($"line {lineNo}: bad TYPE line '{line}'");
                }
                CheckName(parts[0], lineNo);
                if (families.ContainsKey(parts[0]))
                {
                    throw new FormatException($"line {lineNo}: second TYPE line for {parts[0]}");
                }
                if (pendingHelpName != parts[0])
                {
                    throw new FormatException($"line {lineNo}: TYPE of {parts[0]} without its HELP line just before");
                }
                current = new Family(parts[0], pendingHelp ?? "", parts[1], []);
                families[parts[0]] = current;
                continue;
            }
            if (line.StartsWith('#'))
            {
                continue;
            }
            var sample = ParseSample(line, lineNo);
            if (current is null || !BelongsTo(sample.Name, current))
            {
                throw new FormatException($"line {lineNo}: sample {sample.Name} is not under its family's TYPE line");
            }
            current.Samples.Add(sample);
        }
        foreach (var f in families.Values.Where(f => f.Type == "histogram"))
        {
            CheckHistogram(f);
        }
        return families;
    }

    private static bool BelongsTo(string sample, Family f) =>
        f.Type == "histogram"
            ? sample == f.Name + "_bucket" || sample == f.Name + "_sum" || sample == f.Name + "_count"
            : sample == f.Name;

    private static void CheckName(string name, int lineNo)
    {
        if (name.Length == 0 || !(char.IsAsciiLetter(name[0]) || name[0] is '_' or ':')
            || !name.All(c => char.IsAsciiLetterOrDigit(c) || c is '_' or ':'))
        {
            throw new FormatException($"line {lineNo}: bad metric name '{name}'");
        }
    }

    private static string UnescapeHelp(string s, int lineNo)
    {
        var sb = new StringBuilder();
        for (var i = 0; i < s.Length; i++)
        {
            if (s[i] != '\\')
            {
                sb.Append(s[i]);
                continue;
            }
            if (++i >= s.Length)
            {
                throw new FormatException($"line {lineNo}: dangling backslash in HELP");
            }
            sb.Append(s[i] switch
            {
                '\\' => '\\',
                'n' => '\n',
                _ => throw new FormatException($"line {lineNo}: bad escape \\{s[i]} in HELP"),
            });
        }
        return sb.ToString();
    }

    private static Sample ParseSample(string line, int lineNo)
    {
        var i = 0;
        while (i < line.Length && line[i] != '{' && line[i] != ' ')
        {
            i++;
        }
        var name = line[..i];
        CheckName(name, lineNo);
        var labels = new Dictionary<string, string>(StringComparer.Ordinal);
        if (i < line.Length && line[i] == '{')
        {
            i++;
            while (line[i] != '}')
            {
                var eq = line.IndexOf('=', i);
                var lname = line[i..eq];
                if (lname.Length == 0 || !lname.All(c => char.IsAsciiLetterOrDigit(c) || c == '_') || char.IsAsciiDigit(lname[0]))
                {
                    throw new FormatException($"line {lineNo}: bad label name '{lname}'");
                }
                i = eq + 1;
                if (line[i] != '"')
                {
                    throw new FormatException($"line {lineNo}: label value not quoted");
                }
                i++;
                var sb = new StringBuilder();
                while (line[i] != '"')
                {
                    if (line[i] == '\\')
                    {
                        i++;
                        sb.Append(line[i] switch
                        {
                            '\\' => '\\',
                            '"' => '"',
                            'n' => '\n',
                            _ => throw new FormatException($"line {lineNo}: bad escape in label value"),
                        });
                    }
                    else
                    {
                        sb.Append(line[i]);
                    }
                    i++;
                }
                i++;
                if (!labels.TryAdd(lname, sb.ToString()))
                {
                    throw new FormatException($"line {lineNo}: label {lname} twice");
                }
                if (line[i] == ',')
                {
                    i++;
                }
                else if (line[i] != '}')
                {
                    throw new FormatException($"line {lineNo}: expected , or }} after a label");
                }
            }
            i++;
        }
        if (i >= line.Length || line[i] != ' ')
        {
            throw new FormatException($"line {lineNo}: no value in '{line}'");
        }
        var valueText = line[(i + 1)..];
        var value = valueText switch
        {
            "+Inf" => double.PositiveInfinity,
            "-Inf" => double.NegativeInfinity,
            "NaN" => double.NaN,
            _ => double.Parse(valueText, NumberStyles.Float, CultureInfo.InvariantCulture),
        };
        return new Sample(name, labels, value);
    }

    private static void CheckHistogram(Family f)
    {
        foreach (var series in f.Samples.GroupBy(s => SeriesKey(s)))
        {
            var buckets = series.Where(s => s.Name == f.Name + "_bucket").ToList();
            var count = series.Single(s => s.Name == f.Name + "_count").Value;
            _ = series.Single(s => s.Name == f.Name + "_sum");
            if (buckets.Count == 0 || buckets[^1].Label("le") != "+Inf")
            {
                throw new FormatException($"histogram {f.Name}{series.Key}: the last bucket is not le=\"+Inf\"");
            }
            var prevLe = double.NegativeInfinity;
            var prevCount = 0.0;
            foreach (var b in buckets)
            {
                var le = b.Label("le") == "+Inf" ? double.PositiveInfinity : double.Parse(b.Label("le")!, CultureInfo.InvariantCulture);
                if (le <= prevLe || b.Value < prevCount)
                {
                    throw new FormatException($"histogram {f.Name}{series.Key}: buckets not ascending or counts not cumulative");
                }
                prevLe = le;
                prevCount = b.Value;
            }
            if (buckets[^1].Value != count)
            {
                throw new FormatException($"histogram {f.Name}{series.Key}: +Inf bucket {buckets[^1].Value} != count {count}");
            }
        }
    }

    private static string SeriesKey(Sample s) =>
        "{" + string.Join(",", s.Labels.Where(kv => kv.Key != "le").OrderBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => $"{kv.Key}={kv.Value}")) + "}";

    /// <summary>The value of the one sample of <paramref name="name"/> whose labels include all of <paramref name="labels"/>.</summary>
    public static double Value(this Dictionary<string, Family> families, string name, params (string Name, string Value)[] labels)
    {
        var matches = families.Values.SelectMany(f => f.Samples)
            .Where(s => s.Name == name && labels.All(l => s.Label(l.Name) == l.Value))
            .ToList();
        return matches.Count == 1
            ? matches[0].Value
            : throw new InvalidOperationException($"{matches.Count} samples of {name} match {string.Join(",", labels)}");
    }

    /// <summary>Sum over every sample of <paramref name="name"/> whose labels include all of <paramref name="labels"/> (0 when none).</summary>
    public static double Sum(this Dictionary<string, Family> families, string name, params (string Name, string Value)[] labels) =>
        families.Values.SelectMany(f => f.Samples)
            .Where(s => s.Name == name && labels.All(l => s.Label(l.Name) == l.Value))
            .Sum(s => s.Value);
}
