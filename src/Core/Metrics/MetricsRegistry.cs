// A small Prometheus metrics registry: counters, gauges and histograms with labels, exported as text format 0.0.4.
using System.Text;

namespace MirrorFS.Core.Metrics;

/// <summary>
/// Holds metric families by name and writes them in the Prometheus text exposition format (version 0.0.4).
/// Registering a name again with the same type and labels returns the existing family, so independent components
/// can share one registry; a clash in type, labels or buckets throws. Updates are lock-free; only registration,
/// the first use of a label combination and collection take locks.
/// </summary>
public sealed class MetricsRegistry
{
    /// <summary>The Content-Type of <see cref="Collect"/>'s output.</summary>
    public const string ContentType = "text/plain; version=0.0.4; charset=utf-8";

    /// <summary>Most families one registry holds; a runaway registration loop fails instead of growing memory.</summary>
    public const int FamiliesMax = 1024;

    private readonly Lock _lock = new();
    private readonly SortedDictionary<string, MetricFamily> _families = new(StringComparer.Ordinal);

    /// <summary>A counter family; <paramref name="labelNames"/> empty gives one series, reached with <c>WithLabels()</c>.</summary>
    public CounterFamily CounterFamily(string name, string help, params string[] labelNames) =>
        Register(name, MetricType.Counter, () => new CounterFamily(name, help, labelNames), labelNames, null);

    public GaugeFamily GaugeFamily(string name, string help, params string[] labelNames) =>
        Register(name, MetricType.Gauge, () => new GaugeFamily(name, help, labelNames), labelNames, null);

    /// <summary>A histogram family with fixed upper bounds (ascending, finite; +Inf is implied).</summary>
    public HistogramFamily HistogramFamily(string name, string help, double[] buckets, params string[] labelNames) =>
        Register(name, MetricType.Histogram, () => new HistogramFamily(name, help, buckets, labelNames), labelNames, buckets);

    /// <summary>An unlabeled counter.</summary>
    public Counter Counter(string name, string help) => CounterFamily(name, help).WithLabels();

    /// <summary>An unlabeled gauge.</summary>
    public Gauge Gauge(string name, string help) => GaugeFamily(name, help).WithLabels();

    /// <summary>An unlabeled histogram.</summary>
    public Histogram Histogram(string name, string help, double[] buckets) => HistogramFamily(name, help, buckets).WithLabels();

    /// <summary>A gauge whose value is read by <paramref name="read"/> at each collection (sizes, indexes, counts
    /// that live elsewhere). A read that throws is skipped for that collection. Registering the name again
    /// replaces the callback (the newest owner of the value wins).</summary>
    public void GaugeCallback(string name, string help, Func<double> read)
    {
        ArgumentNullException.ThrowIfNull(read);
        Register(name, MetricType.Gauge, () => new CallbackFamily(name, help, MetricType.Gauge, read), [], null).Read = read;
    }

    /// <summary>Like <see cref="GaugeCallback"/> for a monotonic value kept elsewhere (a counter).</summary>
    public void CounterCallback(string name, string help, Func<double> read)
    {
        ArgumentNullException.ThrowIfNull(read);
        Register(name, MetricType.Counter, () => new CallbackFamily(name, help, MetricType.Counter, read), [], null).Read = read;
    }

    /// <summary>Every family in the text exposition format, sorted by name.</summary>
    public string Collect()
    {
        var sb = new StringBuilder(4096);
        using (var w = new StringWriter(sb, System.Globalization.CultureInfo.InvariantCulture))
        {
            WriteTo(w);
        }
        return sb.ToString();
    }

    public void WriteTo(TextWriter writer)
    {
        MetricFamily[] families;
        lock (_lock)
        {
            families = [.. _families.Values];
        }
        foreach (var f in families)
        {
            f.Write(writer);
        }
    }

    private T Register<T>(string name, MetricType type, Func<T> create, string[] labelNames, double[]? buckets)
        where T : MetricFamily
    {
        PrometheusText.CheckMetricName(name);
        lock (_lock)
        {
            if (_families.TryGetValue(name, out var existing))
            {
                if (existing is T same && same.Type == type && same.LabelNames.SequenceEqual(labelNames)
                    && (buckets is null || (same is HistogramFamily h && h.Buckets.SequenceEqual(buckets))))
                {
                    return same;
                }
                throw new InvalidOperationException(
                    $"metric {name} is already registered as a {existing.Type} with labels [{string.Join(",", existing.LabelNames)}]; use another name");
            }
            if (_families.Count >= FamiliesMax)
            {
                throw new InvalidOperationException($"metrics registry holds {FamiliesMax} families already; cannot add {name}");
            }
            var family = create();
            _families[name] = family;
            return family;
        }
    }
}

public enum MetricType
{
    Counter,
    Gauge,
    Histogram,
}

/// <summary>One named metric with its help text and label names; children are its labeled series.</summary>
public abstract class MetricFamily
{
    private protected MetricFamily(string name, string help, MetricType type, string[] labelNames)
    {
        ArgumentNullException.ThrowIfNull(help);
        ArgumentNullException.ThrowIfNull(labelNames);
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var l in labelNames)
        {
            PrometheusText.CheckLabelName(l);
            if (type == MetricType.Histogram && l == "le")
            {
                throw new ArgumentException($"metric {name}: label 'le' is reserved for histogram buckets", nameof(labelNames));
            }
            if (!seen.Add(l))
            {
                throw new ArgumentException($"metric {name}: label {l} is given twice", nameof(labelNames));
            }
        }
        Name = name;
        Help = help;
        Type = type;
        LabelNames = [.. labelNames];
    }

    public string Name { get; }

    public string Help { get; }

    public MetricType Type { get; }

    public IReadOnlyList<string> LabelNames { get; }

    internal abstract void Write(TextWriter w);

    private protected void WriteHeader(TextWriter w)
    {
        w.Write("# HELP ");
        w.Write(Name);
        w.Write(' ');
        PrometheusText.WriteHelp(w, Help);
        w.Write('\n');
        w.Write("# TYPE ");
        w.Write(Name);
        w.Write(' ');
        w.Write(Type switch
        {
            MetricType.Counter => "counter",
            MetricType.Gauge => "gauge",
            _ => "histogram",
        });
        w.Write('\n');
    }
}

/// <summary>A family whose series are created on first use of a label combination and kept for good.</summary>
public abstract class MetricFamily<TChild> : MetricFamily
    where TChild : class
{
    /// <summary>Most series per family. Label values past it share one series labeled <see cref="OverflowLabel"/>,
    /// so a caller that puts unbounded values in labels cannot grow memory without bound.</summary>
    public const int SeriesMax = 2000;

    public const string OverflowLabel = "_overflow_";

    private readonly Lock _lock = new();
    private volatile Dictionary<LabelSet, TChild> _children = new();

    private protected MetricFamily(string name, string help, MetricType type, string[] labelNames)
        : base(name, help, type, labelNames)
    {
    }

    /// <summary>The series for these label values (one per label name, in order). Callers on hot paths keep the result.</summary>
    public TChild WithLabels(params string[] values)
    {
        ArgumentNullException.ThrowIfNull(values);
        if (values.Length != LabelNames.Count)
        {
            throw new ArgumentException(
                $"metric {Name} takes {LabelNames.Count} label values ({string.Join(",", LabelNames)}), not {values.Length}", nameof(values));
        }
        var key = new LabelSet(values);
        // Copy-on-write: lookups of existing series take no lock.
        if (_children.TryGetValue(key, out var child))
        {
            return child;
        }
        lock (_lock)
        {
            if (_children.TryGetValue(key, out child))
            {
                return child;
            }
            if (_children.Count >= SeriesMax)
            {
                key = new LabelSet([.. Enumerable.Repeat(OverflowLabel, values.Length)]);
                if (_children.TryGetValue(key, out child))
                {
                    return child;
                }
            }
            child = Create();
            _children = new Dictionary<LabelSet, TChild>(_children) { [key] = child };
            return child;
        }
    }

    private protected abstract TChild Create();

    private protected abstract void WriteSeries(TextWriter w, string labels, TChild child);

    internal override void Write(TextWriter w)
    {
        WriteHeader(w);
        foreach (var (key, child) in _children.OrderBy(kv => kv.Key, LabelSet.Comparer))
        {
            WriteSeries(w, PrometheusText.FormatLabels(LabelNames, key.Values), child);
        }
    }

    /// <summary>Label values compared by content.</summary>
    private sealed class LabelSet(string[] values) : IEquatable<LabelSet>
    {
        public static readonly IComparer<LabelSet> Comparer = Comparer<LabelSet>.Create(static (a, b) =>
        {
            for (var i = 0; i < a.Values.Length; i++)
            {
                var c = string.CompareOrdinal(a.Values[i], b.Values[i]);
                if (c != 0)
                {
                    return c;
                }
            }
            return 0;
        });

        private readonly int _hash = Hash(values);

        public string[] Values { get; } = values;

        private static int Hash(string[] values)
        {
            var h = new HashCode();
            foreach (var v in values)
            {
                ArgumentNullException.ThrowIfNull(v, nameof(values));
                h.Add(v, StringComparer.Ordinal);
            }
            return h.ToHashCode();
        }

        public bool Equals(LabelSet? other) =>
            other is not null && _hash == other._hash && Values.AsSpan().SequenceEqual(other.Values);

        public override bool Equals(object? obj) => Equals(obj as LabelSet);

        public override int GetHashCode() => _hash;
    }
}

public sealed class CounterFamily : MetricFamily<Counter>
{
    internal CounterFamily(string name, string help, string[] labelNames)
        : base(name, help, MetricType.Counter, labelNames)
    {
    }

    private protected override Counter Create() => new();

    private protected override void WriteSeries(TextWriter w, string labels, Counter child) =>
        PrometheusText.WriteSample(w, Name, labels, child.Value);
}

public sealed class GaugeFamily : MetricFamily<Gauge>
{
    internal GaugeFamily(string name, string help, string[] labelNames)
        : base(name, help, MetricType.Gauge, labelNames)
    {
    }

    private protected override Gauge Create() => new();

    private protected override void WriteSeries(TextWriter w, string labels, Gauge child) =>
        PrometheusText.WriteSample(w, Name, labels, child.Value);
}

public sealed class HistogramFamily : MetricFamily<Histogram>
{
    private readonly double[] _buckets;
    private readonly string[] _le;

    internal HistogramFamily(string name, string help, double[] buckets, string[] labelNames)
        : base(name, help, MetricType.Histogram, labelNames)
    {
        ArgumentNullException.ThrowIfNull(buckets);
        if (buckets.Length == 0 || buckets.Length > Histogram.BucketsMax)
        {
            throw new ArgumentException($"histogram {name} needs 1 to {Histogram.BucketsMax} buckets, not {buckets.Length}", nameof(buckets));
        }
        for (var i = 0; i < buckets.Length; i++)
        {
            if (!double.IsFinite(buckets[i]) || (i > 0 && buckets[i] <= buckets[i - 1]))
            {
                throw new ArgumentException($"histogram {name}: bucket bounds must be finite and strictly ascending", nameof(buckets));
            }
        }
        _buckets = [.. buckets];
        _le = [.. buckets.Select(PrometheusText.FormatValue), "+Inf"];
    }

    public IReadOnlyList<double> Buckets => _buckets;

    private protected override Histogram Create() => new(_buckets);

    private protected override void WriteSeries(TextWriter w, string labels, Histogram child)
    {
        var counts = child.BucketCounts();
        long cumulative = 0;
        var bucketName = Name + "_bucket";
        for (var i = 0; i < counts.Length; i++)
        {
            cumulative += counts[i];
            var le = "le=\"" + _le[i] + "\"";
            PrometheusText.WriteSample(w, bucketName, labels.Length == 0 ? "{" + le + "}" : labels[..^1] + "," + le + "}", cumulative);
        }
        PrometheusText.WriteSample(w, Name + "_sum", labels, child.Sum);
        // The count is the +Inf bucket read above, so the two always agree within one exposition.
        PrometheusText.WriteSample(w, Name + "_count", labels, cumulative);
    }
}

/// <summary>A family of one series whose value comes from a callback at collection time.</summary>
internal sealed class CallbackFamily(string name, string help, MetricType type, Func<double> read)
    : MetricFamily(name, help, type, [])
{
    private volatile Func<double> _read = read;

    public Func<double> Read
    {
        get => _read;
        set => _read = value;
    }

    internal override void Write(TextWriter w)
    {
        double v;
        try
        {
            v = _read();
        }
        catch (Exception)
        {
            // Whatever the callback reads may be gone (shutdown); an absent sample beats a failed scrape.
            return;
        }
        WriteHeader(w);
        PrometheusText.WriteSample(w, Name, "", v);
    }
}

/// <summary>A monotonically increasing count (integral: events, bytes).</summary>
public sealed class Counter
{
    private long _value;

    public long Value => Interlocked.Read(ref _value);

    public void Inc() => Interlocked.Increment(ref _value);

    /// <summary>Adds <paramref name="n"/>; a negative amount is ignored (counters never go down).</summary>
    public void Inc(long n)
    {
        if (n > 0)
        {
            Interlocked.Add(ref _value, n);
        }
    }
}

/// <summary>A value that goes up and down.</summary>
public sealed class Gauge
{
    private long _bits;

    public double Value => BitConverter.Int64BitsToDouble(Interlocked.Read(ref _bits));

    public void Set(double v) => Interlocked.Exchange(ref _bits, BitConverter.DoubleToInt64Bits(v));

    public void Inc(double d = 1) => AtomicDouble.Add(ref _bits, d);

    public void Dec(double d = 1) => AtomicDouble.Add(ref _bits, -d);
}

/// <summary>Counts of observations per fixed bucket, plus their sum.</summary>
public sealed class Histogram
{
    /// <summary>Most bucket bounds one histogram takes.</summary>
    public const int BucketsMax = 64;

    private readonly double[] _bounds;
    private readonly long[] _counts; // per bucket, not cumulative; the last is +Inf
    private long _sumBits;

    internal Histogram(double[] bounds)
    {
        _bounds = bounds;
        _counts = new long[bounds.Length + 1];
    }

    public double Sum => BitConverter.Int64BitsToDouble(Interlocked.Read(ref _sumBits));

    public long Count
    {
        get
        {
            long n = 0;
            for (var i = 0; i < _counts.Length; i++)
            {
                n += Interlocked.Read(ref _counts[i]);
            }
            return n;
        }
    }

    /// <summary>Records one value; NaN is ignored.</summary>
    public void Observe(double v)
    {
        if (double.IsNaN(v))
        {
            return;
        }
        var i = 0;
        var bounds = _bounds;
        while (i < bounds.Length && v > bounds[i])
        {
            i++;
        }
        Interlocked.Increment(ref _counts[i]);
        AtomicDouble.Add(ref _sumBits, v);
    }

    /// <summary>Records the seconds elapsed since <paramref name="startTimestamp"/> (a <see cref="System.Diagnostics.Stopwatch"/> timestamp).</summary>
    public void ObserveSince(long startTimestamp) =>
        Observe(System.Diagnostics.Stopwatch.GetElapsedTime(startTimestamp).TotalSeconds);

    internal long[] BucketCounts()
    {
        var r = new long[_counts.Length];
        for (var i = 0; i < r.Length; i++)
        {
            r[i] = Interlocked.Read(ref _counts[i]);
        }
        return r;
    }
}

/// <summary>Bucket layouts used across MirrorFS.</summary>
public static class Buckets
{
    /// <summary>100 µs to 10 s: FUSE operations, metadata calls and object requests all land inside.</summary>
    public static readonly double[] LatencySeconds =
        [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

    /// <summary><paramref name="count"/> bounds from <paramref name="start"/>, each <paramref name="factor"/> times the last.</summary>
    public static double[] Exponential(double start, double factor, int count)
    {
        if (start <= 0 || factor <= 1 || count < 1 || count > Histogram.BucketsMax)
        {
            throw new ArgumentException($"exponential buckets need start > 0, factor > 1 and 1..{Histogram.BucketsMax} buckets");
        }
        var r = new double[count];
        var v = start;
        for (var i = 0; i < count; i++)
        {
            r[i] = v;
            v *= factor;
        }
        return r;
    }
}

internal static class AtomicDouble
{
    public static void Add(ref long bits, double d)
    {
        var spin = new SpinWait();
        while (true)
        {
            var old = Interlocked.Read(ref bits);
            var next = BitConverter.DoubleToInt64Bits(BitConverter.Int64BitsToDouble(old) + d);
            if (Interlocked.CompareExchange(ref bits, next, old) == old)
            {
                return;
            }
            spin.SpinOnce();
        }
    }
}
