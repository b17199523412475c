// POSIX namespace semantics of the engine (errno cases, nlink, times, sticky, setgid, rename matrix).
using MirrorFS.Core.Meta;
using static MirrorFS.MetaServer.Tests.Engine.MetaHarness;

namespace MirrorFS.MetaServer.Tests.Engine;

public sealed class PosixNamespaceTests
{
    internal static uint O(string octal) => Convert.ToUInt32(octal, 8);

    private static readonly Credentials Alice = User(1000, 1000);
    private static readonly Credentials Bob = User(1001, 1001);

    [Fact]
    public async Task Format_creates_root_and_volume_once()
    {
        using var h = new MetaHarness();
        var none = await h.Svc.GetVolumeAsync(new GetVolumeRequest());
        Assert.Equal(Errno.ENOENT, none.Errno);
        Assert.Equal(Errno.ENOENT, (await h.Lookup(Root, "x")).Errno);

        h.Tick();
        var bad = await h.Svc.FormatAsync(new FormatRequest { Volume = new Volume { Name = "v", BlockSize = 1000 } });
        Assert.Equal(Errno.EINVAL, bad.Errno);
        var huge = await h.Svc.FormatAsync(new FormatRequest { Volume = new Volume { Name = "v", Storage = new string('s', 70_000) } });
        Assert.Equal(Errno.EINVAL, huge.Errno);
        h.Tick();
        var f = await h.Svc.FormatAsync(new FormatRequest { Volume = new Volume { Name = "v", Storage = "file:///x" }, Cred = User(5, 6) });
        Assert.Equal(0, f.Errno);
        Assert.Equal(4u << 20, f.Volume.BlockSize);
        Assert.Equal(64u << 20, f.Volume.ChunkSize);
        Assert.True(Guid.TryParse(f.Volume.Uuid, out _));
        Assert.Equal(h.Clock.Ns, f.Volume.CreatedNs);
        var again = await h.Svc.FormatAsync(new FormatRequest { Volume = new Volume { Name = "w" } });
        Assert.Equal(Errno.EEXIST, again.Errno);

        var v = await h.Svc.GetVolumeAsync(new GetVolumeRequest());
        Assert.Equal(0, v.Errno);
        Assert.Equal(f.Volume, v.Volume);
        var root = await h.Attr(Root);
        Assert.Equal(PosixMode.Directory | O("755"), root.Mode);
        Assert.Equal((5u, 6u, 2u, 1UL), (root.Uid, root.Gid, root.Nlink, root.Parent));
        var dots = await h.Svc.ReadDirAsync(new ReadDirRequest { Inode = Root });
        Assert.Equal([".", ".."], dots.Entries.Select(e => e.Name.ToStringUtf8()));
        Assert.All(dots.Entries, e => Assert.Equal(Root, e.Attr.Inode));
        Assert.True(dots.Eof);
    }

    [Fact]
    public async Task Mkdir_sets_attrs_nlink_and_parent_times()
    {
        using var h = await StartAsync();
        var before = await h.Attr(Root);
        var d = await h.Mkdir(Root, "d", O("777"), Alice, umask: O("022"));
        Assert.Equal(0, d.Errno);
        Assert.Equal(PosixMode.Directory | O("755"), d.Attr.Mode);
        Assert.Equal((1000u, 1000u, 2u, Root), (d.Attr.Uid, d.Attr.Gid, d.Attr.Nlink, d.Attr.Parent));
        Assert.Equal((h.Now, h.Now, h.Now), (d.Attr.AtimeNs, d.Attr.MtimeNs, d.Attr.CtimeNs));
        Assert.True(d.Index > 0);
        var root = await h.Attr(Root);
        Assert.Equal(before.Nlink + 1, root.Nlink);
        Assert.Equal((h.Now, h.Now), (root.MtimeNs, root.CtimeNs));
        Assert.Equal(before.AtimeNs, root.AtimeNs);

        var sub = await h.Mkdir(d.Attr.Inode, "s");
        Assert.Equal(3u, (await h.Attr(d.Attr.Inode)).Nlink);
        Assert.Equal(d.Attr.Inode, sub.Attr.Parent);
        // mkdir ignores S_ISUID/S_ISGID in its mode argument but keeps the sticky bit.
        var m = await h.Mkdir(Root, "m", O("7777"));
        Assert.Equal(PosixMode.Directory | O("1777"), m.Attr.Mode);
    }

    [Fact]
    public async Task Create_like_calls_report_name_and_parent_errors()
    {
        using var h = await StartAsync();
        var f = (await h.Create(Root, "file")).Attr.Inode;
        Assert.Equal(Errno.EEXIST, (await h.Mkdir(Root, "file")).Errno);
        Assert.Equal(Errno.EEXIST, (await h.Mknod(Root, "file")).Errno);
        Assert.Equal(Errno.EEXIST, (await h.Create(Root, "file")).Errno);
        Assert.Equal(Errno.EEXIST, (await h.Symlink(Root, "file", "x")).Errno);
        Assert.Equal(Errno.EEXIST, (await h.Mkdir(Root, ".")).Errno);
        Assert.Equal(Errno.EEXIST, (await h.Mkdir(Root, "..")).Errno);
        Assert.Equal(Errno.ENOTDIR, (await h.Mkdir(f, "x")).Errno);
        Assert.Equal(Errno.ENOTDIR, (await h.Create(f, "x")).Errno);
        Assert.Equal(Errno.ENOENT, (await h.Mkdir(999, "x")).Errno);
        Assert.Equal(Errno.ENOENT, (await h.Mkdir(Root, "")).Errno);
        Assert.Equal(Errno.EINVAL, (await h.Mkdir(Root, "a/b")).Errno);
        Assert.Equal(Errno.ENAMETOOLONG, (await h.Mkdir(Root, new string('n', 256))).Errno);
        Assert.Equal(0, (await h.Mkdir(Root, new string('n', 255))).Errno);
        Assert.Equal(Errno.ENAMETOOLONG, (await h.Lookup(Root, new string('n', 256))).Errno);
        Assert.Equal(Errno.ENOENT, (await h.Lookup(Root, "missing")).Errno);
        Assert.Equal(Errno.ENOTDIR, (await h.Lookup(f, "x")).Errno);
        // A name longer than 255 bytes in UTF-8 though shorter in characters.
        Assert.Equal(Errno.ENAMETOOLONG, (await h.Mkdir(Root, new string('é', 128))).Errno);
    }

    [Fact]
    public async Task Mknod_creates_each_type_and_checks_devices()
    {
        using var h = await StartAsync();
        var reg = await h.Mknod(Root, "reg", O("644"));
        Assert.Equal(PosixMode.Regular | O("644"), reg.Attr.Mode);
        var fifo = await h.Mknod(Root, "fifo", PosixMode.Fifo | O("600"));
        Assert.Equal(PosixMode.Fifo | O("600"), fifo.Attr.Mode);
        var sock = await h.Mknod(Root, "sock", PosixMode.Socket | O("600"));
        Assert.Equal(PosixMode.Socket, PosixMode.Type(sock.Attr.Mode));
        var chr = await h.Mknod(Root, "chr", PosixMode.Char | O("600"), rdev: 0x0501);
        Assert.Equal((PosixMode.Char, 0x0501UL), (PosixMode.Type(chr.Attr.Mode), chr.Attr.Rdev));
        var blk = await h.Mknod(Root, "blk", PosixMode.Block | O("600"), rdev: 0x0801);
        Assert.Equal((PosixMode.Block, 0x0801UL), (PosixMode.Type(blk.Attr.Mode), (await h.Attr(blk.Attr.Inode)).Rdev));
        Assert.Equal(0UL, (await h.Mknod(Root, "fifo2", PosixMode.Fifo | O("600"), rdev: 7)).Attr.Rdev);
        Assert.Equal(1u, fifo.Attr.Nlink);

        Assert.Equal(Errno.EPERM, (await h.Mknod(Root, "dir", PosixMode.Directory | O("755"))).Errno);
        Assert.Equal(Errno.EINVAL, (await h.Mknod(Root, "lnk", PosixMode.Symlink | O("777"))).Errno);
        Assert.Equal(Errno.EPERM, (await h.Mknod(Root, "chr2", PosixMode.Char | O("600"), 1, Alice)).Errno);
        Assert.Equal(0, (await h.Mknod(Root, "fifo3", PosixMode.Fifo | O("600"), 0, Alice)).Errno);
        Assert.Equal(Errno.ENOENT, (await h.Lookup(Root, "chr2")).Errno);
    }

    [Fact]
    public async Task Unlink_and_rmdir_errors_and_effects()
    {
        using var h = await StartAsync();
        var d = (await h.Mkdir(Root, "d")).Attr.Inode;
        var f = (await h.Create(d, "f")).Attr.Inode;
        await h.Release(f);
        await h.Mkdir(d, "sub");
        Assert.Equal(Errno.EISDIR, (await h.Unlink(Root, "d")).Errno);
        Assert.Equal(Errno.EISDIR, (await h.Unlink(d, ".")).Errno);
        Assert.Equal(Errno.ENOENT, (await h.Unlink(Root, "nope")).Errno);
        Assert.Equal(Errno.ENOTDIR, (await h.Unlink(f, "x")).Errno);
        Assert.Equal(Errno.ENOTDIR, (await h.Rmdir(d, "f")).Errno);
        Assert.Equal(Errno.ENOTEMPTY, (await h.Rmdir(Root, "d")).Errno);
        Assert.Equal(Errno.EINVAL, (await h.Rmdir(d, ".")).Errno);
        Assert.Equal(Errno.ENOTEMPTY, (await h.Rmdir(d, "..")).Errno);
        Assert.Equal(Errno.ENOENT, (await h.Rmdir(Root, "nope")).Errno);

        Assert.Equal(0, (await h.Unlink(d, "f")).Errno);
        var dir = await h.Attr(d);
        Assert.Equal((h.Now, h.Now, 3u), (dir.MtimeNs, dir.CtimeNs, dir.Nlink));
        Assert.Null(await h.GetAttr(f));
        Assert.Equal(0, (await h.Rmdir(d, "sub")).Errno);
        dir = await h.Attr(d);
        Assert.Equal((h.Now, 2u), (dir.MtimeNs, dir.Nlink));
        Assert.Equal(0, (await h.Rmdir(Root, "d")).Errno);
        Assert.Equal(2u, (await h.Attr(Root)).Nlink);
        Assert.Null(await h.GetAttr(d));
        Assert.Equal(1UL, h.State.Usage().Inodes);
    }

    [Fact]
    public async Task Hard_links_count_and_update_ctime()
    {
        using var h = await StartAsync();
        var d = (await h.Mkdir(Root, "d")).Attr.Inode;
        var f = (await h.Mknod(Root, "f")).Attr.Inode;
        var l = await h.Link(f, d, "g");
        Assert.Equal(0, l.Errno);
        Assert.Equal((2u, h.Now), (l.Attr.Nlink, l.Attr.CtimeNs));
        Assert.Equal((h.Now, h.Now), ((await h.Attr(d)).MtimeNs, (await h.Attr(d)).CtimeNs));
        Assert.Equal(2u, (await h.Attr(d)).Nlink); // a file link does not count in the directory's nlink
        Assert.Equal(f, await h.Ino(d, "g"));
        Assert.Equal(Errno.EEXIST, (await h.Link(f, d, "g")).Errno);
        Assert.Equal(Errno.EEXIST, (await h.Link(f, d, ".")).Errno);
        Assert.Equal(Errno.EPERM, (await h.Link(d, Root, "dlink")).Errno);
        Assert.Equal(Errno.ENOENT, (await h.Link(12345, Root, "x")).Errno);
        Assert.Equal(Errno.ENOTDIR, (await h.Link(f, f, "x")).Errno);

        Assert.Equal(0, (await h.Unlink(Root, "f")).Errno);
        var a = await h.Attr(f);
        Assert.Equal((1u, h.Now), (a.Nlink, a.CtimeNs));
        Assert.Equal(0, (await h.Unlink(d, "g")).Errno);
        Assert.Null(await h.GetAttr(f));
    }

    [Fact]
    public async Task Link_of_unlinked_open_file_is_enoent()
    {
        using var h = await StartAsync();
        var f = (await h.Create(Root, "f")).Attr.Inode;
        await h.Unlink(Root, "f");
        Assert.Equal(0u, (await h.Attr(f)).Nlink);
        Assert.Equal(Errno.ENOENT, (await h.Link(f, Root, "back")).Errno);
    }

    [Fact]
    public async Task Symlink_and_readlink()
    {
        using var h = await StartAsync();
        var s = await h.Symlink(Root, "ln", "some/where", Alice);
        Assert.Equal(0, s.Errno);
        Assert.Equal((PosixMode.Symlink | O("777"), 10UL, 1000u), (s.Attr.Mode, s.Attr.Size, s.Attr.Uid));
        var rl = await h.Svc.ReadLinkAsync(new ReadLinkRequest { Inode = s.Attr.Inode });
        Assert.Equal("some/where", rl.Target.ToStringUtf8());
        Assert.Equal(Errno.ENOENT, (await h.Symlink(Root, "empty", "")).Errno);
        Assert.Equal(Errno.ENAMETOOLONG, (await h.Symlink(Root, "long", new string('x', 4096))).Errno);
        Assert.Equal(0, (await h.Symlink(Root, "max", new string('x', 4095))).Errno);
        var f = (await h.Mknod(Root, "f")).Attr.Inode;
        Assert.Equal(Errno.EINVAL, (await h.Svc.ReadLinkAsync(new ReadLinkRequest { Inode = f })).Errno);
        Assert.Equal(Errno.ENOENT, (await h.Svc.ReadLinkAsync(new ReadLinkRequest { Inode = 999 })).Errno);
        Assert.Equal(0, (await h.Unlink(Root, "ln")).Errno);
        Assert.Null(await h.GetAttr(s.Attr.Inode));
    }

    [Fact]
    public async Task Lookup_resolves_dot_and_dotdot()
    {
        using var h = await StartAsync();
        var d = (await h.Mkdir(Root, "d")).Attr.Inode;
        var e = (await h.Mkdir(d, "e")).Attr.Inode;
        Assert.Equal(e, await h.Ino(e, "."));
        Assert.Equal(d, await h.Ino(e, ".."));
        Assert.Equal(Root, await h.Ino(Root, ".."));
    }

    [Fact]
    public async Task Rename_file_to_new_name_updates_both_parents()
    {
        using var h = await StartAsync();
        var a = (await h.Mkdir(Root, "a")).Attr.Inode;
        var b = (await h.Mkdir(Root, "b")).Attr.Inode;
        var f = (await h.Mknod(a, "f")).Attr.Inode;
        var fa = await h.Attr(f);
        Assert.Equal(0, (await h.Rename(a, "f", b, "g")).Errno);
        Assert.Equal(f, await h.Ino(b, "g"));
        Assert.Equal(Errno.ENOENT, (await h.Lookup(a, "f")).Errno);
        var moved = await h.Attr(f);
        Assert.Equal(h.Now, moved.CtimeNs);
        Assert.Equal(fa.MtimeNs, moved.MtimeNs);
        foreach (var p in new[] { a, b })
        {
            var pa = await h.Attr(p);
            Assert.Equal((h.Now, h.Now, 2u), (pa.MtimeNs, pa.CtimeNs, pa.Nlink));
        }
    }

    [Fact]
    public async Task Rename_over_existing_file_drops_target()
    {
        using var h = await StartAsync();
        var f = (await h.Create(Root, "f")).Attr.Inode;
        var g = (await h.Create(Root, "g")).Attr.Inode;
        var (gid, _) = await h.WriteNew(g, 0, 0, 100);
        await h.Release(f);
        await h.Release(g);
        Assert.Equal(0, (await h.Rename(Root, "f", Root, "g")).Errno);
        Assert.Equal(f, await h.Ino(Root, "g"));
        Assert.Null(await h.GetAttr(g));
        Assert.Contains(h.State.PendingDeletes(), p => p.Id == gid);
        Assert.Single(await h.List(Root));

        // Target with another link survives with nlink - 1 and a new ctime.
        var x = (await h.Mknod(Root, "x")).Attr.Inode;
        await h.Link(x, Root, "x2");
        Assert.Equal(0, (await h.Rename(Root, "g", Root, "x")).Errno);
        var xa = await h.Attr(x);
        Assert.Equal((1u, h.Now), (xa.Nlink, xa.CtimeNs));
    }

    [Fact]
    public async Task Rename_directory_matrix()
    {
        using var h = await StartAsync();
        var a = (await h.Mkdir(Root, "a")).Attr.Inode;
        var b = (await h.Mkdir(Root, "b")).Attr.Inode;
        var c = (await h.Mkdir(a, "c")).Attr.Inode;
        var file = (await h.Mknod(Root, "file")).Attr.Inode;
        var full = (await h.Mkdir(Root, "full")).Attr.Inode;
        await h.Mknod(full, "inside");

        Assert.Equal(Errno.EISDIR, (await h.Rename(Root, "file", Root, "b")).Errno);
        Assert.Equal(Errno.ENOTDIR, (await h.Rename(Root, "a", Root, "file")).Errno);
        Assert.Equal(Errno.ENOTEMPTY, (await h.Rename(Root, "b", Root, "full")).Errno);
        Assert.Equal(Errno.EINVAL, (await h.Rename(Root, "a", c, "x")).Errno);
        Assert.Equal(Errno.EINVAL, (await h.Rename(Root, "a", a, "x")).Errno);
        Assert.Equal(Errno.ENOTEMPTY, (await h.Rename(a, "c", Root, "a")).Errno); // target is an ancestor of the source
        Assert.Equal(Errno.EBUSY, (await h.Rename(a, ".", Root, "z")).Errno);
        Assert.Equal(Errno.EBUSY, (await h.Rename(Root, "a", Root, "..")).Errno);
        Assert.Equal(Errno.EEXIST, (await h.Rename(Root, "a", Root, "..", (uint)RenameFlag.Noreplace)).Errno);
        Assert.Equal(Errno.ENOENT, (await h.Rename(Root, "nope", Root, "z")).Errno);
        Assert.Equal(Errno.ENOTDIR, (await h.Rename(file, "x", Root, "z")).Errno);
        Assert.Equal(Errno.ENAMETOOLONG, (await h.Rename(Root, "a", Root, new string('z', 256))).Errno);

        // Move c from a to b: nlink moves with it, parent pointer follows.
        Assert.Equal(0, (await h.Rename(a, "c", b, "c")).Errno);
        Assert.Equal((2u, 3u), ((await h.Attr(a)).Nlink, (await h.Attr(b)).Nlink));
        Assert.Equal(b, (await h.Attr(c)).Parent);
        Assert.Equal(b, await h.Ino(c, ".."));

        // Directory over an empty directory: the target goes away.
        var empty = (await h.Mkdir(Root, "empty")).Attr.Inode;
        var rootNlink = (await h.Attr(Root)).Nlink;
        Assert.Equal(0, (await h.Rename(b, "c", Root, "empty")).Errno);
        Assert.Null(await h.GetAttr(empty));
        Assert.Equal(c, await h.Ino(Root, "empty"));
        Assert.Equal(rootNlink, (await h.Attr(Root)).Nlink);
        Assert.Equal(2u, (await h.Attr(b)).Nlink);
        Assert.Equal(Root, (await h.Attr(c)).Parent);

        // Same directory over an empty sibling: the parent loses one subdirectory.
        await h.Mkdir(Root, "e1");
        await h.Mkdir(Root, "e2");
        rootNlink = (await h.Attr(Root)).Nlink;
        Assert.Equal(0, (await h.Rename(Root, "e1", Root, "e2")).Errno);
        Assert.Equal(rootNlink - 1, (await h.Attr(Root)).Nlink);
    }

    [Fact]
    public async Task Rename_flags_noreplace_and_exchange()
    {
        using var h = await StartAsync();
        var a = (await h.Mkdir(Root, "a")).Attr.Inode;
        var b = (await h.Mkdir(Root, "b")).Attr.Inode;
        var f = (await h.Mknod(a, "f")).Attr.Inode;
        var sub = (await h.Mkdir(b, "sub")).Attr.Inode;
        await h.Mknod(sub, "keep");
        const uint noReplace = (uint)RenameFlag.Noreplace;
        const uint exchange = (uint)RenameFlag.Exchange;

        Assert.Equal(Errno.EINVAL, (await h.Rename(a, "f", b, "x", noReplace | exchange)).Errno);
        Assert.Equal(Errno.EINVAL, (await h.Rename(a, "f", b, "x", 4)).Errno);
        Assert.Equal(Errno.EEXIST, (await h.Rename(a, "f", b, "sub", noReplace)).Errno);
        Assert.Equal(Errno.ENOENT, (await h.Rename(a, "f", b, "none", exchange)).Errno);
        Assert.Equal(0, (await h.Rename(a, "f", b, "f2", noReplace)).Errno);
        Assert.Equal(0, (await h.Rename(b, "f2", a, "f")).Errno);

        // Exchange a file and a non-empty directory across parents: both stay, nlink and parent follow the directory.
        Assert.Equal(0, (await h.Rename(a, "f", b, "sub", exchange)).Errno);
        Assert.Equal(sub, await h.Ino(a, "f"));
        Assert.Equal(f, await h.Ino(b, "sub"));
        Assert.Equal((3u, 2u), ((await h.Attr(a)).Nlink, (await h.Attr(b)).Nlink));
        Assert.Equal(a, (await h.Attr(sub)).Parent);
        Assert.Equal((h.Now, h.Now), ((await h.Attr(f)).CtimeNs, (await h.Attr(sub)).CtimeNs));
        Assert.Equal((h.Now, h.Now), ((await h.Attr(a)).MtimeNs, (await h.Attr(b)).MtimeNs));
        Assert.Equal(f, await h.Ino(b, "sub"));
        Assert.Single(await h.List(sub));

        // Exchanging a directory with its own ancestor is refused.
        Assert.Equal(Errno.EINVAL, (await h.Rename(Root, "a", a, "f", exchange)).Errno);
    }

    [Fact]
    public async Task Rename_between_links_of_one_file_does_nothing()
    {
        using var h = await StartAsync();
        var f = (await h.Mknod(Root, "f")).Attr.Inode;
        await h.Link(f, Root, "g");
        var before = await h.Attr(f);
        var rootBefore = await h.Attr(Root);
        Assert.Equal(0, (await h.Rename(Root, "f", Root, "g")).Errno);
        Assert.Equal(f, await h.Ino(Root, "f"));
        Assert.Equal(f, await h.Ino(Root, "g"));
        Assert.Equal(before, await h.Attr(f));
        Assert.Equal(rootBefore, await h.Attr(Root));
    }

    [Fact]
    public async Task Sticky_directory_restricts_removal_and_rename()
    {
        using var h = await StartAsync(rootMode: O("777"));
        var tmp = (await h.Mkdir(Root, "tmp", O("1777"))).Attr.Inode;
        var af = (await h.Mknod(tmp, "alice", O("666"), c: Alice)).Attr.Inode;
        await h.Mkdir(tmp, "alicedir", O("777"), Alice);
        await h.Mknod(tmp, "bob", O("666"), c: Bob);

        Assert.Equal(Errno.EPERM, (await h.Unlink(tmp, "alice", Bob)).Errno);
        Assert.Equal(Errno.EPERM, (await h.Rmdir(tmp, "alicedir", Bob)).Errno);
        Assert.Equal(Errno.EPERM, (await h.Rename(tmp, "alice", tmp, "stolen", 0, Bob)).Errno);
        Assert.Equal(Errno.EPERM, (await h.Rename(tmp, "bob", tmp, "alice", 0, Bob)).Errno); // would replace alice's file
        Assert.Equal(Errno.EPERM, (await h.Rename(tmp, "alice", tmp, "bob", (uint)RenameFlag.Exchange, Bob)).Errno);
        Assert.Equal(Errno.EPERM, (await h.Unlink(tmp, "alicedir", Bob)).Errno); // sticky check comes before EISDIR
        Assert.Equal(af, await h.Ino(tmp, "alice"));

        // Bob may move his own file into Root (not sticky) and Alice may remove hers.
        Assert.Equal(0, (await h.Rename(tmp, "bob", Root, "bobs", 0, Bob)).Errno);
        Assert.Equal(0, (await h.Unlink(tmp, "alice", Alice)).Errno);
        // The directory's owner (root here) and root may remove anything.
        await h.Mknod(tmp, "alice2", O("644"), c: Alice);
        Assert.Equal(0, (await h.Unlink(tmp, "alice2")).Errno);
        var own = (await h.Mkdir(Root, "own", O("1777"), Bob)).Attr.Inode;
        await h.Mknod(own, "a", O("644"), c: Alice);
        Assert.Equal(0, (await h.Unlink(own, "a", Bob)).Errno);
    }

    [Fact]
    public async Task Setgid_directory_is_inherited()
    {
        using var h = await StartAsync(rootMode: O("777"));
        var shared = (await h.Mkdir(Root, "shared", O("2775"))).Attr.Inode;
        Assert.Equal(PosixMode.Directory | O("775"), (await h.Attr(shared)).Mode); // mkdir does not take S_ISGID from its mode
        var chmod = new SetAttrRequest { Inode = shared, Valid = (uint)(SetAttrValid.Gid | SetAttrValid.Mode), Gid = 500, Mode = O("2775") };
        Assert.Equal(0, (await h.SetAttr(chmod)).Errno);
        var s = await h.Attr(shared);
        Assert.Equal(PosixMode.Directory | O("2775"), s.Mode);

        var f = await h.Mknod(shared, "f", PosixMode.Regular | O("644"), c: Alice);
        Assert.Equal((1000u, 500u), (f.Attr.Uid, f.Attr.Gid));
        var d = await h.Mkdir(shared, "d", O("755"), Alice);
        Assert.Equal((500u, PosixMode.Directory | O("2755")), (d.Attr.Gid, d.Attr.Mode));
        var deeper = await h.Mkdir(d.Attr.Inode, "deeper", O("700"), Bob);
        Assert.Equal((500u, PosixMode.Directory | O("2700")), (deeper.Attr.Gid, deeper.Attr.Mode));
        var ln = await h.Symlink(shared, "ln", "f", Alice);
        Assert.Equal(500u, ln.Attr.Gid);

        // A setgid, group-executable file keeps S_ISGID only if its creator is in the directory's group.
        var outsider = await h.Mknod(shared, "out", PosixMode.Regular | O("2755"), c: Alice);
        Assert.Equal(PosixMode.Regular | O("755"), outsider.Attr.Mode);
        var member = await h.Mknod(shared, "in", PosixMode.Regular | O("2755"), c: User(1000, 1000, 500));
        Assert.Equal(PosixMode.Regular | O("2755"), member.Attr.Mode);
        var noexec = await h.Mknod(shared, "noexec", PosixMode.Regular | O("2644"), c: Alice);
        Assert.Equal(PosixMode.Regular | O("2644"), noexec.Attr.Mode);

        // Outside a setgid directory the caller's group is used.
        var plain = await h.Mknod(Root, "plain", PosixMode.Regular | O("644"), c: Alice);
        Assert.Equal(1000u, plain.Attr.Gid);
    }

    [Fact]
    public async Task Umask_applies_to_permission_bits()
    {
        using var h = await StartAsync();
        var r = await h.Svc.CreateAsync(h.Stamp(new CreateRequest { Parent = Root, Name = N("f"), Mode = O("666"), Umask = O("027") }));
        Assert.Equal(PosixMode.Regular | O("640"), r.Attr.Mode);
        var m = await h.Svc.MknodAsync(h.Stamp(new MknodRequest { Parent = Root, Name = N("g"), Mode = PosixMode.Regular | O("4777"), Umask = O("022") }));
        Assert.Equal(PosixMode.Regular | O("4755"), m.Attr.Mode);
    }

    [Fact]
    public async Task ReadDir_pages_with_attributes_and_stable_positions()
    {
        using var h = await StartAsync();
        var d = (await h.Mkdir(Root, "d")).Attr.Inode;
        var names = Enumerable.Range(0, 50).Select(i => $"f{i:D2}").ToList();
        foreach (var n in names)
        {
            await h.Mknod(d, n);
        }
        var all = await h.List(d, page: 7);
        Assert.Equal(names, all.Select(e => e.Name.ToStringUtf8()).Order());
        Assert.All(all, e => Assert.Equal(PosixMode.Regular | O("644"), e.Attr.Mode));

        var first = await h.Svc.ReadDirAsync(new ReadDirRequest { Inode = d, Limit = 3 });
        Assert.Equal(new[] { ".", "..", all[0].Name.ToStringUtf8() }, first.Entries.Select(e => e.Name.ToStringUtf8()));
        Assert.Equal(d, first.Entries[0].Attr.Inode);
        Assert.Equal(Root, first.Entries[1].Attr.Inode);
        Assert.False(first.Eof);

        // Entries that stay put are seen exactly once while others come and go between pages.
        var seen = new List<string>();
        ulong offset = 0;
        var removed = new HashSet<string>();
        var round = 0;
        while (true)
        {
            var page = await h.Svc.ReadDirAsync(new ReadDirRequest { Inode = d, Offset = offset, Limit = 5 });
            foreach (var e in page.Entries)
            {
                seen.Add(e.Name.ToStringUtf8());
                offset = e.Offset;
            }
            if (page.Eof)
            {
                break;
            }
            var victim = names[^(1 + round)];
            Assert.Equal(0, (await h.Unlink(d, victim)).Errno);
            removed.Add(victim);
            await h.Mknod(d, $"new{round++}");
        }
        foreach (var n in names.Where(n => !removed.Contains(n)))
        {
            Assert.Single(seen, n);
        }
        Assert.Equal(seen.Count, seen.Distinct().Count());

        var past = await h.Svc.ReadDirAsync(new ReadDirRequest { Inode = d, Offset = 1_000_000 });
        Assert.True(past.Eof);
        Assert.Empty(past.Entries);
        var f = await h.Ino(d, "f00");
        Assert.Equal(Errno.ENOTDIR, (await h.Svc.ReadDirAsync(new ReadDirRequest { Inode = f })).Errno);
        Assert.Equal(Errno.ENOENT, (await h.Svc.ReadDirAsync(new ReadDirRequest { Inode = 4242 })).Errno);
    }
}
