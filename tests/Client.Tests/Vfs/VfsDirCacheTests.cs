// MirrorVfs with the directory entry cache: a burst of lookups in one directory costs a listing instead of a Lookup per
// name; this client's own changes are seen at once, another client's once the entry period has passed.
using System.Text;
using MirrorFS.Client.Vfs;
using MirrorFS.Core.Meta;
using static MirrorFS.Client.Tests.VfsTests.VfsFixture;

namespace MirrorFS.Client.Tests.VfsTests;

public sealed class VfsDirCacheTests
{
    private const int Files = 50;

    private static string F(int i) => $"f{i:D3}";

    /// <summary>A directory "d" under the root with <see cref="Files"/> files of i+1 bytes each, made by <paramref name="writer"/>.</summary>
    private static async Task<ulong> MakeDirAsync(MirrorVfs writer, int files = Files)
    {
        var d = await writer.MkdirAsync(Ctx, 1, Name("d"), 0x1ED, 0);
        Assert.Equal(0, d.Errno);
        for (var i = 0; i < files; i++)
        {
            var (ino, fh) = await CreateAsync(writer, F(i), d.Value!.Inode);
            await WriteAsync(writer, ino, fh, 0, new byte[i + 1]);
            Assert.Equal(0, await writer.ReleaseAsync(Ctx, ino, fh));
        }
        return d.Value!.Inode;
    }

    private static async Task<Attr> LookAsync(MirrorVfs vfs, ulong parent, string name)
    {
        var r = await vfs.LookupAsync(Ctx, parent, Name(name));
        Assert.True(r.Errno == 0, $"lookup of {name} gave errno {r.Errno}");
        return r.Value!.Attr;
    }

    private static async Task<int> ErrnoAsync(MirrorVfs vfs, ulong parent, string name) =>
        (await vfs.LookupAsync(Ctx, parent, Name(name))).Errno;

    [Fact]
    public async Task A_burst_of_lookups_in_one_directory_reads_its_listing_once()
    {
        await using var f = await VfsFixture.StartAsync();
        var d = await MakeDirAsync(await f.MountAsync());
        var (meta, lookups) = LossyMetaClient.Wrap(f.Meta, nameof(IMetaClient.LookupAsync), drops: 0);
        // Small pages: the listing takes several ReadDir calls.
        var vfs = await f.MountAsync(new VfsOptions { EntryTimeoutSec = 60, AttrTimeoutSec = 30, ReadDirPageEntries = 7 }, meta: meta);

        for (var i = 0; i < Files; i++)
        {
            var r = await vfs.LookupAsync(Ctx, d, Name(F(i)));
            Assert.Equal(0, r.Errno);
            Assert.Equal((ulong)(i + 1), r.Value!.Attr.Size);
            Assert.True(r.Value.EntryTimeoutSec is > 0 and <= 60, $"entry timeout {r.Value.EntryTimeoutSec}");
            Assert.True(r.Value.AttrTimeoutSec is > 0 and <= 30, $"attr timeout {r.Value.AttrTimeoutSec}");
        }
        // Three names go to the metaserver, the third then reads the listing, which answers the rest.
        Assert.Equal(DirEntryCache.MissesToList, lookups.Calls);
        Assert.Equal(Files - DirEntryCache.MissesToList, vfs.DirCache!.Hits);
        Assert.Equal(1, vfs.DirCache.Listed);

        // Names not in the listing are always asked (no negative answers), and so are the dots.
        Assert.Equal(Errno.ENOENT, await ErrnoAsync(vfs, d, "absent"));
        Assert.Equal(d, (await LookAsync(vfs, d, ".")).Inode);
        Assert.Equal(DirEntryCache.MissesToList + 2, lookups.Calls);
    }

    [Fact]
    public async Task This_clients_changes_are_seen_at_once()
    {
        await using var f = await VfsFixture.StartAsync();
        var d = await MakeDirAsync(await f.MountAsync());
        var vfs = await f.MountAsync(new VfsOptions { EntryTimeoutSec = 60, AttrTimeoutSec = 60 });
        var inodes = new ulong[Files];
        for (var i = 0; i < Files; i++)
        {
            inodes[i] = (await LookAsync(vfs, d, F(i))).Inode;
        }
        var cache = vfs.DirCache!;
        Assert.Equal(1, cache.Listed);

        // Attribute changes hide the changed child; the rest of the listing keeps answering.
        var chmod = await vfs.SetAttrAsync(Ctx, inodes[3], new VfsSetAttr { Valid = (uint)SetAttrValid.Mode, Mode = 0x1C0 });
        Assert.Equal(0, chmod.Errno);
        Assert.Equal(0x1C0u, (await LookAsync(vfs, d, F(3))).Mode & 0xFFF);

        var truncate = await vfs.SetAttrAsync(Ctx, inodes[4], new VfsSetAttr { Valid = (uint)SetAttrValid.Size, Size = 0 });
        Assert.Equal(0, truncate.Errno);
        vfs.Forget(inodes[4], 1);
        Assert.Equal(0ul, (await LookAsync(vfs, d, F(4))).Size);

        // A write, committed, then the kernel forgets the inode: the listing's old size must not come back.
        var fh = await OpenAsync(vfs, inodes[5]);
        await WriteAsync(vfs, inodes[5], fh, 0, new byte[1000]);
        Assert.Equal(0, await vfs.ReleaseAsync(Ctx, inodes[5], fh));
        vfs.Forget(inodes[5], 1);
        Assert.Equal(1000ul, (await LookAsync(vfs, d, F(5))).Size);

        // An xattr change moves ctime: the metaserver answers.
        Assert.Equal(0, await vfs.SetXattrAsync(Ctx, inodes[6], Name("user.k"), Name("v"), 0));
        var hits = cache.Hits;
        await LookAsync(vfs, d, F(6));
        Assert.Equal(hits, cache.Hits);
        Assert.Equal(0, await vfs.RemoveXattrAsync(Ctx, inodes[6], Name("user.k")));

        Assert.Equal(8ul, (await LookAsync(vfs, d, F(7))).Size);
        Assert.Equal(hits + 1, cache.Hits);
        Assert.Equal(1, cache.Listed);

        // A hard link elsewhere: both names now report two links.
        var link = await vfs.LinkAsync(Ctx, inodes[8], 1, Name("hard"));
        Assert.Equal(0, link.Errno);
        vfs.Forget(inodes[8], 1);
        Assert.Equal(2u, (await LookAsync(vfs, d, F(8))).Nlink);

        // Entry changes drop the directory's listing.
        Assert.Equal(0, await vfs.UnlinkAsync(Ctx, d, Name(F(10))));
        Assert.Equal(Errno.ENOENT, await ErrnoAsync(vfs, d, F(10)));
        await RefillAsync(vfs, d);
        Assert.Equal(0, await vfs.RenameAsync(Ctx, d, Name(F(11)), d, Name("g011"), 0));
        Assert.Equal(Errno.ENOENT, await ErrnoAsync(vfs, d, F(11)));
        Assert.Equal(inodes[11], (await LookAsync(vfs, d, "g011")).Inode);
        await RefillAsync(vfs, d);
        // Renamed over an existing name: the name now means the other inode.
        Assert.Equal(0, await vfs.RenameAsync(Ctx, d, Name(F(12)), d, Name(F(13)), 0));
        Assert.Equal(inodes[12], (await LookAsync(vfs, d, F(13))).Inode);
        await RefillAsync(vfs, d);
        var (created, cfh) = await CreateAsync(vfs, F(12), d);
        Assert.Equal(0, await vfs.ReleaseAsync(Ctx, created, cfh));
        vfs.Forget(created, 1);
        Assert.Equal(created, (await LookAsync(vfs, d, F(12))).Inode);
        Assert.True(cache.Listed >= 4, $"{cache.Listed} listings");
    }

    /// <summary>Three fresh misses (names outside the listing do not count twice) read the listing again.</summary>
    private static async Task RefillAsync(MirrorVfs vfs, ulong d)
    {
        var listed = vfs.DirCache!.Listed;
        for (var i = 20; i < 20 + DirEntryCache.MissesToList; i++)
        {
            await LookAsync(vfs, d, F(i));
        }
        Assert.Equal(listed + 1, vfs.DirCache.Listed);
    }

    [Fact]
    public async Task Another_clients_changes_are_seen_once_the_entry_period_has_passed()
    {
        await using var f = await VfsFixture.StartAsync();
        var other = await f.MountAsync();
        var d = await MakeDirAsync(other);
        const double EntrySec = 0.5;
        var vfs = await f.MountAsync(new VfsOptions { EntryTimeoutSec = EntrySec, AttrTimeoutSec = EntrySec });
        var inodes = new ulong[Files];
        for (var i = 0; i < Files; i++)
        {
            inodes[i] = (await LookAsync(vfs, d, F(i))).Inode;
        }
        Assert.True(vfs.DirCache!.Hits > 0);

        Assert.Equal(0, await other.RenameAsync(Ctx, d, Name(F(30)), d, Name("g030"), 0));
        Assert.Equal(0, await other.UnlinkAsync(Ctx, d, Name(F(31))));
        var fh = await OpenAsync(other, inodes[32]);
        await WriteAsync(other, inodes[32], fh, 0, new byte[5000]);
        Assert.Equal(0, await other.ReleaseAsync(Ctx, inodes[32], fh));

        await Task.Delay(TimeSpan.FromSeconds(EntrySec + 0.1));
        Assert.Equal(Errno.ENOENT, await ErrnoAsync(vfs, d, F(30)));
        Assert.Equal(inodes[30], (await LookAsync(vfs, d, "g030")).Inode);
        Assert.Equal(Errno.ENOENT, await ErrnoAsync(vfs, d, F(31)));
        Assert.Equal(5000ul, (await LookAsync(vfs, d, F(32))).Size);
    }

    [Fact]
    public async Task Lookups_of_absent_names_never_read_a_listing()
    {
        await using var f = await VfsFixture.StartAsync();
        var d = await MakeDirAsync(await f.MountAsync());
        var vfs = await f.MountAsync(new VfsOptions { EntryTimeoutSec = 60, AttrTimeoutSec = 60 });
        for (var i = 0; i < 20; i++)
        {
            Assert.Equal(Errno.ENOENT, await ErrnoAsync(vfs, d, $"absent{i}"));
        }
        Assert.Equal(0, vfs.DirCache!.Listed);
    }

    [Fact]
    public async Task Within_the_entry_period_a_listing_may_answer_for_a_name_another_client_removed()
    {
        // The cache's staleness is the kernel's own entry cache's: what a Lookup made when the listing was read said.
        await using var f = await VfsFixture.StartAsync();
        var other = await f.MountAsync();
        var d = await MakeDirAsync(other);
        var vfs = await f.MountAsync(new VfsOptions { EntryTimeoutSec = 60, AttrTimeoutSec = 60 });
        for (var i = 0; i < DirEntryCache.MissesToList; i++)
        {
            await LookAsync(vfs, d, F(i));
        }
        Assert.Equal(0, await other.UnlinkAsync(Ctx, d, Name(F(40))));
        var hit = await vfs.LookupAsync(Ctx, d, Name(F(40)));
        Assert.Equal(0, hit.Errno);
        Assert.True(hit.Value!.EntryTimeoutSec <= 60);
    }

    [Fact]
    public async Task An_inode_this_client_has_open_is_asked_of_the_metaserver()
    {
        await using var f = await VfsFixture.StartAsync();
        var d = await MakeDirAsync(await f.MountAsync());
        var (meta, lookups) = LossyMetaClient.Wrap(f.Meta, nameof(IMetaClient.LookupAsync), drops: 0);
        var vfs = await f.MountAsync(new VfsOptions { EntryTimeoutSec = 60, AttrTimeoutSec = 60 }, meta: meta);
        var inodes = new List<ulong>();
        for (var i = 0; i < 5; i++)
        {
            inodes.Add((await LookAsync(vfs, d, F(i))).Inode);
        }
        var calls = lookups.Calls;
        var fh = await OpenAsync(vfs, inodes[4]);
        await WriteAsync(vfs, inodes[4], fh, 10, new byte[100]);
        // Buffered, not committed: the size comes from the server's answer merged with the dirty end.
        Assert.Equal(110ul, (await LookAsync(vfs, d, F(4))).Size);
        Assert.Equal(calls + 1, lookups.Calls);
        Assert.Equal(0, await vfs.ReleaseAsync(Ctx, inodes[4], fh));
    }

    [Fact]
    public async Task Without_the_cache_every_lookup_asks_the_metaserver()
    {
        await using var f = await VfsFixture.StartAsync();
        var d = await MakeDirAsync(await f.MountAsync(), files: 10);
        var (meta, lookups) = LossyMetaClient.Wrap(f.Meta, nameof(IMetaClient.LookupAsync), drops: 0);
        var off = await f.MountAsync(new VfsOptions { EntryTimeoutSec = 60, DirCache = false }, meta: meta);
        var noEntryCache = await f.MountAsync(new VfsOptions { EntryTimeoutSec = 0 }, meta: meta);
        Assert.Null(off.DirCache);
        Assert.Null(noEntryCache.DirCache);
        for (var i = 0; i < 10; i++)
        {
            var a = await off.LookupAsync(Ctx, d, Name(F(i)));
            Assert.Equal(60, a.Value!.EntryTimeoutSec);
            await LookAsync(noEntryCache, d, F(i));
        }
        Assert.Equal(20, lookups.Calls);
    }

    [Fact]
    public async Task A_directory_over_the_cap_is_not_cached()
    {
        await using var f = await VfsFixture.StartAsync();
        var writer = await f.MountAsync();
        var d = (await writer.MkdirAsync(Ctx, 1, Name("big"), 0x1ED, 0)).Value!.Inode;
        for (var i = 0; i <= DirEntryCache.EntriesPerDirMax; i++)
        {
            Assert.Equal(0, (await writer.MknodAsync(Ctx, d, Name($"n{i}"), 0x8000 | 0x1A4, 0, 0)).Errno);
        }
        var vfs = await f.MountAsync(new VfsOptions { EntryTimeoutSec = 60, AttrTimeoutSec = 60, ReadDirPageEntries = 4096 });
        for (var i = 0; i < 10; i++)
        {
            await LookAsync(vfs, d, $"n{i}");
        }
        Assert.Equal(1, vfs.DirCache!.TooLarge);
        Assert.Equal(0, vfs.DirCache.Listed);
        Assert.Equal(0, vfs.DirCache.Hits);
    }
}
