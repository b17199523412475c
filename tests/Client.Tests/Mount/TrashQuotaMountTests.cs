// Trash, restore, purge, directory quotas and volume limits on real FUSE mounts, driven by shell tools and the CLI.
using System.Globalization;
using MirrorFS.Core.Meta;
using Xunit.Abstractions;

namespace MirrorFS.Client.Tests.Mount;

[Collection(MountCollection.Name)]
public sealed class TrashQuotaMountTests(ITestOutputHelper log) : IAsyncLifetime
{
    /// <summary>The root's entries but the mount's virtual files (.stats, .config, .accesslog), which every root lists.</summary>
    private const string ListRoot = "ls -A -I .stats -I .config -I .accesslog";

    private const int TestTimeoutMs = 180_000;

    // No kernel caching: each check below must see the metaserver's state right after the change.
    private static readonly string[] NoCache = ["--attr-cache", "0", "--entry-cache", "0"];

    private MountEnv? _env;

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        if (_env is not null)
        {
            await _env.DisposeAsync();
        }
    }

    private async Task<(MountEnv Env, string Mp)> StartAsync(int trashDays = 0, params string[] formatArgs)
    {
        _env = await MountEnv.StartAsync(log, "1M", trashDays, formatArgs: formatArgs);
        var m = await _env.MountAsync(Path.Combine(_env.Root, "mnt"), NoCache);
        return (_env, m.MountPoint);
    }

    private static string HourNow() => DateTime.UtcNow.ToString("yyyy-MM-dd-HH", CultureInfo.InvariantCulture);

    [Fact(Timeout = TestTimeoutMs)]
    public async Task Rm_and_mv_over_keep_the_old_file_in_the_trash_and_restore_puts_it_back()
    {
        var (env, mp) = await StartAsync(trashDays: 1);
        var outside = env.NewDir("outside");
        await Shell.OkAsync($"head -c 3000000 /dev/urandom > '{outside}/data'");
        await Shell.OkAsync($"mkdir d && cp '{outside}/data' d/file && printf old > d/target && printf new > d/src", mp);
        var ids = (await Shell.OkAsync("stat -c %i d d/file d/target", mp)).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        var (dir, file, target) = (ids[0], ids[1], ids[2]);

        var before = HourNow();
        await Shell.OkAsync("rm d/file && test ! -e d/file", mp);
        var after = HourNow();
        var hours = (await Shell.OkAsync("ls .trash", mp)).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        var hour = Assert.Single(hours);
        Assert.True(hour == before || hour == after, $"hour directory {hour} is not the UTC hour of the rm ({before})");
        var entry = $".trash/{hour}/{dir}-{file}-file";
        await Shell.OkAsync($"cmp '{outside}/data' '{mp}/{entry}'");
        Assert.Equal(".trash\nd\n", await Shell.OkAsync(ListRoot, mp));

        // Overwritten by mv: the old content waits in the trash.
        await Shell.OkAsync("mv d/src d/target && test \"$(cat d/target)\" = new", mp);
        // (Globs: the mv may fall in the next hour.)
        Assert.Equal("old", await Shell.OkAsync($"cat .trash/*/{dir}-{target}-target", mp));

        // Nothing can be made in the trash, even by root.
        var touch = await Shell.RunAsync($"touch '.trash/{hour}/x'", mp);
        Assert.NotEqual(0, touch.Code);
        Assert.Contains("not permitted", touch.Err, StringComparison.OrdinalIgnoreCase);

        // A dry run shows what would happen; --put-back moves what can go and reports the name taken by the mv.
        var dry = await env.CliAsync("restore", "--all");
        Assert.Equal(1, dry.Code);
        Assert.Contains("would restore 1, conflicts 1", dry.Out, StringComparison.Ordinal);
        Assert.Equal(3000000L, new FileInfo(Path.Combine(mp, entry)).Length);
        var put = await env.CliAsync("restore", "--all", "--put-back");
        Assert.Equal(1, put.Code);
        Assert.Contains("restored 1, conflicts 1", put.Out, StringComparison.Ordinal);
        Assert.Contains("/d/target", put.Out, StringComparison.Ordinal);
        Assert.Contains("the name is taken", put.Out, StringComparison.Ordinal);
        await Shell.OkAsync($"cmp '{outside}/data' d/file && test \"$(stat -c %i d/file)\" = {file}", mp);
        Assert.Equal($"{dir}-{target}-target\n", await Shell.OkAsync("ls .trash/*/", mp));
        Assert.Equal(1, (await env.CliAsync("restore", hour + "-nope")).Code);

        // Deleting inside the trash deletes for real.
        await Shell.OkAsync($"rm .trash/*/{dir}-{target}-target && test -z \"$(ls .trash/*/)\"", mp);
        Assert.False(await Exists(env, target), "the file deleted in the trash still has an inode");
    }

    [Fact(Timeout = TestTimeoutMs)]
    public async Task With_trash_days_0_nothing_is_kept()
    {
        var (env, mp) = await StartAsync(trashDays: 0);
        await Shell.OkAsync("printf data > f && printf x > g && printf y > h", mp);
        var ids = (await Shell.OkAsync("stat -c %i f g", mp)).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        await Shell.OkAsync("rm f && mv h g && test ! -e .trash", mp);
        Assert.Equal("g\n", await Shell.OkAsync(ListRoot, mp));
        Assert.False(await Exists(env, ids[0]), "the removed file still has an inode");
        Assert.False(await Exists(env, ids[1]), "the file replaced by mv still has an inode");
    }

    [Fact(Timeout = TestTimeoutMs)]
    public async Task The_purge_job_deletes_hour_directories_older_than_the_trash_days()
    {
        var (env, mp) = await StartAsync(trashDays: 1);
        await Shell.OkAsync("head -c 100000 /dev/urandom > f", mp);
        var ino = (await Shell.OkAsync("stat -c %i f", mp)).Trim();
        await Shell.OkAsync("rm f", mp);
        var hour = (await Shell.OkAsync("ls .trash", mp)).Trim();
        Assert.NotEmpty(hour);

        // The job's pass now keeps it (not a day old); a pass as if a day and two hours had gone deletes it for real.
        Assert.Equal(0UL, await env.Host.TrashPurger.RunOnceAsync(DateTimeOffset.UtcNow));
        Assert.Equal(hour + "\n", await Shell.OkAsync("ls .trash", mp));
        Assert.True(await Exists(env, ino));
        Assert.Equal(1UL, await env.Host.TrashPurger.RunOnceAsync(DateTimeOffset.UtcNow.AddDays(1).AddHours(2)));
        Assert.Equal("", await Shell.OkAsync("ls .trash", mp));
        Assert.False(await Exists(env, ino), "the purged file still has an inode");
    }

    [Fact(Timeout = TestTimeoutMs)]
    public async Task Writes_and_creates_past_a_directory_quota_fail_with_EDQUOT()
    {
        var (env, mp) = await StartAsync();
        await Shell.OkAsync("mkdir q", mp);
        var set = await env.CliAsync("quota set", "--path", "/q", "--capacity", "4M", "--inodes", "10");
        Assert.True(set.Code == 0, set.Err);
        Assert.Contains("/q", set.Out, StringComparison.Ordinal);
        Assert.Contains("4 MiB", set.Out, StringComparison.Ordinal);

        var dd = await Shell.RunAsync("dd if=/dev/zero of=q/big bs=1M count=16 conv=fsync status=none", mp);
        Assert.NotEqual(0, dd.Code);
        Assert.Contains("Disk quota exceeded", dd.Err, StringComparison.Ordinal);
        // What fits still fits.
        await Shell.OkAsync("dd if=/dev/zero of=q/small bs=1M count=2 conv=fsync status=none", mp);

        // big and small hold two of the ten inodes: eight more files, then EDQUOT.
        var touch = await Shell.RunAsync("for i in $(seq 1 20); do touch q/f$i || exit 1; done", mp);
        Assert.NotEqual(0, touch.Code);
        Assert.Contains("Disk quota exceeded", touch.Err, StringComparison.Ordinal);
        Assert.Equal("10\n", await Shell.OkAsync("ls q | wc -l", mp));
        await Shell.OkAsync("touch outside-the-quota", mp);

        var get = await env.CliAsync("quota get", "--path", "/q");
        Assert.True(get.Code == 0, get.Err);
        Assert.Contains("100%", get.Out, StringComparison.Ordinal); // inodes 10 of 10
        var check = await env.CliAsync("quota check");
        Assert.True(check.Code == 0, check.Err + check.Out);
        Assert.Contains("ok", check.Out, StringComparison.Ordinal);
    }

    [Fact(Timeout = TestTimeoutMs)]
    public async Task Moving_a_subtree_between_quota_directories_moves_its_usage()
    {
        var (env, mp) = await StartAsync();
        await Shell.OkAsync("mkdir -p a/tree/deep b && head -c 100000 /dev/urandom > a/tree/f1 && head -c 5000 /dev/urandom > a/tree/deep/f2", mp);
        Assert.Equal(0, (await env.CliAsync("quota set", "--path", "/a", "--capacity", "1G")).Code);
        Assert.Equal(0, (await env.CliAsync("quota set", "--path", "/b", "--inodes", "100")).Code);
        var a = await Ino(env, "/a");
        var b = await Ino(env, "/b");
        var treeUsage = (Bytes: 102400UL + 8192UL, Inodes: 4UL); // tree, deep, f1, f2
        Assert.Equal(treeUsage, await Used(env, a));

        await Shell.OkAsync("mv a/tree b/", mp);
        Assert.Equal((0UL, 0UL), await Used(env, a));
        Assert.Equal(treeUsage, await Used(env, b));
        await Shell.OkAsync("mv b/tree/deep/f2 a/ && cp a/f2 b/tree/copy", mp);
        Assert.Equal((8192UL, 1UL), await Used(env, a));
        Assert.Equal((102400UL + 8192UL, 4UL), await Used(env, b));

        var list = await env.CliAsync("quota list");
        Assert.True(list.Code == 0, list.Err);
        Assert.Contains("/a", list.Out, StringComparison.Ordinal);
        Assert.Contains("/b", list.Out, StringComparison.Ordinal);
        var check = await env.CliAsync("quota check");
        Assert.True(check.Code == 0, check.Err + check.Out);
        Assert.DoesNotContain("DIFFERS", check.Out, StringComparison.Ordinal);
        Assert.Equal(0, (await env.CliAsync("quota delete", "--path", "/a")).Code);
        Assert.Contains("has no quota", (await env.CliAsync("quota get", "--path", "/a")).Err, StringComparison.Ordinal);
    }

    private static async Task<bool> Exists(MountEnv env, string inode) =>
        (await env.Host.Service.GetAttrAsync(new GetAttrRequest { Inode = ulong.Parse(inode, CultureInfo.InvariantCulture) })).Errno == 0;

    private static async Task<ulong> Ino(MountEnv env, string path)
    {
        var r = await env.Host.Service.LookupAsync(new LookupRequest { Parent = 1, Name = Google.Protobuf.ByteString.CopyFromUtf8(path.TrimStart('/')) });
        Assert.Equal(0, r.Errno);
        return r.Attr.Inode;
    }

    private static async Task<(ulong Bytes, ulong Inodes)> Used(MountEnv env, ulong dir)
    {
        var q = await env.Host.Service.GetQuotaAsync(new GetQuotaRequest { Inode = dir });
        Assert.Equal(0, q.Errno);
        return (q.Quota.UsedBytes, q.Quota.UsedInodes);
    }

    [Fact(Timeout = TestTimeoutMs)]
    public async Task Volume_capacity_gives_ENOSPC_and_df_shows_the_limits()
    {
        var (env, mp) = await StartAsync(0, "--capacity", "8M", "--inodes", "50");
        Assert.Equal("8388608 50\n", await Shell.OkAsync($"echo $(df -B1 --output=size '{mp}' | tail -1) $(df --output=itotal '{mp}' | tail -1)"));
        var dd = await Shell.RunAsync("dd if=/dev/zero of=big bs=1M count=16 conv=fsync status=none", mp);
        Assert.NotEqual(0, dd.Code);
        Assert.Contains("No space left on device", dd.Err, StringComparison.Ordinal);

        // Raised while mounted: df follows at once and the write goes through.
        var cfg = await env.CliAsync("config", "--capacity", "64M", "--inodes", "0");
        Assert.True(cfg.Code == 0, cfg.Err);
        Assert.Contains("capacity: 8 MiB -> 64 MiB", cfg.Out, StringComparison.Ordinal);
        Assert.Contains("inodes: 50 -> unlimited", cfg.Out, StringComparison.Ordinal);
        Assert.Equal("67108864\n", await Shell.OkAsync($"df -B1 --output=size '{mp}' | tail -1 | tr -d ' '"));
        await Shell.OkAsync("dd if=/dev/zero of=big bs=1M count=16 conv=fsync status=none", mp);
    }
}
