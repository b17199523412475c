// Process-wide figures every MirrorFS executable exports: uptime, CPU time, memory, threads, GC.
using System.Diagnostics;

namespace MirrorFS.Core.Metrics;

public static class ProcessMetrics
{
    private static readonly long Started = Stopwatch.GetTimestamp();

    /// <summary>Registers the process series under <paramref name="prefix"/> (e.g. "mirrorfs_process").</summary>
    public static void Register(MetricsRegistry registry, string prefix = "mirrorfs_process")
    {
        ArgumentNullException.ThrowIfNull(registry);
        registry.GaugeCallback(prefix + "_uptime_seconds", "Seconds since the process started.",
            () => Stopwatch.GetElapsedTime(Started).TotalSeconds);
        registry.CounterCallback(prefix + "_cpu_seconds_total", "User and system CPU time of the process in seconds.",
            () =>
            {
                using var p = Process.GetCurrentProcess();
                return p.TotalProcessorTime.TotalSeconds;
            });
        registry.GaugeCallback(prefix + "_resident_memory_bytes", "Resident set size of the process in bytes.",
            () => Environment.WorkingSet);
        registry.GaugeCallback(prefix + "_managed_heap_bytes", "Bytes in the managed heap.",
            () => GC.GetTotalMemory(forceFullCollection: false));
        registry.GaugeCallback(prefix + "_threads", "Threads of the process.", () =>
        {
            using var p = Process.GetCurrentProcess();
            return p.Threads.Count;
        });
        registry.CounterCallback(prefix + "_gc_collections_total", "Garbage collections of generation 0 (every collection counts one).",
            () => GC.CollectionCount(0));
    }
}
