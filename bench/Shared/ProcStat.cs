// CPU time and context switches of processes from Linux /proc; the benchmarks print them per operation.
namespace MirrorFS.Bench;

/// <summary>CPU time and context switches of a set of processes, from Linux /proc (zero elsewhere).</summary>
internal static class ProcStat
{
    public static (double CpuUs, long Switches) Sample(IEnumerable<int> pids)
    {
        double cpuUs = 0;
        long switches = 0;
        var ticksPerSecond = 100.0; // USER_HZ on Linux
        foreach (var pid in pids)
        {
            try
            {
                // Fields 14 and 15 of /proc/PID/stat: utime and stime in clock ticks (after the parenthesized name).
                var stat = File.ReadAllText($"/proc/{pid}/stat");
                var f = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
                cpuUs += (long.Parse(f[11], System.Globalization.CultureInfo.InvariantCulture)
                          + long.Parse(f[12], System.Globalization.CultureInfo.InvariantCulture)) * 1e6 / ticksPerSecond;
                foreach (var task in Directory.EnumerateDirectories($"/proc/{pid}/task"))
                {
                    try
                    {
                        foreach (var line in File.ReadLines(Path.Combine(task, "status")))
                        {
                            if (line.StartsWith("voluntary_ctxt_switches:", StringComparison.Ordinal)
                                || line.StartsWith("nonvoluntary_ctxt_switches:", StringComparison.Ordinal))
                            {
                                switches += long.Parse(line.AsSpan(line.IndexOf(':') + 1).Trim(), System.Globalization.CultureInfo.InvariantCulture);
                            }
                        }
                    }
                    catch (IOException)
                    {
                        // the thread ended while listed
                    }
                }
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException or IndexOutOfRangeException)
            {
                // the process is gone, or this is not Linux
            }
        }
        return (cpuUs, switches);
    }
}
