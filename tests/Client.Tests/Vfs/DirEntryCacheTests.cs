// The directory entry cache on its own (a hand-moved clock): when a listing is read, how long it answers, what drops
// it, and its size limits.
using System.Text;
using MirrorFS.Client.Vfs;
using MirrorFS.Core.Meta;

namespace MirrorFS.Client.Tests.VfsTests;

public sealed class DirEntryCacheTests
{
    private const ulong Dir = 10;
    private long _nowMs = 1_000_000;

    private DirEntryCache New(double entrySec = 1, double attrSec = 1, int dirsMax = DirEntryCache.DirsMax,
        int perDirMax = DirEntryCache.EntriesPerDirMax, int entriesMax = DirEntryCache.EntriesMax) =>
        new(entrySec, attrSec, () => _nowMs, dirsMax, perDirMax, entriesMax);

    private static byte[] N(string s) => Encoding.UTF8.GetBytes(s);

    private static Attr File(ulong inode, ulong size = 4096, uint nlink = 1) =>
        new() { Inode = inode, Mode = 0x8000 | 0x1A4, Nlink = nlink, Size = size };

    private static (byte[], Attr)[] Files(ulong firstInode, int count) =>
        Enumerable.Range(0, count).Select(i => (N($"f{i}"), File(firstInode + (ulong)i))).ToArray();

    /// <summary>Three distinct misses, then the listing <paramref name="entries"/> is kept.</summary>
    private static void Fill(DirEntryCache c, ulong dir, (byte[], Attr)[] entries)
    {
        Assert.Null(c.NoteFound(dir, N("x1")));
        Assert.Null(c.NoteFound(dir, N("x2")));
        var t = c.NoteFound(dir, N("x3"));
        Assert.NotNull(t);
        Assert.True(c.Complete(t, entries));
    }

    [Fact]
    public void The_third_distinct_miss_within_the_window_asks_for_the_listing()
    {
        var c = New();
        Assert.Null(c.NoteFound(Dir, N("a")));
        Assert.Null(c.NoteFound(Dir, N("a")));  // the same name again does not count
        Assert.Null(c.NoteFound(Dir, N("b")));
        Assert.Null(c.NoteFound(Dir, N(".")));  // nor do the dots
        Assert.Null(c.NoteFound(Dir, N("..")));
        Assert.Null(c.NoteFound(Dir + 1, N("c"))); // nor a miss in another directory
        var t = c.NoteFound(Dir, N("c"));
        Assert.NotNull(t);
        Assert.Equal(Dir, t.Dir);
        // While it is being read, nobody else is asked to read it.
        Assert.Null(c.NoteFound(Dir, N("d")));
        Assert.Null(c.NoteFound(Dir, N("e")));
        Assert.Null(c.NoteFound(Dir, N("f")));
        c.Abandon(t);

        // Misses spread wider than the window never add up.
        for (var i = 0; i < 10; i++)
        {
            _nowMs += DirEntryCache.MissWindowMs / 2 + 1;
            Assert.Null(c.NoteFound(Dir + 2, N($"slow{i}")));
            _nowMs += DirEntryCache.MissWindowMs / 2 + 1;
        }
        // After an abandoned read the next burst asks again.
        Assert.Null(c.NoteFound(Dir, N("g")));
        Assert.Null(c.NoteFound(Dir, N("h")));
        Assert.NotNull(c.NoteFound(Dir, N("i")));
    }

    [Fact]
    public void A_listing_answers_known_names_only_and_for_what_is_left_of_the_periods()
    {
        var c = New(entrySec: 2, attrSec: 1);
        Fill(c, Dir, [(N("."), File(Dir)), (N(".."), File(1)), .. Files(100, 5)]);
        Assert.Equal(1, c.Listed);
        Assert.Equal(5, c.Entries);

        var hit = c.TryGet(Dir, N("f3"));
        Assert.NotNull(hit);
        Assert.Equal(103ul, hit.Value.Attr.Inode);
        Assert.Equal(2.0, hit.Value.EntryTimeoutSec);
        Assert.Equal(1.0, hit.Value.AttrTimeoutSec);
        // No negative answers, and the dots are the metaserver's to resolve.
        Assert.Null(c.TryGet(Dir, N("f9")));
        Assert.Null(c.TryGet(Dir, N(".")));
        Assert.Null(c.TryGet(Dir, N("..")));
        Assert.Null(c.TryGet(Dir + 1, N("f3")));
        // A miss in a fresh listing does not read it again.
        Assert.Null(c.NoteFound(Dir, N("y1")));
        Assert.Null(c.NoteFound(Dir, N("y2")));
        Assert.Null(c.NoteFound(Dir, N("y3")));

        _nowMs += 1_500;
        hit = c.TryGet(Dir, N("f0"));
        Assert.NotNull(hit);
        Assert.Equal(0.5, hit.Value.EntryTimeoutSec, 3);
        Assert.Equal(0.0, hit.Value.AttrTimeoutSec);

        _nowMs += 500; // the entry period is over
        Assert.Null(c.TryGet(Dir, N("f0")));
        Assert.Equal(0, c.Directories);
        Assert.Equal(2, c.Hits); // f3 and f0: only answers count
    }

    [Fact]
    public void Files_with_several_names_are_not_answered_but_directories_are()
    {
        var c = New();
        var dir = new Attr { Inode = 200, Mode = 0x4000 | 0x1ED, Nlink = 5 };
        Fill(c, Dir, [(N("linked"), File(201, nlink: 2)), (N("sub"), dir)]);
        Assert.Null(c.TryGet(Dir, N("linked")));
        Assert.Equal(200ul, c.TryGet(Dir, N("sub"))!.Value.Attr.Inode);
    }

    [Fact]
    public void This_clients_changes_drop_the_directory_or_hide_the_changed_child()
    {
        var c = New();
        Fill(c, Dir, Files(100, 5));
        Fill(c, Dir + 1, [(N("child-dir"), new Attr { Inode = Dir, Mode = 0x4000 | 0x1ED, Nlink = 2 })]);

        c.InvalidateChild(102);
        Assert.Null(c.TryGet(Dir, N("f2")));
        Assert.NotNull(c.TryGet(Dir, N("f1")));

        // A directory whose entries change goes, and as a child its own attributes (mtime, nlink) are stale too.
        c.InvalidateDir(Dir);
        Assert.Null(c.TryGet(Dir, N("f1")));
        Assert.Null(c.TryGet(Dir + 1, N("child-dir")));
        Assert.Equal(1, c.Directories);

        // A listing read after a change is not hidden by it.
        Fill(c, Dir, Files(100, 5));
        Assert.NotNull(c.TryGet(Dir, N("f2")));
    }

    [Fact]
    public void A_listing_read_while_this_client_changed_the_directory_is_not_kept()
    {
        var c = New();
        c.NoteFound(Dir, N("a"));
        c.NoteFound(Dir, N("b"));
        var t = c.NoteFound(Dir, N("c"))!;
        c.InvalidateDir(Dir);
        Assert.False(c.Complete(t, Files(100, 3)));
        Assert.Equal(1, c.Discarded);
        Assert.Null(c.TryGet(Dir, N("f0")));

        // A child changed while its directory is read is hidden once the listing is kept.
        c.NoteFound(Dir, N("d"));
        c.NoteFound(Dir, N("e"));
        t = c.NoteFound(Dir, N("f"))!;
        c.InvalidateChild(101);
        Assert.True(c.Complete(t, Files(100, 3)));
        Assert.Null(c.TryGet(Dir, N("f1")));
        Assert.NotNull(c.TryGet(Dir, N("f0")));

        // A listing that took longer than the entry period to read is already stale.
        c.InvalidateDir(Dir);
        c.NoteFound(Dir, N("g"));
        c.NoteFound(Dir, N("h"));
        t = c.NoteFound(Dir, N("i"))!;
        _nowMs += 1_000;
        Assert.False(c.Complete(t, Files(100, 3)));
    }

    [Fact]
    public void A_directory_over_the_cap_is_not_cached_nor_read_again_for_a_while()
    {
        var c = New(perDirMax: 4);
        c.NoteFound(Dir, N("a"));
        c.NoteFound(Dir, N("b"));
        var t = c.NoteFound(Dir, N("c"))!;
        Assert.False(c.Complete(t, Files(100, 5)));
        Assert.Equal(1, c.TooLarge);
        Assert.Equal(0, c.Directories);
        for (var i = 0; i < 6; i++)
        {
            Assert.Null(c.NoteFound(Dir, N($"n{i}")));
        }
        _nowMs += DirEntryCache.TooLargeRetryMs;
        c.NoteFound(Dir, N("p"));
        c.NoteFound(Dir, N("q"));
        t = c.NoteFound(Dir, N("r"))!;
        Assert.NotNull(t);
        c.AbandonTooLarge(t); // the reader stopped paging early
        Assert.Equal(2, c.TooLarge);
        Assert.Null(c.NoteFound(Dir, N("s")));

        // Exactly the cap is fine.
        Fill(c, Dir + 1, Files(100, 4));
    }

    [Fact]
    public void Listings_are_evicted_least_recently_used_first_by_count_and_by_entries()
    {
        var c = New(dirsMax: 3, perDirMax: 8, entriesMax: 10);
        Fill(c, 1, Files(100, 2));
        Fill(c, 2, Files(200, 2));
        Fill(c, 3, Files(300, 2));
        Assert.NotNull(c.TryGet(1, N("f0"))); // 1 is now the most recently used
        Fill(c, 4, Files(400, 2));
        Assert.Equal(3, c.Directories);
        Assert.Null(c.TryGet(2, N("f0")));
        Assert.NotNull(c.TryGet(1, N("f0")));

        // 6 entries kept; 8 more need room for 10 at most: the two least recently used go.
        Fill(c, 5, Files(500, 8));
        Assert.True(c.Entries <= 10, $"{c.Entries} entries kept");
        Assert.NotNull(c.TryGet(5, N("f7")));
        Assert.Null(c.TryGet(3, N("f0")));
    }

    [Fact]
    public void No_entry_period_means_no_cache()
    {
        var c = New(entrySec: 0);
        for (var i = 0; i < 10; i++)
        {
            Assert.Null(c.NoteFound(Dir, N($"n{i}")));
        }
    }

    [Fact]
    public void Many_changed_inodes_never_let_a_changed_child_be_answered()
    {
        var c = New(entrySec: 60);
        Fill(c, Dir, Files(100, 5));
        c.InvalidateChild(102);
        // Far more marks than are kept: the cache must forget listings rather than the mark of a listed child.
        for (var i = 0; i < DirEntryCache.ChildMarksMax + 10; i++)
        {
            c.InvalidateChild(1_000_000 + (ulong)i);
        }
        Assert.Null(c.TryGet(Dir, N("f2")));

        // Marks older than every listing kept are dropped, and the listings stay.
        Fill(c, Dir, Files(100, 5));
        for (var i = 0; i < DirEntryCache.ChildMarksMax / 2; i++)
        {
            c.InvalidateChild(2_000_000 + (ulong)i);
        }
        Fill(c, Dir + 1, Files(300, 3));
        c.InvalidateDir(Dir); // only the newer listing is left
        for (var i = 0; i < DirEntryCache.ChildMarksMax / 2 + 10; i++)
        {
            c.InvalidateChild(3_000_000 + (ulong)i);
        }
        Assert.NotNull(c.TryGet(Dir + 1, N("f1")));
        c.InvalidateChild(301);
        Assert.Null(c.TryGet(Dir + 1, N("f1")));
    }
}
