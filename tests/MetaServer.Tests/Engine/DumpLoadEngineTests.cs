// Engine tests of Dump (consistent, depth-first, hard links once), LoadEntries (verbatim, guarded) and leases.
using Google.Protobuf;
using MirrorFS.Core.Meta;
using MirrorFS.MetaServer.Consensus;
using MirrorFS.MetaServer.Engine;
using static MirrorFS.MetaServer.Tests.Engine.MetaHarness;

namespace MirrorFS.MetaServer.Tests.Engine;

public sealed class DumpLoadEngineTests
{
    private static async Task<(DumpHeader Header, List<DumpNode> Nodes, ulong Index)> DumpAsync(MetaService svc, uint pageNodes = 0)
    {
        DumpHeader? header = null;
        var nodes = new List<DumpNode>();
        ulong index = 0;
        var eof = false;
        await foreach (var page in svc.DumpAsync(new DumpRequest { PageNodes = pageNodes }))
        {
            Assert.Equal(0, page.Errno);
            Assert.False(eof, "a page after the last one");
            if (header is null)
            {
                header = page.Header;
                index = page.Index;
            }
            else
            {
                Assert.Null(page.Header);
                Assert.Equal(index, page.Index);
            }
            Assert.True(pageNodes == 0 || page.Nodes.Count <= pageNodes);
            nodes.AddRange(page.Nodes);
            eof = page.Eof;
        }
        Assert.True(eof);
        Assert.NotNull(header);
        Assert.Equal(header.Nodes, (ulong)nodes.Count);
        return (header, nodes, index);
    }

    /// <summary>What the client's loader does, without JSON: nodes to LoadEntries batches of at most <paramref name="batch"/> nodes.</summary>
    private static async Task LoadAsync(MetaHarness target, DumpHeader header, List<DumpNode> nodes, int batch = 7)
    {
        var begin = await target.Svc.LoadEntriesAsync(target.Stamp(new LoadEntriesRequest { Phase = LoadPhase.Begin, Volume = header.Volume }));
        Assert.Equal(0, begin.Errno);
        var dirs = new List<ulong>();
        var req = new LoadEntriesRequest { Phase = LoadPhase.Entries };
        var count = 0;
        ulong last = 0;
        foreach (var n in nodes)
        {
            if (!n.Continued)
            {
                dirs.RemoveRange((int)n.Depth, dirs.Count - (int)n.Depth);
                var parent = n.Depth == 0 ? 1 : dirs[^1];
                if (!n.HardLink)
                {
                    var li = new LoadInode { Attr = n.Attr.Clone(), Target = n.Target };
                    li.Xattrs.AddRange(n.Xattrs);
                    req.Inodes.Add(li);
                }
                if (n.Depth > 0)
                {
                    req.Dentries.Add(new LoadDentry { Parent = parent, Name = n.Name, Inode = n.Attr.Inode });
                }
                if (!n.HardLink && PosixMode.IsDir(n.Attr.Mode))
                {
                    dirs.Add(n.Attr.Inode);
                }
                last = n.Attr.Inode;
            }
            foreach (var c in n.Chunks)
            {
                var lc = new LoadChunk { Inode = last, Index = c.Index };
                lc.Slices.AddRange(c.Slices);
                req.Chunks.Add(lc);
            }
            if (++count % batch == 0)
            {
                var r = await target.Svc.LoadEntriesAsync(target.Stamp(req));
                Assert.True(r.Errno == 0, $"batch failed with errno {r.Errno} at inode {r.Inode}");
                req = new LoadEntriesRequest { Phase = LoadPhase.Entries };
            }
        }
        var tail = await target.Svc.LoadEntriesAsync(target.Stamp(req));
        Assert.True(tail.Errno == 0, $"batch failed with errno {tail.Errno} at inode {tail.Inode}");
        var fin = await target.Svc.LoadEntriesAsync(target.Stamp(new LoadEntriesRequest
        {
            Phase = LoadPhase.Finish,
            NextInode = header.NextInode,
            NextSliceId = header.NextSliceId,
        }));
        Assert.Equal(0, fin.Errno);
        Assert.Equal(header.UsedBytes, fin.UsedBytes);
    }

    /// <summary>An unformatted engine with one session, ready to load.</summary>
    private static async Task<MetaHarness> EmptyAsync()
    {
        var h = new MetaHarness();
        h.Session = await h.NewSessionAsync();
        return h;
    }

    private static async Task<MetaHarness> SampleTreeAsync()
    {
        var h = await StartAsync();
        var d = (await h.Mkdir(Root, "dir", 0x3ED)).Attr.Inode; // sticky 1755
        var sub = (await h.Mkdir(d, "sub")).Attr.Inode;
        var f = (await h.Create(d, "file", 0x9A4)).Attr.Inode;   // setuid 4644
        await h.WriteNew(f, 0, 0, 5000);
        await h.WriteNew(f, 0, 100, 10);
        await h.WriteNew(f, 2, 7, 3);                            // sparse: chunk 1 absent
        await h.Release(f);
        await h.Link(f, sub, "hard");
        await h.Link(f, Root, "hard2");
        await h.Symlink(sub, "ln", "../file");
        await h.Mknod(Root, "fifo", PosixMode.Fifo | 0x1B0);
        await h.Mknod(Root, "dev", PosixMode.Char | 0x180, 0x0103);
        var sx = await h.Svc.SetXattrAsync(h.Stamp(new SetXattrRequest { Inode = f, Name = N("user.k"), Value = ByteString.CopyFrom(0, 1, 255) }));
        Assert.Equal(0, sx.Errno);
        await h.SetAttr(new SetAttrRequest { Inode = sub, Valid = 2 | 4 | 16 | 32, Uid = 1234, Gid = 99, AtimeNs = -5, MtimeNs = 42 });
        await h.Mkdir(Root, "empty");
        return h;
    }

    [Fact]
    public async Task Dump_walks_depth_first_and_sends_a_hard_linked_inode_once()
    {
        using var h = await SampleTreeAsync();
        var (header, nodes, index) = await DumpAsync(h.Svc, pageNodes: 2);
        Assert.Equal(h.State.AppliedIndex, index);
        Assert.Equal("test", header.Volume.Name);
        Assert.Equal(0u, nodes[0].Depth);
        Assert.Equal(Root, nodes[0].Attr.Inode);
        var names = nodes.Select(n => $"{n.Depth}:{n.Name.ToStringUtf8()}{(n.HardLink ? "*" : "")}").ToList();
        Assert.Equal(["0:", "1:dir", "2:sub", "3:hard", "3:ln", "2:file*", "1:hard2*", "1:fifo", "1:dev", "1:empty"], names);
        var file = nodes.Single(n => n.Name.ToStringUtf8() == "hard");
        Assert.Equal(3u, file.Attr.Nlink);
        Assert.Equal([0u, 2u], file.Chunks.Select(c => c.Index));
        Assert.Equal(2, file.Chunks[0].Slices.Count);
        Assert.Single(file.Xattrs);
        Assert.Equal(N("../file"), nodes.Single(n => n.Name.ToStringUtf8() == "ln").Target);
        Assert.Equal(0x0103UL, nodes.Single(n => n.Name.ToStringUtf8() == "dev").Attr.Rdev);
    }

    [Fact]
    public async Task Load_reproduces_the_dumped_tree_verbatim_and_new_ids_never_collide()
    {
        using var src = await SampleTreeAsync();
        var (header, nodes, _) = await DumpAsync(src.Svc);
        using var dst = await EmptyAsync();
        await LoadAsync(dst, header, nodes, batch: 3);

        var (header2, nodes2, _) = await DumpAsync(dst.Svc);
        Assert.Equal(nodes, nodes2);
        Assert.Equal(header.Volume, header2.Volume);
        Assert.Equal(header.UsedBytes, header2.UsedBytes);
        Assert.Equal(header.Inodes, header2.Inodes);
        Assert.Equal(src.State.Usage().Inodes, dst.State.Usage().Inodes);

        // Fresh ids start above every loaded one.
        var maxInode = nodes.Max(n => n.Attr.Inode);
        var maxSlice = nodes.SelectMany(n => n.Chunks).SelectMany(c => c.Slices).Max(s => s.Id);
        var created = await dst.Mkdir(Root, "new");
        Assert.Equal(0, created.Errno);
        Assert.True(created.Attr.Inode > maxInode);
        Assert.True(await dst.NewSliceIds() > maxSlice);
        // The loaded tree is a normal one: names resolve, hard links count, data reads back.
        var dir = await dst.Ino(Root, "dir");
        var hard = await dst.Ino(await dst.Ino(dir, "sub"), "hard");
        Assert.Equal(hard, await dst.Ino(Root, "hard2"));
        var chunk = await dst.Svc.ReadChunkAsync(new ReadChunkRequest { Inode = hard, ChunkIndex = 0 });
        Assert.Equal(2, chunk.Slices.Count);
        Assert.Equal(0, (await dst.Unlink(Root, "hard2")).Errno);
        Assert.Equal(2u, (await dst.Attr(hard)).Nlink);
    }

    [Fact]
    public async Task Load_refuses_a_volume_in_use_and_accepts_an_empty_formatted_one()
    {
        using var busy = await StartAsync();
        await busy.Mkdir(Root, "x");
        var r = await busy.Svc.LoadEntriesAsync(busy.Stamp(new LoadEntriesRequest { Phase = LoadPhase.Begin, Volume = new Volume { Name = "v", Uuid = "u", BlockSize = 4 << 20 } }));
        Assert.Equal(Errno.ENOTEMPTY, r.Errno);
        Assert.Equal(2UL, r.Inodes);
        // Without BEGIN, batches are refused.
        r = await busy.Svc.LoadEntriesAsync(busy.Stamp(new LoadEntriesRequest { Phase = LoadPhase.Finish }));
        Assert.Equal(Errno.EINVAL, r.Errno);

        using var src = await SampleTreeAsync();
        var (header, nodes, _) = await DumpAsync(src.Svc);
        using var formatted = await StartAsync();
        await LoadAsync(formatted, header, nodes);
        Assert.Equal(nodes, (await DumpAsync(formatted.Svc)).Nodes);
    }

    [Fact]
    public async Task A_load_in_progress_blocks_use_and_can_start_over_without_queuing_deletes()
    {
        using var src = await SampleTreeAsync();
        var (header, nodes, _) = await DumpAsync(src.Svc);
        using var dst = await EmptyAsync();
        Assert.Equal(0, (await dst.Svc.LoadEntriesAsync(dst.Stamp(new LoadEntriesRequest { Phase = LoadPhase.Begin, Volume = header.Volume }))).Errno);
        var half = new LoadEntriesRequest { Phase = LoadPhase.Entries };
        half.Inodes.Add(new LoadInode { Attr = nodes[0].Attr });
        var file = nodes.Single(n => n.Name.ToStringUtf8() == "hard");
        half.Inodes.Add(new LoadInode { Attr = file.Attr });
        half.Chunks.Add(new LoadChunk { Inode = file.Attr.Inode, Index = 0, Slices = { file.Chunks[0].Slices } });
        Assert.Equal(0, (await dst.Svc.LoadEntriesAsync(dst.Stamp(half))).Errno);

        Assert.Equal(Errno.EBUSY, (await dst.Svc.GetVolumeAsync(new GetVolumeRequest())).Errno);
        Assert.Equal(Errno.EBUSY, (await dst.Mkdir(Root, "nope")).Errno);
        Assert.Equal(Errno.EBUSY, (await dst.Svc.DumpAsync(new DumpRequest()).FirstAsync()).Errno);

        // A snapshot keeps the load flag (format v3) and restores it.
        using (var ms = new MemoryStream())
        {
            dst.State.WriteSnapshot(ms);
            using var restored = new MetaStateMachine();
            restored.RestoreSnapshot(new MemoryStream(ms.ToArray()));
            Assert.Equal(Errno.EBUSY, restored.GetVolume(new GetVolumeRequest()).Errno);
        }

        await LoadAsync(dst, header, nodes); // BEGIN again: starts over
        Assert.Empty(dst.State.PendingDeletes());
        Assert.Equal(0, (await dst.Svc.GetVolumeAsync(new GetVolumeRequest())).Errno);
        Assert.Equal(nodes, (await DumpAsync(dst.Svc)).Nodes);
    }

    [Fact]
    public async Task Invalid_items_are_refused_with_the_inode_named()
    {
        using var dst = await EmptyAsync();
        Assert.Equal(0, (await dst.Svc.LoadEntriesAsync(dst.Stamp(new LoadEntriesRequest { Phase = LoadPhase.Begin, Volume = new Volume { Name = "v", Uuid = "u", BlockSize = 1 << 20 } }))).Errno);
        var root = new Attr { Inode = 1, Mode = PosixMode.Directory | 0x1ED, Nlink = 2 };
        LoadEntriesRequest Batch(Action<LoadEntriesRequest> fill)
        {
            var b = new LoadEntriesRequest { Phase = LoadPhase.Entries };
            fill(b);
            return dst.Stamp(b);
        }
        Assert.Equal(0, (await dst.Svc.LoadEntriesAsync(Batch(b => b.Inodes.Add(new LoadInode { Attr = root })))).Errno);
        var dup = await dst.Svc.LoadEntriesAsync(Batch(b => b.Inodes.Add(new LoadInode { Attr = root })));
        Assert.Equal((Errno.EEXIST, 1UL), (dup.Errno, dup.Inode));
        var dangling = await dst.Svc.LoadEntriesAsync(Batch(b => b.Dentries.Add(new LoadDentry { Parent = 1, Name = N("x"), Inode = 77 })));
        Assert.Equal((Errno.EINVAL, 77UL), (dangling.Errno, dangling.Inode));
        var noTarget = await dst.Svc.LoadEntriesAsync(Batch(b => b.Inodes.Add(new LoadInode { Attr = new Attr { Inode = 5, Mode = PosixMode.Symlink | 0x1FF, Nlink = 1 } })));
        Assert.Equal((Errno.EINVAL, 5UL), (noTarget.Errno, noTarget.Inode));
        var badSlice = await dst.Svc.LoadEntriesAsync(Batch(b =>
        {
            b.Inodes.Add(new LoadInode { Attr = new Attr { Inode = 6, Mode = PosixMode.Regular | 0x1A4, Nlink = 1, Size = 10 } });
            b.Chunks.Add(new LoadChunk { Inode = 6, Index = 0, Slices = { new Slice { Id = 3, Size = 5, Length = 10 } } });
        }));
        Assert.Equal((Errno.EINVAL, 6UL), (badSlice.Errno, badSlice.Inode));
        var fin = await dst.Svc.LoadEntriesAsync(dst.Stamp(new LoadEntriesRequest { Phase = LoadPhase.Finish, NextInode = 100, NextSliceId = 50 }));
        Assert.Equal(0, fin.Errno);
        Assert.Equal(100UL, dst.State.Counters().NextInode);
        Assert.Equal(50UL, dst.State.Counters().NextSliceId);
    }

    [Fact]
    public async Task Dump_of_a_volume_in_use_is_one_point_in_time()
    {
        // A writer creates f0, f1, ... in order while dumps run: each dump must hold exactly a prefix of them, and
        // its header's inode count must match what it holds.
        using var h = await StartAsync();
        var dir = (await h.Mkdir(Root, "d")).Attr.Inode;
        using var stop = new CancellationTokenSource();
        var created = 0;
        var writer = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested && created < 20_000)
            {
                var r = await h.Svc.MknodAsync(new MknodRequest { Parent = dir, Name = N($"f{created}"), Mode = PosixMode.Regular | 0x1A4 });
                Assert.Equal(0, r.Errno);
                created++;
            }
        });
        var seen = new List<int>();
        for (var round = 0; round < 5; round++)
        {
            var (header, nodes, _) = await DumpAsync(h.Svc, pageNodes: 500);
            var files = nodes.Where(n => n.Depth == 2).Select(n => int.Parse(n.Name.ToStringUtf8()[1..], System.Globalization.CultureInfo.InvariantCulture)).Order().ToList();
            Assert.Equal(Enumerable.Range(0, files.Count), files);
            Assert.Equal(header.Inodes, (ulong)nodes.Count);
            seen.Add(files.Count);
        }
        await stop.CancelAsync();
        await writer;
        Assert.True(seen.Count == 5);
    }

    [Fact]
    public async Task A_file_with_more_slices_than_fit_one_node_continues_in_the_next()
    {
        using var src = await StartAsync();
        var f = (await src.Create(Root, "many")).Attr.Inode;
        var first = await src.NewSliceIds(5000);
        for (uint i = 0; i < 5000; i++)
        {
            Assert.Equal(0, (await src.Write(f, i % 2, new Slice { Id = first + i, Size = 8, Length = 8, Pos = i * 8 })).Errno);
        }
        var (header, nodes, _) = await DumpAsync(src.Svc);
        Assert.Equal(3, nodes.Count);
        Assert.True(nodes[2].Continued);
        Assert.Equal(5000, nodes.SelectMany(n => n.Chunks).Sum(c => c.Slices.Count));
        using var dst = await EmptyAsync();
        await LoadAsync(dst, header, nodes, batch: 1);
        var back = await dst.Svc.ReadChunkAsync(new ReadChunkRequest { Inode = f, ChunkIndex = 1 });
        var orig = await src.Svc.ReadChunkAsync(new ReadChunkRequest { Inode = f, ChunkIndex = 1 });
        Assert.Equal(orig.Slices, back.Slices);
    }

    [Fact]
    public async Task A_lease_has_one_holder_until_it_lapses_is_released_or_its_session_closes()
    {
        using var h = await StartAsync();
        var a = h.Session;
        var b = await h.NewSessionAsync("b");
        Task<AcquireLeaseReply> Take(ulong session, long durationNs, string name = "backup-meta")
        {
            var r = h.Stamp(new AcquireLeaseRequest { Name = name, DurationNs = durationNs });
            r.SessionId = session;
            return h.Svc.AcquireLeaseAsync(r);
        }
        var got = await Take(a, 60_000_000_000);
        Assert.Equal((0, a), (got.Errno, got.Holder));
        var denied = await Take(b, 60_000_000_000);
        Assert.Equal((Errno.EBUSY, a), (denied.Errno, denied.Holder));
        Assert.Equal(0, (await Take(a, 60_000_000_000)).Errno); // renew

        // Snapshots carry leases (format v3).
        using (var ms = new MemoryStream())
        {
            h.State.WriteSnapshot(ms);
            var bytes = ms.ToArray();
            Assert.Equal(3, bytes[8]);
            using var restored = new MetaStateMachine();
            restored.RestoreSnapshot(new MemoryStream(bytes));
            using var again = new MemoryStream();
            restored.WriteSnapshot(again);
            Assert.Equal(bytes, again.ToArray());
        }

        h.Clock.Ns += 61_000_000_000;
        Assert.Equal((0, b), ((await Take(b, 1_000_000_000)).Errno, b));
        Assert.Equal(0, (await Take(b, 0)).Errno); // release
        Assert.Equal(0, (await Take(a, 60_000_000_000)).Errno);
        var close = h.Stamp(new CloseSessionRequest());
        close.SessionId = a;
        await h.Svc.CloseSessionAsync(close);
        Assert.Equal(b, (await Take(b, 60_000_000_000)).Holder);
        Assert.Equal(Errno.EINVAL, (await Take(b, 1, "")).Errno);
        Assert.Equal(Errno.EINVAL, (await h.Svc.AcquireLeaseAsync(new AcquireLeaseRequest { Name = "x", DurationNs = 1 })).Errno);
    }
}
