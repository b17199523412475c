// Command line of mirrorfs-oss-testserver: runs an OssTestServer until SIGINT or SIGTERM.
using System.Globalization;
using System.Net;
using System.Runtime.InteropServices;
using MirrorFS.Testing.Oss;

const string Usage =
    "usage: mirrorfs-oss-testserver --listen 127.0.0.1:PORT [--data DIR] --bucket NAME [--bucket NAME ...] "
    + "--access-key AK --secret-key SK [--security-token TOKEN] [--region REGION] [--verbose]  "
    + "(the secret may come from MIRRORFS_OSS_SECRET_KEY instead)";

var options = new OssTestServerOptions { AccessKeySecret = Environment.GetEnvironmentVariable("MIRRORFS_OSS_SECRET_KEY") ?? "" };
options.AccessKeyId = "";
try
{
    for (var i = 0; i < args.Length; i++)
    {
        string Value() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
        switch (args[i])
        {
            case "--listen":
                var listen = Value();
                if (!IPEndPoint.TryParse(listen, out var endpoint))
                {
                    throw new ArgumentException($"--listen '{listen}' is not ADDRESS:PORT");
                }
                options.ListenAddress = endpoint.Address.ToString();
                options.Port = endpoint.Port;
                break;
            case "--data": options.DataDirectory = Value(); break;
            case "--bucket": options.Buckets.Add(Value()); break;
            case "--access-key": options.AccessKeyId = Value(); break;
            case "--secret-key": options.AccessKeySecret = Value(); break;
            case "--security-token": options.SecurityToken = Value(); break;
            case "--region": options.Region = Value(); break;
            case "--verbose": options.Log = Console.WriteLine; break;
            case "-h" or "--help":
                Console.WriteLine(Usage);
                return 0;
            default: throw new ArgumentException($"unknown argument '{args[i]}'");
        }
    }
    if (options.Buckets.Count == 0 || options.AccessKeyId.Length == 0 || options.AccessKeySecret.Length == 0)
    {
        throw new ArgumentException("--bucket, --access-key and --secret-key are required");
    }
}
catch (ArgumentException e)
{
    Console.Error.WriteLine($"mirrorfs-oss-testserver: {e.Message}");
    Console.Error.WriteLine(Usage);
    return 2;
}

OssTestServer server;
try
{
    server = new OssTestServer(options);
    await server.StartAsync();
}
catch (Exception e) when (e is ArgumentException or IOException or UnauthorizedAccessException)
{
    Console.Error.WriteLine($"mirrorfs-oss-testserver: cannot start: {e.Message}");
    return 1;
}

await using (server)
{
    var stop = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
    using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = true; stop.TrySetResult(); });
    using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; stop.TrySetResult(); });
    Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
        $"mirrorfs-oss-testserver listening on {server.Endpoint} (buckets: {string.Join(", ", options.Buckets)}; data: {options.DataDirectory ?? "memory"})"));
    await stop.Task;
}
return 0;
