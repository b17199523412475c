// The client's background jobs without FUSE: block deletion (also with several deleters at once) and compaction.
using MirrorFS.Client.Vfs;
using MirrorFS.Core.Layout;
using MirrorFS.Core.Meta;
using MirrorFS.Core.Storage;
using static MirrorFS.Client.Tests.VfsTests.VfsFixture;

namespace MirrorFS.Client.Tests.VfsTests;

public sealed class GcJobTests
{
    private const int Bs = BlockSize;

    /// <summary>No background jobs: each test drives them by hand.</summary>
    private static readonly VfsOptions Manual = new() { MemoryCacheBytesMax = 8 << 20, DeleteIntervalMs = 0, CompactSlicesMax = 0 };

    private static async Task<HashSet<ulong>> StoredSliceIds(IObjectStore store)
    {
        var ids = new HashSet<ulong>();
        await foreach (var o in store.ListAllAsync(BlockLayout.ChunksPrefix(VolumeName)))
        {
            Assert.True(BlockLayout.TryParseKey(VolumeName, o.Key, out var b), o.Key);
            ids.Add(b.SliceId);
        }
        return ids;
    }

    private static async Task<List<Slice>> Chunk(VfsFixture f, ulong ino) =>
        [.. (await f.Meta.ReadChunkAsync(new ReadChunkRequest { Inode = ino, ChunkIndex = 0 })).Slices];

    private static async Task<byte[]> ReadAllAsync(MirrorVfs vfs, ulong ino, int length)
    {
        var fh = await OpenAsync(vfs, ino, OpenFlags.ReadOnly);
        var data = await ReadAsync(vfs, ino, fh, 0, length + 1);
        Assert.Equal(0, await vfs.ReleaseAsync(Ctx, ino, fh));
        return data;
    }

    [Fact]
    public async Task Two_deleters_at_once_delete_every_block_of_removed_files_and_nothing_else()
    {
        var store = new MemoryObjectStore();
        await using var f = await StartAsync(store);
        var vfs = await f.MountAsync(Manual);
        var keep = Pattern((5 * Bs) / 2, 1);
        var (kino, kfh) = await CreateAsync(vfs, "keep");
        await WriteAsync(vfs, kino, kfh, 0, keep);
        Assert.Equal(0, await vfs.ReleaseAsync(Ctx, kino, kfh));
        var keepIds = (await Chunk(f, kino)).Select(s => s.Id).ToHashSet();
        for (var i = 0; i < 40; i++)
        {
            var (ino, fh) = await CreateAsync(vfs, $"gone{i}");
            await WriteAsync(vfs, ino, fh, 0, Pattern(Bs + (i * 100), 10 + i));
            Assert.Equal(0, await vfs.ReleaseAsync(Ctx, ino, fh));
            Assert.Equal(0, await vfs.UnlinkAsync(Ctx, 1, Name($"gone{i}")));
        }
        Assert.Equal(40, (await f.Meta.ListPendingDeletesAsync(new ListPendingDeletesRequest())).Entries.Count);
        Assert.Equal(41, (await StoredSliceIds(store)).Count);

        // Small batches, two deleters racing over the same pending list (as two mounts would).
        var a = new BlockDeleter(vfs.Session, store, VolumeName, Bs, Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance, batchSlices: 3);
        var b = new BlockDeleter(vfs.Session, store, VolumeName, Bs, Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance, batchSlices: 3);
        var rounds = await Task.WhenAll(a.RunOnceAsync(), b.RunOnceAsync());
        await a.DisposeAsync();
        await b.DisposeAsync();

        Assert.True(rounds.Sum(r => r.Slices) >= 40, $"deleters handled {rounds.Sum(r => r.Slices)} slices");
        Assert.Empty((await f.Meta.ListPendingDeletesAsync(new ListPendingDeletesRequest())).Entries);
        Assert.Equal(keepIds, await StoredSliceIds(store));
        Assert.Equal(keep, await ReadAllAsync(vfs, kino, keep.Length));
    }

    [Fact]
    public async Task The_background_deleter_of_a_mount_removes_blocks_of_an_unlinked_file()
    {
        var store = new MemoryObjectStore();
        await using var f = await StartAsync(store);
        var vfs = await f.MountAsync(Manual with { DeleteIntervalMs = 50 });
        var (ino, fh) = await CreateAsync(vfs, "f");
        await WriteAsync(vfs, ino, fh, 0, Pattern(3 * Bs, 3));
        Assert.Equal(0, await vfs.ReleaseAsync(Ctx, ino, fh));
        Assert.Single(await StoredSliceIds(store));
        Assert.Equal(0, await vfs.UnlinkAsync(Ctx, 1, Name("f")));
        var deadline = Environment.TickCount64 + 60_000;
        // Blocks go first, the confirmation after them: wait for both.
        while (((await StoredSliceIds(store)).Count > 0
                || (await f.Meta.ListPendingDeletesAsync(new ListPendingDeletesRequest())).Entries.Count > 0)
               && Environment.TickCount64 < deadline)
        {
            await Task.Delay(50);
        }
        Assert.Empty(await StoredSliceIds(store));
        Assert.Empty((await f.Meta.ListPendingDeletesAsync(new ListPendingDeletesRequest())).Entries);
    }

    [Fact]
    public async Task Compaction_rewrites_many_slices_as_one_with_the_same_content()
    {
        var store = new MemoryObjectStore();
        await using var f = await StartAsync(store);
        var vfs = await f.MountAsync(Manual);
        var (ino, fh) = await CreateAsync(vfs, "f");
        var model = new byte[3 * Bs];
        var rnd = new Random(5);
        var end = 0;
        for (var i = 0; i < 30; i++)
        {
            // Appends and overwrites, each flushed: one slice apiece, overlapping.
            var off = i % 3 == 0 && end > 100 ? rnd.Next(end - 100) : end;
            var d = Pattern(rnd.Next(1, Bs / 2), 100 + i);
            if (off + d.Length > model.Length)
            {
                continue;
            }
            await WriteAsync(vfs, ino, fh, off, d);
            d.CopyTo(model, off);
            end = Math.Max(end, off + d.Length);
            Assert.Equal(0, await vfs.FlushAsync(Ctx, ino, fh));
        }
        Assert.Equal(0, await vfs.FallocateAsync(Ctx, ino, fh, 3, 10, 1000)); // a hole in the middle
        Array.Clear(model, 10, 1000);
        Assert.Equal(0, await vfs.ReleaseAsync(Ctx, ino, fh));
        var before = await Chunk(f, ino);
        Assert.True(before.Count > 20);

        await using var compactor = new ChunkCompactor(vfs.Session, store, VolumeName, Bs, TimeSpan.FromHours(1),
            Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance);
        Assert.Equal(CompactOutcome.NotNeeded, (await compactor.CompactAsync(ino, 0, before.Count + 1)).Outcome);
        var r = await compactor.CompactAsync(ino, 0, 2);
        Assert.Equal((CompactOutcome.Compacted, before.Count), (r.Outcome, r.Replaced));
        var after = Assert.Single(await Chunk(f, ino));
        Assert.Equal((uint)end, after.Length);

        var fresh = await f.MountAsync(Manual);
        Assert.Equal(model.AsSpan(0, end).ToArray(), await ReadAllAsync(fresh, ino, end));
        // Old blocks stay until their delay passes.
        var stored = await StoredSliceIds(store);
        Assert.All(before.Where(s => s.Id != 0), s => Assert.Contains(s.Id, stored));
        var pending = (await f.Meta.ListPendingDeletesAsync(new ListPendingDeletesRequest())).Entries;
        Assert.Equal(before.Count(s => s.Id != 0), pending.Count);
        Assert.All(pending, p => Assert.False(p.Eligible));
    }

    [Fact]
    public async Task Compaction_of_a_chunk_written_meanwhile_changes_nothing_and_drops_its_new_blocks()
    {
        var inner = new MemoryObjectStore();
        await using var f = await StartAsync(inner);
        var vfs = await f.MountAsync(Manual);
        var (ino, fh) = await CreateAsync(vfs, "f");
        for (var i = 0; i < 5; i++)
        {
            await WriteAsync(vfs, ino, fh, i * 1000, Pattern(1000, i));
            Assert.Equal(0, await vfs.FlushAsync(Ctx, ino, fh));
        }
        var before = await Chunk(f, ino);
        var hooked = new PutHookStore(inner);
        hooked.BeforePut = async () =>
        {
            // Another writer commits to the same chunk while the compactor uploads.
            await WriteAsync(vfs, ino, fh, 500, Pattern(10, 99));
            Assert.Equal(0, await vfs.FlushAsync(Ctx, ino, fh));
        };
        await using var compactor = new ChunkCompactor(vfs.Session, hooked, VolumeName, Bs, TimeSpan.Zero,
            Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance);
        var r = await compactor.CompactAsync(ino, 0, 2);
        Assert.Equal(CompactOutcome.Changed, r.Outcome);
        var now = await Chunk(f, ino);
        Assert.Equal(before.Count + 1, now.Count);
        Assert.Equal(now.Select(s => s.Id).ToHashSet(), await StoredSliceIds(inner)); // the unused new slice is gone
        Assert.Empty((await f.Meta.ListPendingDeletesAsync(new ListPendingDeletesRequest())).Entries);
        Assert.Equal(0, await vfs.ReleaseAsync(Ctx, ino, fh));
    }

    [Fact]
    public async Task A_reader_holding_a_slice_list_from_before_compaction_reads_on_after_the_old_blocks_are_gone()
    {
        var store = new MemoryObjectStore();
        await using var f = await StartAsync(store);
        var writer = await f.MountAsync(Manual);
        var (ino, fh) = await CreateAsync(writer, "f");
        var model = new byte[8 * 1000];
        for (var i = 0; i < 8; i++)
        {
            var d = Pattern(1000, i);
            await WriteAsync(writer, ino, fh, i * 1000, d);
            d.CopyTo(model, i * 1000);
            Assert.Equal(0, await writer.FlushAsync(Ctx, ino, fh));
        }
        Assert.Equal(0, await writer.ReleaseAsync(Ctx, ino, fh));

        // A second client reads once (caching the 8-slice list) with a tiny memory cache, then keeps the file open.
        var reader = await f.MountAsync(Manual with { MemoryCacheBytesMax = 1 });
        var rfh = await OpenAsync(reader, ino, OpenFlags.ReadOnly);
        Assert.Equal(model, await ReadAsync(reader, ino, rfh, 0, model.Length));

        await using (var compactor = new ChunkCompactor(writer.Session, store, VolumeName, Bs, TimeSpan.Zero,
                         Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance))
        {
            Assert.Equal(CompactOutcome.Compacted, (await compactor.CompactAsync(ino, 0, 2)).Outcome);
        }
        await using (var deleter = new BlockDeleter(writer.Session, store, VolumeName, Bs, Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance))
        {
            Assert.Equal(8, (await deleter.RunOnceAsync()).Slices);
        }
        Assert.Single(await StoredSliceIds(store));

        // The cached list names deleted blocks: the read fetches the list again instead of failing.
        Assert.Equal(model, await ReadAsync(reader, ino, rfh, 0, model.Length));
        Assert.Equal(0, await reader.ReleaseAsync(Ctx, ino, rfh));
    }

    /// <summary>Runs a hook once, before the first put.</summary>
    private sealed class PutHookStore(IObjectStore inner) : IObjectStore
    {
        private int _fired;

        public Func<Task>? BeforePut { get; set; }

        public string Description => inner.Description;

        public async Task PutAsync(string key, ReadOnlyMemory<byte> data, CancellationToken ct = default)
        {
            if (BeforePut is not null && Interlocked.Exchange(ref _fired, 1) == 0)
            {
                await BeforePut();
            }
            await inner.PutAsync(key, data, ct);
        }

        public Task<byte[]?> GetAsync(string key, ByteRange? range = null, CancellationToken ct = default) => inner.GetAsync(key, range, ct);

        public Task<ObjectInfo?> HeadAsync(string key, CancellationToken ct = default) => inner.HeadAsync(key, ct);

        public Task DeleteAsync(string key, CancellationToken ct = default) => inner.DeleteAsync(key, ct);

        public Task<ObjectPage> ListAsync(string prefix, string? startAfter = null, int limit = 1000, CancellationToken ct = default) =>
            inner.ListAsync(prefix, startAfter, limit, ct);

        public Task DeleteManyAsync(IReadOnlyCollection<string> keys, CancellationToken ct = default) => inner.DeleteManyAsync(keys, ct);

        public ValueTask DisposeAsync() => inner.DisposeAsync();
    }
}
