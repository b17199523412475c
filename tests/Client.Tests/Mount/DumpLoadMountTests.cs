// Dump and load on real mounts: a tree dumped from one metaserver and loaded into a second one (same object store)
// mounts with the same names, attributes, xattrs and data; mount --backup-meta writes dumps that load.
using MirrorFS.Client.Dump;
using MirrorFS.MetaServer.Hosting;
using Xunit.Abstractions;

namespace MirrorFS.Client.Tests.Mount;

[Collection(MountCollection.Name)]
public sealed class DumpLoadMountTests(ITestOutputHelper log) : IAsyncLifetime
{
    private const int TestTimeoutMs = 300_000;
    private const int BackupWaitMs = 120_000;
    private MountEnv _env = null!;
    private readonly List<MetaServerHost> _hosts = [];

    public async Task InitializeAsync() => _env = await MountEnv.StartAsync(log);

    public async Task DisposeAsync()
    {
        await _env.DisposeAsync(); // unmounts first: the mounts may use the hosts below
        foreach (var h in _hosts)
        {
            await h.DisposeAsync();
        }
    }

    private string Mp(string name) => Path.Combine(_env.Root, name);

    /// <summary>A second, empty metaserver with the same token; returns its META-URL for the test volume.</summary>
    private async Task<string> SecondMetaserverAsync(string name)
    {
        var host = await MetaServerHost.StartAsync(new MetaServerOptions
        {
            DataDirectory = Path.Combine(_env.Root, name),
            BearerToken = MountEnv.Token,
        });
        _hosts.Add(host);
        return $"mirrorfs://{host.Address}/{MountEnv.Volume}";
    }

    private async Task<(int Code, string Out, string Err)> CliAsync(params string[] args)
    {
        var o = new StringWriter();
        var e = new StringWriter();
        var code = await Program.RunAsync([.. args, "--token-file", _env.TokenFile], o, e);
        log.WriteLine($"mirrorfs {args[0]} -> {code}\n{o}{e}");
        return (code, o.ToString(), e.ToString());
    }

    // Every kind of object and attribute the dump must carry. Directory times are set last, deepest first.
    private const string BuildTree = """
        set -e
        mkdir -p a/b/c/d/e empty 'sp ace' 'ünïcødé'
        printf 'hello\n' > a/small
        dd if=/dev/urandom of=multi bs=64k count=4 status=none
        dd if=/dev/urandom of=multi bs=64k count=2 seek=1 conv=notrunc status=none
        dd if=/dev/urandom of=multi bs=1k count=3 seek=100 conv=notrunc status=none
        dd if=/dev/urandom of=a/b/big bs=1M count=3 status=none
        dd if=/dev/urandom of=a/b/big bs=100k count=1 seek=7 conv=notrunc status=none
        truncate -s 200M sparse
        printf tail | dd of=sparse bs=1 seek=150000000 conv=notrunc status=none
        : > 'sp ace/empty-file'
        ln -s a/small link
        ln -s /nonexistent/target dangling
        ln -s ../../multi a/b/uplink
        ln a/small a/b/c/hard1
        ln a/small hard2
        mkfifo fifo
        mknod chr c 1 3
        printf x > "$(printf 'bad\377name')"
        chmod 4755 a/small
        chmod 1777 empty
        chmod 2711 a/b
        chmod 600 multi
        chown 1234:5678 a/b/big
        chown 99:98 a/b/c
        python3 -c "import os; os.setxattr('a/b/big', 'user.note', b'\x00\x01bin'); os.setxattr('a', 'user.dir', b'd'); os.setxattr('hard2', 'user.h', b'linked')"
        touch -d '1999-12-31 23:59:59.5' a/b/big multi
        touch -h -d '2001-02-03 04:05:06.123456789' link
        touch -d '2010-01-01 00:00:00' a/b/c/d/e a/b/c/d a/b/c empty 'sp ace'
        """;

    // Sorted listing of every path with inode, mode, owner, size, mtime (ns), links, type and device numbers.
    private const string StatTree = "find . -print0 | LC_ALL=C sort -z | xargs -0 stat -c '%n %i %a %u %g %s %.9Y %h %F %t:%T'";

    private const string XattrTree = """
        python3 - <<'PY'
        import os
        for root, dirs, files in sorted(os.walk('.')):
            for n in sorted(dirs + files):
                p = os.path.join(root, n)
                if os.path.islink(p) or not (os.path.isfile(p) or os.path.isdir(p)):
                    continue
                for x in sorted(os.listxattr(p)):
                    print(p, x, os.getxattr(p, x).hex())
        PY
        """;

    [Fact(Timeout = TestTimeoutMs)]
    public async Task ALoadedDumpMountsIdenticallyFromTheSameBlocks()
    {
        var a = await _env.MountAsync(Mp("a"));
        await Shell.OkAsync(BuildTree, a.MountPoint);
        var before = await Shell.OkAsync(StatTree, a.MountPoint);
        await MountEnv.UnmountAsync(a); // every buffered write is stored

        var dump = Path.Combine(_env.NewDir("dumps"), "vol.json");
        var run = await CliAsync("dump", _env.MetaUrl, dump);
        Assert.True(run.Code == 0, run.Err);

        // The volume in use refuses the load: one line, exit 1.
        run = await CliAsync("load", _env.MetaUrl, dump);
        Assert.Equal(1, run.Code);
        Assert.Single(run.Err.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Contains("not empty", run.Err, StringComparison.Ordinal);

        var second = await SecondMetaserverAsync("meta2");
        run = await CliAsync("load", second, dump);
        Assert.True(run.Code == 0, run.Err);

        a = await _env.MountAsync(Mp("a2"));
        var b = await _env.MountAtAsync(second, Mp("b"));
        // fifo and chr are not files to read: their type and numbers are compared by stat below.
        await Shell.OkAsync($"diff -r --no-dereference -x fifo -x chr '{a.MountPoint}' '{b.MountPoint}'");
        var statA = await Shell.OkAsync(StatTree, a.MountPoint);
        var statB = await Shell.OkAsync(StatTree, b.MountPoint);
        log.WriteLine(statA);
        Assert.Equal(before, statA);
        Assert.Equal(statA, statB);
        Assert.True(statA.Split('\n', StringSplitOptions.RemoveEmptyEntries).Length >= 22, "the tree is smaller than built");
        Assert.Contains("fifo", statB, StringComparison.Ordinal);
        Assert.Contains("character special file 1:3", statB, StringComparison.Ordinal);
        var xa = await Shell.OkAsync(XattrTree, a.MountPoint);
        Assert.Contains("user.note 000162696e", xa, StringComparison.Ordinal);
        Assert.Equal(xa, await Shell.OkAsync(XattrTree, b.MountPoint));
        Assert.Equal("tail", await Shell.OkAsync("dd if=sparse bs=1 skip=150000000 count=4 status=none", b.MountPoint));
    }

    [Fact(Timeout = TestTimeoutMs)]
    public async Task BackupMetaWritesDumpsThatLoadKeepsTheNewestAndSkipsLargeVolumes()
    {
        var metaDir = Path.Combine(_env.Root, "blocks", MountEnv.Volume, "meta");
        string[] Backups() => Directory.Exists(metaDir)
            ? [.. Directory.GetFiles(metaDir, MetaBackup.KeyPrefix + "*" + MetaBackup.KeySuffix).Order(StringComparer.Ordinal)]
            : [];

        // Above the file limit: a warning, no backup.
        var m = await _env.MountAsync(Mp("skip"), "--backup-meta", "1s", "--backup-skip-above", "1");
        await Shell.OkAsync("mkdir x && echo data > x/f", m.MountPoint);
        await WaitAsync(() => m.Output.Contains("metadata backup skipped", StringComparison.Ordinal), "the skip warning", m);
        Assert.Empty(Backups());
        await MountEnv.UnmountAsync(m);

        // Two mounts with backups on: dumps appear, and no more than --backup-keep stay.
        var m1 = await _env.MountAsync(Mp("m1"), "--backup-meta", "2s", "--backup-keep", "2");
        var m2 = await _env.MountAsync(Mp("m2"), "--backup-meta", "2s", "--backup-keep", "2");
        await Shell.OkAsync("echo backed-up > x/g && ln -s g x/l", m1.MountPoint);
        var seen = new HashSet<string>();
        await WaitAsync(() =>
        {
            seen.UnionWith(Backups());
            return seen.Count >= 3;
        }, "three backups", m1);
        await WaitAsync(() => Backups().Length <= 2, "old backups to be deleted", m1);
        Assert.Contains("metadata backup", m1.Output + m2.Output, StringComparison.Ordinal);
        var newest = Backups()[^1];
        Assert.Equal(0x1F, File.ReadAllBytes(newest)[0]);

        // The object loads like any dump, and the volume mounts from the same blocks.
        var second = await SecondMetaserverAsync("meta3");
        var run = await CliAsync("load", second, newest);
        Assert.True(run.Code == 0, run.Err);
        var b = await _env.MountAtAsync(second, Mp("b"));
        Assert.Equal("backed-up\n", await Shell.OkAsync("cat x/g && readlink x/l >/dev/null", b.MountPoint));
        Assert.Equal("data\n", await Shell.OkAsync("cat x/f", b.MountPoint));
    }

    private static async Task WaitAsync(Func<bool> condition, string what, MountProcess m)
    {
        var deadline = Environment.TickCount64 + BackupWaitMs;
        while (!condition())
        {
            if (Environment.TickCount64 > deadline)
            {
                throw new TimeoutException($"waited {BackupWaitMs} ms for {what}:\n{m.Output}");
            }
            await Task.Delay(200);
        }
    }
}
