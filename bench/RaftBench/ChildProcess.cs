// A server the bench starts as a real process: waits for its ready line, keeps its last lines for errors, kill -9.
using System.Collections.Concurrent;
using System.Diagnostics;

namespace MirrorFS.Bench;

internal sealed class ChildProcess : IAsyncDisposable
{
    private const int OutputLinesMax = 200;

    // Every child still running, so that the bench kills them when it exits early (Ctrl+C, an exception).
    private static readonly ConcurrentDictionary<ChildProcess, byte> Running = new();

    private readonly Process _process;
    private readonly Queue<string> _lines = new();
    private readonly string _readyMarker;
    private readonly TaskCompletionSource<string> _ready = new(TaskCreationOptions.RunContinuationsAsynchronously);

    static ChildProcess()
    {
        AppDomain.CurrentDomain.ProcessExit += (_, _) => KillAll();
        Console.CancelKeyPress += (_, _) => KillAll();
    }

    private ChildProcess(Process process, string name, string readyMarker)
    {
        _process = process;
        Name = name;
        _readyMarker = readyMarker;
    }

    public string Name { get; }

    public int Pid => _process.Id;

    public bool HasExited => _process.HasExited;

    /// <summary>The rest of the ready line (e.g. the address after "listening on ").</summary>
    public string ReadyText { get; private set; } = "";

    public string LastOutput
    {
        get
        {
            lock (_lines)
            {
                return string.Join('\n', _lines);
            }
        }
    }

    /// <summary>Starts <paramref name="file"/> and waits until a line starting with <paramref name="readyMarker"/>
    /// appears (empty marker: does not wait).</summary>
    public static async Task<ChildProcess> StartAsync(string name, string file, IEnumerable<string> args, string readyMarker,
        int readyTimeoutMs, string? logFile = null)
    {
        var psi = new ProcessStartInfo(file)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }
        var child = new ChildProcess(Process.Start(psi) ?? throw new InvalidOperationException($"cannot start {file}"), name, readyMarker);
        Running[child] = 0;
        StreamWriter? log = logFile is null ? null : new StreamWriter(logFile, append: true) { AutoFlush = true };
        child._process.OutputDataReceived += (_, e) => child.OnLine(e.Data, log);
        child._process.ErrorDataReceived += (_, e) => child.OnLine(e.Data, log);
        child._process.BeginOutputReadLine();
        child._process.BeginErrorReadLine();
        if (readyMarker.Length == 0)
        {
            return child;
        }
        var done = await Task.WhenAny(child._ready.Task, Task.Delay(readyTimeoutMs), child._process.WaitForExitAsync());
        if (done != child._ready.Task)
        {
            var output = child.LastOutput;
            await child.DisposeAsync();
            throw new InvalidOperationException(
                $"{name} did not print \"{readyMarker}\" within {readyTimeoutMs} ms; its last output:\n{output}");
        }
        child.ReadyText = await child._ready.Task;
        return child;
    }

    private void OnLine(string? line, StreamWriter? log)
    {
        if (line is null)
        {
            return;
        }
        lock (_lines)
        {
            _lines.Enqueue(line);
            if (_lines.Count > OutputLinesMax)
            {
                _lines.Dequeue();
            }
            log?.WriteLine(line);
        }
        if (_readyMarker.Length > 0)
        {
            var at = line.IndexOf(_readyMarker, StringComparison.Ordinal);
            if (at >= 0)
            {
                _ready.TrySetResult(line[(at + _readyMarker.Length)..].Trim());
            }
        }
    }

    /// <summary>SIGKILL, then waits until the process is gone.</summary>
    public async Task KillAsync()
    {
        try
        {
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: true);
            }
        }
        catch (InvalidOperationException)
        {
            // Exited between the check and the kill.
        }
        await _process.WaitForExitAsync();
        Running.TryRemove(this, out _);
    }

    public async ValueTask DisposeAsync()
    {
        await KillAsync();
        _process.Dispose();
    }

    private static void KillAll()
    {
        foreach (var child in Running.Keys)
        {
            try
            {
                child._process.Kill(entireProcessTree: true);
            }
            catch (Exception e) when (e is InvalidOperationException or System.ComponentModel.Win32Exception)
            {
            }
        }
    }
}
