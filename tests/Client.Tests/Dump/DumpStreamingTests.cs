// Streaming check: a 200k-entry tree is dumped and loaded with bounded growth of the managed heap.
using System.Diagnostics;
using System.Security.Cryptography;
using MirrorFS.Client.Dump;
using MirrorFS.Core.Meta;
using Xunit.Abstractions;

namespace MirrorFS.Client.Tests.Dump;

/// <summary>Heap measurements need the process to themselves.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class HeapMeasureCollection
{
    public const string Name = "heap-measurements";
}

[Collection(HeapMeasureCollection.Name)]
public sealed class DumpStreamingTests(ITestOutputHelper log)
{
    private const int Dirs = 200;
    private const int FilesPerDir = 1000;

    /// <summary>Generous: the walk keeps one page, JSON buffers and a directory stack; the tree itself (hundreds of
    /// MB as JSON, tens of MB as state) would be far above it.</summary>
    private const long GrowthBytesMax = 32L << 20;

    /// <summary>A stream wrapper that samples the live heap (after a full collection) every <see cref="EveryBytes"/>.</summary>
    private sealed class HeapSampler(Stream inner, long baseline) : Stream
    {
        public const long EveryBytes = 4L << 20;
        private long _bytes;
        private long _next = EveryBytes;

        public long PeakGrowth { get; private set; }

        public long Bytes => _bytes;

        private void Count(int n)
        {
            _bytes += n;
            if (_bytes >= _next)
            {
                _next += EveryBytes;
                Sample();
            }
        }

        public void Sample() => PeakGrowth = Math.Max(PeakGrowth, GC.GetTotalMemory(forceFullCollection: true) - baseline);

        public override bool CanRead => inner.CanRead;

        public override bool CanSeek => false;

        public override bool CanWrite => inner.CanWrite;

        public override long Length => throw new NotSupportedException();

        public override long Position
        {
            get => throw new NotSupportedException();
            set => throw new NotSupportedException();
        }

        public override void Flush() => inner.Flush();

        public override int Read(byte[] buffer, int offset, int count)
        {
            var n = inner.Read(buffer, offset, count);
            Count(n);
            return n;
        }

        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            var n = await inner.ReadAsync(buffer, cancellationToken);
            Count(n);
            return n;
        }

        public override void Write(byte[] buffer, int offset, int count)
        {
            inner.Write(buffer, offset, count);
            Count(count);
        }

        public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            await inner.WriteAsync(buffer, cancellationToken);
            Count(buffer.Length);
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();
    }

    /// <summary>Builds the tree fast through LoadEntries: 200 directories of 1000 files, each with two slices and an xattr.</summary>
    private static async Task BuildAsync(Engine e)
    {
        async Task Send(LoadEntriesRequest r)
        {
            var reply = await e.Svc.LoadEntriesAsync(r);
            Assert.True(reply.Errno == 0, $"building the tree failed: errno {reply.Errno} at inode {reply.Inode}");
        }
        await Send(new LoadEntriesRequest { Phase = LoadPhase.Begin, Volume = new Volume { Name = "big", Uuid = "u", Storage = "file:///tmp/x", BlockSize = 1 << 20 } });
        var batch = new LoadEntriesRequest { Phase = LoadPhase.Entries };
        batch.Inodes.Add(new LoadInode { Attr = new Attr { Inode = 1, Mode = PosixMode.Directory | 0x1ED, Nlink = 2 + Dirs, Parent = 1 } });
        ulong ino = 2, slice = 1;
        for (var d = 0; d < Dirs; d++)
        {
            var dir = ino++;
            batch.Inodes.Add(new LoadInode { Attr = new Attr { Inode = dir, Mode = PosixMode.Directory | 0x1ED, Nlink = 2, Parent = 1, MtimeNs = (long)dir } });
            batch.Dentries.Add(new LoadDentry { Parent = 1, Name = Engine.N($"directory-{d:D4}"), Inode = dir });
            for (var f = 0; f < FilesPerDir; f++)
            {
                var file = ino++;
                batch.Inodes.Add(new LoadInode
                {
                    Attr = new Attr { Inode = file, Mode = PosixMode.Regular | 0x1A4, Uid = 1000, Gid = 1000, Nlink = 1, Size = 8192, MtimeNs = (long)file * 1000 },
                    Xattrs = { new DumpXattr { Name = Engine.N("user.tag"), Value = Engine.N("v" + f) } },
                });
                batch.Chunks.Add(new LoadChunk
                {
                    Inode = file,
                    Index = 0,
                    Slices = { new Slice { Id = slice++, Size = 8192, Length = 8192 }, new Slice { Id = slice++, Size = 100, Length = 100, Pos = 50 } },
                });
                batch.Dentries.Add(new LoadDentry { Parent = dir, Name = Engine.N($"file-with-a-longish-name-{f:D6}.dat"), Inode = file });
            }
            await Send(batch);
            batch = new LoadEntriesRequest { Phase = LoadPhase.Entries };
        }
        await Send(new LoadEntriesRequest { Phase = LoadPhase.Finish, NextInode = ino, NextSliceId = slice });
    }

    [Fact]
    public async Task A_200k_entry_tree_dumps_and_loads_with_bounded_memory()
    {
        var dir = Directory.CreateTempSubdirectory("mirrorfs-dumpmem-").FullName;
        try
        {
            var path = Path.Combine(dir, "big.json");
            using var src = new Engine();
            await BuildAsync(src);
            var sw = Stopwatch.StartNew();

            // Dump: the source tree is in the baseline; what the dump adds is measured.
            var baseline = GC.GetTotalMemory(forceFullCollection: true);
            DumpResult dumped;
            long dumpGrowth, dumpBytes;
            await using (var file = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 16, FileOptions.Asynchronous))
            {
                var sampler = new HeapSampler(file, baseline);
                dumped = await MetaDumpWriter.WriteAsync(src.Svc.DumpAsync(new DumpRequest()), sampler, false, DumpJsonTests.FixedNow);
                sampler.Sample();
                dumpGrowth = sampler.PeakGrowth;
                dumpBytes = sampler.Bytes;
            }
            log.WriteLine($"dump: {dumped.Nodes} nodes, {dumpBytes / (1 << 20)} MiB of JSON in {sw.ElapsedMilliseconds} ms; peak heap growth {dumpGrowth / (1 << 20)} MiB");
            Assert.Equal((ulong)(1 + Dirs + (Dirs * FilesPerDir)), dumped.Nodes);
            Assert.True(dumpBytes > 2 * GrowthBytesMax, $"the dump ({dumpBytes} bytes) must be larger than the bound for the test to mean something");
            Assert.True(dumpGrowth < GrowthBytesMax, $"dumping grew the heap by {dumpGrowth} bytes (bound {GrowthBytesMax})");

            // Load into a sink that only counts: the reader's own memory is measured.
            sw.Restart();
            long inodes = 0, dentries = 0, slices = 0, loadGrowth, loadBytes;
            baseline = GC.GetTotalMemory(forceFullCollection: true);
            await using (var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16, FileOptions.Asynchronous))
            {
                var sampler = new HeapSampler(file, baseline);
                var result = await MetaLoader.LoadAsync(sampler, (r, _) =>
                {
                    inodes += r.Inodes.Count;
                    dentries += r.Dentries.Count;
                    slices += r.Chunks.Sum(c => c.Slices.Count);
                    Assert.True(r.CalculateSize() <= MetaLoader.BatchBytesMax + (64 << 10), $"a batch of {r.CalculateSize()} bytes");
                    return Task.FromResult(new LoadEntriesReply { Inodes = (ulong)inodes });
                }, info => info.Volume);
                sampler.Sample();
                loadGrowth = sampler.PeakGrowth;
                loadBytes = sampler.Bytes;
                Assert.Equal(dumped.Inodes, result.Inodes);
            }
            log.WriteLine($"load: {inodes} inodes, {dentries} names, {slices} slices from {loadBytes / (1 << 20)} MiB in {sw.ElapsedMilliseconds} ms; peak heap growth {loadGrowth / (1 << 20)} MiB");
            Assert.Equal(1 + Dirs + (Dirs * FilesPerDir), inodes);
            Assert.Equal(inodes - 1, dentries);
            Assert.Equal(2L * Dirs * FilesPerDir, slices);
            Assert.True(loadGrowth < GrowthBytesMax, $"loading grew the heap by {loadGrowth} bytes (bound {GrowthBytesMax})");

            // And the real thing: load into a second engine, dump it, and get the same bytes (log index aside).
            using var dst = new Engine();
            await using (var file = File.OpenRead(path))
            {
                await dst.LoadAsync(file);
            }
            var again = Path.Combine(dir, "again.json");
            await using (var file = File.Create(again))
            {
                await dst.DumpAsync(file);
            }
            Assert.Equal(HashWithoutIndex(path), HashWithoutIndex(again));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>SHA-256 of the file without its "logIndex" property (it is near the start).</summary>
    private static string HashWithoutIndex(string path)
    {
        var bytes = File.ReadAllBytes(path);
        var head = bytes.AsSpan(0, Math.Min(bytes.Length, 4096));
        var at = head.IndexOf("\"logIndex\":"u8);
        var end = at + head[at..].IndexOf((byte)',') + 1;
        return Convert.ToHexString(SHA256.HashData([.. bytes[..at], .. bytes[end..]]));
    }
}
