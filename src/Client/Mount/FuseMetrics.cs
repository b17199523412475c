// Watches every answered FUSE request: latency by operation, bytes read and written, and the access log line.
using System.Collections.Concurrent;
using System.Globalization;
using MirrorFS.Client.Fuse;
using MirrorFS.Core.Metrics;

namespace MirrorFS.Client.Mount;

public sealed class FuseMetrics : IFuseRequestObserver
{
    private readonly HistogramFamily _latency;
    private readonly CounterFamily _errors;
    private readonly Counter _readBytes;
    private readonly Counter _writtenBytes;
    private readonly AccessLog _log;
    private readonly ConcurrentDictionary<string, (Histogram Latency, Counter Errors)> _ops = new(StringComparer.Ordinal);

    public FuseMetrics(MetricsRegistry registry, AccessLog log)
    {
        _log = log;
        _latency = registry.HistogramFamily("mirrorfs_fuse_ops_duration_seconds",
            "FUSE operation latency in seconds, from the kernel's request to our reply, by operation.",
            Buckets.LatencySeconds, "op");
        _errors = registry.CounterFamily("mirrorfs_fuse_op_errors_total",
            "FUSE operations answered with an error, by operation.", "op");
        _readBytes = registry.Counter("mirrorfs_fuse_read_bytes_total", "Bytes returned to read requests.");
        _writtenBytes = registry.Counter("mirrorfs_fuse_written_bytes_total", "Bytes accepted from write requests.");
        registry.GaugeCallback("mirrorfs_accesslog_readers", "Readers of .accesslog now.", () => log.Readers);
        registry.CounterCallback("mirrorfs_accesslog_dropped_lines_total",
            "Access log lines dropped because a reader did not keep up.", () => log.Dropped);
    }

    public void Replied(FuseRequest request)
    {
        var op = request.Operation;
        var series = _ops.GetOrAdd(op, static (o, self) => (self._latency.WithLabels(o), self._errors.WithLabels(o)), this);
        var elapsed = request.Elapsed;
        series.Latency.Observe(elapsed.TotalSeconds);
        if (request.ReplyKind == ReplyKind.Error)
        {
            series.Errors.Inc();
        }
        else if (op == "read")
        {
            _readBytes.Inc(request.ReplyValue);
        }
        else if (op == "write")
        {
            _writtenBytes.Inc(request.ReplyValue);
        }
        // Reads of .accesslog itself are left out: each would log a line that wakes the reader for the next one.
        if (_log.Active && request.Args.Ino != InternalFiles.AccessLogInode)
        {
            _log.Write(Line(request, elapsed));
        }
    }

    /// <summary>"2025.01.31 12:00:00.123456 [uid:0,gid:0,pid:42] lookup (1,foo): OK (ino 2) &lt;0.000120&gt;".</summary>
    internal static string Line(FuseRequest r, TimeSpan elapsed) =>
        string.Create(CultureInfo.InvariantCulture,
            $"{DateTime.Now:yyyy.MM.dd HH:mm:ss.ffffff} [uid:{r.Uid},gid:{r.Gid},pid:{r.Pid}] {r.Operation} {r.DescribeArgs()}: {r.DescribeResult()} <{elapsed.TotalSeconds:F6}>");
}
