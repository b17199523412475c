// mirrorfs-meta: the metadata server executable.
using System.CommandLine;
using System.Security.Cryptography;
using Microsoft.Extensions.Logging;
using MirrorFS.MetaServer.Hosting;

namespace MirrorFS.MetaServer;

public static class Program
{
    public static int Main(string[] args)
    {
        var root = new RootCommand("mirrorfs-meta: the MirrorFS metadata server");
        root.Subcommands.Add(ServeCommand());
        return root.Parse(args).Invoke();
    }

    private static Command ServeCommand()
    {
        var data = new Option<string>("--data") { Description = "Data directory (log, snapshots, token)", Required = true };
        var listen = new Option<string>("--listen") { Description = "Address to listen on", DefaultValueFactory = _ => "127.0.0.1:9400" };
        var tokenFile = new Option<string?>("--token-file")
        {
            Description = "File holding the bearer token clients must send (default: DATA/token, created on first start)",
        };
        var noAuth = new Option<bool>("--no-auth") { Description = "Accept calls without a token (loopback testing only)" };
        var snapshotEvery = new Option<ulong>("--snapshot-every")
        {
            Description = "Take a snapshot after this many log entries",
            DefaultValueFactory = _ => 100_000,
        };
        var metrics = new Option<string?>("--metrics") { Description = "Serve Prometheus metrics at http://ADDR/metrics, e.g. 127.0.0.1:9568" };
        var cmd = new Command("serve", "Run a durable single-node metaserver") { data, listen, tokenFile, noAuth, snapshotEvery, metrics };
        cmd.SetAction(async (parse, ct) =>
        {
            var dir = Path.GetFullPath(parse.GetValue(data)!);
            string? token = null;
            try
            {
                Directory.CreateDirectory(dir);
                if (!parse.GetValue(noAuth))
                {
                    token = LoadOrCreateToken(parse.GetValue(tokenFile) ?? Path.Combine(dir, "token"));
                }
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                Console.Error.WriteLine($"mirrorfs-meta: cannot use data directory {dir}: {e.Message}");
                return 1;
            }
            using var loggers = LoggerFactory.Create(b => b.AddSimpleConsole(o =>
            {
                o.SingleLine = true;
                o.TimestampFormat = "HH:mm:ss.fff ";
            }).SetMinimumLevel(LogLevel.Information).AddFilter("Microsoft", LogLevel.Warning));
            MetaServerHost host;
            try
            {
                host = await MetaServerHost.StartAsync(new MetaServerOptions
                {
                    DataDirectory = dir,
                    Listen = parse.GetValue(listen)!,
                    BearerToken = token,
                    SnapshotEveryEntries = parse.GetValue(snapshotEvery),
                    LoggerFactory = loggers,
                    MetricsListen = parse.GetValue(metrics),
                }, ct);
            }
            catch (Exception e) when (e is IOException or InvalidDataException or ArgumentException or FormatException)
            {
                Console.Error.WriteLine($"mirrorfs-meta: cannot start: {e.Message}");
                return 1;
            }
            await using (host)
            {
                Console.Out.WriteLine($"mirrorfs-meta listening on {host.Address}");
                if (host.Metrics.Address is { } m)
                {
                    Console.Out.WriteLine($"mirrorfs-meta metrics at http://{m}/metrics");
                }
                Console.Out.Flush();
                try
                {
                    await Task.Delay(Timeout.Infinite, ct);
                }
                catch (OperationCanceledException)
                {
                }
            }
            return 0;
        });
        return cmd;
    }

    /// <summary>Reads the token file, or writes a new random token there (mode 0600) when it does not exist.</summary>
    internal static string LoadOrCreateToken(string path)
    {
        if (File.Exists(path))
        {
            var existing = File.ReadAllText(path).Trim();
            if (existing.Length < 16)
            {
                throw new IOException($"token file {path} holds fewer than 16 characters; write a longer token or delete the file");
            }
            return existing;
        }
        var token = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(24));
        using (var fs = new FileStream(path, new FileStreamOptions
        {
            Mode = FileMode.CreateNew,
            Access = FileAccess.Write,
            UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite,
        }))
        using (var w = new StreamWriter(fs))
        {
            w.WriteLine(token);
        }
        return token;
    }
}
