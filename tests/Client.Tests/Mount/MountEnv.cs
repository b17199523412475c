// Per-test environment for real FUSE mounts: an in-process metaserver, a volume on a temp file store, and
// `mirrorfs mount` child processes (foreground, so a test can kill -9 them) whose output is dumped into the test log.
using System.Diagnostics;
using System.Text;
using MirrorFS.Client.Cli;
using MirrorFS.MetaServer.Hosting;
using Xunit.Abstractions;

namespace MirrorFS.Client.Tests.Mount;

/// <summary>All mount tests run one after another: each starts several processes and the machine is small.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class MountCollection
{
    public const string Name = "real-fuse-mounts";
}

public sealed class MountEnv : IAsyncDisposable
{
    public const string Token = "mount-test-token-0123456789abcdef";
    public const string Volume = "mnttest";

    /// <summary>Generous: a loaded 2-core machine pays JIT, process start and the first HTTP/2 connection.</summary>
    public const int MountWaitMs = 60_000;
    public const int ExitWaitMs = 30_000;
    public const int ShellTimeoutMs = 90_000;

    private readonly ITestOutputHelper _log;
    private readonly List<MountProcess> _mounts = [];

    private MountEnv(ITestOutputHelper log, string root, MetaServerHost host)
    {
        _log = log;
        Root = root;
        Host = host;
    }

    public string Root { get; }

    public MetaServerHost Host { get; }

    public string TokenFile => Path.Combine(Root, "token");

    public string MetaUrl => $"mirrorfs://{Host.Address}/{Volume}";

    /// <summary>A fresh directory under this test's root (outside any mount).</summary>
    public string NewDir(string name)
    {
        var d = Path.Combine(Root, name);
        Directory.CreateDirectory(d);
        return d;
    }

    /// <summary>Starts the metaserver and formats the volume. The trash is off unless <paramref name="trashDays"/> says
    /// otherwise: most tests compare trees or count deletions, and a /.trash would get in their way.</summary>
    /// <param name="storageQuery">Appended to the file:// storage URI (e.g. "?secret-key=..." to check it stays hidden).</param>
    public static async Task<MountEnv> StartAsync(ITestOutputHelper log, string blockSize = "1M", int trashDays = 0,
        string storageQuery = "", params string[] formatArgs)
    {
        if (!File.Exists("/dev/fuse"))
        {
            throw new InvalidOperationException("/dev/fuse is missing: these tests need FUSE (bash deploy/install-deps.sh)");
        }
        var root = Directory.CreateTempSubdirectory("mirrorfs-mnt-").FullName;
        var host = await MetaServerHost.StartAsync(new MetaServerOptions
        {
            DataDirectory = Path.Combine(root, "meta"),
            BearerToken = Token,
        });
        var env = new MountEnv(log, root, host);
        await File.WriteAllTextAsync(env.TokenFile, Token + "\n");
        var blocks = env.NewDir("blocks");
        var o = new StringWriter();
        var e = new StringWriter();
        var code = await Program.RunAsync(
            ["format", env.MetaUrl, Volume, "--storage", "file://" + blocks + storageQuery, "--block-size", blockSize, "--token-file", env.TokenFile,
             "--trash-days", trashDays.ToString(System.Globalization.CultureInfo.InvariantCulture), .. formatArgs],
            o, e);
        if (code != 0)
        {
            await env.DisposeAsync();
            throw new InvalidOperationException($"mirrorfs format failed with {code}: {e}{o}");
        }
        return env;
    }

    /// <summary>Runs a mirrorfs subcommand in-process against this volume: args after the META-URL (the token file is added).</summary>
    public async Task<ShellResult> CliAsync(string command, params string[] args)
    {
        var o = new StringWriter();
        var e = new StringWriter();
        var words = command.Split(' ');
        var code = await Program.RunAsync([.. words, MetaUrl, .. args, "--token-file", TokenFile], o, e);
        _log.WriteLine($"$ mirrorfs {command} {string.Join(' ', args)} -> {code}\n{o}{e}");
        return new ShellResult(code, o.ToString(), e.ToString());
    }

    /// <summary>Starts `mirrorfs mount` in the foreground as a child and waits until the kernel lists the mount.</summary>
    public Task<MountProcess> MountAsync(string mountPoint, params string[] extraArgs) => MountAtAsync(MetaUrl, mountPoint, extraArgs);

    /// <summary>As <see cref="MountAsync"/>, for a volume on another metaserver (same token).</summary>
    public async Task<MountProcess> MountAtAsync(string metaUrl, string mountPoint, params string[] extraArgs)
    {
        Directory.CreateDirectory(mountPoint);
        var dll = Path.Combine(AppContext.BaseDirectory, "mirrorfs.dll");
        var psi = new ProcessStartInfo("dotnet")
        {
            UseShellExecute = false,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
        };
        foreach (var a in (string[])[dll, "mount", metaUrl, mountPoint, "--token-file", TokenFile, .. extraArgs])
        {
            psi.ArgumentList.Add(a);
        }
        var m = new MountProcess(mountPoint, Process.Start(psi) ?? throw new InvalidOperationException("could not start dotnet mirrorfs.dll"));
        _mounts.Add(m);
        var deadline = Environment.TickCount64 + MountWaitMs;
        while (!IsMounted(mountPoint))
        {
            if (m.Process.HasExited)
            {
                throw new InvalidOperationException($"mirrorfs mount exited with {m.Process.ExitCode} before mounting {mountPoint}:\n{m.Output}");
            }
            if (Environment.TickCount64 > deadline)
            {
                throw new TimeoutException($"{mountPoint} did not appear in /proc/self/mountinfo within {MountWaitMs} ms:\n{m.Output}");
            }
            await Task.Delay(50);
        }
        return m;
    }

    public static bool IsMounted(string mountPoint) =>
        MountTable.ReadSelf().Any(e => e.MountPoint == mountPoint && e.FsType == MountTable.MirrorFsType);

    /// <summary>Clean unmount: fusermount3 -u, then the child must flush and exit 0.</summary>
    public static async Task UnmountAsync(MountProcess m)
    {
        var r = await Shell.RunAsync($"fusermount3 -u '{m.MountPoint}'", null, ShellTimeoutMs);
        Assert.True(r.Code == 0, $"fusermount3 -u {m.MountPoint} failed: {r.Err}");
        using var cts = new CancellationTokenSource(ExitWaitMs);
        await m.Process.WaitForExitAsync(cts.Token);
        Assert.True(m.Process.ExitCode == 0, $"mirrorfs mount exited with {m.Process.ExitCode}:\n{m.Output}");
        Assert.False(IsMounted(m.MountPoint));
    }

    /// <summary>Best effort: unmount (lazily if busy), then make sure the child is gone.</summary>
    public static async Task ForceDownAsync(MountProcess m)
    {
        if (IsMounted(m.MountPoint))
        {
            var r = await Shell.RunAsync($"fusermount3 -u '{m.MountPoint}'", null, ShellTimeoutMs);
            if (r.Code != 0 && IsMounted(m.MountPoint))
            {
                await Shell.RunAsync($"fusermount3 -uz '{m.MountPoint}'", null, ShellTimeoutMs);
            }
        }
        if (!m.Process.HasExited)
        {
            using var cts = new CancellationTokenSource(ExitWaitMs);
            try
            {
                await m.Process.WaitForExitAsync(cts.Token);
            }
            catch (OperationCanceledException)
            {
                m.Process.Kill(entireProcessTree: true);
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var m in _mounts)
        {
            try
            {
                await ForceDownAsync(m);
            }
            catch (Exception e) when (e is InvalidOperationException or IOException or TimeoutException)
            {
                _log.WriteLine($"cleaning up {m.MountPoint}: {e.Message}");
            }
            // Shown by the runner when the test failed; it is what explains a hung or crashed mount.
            _log.WriteLine($"--- mirrorfs mount {m.MountPoint} (exit {(m.Process.HasExited ? m.Process.ExitCode : -1)}) ---\n{m.Output}");
            m.Process.Dispose();
        }
        await Host.DisposeAsync();
        try
        {
            Directory.Delete(Root, recursive: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            _log.WriteLine($"could not remove {Root}: {e.Message}");
        }
    }
}

/// <summary>A `mirrorfs mount` child and everything it printed.</summary>
public sealed class MountProcess
{
    private readonly StringBuilder _output = new();

    public MountProcess(string mountPoint, Process process)
    {
        MountPoint = mountPoint;
        Process = process;
        process.OutputDataReceived += (_, e) => Append(e.Data);
        process.ErrorDataReceived += (_, e) => Append(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
    }

    public string MountPoint { get; }

    public Process Process { get; }

    public string Output
    {
        get
        {
            lock (_output)
            {
                return _output.ToString();
            }
        }
    }

    private void Append(string? line)
    {
        if (line is null)
        {
            return;
        }
        lock (_output)
        {
            _output.AppendLine(line);
        }
    }
}

public sealed record ShellResult(int Code, string Out, string Err);

public static class Shell
{
    public static async Task<ShellResult> RunAsync(string script, string? cwd, int timeoutMs = MountEnv.ShellTimeoutMs)
    {
        var psi = new ProcessStartInfo("/bin/bash")
        {
            UseShellExecute = false,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            WorkingDirectory = cwd ?? "/",
        };
        psi.ArgumentList.Add("-c");
        psi.ArgumentList.Add(script);
        // git inside the mount needs an identity and must not read the host's configuration.
        psi.Environment["GIT_CONFIG_NOSYSTEM"] = "1";
        psi.Environment["GIT_AUTHOR_NAME"] = psi.Environment["GIT_COMMITTER_NAME"] = "Mount Test";
        psi.Environment["GIT_AUTHOR_EMAIL"] = psi.Environment["GIT_COMMITTER_EMAIL"] = "mount@test.invalid";
        using var p = Process.Start(psi) ?? throw new InvalidOperationException("could not start /bin/bash");
        var o = p.StandardOutput.ReadToEndAsync();
        var e = p.StandardError.ReadToEndAsync();
        using var cts = new CancellationTokenSource(timeoutMs);
        try
        {
            await p.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"shell step did not finish within {timeoutMs} ms (hung mount?): {script}");
        }
        return new ShellResult(p.ExitCode, await o, await e);
    }

    /// <summary>Runs a bash script and asserts it exits 0, showing its stderr otherwise; returns stdout.</summary>
    public static async Task<string> OkAsync(string script, string? cwd = null)
    {
        var r = await RunAsync(script, cwd);
        Assert.True(r.Code == 0, $"'{script}' exited with {r.Code}:\nstderr: {r.Err}\nstdout: {r.Out}");
        return r.Out;
    }
}

/// <summary>
/// Runs blocking file I/O on a dedicated thread. The metaserver lives in this process: file calls that block
/// thread-pool threads on the mount would starve the very server the mount is waiting for.
/// </summary>
public static class Blocking
{
    public static Task RunAsync(Action body) => RunAsync(() => { body(); return 0; });

    public static Task<T> RunAsync<T>(Func<T> body)
    {
        var tcs = new TaskCompletionSource<T>(TaskCreationOptions.RunContinuationsAsynchronously);
        var t = new Thread(() =>
        {
            try
            {
                tcs.SetResult(body());
            }
            catch (Exception e)
            {
                tcs.SetException(e);
            }
        })
        { IsBackground = true, Name = "mount-test-io" };
        t.Start();
        return tcs.Task;
    }
}
