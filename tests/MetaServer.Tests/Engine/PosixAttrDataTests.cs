// SetAttr rules, open files, slices and truncate, xattrs, statfs and fallocate.
using MirrorFS.Core.Meta;
using static MirrorFS.MetaServer.Tests.Engine.MetaHarness;
using static MirrorFS.MetaServer.Tests.Engine.PosixNamespaceTests;

namespace MirrorFS.MetaServer.Tests.Engine;

public sealed class PosixAttrDataTests
{
    private static readonly Credentials Alice = User(1000, 1000, 50);
    private static readonly Credentials Bob = User(1001, 1001);
    private const uint MChunk = 64u << 20;

    [Fact]
    public async Task SetAttr_checks_ownership_like_setattr_prepare()
    {
        using var h = await StartAsync(rootMode: O("777"));
        var f = (await h.Mknod(Root, "f", PosixMode.Regular | O("644"), c: Alice)).Attr.Inode;
        var mode = new SetAttrRequest { Inode = f, Valid = (uint)SetAttrValid.Mode, Mode = O("600") };
        Assert.Equal(Errno.EPERM, (await h.SetAttr(mode.Clone(), Bob)).Errno);
        var ok = await h.SetAttr(mode.Clone(), Alice);
        Assert.Equal((0, PosixMode.Regular | O("600"), h.Now), (ok.Errno, ok.Attr.Mode, ok.Attr.CtimeNs));

        var chown = new SetAttrRequest { Inode = f, Valid = (uint)SetAttrValid.Uid, Uid = 1001 };
        Assert.Equal(Errno.EPERM, (await h.SetAttr(chown.Clone(), Alice)).Errno);
        Assert.Equal(0, (await h.SetAttr(new SetAttrRequest { Inode = f, Valid = (uint)SetAttrValid.Uid, Uid = 1000 }, Alice)).Errno);
        var chgrp = new SetAttrRequest { Inode = f, Valid = (uint)SetAttrValid.Gid, Gid = 77 };
        Assert.Equal(Errno.EPERM, (await h.SetAttr(chgrp.Clone(), Alice)).Errno);
        Assert.Equal(Errno.EPERM, (await h.SetAttr(new SetAttrRequest { Inode = f, Valid = (uint)SetAttrValid.Gid, Gid = 50 }, Bob)).Errno);
        Assert.Equal(50u, (await h.SetAttr(new SetAttrRequest { Inode = f, Valid = (uint)SetAttrValid.Gid, Gid = 50 }, Alice)).Attr.Gid);
        Assert.Equal(1001u, (await h.SetAttr(chown.Clone())).Attr.Uid);

        // Explicit times need ownership; "now" does not (write permission is the kernel's business).
        var times = new SetAttrRequest { Inode = f, Valid = (uint)(SetAttrValid.Atime | SetAttrValid.Mtime), AtimeNs = 5, MtimeNs = 6 };
        Assert.Equal(Errno.EPERM, (await h.SetAttr(times.Clone(), Alice)).Errno);
        var t = await h.SetAttr(times.Clone(), Bob);
        Assert.Equal((5L, 6L, h.Now), (t.Attr.AtimeNs, t.Attr.MtimeNs, t.Attr.CtimeNs));
        var now = await h.SetAttr(new SetAttrRequest { Inode = f, Valid = (uint)(SetAttrValid.AtimeNow | SetAttrValid.MtimeNow) }, Alice);
        Assert.Equal((0, h.Now, h.Now), (now.Errno, now.Attr.AtimeNs, now.Attr.MtimeNs));
        var ctime = await h.SetAttr(new SetAttrRequest { Inode = f, Valid = (uint)SetAttrValid.Ctime, CtimeNs = 42 }, Bob);
        Assert.Equal(42L, ctime.Attr.CtimeNs);
        Assert.Equal(Errno.ENOENT, (await h.SetAttr(new SetAttrRequest { Inode = 999, Valid = (uint)SetAttrValid.Mode })).Errno);
    }

    [Fact]
    public async Task Chown_and_chmod_clear_setid_bits()
    {
        using var h = await StartAsync(rootMode: O("777"));
        var f = (await h.Mknod(Root, "f", PosixMode.Regular | O("6755"), c: Alice)).Attr.Inode;
        Assert.Equal(PosixMode.Regular | O("6755"), (await h.Attr(f)).Mode);
        // chown of a non-directory clears S_ISUID, and S_ISGID because group-exec is set (even by root).
        var r = await h.SetAttr(new SetAttrRequest { Inode = f, Valid = (uint)SetAttrValid.Uid, Uid = 1001 });
        Assert.Equal(PosixMode.Regular | O("755"), r.Attr.Mode);

        var g = (await h.Mknod(Root, "g", PosixMode.Regular | O("2644"), c: Alice)).Attr.Inode;
        var kept = await h.SetAttr(new SetAttrRequest { Inode = g, Valid = (uint)SetAttrValid.Gid, Gid = 50 }, Alice);
        Assert.Equal(PosixMode.Regular | O("2644"), kept.Attr.Mode); // no group-exec, owner in group: kept

        // chmod by someone outside the file's group cannot set S_ISGID.
        var x = (await h.Mknod(Root, "x", PosixMode.Regular | O("644"), c: Alice)).Attr.Inode;
        await h.SetAttr(new SetAttrRequest { Inode = x, Valid = (uint)SetAttrValid.Gid, Gid = 99 });
        var m = await h.SetAttr(new SetAttrRequest { Inode = x, Valid = (uint)SetAttrValid.Mode, Mode = O("2755") }, Alice);
        Assert.Equal(PosixMode.Regular | O("755"), m.Attr.Mode);
        var rm = await h.SetAttr(new SetAttrRequest { Inode = x, Valid = (uint)SetAttrValid.Mode, Mode = O("2755") });
        Assert.Equal(PosixMode.Regular | O("2755"), rm.Attr.Mode);

        // Directories keep their setgid bit across chown.
        var d = (await h.Mkdir(Root, "d", O("775"), Alice)).Attr.Inode;
        await h.SetAttr(new SetAttrRequest { Inode = d, Valid = (uint)SetAttrValid.Mode, Mode = O("2775") }, Alice);
        var dc = await h.SetAttr(new SetAttrRequest { Inode = d, Valid = (uint)SetAttrValid.Gid, Gid = 50 }, Alice);
        Assert.Equal(PosixMode.Directory | O("2775"), dc.Attr.Mode);
    }

    [Fact]
    public async Task SetAttr_size_changes_times_only_when_size_changes()
    {
        using var h = await StartAsync();
        var f = (await h.Mknod(Root, "f")).Attr.Inode;
        var grow = await h.SetAttr(new SetAttrRequest { Inode = f, Valid = (uint)SetAttrValid.Size, Size = 10_000 });
        Assert.Equal((10_000UL, h.Now, h.Now, 24UL), (grow.Attr.Size, grow.Attr.MtimeNs, grow.Attr.CtimeNs, grow.Attr.Blocks));
        var stamp = h.Now;
        var same = await h.SetAttr(new SetAttrRequest { Inode = f, Valid = (uint)SetAttrValid.Size, Size = 10_000 });
        Assert.Equal((stamp, stamp), (same.Attr.MtimeNs, same.Attr.CtimeNs));
        var d = (await h.Mkdir(Root, "d")).Attr.Inode;
        Assert.Equal(Errno.EISDIR, (await h.SetAttr(new SetAttrRequest { Inode = d, Valid = (uint)SetAttrValid.Size })).Errno);
        var fifo = (await h.Mknod(Root, "p", PosixMode.Fifo | O("644"))).Attr.Inode;
        Assert.Equal(Errno.EINVAL, (await h.SetAttr(new SetAttrRequest { Inode = fifo, Valid = (uint)SetAttrValid.Size })).Errno);
        Assert.Equal(Errno.EFBIG, (await h.SetAttr(new SetAttrRequest { Inode = f, Valid = (uint)SetAttrValid.Size, Size = ulong.MaxValue })).Errno);
    }

    [Fact]
    public async Task Slices_are_listed_in_write_order_and_extend_the_file()
    {
        using var h = await StartAsync();
        var f = (await h.Create(Root, "f")).Attr.Inode;
        var (a, ra) = await h.WriteNew(f, 0, 0, 4096);
        Assert.Equal((0, 4096UL, h.Now, h.Now), (ra.Errno, ra.Attr.Size, ra.Attr.MtimeNs, ra.Attr.CtimeNs));
        var (b, _) = await h.WriteNew(f, 0, 1000, 100);
        var (c, rc) = await h.WriteNew(f, 2, 10, 20);
        Assert.Equal((2UL * MChunk) + 30, rc.Attr.Size);
        var chunk0 = await h.Svc.ReadChunkAsync(new ReadChunkRequest { Inode = f, ChunkIndex = 0 });
        Assert.Equal(new[] { a, b }, chunk0.Slices.Select(s => s.Id));
        Assert.Equal(new Slice { Id = b, Size = 100, Offset = 0, Length = 100, Pos = 1000 }, chunk0.Slices[1]);
        Assert.Empty((await h.Svc.ReadChunkAsync(new ReadChunkRequest { Inode = f, ChunkIndex = 1 })).Slices);
        Assert.Single((await h.Svc.ReadChunkAsync(new ReadChunkRequest { Inode = f, ChunkIndex = 2 })).Slices, s => s.Id == c);

        var id = await h.NewSliceIds();
        Assert.Equal(Errno.EINVAL, (await h.Write(f, 0, new Slice { Id = id + 100, Size = 1, Length = 1 })).Errno);
        Assert.Equal(Errno.EINVAL, (await h.Write(f, 0, new Slice { Id = id, Size = 1, Length = 0 })).Errno);
        Assert.Equal(Errno.EINVAL, (await h.Write(f, 0, new Slice { Id = id, Size = 10, Offset = 5, Length = 6 })).Errno);
        Assert.Equal(Errno.EINVAL, (await h.Write(f, 0, new Slice { Id = id, Size = 10, Length = 10, Pos = MChunk - 5 })).Errno);
        var d = (await h.Mkdir(Root, "d")).Attr.Inode;
        Assert.Equal(Errno.EISDIR, (await h.Write(d, 0, new Slice { Id = id, Size = 1, Length = 1 })).Errno);
        Assert.Equal(Errno.ENOENT, (await h.Write(999, 0, new Slice { Id = id, Size = 1, Length = 1 })).Errno);
        Assert.Equal(Errno.EISDIR, (await h.Svc.ReadChunkAsync(new ReadChunkRequest { Inode = d })).Errno);
    }

    [Fact]
    public async Task Write_by_non_root_clears_setuid_bits()
    {
        using var h = await StartAsync(rootMode: O("777"));
        var f = (await h.Mknod(Root, "f", PosixMode.Regular | O("6775"), c: Alice)).Attr.Inode;
        var (_, root) = await h.WriteNew(f, 0, 0, 10);
        Assert.Equal(PosixMode.Regular | O("6775"), root.Attr.Mode);
        var (_, user) = await h.WriteNew(f, 0, 0, 10, Alice);
        Assert.Equal(PosixMode.Regular | O("775"), user.Attr.Mode);

        var g = (await h.Mknod(Root, "g", PosixMode.Regular | O("2664"), c: Alice)).Attr.Inode;
        var (_, noexec) = await h.WriteNew(g, 0, 0, 10, Alice);
        Assert.Equal(PosixMode.Regular | O("2664"), noexec.Attr.Mode); // S_ISGID without group-exec stays
        var t = (await h.Mknod(Root, "t", PosixMode.Regular | O("4755"), c: Alice)).Attr.Inode;
        Assert.Equal(PosixMode.Regular | O("755"), (await h.Truncate(t, 0, Alice)).Attr.Mode);
    }

    [Fact]
    public async Task Truncate_drops_and_trims_slices()
    {
        using var h = await StartAsync();
        var f = (await h.Create(Root, "f")).Attr.Inode;
        var (a, _) = await h.WriteNew(f, 0, 0, 1000);
        var (b, _) = await h.WriteNew(f, 0, 600, 1000);
        var (c, _) = await h.WriteNew(f, 1, 0, 5000);
        var (d, _) = await h.WriteNew(f, 3, 0, 5000);
        Assert.Empty(h.State.PendingDeletes());

        var r = await h.Truncate(f, 800);
        Assert.Equal((0, 800UL, h.Now, h.Now), (r.Errno, r.Attr.Size, r.Attr.MtimeNs, r.Attr.CtimeNs));
        var chunk0 = (await h.Svc.ReadChunkAsync(new ReadChunkRequest { Inode = f })).Slices;
        Assert.Equal(new[] { (a, 0u, 800u), (b, 600u, 200u) }, chunk0.Select(s => (s.Id, s.Pos, s.Length)));
        Assert.Equal(new[] { c, d }, h.State.PendingDeletes().Select(p => p.Id).Order());
        Assert.Empty((await h.Svc.ReadChunkAsync(new ReadChunkRequest { Inode = f, ChunkIndex = 3 })).Slices);

        // Growing again exposes no old bytes: the trimmed slices do not come back.
        await h.Truncate(f, 3 * (ulong)MChunk);
        chunk0 = (await h.Svc.ReadChunkAsync(new ReadChunkRequest { Inode = f })).Slices;
        Assert.Equal(800u, chunk0.Max(s => s.Pos + s.Length));
        await h.Truncate(f, 500);
        Assert.Equal(new[] { a }, (await h.Svc.ReadChunkAsync(new ReadChunkRequest { Inode = f })).Slices.Select(s => s.Id));
        Assert.Contains(h.State.PendingDeletes(), p => p.Id == b);
        await h.Truncate(f, 0);
        Assert.Contains(h.State.PendingDeletes(), p => p.Id == a);
        Assert.All(h.State.PendingDeletes(), p => Assert.True(p.Index > 0));
        var dir = (await h.Mkdir(Root, "dir")).Attr.Inode;
        Assert.Equal(Errno.EISDIR, (await h.Truncate(dir, 0)).Errno);
    }

    [Fact]
    public async Task Truncate_of_a_huge_sparse_file_is_cheap()
    {
        using var h = await StartAsync();
        var f = (await h.Create(Root, "f")).Attr.Inode;
        var (last, _) = await h.WriteNew(f, uint.MaxValue, 0, 10);
        Assert.Equal(((ulong)uint.MaxValue * MChunk) + 10, (await h.Attr(f)).Size);
        var r = await h.Truncate(f, 1);
        Assert.Equal(0, r.Errno);
        Assert.Contains(h.State.PendingDeletes(), p => p.Id == last);
    }

    [Fact]
    public async Task NewSliceIds_are_unique_and_start_at_one()
    {
        using var h = await StartAsync();
        var first = await h.NewSliceIds(10);
        Assert.Equal(1UL, first);
        Assert.Equal(11UL, await h.NewSliceIds(1));
        Assert.Equal(12UL, await h.NewSliceIds(5));
        var bad = await h.Svc.NewSliceIdsAsync(h.Stamp(new NewSliceIdsRequest { Count = 0 }));
        Assert.Equal(Errno.EINVAL, bad.Errno);
        Assert.Equal(Errno.EINVAL, (await h.Svc.NewSliceIdsAsync(h.Stamp(new NewSliceIdsRequest { Count = 2_000_000 }))).Errno);
        var ranges = await Task.WhenAll(Enumerable.Range(0, 50).Select(async i =>
        {
            var r = await h.Svc.NewSliceIdsAsync(new NewSliceIdsRequest { Count = (uint)(i + 1) });
            return (r.FirstId, r.Count);
        }));
        var ids = ranges.SelectMany(x => Enumerable.Range(0, (int)x.Count).Select(k => x.FirstId + (ulong)k)).ToList();
        Assert.Equal(ids.Count, ids.Distinct().Count());
        Assert.True(ids.Min() >= 17);
    }

    [Fact]
    public async Task Unlinked_open_file_keeps_data_until_last_release()
    {
        using var h = await StartAsync();
        var f = (await h.Create(Root, "f")).Attr.Inode;
        Assert.Equal(0, (await h.Open(f)).Errno); // a second handle in the same session
        var (id, _) = await h.WriteNew(f, 0, 0, 4096);
        Assert.Equal(0, (await h.Unlink(Root, "f")).Errno);
        Assert.Equal(Errno.ENOENT, (await h.Lookup(Root, "f")).Errno);
        var a = await h.Attr(f);
        Assert.Equal((0u, 4096UL), (a.Nlink, a.Size));
        Assert.Single((await h.Svc.ReadChunkAsync(new ReadChunkRequest { Inode = f })).Slices);
        Assert.Empty(h.State.PendingDeletes());
        Assert.Equal(4096UL, h.State.Usage().UsedBytes);

        Assert.Equal(0, (await h.Release(f)).Errno);
        Assert.NotNull(await h.GetAttr(f));
        Assert.Equal(0, (await h.Release(f)).Errno);
        Assert.Null(await h.GetAttr(f));
        Assert.Single(h.State.PendingDeletes(), p => p.Id == id);
        Assert.Equal(0UL, h.State.Usage().UsedBytes);
        Assert.Equal(Errno.EBADF, (await h.Release(f)).Errno);
    }

    [Fact]
    public async Task Open_truncates_and_refuses_writing_directories()
    {
        using var h = await StartAsync();
        var f = (await h.Create(Root, "f")).Attr.Inode;
        var (id, _) = await h.WriteNew(f, 0, 0, 100);
        var o = await h.Open(f, OpenFlags.WriteOnly | OpenFlags.Truncate);
        Assert.Equal((0, 0UL, h.Now), (o.Errno, o.Attr.Size, o.Attr.MtimeNs));
        Assert.Contains(h.State.PendingDeletes(), p => p.Id == id);
        var again = await h.Open(f, OpenFlags.WriteOnly | OpenFlags.Truncate);
        Assert.Equal(h.Now, again.Attr.MtimeNs); // even an empty file gets new times
        var d = (await h.Mkdir(Root, "d")).Attr.Inode;
        Assert.Equal(Errno.EISDIR, (await h.Open(d, OpenFlags.WriteOnly)).Errno);
        Assert.Equal(0, (await h.Open(d, OpenFlags.ReadOnly)).Errno);
        Assert.Equal(Errno.ENOENT, (await h.Open(555)).Errno);
        var noSession = await h.Svc.OpenAsync(new OpenRequest { Inode = f });
        Assert.Equal(Errno.EINVAL, noSession.Errno);
        var noSessionCreate = await h.Svc.CreateAsync(new CreateRequest { Parent = Root, Name = N("x"), Mode = O("644") });
        Assert.Equal(Errno.EINVAL, noSessionCreate.Errno);
    }

    [Fact]
    public async Task Xattrs_follow_flags_namespaces_and_limits()
    {
        using var h = await StartAsync(rootMode: O("777"));
        var f = (await h.Mknod(Root, "f", PosixMode.Regular | O("644"), c: Alice)).Attr.Inode;
        Task<SetXattrReply> Set(string name, string value, uint flags = 0, Credentials? c = null, ulong ino = 0) =>
            h.Svc.SetXattrAsync(h.Stamp(new SetXattrRequest { Inode = ino == 0 ? f : ino, Name = N(name), Value = N(value), Flags = flags }, c));
        Task<GetXattrReply> Get(string name, Credentials? c = null, ulong ino = 0) =>
            h.Svc.GetXattrAsync(new GetXattrRequest { Inode = ino == 0 ? f : ino, Name = N(name), Cred = c });

        Assert.Equal(0, (await Set("user.a", "1")).Errno);
        Assert.Equal(h.Now, (await h.Attr(f)).CtimeNs);
        Assert.Equal("1", (await Get("user.a")).Value.ToStringUtf8());
        Assert.Equal(Errno.EEXIST, (await Set("user.a", "2", (uint)XattrFlag.Create)).Errno);
        Assert.Equal(0, (await Set("user.a", "2", (uint)XattrFlag.Replace)).Errno);
        Assert.Equal("2", (await Get("user.a")).Value.ToStringUtf8());
        Assert.Equal(Errno.ENODATA, (await Set("user.b", "x", (uint)XattrFlag.Replace)).Errno);
        Assert.Equal(0, (await Set("user.b", "", (uint)XattrFlag.Create)).Errno);
        Assert.Equal(Errno.EINVAL, (await Set("user.c", "x", 4)).Errno);
        Assert.Equal(Errno.ERANGE, (await Set("", "x")).Errno);
        Assert.Equal(Errno.ERANGE, (await Set("user." + new string('n', 251), "x")).Errno);
        Assert.Equal(Errno.E2BIG, (await Set("user.big", new string('v', 65537))).Errno);
        Assert.Equal(0, (await Set("user.max", new string('v', 65536))).Errno);
        Assert.Equal(Errno.EOPNOTSUPP, (await Set("other.x", "x")).Errno);
        Assert.Equal(Errno.EOPNOTSUPP, (await Set("system.posix_acl_access", "x")).Errno);
        Assert.Equal(Errno.EINVAL, (await Set("user.", "x")).Errno);
        Assert.Equal(Errno.ENOENT, (await Set("user.a", "x", ino: 999)).Errno);
        Assert.Equal(Errno.ENODATA, (await Get("user.none")).Errno);

        // trusted.* is root-only, and hidden from others' listings.
        Assert.Equal(Errno.EPERM, (await Set("trusted.t", "x", c: Alice)).Errno);
        Assert.Equal(0, (await Set("trusted.t", "x")).Errno);
        Assert.Equal(Errno.ENODATA, (await Get("trusted.t", Alice)).Errno);
        Assert.Equal("x", (await Get("trusted.t")).Value.ToStringUtf8());
        Assert.Equal(0, (await Set("security.s", "lbl", c: Alice)).Errno);
        var listed = await h.Svc.ListXattrAsync(new ListXattrRequest { Inode = f, Cred = Alice });
        Assert.Equal(new[] { "user.a", "user.b", "user.max", "security.s" }, listed.Names.Select(n => n.ToStringUtf8()));
        var rootList = await h.Svc.ListXattrAsync(new ListXattrRequest { Inode = f });
        Assert.Contains(N("trusted.t"), rootList.Names);

        // user.* only on regular files and directories; sticky directories only by their owner.
        var ln = (await h.Symlink(Root, "ln", "f")).Attr.Inode;
        Assert.Equal(Errno.EPERM, (await Set("user.a", "x", ino: ln)).Errno);
        Assert.Equal(Errno.ENODATA, (await Get("user.a", ino: ln)).Errno);
        var sticky = (await h.Mkdir(Root, "tmp", O("1777"))).Attr.Inode;
        Assert.Equal(Errno.EPERM, (await Set("user.a", "x", c: Alice, ino: sticky)).Errno);
        Assert.Equal(0, (await Set("user.a", "x", ino: sticky)).Errno);

        var rm = await h.Svc.RemoveXattrAsync(h.Stamp(new RemoveXattrRequest { Inode = f, Name = N("user.a") }));
        Assert.Equal((0, h.Now), (rm.Errno, (await h.Attr(f)).CtimeNs));
        Assert.Equal(Errno.ENODATA, (await h.Svc.RemoveXattrAsync(h.Stamp(new RemoveXattrRequest { Inode = f, Name = N("user.a") }))).Errno);
        Assert.Equal(Errno.ENODATA, (await Get("user.a")).Errno);
    }

    [Fact]
    public async Task StatFs_counts_and_capacity_limits()
    {
        using var h = await StartAsync(capacityBytes: 1 << 20, inodesMax: 4);
        var s = await h.Svc.StatFsAsync(new StatFsRequest { Inode = Root });
        Assert.Equal((1UL << 20, 0UL, 4UL, 1UL, 255u), (s.TotalBytes, s.UsedBytes, s.TotalInodes, s.UsedInodes, s.NameMax));
        var f = (await h.Create(Root, "f")).Attr.Inode;
        var (_, w) = await h.WriteNew(f, 0, 0, 5000);
        Assert.Equal(0, w.Errno);
        s = await h.Svc.StatFsAsync(new StatFsRequest());
        Assert.Equal((8192UL, (1UL << 20) - 8192, 2UL, 2UL), (s.UsedBytes, s.AvailBytes, s.UsedInodes, s.AvailInodes));
        Assert.Equal(Errno.ENOSPC, (await h.WriteNew(f, 0, 0, (1 << 20) + 1)).Reply.Errno);
        Assert.Equal(Errno.ENOSPC, (await h.Truncate(f, 2 << 20)).Errno);
        await h.Mkdir(Root, "a");
        await h.Mknod(Root, "b");
        Assert.Equal(Errno.ENOSPC, (await h.Mknod(Root, "c")).Errno);
        Assert.Equal(0, (await h.Unlink(Root, "b")).Errno);
        Assert.Equal(0, (await h.Mknod(Root, "c")).Errno);
    }

    [Fact]
    public async Task Fallocate_modes()
    {
        using var h = await StartAsync();
        var f = (await h.Create(Root, "f")).Attr.Inode;
        Task<FallocateReply> Falloc(uint mode, ulong offset, ulong length, ulong ino = 0) =>
            h.Svc.FallocateAsync(h.Stamp(new FallocateRequest { Inode = ino == 0 ? f : ino, Mode = mode, Offset = offset, Length = length }));
        const uint keep = (uint)FallocateMode.KeepSize;
        const uint punch = (uint)FallocateMode.PunchHole;
        const uint zero = (uint)FallocateMode.ZeroRange;

        var a = await Falloc(0, 0, 10_000);
        Assert.Equal((0, 10_000UL, h.Now), (a.Errno, a.Attr.Size, a.Attr.MtimeNs));
        Assert.Equal(10_000UL, (await Falloc(keep, 0, 50_000)).Attr.Size);
        Assert.Equal(Errno.EOPNOTSUPP, (await Falloc(punch, 0, 10)).Errno);
        Assert.Equal(Errno.EOPNOTSUPP, (await Falloc(0x08, 0, 10)).Errno);
        Assert.Equal(Errno.EOPNOTSUPP, (await Falloc(punch | zero | keep, 0, 10)).Errno);
        Assert.Equal(Errno.EINVAL, (await Falloc(0, 0, 0)).Errno);

        var (id, _) = await h.WriteNew(f, 0, 0, 8000);
        var p = await Falloc(punch | keep, 100, 200);
        Assert.Equal((0, 10_000UL), (p.Errno, p.Attr.Size));
        var slices = (await h.Svc.ReadChunkAsync(new ReadChunkRequest { Inode = f })).Slices;
        Assert.Equal(new Slice { Id = 0, Size = 200, Offset = 0, Length = 200, Pos = 100 }, slices[^1]);
        Assert.Equal(id, slices[0].Id);
        var z = await Falloc(zero, 9_000, 2_000);
        Assert.Equal(11_000UL, z.Attr.Size);
        var last = (await h.Svc.ReadChunkAsync(new ReadChunkRequest { Inode = f })).Slices[^1];
        Assert.Equal((0UL, 9_000u, 1_000u), (last.Id, last.Pos, last.Length));

        var d = (await h.Mkdir(Root, "d")).Attr.Inode;
        Assert.Equal(Errno.EISDIR, (await Falloc(0, 0, 1, d)).Errno);
        var fifo = (await h.Mknod(Root, "p", PosixMode.Fifo | O("644"))).Attr.Inode;
        Assert.Equal(Errno.ESPIPE, (await Falloc(0, 0, 1, fifo)).Errno);
        var ln = (await h.Symlink(Root, "ln", "x")).Attr.Inode;
        Assert.Equal(Errno.ENODEV, (await Falloc(0, 0, 1, ln)).Errno);
    }
}
