// mirrorfs-meta: the metadata server executable (serve) and its cluster administration commands.
using MirrorFS.MetaServer.Cli;

namespace MirrorFS.MetaServer;

public static class Program
{
    public static Task<int> Main(string[] args)
    {
        // Before any socket is used: a call read on the I/O thread is served there (see RpcServer).
        MirrorFS.Core.Rpc.RpcServer.PreferInlineSocketCompletions();
        return RunAsync(args, Console.Out, Console.Error);
    }

    /// <summary>The whole CLI with its output in the given writers, so tests run it in-process.</summary>
    public static Task<int> RunAsync(string[] args, TextWriter output, TextWriter error, CancellationToken ct = default) =>
        MetaCli.RunAsync(args, new MetaCliContext(output, error), ct);
}
