// Directory quota accounting in the engine: creates, writes, truncates, links, renames across quota boundaries,
// EDQUOT, recounts after seeded random operations, snapshots, and volume limits changed by UpdateVolume.
using Google.Protobuf;
using MirrorFS.Core.Meta;
using MirrorFS.MetaServer.Engine;
using Xunit.Abstractions;
using static MirrorFS.MetaServer.Tests.Engine.MetaHarness;

namespace MirrorFS.MetaServer.Tests.Engine;

public sealed class QuotaTests(ITestOutputHelper log)
{
    private const ulong K4 = 4096;

    private static Task<SetQuotaReply> SetQuota(MetaHarness h, ulong dir, ulong? bytes = null, ulong? inodes = null, Credentials? c = null)
    {
        var r = new SetQuotaRequest { Inode = dir };
        if (bytes is { } b)
        {
            r.MaxBytes = b;
        }
        if (inodes is { } i)
        {
            r.MaxInodes = i;
        }
        return h.Svc.SetQuotaAsync(h.Stamp(r, c));
    }

    private static async Task<(ulong Bytes, ulong Inodes)> Used(MetaHarness h, ulong dir)
    {
        var q = await h.Svc.GetQuotaAsync(new GetQuotaRequest { Inode = dir });
        Assert.Equal(0, q.Errno);
        return (q.Quota.UsedBytes, q.Quota.UsedInodes);
    }

    /// <summary>Recounts a quota and asserts the stored usage agrees.</summary>
    private static async Task AssertRecount(MetaHarness h, ulong dir, string because = "")
    {
        var c = await h.Svc.CheckQuotaAsync(h.Stamp(new CheckQuotaRequest { Inode = dir }));
        Assert.Equal(0, c.Errno);
        Assert.True((c.Quota.UsedBytes, c.Quota.UsedInodes) == (c.CountedBytes, c.CountedInodes),
            $"quota of {dir}: stored {c.Quota.UsedBytes} B / {c.Quota.UsedInodes} inodes, counted {c.CountedBytes} B / {c.CountedInodes} inodes {because}");
    }

    private static async Task<ulong> Dir(MetaHarness h, ulong parent, string name)
    {
        var r = await h.Mkdir(parent, name);
        Assert.Equal(0, r.Errno);
        return r.Attr.Inode;
    }

    private static async Task<ulong> File(MetaHarness h, ulong parent, string name)
    {
        var r = await h.Mknod(parent, name);
        Assert.Equal(0, r.Errno);
        return r.Attr.Inode;
    }

    [Fact]
    public async Task First_set_counts_what_is_already_below_and_creates_and_writes_are_charged()
    {
        using var h = await StartAsync();
        var d = await Dir(h, Root, "d");
        var sub = await Dir(h, d, "sub");
        var f = await File(h, sub, "f");
        await h.WriteNew(f, 0, 0, 5000);
        await File(h, Root, "outside");

        var set = await SetQuota(h, d, bytes: 1 << 20, inodes: 100);
        Assert.Equal(0, set.Errno);
        Assert.Equal((2 * K4, 2UL), (set.Quota.UsedBytes, set.Quota.UsedInodes)); // sub and f; not d itself

        var g = await File(h, d, "g");
        Assert.Equal((2 * K4, 3UL), await Used(h, d));
        await h.WriteNew(g, 0, 0, 1);
        Assert.Equal((3 * K4, 3UL), await Used(h, d));
        Assert.Equal(0, (await h.Truncate(f, 100_000)).Errno);
        Assert.Equal((K4 + Align(100_000), 3UL), await Used(h, d));
        Assert.Equal(0, (await h.Truncate(f, 0)).Errno);
        Assert.Equal((K4, 3UL), await Used(h, d));
        var shrink = await h.SetAttr(new SetAttrRequest { Inode = g, Valid = (uint)SetAttrValid.Size, Size = 0 });
        Assert.Equal(0, shrink.Errno);
        Assert.Equal((0UL, 3UL), await Used(h, d));
        Assert.Equal(0, (await h.Symlink(sub, "ln", "target")).Errno);
        Assert.Equal((0UL, 4UL), await Used(h, d));
        Assert.Equal(0, (await h.Unlink(sub, "ln")).Errno);
        Assert.Equal(0, (await h.Unlink(sub, "f")).Errno);
        Assert.Equal(0, (await h.Rmdir(d, "sub")).Errno);
        Assert.Equal((0UL, 1UL), await Used(h, d));
        await AssertRecount(h, d);
    }

    private static ulong Align(ulong n) => (n + K4 - 1) / K4 * K4;

    [Fact]
    public async Task Writes_and_creates_past_a_limit_fail_with_EDQUOT()
    {
        using var h = await StartAsync();
        var d = await Dir(h, Root, "d");
        var inner = await Dir(h, d, "inner");
        Assert.Equal(0, (await SetQuota(h, d, bytes: 64 * K4, inodes: 4)).Errno);
        Assert.Equal(0, (await SetQuota(h, inner, bytes: 8 * K4)).Errno); // nested: the tighter one wins below it

        var f = await File(h, inner, "f");
        Assert.Equal(0, (await h.WriteNew(f, 0, 0, (uint)(8 * K4))).Reply.Errno);
        Assert.Equal(Errno.EDQUOT, (await h.WriteNew(f, 0, (uint)(8 * K4), 1)).Reply.Errno);
        Assert.Equal(Errno.EDQUOT, (await h.Truncate(f, 8 * K4 + 1)).Errno);
        var fa = await h.Svc.FallocateAsync(h.Stamp(new FallocateRequest { Inode = f, Offset = 0, Length = 9 * K4 }));
        Assert.Equal(Errno.EDQUOT, fa.Errno);
        var sa = await h.SetAttr(new SetAttrRequest { Inode = f, Valid = (uint)SetAttrValid.Size, Size = 20 * K4 });
        Assert.Equal(Errno.EDQUOT, sa.Errno);
        Assert.Equal(8 * K4, (await h.Attr(f)).Size);
        // Rewriting inside the size costs nothing and still works; shrinking always works.
        Assert.Equal(0, (await h.WriteNew(f, 0, 0, 100)).Reply.Errno);
        Assert.Equal(0, (await h.Truncate(f, 1)).Errno);

        // d allows 4 inodes below it: inner, f, and two more.
        await File(h, d, "a");
        Assert.Equal(0, (await h.Mkdir(d, "b")).Errno);
        Assert.Equal(Errno.EDQUOT, (await h.Mknod(d, "c")).Errno);
        Assert.Equal(Errno.EDQUOT, (await h.Create(inner, "c")).Errno);
        Assert.Equal(Errno.EDQUOT, (await h.Symlink(d, "c", "x")).Errno);
        Assert.Equal(Errno.EDQUOT, (await h.Link(f, d, "c")).Errno);
        Assert.Equal(Errno.ENOENT, (await h.Lookup(d, "c")).Errno);
        // Outside the quota nothing is limited.
        Assert.Equal(0, (await h.Mknod(Root, "free")).Errno);
        // Raising the limit lets creates through again.
        Assert.Equal(0, (await SetQuota(h, d, inodes: 5)).Errno);
        Assert.Equal(0, (await h.Mknod(d, "c")).Errno);
        Assert.Equal(64 * K4, (await h.Svc.GetQuotaAsync(new GetQuotaRequest { Inode = d })).Quota.MaxBytes); // kept
        await AssertRecount(h, d);
        await AssertRecount(h, inner);
    }

    [Fact]
    public async Task Renames_move_usage_across_quota_boundaries()
    {
        using var h = await StartAsync();
        var a = await Dir(h, Root, "a");
        var b = await Dir(h, Root, "b");
        var tree = await Dir(h, a, "tree");
        var deep = await Dir(h, tree, "deep");
        var f1 = await File(h, tree, "f1");
        await h.WriteNew(f1, 0, 0, 10_000);
        var f2 = await File(h, deep, "f2");
        await h.WriteNew(f2, 0, 0, 1);
        Assert.Equal(0, (await SetQuota(h, a, bytes: 1 << 30)).Errno);
        Assert.Equal(0, (await SetQuota(h, b, inodes: 1000)).Errno);
        Assert.Equal((4 * K4, 4UL), await Used(h, a));

        // A subtree from a to b: all of it moves.
        Assert.Equal(0, (await h.Rename(a, "tree", b, "tree")).Errno);
        Assert.Equal((0UL, 0UL), await Used(h, a));
        Assert.Equal((4 * K4, 4UL), await Used(h, b));
        // A file back to a: only its own usage.
        Assert.Equal(0, (await h.Rename(tree, "f1", a, "f1")).Errno);
        Assert.Equal((3 * K4, 1UL), await Used(h, a));
        Assert.Equal((K4, 3UL), await Used(h, b));
        // Within one quota nothing changes; to the root (no quota) usage leaves.
        Assert.Equal(0, (await h.Rename(tree, "deep", b, "deep2")).Errno);
        Assert.Equal((K4, 3UL), await Used(h, b));
        Assert.Equal(0, (await h.Rename(b, "deep2", Root, "deep2")).Errno);
        Assert.Equal((0UL, 1UL), await Used(h, b));
        // Overwriting a file in a: the old one's usage goes, the new one's comes.
        var small = await File(h, Root, "small");
        Assert.Equal(0, (await h.Rename(Root, "small", a, "f1")).Errno);
        Assert.Equal((0UL, 1UL), await Used(h, a));
        // Exchange swaps usage.
        var big = await File(h, b, "big");
        await h.WriteNew(big, 0, 0, 50_000);
        Assert.Equal(0, (await h.Rename(a, "f1", b, "big", (uint)RenameFlag.Exchange)).Errno);
        Assert.Equal((Align(50_000), 1UL), await Used(h, a));
        Assert.Equal((0UL, 2UL), await Used(h, b));
        Assert.Equal(small, await h.Ino(b, "big"));
        foreach (var q in new[] { a, b })
        {
            await AssertRecount(h, q);
        }
    }

    [Fact]
    public async Task A_rename_that_would_pass_the_target_quota_fails_with_EDQUOT()
    {
        using var h = await StartAsync();
        var a = await Dir(h, Root, "a");
        var b = await Dir(h, Root, "b");
        var tree = await Dir(h, a, "tree");
        await File(h, tree, "x");
        await File(h, tree, "y");
        Assert.Equal(0, (await SetQuota(h, b, inodes: 2)).Errno);
        Assert.Equal(Errno.EDQUOT, (await h.Rename(a, "tree", b, "tree")).Errno);
        Assert.Equal(tree, await h.Ino(a, "tree"));
        var big = await File(h, a, "big");
        await h.WriteNew(big, 0, 0, 100_000);
        Assert.Equal(0, (await SetQuota(h, b, bytes: 10 * K4)).Errno);
        Assert.Equal(Errno.EDQUOT, (await h.Rename(a, "big", b, "big")).Errno);
        // Overwriting a big file there frees its room first.
        var there = await File(h, b, "there");
        await h.WriteNew(there, 0, 0, 8 * (uint)K4);
        var f = await File(h, a, "f");
        await h.WriteNew(f, 0, 0, 5 * (uint)K4);
        Assert.Equal(Errno.EDQUOT, (await h.Rename(a, "f", b, "f2")).Errno);
        Assert.Equal(0, (await h.Rename(a, "f", b, "there")).Errno);
        Assert.Equal((5 * K4, 1UL), await Used(h, b));
        await AssertRecount(h, b);
    }

    [Fact]
    public async Task Hard_links_count_once_per_name_and_writes_charge_every_name()
    {
        using var h = await StartAsync();
        var a = await Dir(h, Root, "a");
        var b = await Dir(h, Root, "b");
        Assert.Equal(0, (await SetQuota(h, a, bytes: 1 << 30)).Errno);
        Assert.Equal(0, (await SetQuota(h, b, bytes: 1 << 30)).Errno);
        Assert.Equal(0, (await SetQuota(h, Root, bytes: 1 << 30)).Errno);
        var f = await File(h, a, "f");
        await h.WriteNew(f, 0, 0, 100);
        Assert.Equal(0, (await h.Link(f, b, "f")).Errno);
        Assert.Equal(0, (await h.Link(f, b, "f-again")).Errno);
        Assert.Equal((K4, 1UL), await Used(h, a));
        Assert.Equal((2 * K4, 2UL), await Used(h, b));
        Assert.Equal((3 * K4, 5UL), await Used(h, Root)); // a, b and three names

        await h.WriteNew(f, 0, 0, 3 * (uint)K4);
        Assert.Equal((3 * K4, 1UL), await Used(h, a));
        Assert.Equal((6 * K4, 2UL), await Used(h, b));
        // The root's quota sees three names grow: a limit it can hold for one name but not three.
        Assert.Equal(0, (await SetQuota(h, Root, bytes: 12 * K4)).Errno);
        Assert.Equal(Errno.EDQUOT, (await h.Truncate(f, 5 * K4)).Errno);
        Assert.Equal(0, (await h.Truncate(f, 4 * K4)).Errno);

        Assert.Equal(0, (await h.Unlink(a, "f")).Errno);
        Assert.Equal((0UL, 0UL), await Used(h, a));
        await h.Truncate(f, 1);
        Assert.Equal((2 * K4, 2UL), await Used(h, b));
        Assert.Equal(0, (await h.Rename(b, "f", a, "back")).Errno);
        await h.Truncate(f, 2 * K4);
        Assert.Equal((2 * K4, 1UL), await Used(h, a));
        Assert.Equal((2 * K4, 1UL), await Used(h, b));
        foreach (var q in new[] { a, b, Root })
        {
            await AssertRecount(h, q);
        }
    }

    [Fact]
    public async Task Quota_commands_are_root_only_and_check_repairs()
    {
        using var h = await StartAsync();
        var d = await Dir(h, Root, "d");
        var f = await File(h, Root, "f");
        var alice = User(1000, 1000);
        Assert.Equal(Errno.EPERM, (await SetQuota(h, d, bytes: 1, c: alice)).Errno);
        Assert.Equal(Errno.ENOTDIR, (await SetQuota(h, f, bytes: 1)).Errno);
        Assert.Equal(Errno.ENOENT, (await SetQuota(h, 9999, bytes: 1)).Errno);
        Assert.Equal(Errno.EINVAL, (await SetQuota(h, d, bytes: ulong.MaxValue)).Errno);
        Assert.Equal(Errno.ENOENT, (await h.Svc.GetQuotaAsync(new GetQuotaRequest { Inode = d })).Errno);
        Assert.Equal(0, (await SetQuota(h, d, inodes: 10)).Errno);
        Assert.Equal(Errno.EPERM, (await h.Svc.DeleteQuotaAsync(h.Stamp(new DeleteQuotaRequest { Inode = d }, alice))).Errno);

        var list = await h.Svc.ListQuotasAsync(new ListQuotasRequest());
        Assert.Equal([d], list.Quotas.Select(q => q.Inode));
        Assert.Equal("/d", (await h.Svc.GetPathAsync(new GetPathRequest { Inode = d })).Path.ToStringUtf8());
        Assert.Equal("/", (await h.Svc.GetPathAsync(new GetPathRequest { Inode = Root })).Path.ToStringUtf8());
        Assert.Equal(Errno.ENOTDIR, (await h.Svc.GetPathAsync(new GetPathRequest { Inode = f })).Errno);

        // A rmdir of the quota directory takes its quota with it.
        Assert.Equal(0, (await h.Rmdir(Root, "d")).Errno);
        Assert.Empty((await h.Svc.ListQuotasAsync(new ListQuotasRequest())).Quotas);
        var e = await Dir(h, Root, "e");
        Assert.Equal(0, (await SetQuota(h, e, inodes: 10)).Errno);
        Assert.Equal(0, (await h.Svc.DeleteQuotaAsync(h.Stamp(new DeleteQuotaRequest { Inode = e }))).Errno);
        Assert.Equal(Errno.ENOENT, (await h.Svc.DeleteQuotaAsync(h.Stamp(new DeleteQuotaRequest { Inode = e }))).Errno);
    }

    [Fact]
    public async Task Random_operations_keep_every_quota_equal_to_a_recount_and_survive_a_snapshot()
    {
        var seed = Environment.TickCount;
        log.WriteLine($"seed {seed}");
        var rnd = new Random(seed);
        using var h = await StartAsync();
        // Turn the trash on too: deleted files then move to /.trash, out of the quota directories.
        Assert.Equal(0, (await h.Svc.UpdateVolumeAsync(h.Stamp(new UpdateVolumeRequest { TrashDays = 1 }))).Errno);
        var dirs = new List<ulong> { Root };
        for (var i = 0; i < 6; i++)
        {
            dirs.Add(await Dir(h, dirs[rnd.Next(dirs.Count)], $"d{i}"));
        }
        foreach (var d in dirs.Take(5))
        {
            Assert.Equal(0, (await SetQuota(h, d, bytes: 1 << 30, inodes: 10_000)).Errno);
        }
        string[] names = ["a", "b", "c", "d", "e"];
        var ops = new List<string>();
        for (var i = 0; i < 400; i++)
        {
            var p = dirs[rnd.Next(dirs.Count)];
            var q = dirs[rnd.Next(dirs.Count)];
            var n = names[rnd.Next(names.Length)];
            var m = names[rnd.Next(names.Length)];
            var lk = await h.Lookup(p, n);
            var ino = lk.Errno == 0 ? lk.Attr.Inode : 0;
            var isFile = lk.Errno == 0 && PosixMode.IsRegular(lk.Attr.Mode);
            int e;
            switch (rnd.Next(9))
            {
                case 0:
                    e = (await h.Mknod(p, n)).Errno;
                    break;
                case 1:
                    e = isFile ? (await h.WriteNew(ino, (uint)rnd.Next(2), (uint)rnd.Next(100_000), (uint)rnd.Next(1, 50_000))).Reply.Errno : -1;
                    break;
                case 2:
                    e = isFile ? (await h.Truncate(ino, (ulong)rnd.Next(200_000))).Errno : -1;
                    break;
                case 3:
                    e = isFile ? (await h.Link(ino, q, m)).Errno : -1;
                    break;
                case 4:
                    e = (await h.Unlink(p, n)).Errno;
                    break;
                case 5:
                    e = (await h.Rename(p, n, q, m, (uint)rnd.Next(2) * (uint)RenameFlag.Exchange)).Errno;
                    break;
                case 6:
                    var md = await h.Mkdir(p, n);
                    e = md.Errno;
                    if (e == 0)
                    {
                        dirs.Add(md.Attr.Inode);
                    }
                    break;
                case 7:
                    e = (await h.Symlink(p, n, "t")).Errno;
                    break;
                default:
                    e = (await h.Rmdir(p, n)).Errno;
                    if (e == 0)
                    {
                        dirs.Remove(ino);
                    }
                    break;
            }
            ops.Add($"#{i} op in {p}/{n} -> {q}/{m}: {e}");
        }
        log.WriteLine(string.Join("\n", ops.TakeLast(40)));
        var succeeded = ops.Count(o => o.EndsWith(": 0", StringComparison.Ordinal));
        Assert.True(succeeded >= 100, $"only {succeeded} of {ops.Count} random operations succeeded (seed {seed}): too few to test much");
        foreach (var (dir, _) in h.State.QuotaUsage())
        {
            await AssertRecount(h, dir, $"(seed {seed})");
        }

        // A snapshot restores quotas and the names of regular files: both replicas go on identically.
        using var ms = new MemoryStream();
        h.State.WriteSnapshot(ms);
        using var restored = new MetaStateMachine();
        restored.RestoreSnapshot(new MemoryStream(ms.ToArray()));
        using var again = new MemoryStream();
        restored.WriteSnapshot(again);
        Assert.Equal(ms.ToArray(), again.ToArray());
        // Grow every file the same way on both: the charges must land on the same quotas.
        var index = h.State.AppliedIndex;
        var now = h.Now;
        // A rename over an empty directory removes it without the list above knowing: skip directories now gone.
        foreach (var d in dirs)
        {
            if (await h.GetAttr(d) is null)
            {
                continue;
            }
            foreach (var x in (await h.List(d)).Where(x => PosixMode.IsRegular(x.Attr.Mode)))
            {
                var cmd = new Command { NowNs = ++now, Truncate = new TruncateRequest { Cred = RootCred, Inode = x.Attr.Inode, Size = 300_000 } }.ToByteArray();
                index++;
                Assert.Equal(h.State.Apply(index, cmd), restored.Apply(index, cmd));
            }
        }
        Assert.Equal(h.State.QuotaUsage(), restored.QuotaUsage());
    }

    [Fact]
    public async Task UpdateVolume_changes_limits_that_writes_and_statfs_follow()
    {
        using var h = await StartAsync();
        var f = await File(h, Root, "f");
        var u = await h.Svc.UpdateVolumeAsync(h.Stamp(new UpdateVolumeRequest { CapacityBytes = 1 << 20, InodesMax = 3, UploadLimitBytes = 5, DownloadLimitBytes = 6, MetaOpsLimit = 7 }));
        Assert.Equal(0, u.Errno);
        Assert.Equal((0UL, 0UL), (u.Old.CapacityBytes, u.Old.InodesMax));
        Assert.Equal((1UL << 20, 3UL, 5UL, 6UL, 7u), (u.Volume.CapacityBytes, u.Volume.InodesMax, u.Volume.UploadLimitBytes, u.Volume.DownloadLimitBytes, u.Volume.MetaOpsLimit));
        Assert.False(u.Volume.TrashEnabled);
        var st = await h.Svc.StatFsAsync(new StatFsRequest { Inode = Root });
        Assert.Equal((1UL << 20, 3UL), (st.TotalBytes, st.TotalInodes));
        Assert.Equal(Errno.ENOSPC, (await h.WriteNew(f, 0, 0, (1 << 20) + 1)).Reply.Errno);
        Assert.Equal(0, (await h.WriteNew(f, 0, 0, 1 << 20)).Reply.Errno);
        await File(h, Root, "g");
        Assert.Equal(Errno.ENOSPC, (await h.Mknod(Root, "h")).Errno);

        Assert.Equal(Errno.EPERM, (await h.Svc.UpdateVolumeAsync(h.Stamp(new UpdateVolumeRequest { InodesMax = 0 }, User(5, 5)))).Errno);
        Assert.Equal(Errno.EINVAL, (await h.Svc.UpdateVolumeAsync(h.Stamp(new UpdateVolumeRequest { TrashDays = 100_000 }))).Errno);
        // Fields left out keep their value; trash_days turns the trash on.
        var t = await h.Svc.UpdateVolumeAsync(h.Stamp(new UpdateVolumeRequest { TrashDays = 2, InodesMax = 0 }));
        Assert.Equal((2u, true, 0UL, 1UL << 20, 7u), (t.Volume.TrashDays, t.Volume.TrashEnabled, t.Volume.InodesMax, t.Volume.CapacityBytes, t.Volume.MetaOpsLimit));
        Assert.Equal(0, (await h.Mknod(Root, "h")).Errno);
    }
}
