// mirrorfs: the user CLI (format, mount, umount, info, status, bench, objbench).
using MirrorFS.Client.Cli;

namespace MirrorFS.Client;

public static class Program
{
    public static Task<int> Main(string[] args) => RunAsync(args, Console.Out, Console.Error);

    /// <summary>The whole CLI with its output in the given writers, so tests run it in-process.</summary>
    public static Task<int> RunAsync(string[] args, TextWriter output, TextWriter error, CancellationToken ct = default) =>
        RunAsync(args, new CliContext(output, error), ct);

    public static Task<int> RunAsync(string[] args, CliContext ctx, CancellationToken ct = default) =>
        CliApp.RunAsync(CliApp.Build(ctx), args, ctx, ct);
}
