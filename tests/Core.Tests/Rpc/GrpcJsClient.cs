// Runs tests/interop/grpc-client.js (the standard grpc-js client) against a server and returns its JSON results.
// Reusable by other test projects: link this file and call RunAsync with that project's proto and calls.
using System.Diagnostics;
using System.Text;
using System.Text.Json;

namespace MirrorFS.Core.Tests.Rpc;

public sealed class GrpcJsClient
{
    private const int NpmCiTimeoutMs = 300_000;
    private const int ScriptTimeoutMs = 120_000;
    private static readonly SemaphoreSlim InstallLock = new(1, 1);

    private GrpcJsClient(string repoRoot)
    {
        RepoRoot = repoRoot;
        InteropDir = Path.Combine(repoRoot, "tests", "interop");
    }

    public string RepoRoot { get; }

    public string InteropDir { get; }

    /// <summary>Finds the repository, checks node, and runs <c>npm ci</c> in tests/interop when node_modules
    /// lacks grpc-js (so a fresh checkout works; CI may run it beforehand).</summary>
    public static async Task<GrpcJsClient> CreateAsync()
    {
        var client = new GrpcJsClient(FindRepoRoot());
        var version = await RunAsync("node", ["--version"], client.InteropDir, stdin: null, 30_000);
        if (version.ExitCode != 0)
        {
            throw new InvalidOperationException($"node is needed for the grpc-js interop tests: {version.Stderr}");
        }

        await InstallLock.WaitAsync();
        try
        {
            // A lock file keeps two test processes (e.g. Core.Tests and MetaServer.Tests) from installing at once.
            await using var crossProcess = await LockFileAsync(Path.Combine(client.InteropDir, ".npm-ci.lock"));
            if (!File.Exists(Path.Combine(client.InteropDir, "node_modules", "@grpc", "grpc-js", "package.json"))
                || !File.Exists(Path.Combine(client.InteropDir, "node_modules", "@grpc", "proto-loader", "package.json")))
            {
                var install = await RunAsync("npm", ["ci", "--no-audit", "--no-fund"], client.InteropDir, stdin: null,
                    NpmCiTimeoutMs);
                if (install.ExitCode != 0)
                {
                    throw new InvalidOperationException(
                        $"npm ci in {client.InteropDir} failed ({install.ExitCode}): {install.Stderr}");
                }
            }
        }
        finally
        {
            InstallLock.Release();
        }

        return client;
    }

    /// <summary>Makes <paramref name="calls"/> (see grpc-client.js for their shape) and returns one result each.
    /// <paramref name="includeDirs"/> are where the proto's imports are looked up.</summary>
    public async Task<JsonElement[]> RunAsync(
        string address, string? token, string protoPath, object[] calls, IEnumerable<string>? includeDirs = null)
    {
        var args = new List<string>
        {
            Path.Combine(InteropDir, "grpc-client.js"),
            "--address", address,
            "--proto", protoPath,
            "--calls", "-",
        };
        if (token is not null)
        {
            args.AddRange(["--token", token]);
        }

        foreach (var dir in includeDirs ?? [])
        {
            args.AddRange(["--include", dir]);
        }

        var result = await RunAsync("node", args, InteropDir, JsonSerializer.Serialize(calls), ScriptTimeoutMs);
        if (result.ExitCode != 0)
        {
            throw new InvalidOperationException($"grpc-client.js exited with {result.ExitCode}: {result.Stderr}");
        }

        using var document = JsonDocument.Parse(result.Stdout);
        var results = document.RootElement.EnumerateArray().Select(e => e.Clone()).ToArray();
        Assert.Equal(calls.Length, results.Length);
        return results;
    }

    private static string FindRepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Mirror.sln")))
            {
                return dir.FullName;
            }
        }

        throw new InvalidOperationException($"No Mirror.sln above {AppContext.BaseDirectory}; run tests from the repository.");
    }

    private static async Task<FileStream> LockFileAsync(string path)
    {
        var deadline = DateTime.UtcNow.AddMilliseconds(NpmCiTimeoutMs);
        while (true)
        {
            try
            {
                return new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None, 1,
                    FileOptions.DeleteOnClose);
            }
            catch (IOException) when (DateTime.UtcNow < deadline)
            {
                await Task.Delay(200);
            }
        }
    }

    private static async Task<(int ExitCode, string Stdout, string Stderr)> RunAsync(
        string file, IEnumerable<string> args, string workingDirectory, string? stdin, int timeoutMs)
    {
        var start = new ProcessStartInfo(file)
        {
            WorkingDirectory = workingDirectory,
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            StandardOutputEncoding = Encoding.UTF8,
            StandardErrorEncoding = Encoding.UTF8,
            StandardInputEncoding = new UTF8Encoding(encoderShouldEmitUTF8Identifier: false),
        };
        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }

        using var process = Process.Start(start) ?? throw new InvalidOperationException($"Cannot start {file}.");
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (stdin is not null)
        {
            await process.StandardInput.WriteAsync(stdin);
        }

        process.StandardInput.Close();
        using var timeout = new CancellationTokenSource(timeoutMs);
        try
        {
            await process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{file} {string.Join(' ', args)} did not finish within {timeoutMs} ms.");
        }

        return (process.ExitCode, await stdout, await stderr);
    }
}
