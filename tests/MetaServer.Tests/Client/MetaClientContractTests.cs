// One contract for IMetaClient, run in-process and over RPC: the same calls must give the same answers.
using System.Text;
using Google.Protobuf;
using MirrorFS.Core.Meta;

namespace MirrorFS.MetaServer.Tests.Client;

public abstract class MetaClientContractTests : IAsyncLifetime
{
    protected static readonly Credentials Root = new() { Uid = 0, Gid = 0 };
    private IMetaClient? _client;
    private ulong _session;
    private ulong _seq;

    protected IMetaClient Meta => _client ?? throw new InvalidOperationException("client not created");

    /// <summary>A client on a fresh, empty metaserver.</summary>
    protected abstract Task<IMetaClient> CreateClientAsync();

    protected virtual Task DisposeServerAsync() => Task.CompletedTask;

    public async Task InitializeAsync()
    {
        _client = await CreateClientAsync();
        var f = await Meta.FormatAsync(new FormatRequest
        {
            Cred = Root,
            Volume = new Volume { Name = "vol", Storage = "file:///tmp/x", BlockSize = 1 << 20 },
        });
        Assert.Equal(0, f.Errno);
        var s = await Meta.NewSessionAsync(new NewSessionRequest { Cred = Root, Info = new ClientInfo { Hostname = "test" } });
        Assert.Equal(0, s.Errno);
        _session = s.SessionId;
    }

    public async Task DisposeAsync()
    {
        if (_client is not null)
        {
            await _client.DisposeAsync();
        }
        await DisposeServerAsync();
    }

    private T S<T>(T request) where T : IMutatingRequest
    {
        request.SessionId = _session;
        request.Seq = ++_seq;
        request.Cred ??= Root;
        return request;
    }

    private static ByteString N(string name) => ByteString.CopyFromUtf8(name);

    [Fact]
    public async Task VolumeSettingsComeBack()
    {
        var v = await Meta.GetVolumeAsync(new GetVolumeRequest { Cred = Root });
        Assert.Equal(0, v.Errno);
        Assert.Equal("vol", v.Volume.Name);
        Assert.Equal(1u << 20, v.Volume.BlockSize);
        Assert.False(string.IsNullOrEmpty(v.Volume.Uuid));
        Assert.True(v.Volume.CreatedNs > 0);
        var again = await Meta.FormatAsync(new FormatRequest { Cred = Root, Volume = new Volume { Name = "other" } });
        Assert.NotEqual(0, again.Errno);
    }

    [Fact]
    public async Task MkdirLookupGetAttr()
    {
        var mk = await Meta.MkdirAsync(S(new MkdirRequest { Parent = 1, Name = N("docs"), Mode = 0x1ED }));
        Assert.Equal(0, mk.Errno);
        Assert.True(PosixMode.IsDir(mk.Attr.Mode));
        Assert.Equal(2u, mk.Attr.Nlink);
        var look = await Meta.LookupAsync(new LookupRequest { Cred = Root, Parent = 1, Name = N("docs") });
        Assert.Equal(0, look.Errno);
        Assert.Equal(mk.Attr.Inode, look.Attr.Inode);
        var root = await Meta.GetAttrAsync(new GetAttrRequest { Cred = Root, Inode = 1 });
        Assert.Equal(3u, root.Attr.Nlink);
        Assert.True(root.Index >= mk.Index, "a read reflects at least the write before it");
        var missing = await Meta.LookupAsync(new LookupRequest { Cred = Root, Parent = 1, Name = N("nope") });
        Assert.Equal(Errno.ENOENT, missing.Errno);
        var dup = await Meta.MkdirAsync(S(new MkdirRequest { Parent = 1, Name = N("docs"), Mode = 0x1ED }));
        Assert.Equal(Errno.EEXIST, dup.Errno);
        var longName = await Meta.MkdirAsync(S(new MkdirRequest { Parent = 1, Name = N(new string('x', 256)), Mode = 0x1ED }));
        Assert.Equal(Errno.ENAMETOOLONG, longName.Errno);
    }

    [Fact]
    public async Task ReadDirPagesThroughEveryEntryWithAttributes()
    {
        var dir = (await Meta.MkdirAsync(S(new MkdirRequest { Parent = 1, Name = N("many"), Mode = 0x1ED }))).Attr.Inode;
        var names = Enumerable.Range(0, 250).Select(i => $"f{i:D3}").ToHashSet();
        foreach (var n in names)
        {
            Assert.Equal(0, (await Meta.CreateAsync(S(new CreateRequest { Parent = dir, Name = N(n), Mode = 0x81A4 }))).Errno);
        }
        var seen = new List<string>();
        ulong offset = 0;
        for (var pages = 0; ; pages++)
        {
            Assert.True(pages < 100, "readdir does not end");
            var page = await Meta.ReadDirAsync(new ReadDirRequest { Cred = Root, Inode = dir, Offset = offset, Limit = 64 });
            Assert.Equal(0, page.Errno);
            foreach (var e in page.Entries)
            {
                var name = e.Name.ToStringUtf8();
                if (name is "." or "..")
                {
                    continue;
                }
                seen.Add(name);
                Assert.True(PosixMode.IsRegular(e.Attr.Mode));
                offset = e.Offset;
            }
            if (page.Eof)
            {
                break;
            }
            if (page.Entries.Count > 0)
            {
                offset = page.Entries[^1].Offset;
            }
        }
        Assert.Equal(names.Order(), seen.Order());
        Assert.Equal(names.Count, seen.Count);
    }

    [Fact]
    public async Task FileLifecycleWithSlicesAndTruncate()
    {
        var f = await Meta.CreateAsync(S(new CreateRequest { Parent = 1, Name = N("data.bin"), Mode = 0x81A4 }));
        Assert.Equal(0, f.Errno);
        var ino = f.Attr.Inode;
        // The reply carries the parent as a getattr now shows it (the create moved its mtime).
        var root = (await Meta.GetAttrAsync(new GetAttrRequest { Cred = Root, Inode = 1 })).Attr;
        Assert.Equal(root, f.ParentAttr);
        var ids = await Meta.NewSliceIdsAsync(S(new NewSliceIdsRequest { Count = 3 }));
        Assert.Equal(0, ids.Errno);
        Assert.Equal(3u, ids.Count);
        var more = await Meta.NewSliceIdsAsync(S(new NewSliceIdsRequest { Count = 2 }));
        Assert.True(more.FirstId >= ids.FirstId + 3, "slice ids are never reused");

        var w = await Meta.WriteSliceAsync(S(new WriteSliceRequest
        {
            Inode = ino,
            ChunkIndex = 0,
            Slice = new Slice { Id = ids.FirstId, Size = 1000, Offset = 0, Length = 1000, Pos = 0 },
        }));
        Assert.Equal(0, w.Errno);
        Assert.Equal(1000ul, w.Attr.Size);
        await Meta.WriteSliceAsync(S(new WriteSliceRequest
        {
            Inode = ino,
            ChunkIndex = 1,
            Slice = new Slice { Id = ids.FirstId + 1, Size = 10, Offset = 0, Length = 10, Pos = 5 },
        }));
        var attr = await Meta.GetAttrAsync(new GetAttrRequest { Cred = Root, Inode = ino });
        Assert.Equal((64ul << 20) + 15, attr.Attr.Size);
        var chunk = await Meta.ReadChunkAsync(new ReadChunkRequest { Cred = Root, Inode = ino, ChunkIndex = 0 });
        Assert.Equal(ids.FirstId, Assert.Single(chunk.Slices).Id);
        Assert.Null(chunk.Attr); // attributes only when asked
        var withAttr = await Meta.ReadChunkAsync(new ReadChunkRequest { Cred = Root, Inode = ino, ChunkIndex = 0, WithAttr = true });
        Assert.Equal(chunk.Slices, withAttr.Slices);
        Assert.Equal(attr.Attr, withAttr.Attr);

        var t = await Meta.TruncateAsync(S(new TruncateRequest { Inode = ino, Size = 500 }));
        Assert.Equal(0, t.Errno);
        Assert.Equal(500ul, t.Attr.Size);
        var after = await Meta.ReadChunkAsync(new ReadChunkRequest { Cred = Root, Inode = ino, ChunkIndex = 1 });
        Assert.Empty(after.Slices);
    }

    [Fact]
    public async Task RenameLinkSymlinkUnlink()
    {
        var a = (await Meta.CreateAsync(S(new CreateRequest { Parent = 1, Name = N("a"), Mode = 0x81A4 }))).Attr.Inode;
        Assert.Equal(0, (await Meta.RenameAsync(S(new RenameRequest { Parent = 1, Name = N("a"), NewParent = 1, NewName = N("b") }))).Errno);
        Assert.Equal(Errno.ENOENT, (await Meta.LookupAsync(new LookupRequest { Cred = Root, Parent = 1, Name = N("a") })).Errno);
        var link = await Meta.LinkAsync(S(new LinkRequest { Inode = a, NewParent = 1, NewName = N("c") }));
        Assert.Equal(2u, link.Attr.Nlink);
        var sym = await Meta.SymlinkAsync(S(new SymlinkRequest { Parent = 1, Name = N("s"), Target = N("b") }));
        Assert.True(PosixMode.IsSymlink(sym.Attr.Mode));
        Assert.Equal("b", (await Meta.ReadLinkAsync(new ReadLinkRequest { Cred = Root, Inode = sym.Attr.Inode })).Target.ToStringUtf8());
        var noReplace = await Meta.RenameAsync(S(new RenameRequest
        {
            Parent = 1, Name = N("b"), NewParent = 1, NewName = N("c"), Flags = (uint)RenameFlag.Noreplace,
        }));
        Assert.Equal(Errno.EEXIST, noReplace.Errno);
        Assert.Equal(0, (await Meta.UnlinkAsync(S(new UnlinkRequest { Parent = 1, Name = N("b") }))).Errno);
        Assert.Equal(1u, (await Meta.GetAttrAsync(new GetAttrRequest { Cred = Root, Inode = a })).Attr.Nlink);
        var d = (await Meta.MkdirAsync(S(new MkdirRequest { Parent = 1, Name = N("d"), Mode = 0x1ED }))).Attr.Inode;
        await Meta.MkdirAsync(S(new MkdirRequest { Parent = d, Name = N("e"), Mode = 0x1ED }));
        Assert.Equal(Errno.ENOTEMPTY, (await Meta.RmdirAsync(S(new RmdirRequest { Parent = 1, Name = N("d") }))).Errno);
        Assert.Equal(Errno.EINVAL, (await Meta.RenameAsync(S(new RenameRequest { Parent = 1, Name = N("d"), NewParent = d, NewName = N("x") }))).Errno);
    }

    [Fact]
    public async Task XattrsAndStatFs()
    {
        var ino = (await Meta.CreateAsync(S(new CreateRequest { Parent = 1, Name = N("x"), Mode = 0x81A4 }))).Attr.Inode;
        Assert.Equal(0, (await Meta.SetXattrAsync(S(new SetXattrRequest { Inode = ino, Name = N("user.k"), Value = N("v1") }))).Errno);
        Assert.Equal(Errno.EEXIST, (await Meta.SetXattrAsync(S(new SetXattrRequest
        {
            Inode = ino, Name = N("user.k"), Value = N("v2"), Flags = (uint)XattrFlag.Create,
        }))).Errno);
        Assert.Equal("v1", (await Meta.GetXattrAsync(new GetXattrRequest { Cred = Root, Inode = ino, Name = N("user.k") })).Value.ToStringUtf8());
        var list = await Meta.ListXattrAsync(new ListXattrRequest { Cred = Root, Inode = ino });
        Assert.Equal(["user.k"], list.Names.Select(n => n.ToStringUtf8()).ToArray());
        Assert.Equal(0, (await Meta.RemoveXattrAsync(S(new RemoveXattrRequest { Inode = ino, Name = N("user.k") }))).Errno);
        Assert.Equal(Errno.ENODATA, (await Meta.GetXattrAsync(new GetXattrRequest { Cred = Root, Inode = ino, Name = N("user.k") })).Errno);
        var fs = await Meta.StatFsAsync(new StatFsRequest { Cred = Root, Inode = 1 });
        Assert.Equal(0, fs.Errno);
        Assert.True(fs.UsedInodes >= 2);
        Assert.Equal(255u, fs.NameMax);
    }

    [Fact]
    public async Task ARetriedCommandReturnsItsFirstReply()
    {
        var req = S(new MkdirRequest { Parent = 1, Name = N("once"), Mode = 0x1ED });
        var first = await Meta.MkdirAsync(req);
        Assert.Equal(0, first.Errno);
        var retry = await Meta.MkdirAsync(req.Clone());
        Assert.Equal(first, retry);
        var fresh = await Meta.MkdirAsync(S(new MkdirRequest { Parent = 1, Name = N("once"), Mode = 0x1ED }));
        Assert.Equal(Errno.EEXIST, fresh.Errno);
        Assert.Equal(3u, (await Meta.GetAttrAsync(new GetAttrRequest { Cred = Root, Inode = 1 })).Attr.Nlink);
    }

    [Fact]
    public async Task UnlinkedOpenFileKeepsItsDataUntilRelease()
    {
        var ino = (await Meta.CreateAsync(S(new CreateRequest { Parent = 1, Name = N("tmp"), Mode = 0x81A4 }))).Attr.Inode;
        var ids = await Meta.NewSliceIdsAsync(S(new NewSliceIdsRequest { Count = 1 }));
        await Meta.WriteSliceAsync(S(new WriteSliceRequest
        {
            Inode = ino, Slice = new Slice { Id = ids.FirstId, Size = 10, Length = 10 },
        }));
        Assert.Equal(0, (await Meta.UnlinkAsync(S(new UnlinkRequest { Parent = 1, Name = N("tmp") }))).Errno);
        var still = await Meta.GetAttrAsync(new GetAttrRequest { Cred = Root, Inode = ino });
        Assert.Equal(0, still.Errno);
        Assert.Equal(0u, still.Attr.Nlink);
        Assert.Single((await Meta.ReadChunkAsync(new ReadChunkRequest { Cred = Root, Inode = ino })).Slices);
        Assert.Equal(0, (await Meta.ReleaseAsync(S(new ReleaseRequest { Inode = ino }))).Errno);
        Assert.Equal(Errno.ENOENT, (await Meta.GetAttrAsync(new GetAttrRequest { Cred = Root, Inode = ino })).Errno);
    }

    [Fact]
    public async Task CompactionAndPendingDeletesRoundTrip()
    {
        var ino = (await Meta.CreateAsync(S(new CreateRequest { Parent = 1, Name = N("frag"), Mode = 0x81A4 }))).Attr.Inode;
        var ids = await Meta.NewSliceIdsAsync(S(new NewSliceIdsRequest { Count = 4 }));
        for (uint i = 0; i < 3; i++)
        {
            var w = await Meta.WriteSliceAsync(S(new WriteSliceRequest { Inode = ino, Slice = new Slice { Id = ids.FirstId + i, Size = 10, Length = 10, Pos = i * 10 } }));
            Assert.Equal(0, w.Errno);
        }
        var listed = await Meta.ListSlicesAsync(new ListSlicesRequest { Cred = Root, MinSlices = 3 });
        Assert.True(listed.Eof);
        var chunk = Assert.Single(listed.Chunks);
        Assert.Equal((ino, 3), (chunk.Inode, chunk.Slices.Count));
        var c = await Meta.CompactChunkAsync(S(new CompactChunkRequest
        {
            Inode = ino,
            ExpectedCount = 3,
            ExpectedDigest = ByteString.CopyFrom(SliceDigest.Of(chunk.Slices)),
            Slice = new Slice { Id = ids.FirstId + 3, Size = 30, Length = 30 },
        }));
        Assert.Equal((0, true, 3u), (c.Errno, c.Compacted, c.Replaced));
        var pending = await Meta.ListPendingDeletesAsync(new ListPendingDeletesRequest { Cred = Root, EligibleOnly = true });
        Assert.Equal(3, pending.Entries.Count);
        Assert.All(pending.Entries, e => Assert.True(e.Eligible && e.NotBeforeNs > 0 && e.Size == 10));
        var confirm = new ConfirmDeletesRequest();
        confirm.SliceIds.AddRange(pending.Entries.Select(e => e.SliceId));
        Assert.Equal(3u, (await Meta.ConfirmDeletesAsync(S(confirm))).Removed);
        var again = confirm.Clone();
        Assert.Equal(0u, (await Meta.ConfirmDeletesAsync(S(again))).Removed);
        Assert.Equal(0UL, (await Meta.ListPendingDeletesAsync(new ListPendingDeletesRequest { Cred = Root })).Total);
    }

    [Fact]
    public async Task ConcurrentCreatesAllLand()
    {
        var dir = (await Meta.MkdirAsync(S(new MkdirRequest { Parent = 1, Name = N("conc"), Mode = 0x1ED }))).Attr.Inode;
        var reqs = Enumerable.Range(0, 64).Select(i => S(new CreateRequest { Parent = dir, Name = N($"c{i}"), Mode = 0x81A4 })).ToList();
        var replies = await Task.WhenAll(reqs.Select(r => Meta.CreateAsync(r)));
        Assert.All(replies, r => Assert.Equal(0, r.Errno));
        Assert.Equal(64, replies.Select(r => r.Attr.Inode).Distinct().Count());
        Assert.Equal(64, replies.Select(r => r.Index).Distinct().Count());
    }
}
