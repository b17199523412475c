// Pieces of mount observability and hygiene that need no FUSE: access log streams, PRUNEFS edits, -o options,
// .config redaction and the mount helper script.
using System.Text;
using System.Text.Json;
using MirrorFS.Client.Cli;
using MirrorFS.Client.Mount;
using MirrorFS.Client.Vfs;
using MirrorFS.Core.Meta;

namespace MirrorFS.Client.Tests.Mount;

public sealed class AccessLogTests
{
    private static async Task<string> ReadAsync(AccessLog.Reader r, int size = 4096, int idleMs = 200)
    {
        var buf = new byte[size];
        var n = await r.ReadAsync(buf, idleMs);
        return Encoding.UTF8.GetString(buf, 0, n);
    }

    [Fact]
    public async Task Lines_go_to_every_reader_and_cost_nothing_without_one()
    {
        var log = new AccessLog();
        Assert.False(log.Active);
        log.Write("nobody hears this");
        using var a = log.Open()!;
        using var b = log.Open()!;
        Assert.True(log.Active);
        log.Write("one");
        log.Write("two");
        Assert.Equal("one\ntwo\n", await ReadAsync(a));
        Assert.Equal("one\ntwo\n", await ReadAsync(b));
        b.Dispose();
        Assert.Equal(1, log.Readers);
        a.Dispose();
        Assert.False(log.Active);
    }

    [Fact]
    public async Task An_idle_read_returns_a_keepalive_line_not_end_of_file()
    {
        var log = new AccessLog();
        using var r = log.Open()!;
        Assert.Equal("#\n", await ReadAsync(r, idleMs: 50));
    }

    [Fact]
    public async Task Lines_longer_than_the_buffer_continue_at_the_next_read_and_lines_stay_whole()
    {
        var log = new AccessLog();
        using var r = log.Open()!;
        log.Write("0123456789");
        log.Write("abc");
        Assert.Equal("0123", await ReadAsync(r, 4));
        Assert.Equal("4567", await ReadAsync(r, 4));
        Assert.Equal("89\n", await ReadAsync(r, 4)); // "abc\n" would not fit whole after it
        Assert.Equal("abc\n", await ReadAsync(r, 4));
    }

    [Fact]
    public async Task A_slow_reader_loses_lines_counted_and_told_and_others_lose_none()
    {
        var log = new AccessLog();
        using var slow = log.Open()!;
        for (var i = 0; i < AccessLog.LinesPerReaderMax + 25; i++)
        {
            log.Write("line " + i);
        }
        Assert.Equal(25, log.Dropped);
        using var late = log.Open()!;
        log.Write("after");
        Assert.Equal("after\n", await ReadAsync(late));
        // The slow one first gets what it queued, then the notice where the gap is, then new lines.
        var sb = new StringBuilder();
        string chunk;
        while ((chunk = await ReadAsync(slow, 1 << 16)) != "#\n")
        {
            sb.Append(chunk);
        }
        var lines = sb.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal("line 0", lines[0]);
        Assert.Equal("line " + (AccessLog.LinesPerReaderMax - 1), lines[AccessLog.LinesPerReaderMax - 1]);
        // "after" came while its queue was still full: dropped too.
        Assert.Equal("# 26 lines dropped: this reader was too slow", lines[AccessLog.LinesPerReaderMax]);
        Assert.Equal(AccessLog.LinesPerReaderMax + 1, lines.Length);
        Assert.Equal(26, log.Dropped);
        log.Write("later");
        Assert.Equal("later\n", await ReadAsync(slow));
    }

    [Fact]
    public void Readers_are_bounded()
    {
        var log = new AccessLog();
        var readers = Enumerable.Range(0, AccessLog.ReadersMax).Select(_ => log.Open()).ToList();
        Assert.All(readers, Assert.NotNull);
        Assert.Null(log.Open());
        readers[0]!.Dispose();
        using var again = log.Open();
        Assert.NotNull(again);
        foreach (var r in readers)
        {
            r?.Dispose();
        }
    }
}

public sealed class UpdatedbConfTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("mirrorfs-updatedb-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string Conf(string text)
    {
        var p = Path.Combine(_dir, "updatedb.conf");
        File.WriteAllText(p, text);
        File.SetUnixFileMode(p, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead);
        return p;
    }

    [Fact]
    public void The_type_is_appended_to_prunefs_and_nothing_else_changes()
    {
        // As Debian's mlocate ships it, with a commented example above the real line.
        const string before = "PRUNE_BIND_MOUNTS=\"yes\"\n# PRUNEFS=\"NFS nfs\"\nPRUNENAMES=\".git .bzr .hg .svn\"\nPRUNEPATHS=\"/tmp /var/spool /media\"\nPRUNEFS = \"NFS afs autofs fuse.sshfs proc\"\n";
        var p = Conf(before);
        Assert.Equal(PruneFsResult.Added, UpdatedbConf.AddPruneFs(p, "fuse.mirrorfs"));
        Assert.Equal(before.Replace("fuse.sshfs proc\"", "fuse.sshfs proc fuse.mirrorfs\"", StringComparison.Ordinal), File.ReadAllText(p));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead, File.GetUnixFileMode(p));
        // Idempotent: the second mount finds it there.
        Assert.Equal(PruneFsResult.AlreadyPresent, UpdatedbConf.AddPruneFs(p, "fuse.mirrorfs"));
        Assert.Single(Directory.GetFiles(_dir)); // no temp file left
    }

    [Fact]
    public void A_type_that_only_starts_with_ours_does_not_count_as_present()
    {
        var p = Conf("PRUNEFS=\"fuse.mirrorfs2\"\n");
        Assert.Equal(PruneFsResult.Added, UpdatedbConf.AddPruneFs(p, "fuse.mirrorfs"));
        Assert.Equal("PRUNEFS=\"fuse.mirrorfs2 fuse.mirrorfs\"\n", File.ReadAllText(p));
    }

    [Fact]
    public void An_empty_list_gets_just_the_type()
    {
        var p = Conf("PRUNEFS=\"\"\n");
        Assert.Equal(PruneFsResult.Added, UpdatedbConf.AddPruneFs(p, "fuse.mirrorfs"));
        Assert.Equal("PRUNEFS=\"fuse.mirrorfs\"\n", File.ReadAllText(p));
    }

    [Fact]
    public void Without_a_file_or_a_prunefs_line_nothing_is_written()
    {
        Assert.Equal(PruneFsResult.NoFile, UpdatedbConf.AddPruneFs(Path.Combine(_dir, "missing.conf"), "fuse.mirrorfs"));
        Assert.False(File.Exists(Path.Combine(_dir, "missing.conf")));
        var p = Conf("# PRUNEFS=\"NFS\"\nPRUNEPATHS=\"/tmp\"\n");
        Assert.Equal(PruneFsResult.NoPruneFs, UpdatedbConf.AddPruneFs(p, "fuse.mirrorfs"));
        Assert.Equal("# PRUNEFS=\"NFS\"\nPRUNEPATHS=\"/tmp\"\n", File.ReadAllText(p));
    }

    [Fact]
    public void A_file_another_mount_holds_locked_is_left_alone()
    {
        var p = Conf("PRUNEFS=\"NFS\"\n");
        using (new FileStream(p, FileMode.Open, FileAccess.Read, FileShare.None))
        {
            Assert.Equal(PruneFsResult.Busy, UpdatedbConf.AddPruneFs(p, "fuse.mirrorfs"));
        }
        Assert.Equal("PRUNEFS=\"NFS\"\n", File.ReadAllText(p));
    }
}

public sealed class MountOptionsTests
{
    [Fact]
    public void Dash_o_becomes_flags_and_fstab_words_are_dropped()
    {
        var args = MountOptions.Expand(["mount", "mirrorfs://h:1/v", "/mnt/v", "--background", "-o",
            "rw,ro,noauto,_netdev,x-systemd.automount,token_file=/etc/t,cache-size=2G,nosuid,nodev,show-internal,comment=x"]);
        Assert.Equal(
            ["mount", "mirrorfs://h:1/v", "/mnt/v", "--background", "--read-only", "--token-file", "/etc/t", "--cache-size", "2G",
             "--show-internal", "--fuse-options", "nosuid,nodev"],
            args);
        Assert.Equal(["mount", "a", "b", "--read-only"], MountOptions.Expand(["mount", "a", "b", "-oro"]));
    }

    [Fact]
    public void Other_commands_and_mounts_without_dash_o_are_untouched()
    {
        string[] status = ["status", "-o", "x"];
        Assert.Same(status, MountOptions.Expand(status));
        string[] plain = ["mount", "a", "b", "--read-only"];
        Assert.Same(plain, MountOptions.Expand(plain));
    }

    [Fact]
    public void Malformed_options_fail_with_a_clear_line()
    {
        Assert.Throws<CliException>(() => MountOptions.Expand(["mount", "a", "b", "-o"]));
        var e = Assert.Throws<CliException>(() => MountOptions.Expand(["mount", "a", "b", "-o", "a b=c"]));
        Assert.Contains("a b=c", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_unknown_option_is_a_usage_error_naming_it()
    {
        var o = new StringWriter();
        var err = new StringWriter();
        var code = await Program.RunAsync(["mount", "mirrorfs://127.0.0.1:1/v", "/nonexistent", "-o", "no-such-thing=1"], o, err);
        Assert.Equal(CliApp.Usage, code);
        Assert.Contains("--no-such-thing", err.ToString(), StringComparison.Ordinal);
    }
}

public sealed class MountConfigJsonTests
{
    [Fact]
    public void Config_is_json_with_settings_and_no_secret()
    {
        var info = new MountInfo
        {
            MetaUrl = "mirrorfs://:***@127.0.0.1:9400/v",
            MountPoint = "/mnt/v",
            FsName = "mirrorfs://127.0.0.1:9400/v",
            FsType = "fuse.mirrorfs",
            MetricsUrl = "http://127.0.0.1:9567/metrics",
        };
        var volume = new Volume
        {
            Name = "v",
            Storage = "s3://bucket/p?endpoint=http://127.0.0.1:8080&access-key=AKID&secret-key=TOPSECRET",
            BlockSize = 1 << 20,
        };
        var text = MountConfigJson.Build(info, new VfsOptions { PrefetchBlocks = 3 }, volume);
        Assert.DoesNotContain("TOPSECRET", text, StringComparison.Ordinal);
        using var doc = JsonDocument.Parse(text);
        var root = doc.RootElement;
        Assert.Equal("/mnt/v", root.GetProperty("mount").GetProperty("mountPoint").GetString());
        Assert.Equal(3, root.GetProperty("vfs").GetProperty("prefetchBlocks").GetInt32());
        Assert.False(root.GetProperty("vfs").TryGetProperty("metrics", out _)); // objects are not settings
        Assert.Equal(1 << 20, root.GetProperty("volume").GetProperty("blockSize").GetInt32());
        Assert.Contains("access-key=AKID", root.GetProperty("volume").GetProperty("storage").GetString(), StringComparison.Ordinal);
        Assert.Contains("secret-key=***", root.GetProperty("volume").GetProperty("storage").GetString(), StringComparison.Ordinal);
    }

    [Fact]
    public void Values_of_secret_named_keys_are_redacted_anywhere()
    {
        var node = System.Text.Json.Nodes.JsonNode.Parse("""{"a":{"secretKey":"s1","list":["oss://b?secret=s2"]},"token":"s3","tokenFile":"/etc/t","plain":"ok"}""");
        MountConfigJson.Redact(node);
        var text = node!.ToJsonString();
        Assert.DoesNotContain("s1", text, StringComparison.Ordinal);
        Assert.DoesNotContain("s2", text, StringComparison.Ordinal);
        Assert.DoesNotContain("s3", text, StringComparison.Ordinal);
        Assert.Contains("\"plain\":\"ok\"", text, StringComparison.Ordinal);
    }
}

public sealed class InstallHelperTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("mirrorfs-helper-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public async Task The_helper_passes_url_mountpoint_and_options_through_and_ignores_mount_flags()
    {
        // A stand-in for the mirrorfs binary that prints its arguments one per line.
        var echo = Path.Combine(_dir, "echo-args");
        await File.WriteAllTextAsync(echo, "#!/bin/sh\nfor a in \"$@\"; do echo \"[$a]\"; done\n");
        File.SetUnixFileMode(echo, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        var helper = InstallHelperCommand.Install(Path.Combine(_dir, "sbin"), [echo, "it's quoted"], force: false);
        Assert.Equal(Path.Combine(_dir, "sbin", "mount.mirrorfs"), helper);
        Assert.True(File.GetUnixFileMode(helper).HasFlag(UnixFileMode.OtherExecute));

        var r = await Shell.RunAsync($"'{helper}' mirrorfs://h:1/v '/mnt/a b' -n -v -o rw,token-file=/t -t mirrorfs", null);
        Assert.Equal(0, r.Code);
        Assert.Equal("[it's quoted]\n[mount]\n[mirrorfs://h:1/v]\n[/mnt/a b]\n[--background]\n[-o]\n[rw,token-file=/t]\n", r.Out);
        r = await Shell.RunAsync($"'{helper}' mirrorfs://h:1/v /mnt/a", null);
        Assert.Equal("[it's quoted]\n[mount]\n[mirrorfs://h:1/v]\n[/mnt/a]\n[--background]\n", r.Out);
        // mount -f only pretends: nothing runs.
        r = await Shell.RunAsync($"'{helper}' mirrorfs://h:1/v /mnt/a -f -o ro", null);
        Assert.Equal((0, ""), (r.Code, r.Out));
        r = await Shell.RunAsync($"'{helper}' only-one-arg", null);
        Assert.NotEqual(0, r.Code);
    }

    [Fact]
    public void A_helper_we_did_not_write_is_not_replaced_without_force()
    {
        var sbin = Path.Combine(_dir, "sbin");
        Directory.CreateDirectory(sbin);
        File.WriteAllText(Path.Combine(sbin, "mount.mirrorfs"), "#!/bin/sh\necho someone else's\n");
        var e = Assert.Throws<CliException>(() => InstallHelperCommand.Install(sbin, ["/bin/true"], force: false));
        Assert.Contains("--force", e.Message, StringComparison.Ordinal);
        InstallHelperCommand.Install(sbin, ["/bin/true"], force: true);
        // Ours now: a reinstall replaces it without --force.
        InstallHelperCommand.Install(sbin, ["/bin/false"], force: false);
        Assert.Contains("'/bin/false'", File.ReadAllText(Path.Combine(sbin, "mount.mirrorfs")), StringComparison.Ordinal);
    }
}
