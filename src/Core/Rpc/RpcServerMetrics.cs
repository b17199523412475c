// Per-method latency and outcome counts of the calls an RpcRouter serves.
using MirrorFS.Core.Metrics;

namespace MirrorFS.Core.Rpc;

internal sealed class RpcServerMetrics(MetricsRegistry registry)
{
    private readonly HistogramFamily _latency = registry.HistogramFamily("mirrorfs_rpc_server_handling_seconds",
        "Seconds from a call's arrival to its last byte, by service and method.", Buckets.LatencySeconds, "service", "method");

    private readonly CounterFamily _handled = registry.CounterFamily("mirrorfs_rpc_server_handled_total",
        "Calls answered, by service, method and gRPC status code.", "service", "method", "code");

    /// <summary>The series of one method path ("/pkg.Service/Method"), made when the method is mapped.</summary>
    public MethodSeries For(string path)
    {
        var slash = path.LastIndexOf('/');
        var service = path[1..slash];
        var method = path[(slash + 1)..];
        return new MethodSeries(_latency.WithLabels(service, method), _handled, service, method);
    }

    internal sealed class MethodSeries(Histogram latency, CounterFamily handled, string service, string method)
    {
        private readonly Counter?[] _byCode = new Counter?[17];

        public void Record(StatusCode status, long startTimestamp)
        {
            latency.ObserveSince(startTimestamp);
            var i = (int)status;
            if ((uint)i >= (uint)_byCode.Length)
            {
                i = (int)StatusCode.Unknown;
            }
            // A benign race: two first calls may both resolve the same series; the family returns one instance.
            var c = Volatile.Read(ref _byCode[i]) ?? (_byCode[i] = handled.WithLabels(service, method, ((StatusCode)i).ToString()));
            c.Inc();
        }
    }
}
