// Observability and mount hygiene on real FUSE mounts: .stats, .config, .accesslog, --metrics, the virtual files'
// protection, PRUNEFS, and mounting through mount(8) with the mount.mirrorfs helper and an fstab line.
using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using MirrorFS.Client.Cli;
using MirrorFS.Client.Mount;
using MirrorFS.Core.Tests.Metrics;
using Xunit.Abstractions;

namespace MirrorFS.Client.Tests.Mount;

[Collection(MountCollection.Name)]
public sealed class ObservabilityMountTests(ITestOutputHelper log) : IAsyncLifetime
{
    private const int TestTimeoutMs = 240_000;
    private const string StorageSecret = "storage-secret-do-not-show-42";
    private const int AccessLogWaitMs = 60_000;

    private MountEnv _env = null!;
    private readonly List<MountProcess> _own = [];

    public async Task InitializeAsync() =>
        _env = await MountEnv.StartAsync(log, storageQuery: "?secret-key=" + StorageSecret);

    public async Task DisposeAsync()
    {
        foreach (var m in _own)
        {
            await MountEnv.ForceDownAsync(m);
            log.WriteLine($"--- mirrorfs mount {m.MountPoint} ---\n{m.Output}");
            m.Process.Dispose();
        }
        await _env.DisposeAsync();
    }

    private string Mp(string name = "mnt") => Path.Combine(_env.Root, name);

    private static Dictionary<string, Family> Stats(string text) => PrometheusParser.Parse(text);

    /// <summary>Like MountEnv.MountAsync, with a META-URL and environment of the test's choosing.</summary>
    private async Task<MountProcess> MountWithAsync(string url, string mp, IReadOnlyDictionary<string, string>? env, params string[] args)
    {
        Directory.CreateDirectory(mp);
        var psi = new ProcessStartInfo("dotnet") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in (string[])[Path.Combine(AppContext.BaseDirectory, "mirrorfs.dll"), "mount", url, mp, .. args])
        {
            psi.ArgumentList.Add(a);
        }
        foreach (var (k, v) in env ?? new Dictionary<string, string>())
        {
            psi.Environment[k] = v;
        }
        var m = new MountProcess(mp, Process.Start(psi)!);
        _own.Add(m);
        var deadline = Environment.TickCount64 + MountEnv.MountWaitMs;
        while (!MountEnv.IsMounted(mp))
        {
            if (m.Process.HasExited || Environment.TickCount64 > deadline)
            {
                throw new InvalidOperationException($"mount of {mp} did not come up:\n{m.Output}");
            }
            await Task.Delay(50);
        }
        return m;
    }

    [Fact(Timeout = TestTimeoutMs)]
    public async Task Stats_after_io_show_fuse_operations_object_puts_and_cache_hits()
    {
        var m = await _env.MountAsync(Mp());
        var mp = m.MountPoint;
        // 2.5 blocks of 1 MiB: three PUTs.
        await Shell.OkAsync("head -c 2621440 /dev/urandom > data && sync data && cat data > /dev/null && echo small > s && cat s", mp);

        var first = Stats(await Shell.OkAsync("cat .stats", mp));
        Assert.True(first.Value("mirrorfs_fuse_ops_duration_seconds_count", ("op", "write")) >= 1);
        Assert.True(first.Value("mirrorfs_fuse_ops_duration_seconds_count", ("op", "create")) >= 2);
        Assert.True(first.Value("mirrorfs_fuse_ops_duration_seconds_count", ("op", "read")) >= 1);
        Assert.True(first.Value("mirrorfs_fuse_written_bytes_total") >= 2621440 + 6);
        Assert.True(first.Value("mirrorfs_object_request_duration_seconds_count", ("method", "PUT")) >= 4, "three blocks of data and one of s");
        Assert.True(first.Value("mirrorfs_object_upload_bytes_total") >= 2621440 + 6);
        Assert.Equal(0, first.Value("mirrorfs_object_request_errors_total", ("method", "PUT")));
        // Written blocks go to the memory cache, so reading them back hits it.
        Assert.True(first.Value("mirrorfs_blockcache_hits_total", ("tier", "memory")) >= 1);
        Assert.True(first.Value("mirrorfs_meta_request_duration_seconds_count", ("method", "Create")) >= 2);
        Assert.True(first.Value("mirrorfs_meta_request_duration_seconds_count", ("method", "WriteSlice")) >= 1);

        // Each open is a fresh snapshot: the first cat's own open shows up in the second.
        var second = Stats(await Shell.OkAsync("cat .stats", mp));
        Assert.True(second.Value("mirrorfs_fuse_ops_duration_seconds_count", ("op", "open"))
                    > first.Value("mirrorfs_fuse_ops_duration_seconds_count", ("op", "open")));
    }

    [Fact(Timeout = TestTimeoutMs)]
    public async Task Config_is_json_of_the_effective_settings_without_secrets()
    {
        // The token in the URL and the secret in the storage URI must both stay out.
        var url = $"mirrorfs://:{MountEnv.Token}@{_env.Host.Address}/{MountEnv.Volume}";
        var m = await MountWithAsync(url, Mp(), null, "--prefetch", "3", "--read-only");
        var text = await Shell.OkAsync("cat .config", m.MountPoint);
        log.WriteLine(text);
        Assert.DoesNotContain(MountEnv.Token, text, StringComparison.Ordinal);
        Assert.DoesNotContain(StorageSecret, text, StringComparison.Ordinal);
        using var doc = JsonDocument.Parse(text);
        var root = doc.RootElement;
        Assert.Equal(m.Process.Id, root.GetProperty("pid").GetInt32());
        Assert.Equal(m.MountPoint, root.GetProperty("mount").GetProperty("mountPoint").GetString());
        Assert.True(root.GetProperty("mount").GetProperty("readOnly").GetBoolean());
        Assert.Equal("fuse.mirrorfs", root.GetProperty("mount").GetProperty("fsType").GetString());
        Assert.Contains("***", root.GetProperty("mount").GetProperty("metaUrl").GetString(), StringComparison.Ordinal);
        Assert.Equal(3, root.GetProperty("vfs").GetProperty("prefetchBlocks").GetInt32());
        Assert.Equal(MountEnv.Volume, root.GetProperty("volume").GetProperty("name").GetString());
        Assert.Equal(1 << 20, root.GetProperty("volume").GetProperty("blockSize").GetInt32());
        Assert.Contains("secret-key=***", root.GetProperty("volume").GetProperty("storage").GetString(), StringComparison.Ordinal);
    }

    /// <summary>Reads .accesslog on its own thread until <paramref name="done"/> holds for the text so far or the wait ends.</summary>
    private static (Task<string> Text, Task Opened) ReadAccessLog(string path, Func<string, bool> done)
    {
        var opened = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var text = Blocking.RunAsync(() =>
        {
            var sb = new StringBuilder();
            using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, bufferSize: 0);
            opened.SetResult();
            var buf = new byte[1 << 16];
            var deadline = Environment.TickCount64 + AccessLogWaitMs;
            // Each read returns within about a second (a "#" line when idle), so the deadline is checked often.
            while (!done(sb.ToString()) && Environment.TickCount64 < deadline)
            {
                var n = fs.Read(buf);
                if (n == 0)
                {
                    break;
                }
                sb.Append(Encoding.UTF8.GetString(buf, 0, n));
            }
            return sb.ToString();
        });
        return (text, opened.Task);
    }

    [Fact(Timeout = TestTimeoutMs)]
    public async Task Accesslog_streams_ls_and_cat_with_results_to_every_reader()
    {
        var m = await _env.MountAsync(Mp());
        var mp = m.MountPoint;
        await Shell.OkAsync("echo hello > hello.txt", mp);
        static bool Done(string s) => s.Contains("lookup (1,no-such-file): ENOENT", StringComparison.Ordinal);
        var a = ReadAccessLog(Path.Combine(mp, InternalFiles.AccessLogName), Done);
        var b = ReadAccessLog(Path.Combine(mp, InternalFiles.AccessLogName), Done);
        await Task.WhenAll(a.Opened, b.Opened);

        var pids = await Shell.OkAsync("ls > /dev/null & echo $!; wait; cat hello.txt > /dev/null & echo $!; wait; stat no-such-file 2>/dev/null; true", mp);
        var textA = await a.Text;
        var textB = await b.Text;
        log.WriteLine(textA);
        Assert.True(Done(textA), $"reader A never saw the failed lookup:\n{textA}");
        Assert.True(Done(textB), $"reader B never saw the failed lookup:\n{textB}");

        var lines = textA.Split('\n', StringSplitOptions.RemoveEmptyEntries).Where(l => l != "#").ToList();
        var pidList = pids.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(p => int.Parse(p, CultureInfo.InvariantCulture)).ToList();
        Assert.All(lines, l => Assert.Matches(@"^\d{4}\.\d\d\.\d\d \d\d:\d\d:\d\d\.\d{6} \[uid:\d+,gid:\d+,pid:\d+\] [a-z_]+ \(.*\): .+ <\d+\.\d{6}>$", l));
        // ls: the root listed with its entries; cat: open and a 6-byte read, each by the right process.
        Assert.Contains(lines, l => l.Contains($"pid:{pidList[0]}]", StringComparison.Ordinal)
                                    && System.Text.RegularExpressions.Regex.IsMatch(l, @" readdir(plus)? \(1,.*\): OK \(\d+ entries\)"));
        Assert.Contains(lines, l => l.Contains($"pid:{pidList[1]}] open (", StringComparison.Ordinal) && l.Contains("): OK (fh ", StringComparison.Ordinal));
        Assert.Contains(lines, l => l.Contains($"pid:{pidList[1]}] read (", StringComparison.Ordinal) && l.Contains("): OK (6 bytes)", StringComparison.Ordinal));
        Assert.Contains(lines, l => l.Contains(" lookup (1,hello.txt): OK (ino ", StringComparison.Ordinal)
                                    || l.Contains($"pid:{pidList[1]}] open (", StringComparison.Ordinal));
        // The reader's own reads are not logged (they would feed themselves).
        Assert.DoesNotContain(lines, l => l.Contains($"read ({InternalFiles.AccessLogInode},", StringComparison.Ordinal));

        // Both readers closed: the log is idle again and .stats says nothing was dropped.
        var stats = Stats(await Shell.OkAsync("cat .stats", mp));
        Assert.Equal(0, stats.Value("mirrorfs_accesslog_readers"));
        Assert.Equal(0, stats.Value("mirrorfs_accesslog_dropped_lines_total"));
    }

    [Fact(Timeout = TestTimeoutMs)]
    public async Task The_metrics_endpoint_serves_the_same_registry_over_http()
    {
        var m = await _env.MountAsync(Mp(), "--metrics", "127.0.0.1:0");
        await Shell.OkAsync("echo x > f && cat f > /dev/null", m.MountPoint);
        using var doc = JsonDocument.Parse(await Shell.OkAsync("cat .config", m.MountPoint));
        var url = doc.RootElement.GetProperty("mount").GetProperty("metricsUrl").GetString()!;
        Assert.StartsWith("http://127.0.0.1:", url, StringComparison.Ordinal);
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(60) };
        var resp = await http.GetAsync(url);
        Assert.Equal(System.Net.HttpStatusCode.OK, resp.StatusCode);
        var f = Stats(await resp.Content.ReadAsStringAsync());
        Assert.True(f.Value("mirrorfs_fuse_ops_duration_seconds_count", ("op", "create")) >= 1);
        Assert.True(f.Value("mirrorfs_object_request_duration_seconds_count", ("method", "PUT")) >= 1);
        Assert.True(f.Value("mirrorfs_process_uptime_seconds") > 0);
    }

    [Fact(Timeout = TestTimeoutMs)]
    public async Task Virtual_files_cannot_be_changed_and_are_listed_only_when_asked()
    {
        var m = await _env.MountAsync(Mp(), "--show-internal");
        var mp = m.MountPoint;
        Assert.Equal(".accesslog\n.config\n.stats\n", await Shell.OkAsync("ls -A | sort", mp));
        var ino = ulong.Parse(await Shell.OkAsync("stat -c %i .stats", mp), CultureInfo.InvariantCulture);
        Assert.True(InternalFiles.Owns(ino) && ino >= InternalFiles.InodeMin, $"inode {ino} is not in the reserved range");
        Assert.Equal("444 400 400\n", await Shell.OkAsync("echo $(stat -c %a .stats .config .accesslog)", mp));
        foreach (var attempt in new[]
                 {
                     "rm -f .stats", "mv .config moved", "echo x > .stats", "echo x >> .config", "touch .accesslog",
                     "mkdir .stats", "ln .stats hard", "chmod 777 .stats", "truncate -s 0 .config", "echo y > f && mv f .stats",
                     "python3 -c \"import os; os.setxattr('.stats', 'user.a', b'1')\"",
                 })
        {
            var r = await Shell.RunAsync(attempt, mp);
            Assert.True(r.Code != 0, $"'{attempt}' succeeded on a virtual file");
        }
        Assert.Equal(".accesslog\n.config\n.stats\nf\n", await Shell.OkAsync("ls -A | sort", mp));
        Assert.Contains("# TYPE mirrorfs_fuse_ops_duration_seconds histogram", await Shell.OkAsync("cat .stats", mp), StringComparison.Ordinal);

        // By default they are left out of listings (recursive tools would block on .accesslog).
        var hidden = await _env.MountAsync(Mp("hidden"));
        Assert.Equal("f\n", await Shell.OkAsync("ls -A", hidden.MountPoint));
        // Hidden from listings, still there by name.
        Assert.Contains("# TYPE", await Shell.OkAsync("cat .stats", hidden.MountPoint), StringComparison.Ordinal);
        using var doc = JsonDocument.Parse(await Shell.OkAsync("cat .config", hidden.MountPoint));
        Assert.True(doc.RootElement.GetProperty("mount").GetProperty("hideInternalFiles").GetBoolean());
    }

    [Fact(Timeout = TestTimeoutMs)]
    public async Task A_root_mount_adds_its_type_to_prunefs_and_shows_as_fuse_mirrorfs()
    {
        Assert.True(Environment.IsPrivilegedProcess, "FUSE mount tests run as root");
        var conf = Path.Combine(_env.NewDir("etc"), "updatedb.conf");
        await File.WriteAllTextAsync(conf, "PRUNE_BIND_MOUNTS=\"yes\"\nPRUNEFS=\"NFS nfs fuse.sshfs\"\nPRUNEPATHS=\"/tmp\"\n");
        var m = await MountWithAsync(_env.MetaUrl, Mp(), new Dictionary<string, string> { [MountCommand.UpdatedbConfEnvironment] = conf },
            "--token-file", _env.TokenFile);
        Assert.Equal("PRUNE_BIND_MOUNTS=\"yes\"\nPRUNEFS=\"NFS nfs fuse.sshfs fuse.mirrorfs\"\nPRUNEPATHS=\"/tmp\"\n", await File.ReadAllTextAsync(conf));
        Assert.Equal("fuse.mirrorfs\n", await Shell.OkAsync($"findmnt -n -o FSTYPE '{m.MountPoint}'", null));
        Assert.Equal($"{_env.MetaUrl}\n", await Shell.OkAsync($"findmnt -n -o SOURCE '{m.MountPoint}'", null));
    }

    [Fact(Timeout = TestTimeoutMs)]
    public async Task Mount_t_mirrorfs_and_an_fstab_line_mount_through_the_helper()
    {
        // mount(8) looks for helpers only in /sbin: install there, and put back whatever was there before.
        const string helper = "/sbin/mount.mirrorfs";
        var backup = File.Exists(helper) ? await File.ReadAllBytesAsync(helper) : null;
        var mp = Mp();
        var mp2 = Mp("fstab");
        Directory.CreateDirectory(mp);
        Directory.CreateDirectory(mp2);
        try
        {
            var o = new StringWriter();
            var e = new StringWriter();
            Assert.True(await Program.RunAsync(["install-helper", "--force"], o, e) == 0, e.ToString());
            Assert.Contains(helper, o.ToString(), StringComparison.Ordinal);

            var logFile = Path.Combine(_env.Root, "helper-mount.log");
            var r = await Shell.RunAsync(
                $"mount -t mirrorfs '{_env.MetaUrl}' '{mp}' -o 'token-file={_env.TokenFile},log={logFile},prefetch=2,noexec,_netdev'", null);
            Assert.True(r.Code == 0, $"mount -t mirrorfs failed ({r.Code}): {r.Err}{r.Out}\n{ReadIfExists(logFile)}");
            Assert.True(MountEnv.IsMounted(mp), "mount -t mirrorfs returned but nothing is mounted");
            Assert.Equal("fuse.mirrorfs\n", await Shell.OkAsync($"findmnt -n -o FSTYPE '{mp}'", null));
            Assert.Contains("noexec", await Shell.OkAsync($"findmnt -n -o OPTIONS '{mp}'", null), StringComparison.Ordinal);
            await Shell.OkAsync("echo via-helper > f && test \"$(cat f)\" = via-helper", mp);
            using (var doc = JsonDocument.Parse(await Shell.OkAsync("cat .config", mp)))
            {
                Assert.Equal(2, doc.RootElement.GetProperty("vfs").GetProperty("prefetchBlocks").GetInt32());
            }
            await UnmountBackgroundAsync(mp);

            // The same through an fstab line (an alternative fstab, so /etc/fstab is never touched).
            var fstab = Path.Combine(_env.Root, "test-fstab");
            await File.WriteAllTextAsync(fstab,
                $"# test fstab\n{_env.MetaUrl}  {mp2}  mirrorfs  noauto,_netdev,token-file={_env.TokenFile},log={logFile}  0 0\n");
            r = await Shell.RunAsync($"mount -T '{fstab}' '{mp2}'", null);
            Assert.True(r.Code == 0, $"mount -T fstab failed ({r.Code}): {r.Err}{r.Out}\n{ReadIfExists(logFile)}");
            Assert.Equal("via-helper\n", await Shell.OkAsync("cat f", mp2));
            await UnmountBackgroundAsync(mp2);
        }
        finally
        {
            foreach (var p in new[] { mp, mp2 })
            {
                if (MountEnv.IsMounted(p))
                {
                    await Shell.RunAsync($"fusermount3 -uz '{p}'", null);
                }
            }
            if (backup is null)
            {
                File.Delete(helper);
            }
            else
            {
                await File.WriteAllBytesAsync(helper, backup);
            }
        }
    }

    private static string ReadIfExists(string path) => File.Exists(path) ? File.ReadAllText(path) : "(no log)";

    /// <summary>Unmounts a background mount and waits until the kernel no longer lists it.</summary>
    private static async Task UnmountBackgroundAsync(string mp)
    {
        await Shell.OkAsync($"fusermount3 -u '{mp}'");
        var deadline = Environment.TickCount64 + MountEnv.ExitWaitMs;
        while (MountEnv.IsMounted(mp) && Environment.TickCount64 < deadline)
        {
            await Task.Delay(50);
        }
        Assert.False(MountEnv.IsMounted(mp));
    }
}
