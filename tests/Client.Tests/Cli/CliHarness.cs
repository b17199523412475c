// Runs the mirrorfs CLI in-process and starts a real metaserver on a free loopback port with a temp data directory.
using MirrorFS.Client.Cli;
using MirrorFS.MetaServer.Hosting;

namespace MirrorFS.Client.Tests.Cli;

public sealed record CliRun(int ExitCode, string Out, string Err)
{
    public string[] ErrLines => Err.Split('\n', StringSplitOptions.RemoveEmptyEntries);
}

public static class CliHarness
{
    /// <summary>Generous, because the machine is shared and a first call pays for JIT and the HTTP/2 connection.</summary>
    public const int MetaTimeoutMs = 15_000;

    public static async Task<CliRun> RunAsync(params string[] args) => await RunAsync(null, args);

    public static async Task<CliRun> RunAsync(IReadOnlyDictionary<string, string>? env, params string[] args) =>
        await RunAsync(env, MetaTimeoutMs, args);

    /// <summary>Runs the CLI with <paramref name="env"/> as its whole environment (null: an empty one).</summary>
    public static async Task<CliRun> RunAsync(IReadOnlyDictionary<string, string>? env, int metaTimeoutMs, params string[] args)
    {
        var o = new StringWriter();
        var e = new StringWriter();
        var ctx = new CliContext(o, e, k => env is not null && env.TryGetValue(k, out var v) ? v : null)
        {
            MetaFailoverTimeoutMs = metaTimeoutMs,
        };
        var code = await Program.RunAsync(args, ctx);
        return new CliRun(code, o.ToString(), e.ToString());
    }
}

/// <summary>A metaserver with a token, plus a temp directory for a file object store.</summary>
public sealed class MetaServerFixture : IAsyncDisposable
{
    public const string Token = "cli-test-token-0123456789abcdef";

    private MetaServerFixture(string root, MetaServerHost host)
    {
        Root = root;
        Host = host;
    }

    public string Root { get; }

    public MetaServerHost Host { get; }

    public string BlocksDir => Path.Combine(Root, "blocks");

    public string StorageUri => "file://" + BlocksDir;

    /// <summary>The META-URL with the token in it.</summary>
    public string Url(string volume) => $"mirrorfs://:{Token}@{Host.Address}/{volume}";

    public static async Task<MetaServerFixture> StartAsync()
    {
        var root = Path.Combine(Path.GetTempPath(), "mirrorfs-cli-" + Guid.NewGuid().ToString("N")[..12]);
        Directory.CreateDirectory(root);
        var host = await MetaServerHost.StartAsync(new MetaServerOptions
        {
            DataDirectory = Path.Combine(root, "meta"),
            BearerToken = Token,
        });
        return new MetaServerFixture(root, host);
    }

    public async ValueTask DisposeAsync()
    {
        await Host.DisposeAsync();
        Directory.Delete(Root, recursive: true);
    }
}
