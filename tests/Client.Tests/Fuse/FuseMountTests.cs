// Real mounts through /dev/fuse: file APIs and shell tools against the in-memory test filesystem.
using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text;
using MirrorFS.Client.Fuse;

namespace MirrorFS.Client.Tests.Fuse;

public sealed partial class FuseMountTests : IDisposable
{
    private const int StepTimeoutMs = 20_000;
    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("fuse-mount-");
    private readonly string _mp;

    public FuseMountTests()
    {
        _mp = Path.Combine(_dir.FullName, "mnt");
        Directory.CreateDirectory(_mp);
    }

    public void Dispose()
    {
        FuseMount.ForceUnmount(_mp);
        try { _dir.Delete(recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }

    private static async Task<T> Within<T>(Func<T> step, string what)
    {
        try
        {
            return await Task.Run(step).WaitAsync(TimeSpan.FromMilliseconds(StepTimeoutMs));
        }
        catch (TimeoutException)
        {
            throw new TimeoutException($"{what} did not finish within {StepTimeoutMs} ms (hung FUSE mount?)");
        }
    }

    private static Task Within(Action step, string what) => Within(() => { step(); return 0; }, what);

    private static (int Code, string Out) Sh(string script)
    {
        using var p = Process.Start(new ProcessStartInfo("/bin/sh", ["-c", script]) { RedirectStandardOutput = true, RedirectStandardError = true })!;
        var o = p.StandardOutput.ReadToEndAsync();
        var e = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(StepTimeoutMs))
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"shell step '{script}' did not finish within {StepTimeoutMs} ms");
        }
        return (p.ExitCode, o.Result + e.Result);
    }

    private (FuseMount Mount, Task<int> Loop) Start(MemoryFuseFileSystem fs)
    {
        var m = FuseMount.Mount(fs, _mp, new FuseMountOptions { FsName = "memtest", MaxThreads = 8, UnmountTimeoutMs = 5_000 });
        return (m, m.RunAsync());
    }

    [Fact(Timeout = 120_000)]
    public async Task FileAndShellOperationsReachTheFileSystem()
    {
        var fs = new MemoryFuseFileSystem();
        var (m, loop) = Start(fs);
        try
        {
            Assert.True(FuseMount.IsMountPoint(_mp));
            var a = Path.Combine(_mp, "a.txt");
            await Within(() => File.WriteAllText(a, "hello fuse"), "write a.txt");
            Assert.Equal("hello fuse", await Within(() => File.ReadAllText(a), "read a.txt"));
            Assert.True(fs.InitCalled);

            await Within(() => Directory.CreateDirectory(Path.Combine(_mp, "dir")), "mkdir");
            await Within(() => File.Move(a, Path.Combine(_mp, "dir", "b.txt")), "rename");
            Assert.False(File.Exists(a));
            var names = await Within(() => Directory.GetFileSystemEntries(_mp).Select(p => Path.GetFileName(p)!).Order().ToArray(), "list root");
            Assert.Equal(["dir"], names);

            var (code, output) = await Within(() => Sh($"cd '{_mp}' && echo shell > dir/c.txt && cat dir/b.txt dir/c.txt && ls dir && mv dir/c.txt d.txt && stat -c '%s %F' d.txt"), "shell");
            Assert.True(code == 0, output);
            Assert.Equal("hello fuseshell\nb.txt\nc.txt\n6 regular file\n", output);

            // truncate via setattr, chmod via setattr
            await Within(() => { using var f = new FileStream(Path.Combine(_mp, "d.txt"), FileMode.Open); f.SetLength(2); }, "truncate");
            Assert.Equal("sh", await Within(() => File.ReadAllText(Path.Combine(_mp, "d.txt")), "read truncated"));
            await Within(() => File.SetUnixFileMode(Path.Combine(_mp, "d.txt"), UnixFileMode.UserRead | UnixFileMode.UserWrite), "chmod");
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, await Within(() => File.GetUnixFileMode(Path.Combine(_mp, "d.txt")), "stat mode"));

            // unlink, rmdir (and its ENOTEMPTY first)
            Assert.Throws<IOException>(() => Directory.Delete(Path.Combine(_mp, "dir")));
            await Within(() => File.Delete(Path.Combine(_mp, "dir", "b.txt")), "unlink");
            await Within(() => Directory.Delete(Path.Combine(_mp, "dir")), "rmdir");
            Assert.False(Directory.Exists(Path.Combine(_mp, "dir")));

            // statfs
            var (sc, sf) = await Within(() => Sh($"stat -f -c '%S %b %f %a %c %d' '{_mp}'"), "stat -f");
            Assert.True(sc == 0, sf);
            Assert.Equal("4096 1000 400 300 100 50\n", sf);

            // xattrs through libc
            var d = Path.Combine(_mp, "d.txt");
            var value = "v1"u8.ToArray();
            Assert.Equal(0, await Within(() => SetXattr(d, "user.k", value, (nuint)value.Length, 0), "setxattr"));
            Assert.Equal("v1", await Within(() => GetX(d, "user.k"), "getxattr"));
            Assert.Equal(-1, await Within(() => SetXattr(d, "user.k", value, (nuint)value.Length, 1 /* XATTR_CREATE */), "setxattr create"));
            Assert.Equal(Errno.EEXIST, Marshal.GetLastPInvokeError());
            Assert.Equal("user.k\0", await Within(() => ListX(d), "listxattr"));
            Assert.Equal(0, await Within(() => RemoveXattr(d, "user.k"), "removexattr"));
            Assert.Null(await Within(() => GetX(d, "user.k"), "getxattr after remove"));
        }
        finally
        {
            m.Dispose();
        }
        Assert.True(await loop.WaitAsync(TimeSpan.FromSeconds(10)) >= 0);
        Assert.False(FuseMount.IsMountPoint(_mp));
        Assert.True(fs.DestroyCalled);
    }

    [Fact(Timeout = 120_000)]
    public async Task AsyncRepliesServeConcurrentReaders()
    {
        var seed = Environment.TickCount;
        Console.WriteLine($"AsyncRepliesServeConcurrentReaders seed {seed}");
        var rnd = new Random(seed);
        var content = new byte[1 << 20];
        rnd.NextBytes(content);
        var fs = new MemoryFuseFileSystem();
        var (m, _) = Start(fs);
        try
        {
            var f = Path.Combine(_mp, "big.bin");
            await Within(() => File.WriteAllBytes(f, content), "write big.bin");
            fs.ReplyDelayMs = 3;
            // Reads from separate processes bypass nothing but the page cache; drop it by reopening with O_DIRECT-free reads of fresh handles.
            var readers = Enumerable.Range(0, 8).Select(i => Within(() =>
            {
                using var s = new FileStream(f, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, 1, FileOptions.None);
                var buf = new byte[content.Length];
                s.ReadExactly(buf);
                return buf;
            }, $"reader {i}")).ToArray();
            foreach (var r in await Task.WhenAll(readers))
            {
                Assert.True(r.AsSpan().SequenceEqual(content), "a concurrent reader saw different bytes");
            }
            // getattr always goes to the fs after the attr timeout; force one async reply at least.
            await Task.Delay(1_100);
            var (code, output) = await Within(() => Sh($"stat -c %s '{f}'"), "stat after delay");
            Assert.True(code == 0, output);
            Assert.Equal($"{content.Length}\n", output);
            Assert.True(fs.AsyncReplies > 0, "no reply was sent from another thread after the callback returned");
        }
        finally
        {
            m.Dispose();
        }
        Assert.Equal(0, m.InFlight);
    }

    [Fact(Timeout = 60_000)]
    public async Task HandlerFailureAndMissingReplyBecomeEio()
    {
        var fs = new MemoryFuseFileSystem();
        var (m, _) = Start(fs);
        try
        {
            var (c1, o1) = await Within(() => Sh($"stat '{_mp}/boom'"), "stat boom");
            Assert.NotEqual(0, c1);
            Assert.Contains("Input/output error", o1, StringComparison.Ordinal);
            var (c2, o2) = await Within(() => Sh($"stat '{_mp}/silent'"), "stat silent");
            Assert.NotEqual(0, c2);
            Assert.Contains("Input/output error", o2, StringComparison.Ordinal);
            var (c3, o3) = await Within(() => Sh($"stat '{_mp}/absent'"), "stat absent");
            Assert.NotEqual(0, c3);
            Assert.Contains("No such file or directory", o3, StringComparison.Ordinal);
        }
        finally
        {
            m.Dispose();
        }
    }

    [Fact(Timeout = 120_000)]
    public async Task MountpointIsReusableAfterEitherSideUnmounts()
    {
        // 1: the process unmounts.
        var (m1, loop1) = Start(new MemoryFuseFileSystem());
        await Within(() => File.WriteAllText(Path.Combine(_mp, "x"), "1"), "write on first mount");
        // An open file keeps the mount busy: unmount must still stop the loop.
        var held = await Within(() => new FileStream(Path.Combine(_mp, "x"), FileMode.Open, FileAccess.Read), "open held file");
        try
        {
            await Within(m1.Unmount, "unmount with an open file");
            Assert.True(loop1.IsCompleted);
            Assert.False(FuseMount.IsMountPoint(_mp));
        }
        finally
        {
            held.Dispose();
        }
        Assert.Empty(Directory.GetFileSystemEntries(_mp));

        // 2: mount again at the same place; fusermount3 unmounts from outside; the loop notices.
        var fs2 = new MemoryFuseFileSystem();
        var (m2, loop2) = Start(fs2);
        try
        {
            await Within(() => File.WriteAllText(Path.Combine(_mp, "y"), "2"), "write on second mount");
            var (code, output) = await Within(() => Sh($"fusermount3 -u '{_mp}'"), "fusermount3 -u");
            Assert.True(code == 0, output);
            await loop2.WaitAsync(TimeSpan.FromSeconds(10));
            Assert.False(FuseMount.IsMountPoint(_mp));
        }
        finally
        {
            m2.Dispose();
        }

        // 3: and once more, to show the directory is clean and usable.
        var (m3, _) = Start(new MemoryFuseFileSystem());
        try
        {
            Assert.Empty(await Within(() => Directory.GetFileSystemEntries(_mp), "list third mount"));
        }
        finally
        {
            m3.Dispose();
        }
        Assert.False(FuseMount.IsMountPoint(_mp));
    }

    [Fact]
    public void MountRejectsMissingOrNonEmptyMountpoints()
    {
        var missing = Path.Combine(_dir.FullName, "nope");
        var e1 = Assert.Throws<FuseMountException>(() => FuseMount.Mount(new MemoryFuseFileSystem(), missing));
        Assert.Contains("does not exist", e1.Message, StringComparison.Ordinal);
        Assert.Contains(missing, e1.Message, StringComparison.Ordinal);

        File.WriteAllText(Path.Combine(_mp, "occupant"), "x");
        var e2 = Assert.Throws<FuseMountException>(() => FuseMount.Mount(new MemoryFuseFileSystem(), _mp));
        Assert.Contains("not empty", e2.Message, StringComparison.Ordinal);

        var e3 = Assert.Throws<ArgumentException>(() => FuseMount.Mount(new MemoryFuseFileSystem(), _dir.FullName, new FuseMountOptions { FsName = "a\\,allow_other", AllowNonEmpty = true }));
        Assert.Contains("FsName", e3.Message, StringComparison.Ordinal);
        Assert.False(FuseMount.IsMountPoint(_mp));
    }

    [Fact]
    public void OnlyOverriddenOperationsAreRegistered()
    {
        Assert.True(FuseCallbacks.Overrides(typeof(MemoryFuseFileSystem), nameof(FuseFileSystem.ReadDirPlus)));
        Assert.False(FuseCallbacks.Overrides(typeof(MemoryFuseFileSystem), nameof(FuseFileSystem.ReadDir)));
        var ops = FuseCallbacks.BuildOps(new MemoryFuseFileSystem());
        unsafe
        {
            Assert.True(ops.ReadDirPlus != null);
            Assert.True(ops.ReadDir == null);
            Assert.True(ops.Forget != null);
            Assert.True(ops.Ioctl == null);
        }
    }

    private static string? GetX(string path, string name)
    {
        var buf = new byte[256];
        var n = GetXattr(path, name, buf, (nuint)buf.Length);
        return n < 0 ? null : Encoding.UTF8.GetString(buf, 0, (int)n);
    }

    private static string ListX(string path)
    {
        var buf = new byte[256];
        var n = ListXattr(path, buf, (nuint)buf.Length);
        return n < 0 ? throw new IOException($"listxattr {path} failed: errno {Marshal.GetLastPInvokeError()}") : Encoding.UTF8.GetString(buf, 0, (int)n);
    }

    [LibraryImport("libc", EntryPoint = "setxattr", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int SetXattr(string path, string name, byte[] value, nuint size, int flags);

    [LibraryImport("libc", EntryPoint = "getxattr", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial nint GetXattr(string path, string name, byte[] value, nuint size);

    [LibraryImport("libc", EntryPoint = "listxattr", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial nint ListXattr(string path, byte[] list, nuint size);

    [LibraryImport("libc", EntryPoint = "removexattr", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int RemoveXattr(string path, string name);
}
