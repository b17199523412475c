// mirrorfs-mirror: the block replicator (run) and the operator's mirror tools (status, verify, promote).
using System.CommandLine;
using MirrorFS.Mirror.Cli;

namespace MirrorFS.Mirror;

public static class Program
{
    /// <summary>How long a stopping replicator may take to save its last checkpoint after SIGTERM or Ctrl-C.</summary>
    private const int StopTimeoutMs = 30_000;

    public static Task<int> Main(string[] args) => RunAsync(args, new MirrorCliContext(Console.Out, Console.Error));

    public static RootCommand Build(MirrorCliContext ctx)
    {
        var root = new RootCommand("mirrorfs-mirror: block replication and mirror operations for MirrorFS");
        root.Subcommands.Add(RunCommand.Create(ctx));
        root.Subcommands.Add(StatusCommand.Create(ctx));
        root.Subcommands.Add(VerifyCommand.Create(ctx));
        root.Subcommands.Add(PromoteCommand.Create(ctx));
        return root;
    }

    /// <summary>The whole CLI with its output in the context's writers, so tests run it in-process.</summary>
    public static async Task<int> RunAsync(string[] args, MirrorCliContext ctx, CancellationToken ct = default)
    {
        var root = Build(ctx);
        var parse = root.Parse(args);
        if (parse.Errors.Count > 0)
        {
            var cmd = parse.CommandResult.Command;
            var help = cmd == root ? "mirrorfs-mirror --help" : $"mirrorfs-mirror {cmd.Name} --help";
            await ctx.Err.WriteLineAsync($"mirrorfs-mirror: {MirrorCli.FirstLine(parse.Errors[0].Message)} (see {help})").ConfigureAwait(false);
            return MirrorCli.Usage;
        }
        return await parse.InvokeAsync(new InvocationConfiguration
        {
            Output = ctx.Out,
            Error = ctx.Err,
            EnableDefaultExceptionHandler = false,
            ProcessTerminationTimeout = TimeSpan.FromMilliseconds(StopTimeoutMs),
        }, ct).ConfigureAwait(false);
    }
}
