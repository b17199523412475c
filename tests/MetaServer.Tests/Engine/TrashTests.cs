// The trash in the engine: unlink and rename-overwrite move files to /.trash/HOUR/, what may happen inside the trash,
// the purge command, and volumes whose trash_days is only the old placeholder.
using System.Globalization;
using Google.Protobuf;
using MirrorFS.Core.Meta;
using MirrorFS.MetaServer.Engine;
using static MirrorFS.MetaServer.Tests.Engine.MetaHarness;

namespace MirrorFS.MetaServer.Tests.Engine;

public sealed class TrashTests
{
    private const ulong TrashIno = MetaStateMachine.TrashInode;
    private const long HourNs = 3_600_000_000_000;

    private static async Task<MetaHarness> StartWithTrashAsync(uint days = 1)
    {
        var h = await StartAsync();
        var u = await h.Svc.UpdateVolumeAsync(h.Stamp(new UpdateVolumeRequest { TrashDays = days }));
        Assert.Equal(0, u.Errno);
        return h;
    }

    private static string Hour(long ns) =>
        DateTime.UnixEpoch.AddTicks(ns / 100).ToString("yyyy-MM-dd-HH", CultureInfo.InvariantCulture);

    private static async Task<List<string>> Names(MetaHarness h, ulong dir) =>
        (await h.List(dir)).Select(e => e.Name.ToStringUtf8()).Order(StringComparer.Ordinal).ToList();

    [Fact]
    public async Task Unlink_of_the_last_name_moves_the_file_to_the_hour_directory_with_its_data()
    {
        using var h = await StartWithTrashAsync();
        var d = (await h.Mkdir(Root, "d")).Attr.Inode;
        var f = (await h.Mknod(d, "file.txt")).Attr.Inode;
        var (slice, _) = await h.WriteNew(f, 0, 0, 1000);
        Assert.Equal(0, (await h.Unlink(d, "file.txt")).Errno);
        var unlinkedAt = h.Now;

        Assert.Equal(Errno.ENOENT, (await h.Lookup(d, "file.txt")).Errno);
        var trash = await h.Lookup(Root, ".trash");
        Assert.Equal((0, TrashIno, PosixMode.Directory | 0x16D), (trash.Errno, trash.Attr.Inode, trash.Attr.Mode));
        var hourName = Hour(unlinkedAt);
        var hour = await h.Lookup(TrashIno, hourName);
        Assert.Equal(PosixMode.Directory | PosixMode.Sticky | 0x1FF, hour.Attr.Mode);
        Assert.Equal([$"{d}-{f}-file.txt"], await Names(h, hour.Attr.Inode));
        var a = await h.Attr(f);
        Assert.Equal((1u, 1000UL, unlinkedAt), (a.Nlink, a.Size, a.CtimeNs));
        Assert.Empty(h.State.PendingDeletes()); // the data is kept
        var chunk = await h.Svc.ReadChunkAsync(new ReadChunkRequest { Inode = f });
        Assert.Equal([slice], chunk.Slices.Select(s => s.Id));
        Assert.Equal(3u, (await h.Attr(TrashIno)).Nlink);

        // A second delete in the same hour lands next to it; the trash keeps counting toward the volume.
        var g = (await h.Mknod(Root, "g")).Attr.Inode;
        Assert.Equal(0, (await h.Unlink(Root, "g")).Errno);
        Assert.Equal(new[] { $"{d}-{f}-file.txt", $"1-{g}-g" }.Order(StringComparer.Ordinal), await Names(h, hour.Attr.Inode));
        Assert.Equal([".trash", "d"], await Names(h, Root));
    }

    [Fact]
    public async Task Rename_over_a_file_trashes_the_old_one_and_other_deletes_do_not()
    {
        using var h = await StartWithTrashAsync();
        var old = (await h.Mknod(Root, "target")).Attr.Inode;
        await h.WriteNew(old, 0, 0, 10);
        await h.Mknod(Root, "new");
        Assert.Equal(0, (await h.Rename(Root, "new", Root, "target")).Errno);
        var hour = await h.Ino(TrashIno, Hour(h.Now));
        Assert.Equal([$"1-{old}-target"], await Names(h, hour));
        Assert.Equal(10UL, (await h.Attr(old)).Size);

        // Not the last name: nothing goes to the trash.
        var linked = (await h.Mknod(Root, "l1")).Attr.Inode;
        Assert.Equal(0, (await h.Link(linked, Root, "l2")).Errno);
        Assert.Equal(0, (await h.Unlink(Root, "l1")).Errno);
        Assert.Single(await Names(h, hour));
        // Directories are deleted at once.
        await h.Mkdir(Root, "dir");
        Assert.Equal(0, (await h.Rmdir(Root, "dir")).Errno);
        Assert.Single(await Names(h, hour));
        // Symlinks are kept like files.
        var s = (await h.Symlink(Root, "sym", "t")).Attr.Inode;
        Assert.Equal(0, (await h.Unlink(Root, "sym")).Errno);
        Assert.Contains($"1-{s}-sym", await Names(h, hour));
    }

    [Fact]
    public async Task Without_the_trash_deletes_are_immediate()
    {
        // trash_days 0, and a volume whose trash_days is the placeholder from before the trash existed.
        using var off = await StartWithTrashAsync(days: 0);
        using var old = await StartAsync();
        var oldVolume = (await old.Svc.GetVolumeAsync(new GetVolumeRequest())).Volume;
        Assert.False(oldVolume.TrashEnabled);
        foreach (var h in new[] { off, old })
        {
            var f = (await h.Mknod(Root, "f")).Attr.Inode;
            await h.WriteNew(f, 0, 0, 10);
            Assert.Equal(0, (await h.Unlink(Root, "f")).Errno);
            Assert.Null(await h.GetAttr(f));
            Assert.Equal(Errno.ENOENT, (await h.Lookup(Root, ".trash")).Errno);
            Assert.Single(h.State.PendingDeletes());
        }
        // Without the trash turned on, ".trash" is an ordinary name.
        Assert.Equal(0, (await old.Mkdir(Root, ".trash")).Errno);
        Assert.Equal(Errno.EPERM, (await off.Mkdir(Root, ".trash")).Errno);
    }

    [Fact]
    public async Task The_trash_takes_no_new_names_but_lets_names_out_and_deletes_for_real()
    {
        using var h = await StartWithTrashAsync();
        var f = (await h.Mknod(Root, "f", c: User(1000, 1000))).Attr.Inode;
        await h.WriteNew(f, 0, 0, 100);
        Assert.Equal(0, (await h.Unlink(Root, "f")).Errno);
        var hour = await h.Ino(TrashIno, Hour(h.Now));
        var entry = $"1-{f}-f";

        foreach (var dir in new[] { TrashIno, hour })
        {
            Assert.Equal(Errno.EPERM, (await h.Mknod(dir, "x")).Errno);
            Assert.Equal(Errno.EPERM, (await h.Mkdir(dir, "x")).Errno);
            Assert.Equal(Errno.EPERM, (await h.Symlink(dir, "x", "t")).Errno);
            Assert.Equal(Errno.EPERM, (await h.Create(dir, "x")).Errno);
        }
        var other = (await h.Mknod(Root, "other")).Attr.Inode;
        Assert.Equal(Errno.EPERM, (await h.Link(other, hour, "x")).Errno);
        Assert.Equal(Errno.EPERM, (await h.Rename(Root, "other", hour, "x")).Errno);
        Assert.Equal(Errno.EPERM, (await h.Rename(Root, "other", hour, entry, (uint)RenameFlag.Exchange)).Errno);
        Assert.Equal(Errno.EPERM, (await h.Rename(TrashIno, Hour(h.Now), Root, "h")).Errno);
        Assert.Equal(Errno.EPERM, (await h.Rename(Root, ".trash", Root, "t")).Errno);
        Assert.Equal(Errno.EISDIR, (await h.Rename(Root, "other", Root, ".trash")).Errno);
        Assert.Equal(Errno.EPERM, (await h.Rmdir(Root, ".trash")).Errno);
        Assert.Equal(Errno.EEXIST, (await h.Mkdir(Root, ".trash")).Errno);
        Assert.Equal(Errno.EPERM, (await h.Svc.SetQuotaAsync(h.Stamp(new SetQuotaRequest { Inode = hour, MaxInodes = 1 }))).Errno);

        // Moving a name out is a restore; deleting inside the trash deletes for real.
        Assert.Equal(0, (await h.Rename(hour, entry, Root, "f", (uint)RenameFlag.Noreplace)).Errno);
        Assert.Equal(f, await h.Ino(Root, "f"));
        Assert.Equal(0, (await h.Unlink(Root, "f")).Errno);
        Assert.Equal(f, await h.Ino(hour, entry));
        Assert.Equal(0, (await h.Unlink(hour, entry)).Errno);
        Assert.Null(await h.GetAttr(f));
        Assert.Single(h.State.PendingDeletes());
        // An emptied hour directory can be removed (root only, by the kernel's checks on /.trash's 0555).
        Assert.Equal(0, (await h.Rmdir(TrashIno, Hour(h.Now))).Errno);
        Assert.Equal(2u, (await h.Attr(TrashIno)).Nlink);
    }

    [Fact]
    public async Task Purge_deletes_hour_directories_older_than_the_trash_days()
    {
        using var h = await StartWithTrashAsync(days: 1);
        var first = (await h.Mknod(Root, "first")).Attr.Inode;
        await h.WriteNew(first, 0, 0, 10);
        Assert.Equal(0, (await h.Unlink(Root, "first")).Errno);
        var firstHour = Hour(h.Now);
        h.Clock.Ns += 3 * HourNs;
        var second = (await h.Mknod(Root, "second")).Attr.Inode;
        Assert.Equal(0, (await h.Unlink(Root, "second")).Errno);
        var secondHour = Hour(h.Now);
        Assert.Equal([firstHour, secondHour], await Names(h, TrashIno));

        // Less than a day after the first hour ended: nothing goes.
        var now = DateTime.UnixEpoch.AddTicks(h.Now / 100);
        Assert.Equal(0UL, await h.Svc.PurgeTrashAsync(now.AddHours(20), 1));
        Assert.Equal(2, (await Names(h, TrashIno)).Count);
        // A day after the first hour ended but not the second: only the first goes, for real.
        Assert.Equal(1UL, await h.Svc.PurgeTrashAsync(now.AddHours(22), 1));
        Assert.Equal([secondHour], await Names(h, TrashIno));
        Assert.Null(await h.GetAttr(first));
        Assert.Single(h.State.PendingDeletes());
        Assert.NotNull(await h.GetAttr(second));
        // trash days 0 (trash off): everything whose hour has ended goes.
        Assert.Equal(1UL, await h.Svc.PurgeTrashAsync(now.AddHours(1), 0));
        Assert.Empty(await Names(h, TrashIno));
        Assert.Equal(2u, (await h.Attr(TrashIno)).Nlink);
    }

    [Fact]
    public async Task One_purge_command_removes_at_most_entries_max_and_an_open_file_lives_until_released()
    {
        using var h = await StartWithTrashAsync();
        var inodes = new List<ulong>();
        for (var i = 0; i < 5; i++)
        {
            inodes.Add((await h.Mknod(Root, $"f{i}")).Attr.Inode);
        }
        Assert.Equal(0, (await h.Open(inodes[0])).Errno);
        foreach (var i in Enumerable.Range(0, 5))
        {
            Assert.Equal(0, (await h.Unlink(Root, $"f{i}")).Errno);
        }
        var before = h.Now + (2 * HourNs);
        var cmd = new Command { NowNs = h.Now + 1, PurgeTrash = new PurgeTrashRequest { BeforeNs = before, EntriesMax = 3 } };
        var r1 = PurgeTrashReply.Parser.ParseFrom((await h.Log.ProposeAsync(cmd.ToByteArray())).Reply);
        Assert.Equal((3UL, 0u, true), (r1.Entries, r1.Dirs, r1.More));
        cmd.NowNs++;
        var r2 = PurgeTrashReply.Parser.ParseFrom((await h.Log.ProposeAsync(cmd.ToByteArray())).Reply);
        Assert.Equal((2UL, 1u, false), (r2.Entries, r2.Dirs, r2.More));
        Assert.Equal(0u, (await h.Attr(inodes[0])).Nlink); // still open
        Assert.Null(await h.GetAttr(inodes[1]));
        Assert.Equal(0, (await h.Release(inodes[0])).Errno);
        Assert.Null(await h.GetAttr(inodes[0]));
    }

    [Fact]
    public async Task Long_names_are_cut_and_quotas_lose_what_goes_to_the_trash()
    {
        using var h = await StartWithTrashAsync();
        var d = (await h.Mkdir(Root, "d")).Attr.Inode;
        Assert.Equal(0, (await h.Svc.SetQuotaAsync(h.Stamp(new SetQuotaRequest { Inode = d, MaxInodes = 10 }))).Errno);
        Assert.Equal(0, (await h.Svc.SetQuotaAsync(h.Stamp(new SetQuotaRequest { Inode = Root, MaxInodes = 100 }))).Errno);
        var name = new string('n', 255);
        var f = (await h.Mknod(d, name)).Attr.Inode;
        await h.WriteNew(f, 0, 0, 5000);
        Assert.Equal(0, (await h.Unlink(d, name)).Errno);
        var hour = await h.Ino(TrashIno, Hour(h.Now));
        var entry = Assert.Single(await Names(h, hour));
        Assert.Equal(255, entry.Length);
        Assert.StartsWith($"{d}-{f}-nnn", entry, StringComparison.Ordinal);
        var dq = (await h.Svc.GetQuotaAsync(new GetQuotaRequest { Inode = d })).Quota;
        Assert.Equal((0UL, 0UL), (dq.UsedBytes, dq.UsedInodes));
        var rq = (await h.Svc.GetQuotaAsync(new GetQuotaRequest { Inode = Root })).Quota;
        Assert.Equal((8192UL, 4UL), (rq.UsedBytes, rq.UsedInodes)); // d, .trash, the hour directory, the file
        foreach (var q in new[] { d, Root })
        {
            var c = await h.Svc.CheckQuotaAsync(h.Stamp(new CheckQuotaRequest { Inode = q }));
            Assert.Equal((c.Quota.UsedBytes, c.Quota.UsedInodes), (c.CountedBytes, c.CountedInodes));
        }
    }
}
