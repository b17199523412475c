// Names, escaping and number formatting of the Prometheus text exposition format 0.0.4.
using System.Globalization;
using System.Text;

namespace MirrorFS.Core.Metrics;

public static class PrometheusText
{
    /// <summary>Metric names: [a-zA-Z_:][a-zA-Z0-9_:]*.</summary>
    public static bool IsValidMetricName(string name) =>
        !string.IsNullOrEmpty(name) && IsNameStart(name[0], colon: true) && name.All(c => IsNameChar(c, colon: true));

    /// <summary>Label names: [a-zA-Z_][a-zA-Z0-9_]*, not starting with "__" (reserved for Prometheus itself).</summary>
    public static bool IsValidLabelName(string name) =>
        !string.IsNullOrEmpty(name) && IsNameStart(name[0], colon: false) && name.All(c => IsNameChar(c, colon: false))
        && !name.StartsWith("__", StringComparison.Ordinal);

    internal static void CheckMetricName(string name)
    {
        if (!IsValidMetricName(name))
        {
            throw new ArgumentException($"'{name}' is not a valid metric name: use letters, digits, '_' and ':', not starting with a digit", nameof(name));
        }
    }

    internal static void CheckLabelName(string name)
    {
        if (!IsValidLabelName(name))
        {
            throw new ArgumentException($"'{name}' is not a valid label name: use letters, digits and '_', not starting with a digit or '__'", nameof(name));
        }
    }

    private static bool IsNameStart(char c, bool colon) => c is (>= 'a' and <= 'z') or (>= 'A' and <= 'Z') or '_' || (colon && c == ':');

    private static bool IsNameChar(char c, bool colon) => IsNameStart(c, colon) || c is >= '0' and <= '9';

    /// <summary>A label value with backslash, double quote and newline escaped.</summary>
    public static string EscapeLabelValue(string value)
    {
        if (value.AsSpan().IndexOfAny("\\\"\n") < 0)
        {
            return value;
        }
        var sb = new StringBuilder(value.Length + 8);
        foreach (var c in value)
        {
            switch (c)
            {
                case '\\': sb.Append("\\\\"); break;
                case '"': sb.Append("\\\""); break;
                case '\n': sb.Append("\\n"); break;
                default: sb.Append(c); break;
            }
        }
        return sb.ToString();
    }

    /// <summary>Help text with backslash and newline escaped (quotes stay as they are in HELP lines).</summary>
    internal static void WriteHelp(TextWriter w, string help)
    {
        foreach (var c in help)
        {
            switch (c)
            {
                case '\\': w.Write("\\\\"); break;
                case '\n': w.Write("\\n"); break;
                default: w.Write(c); break;
            }
        }
    }

    /// <summary>"{a="x",b="y"}" or "" when there are no labels.</summary>
    internal static string FormatLabels(IReadOnlyList<string> names, string[] values)
    {
        if (names.Count == 0)
        {
            return "";
        }
        var sb = new StringBuilder(32);
        sb.Append('{');
        for (var i = 0; i < names.Count; i++)
        {
            if (i > 0)
            {
                sb.Append(',');
            }
            sb.Append(names[i]).Append("=\"").Append(EscapeLabelValue(values[i])).Append('"');
        }
        sb.Append('}');
        return sb.ToString();
    }

    /// <summary>A sample value as Prometheus reads it: shortest round-trip decimal, +Inf, -Inf or NaN.</summary>
    public static string FormatValue(double v) =>
        double.IsPositiveInfinity(v) ? "+Inf"
        : double.IsNegativeInfinity(v) ? "-Inf"
        : double.IsNaN(v) ? "NaN"
        : v.ToString("R", CultureInfo.InvariantCulture);

    internal static void WriteSample(TextWriter w, string name, string labels, double value)
    {
        w.Write(name);
        w.Write(labels);
        w.Write(' ');
        w.Write(FormatValue(value));
        w.Write('\n');
    }

    internal static void WriteSample(TextWriter w, string name, string labels, long value)
    {
        w.Write(name);
        w.Write(labels);
        w.Write(' ');
        w.Write(value.ToString(CultureInfo.InvariantCulture));
        w.Write('\n');
    }
}
