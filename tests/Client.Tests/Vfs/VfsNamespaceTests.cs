// Namespace, xattr and session behaviour of MirrorVfs and MetaSession against an in-process metaserver.
using System.Text;
using MirrorFS.Client.Vfs;
using MirrorFS.Core.Meta;
using static MirrorFS.Client.Tests.VfsTests.VfsFixture;

namespace MirrorFS.Client.Tests.VfsTests;

public sealed class VfsNamespaceTests
{
    [Fact]
    public async Task DirectoryTreeOperationsGiveEntriesAndErrnos()
    {
        await using var f = await VfsFixture.StartAsync();
        var vfs = await f.MountAsync(new VfsOptions { EntryTimeoutSec = 2.5, AttrTimeoutSec = 0.5 });
        var d = await vfs.MkdirAsync(Ctx, 1, Name("d"), 0x1ED, 0x12);
        Assert.Equal(0, d.Errno);
        Assert.Equal(2.5, d.Value!.EntryTimeoutSec);
        Assert.True(PosixMode.IsDir(d.Value.Attr.Mode));
        Assert.Equal(Errno.EEXIST, (await vfs.MkdirAsync(Ctx, 1, Name("d"), 0x1ED, 0)).Errno);

        var (ino, fh) = await CreateAsync(vfs, "a", d.Value.Inode);
        Assert.Equal(0, await vfs.ReleaseAsync(Ctx, ino, fh));
        var look = await vfs.LookupAsync(Ctx, d.Value.Inode, Name("a"));
        Assert.Equal(ino, look.Value!.Inode);
        Assert.Equal(Errno.ENOENT, (await vfs.LookupAsync(Ctx, d.Value.Inode, Name("nope"))).Errno);

        var sym = await vfs.SymlinkAsync(Ctx, d.Value.Inode, Name("s"), Name("a"));
        Assert.Equal(0, sym.Errno);
        Assert.Equal("a", Encoding.UTF8.GetString((await vfs.ReadLinkAsync(Ctx, sym.Value!.Inode)).Value!));

        var link = await vfs.LinkAsync(Ctx, ino, 1, Name("hard"));
        Assert.Equal(2u, link.Value!.Attr.Nlink);

        Assert.Equal(0, await vfs.RenameAsync(Ctx, d.Value.Inode, Name("a"), 1, Name("b"), 0));
        Assert.Equal(Errno.EEXIST, await vfs.RenameAsync(Ctx, 1, Name("b"), 1, Name("hard"), (uint)RenameFlag.Noreplace));

        var dh = await vfs.OpenDirAsync(Ctx, 1);
        Assert.Equal(0, dh.Errno);
        var names = new List<string>();
        ulong offset = 0;
        while (true)
        {
            var page = await vfs.ReadDirAsync(Ctx, 1, dh.Value, offset, limit: 2);
            Assert.Equal(0, page.Errno);
            names.AddRange(page.Value!.Entries.Select(e => Encoding.UTF8.GetString(e.Name)));
            if (page.Value.Eof || page.Value.Entries.Count == 0)
            {
                break;
            }
            offset = page.Value.Entries[^1].NextOffset;
        }
        Assert.Equal(new[] { ".", "..", "b", "d", "hard" }, names.Order());
        Assert.Equal(0, vfs.ReleaseDir(1, dh.Value));
        Assert.Equal(Errno.EBADF, vfs.ReleaseDir(1, dh.Value));
        Assert.Equal(Errno.ENOTDIR, (await vfs.OpenDirAsync(Ctx, ino)).Errno);

        Assert.Equal(Errno.ENOTEMPTY, await vfs.RmdirAsync(Ctx, 1, Name("d")));
        Assert.Equal(0, await vfs.UnlinkAsync(Ctx, d.Value.Inode, Name("s")));
        Assert.Equal(0, await vfs.RmdirAsync(Ctx, 1, Name("d")));

        var node = await vfs.MknodAsync(Ctx, 1, Name("fifo"), PosixMode.Fifo | 0x1A4, 0, 0);
        Assert.Equal(PosixMode.Fifo, PosixMode.Type(node.Value!.Attr.Mode));

        var fs = await vfs.StatFsAsync(Ctx, 1);
        Assert.Equal(0, fs.Errno);
        Assert.Equal(3ul, fs.Value!.UsedInodes); // root, the file (two names), the fifo
    }

    [Fact]
    public async Task XattrsAndSetAttrPassThrough()
    {
        await using var f = await VfsFixture.StartAsync();
        var vfs = await f.MountAsync();
        var (ino, fh) = await CreateAsync(vfs, "x");
        Assert.Equal(0, await vfs.SetXattrAsync(Ctx, ino, Name("user.k"), Name("v1"), 0));
        Assert.Equal(Errno.EEXIST, await vfs.SetXattrAsync(Ctx, ino, Name("user.k"), Name("v2"), (uint)XattrFlag.Create));
        Assert.Equal("v1", Encoding.UTF8.GetString((await vfs.GetXattrAsync(Ctx, ino, Name("user.k"))).Value!));
        Assert.Equal("user.k", Encoding.UTF8.GetString(Assert.Single((await vfs.ListXattrAsync(Ctx, ino)).Value!)));
        Assert.Equal(0, await vfs.RemoveXattrAsync(Ctx, ino, Name("user.k")));
        Assert.Equal(Errno.ENODATA, (await vfs.GetXattrAsync(Ctx, ino, Name("user.k"))).Errno);

        var set = await vfs.SetAttrAsync(Ctx, ino, new VfsSetAttr
        {
            Valid = (uint)(SetAttrValid.Mode | SetAttrValid.Mtime | SetAttrValid.Size),
            Mode = 0x180,
            MtimeNs = 1_000_000_000,
            Size = 12345,
        });
        Assert.Equal(0, set.Errno);
        Assert.Equal(0x180u, set.Value!.Attr.Mode & PosixMode.PermMask);
        Assert.Equal(1_000_000_000, set.Value.Attr.MtimeNs);
        Assert.Equal(12345ul, set.Value.Attr.Size);
        Assert.All(await ReadAsync(vfs, ino, fh, 0, 20000), b => Assert.Equal(0, b));

        // A read-only handle refuses writes; an unknown handle is EBADF.
        var ro = await OpenAsync(vfs, ino, OpenFlags.ReadOnly);
        Assert.Equal(Errno.EBADF, (await vfs.WriteAsync(Ctx, ino, ro, 0, new byte[1])).Errno);
        Assert.Equal(Errno.EBADF, (await vfs.ReadAsync(Ctx, ino, 999_999, 0, new byte[1])).Errno);

        // Credentials come from the caller's context: a new inode belongs to the caller.
        var user = new VfsContext(1000, 1001, 1, [1001]);
        var made = await vfs.MkdirAsync(user, 1, Name("mine"), 0x1ED, 0);
        Assert.Equal((1000u, 1001u), (made.Value!.Attr.Uid, made.Value.Attr.Gid));
    }

    [Fact]
    public async Task FallocatePunchHoleReadsZeros()
    {
        await using var f = await VfsFixture.StartAsync();
        var vfs = await f.MountAsync();
        var (ino, fh) = await CreateAsync(vfs, "p");
        var data = Pattern(3 * BlockSize, 1);
        await WriteAsync(vfs, ino, fh, 0, data);
        var mode = (uint)(FallocateMode.PunchHole | FallocateMode.KeepSize);
        Assert.Equal(0, await vfs.FallocateAsync(Ctx, ino, fh, mode, 100, BlockSize));
        Array.Clear(data, 100, BlockSize);
        Assert.Equal(data, await ReadAsync(vfs, ino, fh, 0, data.Length));
        Assert.Equal(0, await vfs.FallocateAsync(Ctx, ino, fh, 0, 0, 4 * BlockSize));
        Assert.Equal((ulong)(4 * BlockSize), (await vfs.GetAttrAsync(Ctx, ino)).Value!.Attr.Size);
    }

    [Fact]
    public async Task UnlinkedOpenFileStaysReadableUntilRelease()
    {
        await using var f = await VfsFixture.StartAsync();
        var vfs = await f.MountAsync();
        var (ino, fh) = await CreateAsync(vfs, "gone");
        var data = Pattern(BlockSize + 3, 2);
        await WriteAsync(vfs, ino, fh, 0, data);
        Assert.Equal(0, await vfs.FlushAsync(Ctx, ino, fh));
        Assert.Equal(0, await vfs.UnlinkAsync(Ctx, 1, Name("gone")));
        Assert.Equal(data, await ReadAsync(vfs, ino, fh, 0, data.Length));
        Assert.Equal(0, await vfs.ReleaseAsync(Ctx, ino, fh));
        vfs.Forget(ino, 1);
        Assert.Equal(Errno.ENOENT, (await vfs.GetAttrAsync(Ctx, ino)).Errno);
    }

    [Fact]
    public async Task MutationWhoseReplyIsLostIsRetriedWithTheSameSeqAndAppliedOnce()
    {
        await using var f = await VfsFixture.StartAsync();
        var (lossy, control) = LossyMetaClient.Wrap(f.Meta, nameof(IMetaClient.MkdirAsync), drops: 2);
        await using var session = await MetaSession.StartAsync(lossy, new MetaSessionOptions { RetryDelayMs = 1 });
        var req = new MkdirRequest { Parent = 1, Name = Google.Protobuf.ByteString.CopyFromUtf8("once"), Mode = 0x1ED };
        var reply = await session.MutateAsync(req, static (m, r, c) => m.MkdirAsync(r, c));
        // Without deduplication the second attempt would say EEXIST.
        Assert.Equal(0, reply.Errno);
        Assert.Equal(3, control.Calls);
        Assert.Equal(session.SessionId, req.SessionId);
        Assert.True(session.HighestIndex >= reply.Index);

        var next = new MkdirRequest { Parent = 1, Name = Google.Protobuf.ByteString.CopyFromUtf8("twice"), Mode = 0x1ED };
        Assert.Equal(0, (await session.MutateAsync(next, static (m, r, c) => m.MkdirAsync(r, c))).Errno);
        Assert.Equal(req.Seq + 1, next.Seq);
        Assert.Equal(req.Seq, next.AckedSeq); // the first call's reply arrived: the server may forget it
    }

    [Fact]
    public async Task SessionGivesUpAfterBoundedRetriesAndClosesOnDispose()
    {
        await using var f = await VfsFixture.StartAsync();
        var (lossy, control) = LossyMetaClient.Wrap(f.Meta, nameof(IMetaClient.MkdirAsync), drops: 100);
        var session = await MetaSession.StartAsync(lossy, new MetaSessionOptions { RetryDelayMs = 1, RetriesMax = 2 });
        await Assert.ThrowsAsync<IOException>(() => session.MutateAsync(
            new MkdirRequest { Parent = 1, Name = Google.Protobuf.ByteString.CopyFromUtf8("x"), Mode = 0x1ED }, static (m, r, c) => m.MkdirAsync(r, c)));
        Assert.Equal(3, control.Calls);
        var id = session.SessionId;
        await session.DisposeAsync();
        // The closed session is unknown to the server now.
        var hb = await f.Meta.HeartbeatAsync(new HeartbeatRequest { SessionId = id, Cred = new Credentials() });
        Assert.Equal(Errno.ENOTCONN, hb.Errno);
    }

    [Fact]
    public async Task HeartbeatsKeepTheSessionAlive()
    {
        await using var f = await VfsFixture.StartAsync();
        await using var session = await MetaSession.StartAsync(f.Meta, new MetaSessionOptions { HeartbeatIntervalMs = 50 });
        await Task.Delay(400);
        var expired = await f.Service.ExpireSessionsAsync(TimeSpan.FromMilliseconds(300));
        Assert.DoesNotContain(session.SessionId, expired.Expired);
    }
}
