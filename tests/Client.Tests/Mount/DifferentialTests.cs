// Seeded differential test: the same random system calls on a MirrorFS mount and on a tmpfs directory must give the
// same outcomes (errno) and leave the same tree (types, sizes, modes, bytes, link targets).
using System.Runtime.InteropServices;
using System.Text;
using Xunit.Abstractions;

namespace MirrorFS.Client.Tests.Mount;

[Collection(MountCollection.Name)]
public sealed partial class DifferentialTests(ITestOutputHelper log) : IAsyncLifetime
{
    private const int OpCount = 150;
    private const int WriteBytesMax = 300_000;
    private const int XattrValueBytesMax = 64;
    private const int O_RDONLY = 0;
    private const int O_WRONLY = 1;
    private const int O_CREAT = 0x40;
    private const int EEXIST = 17;
    private const int ENOTEMPTY = 39;

    private static readonly string[] Paths = ["a", "b", "c", "d0", "d1", "d0/a", "d0/b", "d0/d2", "d0/d2/a", "d1/a", "d1/c"];

    private MountEnv _env = null!;

    public async Task InitializeAsync() => _env = await MountEnv.StartAsync(log);

    public async Task DisposeAsync() => await _env.DisposeAsync();

    [Fact(Timeout = 240_000)]
    public async Task RandomOperationsMatchALocalFileSystem()
    {
        var seed = Environment.GetEnvironmentVariable("MIRRORFS_DIFF_SEED") is { } s ? int.Parse(s) : Random.Shared.Next();
        log.WriteLine($"seed {seed} (rerun with MIRRORFS_DIFF_SEED={seed})");
        // The root's virtual files (.stats, .accesslog...) have no tmpfs twin: leave them out of listings.
        var mount = await _env.MountAsync(Path.Combine(_env.Root, "mnt"));
        var shm = Directory.Exists("/dev/shm") ? "/dev/shm" : Path.GetTempPath();
        var reference = Path.Combine(shm, "mirrorfs-diff-" + Guid.NewGuid().ToString("N")[..12]);
        Directory.CreateDirectory(reference);
        try
        {
            await Blocking.RunAsync(() => Run(seed, mount.MountPoint, reference));
        }
        finally
        {
            Directory.Delete(reference, recursive: true);
        }
    }

    private void Run(int seed, string mnt, string reference)
    {
        var rnd = new Random(seed);
        var trace = new List<string>();
        for (var i = 0; i < OpCount; i++)
        {
            var op = NextOp(rnd);
            var onMount = op.Apply(mnt);
            var onRef = op.Apply(reference);
            trace.Add($"#{i} {op.Describe()} -> ref {onRef.Errno} mount {onMount.Errno}");
            if (Class(onMount.Errno) != Class(onRef.Errno) || !onMount.Data.AsSpan().SequenceEqual(onRef.Data))
            {
                Assert.Fail($"seed {seed}: op #{i} {op.Describe()} gave errno {onMount.Errno} ({onMount.Data.Length} bytes) on the mount " +
                            $"but errno {onRef.Errno} ({onRef.Data.Length} bytes) on {reference}; last ops:\n" +
                            string.Join("\n", trace.TakeLast(15)));
            }
        }
        log.WriteLine(string.Join("\n", trace));
        var want = Snapshot(reference);
        var got = Snapshot(mnt);
        Assert.True(want.Count > 0, "the random operations left nothing to compare");
        Assert.Equal(want.Keys.Order(StringComparer.Ordinal), got.Keys.Order(StringComparer.Ordinal));
        foreach (var (path, w) in want)
        {
            Assert.True(w == got[path], $"seed {seed}: {path} is {got[path]} on the mount but {w} on the reference");
        }
    }

    // POSIX lets rename and rmdir of a non-empty directory answer either.
    private static int Class(int errno) => errno == ENOTEMPTY ? EEXIST : errno;

    private static Op NextOp(Random rnd)
    {
        string P() => Paths[rnd.Next(Paths.Length)];
        return rnd.Next(100) switch
        {
            < 25 => new Write(P(), rnd.Next(0, 2) == 0 ? 0 : rnd.Next(WriteBytesMax), rnd.Next(1, WriteBytesMax / 3), rnd.Next()),
            < 33 => new Truncate(P(), rnd.Next(WriteBytesMax)),
            < 43 => new Rename(P(), P()),
            < 49 => new Link(P(), P()),
            < 56 => new Unlink(P()),
            < 66 => new Mkdir(P()),
            < 71 => new Rmdir(P()),
            < 76 => new Chmod(P(), (uint)(rnd.Next(2) == 0 ? 0x1a4 /* 0644 */ : 0x1ed /* 0755 */) ^ (uint)rnd.Next(0, 8)),
            < 80 => new Symlink(P(), P()),
            < 88 => new SetXattr(P(), $"user.k{rnd.Next(2)}", rnd.Next(1, XattrValueBytesMax), rnd.Next()),
            < 94 => new GetXattr(P(), $"user.k{rnd.Next(2)}"),
            _ => new Read(P()),
        };
    }

    private sealed record Entry(string Kind, long Size, int Mode, string Content);

    private static Dictionary<string, Entry> Snapshot(string root)
    {
        var result = new Dictionary<string, Entry>();
        foreach (var fsi in new DirectoryInfo(root).EnumerateFileSystemInfos("*", new EnumerationOptions { RecurseSubdirectories = true, AttributesToSkip = 0 }))
        {
            var rel = Path.GetRelativePath(root, fsi.FullName);
            var mode = (int)fsi.UnixFileMode;
            result[rel] = fsi switch
            {
                _ when fsi.LinkTarget is { } target => new Entry("symlink", 0, 0, target),
                FileInfo f => new Entry("file", f.Length, mode, Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(File.ReadAllBytes(f.FullName)))),
                _ => new Entry("dir", 0, mode, ""),
            };
        }
        return result;
    }

    private sealed record Outcome(int Errno, byte[] Data)
    {
        public static Outcome Of(long rc) => new(rc < 0 ? Marshal.GetLastPInvokeError() : 0, []);
    }

    private abstract record Op
    {
        public abstract Outcome Apply(string root);

        public abstract string Describe();

        protected static string At(string root, string p) => Path.Combine(root, p);
    }

    private sealed record Write(string P, int Offset, int Length, int Seed) : Op
    {
        public override unsafe Outcome Apply(string root)
        {
            var fd = Libc.Open(At(root, P), O_WRONLY | O_CREAT, 0x1a4);
            if (fd < 0)
            {
                return Outcome.Of(fd);
            }
            var data = new byte[Length];
            new Random(Seed).NextBytes(data);
            long rc;
            fixed (byte* b = data)
            {
                rc = Libc.Pwrite(fd, b, data.Length, Offset);
            }
            var result = rc < 0 ? Outcome.Of(rc) : rc != Length ? new Outcome(-1, []) : new Outcome(0, []);
            var closed = Libc.Close(fd);
            return result.Errno != 0 ? result : Outcome.Of(closed);
        }

        public override string Describe() => $"write {P} @{Offset} +{Length}";
    }

    private sealed record Truncate(string P, long Size) : Op
    {
        public override Outcome Apply(string root) => Outcome.Of(Libc.Truncate(At(root, P), Size));

        public override string Describe() => $"truncate {P} {Size}";
    }

    private sealed record Rename(string From, string To) : Op
    {
        public override Outcome Apply(string root) => Outcome.Of(Libc.Rename(At(root, From), At(root, To)));

        public override string Describe() => $"rename {From} {To}";
    }

    private sealed record Link(string From, string To) : Op
    {
        public override Outcome Apply(string root) => Outcome.Of(Libc.Link(At(root, From), At(root, To)));

        public override string Describe() => $"link {From} {To}";
    }

    private sealed record Unlink(string P) : Op
    {
        public override Outcome Apply(string root) => Outcome.Of(Libc.Unlink(At(root, P)));

        public override string Describe() => $"unlink {P}";
    }

    private sealed record Mkdir(string P) : Op
    {
        public override Outcome Apply(string root) => Outcome.Of(Libc.Mkdir(At(root, P), 0x1ed));

        public override string Describe() => $"mkdir {P}";
    }

    private sealed record Rmdir(string P) : Op
    {
        public override Outcome Apply(string root) => Outcome.Of(Libc.Rmdir(At(root, P)));

        public override string Describe() => $"rmdir {P}";
    }

    private sealed record Chmod(string P, uint Mode) : Op
    {
        public override Outcome Apply(string root) => Outcome.Of(Libc.Chmod(At(root, P), Mode));

        public override string Describe() => $"chmod {P} {Convert.ToString(Mode, 8)}";
    }

    private sealed record Symlink(string Target, string P) : Op
    {
        public override Outcome Apply(string root) => Outcome.Of(Libc.Symlink(Target, At(root, P)));

        public override string Describe() => $"symlink {P} -> {Target}";
    }

    private sealed record SetXattr(string P, string Name, int Length, int Seed) : Op
    {
        public override unsafe Outcome Apply(string root)
        {
            var value = new byte[Length];
            new Random(Seed).NextBytes(value);
            fixed (byte* v = value)
            {
                return Outcome.Of(Libc.SetXattr(At(root, P), Name, v, value.Length, 0));
            }
        }

        public override string Describe() => $"setxattr {P} {Name} ({Length} bytes)";
    }

    private sealed record GetXattr(string P, string Name) : Op
    {
        public override unsafe Outcome Apply(string root)
        {
            var buf = new byte[XattrValueBytesMax];
            long n;
            fixed (byte* b = buf)
            {
                n = Libc.GetXattr(At(root, P), Name, b, buf.Length);
            }
            return n < 0 ? Outcome.Of(n) : new Outcome(0, buf[..(int)n]);
        }

        public override string Describe() => $"getxattr {P} {Name}";
    }

    private sealed record Read(string P) : Op
    {
        public override unsafe Outcome Apply(string root)
        {
            var fd = Libc.Open(At(root, P), O_RDONLY, 0);
            if (fd < 0)
            {
                return Outcome.Of(fd);
            }
            var all = new MemoryStream();
            var buf = new byte[65536];
            long n;
            do
            {
                fixed (byte* b = buf)
                {
                    n = Libc.ReadFd(fd, b, buf.Length);
                }
                if (n > 0)
                {
                    all.Write(buf, 0, (int)n);
                }
            }
            while (n > 0);
            var errno = n < 0 ? Marshal.GetLastPInvokeError() : 0;
            Libc.Close(fd);
            return new Outcome(errno, errno == 0 ? Encoding.Latin1.GetBytes(Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(all.ToArray()))) : []);
        }

        public override string Describe() => $"read {P}";
    }

    private static unsafe partial class Libc
    {
        [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
        public static partial int Open(string path, int flags, uint mode);

        [LibraryImport("libc", EntryPoint = "pwrite", SetLastError = true)]
        public static partial nint Pwrite(int fd, byte* buf, nint count, long offset);

        [LibraryImport("libc", EntryPoint = "read", SetLastError = true)]
        public static partial nint ReadFd(int fd, byte* buf, nint count);

        [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
        public static partial int Close(int fd);

        [LibraryImport("libc", EntryPoint = "truncate", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
        public static partial int Truncate(string path, long length);

        [LibraryImport("libc", EntryPoint = "rename", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
        public static partial int Rename(string from, string to);

        [LibraryImport("libc", EntryPoint = "link", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
        public static partial int Link(string from, string to);

        [LibraryImport("libc", EntryPoint = "unlink", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
        public static partial int Unlink(string path);

        [LibraryImport("libc", EntryPoint = "mkdir", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
        public static partial int Mkdir(string path, uint mode);

        [LibraryImport("libc", EntryPoint = "rmdir", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
        public static partial int Rmdir(string path);

        [LibraryImport("libc", EntryPoint = "chmod", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
        public static partial int Chmod(string path, uint mode);

        [LibraryImport("libc", EntryPoint = "symlink", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
        public static partial int Symlink(string target, string path);

        [LibraryImport("libc", EntryPoint = "setxattr", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
        public static partial int SetXattr(string path, string name, byte* value, nint size, int flags);

        [LibraryImport("libc", EntryPoint = "getxattr", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
        public static partial nint GetXattr(string path, string name, byte* value, nint size);
    }
}
