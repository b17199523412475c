// The command tree and its runner: parse errors and user-facing failures become one line on stderr.
using System.CommandLine;
using MirrorFS.Core.Storage;

namespace MirrorFS.Client.Cli;

public static class CliApp
{
    /// <summary>Exit code for a command that ran and failed.</summary>
    public const int Failed = 1;

    /// <summary>Exit code for arguments that do not parse.</summary>
    public const int Usage = 2;

    public static RootCommand Build(CliContext ctx)
    {
        var root = new RootCommand("mirrorfs: a POSIX filesystem on object storage, mirrored across clouds");
        root.Subcommands.Add(FormatCommand.Create(ctx));
        root.Subcommands.Add(StatusCommand.Create(ctx));
        root.Subcommands.Add(InfoCommand.Create(ctx));
        root.Subcommands.Add(MountCommand.Create(ctx));
        root.Subcommands.Add(UmountCommand.Create(ctx));
        root.Subcommands.Add(BenchCommand.Create(ctx));
        root.Subcommands.Add(ObjBenchCommand.Create(ctx));
        root.Subcommands.Add(ConfigCommand.Create(ctx));
        root.Subcommands.Add(QuotaCommand.Create(ctx));
        root.Subcommands.Add(RestoreCommand.Create(ctx));
        root.Subcommands.Add(GcCommand.Create(ctx));
        root.Subcommands.Add(FsckCommand.Create(ctx));
        root.Subcommands.Add(DumpCommand.Create(ctx));
        root.Subcommands.Add(LoadCommand.Create(ctx));
        root.Subcommands.Add(InstallHelperCommand.Create(ctx));
        return root;
    }

    public static async Task<int> RunAsync(RootCommand root, string[] args, CliContext ctx, CancellationToken ct = default)
    {
        try
        {
            args = MountOptions.Expand(args);
        }
        catch (CliException e)
        {
            await ctx.Err.WriteLineAsync($"mirrorfs: {e.Message} (see mirrorfs mount --help)").ConfigureAwait(false);
            return Usage;
        }
        var parse = root.Parse(args);
        if (parse.Errors.Count > 0)
        {
            var cmd = parse.CommandResult.Command;
            var help = cmd == root ? "mirrorfs --help" : $"mirrorfs {cmd.Name} --help";
            // An unknown word also leaves "no command given" and one error per later word: the first specific one is
            // the useful line.
            var error = parse.Errors.FirstOrDefault(e => e.Message.StartsWith("Unrecognized", StringComparison.Ordinal))
                        ?? parse.Errors[0];
            await ctx.Err.WriteLineAsync($"mirrorfs: {MetaConnection.FirstLine(error.Message)} (see {help})").ConfigureAwait(false);
            return Usage;
        }
        return await parse.InvokeAsync(new InvocationConfiguration
        {
            Output = ctx.Out,
            Error = ctx.Err,
            EnableDefaultExceptionHandler = false,
        }, ct).ConfigureAwait(false);
    }

    /// <summary>Wraps a command body: failures a user can act on print as one line and give <see cref="Failed"/>.</summary>
    public static Func<ParseResult, CancellationToken, Task<int>> Guard(CliContext ctx, string command,
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
            catch (StoreUriException e)
            {
                message = e.Message;
            }
            catch (ObjectStoreException e)
            {
                message = $"object storage failed: {e.Message}";
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                message = "interrupted";
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                message = e.Message;
            }
            await ctx.Err.WriteLineAsync($"mirrorfs {command}: {MetaConnection.FirstLine(message)}").ConfigureAwait(false);
            return Failed;
        };
}
