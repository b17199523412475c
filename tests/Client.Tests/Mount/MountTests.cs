// End-to-end tests on real FUSE mounts of MirrorFS: shell tools, persistence, two mounts, parallel writers,
// chunk boundaries and a kill -9 of the mount process.
using System.Security.Cryptography;
using Xunit.Abstractions;

namespace MirrorFS.Client.Tests.Mount;

[Collection(MountCollection.Name)]
public sealed class MountTests(ITestOutputHelper log) : IAsyncLifetime
{
    private const int TestTimeoutMs = 180_000;
    private MountEnv _env = null!;

    public async Task InitializeAsync() => _env = await MountEnv.StartAsync(log);

    public async Task DisposeAsync() => await _env.DisposeAsync();

    private string Mp(string name = "mnt") => Path.Combine(_env.Root, name);

    private static string RepoRoot()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
        {
            if (File.Exists(Path.Combine(d.FullName, "Mirror.sln")))
            {
                return d.FullName;
            }
        }
        throw new InvalidOperationException($"no Mirror.sln above {AppContext.BaseDirectory}");
    }

    [Fact(Timeout = TestTimeoutMs)]
    public async Task ShellToolsWorkOnTheMount()
    {
        var m = await _env.MountAsync(Mp());
        var mp = m.MountPoint;
        var src = Path.Combine(RepoRoot(), "src", "Core");

        await Shell.OkAsync($"cp -r '{src}' '{mp}/core' && diff -r '{src}' '{mp}/core'");

        await Shell.OkAsync("echo moved > a && mv a b && test ! -e a && test \"$(cat b)\" = moved", mp);
        await Shell.OkAsync("mkdir -p d1/d2 && mv b d1/d2/c && mv d1 d3 && test \"$(cat d3/d2/c)\" = moved", mp);

        await Shell.OkAsync("ln d3/d2/c hard && test \"$(stat -c %h hard)\" = 2 && echo more >> hard && grep -q more d3/d2/c", mp);
        await Shell.OkAsync("ln -s d3/d2/c soft && test \"$(readlink soft)\" = d3/d2/c && grep -q moved soft", mp);

        Assert.Equal("640 -rw-r-----\n", await Shell.OkAsync("chmod 640 hard && stat -c '%a %A' hard", mp));
        Assert.Equal("755\n", await Shell.OkAsync("chmod u+x,go+rx hard && stat -c %a d3/d2/c", mp));

        await Shell.OkAsync("printf 0123456789 > t && truncate -s 3000000 t", mp);
        Assert.Equal("3000000\n", await Shell.OkAsync("stat -c %s t", mp));
        Assert.Equal("0123456789\n", await Shell.OkAsync("head -c 10 t; echo", mp));
        Assert.Equal("0\n", await Shell.OkAsync("tail -c +11 t | tr -d '\\0' | wc -c", mp));
        await Shell.OkAsync("truncate -s 4 t", mp);
        Assert.Equal("4 0123\n", await Shell.OkAsync("printf '%s %s\\n' $(stat -c %s t) $(cat t)", mp));

        var outside = _env.NewDir("outside");
        await Shell.OkAsync($"dd if=/dev/urandom of='{outside}/big' bs=1M count=5 status=none");
        await Shell.OkAsync($"dd if='{outside}/big' of='{mp}/big' bs=256k conv=fsync status=none");
        var md5 = await Shell.OkAsync($"md5sum < '{outside}/big'");
        Assert.Equal(md5, await Shell.OkAsync($"md5sum < '{mp}/big'"));

        await Shell.OkAsync($"tar cf '{outside}/core.tar' -C '{mp}' core && mkdir '{mp}/untar' && tar xf '{outside}/core.tar' -C '{mp}/untar' && diff -r '{src}' '{mp}/untar/core'");
        await Shell.OkAsync($"tar cf '{mp}/in.tar' -C '{src}' . && mkdir '{outside}/x' && tar xf '{mp}/in.tar' -C '{outside}/x' && diff -r '{src}' '{outside}/x'");

        await Shell.OkAsync("mkdir repo && cd repo && git init -q && echo one > f && git add f && git commit -qm first && echo two >> f && git commit -qam second", mp);
        var gitLog = await Shell.OkAsync("git log --format=%s && git status --porcelain && git fsck --no-progress >/dev/null", Path.Combine(mp, "repo"));
        Assert.Equal("second\nfirst\n", gitLog);
    }

    [Fact(Timeout = TestTimeoutMs)]
    public async Task SequentialIoTravelsInOneMiBRequests()
    {
        // The mount asks for 1 MiB requests at init (libfuse's default is 128 KiB) and sets a 1 MiB read-ahead (the
        // kernel gives FUSE 128 KiB): 8 MiB written and read back in 1 MiB pieces take about 8 write and 8 read
        // requests, not 64 of each.
        var m = await _env.MountAsync(Mp());
        await Shell.OkAsync("head -c 8388608 /dev/urandom > /tmp/mirrorfs-req-src && dd if=/tmp/mirrorfs-req-src of=big bs=1M conv=fsync status=none", m.MountPoint);
        await Shell.OkAsync("sync && echo 3 > /proc/sys/vm/drop_caches");
        await Shell.OkAsync("dd if=big bs=1M status=none | cmp - /tmp/mirrorfs-req-src && rm -f /tmp/mirrorfs-req-src", m.MountPoint);
        var stats = Core.Tests.Metrics.PrometheusParser.Parse(await Shell.OkAsync("cat .stats", m.MountPoint));
        double Ops(string op) => Core.Tests.Metrics.PrometheusParser.Value(stats, "mirrorfs_fuse_ops_duration_seconds_count", ("op", op));
        log.WriteLine($"8 MiB: {Ops("write")} write requests, {Ops("read")} read requests");
        Assert.InRange(Ops("write"), 8, 16);
        Assert.InRange(Ops("read"), 8, 24);
    }

    [Fact(Timeout = TestTimeoutMs)]
    public async Task FilesSurviveUnmountAndRemount()
    {
        var mp = Mp();
        var files = new Dictionary<string, byte[]>();
        var rnd = new Random(4242);
        foreach (var (name, size) in new[] { ("empty", 0), ("small", 17), ("block", 1 << 20), ("multi", (3 << 20) + 12345), ("d/e/nested", 4096) })
        {
            var b = new byte[size];
            rnd.NextBytes(b);
            files[name] = b;
        }
        var m = await _env.MountAsync(mp);
        await Blocking.RunAsync(() =>
        {
            Directory.CreateDirectory(Path.Combine(mp, "d", "e"));
            foreach (var (name, data) in files)
            {
                File.WriteAllBytes(Path.Combine(mp, name), data);
            }
            File.CreateSymbolicLink(Path.Combine(mp, "link"), "small");
        });
        await MountEnv.UnmountAsync(m);
        Assert.Empty(Directory.EnumerateFileSystemEntries(mp));

        await _env.MountAsync(mp);
        await Blocking.RunAsync(() =>
        {
            foreach (var (name, data) in files)
            {
                Assert.True(data.AsSpan().SequenceEqual(File.ReadAllBytes(Path.Combine(mp, name))), $"{name} differs after remount");
            }
            Assert.Equal("small", new FileInfo(Path.Combine(mp, "link")).LinkTarget);
            // The mount's virtual files (.stats, .config, .accesslog) are reachable by name but not listed by default.
            string[] names = ["d", "link", .. files.Keys.Where(k => !k.Contains('/'))];
            Assert.Equal(names.Order(StringComparer.Ordinal), Directory.EnumerateFileSystemEntries(mp).Select(p => Path.GetFileName(p)).Order(StringComparer.Ordinal));
        });
    }

    [Fact(Timeout = TestTimeoutMs)]
    public async Task TwoMountsSeeEachOthersChanges()
    {
        string[] noCache = ["--attr-cache", "0", "--entry-cache", "0"];
        var a = await _env.MountAsync(Mp("a"), noCache);
        var b = await _env.MountAsync(Mp("b"), noCache);
        var data = RandomNumberGenerator.GetBytes((2 << 20) + 777);

        await Blocking.RunAsync(() =>
        {
            // Close-to-open: A's close makes its bytes visible to an open on B.
            File.WriteAllBytes(Path.Combine(a.MountPoint, "shared"), data);
            Assert.True(data.AsSpan().SequenceEqual(File.ReadAllBytes(Path.Combine(b.MountPoint, "shared"))), "B read other bytes than A wrote");

            File.Move(Path.Combine(b.MountPoint, "shared"), Path.Combine(b.MountPoint, "renamed"));
            Assert.False(File.Exists(Path.Combine(a.MountPoint, "shared")), "A still sees the old name after B's rename");
            Assert.True(data.AsSpan().SequenceEqual(File.ReadAllBytes(Path.Combine(a.MountPoint, "renamed"))), "A read other bytes under the new name");

            // Overwrite on B, then A's new open sees the new content and size.
            File.WriteAllText(Path.Combine(b.MountPoint, "renamed"), "short now");
            Assert.Equal("short now", File.ReadAllText(Path.Combine(a.MountPoint, "renamed")));
            Directory.CreateDirectory(Path.Combine(a.MountPoint, "dir"));
            Assert.True(Directory.Exists(Path.Combine(b.MountPoint, "dir")));
        });
    }

    [Fact(Timeout = TestTimeoutMs)]
    public async Task ParallelWritersKeepTheirOwnBytes()
    {
        var m = await _env.MountAsync(Mp());
        const int writers = 8;
        var seed = Environment.TickCount;
        log.WriteLine($"seed {seed}");
        var expected = new byte[writers][];
        var rnd = new Random(seed);
        for (var i = 0; i < writers; i++)
        {
            expected[i] = new byte[rnd.Next(1, 3 << 20)];
            rnd.NextBytes(expected[i]);
        }
        var threads = Enumerable.Range(0, writers).Select(i => Blocking.RunAsync(() =>
        {
            // Uneven chunk sizes so writes straddle block boundaries at different points in each file.
            using var f = new FileStream(Path.Combine(m.MountPoint, $"w{i}"), FileMode.CreateNew, FileAccess.Write, FileShare.None, 1);
            var data = expected[i];
            for (var off = 0; off < data.Length;)
            {
                var n = Math.Min(data.Length - off, 10_000 + (i * 7_919));
                f.Write(data, off, n);
                off += n;
            }
        })).ToArray();
        await Task.WhenAll(threads);
        await Blocking.RunAsync(() =>
        {
            for (var i = 0; i < writers; i++)
            {
                Assert.True(expected[i].AsSpan().SequenceEqual(File.ReadAllBytes(Path.Combine(m.MountPoint, $"w{i}"))), $"w{i} differs (seed {seed})");
            }
        });
    }

    [Fact(Timeout = TestTimeoutMs)]
    public async Task SparseWriteAcrossAChunkBoundary()
    {
        const long chunk = 64L << 20;
        var m = await _env.MountAsync(Mp());
        var path = Path.Combine(m.MountPoint, "sparse");
        var data = new byte[200];
        new Random(7).NextBytes(data);
        await Blocking.RunAsync(() =>
        {
            using (var f = new FileStream(path, FileMode.CreateNew, FileAccess.Write))
            {
                f.Position = chunk - 100;
                f.Write(data);
            }
            Assert.Equal(chunk + 100, new FileInfo(path).Length);

            using var r = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20);
            var buf = new byte[1 << 20];
            long pos = 0;
            while (pos < chunk - 100)
            {
                var n = r.Read(buf, 0, (int)Math.Min(buf.Length, chunk - 100 - pos));
                Assert.True(n > 0, $"short read at {pos}");
                var nonZero = buf.AsSpan(0, n).IndexOfAnyExcept((byte)0);
                Assert.True(nonZero < 0, $"hole holds a non-zero byte at {pos + nonZero}");
                pos += n;
            }
            var tail = new byte[300];
            var got = r.ReadAtLeast(tail, 200, throwOnEndOfStream: false);
            Assert.Equal(200, got);
            Assert.True(data.AsSpan().SequenceEqual(tail.AsSpan(0, 200)), "bytes across the chunk boundary differ");

            // A read that starts on one side of the boundary and ends on the other.
            using var r2 = new FileStream(path, FileMode.Open, FileAccess.Read);
            r2.Position = chunk - 10;
            var mid = new byte[20];
            r2.ReadExactly(mid);
            Assert.True(data.AsSpan(90, 20).SequenceEqual(mid));
        });
    }

    // A full 1 GiB file spans 16 chunks and 256 blocks; a sparse 1 GiB file has data only around chunk boundaries.
    // Both are compared byte for byte with the same file built outside the mount, after a remount (cold caches).
    [Fact(Timeout = 300_000)]
    public async Task OneGibFilesFullAndSparseSurviveARemount()
    {
        var mp = Mp();
        var m = await _env.MountAsync(mp);
        var outside = _env.NewDir("gib");
        await Shell.OkAsync($"head -c 1073741824 /dev/urandom > '{outside}/full' && dd if='{outside}/full' of='{mp}/full' bs=4M conv=fsync status=none");
        const string sparseOps = "truncate -s 1G {0}/sparse && for off in 67108800 134217700 536870900 1073741000; do " +
                                 "printf 'chunk-edge-%s' $off | dd of={0}/sparse bs=1 seek=$off conv=notrunc,fsync status=none; done";
        await Shell.OkAsync(string.Format(System.Globalization.CultureInfo.InvariantCulture, sparseOps, $"'{outside}'"));
        await Shell.OkAsync(string.Format(System.Globalization.CultureInfo.InvariantCulture, sparseOps, $"'{mp}'"));
        await MountEnv.UnmountAsync(m);

        m = await _env.MountAsync(mp);
        Assert.Equal("1073741824 1073741824\n", await Shell.OkAsync("stat -c %s full sparse | paste -sd' '", mp));
        await Shell.OkAsync($"cmp '{outside}/full' '{mp}/full' && cmp '{outside}/sparse' '{mp}/sparse'");
    }

    [Fact(Timeout = TestTimeoutMs)]
    public async Task KillNineOfTheMountKeepsFsyncedFiles()
    {
        var mp = Mp();
        var m = await _env.MountAsync(mp);
        var outside = _env.NewDir("src");
        var done = Path.Combine(_env.Root, "done.txt");
        const int files = 40;
        await Shell.OkAsync($"for i in $(seq 1 {files}); do head -c $((100000 + i * 5000)) /dev/urandom > \"{outside}/f$i\"; done");

        // Each file is recorded only after dd's fsync returned; the loop keeps going until the mount dies.
        var writer = Shell.RunAsync(
            $"for i in $(seq 1 {files}); do dd if=\"{outside}/f$i\" of=\"{mp}/f$i\" bs=64k conv=fsync status=none || exit 0; echo $i >> '{done}'; done",
            null);
        var deadline = Environment.TickCount64 + 60_000;
        while ((File.Exists(done) ? File.ReadAllLines(done).Length : 0) < 5)
        {
            Assert.True(Environment.TickCount64 < deadline, "the writer did not fsync 5 files within 60 s");
            Assert.False(writer.IsCompleted && (File.Exists(done) ? File.ReadAllLines(done).Length : 0) < 5, "the writer stopped early");
            await Task.Delay(20);
        }
        m.Process.Kill();
        await m.Process.WaitForExitAsync(new CancellationTokenSource(MountEnv.ExitWaitMs).Token);
        await writer.WaitAsync(TimeSpan.FromMilliseconds(MountEnv.ShellTimeoutMs));
        await Shell.OkAsync($"fusermount3 -uz '{mp}'");
        Assert.False(MountEnv.IsMounted(mp));

        var synced = File.ReadAllLines(done).Where(l => l.Length > 0).Select(int.Parse).ToArray();
        log.WriteLine($"{synced.Length} files fsync'ed before kill -9");
        await _env.MountAsync(mp);
        await Blocking.RunAsync(() =>
        {
            foreach (var i in synced)
            {
                var want = File.ReadAllBytes(Path.Combine(outside, $"f{i}"));
                Assert.True(want.AsSpan().SequenceEqual(File.ReadAllBytes(Path.Combine(mp, $"f{i}"))), $"f{i} was fsync'ed but differs after kill -9");
            }
            File.WriteAllText(Path.Combine(mp, "after"), "works");
            Assert.Equal("works", File.ReadAllText(Path.Combine(mp, "after")));
        });
    }
}
