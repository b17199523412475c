// One mounted libfuse session: mount, run the multi-threaded loop on a dedicated thread, unmount, free.
using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text;
using Microsoft.Extensions.Logging;

namespace MirrorFS.Client.Fuse;

public sealed class FuseMountException(string message) : Exception(message);

public sealed unsafe class FuseMount : IDisposable
{
    private const string DevFuse = "/dev/fuse";
    private const int PokeWaitMs = 2_000;

    private readonly FuseMountOptions _options;
    private readonly FuseSessionState _state;
    private readonly ILogger _log;
    private readonly TaskCompletionSource<int> _loopDone = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly object _gate = new();
    private nint _session;
    private bool _started;
    private bool _closed;

    private FuseMount(string mountpoint, FuseMountOptions options, FuseSessionState state, nint session)
    {
        Mountpoint = mountpoint;
        _options = options;
        _state = state;
        _log = options.Logger;
        _session = session;
    }

    public string Mountpoint { get; }

    /// <summary>Completes with the loop's return code when the loop stops (unmount from either side).</summary>
    public Task<int> Completion => _loopDone.Task;

    /// <summary>Requests whose handler has not replied yet.</summary>
    public long InFlight => _state.InFlight;

    /// <summary>Creates the session and mounts it; requests are served once Run or RunAsync starts the loop.</summary>
    public static FuseMount Mount(FuseFileSystem fs, string mountpoint, FuseMountOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(fs);
        options ??= new FuseMountOptions();
        if (options.MaxThreads < 1 || options.MaxThreads > FuseMountOptions.MaxThreadsMax)
        {
            throw new ArgumentOutOfRangeException(nameof(options), options.MaxThreads, $"MaxThreads must be 1..{FuseMountOptions.MaxThreadsMax}");
        }
        if (!File.Exists(DevFuse))
        {
            throw new FuseMountException($"cannot mount {mountpoint}: {DevFuse} is missing; load the fuse module or give the container --device /dev/fuse");
        }
        var mp = Path.GetFullPath(mountpoint);
        if (!Directory.Exists(mp))
        {
            throw new FuseMountException($"cannot mount at {mp}: the directory does not exist; create it first");
        }
        if (!options.AllowNonEmpty && Directory.EnumerateFileSystemEntries(mp).Any())
        {
            throw new FuseMountException($"cannot mount at {mp}: the directory is not empty; use an empty directory");
        }

        var optionString = options.ToOptionString();
        var argv = new List<string> { "mirrorfs", "-o", optionString };
        if (options.Debug) argv.Add("-d");

        var state = new FuseSessionState(fs, options.Logger, options.Observer);
        var ops = FuseCallbacks.BuildOps(fs);
        var session = NewSession(argv, &ops, GCHandle.ToIntPtr(state.Handle));
        if (session == 0)
        {
            state.Handle.Free();
            throw new FuseMountException($"cannot mount at {mp}: fuse_session_new rejected the options '{optionString}' (libfuse printed why on stderr)");
        }
        var mpBytes = CString(mp);
        int rc;
        fixed (byte* p = mpBytes)
        {
            rc = FuseNative.SessionMount(session, p);
        }
        if (rc != 0)
        {
            FuseNative.SessionDestroy(session);
            state.Handle.Free();
            throw new FuseMountException($"cannot mount at {mp}: fuse_session_mount failed (needs root or fusermount3, and read/write access to {DevFuse}; see libfuse's message on stderr)");
        }
        options.Logger.LogInformation("FUSE mounted {Mountpoint} ({Options})", mp, optionString);
        if (options.ReadAheadKb > 0)
        {
            // Not now: the kernel lowers the read-ahead to libfuse's max_readahead when it processes the INIT reply,
            // which comes later; any request after it is late enough.
            state.OnFirstRequest(() => SetReadAhead(mp, options.ReadAheadKb, options.Logger));
        }
        return new FuseMount(mp, options, state, session);
    }

    private static nint NewSession(List<string> argv, FuseLowLevelOps* ops, nint userdata)
    {
        // Our strings and vector are ours to free; libfuse swaps in its own copy of args, freed by fuse_opt_free_args.
        var strings = new nint[argv.Count];
        var vector = (byte**)NativeMemory.AllocZeroed((nuint)(argv.Count + 1), (nuint)sizeof(nint));
        try
        {
            for (var i = 0; i < argv.Count; i++)
            {
                strings[i] = Marshal.StringToCoTaskMemUTF8(argv[i]);
                vector[i] = (byte*)strings[i];
            }
            var args = new FuseArgs { Argc = argv.Count, Argv = vector, Allocated = 0 };
            var se = FuseNative.SessionNew(&args, ops, (nuint)sizeof(FuseLowLevelOps), userdata);
            FuseNative.OptFreeArgs(&args);
            return se;
        }
        finally
        {
            foreach (var s in strings)
            {
                if (s != 0) Marshal.FreeCoTaskMem(s);
            }
            NativeMemory.Free(vector);
        }
    }

    /// <summary>Runs the loop on a dedicated thread; the task completes when the filesystem is unmounted.</summary>
    public Task<int> RunAsync()
    {
        StartOnce();
        var thread = new Thread(Loop) { IsBackground = true, Name = "fuse-loop " + Mountpoint };
        thread.Start();
        return _loopDone.Task;
    }

    /// <summary>Runs the loop on the calling thread until the filesystem is unmounted; returns libfuse's code.</summary>
    public int Run()
    {
        StartOnce();
        Loop();
        return _loopDone.Task.Result;
    }

    private void StartOnce()
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_closed, this);
            if (_started)
            {
                throw new InvalidOperationException($"the FUSE loop for {Mountpoint} is already running");
            }
            _started = true;
        }
    }

    private void Loop()
    {
        var cfg = FuseNative.LoopCfgCreate();
        try
        {
            FuseNative.LoopCfgSetMaxThreads(cfg, (uint)_options.MaxThreads);
            FuseNative.LoopCfgSetCloneFd(cfg, _options.CloneFd ? 1u : 0u);
            var rc = FuseNative.SessionLoopMt(_session, cfg);
            _log.LogInformation("FUSE loop for {Mountpoint} ended with {Code}", Mountpoint, rc);
            _loopDone.TrySetResult(rc);
        }
        catch (Exception e)
        {
            _loopDone.TrySetException(e);
        }
        finally
        {
            if (cfg != 0) FuseNative.LoopCfgDestroy(cfg);
        }
    }

    /// <summary>Stops the loop, unmounts, waits (bounded) for pending replies and frees the session. Idempotent.</summary>
    public void Unmount()
    {
        lock (_gate)
        {
            if (_closed) return;
            _closed = true;
        }
        var se = _session;
        if (_started && !_loopDone.Task.IsCompleted)
        {
            FuseNative.SessionExit(se);
            // Workers sleep in read(/dev/fuse); one request wakes a worker, which sees the exit flag and ends the loop.
            _ = Task.Run(() => Poke(Mountpoint));
            if (!_loopDone.Task.Wait(PokeWaitMs))
            {
                // Detaching aborts the connection once nothing holds the mount: reads then fail and the loop ends.
                DetachQuietly(Mountpoint);
                if (!_loopDone.Task.Wait(_options.UnmountTimeoutMs))
                {
                    _log.LogError("FUSE loop for {Mountpoint} did not stop within {TimeoutMs} ms; the session is leaked", Mountpoint, _options.UnmountTimeoutMs);
                    return;
                }
            }
        }
        FuseNative.SessionUnmount(se);
        var sw = Stopwatch.StartNew();
        while (_state.InFlight > 0 && sw.ElapsedMilliseconds < _options.DrainTimeoutMs)
        {
            Thread.Sleep(5);
        }
        if (_state.InFlight > 0)
        {
            // Freeing the session would let a late reply touch freed memory; leaking it is the safe failure.
            _log.LogError("FUSE {Mountpoint}: {Count} requests still unanswered after {TimeoutMs} ms; the session is leaked", Mountpoint, _state.InFlight, _options.DrainTimeoutMs);
            return;
        }
        _session = 0;
        FuseNative.SessionDestroy(se);
        _state.Handle.Free();
        if (!_started) _loopDone.TrySetResult(0);
        _log.LogInformation("FUSE unmounted {Mountpoint}", Mountpoint);
    }

    public void Dispose() => Unmount();

    private static void Poke(string path)
    {
        var buf = stackalloc byte[256];
        fixed (byte* p = CString(path))
        {
            _ = FuseNative.StatFs(p, buf);
        }
    }

    private static void DetachQuietly(string path)
    {
        fixed (byte* p = CString(path))
        {
            _ = FuseNative.Umount2(p, FuseNative.MntDetach);
        }
    }

    /// <summary>Lazily unmounts whatever is mounted at <paramref name="path"/> (umount2 MNT_DETACH, then fusermount3 -u -z).
    /// For cleanup after crashes and in tests; true when nothing is mounted there afterwards.</summary>
    public static bool ForceUnmount(string path)
    {
        var mp = Path.GetFullPath(path);
        if (!IsMountPoint(mp)) return true;
        DetachQuietly(mp);
        if (!IsMountPoint(mp)) return true;
        try
        {
            using var p = Process.Start(new ProcessStartInfo("fusermount3", ["-u", "-z", mp]) { RedirectStandardError = true, RedirectStandardOutput = true });
            p?.WaitForExit(5_000);
        }
        catch (System.ComponentModel.Win32Exception)
        {
            // fusermount3 not installed: umount2 was the only way.
        }
        return !IsMountPoint(mp);
    }

    /// <summary>Whether <paramref name="path"/> is a mount point in this process's mount namespace (reads /proc/self/mountinfo).</summary>
    public static bool IsMountPoint(string path) => DeviceOf(path) is not null;

    // mountinfo escapes space, tab, newline and backslash as \ooo.
    private static string Unescape(string s)
    {
        if (!s.Contains('\\')) return s;
        var sb = new StringBuilder(s.Length);
        for (var i = 0; i < s.Length; i++)
        {
            if (s[i] == '\\' && i + 3 < s.Length)
            {
                sb.Append((char)Convert.ToInt32(s.Substring(i + 1, 3), 8));
                i += 3;
            }
            else
            {
                sb.Append(s[i]);
            }
        }
        return sb.ToString();
    }

    /// <summary>
    /// Sets the mount's read-ahead: the kernel gives a FUSE mount 128 KiB, so a sequential read reaches the file
    /// system in 128 KiB requests whatever size the FUSE connection allows. Best effort: without the right to write
    /// /sys (not root) the kernel's default stays, and the mount works as before.
    /// </summary>
    internal static bool SetReadAhead(string mountPoint, int kb, ILogger logger)
    {
        var device = DeviceOf(mountPoint);
        if (device is null)
        {
            logger.LogWarning("read-ahead of {Mountpoint} not set: the mount is not in /proc/self/mountinfo", mountPoint);
            return false;
        }
        var path = $"/sys/class/bdi/{device}/read_ahead_kb";
        try
        {
            File.WriteAllText(path, kb.ToString(System.Globalization.CultureInfo.InvariantCulture));
            logger.LogDebug("read-ahead of {Mountpoint} set to {Kb} KiB ({Path})", mountPoint, kb, path);
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            logger.LogInformation("read-ahead of {Mountpoint} left at the kernel's default: cannot write {Path}: {Error}", mountPoint, path, e.Message);
            return false;
        }
    }

    /// <summary>"major:minor" of the newest mount at <paramref name="mountPoint"/>, from /proc/self/mountinfo.</summary>
    internal static string? DeviceOf(string mountPoint, string mountInfo = "/proc/self/mountinfo")
    {
        var mp = Path.GetFullPath(mountPoint).TrimEnd('/');
        if (mp.Length == 0) mp = "/";
        string? device = null;
        foreach (var line in File.ReadLines(mountInfo))
        {
            // "36 35 0:39 / /mnt/x rw,nosuid - fuse.mirrorfs src rw": field 3 the device, field 5 the mount point
            // with space, tab, newline and backslash written as octal escapes.
            var fields = line.Split(' ');
            if (fields.Length > 4 && Unescape(fields[4]) == mp)
            {
                device = fields[2];
            }
        }
        return device;
    }

    private static byte[] CString(string s)
    {
        var n = Encoding.UTF8.GetByteCount(s);
        var b = new byte[n + 1];
        Encoding.UTF8.GetBytes(s, b);
        return b;
    }
}
