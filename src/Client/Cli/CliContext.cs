// What every subcommand shares: where output goes, how the environment is read, and how long a metaserver is tried.
namespace MirrorFS.Client.Cli;

/// <summary>A failure the user can act on: printed as one line, exit code 1.</summary>
public sealed class CliException(string message) : Exception(message);

public sealed class CliContext
{
    public CliContext(TextWriter output, TextWriter error, Func<string, string?>? environment = null)
    {
        Out = output;
        Err = error;
        Environment = environment ?? System.Environment.GetEnvironmentVariable;
    }

    public TextWriter Out { get; }

    public TextWriter Err { get; }

    /// <summary>Reads an environment variable (replaceable so tests do not depend on the process environment).</summary>
    public Func<string, string?> Environment { get; }

    /// <summary>How long metadata calls keep trying across members before the CLI gives up.</summary>
    public int MetaFailoverTimeoutMs { get; init; } = 5_000;

    /// <summary>Whether tables are drawn with Spectre.Console (plain text when false).</summary>
    public bool WideTables { get; init; } = true;
}
