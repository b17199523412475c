// The mirrorfs-meta command tree and its runner: parse errors and failures a user can act on become one line.
using System.CommandLine;
using MirrorFS.Core.Rpc;

namespace MirrorFS.MetaServer.Cli;

/// <summary>A failure the user can act on: printed as one line, exit code 1.</summary>
public sealed class CliException(string message) : Exception(message);

/// <summary>Where a command writes, and how it reads the environment (replaceable in tests).</summary>
public sealed class MetaCliContext(TextWriter output, TextWriter error, Func<string, string?>? environment = null)
{
    public TextWriter Out { get; } = output;
    public TextWriter Err { get; } = error;
    public Func<string, string?> Environment { get; } = environment ?? System.Environment.GetEnvironmentVariable;

    /// <summary>How long an admin command keeps trying (leader changes, restarts) before it gives up.</summary>
    public int AdminTimeoutMs { get; init; } = 15_000;
}

public static class MetaCli
{
    /// <summary>Exit code for a command that ran and failed.</summary>
    public const int Failed = 1;

    /// <summary>Exit code for arguments that do not parse.</summary>
    public const int Usage = 2;

    public static RootCommand Build(MetaCliContext ctx)
    {
        var root = new RootCommand("mirrorfs-meta: the MirrorFS metadata server and its cluster administration");
        root.Subcommands.Add(ServeCommand.Create(ctx));
        root.Subcommands.Add(ClusterCommands.Cluster(ctx));
        root.Subcommands.Add(ClusterCommands.Member(ctx));
        root.Subcommands.Add(ClusterCommands.TransferLeader(ctx));
        root.Subcommands.Add(ClusterCommands.Snapshot(ctx));
        return root;
    }

    public static async Task<int> RunAsync(string[] args, MetaCliContext ctx, CancellationToken ct = default)
    {
        var root = Build(ctx);
        var parse = root.Parse(args);
        if (parse.Errors.Count > 0)
        {
            var cmd = parse.CommandResult.Command;
            var help = cmd == root ? "mirrorfs-meta --help" : $"mirrorfs-meta {CommandPath(parse.CommandResult)} --help";
            var error = parse.Errors.FirstOrDefault(e => e.Message.StartsWith("Unrecognized", StringComparison.Ordinal))
                        ?? parse.Errors[0];
            await ctx.Err.WriteLineAsync($"mirrorfs-meta: {FirstLine(error.Message)} (see {help})").ConfigureAwait(false);
            return Usage;
        }
        return await parse.InvokeAsync(new InvocationConfiguration
        {
            Output = ctx.Out,
            Error = ctx.Err,
            EnableDefaultExceptionHandler = false,
        }, ct).ConfigureAwait(false);
    }

    private static string CommandPath(System.CommandLine.Parsing.CommandResult result)
    {
        var names = new List<string>();
        for (var r = result; r is not null && r.Parent is System.CommandLine.Parsing.CommandResult parent; r = parent)
        {
            names.Insert(0, r.Command.Name);
        }
        return string.Join(' ', names);
    }

    /// <summary>Wraps a command body: failures a user can act on print as one line and give <see cref="Failed"/>.</summary>
    public static Func<ParseResult, CancellationToken, Task<int>> Guard(MetaCliContext ctx, string command,
        Func<ParseResult, CancellationToken, Task<int>> body) =>
        async (parse, ct) =>
        {
            string message;
            try
            {
                return await body(parse, ct).ConfigureAwait(false);
            }
            catch (CliException e)
            {
                message = e.Message;
            }
            catch (RpcException e)
            {
                message = e.Message;
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                message = "interrupted";
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or InvalidDataException or FormatException)
            {
                message = e.Message;
            }
            await ctx.Err.WriteLineAsync($"mirrorfs-meta {command}: {FirstLine(message)}").ConfigureAwait(false);
            return Failed;
        };

    public static string FirstLine(string message)
    {
        var nl = message.IndexOfAny(['\r', '\n']);
        return nl < 0 ? message : message[..nl];
    }
}
