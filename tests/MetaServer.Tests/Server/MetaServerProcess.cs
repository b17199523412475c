// Runs a real mirrorfs-meta process for tests: start, read its address, kill -9, dump its log on failure.
using System.Diagnostics;
using System.Text;

namespace MirrorFS.MetaServer.Tests.Server;

public sealed class MetaServerProcess : IAsyncDisposable
{
    private const int StartTimeoutMs = 30_000;
    private readonly System.Diagnostics.Process _process;
    private readonly StringBuilder _output = new();
    private readonly TaskCompletionSource<string> _address = new(TaskCreationOptions.RunContinuationsAsynchronously);

    private MetaServerProcess(System.Diagnostics.Process process) => _process = process;

    public string Address { get; private set; } = "";

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

    public static async Task<MetaServerProcess> StartAsync(string dataDir, string listen = "127.0.0.1:0", params string[] extra)
    {
        var dll = Path.Combine(AppContext.BaseDirectory, "mirrorfs-meta.dll");
        var psi = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var a in new[] { dll, "serve", "--data", dataDir, "--listen", listen }.Concat(extra))
        {
            psi.ArgumentList.Add(a);
        }
        var p = new MetaServerProcess(System.Diagnostics.Process.Start(psi)!);
        p._process.OutputDataReceived += (_, e) => p.OnLine(e.Data);
        p._process.ErrorDataReceived += (_, e) => p.OnLine(e.Data);
        p._process.BeginOutputReadLine();
        p._process.BeginErrorReadLine();
        var done = await Task.WhenAny(p._address.Task, Task.Delay(StartTimeoutMs), p._process.WaitForExitAsync());
        if (done != p._address.Task)
        {
            var output = p.Output;
            await p.DisposeAsync();
            throw new InvalidOperationException($"mirrorfs-meta did not start within {StartTimeoutMs} ms; output:\n{output}");
        }
        p.Address = await p._address.Task;
        return p;
    }

    private void OnLine(string? line)
    {
        if (line is null)
        {
            return;
        }
        lock (_output)
        {
            _output.AppendLine(line);
        }
        const string marker = "mirrorfs-meta listening on ";
        if (line.StartsWith(marker, StringComparison.Ordinal))
        {
            _address.TrySetResult(line[marker.Length..].Trim());
        }
    }

    /// <summary>SIGKILL: no shutdown code runs, like a power cut for the process (not for the page cache).</summary>
    public async Task KillAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
        }
        await _process.WaitForExitAsync();
    }

    public async ValueTask DisposeAsync()
    {
        await KillAsync();
        _process.Dispose();
    }
}
