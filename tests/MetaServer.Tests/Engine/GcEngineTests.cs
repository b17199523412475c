// Engine side of block deletion and compaction: pending-delete listing and confirmation, slice listing, CompactChunk.
using Google.Protobuf;
using MirrorFS.Core.Meta;
using static MirrorFS.MetaServer.Tests.Engine.MetaHarness;

namespace MirrorFS.MetaServer.Tests.Engine;

public sealed class GcEngineTests
{
    private const long Hour = 3_600_000_000_000;

    private static async Task<List<PendingDelete>> AllPending(MetaHarness h, uint page, bool eligibleOnly = false)
    {
        var all = new List<PendingDelete>();
        ulong after = 0;
        for (var guard = 0; guard < 100_000; guard++)
        {
            var r = await h.Svc.ListPendingDeletesAsync(new ListPendingDeletesRequest { StartAfter = after, Limit = page, EligibleOnly = eligibleOnly });
            Assert.Equal(0, r.Errno);
            all.AddRange(r.Entries);
            if (r.Eof)
            {
                return all;
            }
            Assert.NotEmpty(r.Entries);
            after = r.Entries[^1].SliceId;
        }
        throw new InvalidOperationException("pending listing did not end");
    }

    private static async Task<List<ChunkSlices>> AllChunks(MetaHarness h, uint page, uint minSlices = 0)
    {
        var all = new List<ChunkSlices>();
        ulong inode = 0;
        uint chunk = 0;
        for (var guard = 0; guard < 100_000; guard++)
        {
            var r = await h.Svc.ListSlicesAsync(new ListSlicesRequest { AfterInode = inode, AfterChunk = chunk, Limit = page, MinSlices = minSlices });
            Assert.Equal(0, r.Errno);
            all.AddRange(r.Chunks);
            if (r.Eof)
            {
                return all;
            }
            Assert.NotEmpty(r.Chunks);
            (inode, chunk) = (r.Chunks[^1].Inode, r.Chunks[^1].ChunkIndex);
        }
        throw new InvalidOperationException("slice listing did not end");
    }

    private static Task<CompactChunkReply> Compact(MetaHarness h, ulong inode, uint chunk, IReadOnlyCollection<Slice> expected, Slice? slice, long delayNs) =>
        h.Svc.CompactChunkAsync(h.Stamp(new CompactChunkRequest
        {
            Inode = inode,
            ChunkIndex = chunk,
            ExpectedCount = (uint)expected.Count,
            ExpectedDigest = ByteString.CopyFrom(SliceDigest.Of(expected)),
            Slice = slice,
            DeleteDelayNs = delayNs,
        }));

    private static async Task<List<Slice>> Chunk(MetaHarness h, ulong inode, uint chunk = 0) =>
        [.. (await h.Svc.ReadChunkAsync(new ReadChunkRequest { Inode = inode, ChunkIndex = chunk })).Slices];

    [Fact]
    public async Task Pending_deletes_page_in_id_order_and_confirm_is_idempotent()
    {
        using var h = await StartAsync();
        var ids = new List<ulong>();
        for (var i = 0; i < 7; i++)
        {
            var f = (await h.Create(Root, $"f{i}")).Attr.Inode;
            ids.Add((await h.WriteNew(f, 0, 0, 100u + (uint)i)).Id);
            ids.Add((await h.WriteNew(f, 2, 0, 10)).Id);
            await h.Release(f);
        }
        for (var i = 6; i >= 0; i--)
        {
            await h.Unlink(Root, $"f{i}"); // dropped in reverse id order
        }
        var listed = await AllPending(h, page: 3);
        Assert.Equal(ids.Order(), listed.Select(p => p.SliceId));
        Assert.All(listed, p => Assert.True(p.Eligible && p.NotBeforeNs == 0 && p.Index > 0 && p.TimeNs >= StartNs));
        Assert.Equal(100u, listed.Single(p => p.SliceId == ids[0]).Size);

        var first = await h.Svc.ConfirmDeletesAsync(h.Stamp(new ConfirmDeletesRequest { SliceIds = { ids[0], ids[1], 999_999 } }));
        Assert.Equal((0, 2u), (first.Errno, first.Removed));
        var again = await h.Svc.ConfirmDeletesAsync(h.Stamp(new ConfirmDeletesRequest { SliceIds = { ids[0], ids[1] } }));
        Assert.Equal((0, 0u), (again.Errno, again.Removed)); // a second deleter confirming the same slices is fine
        Assert.Equal(ids.Count - 2, (await AllPending(h, page: 1000)).Count);
        var tooMany = new ConfirmDeletesRequest();
        tooMany.SliceIds.AddRange(Enumerable.Range(1, 10_001).Select(i => (ulong)i));
        Assert.Equal(Errno.EINVAL, (await h.Svc.ConfirmDeletesAsync(h.Stamp(tooMany))).Errno);
    }

    [Fact]
    public async Task Slices_list_every_chunk_once_in_key_order_and_filter_by_count()
    {
        using var h = await StartAsync();
        var expected = new List<(ulong, uint, int)>();
        for (var i = 0; i < 5; i++)
        {
            var f = (await h.Create(Root, $"f{i}")).Attr.Inode;
            foreach (var chunk in new uint[] { 3, 0, 1 })
            {
                var n = (int)chunk + i + 1;
                for (var k = 0; k < n; k++)
                {
                    await h.WriteNew(f, chunk, (uint)k * 10, 10);
                }
                expected.Add((f, chunk, n));
            }
        }
        expected.Sort();
        foreach (var page in new uint[] { 1, 2, 7, 1000 })
        {
            var all = await AllChunks(h, page);
            Assert.Equal(expected, all.Select(c => (c.Inode, c.ChunkIndex, c.Slices.Count)));
        }
        var fragmented = await AllChunks(h, 2, minSlices: 6);
        Assert.Equal(expected.Where(e => e.Item3 >= 6), fragmented.Select(c => (c.Inode, c.ChunkIndex, c.Slices.Count)));
    }

    [Fact]
    public async Task CompactChunk_replaces_an_unchanged_list_and_delays_deletion()
    {
        using var h = await StartAsync();
        var f = (await h.Create(Root, "f")).Attr.Inode;
        for (var k = 0; k < 30; k++)
        {
            await h.WriteNew(f, 0, (uint)k * 100, 100);
        }
        await h.Svc.FallocateAsync(h.Stamp(new FallocateRequest { Inode = f, Mode = 3, Offset = 50, Length = 100 }));
        var before = await Chunk(h, f);
        var attr = await h.Attr(f);
        var id = await h.NewSliceIds();
        var slice = new Slice { Id = id, Size = 3000, Length = 3000 };

        var r = await Compact(h, f, 0, before, slice, Hour);
        Assert.Equal((0, true, 31u), (r.Errno, r.Compacted, r.Replaced));
        Assert.Equal(new[] { id }, (await Chunk(h, f)).Select(s => s.Id));
        Assert.Equal(attr, await h.Attr(f)); // same content: size and times stay

        var pending = await AllPending(h, 1000);
        Assert.Equal(before.Where(s => s.Id != 0).Select(s => s.Id).Order(), pending.Select(p => p.SliceId));
        Assert.All(pending, p => Assert.False(p.Eligible));
        Assert.All(pending, p => Assert.True(p.NotBeforeNs > p.TimeNs));
        Assert.Empty(await AllPending(h, 1000, eligibleOnly: true));
        h.Clock.Ns += Hour + 1_000_000_000;
        Assert.Equal(30, (await AllPending(h, 7, eligibleOnly: true)).Count);

        // Replayed from a snapshot, the delay survives.
        using var ms = new MemoryStream();
        h.State.WriteSnapshot(ms);
        using var copy = new MirrorFS.MetaServer.Engine.MetaStateMachine();
        copy.RestoreSnapshot(new MemoryStream(ms.ToArray()));
        Assert.Equal(h.State.PendingDeletes(), copy.PendingDeletes());
    }

    [Fact]
    public async Task CompactChunk_is_a_no_op_when_the_list_changed()
    {
        using var h = await StartAsync();
        var f = (await h.Create(Root, "f")).Attr.Inode;
        await h.WriteNew(f, 0, 0, 100);
        await h.WriteNew(f, 0, 100, 100);
        var before = await Chunk(h, f);
        var id = await h.NewSliceIds();

        await h.WriteNew(f, 0, 50, 10); // a write lands while the compactor reads
        var r = await Compact(h, f, 0, before, new Slice { Id = id, Size = 200, Length = 200 }, 0);
        Assert.Equal((0, false), (r.Errno, r.Compacted));
        Assert.Equal(3, (await Chunk(h, f)).Count);
        Assert.Empty(h.State.PendingDeletes());

        // Same count, different content (a truncate trimmed the last slice) is a change too.
        var now = await Chunk(h, f);
        await h.Truncate(f, 105);
        await h.Truncate(f, 200);
        Assert.Equal(now.Count, (await Chunk(h, f)).Count);
        Assert.False((await Compact(h, f, 0, now, new Slice { Id = id, Size = 200, Length = 200 }, 0)).Compacted);
    }

    [Fact]
    public async Task CompactChunk_checks_its_slice()
    {
        using var h = await StartAsync();
        var f = (await h.Create(Root, "f")).Attr.Inode;
        var (a, _) = await h.WriteNew(f, 0, 100, 100);
        await h.WriteNew(f, 0, 150, 100);
        var list = await Chunk(h, f);
        var id = await h.NewSliceIds();
        Assert.Equal(Errno.EINVAL, (await Compact(h, f, 0, list, new Slice { Id = id, Size = 100, Length = 100, Pos = 100 }, 0)).Errno); // too short
        Assert.Equal(Errno.EINVAL, (await Compact(h, f, 0, list, new Slice { Id = a, Size = 150, Length = 150, Pos = 100 }, 0)).Errno); // not new
        Assert.Equal(Errno.EINVAL, (await Compact(h, f, 0, list, new Slice { Id = id + 100, Size = 150, Length = 150, Pos = 100 }, 0)).Errno); // never allocated
        Assert.Equal(Errno.EINVAL, (await Compact(h, f, 0, list, new Slice { Id = id, Size = 150, Length = 150, Pos = 100 }, -1)).Errno);
        Assert.Equal(Errno.ENOENT, (await Compact(h, 999, 0, list, new Slice { Id = id, Size = 150, Length = 150, Pos = 100 }, 0)).Errno);
        Assert.Equal(Errno.EINVAL, (await Compact(h, f, 0, list, null, 0)).Errno); // data would be lost
        Assert.Equal(2, (await Chunk(h, f)).Count);
        var ok = await Compact(h, f, 0, list, new Slice { Id = id, Size = 150, Length = 150, Pos = 100 }, 0);
        Assert.True(ok.Compacted);
        Assert.Equal((100u, 150u), ((await Chunk(h, f))[0].Pos, (await Chunk(h, f))[0].Length));
    }

    [Fact]
    public async Task CompactChunk_of_holes_only_empties_the_chunk()
    {
        using var h = await StartAsync();
        var f = (await h.Create(Root, "f")).Attr.Inode;
        var (a, _) = await h.WriteNew(f, 0, 0, 100);
        await h.Svc.FallocateAsync(h.Stamp(new FallocateRequest { Inode = f, Mode = 3, Offset = 0, Length = 100 }));
        var list = await Chunk(h, f);
        var r = await Compact(h, f, 0, list, null, 0);
        Assert.True(r.Compacted);
        Assert.Empty(await Chunk(h, f));
        Assert.Equal(100UL, (await h.Attr(f)).Size);
        Assert.Equal(new[] { a }, h.State.PendingDeletes().Select(p => p.Id));
    }

    [Fact]
    public async Task Deleting_a_compacted_file_keeps_the_delay_of_replaced_slices()
    {
        using var h = await StartAsync();
        var f = (await h.Create(Root, "f")).Attr.Inode;
        await h.WriteNew(f, 0, 0, 10);
        await h.WriteNew(f, 0, 10, 10);
        var list = await Chunk(h, f);
        var id = await h.NewSliceIds();
        Assert.True((await Compact(h, f, 0, list, new Slice { Id = id, Size = 20, Length = 20 }, Hour)).Compacted);
        await h.Release(f);
        await h.Unlink(Root, "f");
        var pending = await AllPending(h, 1000);
        Assert.Equal(3, pending.Count);
        Assert.True(pending.Single(p => p.SliceId == id).Eligible);
        Assert.Equal(2, pending.Count(p => !p.Eligible));
    }
}
