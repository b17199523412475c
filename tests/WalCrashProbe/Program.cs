// Child process of WalCrashTests: proposes to a DurableSingleNodeLog until killed, printing "ack {index} {command} end"
// only after ProposeAsync returned (i.e. after the entry's fsync). The parent kills it with SIGKILL and checks that
// every acknowledged entry survived.
using System.Globalization;
using System.Text;
using MirrorFS.MetaServer.Consensus;
using MirrorFS.MetaServer.Tests.Storage;

namespace MirrorFS.WalCrashProbe;

public static class Program
{
    private const int RunSecondsMax = 120; // if the parent never kills us, stop anyway

    public static async Task<int> Main(string[] args)
    {
        if (args.Length != 5)
        {
            Console.Error.WriteLine("usage: WalCrashProbe DIR ROUND CONCURRENCY SEGMENT_BYTES SNAPSHOT_EVERY");
            return 2;
        }
        var dir = args[0];
        var round = args[1];
        var concurrency = int.Parse(args[2], CultureInfo.InvariantCulture);
        var options = new DurableLogOptions
        {
            Directory = dir,
            SegmentBytesMax = long.Parse(args[3], CultureInfo.InvariantCulture),
            SnapshotEveryEntries = ulong.Parse(args[4], CultureInfo.InvariantCulture),
        };
        var machine = new HashChainStateMachine();
        await using var log = DurableSingleNodeLog.Open(machine, options);
        var output = Console.Out;
        var gate = new object();
        lock (gate)
        {
            output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"ready {log.AppliedIndex}"));
        }
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(RunSecondsMax));
        var workers = Enumerable.Range(0, concurrency).Select(w => Task.Run(async () =>
        {
            for (var k = 0; !stop.IsCancellationRequested; k++)
            {
                var command = string.Create(CultureInfo.InvariantCulture, $"r{round}w{w}-{k}={k}");
                var (index, _) = await log.ProposeAsync(Encoding.UTF8.GetBytes(command));
                lock (gate)
                {
                    output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"ack {index} {command} end"));
                }
            }
        }));
        await Task.WhenAll(workers);
        return 0;
    }
}
