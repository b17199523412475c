// Data path of MirrorVfs against a real in-process metaserver and memory/file object stores.
using MirrorFS.Client.Vfs;
using MirrorFS.Core.Layout;
using MirrorFS.Core.Meta;
using MirrorFS.Core.Storage;
using Xunit.Abstractions;
using static MirrorFS.Client.Tests.VfsTests.VfsFixture;

namespace MirrorFS.Client.Tests.VfsTests;

public sealed class VfsDataTests(ITestOutputHelper output)
{
    private const int Bs = VfsFixture.BlockSize;

    public static TheoryData<long, int> Ranges => new()
    {
        { 0, 0 },
        { 0, 1 },
        { 0, Bs - 1 },
        { 0, Bs },
        { 0, Bs + 1 },
        { 1, Bs },
        { Bs - 7, 14 },
        { 3 * Bs + 100, (5 * Bs) + 333 },   // several blocks, partial first and last
        { 100_000, 1 },                      // sparse: a hole before the data
        { BlockLayout.ChunkSize - 1000, 3000 },            // crosses the 64 MiB chunk boundary
        { (2L * BlockLayout.ChunkSize) - Bs, 2 * Bs },     // block-aligned around the second boundary
    };

    [Theory]
    [MemberData(nameof(Ranges))]
    public async Task WriteThenReadGivesTheBytesBackAndZerosInHoles(long offset, int length)
    {
        await using var f = await VfsFixture.StartAsync();
        var vfs = await f.MountAsync();
        var (ino, fh) = await CreateAsync(vfs, "f");
        var data = Pattern(length, (int)offset + length);
        await WriteAsync(vfs, ino, fh, offset, data);
        Assert.Equal(0, await vfs.FlushAsync(Ctx, ino, fh));

        var attr = await vfs.GetAttrAsync(Ctx, ino);
        Assert.Equal((ulong)(length == 0 ? 0 : offset + length), attr.Value!.Attr.Size);
        if (length == 0)
        {
            Assert.Empty(await ReadAsync(vfs, ino, fh, 0, 10));
            return;
        }
        Assert.Equal(data, await ReadAsync(vfs, ino, fh, offset, length));
        // The hole before the data reads as zeros; past the end there is nothing.
        var before = (int)Math.Min(offset, 4096);
        Assert.All(await ReadAsync(vfs, ino, fh, offset - before, before), b => Assert.Equal(0, b));
        Assert.Empty(await ReadAsync(vfs, ino, fh, offset + length, 10));

        // A second mount reads the same bytes from the store (no shared caches).
        var other = await f.MountAsync();
        var fh2 = await OpenAsync(other, ino, OpenFlags.ReadOnly);
        Assert.Equal(data, await ReadAsync(other, ino, fh2, offset, length));
        Assert.Equal(0, await other.ReleaseAsync(Ctx, ino, fh2));
        Assert.Equal(0, await vfs.ReleaseAsync(Ctx, ino, fh));
    }

    [Fact]
    public async Task SlicesAreCutIntoBlocksOfTheVolumeBlockSize()
    {
        var store = new MemoryObjectStore();
        await using var f = await VfsFixture.StartAsync(store);
        var vfs = await f.MountAsync();
        var (ino, fh) = await CreateAsync(vfs, "f");
        // Many small contiguous writes form one slice of 2.5 blocks.
        var data = Pattern((5 * Bs) / 2, 7);
        for (var at = 0; at < data.Length; at += 4096)
        {
            await WriteAsync(vfs, ino, fh, at, data.AsSpan(at, Math.Min(4096, data.Length - at)).ToArray());
        }
        Assert.Equal(0, await vfs.ReleaseAsync(Ctx, ino, fh));
        var chunk = await f.Meta.ReadChunkAsync(new ReadChunkRequest { Inode = ino, ChunkIndex = 0 });
        var slice = Assert.Single(chunk.Slices);
        Assert.Equal((uint)data.Length, slice.Length);
        var keys = (await store.ListAsync(BlockLayout.ChunksPrefix(VolumeName))).Objects.Select(o => o.Key).ToList();
        Assert.Equal(
            new[] { BlockLayout.Key(VolumeName, slice.Id, 0, Bs), BlockLayout.Key(VolumeName, slice.Id, 1, Bs), BlockLayout.Key(VolumeName, slice.Id, 2, Bs / 2) }.Order(),
            keys.Order());
    }

    [Fact]
    public async Task OverwritesAreNewestWinsWhetherBufferedTogetherOrFlushedApart()
    {
        await using var f = await VfsFixture.StartAsync();
        var vfs = await f.MountAsync();
        var (ino, fh) = await CreateAsync(vfs, "f");
        var model = new byte[4 * Bs];
        void Apply(long off, byte[] d) => d.CopyTo(model, off);

        var a = Pattern(4 * Bs, 1);
        await WriteAsync(vfs, ino, fh, 0, a);
        Apply(0, a);
        // Buffered together: a non-contiguous write starts a new slice, committed after the first one.
        var b = Pattern(Bs, 2);
        await WriteAsync(vfs, ino, fh, Bs / 2, b);
        Apply(Bs / 2, b);
        var c = Pattern(100, 3);
        await WriteAsync(vfs, ino, fh, (2 * Bs) + 10, c);
        Apply((2 * Bs) + 10, c);
        Assert.Equal(0, await vfs.FlushAsync(Ctx, ino, fh));
        var d = Pattern(3 * Bs, 4);
        await WriteAsync(vfs, ino, fh, Bs / 3, d);
        Apply(Bs / 3, d);
        Assert.Equal(0, await vfs.ReleaseAsync(Ctx, ino, fh));

        var chunk = await f.Meta.ReadChunkAsync(new ReadChunkRequest { Inode = ino, ChunkIndex = 0 });
        Assert.Equal(4, chunk.Slices.Count);
        var other = await f.MountAsync();
        var fh2 = await OpenAsync(other, ino, OpenFlags.ReadOnly);
        Assert.Equal(model, await ReadAsync(other, ino, fh2, 0, model.Length));
    }

    [Fact]
    public async Task CloseToOpenSecondMountSeesNewDataAfterReopen()
    {
        await using var f = await VfsFixture.StartAsync();
        var a = await f.MountAsync();
        var b = await f.MountAsync();
        var (ino, fhA) = await CreateAsync(a, "shared");
        var v1 = Pattern(Bs + 10, 1);
        await WriteAsync(a, ino, fhA, 0, v1);
        Assert.Equal(0, await a.ReleaseAsync(Ctx, ino, fhA));

        var fhB = await OpenAsync(b, ino, OpenFlags.ReadOnly);
        Assert.Equal(v1, await ReadAsync(b, ino, fhB, 0, v1.Length));
        Assert.Equal(0, await b.ReleaseAsync(Ctx, ino, fhB));

        fhA = await OpenAsync(a, ino);
        var v2 = Pattern(2 * Bs, 2);
        await WriteAsync(a, ino, fhA, 5, v2);
        Assert.Equal(0, await a.ReleaseAsync(Ctx, ino, fhA));

        fhB = await OpenAsync(b, ino, OpenFlags.ReadOnly);
        var expect = new byte[5 + v2.Length];
        v1.CopyTo(expect, 0);
        v2.CopyTo(expect, 5);
        Assert.Equal(expect, await ReadAsync(b, ino, fhB, 0, expect.Length + 100));
        Assert.Equal(0, await b.ReleaseAsync(Ctx, ino, fhB));
    }

    [Fact]
    public async Task AReadInsideOneCachedBlockIsServedInPlace()
    {
        await using var f = await VfsFixture.StartAsync();
        var writer = await f.MountAsync();
        var data = Pattern((2 * Bs) + 500, 9);
        var (ino, wfh) = await CreateAsync(writer, "f");
        await WriteAsync(writer, ino, wfh, 0, data);
        Assert.Equal(0, await writer.ReleaseAsync(Ctx, ino, wfh));

        var reader = await f.MountAsync();
        var fh = await OpenAsync(reader, ino, OpenFlags.ReadOnly);
        Assert.Equal(data[..100], await ReadAsync(reader, ino, fh, 0, 100)); // the normal path caches the first block

        Assert.Equal(data[100..(Bs - 10)], reader.TryReadInMemory(ino, fh, 100, Bs - 110)!.Value.ToArray());
        Assert.Null(reader.TryReadInMemory(ino, fh, Bs - 10, 20)); // crosses a block boundary
        Assert.Null(reader.TryReadInMemory(ino, fh, data.Length, 10)); // at the end of the file
        Assert.Null(reader.TryReadInMemory(ino, fh + 1000, 0, 10)); // not an open handle

        // Buffered writes come first: a dirty file always takes the normal path.
        var rw = await OpenAsync(reader, ino, OpenFlags.ReadWrite);
        await WriteAsync(reader, ino, rw, 5, [1, 2, 3]);
        Assert.Null(reader.TryReadInMemory(ino, rw, 0, 100));
        var expect = data[..100];
        expect[5] = 1;
        expect[6] = 2;
        expect[7] = 3;
        Assert.Equal(expect, await ReadAsync(reader, ino, rw, 0, 100));
        Assert.Equal(0, await reader.ReleaseAsync(Ctx, ino, rw));
        Assert.Equal(0, await reader.ReleaseAsync(Ctx, ino, fh));
    }

    [Fact]
    public async Task ADirectorysGetattrAfterOwnCreateIsAnsweredFromTheCreateReply()
    {
        await using var f = await VfsFixture.StartAsync();
        var vfs = await f.MountAsync();
        var dir = await vfs.MkdirAsync(Ctx, 1, Name("d"), 0x41ED, 0x12);
        Assert.Equal(0, dir.Errno);
        var d = dir.Value!.Inode;

        var (ino, fh) = await CreateAsync(vfs, "f", d);
        Assert.Equal(0, await vfs.ReleaseAsync(Ctx, ino, fh));
        var mine = await vfs.GetAttrAsync(Ctx, d);

        // What the kernel gets is the server's view of the directory after the create, without asking again.
        Assert.Equal(1, vfs.OwnDirAttrHits);
        var server = (await f.Meta.GetAttrAsync(new GetAttrRequest { Cred = new Credentials(), Inode = d })).Attr;
        Assert.Equal(server.MtimeNs, mine.Value!.Attr.MtimeNs);
        Assert.Equal(server.CtimeNs, mine.Value.Attr.CtimeNs);
        Assert.Equal(server.Nlink, mine.Value.Attr.Nlink);

        // Any other change there by this client sends the next getattr to the server.
        Assert.Equal(0, await vfs.UnlinkAsync(Ctx, d, Name("f")));
        var after = await vfs.GetAttrAsync(Ctx, d);
        Assert.Equal(1, vfs.OwnDirAttrHits);
        Assert.True(after.Value!.Attr.MtimeNs >= server.MtimeNs);
    }

    [Fact]
    public async Task OpeningASmallFileForReadingStartsItsBlockDownloadAndTheReadUsesIt()
    {
        var store = new FlakyStore(new MemoryObjectStore());
        await using var f = await VfsFixture.StartAsync(store);
        var writer = await f.MountAsync();
        var small = Pattern(4096, 3);
        var (ino, fh) = await CreateAsync(writer, "small");
        await WriteAsync(writer, ino, fh, 0, small);
        Assert.Equal(0, await writer.ReleaseAsync(Ctx, ino, fh));
        // Bigger than the warm-up limit, in one slice: its open starts nothing.
        var big = Pattern(MirrorVfs.WarmSliceBytesMax + Bs, 4);
        var (bigIno, bigFh) = await CreateAsync(writer, "big");
        await WriteAsync(writer, bigIno, bigFh, 0, big);
        Assert.Equal(0, await writer.ReleaseAsync(Ctx, bigIno, bigFh));

        var reader = await f.MountAsync();
        var gets = store.Gets;
        var wfh = await OpenAsync(reader, ino, OpenFlags.WriteOnly); // a write-only open reads nothing
        Assert.Equal(0, await reader.ReleaseAsync(Ctx, ino, wfh));
        var rfh = await OpenAsync(reader, ino, OpenFlags.ReadOnly);
        for (var i = 0; i < 1000 && store.Gets == gets; i++)
        {
            await Task.Delay(10); // the slice list and the download come in the background
        }
        Assert.Equal(1, reader.WarmedBlocks);
        Assert.Equal(1, reader.WarmChunksKept); // the early slice list matched the open's attributes, so the read reuses it
        Assert.Equal(gets + 1, store.Gets);
        Assert.Equal(small, await ReadAsync(reader, ino, rfh, 0, 8192));
        Assert.Equal(gets + 1, store.Gets); // the read found the block instead of fetching it again
        Assert.Equal(0, await reader.ReleaseAsync(Ctx, ino, rfh));

        var bfh = await OpenAsync(reader, bigIno, OpenFlags.ReadOnly);
        Assert.Equal(big, await ReadAsync(reader, bigIno, bfh, 0, big.Length));
        Assert.Equal(1, reader.WarmedBlocks); // the big file's open warmed nothing (its slice list came long before this)
        Assert.Equal(2, reader.WarmChunksKept);
        Assert.Equal(0, await reader.ReleaseAsync(Ctx, bigIno, bfh));
    }

    [Fact]
    public async Task FailingStoreNeverCommitsASliceAndReportsEio()
    {
        var store = new FlakyStore(new MemoryObjectStore());
        await using var f = await VfsFixture.StartAsync(store);
        var vfs = await f.MountAsync();
        var (ino, fh) = await CreateAsync(vfs, "f");
        // Only the second block of the slice fails: the first is stored, but the slice must still not commit.
        store.FailPut = key => key.Contains("_1_", StringComparison.Ordinal);
        await vfs.WriteAsync(Ctx, ino, fh, 0, Pattern(3 * Bs, 1)); // may or may not see the error yet
        Assert.Equal(Errno.EIO, await vfs.FlushAsync(Ctx, ino, fh));

        var chunk = await f.Meta.ReadChunkAsync(new ReadChunkRequest { Inode = ino, ChunkIndex = 0 });
        Assert.Empty(chunk.Slices);
        var attr = await f.Meta.GetAttrAsync(new GetAttrRequest { Inode = ino });
        Assert.Equal(0ul, attr.Attr.Size);
        Assert.True(store.Puts >= 2); // block 0 was stored, block 1 failed

        // A reader elsewhere sees an empty file, never garbage.
        var other = await f.MountAsync();
        var fh2 = await OpenAsync(other, ino, OpenFlags.ReadOnly);
        Assert.Empty(await ReadAsync(other, ino, fh2, 0, 3 * Bs));

        // The error was reported once; once the store heals, new writes commit.
        store.FailPut = _ => false;
        var good = Pattern(Bs + 1, 2);
        await WriteAsync(vfs, ino, fh, 0, good);
        Assert.Equal(0, await vfs.ReleaseAsync(Ctx, ino, fh));
        Assert.Equal(0, await other.ReleaseAsync(Ctx, ino, fh2));
        fh2 = await OpenAsync(other, ino, OpenFlags.ReadOnly);
        Assert.Equal(good, await ReadAsync(other, ino, fh2, 0, 3 * Bs));
    }

    [Fact]
    public async Task WriteAfterAFailedUploadReturnsEioAndCloseReportsIt()
    {
        var store = new FlakyStore(new MemoryObjectStore()) { FailPut = _ => true };
        await using var f = await VfsFixture.StartAsync(store);
        var vfs = await f.MountAsync();
        var (ino, fh) = await CreateAsync(vfs, "f");
        await vfs.WriteAsync(Ctx, ino, fh, 0, Pattern(Bs, 1));
        // Wait until the failed upload has been noticed, then the next write must fail.
        var sawEio = false;
        for (var i = 0; i < 200 && !sawEio; i++)
        {
            var r = await vfs.WriteAsync(Ctx, ino, fh, Bs * (i + 1), Pattern(Bs, i));
            sawEio = r.Errno == Errno.EIO;
            await Task.Delay(5);
        }
        Assert.True(sawEio);
        Assert.Equal(Errno.EIO, await vfs.ReleaseAsync(Ctx, ino, fh));
        Assert.Empty((await f.Meta.ReadChunkAsync(new ReadChunkRequest { Inode = ino, ChunkIndex = 0 })).Slices);
    }

    [Fact]
    public async Task ConcurrentWritersOnDifferentFilesKeepTheirOwnBytes()
    {
        var store = new FlakyStore(new MemoryObjectStore()) { PutDelayMs = 2 };
        await using var f = await VfsFixture.StartAsync(store);
        // A small buffer forces backpressure and freezing of other writers' slices.
        var vfs = await f.MountAsync(new VfsOptions { BufferBytesMax = 4 * Bs, UploadConcurrencyMax = 4, MemoryCacheBytesMax = 1 << 20 });
        var files = new (ulong Ino, ulong Fh, byte[] Data)[6];
        for (var i = 0; i < files.Length; i++)
        {
            var (ino, fh) = await CreateAsync(vfs, "w" + i);
            files[i] = (ino, fh, Pattern((3 * Bs) + (i * 1000), 100 + i));
        }
        var peak = 0L;
        await Task.WhenAll(files.Select(w => Task.Run(async () =>
        {
            for (var at = 0; at < w.Data.Length; at += 16 << 10)
            {
                var n = Math.Min(16 << 10, w.Data.Length - at);
                var r = await vfs.WriteAsync(Ctx, w.Ino, w.Fh, at, w.Data.AsMemory(at, n));
                Assert.Equal(0, r.Errno);
                var used = vfs.BufferedBytes;
                long seen;
                while ((seen = Interlocked.Read(ref peak)) < used && Interlocked.CompareExchange(ref peak, used, seen) != seen)
                {
                }
            }
            Assert.Equal(0, await vfs.ReleaseAsync(Ctx, w.Ino, w.Fh));
        })));
        Assert.True(peak <= 4 * Bs, $"buffered {peak} bytes, limit {4 * Bs}");
        Assert.Equal(0, vfs.BufferedBytes);
        var reader = await f.MountAsync();
        foreach (var w in files)
        {
            var fh = await OpenAsync(reader, w.Ino, OpenFlags.ReadOnly);
            Assert.Equal(w.Data, await ReadAsync(reader, w.Ino, fh, 0, w.Data.Length + 1));
        }
    }

    [Fact]
    public async Task TruncateCommitsBufferedWritesFirstAndHidesBytesBeyondTheNewSize()
    {
        await using var f = await VfsFixture.StartAsync();
        var vfs = await f.MountAsync();
        var (ino, fh) = await CreateAsync(vfs, "f");
        var data = Pattern(3 * Bs, 9);
        await WriteAsync(vfs, ino, fh, 0, data);
        var t = await vfs.SetAttrAsync(Ctx, ino, new VfsSetAttr { Valid = (uint)SetAttrValid.Size, Size = Bs + 5 });
        Assert.Equal(0, t.Errno);
        Assert.Equal((ulong)(Bs + 5), t.Value!.Attr.Size);
        var grow = await vfs.SetAttrAsync(Ctx, ino, new VfsSetAttr { Valid = (uint)SetAttrValid.Size, Size = 2 * Bs });
        Assert.Equal(0, grow.Errno);
        var expect = new byte[2 * Bs];
        data.AsSpan(0, Bs + 5).CopyTo(expect);
        Assert.Equal(expect, await ReadAsync(vfs, ino, fh, 0, 3 * Bs));
    }

    [Fact]
    public async Task GetAttrCountsBufferedBytesInTheSize()
    {
        var store = new FlakyStore(new MemoryObjectStore()) { PutDelayMs = 50 };
        await using var f = await VfsFixture.StartAsync(store);
        var vfs = await f.MountAsync();
        var (ino, fh) = await CreateAsync(vfs, "f");
        await WriteAsync(vfs, ino, fh, 1000, Pattern(10, 1));
        Assert.Equal(1010ul, (await vfs.GetAttrAsync(Ctx, ino)).Value!.Attr.Size);
        Assert.Equal(0, await vfs.FsyncAsync(Ctx, ino, fh, dataOnly: false));
        Assert.Equal(1010ul, (await f.Meta.GetAttrAsync(new GetAttrRequest { Inode = ino })).Attr.Size);
    }

    [Fact]
    public async Task SequentialReadsPrefetchAndCacheBlocks()
    {
        var store = new FlakyStore(new MemoryObjectStore());
        await using var f = await VfsFixture.StartAsync(store);
        var writer = await f.MountAsync();
        var (ino, fh) = await CreateAsync(writer, "f");
        var data = Pattern(8 * Bs, 5);
        await WriteAsync(writer, ino, fh, 0, data);
        Assert.Equal(0, await writer.ReleaseAsync(Ctx, ino, fh));

        var reader = await f.MountAsync(new VfsOptions { PrefetchBlocks = 2, MemoryCacheBytesMax = 64 * Bs });
        var rfh = await OpenAsync(reader, ino, OpenFlags.ReadOnly);
        var got = new byte[data.Length];
        for (var at = 0; at < data.Length; at += 16 << 10)
        {
            var r = await reader.ReadAsync(Ctx, ino, rfh, at, got.AsMemory(at, 16 << 10));
            Assert.Equal(16 << 10, r.Value);
        }
        Assert.Equal(data, got);
        // Whole blocks are cached: 8 blocks, each fetched once (read-ahead and reads share downloads).
        Assert.True(store.Gets <= 8, $"{store.Gets} gets for 8 blocks");
        var before = store.Gets;
        Assert.Equal(data, await ReadAsync(reader, ino, rfh, 0, data.Length));
        Assert.Equal(before, store.Gets);
    }

    [Fact]
    public async Task DiskCacheKeepsUploadedBlocksWithinItsBound()
    {
        var dir = Path.Combine(Path.GetTempPath(), "mirrorfs-vfs-" + Guid.NewGuid().ToString("N")[..12]);
        try
        {
            var store = new MemoryObjectStore();
            await using var f = await VfsFixture.StartAsync(store);
            var options = new VfsOptions { DiskCacheDirectory = dir, DiskCacheBytesMax = 6 * Bs, MemoryCacheBytesMax = Bs };
            var vfs = await f.MountAsync(options);
            var (ino, fh) = await CreateAsync(vfs, "f");
            var data = Pattern(10 * Bs, 3);
            await WriteAsync(vfs, ino, fh, 0, data);
            Assert.Equal(0, await vfs.ReleaseAsync(Ctx, ino, fh));
            var files = Directory.GetFiles(dir, "*", SearchOption.AllDirectories);
            Assert.Equal(6, files.Length);
            Assert.True(vfs.DiskCache!.Bytes <= 6 * Bs);

            // With the store emptied, exactly the cached blocks still read (from disk); the others are I/O errors,
            // never zeros.
            foreach (var o in (await store.ListAsync("")).Objects)
            {
                await store.DeleteAsync(o.Key);
            }
            var again = await f.MountAsync(options with { PrefetchBlocks = 0 });
            var rfh = await OpenAsync(again, ino, OpenFlags.ReadOnly);
            var served = 0;
            for (var k = 0; k < 10; k++)
            {
                var buf = new byte[Bs];
                var r = await again.ReadAsync(Ctx, ino, rfh, (long)k * Bs, buf);
                if (r.Errno == 0)
                {
                    served++;
                    Assert.Equal(data.AsSpan(k * Bs, Bs).ToArray(), buf);
                }
                else
                {
                    Assert.Equal(Errno.EIO, r.Errno);
                }
            }
            Assert.Equal(6, served);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public async Task FileObjectStoreRoundTrip()
    {
        var dir = Path.Combine(Path.GetTempPath(), "mirrorfs-vfs-" + Guid.NewGuid().ToString("N")[..12]);
        try
        {
            await using var f = await VfsFixture.StartAsync(new FileObjectStore(dir));
            var vfs = await f.MountAsync();
            var (ino, fh) = await CreateAsync(vfs, "f");
            var data = Pattern((2 * Bs) + 17, 11);
            await WriteAsync(vfs, ino, fh, Bs - 3, data);
            Assert.Equal(0, await vfs.ReleaseAsync(Ctx, ino, fh));
            var other = await f.MountAsync();
            var rfh = await OpenAsync(other, ino, OpenFlags.ReadOnly);
            Assert.Equal(data, await ReadAsync(other, ino, rfh, Bs - 3, data.Length));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public async Task RandomOperationsMatchAByteArrayModel()
    {
        var seed = Environment.GetEnvironmentVariable("VFS_SEED") is { } s ? int.Parse(s, System.Globalization.CultureInfo.InvariantCulture) : Random.Shared.Next();
        output.WriteLine($"seed {seed} (rerun with VFS_SEED={seed})");
        var rng = new Random(seed);
        await using var f = await VfsFixture.StartAsync();
        var vfs = await f.MountAsync(new VfsOptions { BufferBytesMax = 8 * Bs, MemoryCacheBytesMax = 16 * Bs, PrefetchBlocks = 1 });
        const int files = 3;
        const int maxSize = 12 * Bs;
        var models = new List<byte>[files];
        var handles = new (ulong Ino, ulong Fh)[files];
        for (var i = 0; i < files; i++)
        {
            handles[i] = await CreateAsync(vfs, "r" + i);
            models[i] = [];
        }
        for (var step = 0; step < 250; step++)
        {
            var i = rng.Next(files);
            var (ino, fh) = handles[i];
            var m = models[i];
            var op = rng.Next(100);
            var what = "";
            if (op < 50)
            {
                var off = rng.Next(maxSize);
                var len = rng.Next(4) == 0 ? rng.Next(8) : rng.Next(3 * Bs);
                var data = Pattern(len, rng.Next());
                what = $"write {off} {len}";
                await WriteAsync(vfs, ino, fh, off, data);
                if (len > 0)
                {
                    while (m.Count < off + len)
                    {
                        m.Add(0);
                    }
                    for (var k = 0; k < len; k++)
                    {
                        m[off + k] = data[k];
                    }
                }
            }
            else if (op < 60)
            {
                var size = rng.Next(maxSize);
                what = $"truncate {size}";
                var r = await vfs.SetAttrAsync(Ctx, ino, new VfsSetAttr { Valid = (uint)SetAttrValid.Size, Size = (ulong)size });
                Assert.Equal(0, r.Errno);
                if (size < m.Count)
                {
                    m.RemoveRange(size, m.Count - size);
                }
                while (m.Count < size)
                {
                    m.Add(0);
                }
            }
            else if (op < 65)
            {
                what = "reopen";
                Assert.Equal(0, await vfs.ReleaseAsync(Ctx, ino, fh));
                handles[i] = (ino, await OpenAsync(vfs, ino));
            }
            else
            {
                var off = rng.Next(maxSize);
                var len = rng.Next(2 * Bs);
                what = $"read {off} {len}";
                var got = await ReadAsync(vfs, ino, fh, off, len);
                var expect = off >= m.Count ? [] : m.GetRange(off, Math.Min(len, m.Count - off)).ToArray();
                Assert.True(expect.AsSpan().SequenceEqual(got), $"seed {seed} step {step} file {i}: {what} differs from the model");
            }
            var size2 = (await vfs.GetAttrAsync(Ctx, ino)).Value!.Attr.Size;
            Assert.True((ulong)m.Count == size2, $"seed {seed} step {step} file {i} after {what}: size {size2}, model {m.Count}");
        }
        // Finally a second mount sees every file whole.
        for (var i = 0; i < files; i++)
        {
            Assert.Equal(0, await vfs.ReleaseAsync(Ctx, handles[i].Ino, handles[i].Fh));
        }
        var other = await f.MountAsync();
        for (var i = 0; i < files; i++)
        {
            var fh = await OpenAsync(other, handles[i].Ino, OpenFlags.ReadOnly);
            var whole = await ReadAsync(other, handles[i].Ino, fh, 0, maxSize + (3 * Bs));
            Assert.True(models[i].ToArray().AsSpan().SequenceEqual(whole), $"seed {seed}: file {i} differs on a second mount");
        }
    }
}
