using System.Buffers.Binary;
using System.Text;
using MirrorFS.MetaServer.Storage;
using Xunit.Abstractions;

namespace MirrorFS.MetaServer.Tests.Storage;

public class WriteAheadLogTests(ITestOutputHelper output)
{
    private static byte[] PayloadFor(ulong index) =>
        Encoding.UTF8.GetBytes($"entry-{index}-" + new string((char)('a' + (int)(index % 26)), (int)(index % 37)));

    private static WriteAheadLog OpenSmall(string dir, CapturingLogger? log = null, long segmentBytes = 512) =>
        WriteAheadLog.Open(dir, new WalOptions { SegmentBytesMax = segmentBytes }, log);

    private static void AppendRange(WriteAheadLog wal, ulong count, ulong term = 1)
    {
        for (ulong i = 0; i < count; i++)
        {
            var index = wal.LastIndex + 1;
            Assert.Equal(index, wal.Append(term, PayloadFor(index)));
        }
    }

    private static void AssertHolds(WriteAheadLog wal, ulong from, ulong to)
    {
        var entries = wal.ReadAll(from, to).ToList();
        Assert.Equal((int)(to - from + 1), entries.Count);
        foreach (var e in entries)
        {
            Assert.Equal(PayloadFor(e.Index), e.Payload.ToArray());
        }
        Assert.Equal(Enumerable.Range((int)from, (int)(to - from + 1)).Select(i => (ulong)i), entries.Select(e => e.Index));
    }

    private static string[] Segments(string dir) =>
        [.. Directory.GetFiles(dir, "*" + WriteAheadLog.SegmentExtension).Order(StringComparer.Ordinal)];

    private static void CopyDir(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (var f in Directory.GetFiles(from))
        {
            File.Copy(f, Path.Combine(to, Path.GetFileName(f)));
        }
    }

    // Offsets of every record in a closed segment file, by walking the length fields.
    private static List<long> RecordOffsets(string segment)
    {
        var bytes = File.ReadAllBytes(segment);
        var offsets = new List<long>();
        long pos = WalFormat.SegmentHeaderBytes;
        while (pos < bytes.Length)
        {
            offsets.Add(pos);
            pos += WalFormat.RecordHeaderBytes + BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan((int)pos));
        }
        return offsets;
    }

    [Fact]
    public async Task RoundTripAcrossSegmentRollsAndReopen()
    {
        using var tmp = new TempDir();
        using (var wal = OpenSmall(tmp.Path))
        {
            Assert.Equal(1ul, wal.FirstIndex);
            Assert.Equal(0ul, wal.LastIndex);
            AppendRange(wal, 100, term: 3);
            wal.Append([new LogEntry(101, 4, PayloadFor(101)), new LogEntry(102, 4, PayloadFor(102))]);
            await wal.FlushAsync();
            Assert.Equal(102ul, wal.DurableIndex);
            Assert.True(wal.SegmentCount > 5, $"expected several segments, got {wal.SegmentCount}");
            AssertHolds(wal, 1, 102);
        }
        Assert.True(Segments(tmp.Path).Length > 5);
        foreach (var seg in Segments(tmp.Path))
        {
            Assert.True(new FileInfo(seg).Length <= 512 || RecordOffsets(seg).Count == 1, $"{seg} is over the segment limit");
        }
        using (var wal = OpenSmall(tmp.Path))
        {
            Assert.Equal(1ul, wal.FirstIndex);
            Assert.Equal(102ul, wal.LastIndex);
            Assert.Equal(102ul, wal.DurableIndex);
            AssertHolds(wal, 1, 102);
            Assert.Equal(3ul, wal.TermAt(100));
            Assert.Equal(4ul, wal.TermAt(101));
            Assert.Null(wal.TermAt(103));
            Assert.Null(wal.TermAt(0));
            Assert.Equal(103ul, wal.Append(5, PayloadFor(103)));
        }
        using (var wal = OpenSmall(tmp.Path))
        {
            AssertHolds(wal, 1, 103);
        }
    }

    [Fact]
    public void ReadRespectsByteLimitAndRejectsOutOfRange()
    {
        using var tmp = new TempDir();
        using var wal = WriteAheadLog.Open(tmp.Path, new WalOptions { SegmentBytesMax = 4096, ReadBytesMax = 300 });
        AppendRange(wal, 60);
        var batch = wal.Read(1, 60);
        Assert.InRange(batch.Count, 1, 59);
        Assert.True(batch.Sum(e => WalFormat.RecordHeaderBytes + e.Payload.Length) <= 300);
        Assert.Equal(1ul, batch[0].Index);
        Assert.Single(wal.Read(5, 5));
        Assert.Throws<ArgumentOutOfRangeException>(() => wal.Read(0, 3));
        Assert.Throws<ArgumentOutOfRangeException>(() => wal.Read(10, 61));
        Assert.Throws<ArgumentException>(() => wal.Append([new LogEntry(99, 1, new byte[1])]));
        Assert.Equal(60ul, wal.LastIndex);
    }

    [Fact]
    public void TornTailAtEveryByteOffsetKeepsExactlyTheEarlierRecords()
    {
        using var tmp = new TempDir();
        var original = tmp.Sub("orig");
        using (var wal = OpenSmall(original, segmentBytes: 1 << 20))
        {
            AppendRange(wal, 9);
            wal.Append(1, Encoding.UTF8.GetBytes("the last record, which will be torn"));
        }
        var segment = Segments(original).Single();
        var lastStart = RecordOffsets(segment)[^1];
        var fullLength = new FileInfo(segment).Length;
        for (var cut = lastStart; cut < fullLength; cut++)
        {
            var dir = tmp.Sub("cut" + cut);
            CopyDir(original, dir);
            var seg = Path.Combine(dir, Path.GetFileName(segment));
            using (var fs = new FileStream(seg, FileMode.Open))
            {
                fs.SetLength(cut);
            }
            var log = new CapturingLogger();
            using (var wal = OpenSmall(dir, log))
            {
                Assert.Equal(9ul, wal.LastIndex);
                AssertHolds(wal, 1, 9);
            }
            if (cut > lastStart)
            {
                Assert.Contains(log.Warnings, w => w.Contains("cut the log after entry 9", StringComparison.Ordinal) && w.Contains("torn", StringComparison.Ordinal));
            }
            Assert.Equal(lastStart, new FileInfo(seg).Length);
            // Appending after the cut continues the numbering, and a second reopen is clean.
            var log2 = new CapturingLogger();
            using (var wal = OpenSmall(dir, log2))
            {
                Assert.Equal(10ul, wal.Append(2, PayloadFor(10)));
            }
            using (var wal = OpenSmall(dir, log2))
            {
                AssertHolds(wal, 1, 10);
            }
            Assert.Empty(log2.Warnings);
            Directory.Delete(dir, recursive: true);
        }
    }

    [Theory]
    [InlineData(0)]   // length field
    [InlineData(5)]   // checksum field
    [InlineData(9)]   // index
    [InlineData(17)]  // term
    [InlineData(30)]  // payload
    public void FlippedBitInTheLastRecordCutsOnlyThatRecord(int byteInRecord)
    {
        using var tmp = new TempDir();
        using (var wal = OpenSmall(tmp.Path, segmentBytes: 1 << 20))
        {
            AppendRange(wal, 12);
        }
        var segment = Segments(tmp.Path).Single();
        var lastStart = RecordOffsets(segment)[^1];
        FlipBit(segment, lastStart + byteInRecord, bit: 3);
        var log = new CapturingLogger();
        using (var wal = OpenSmall(tmp.Path, log))
        {
            Assert.Equal(11ul, wal.LastIndex);
            AssertHolds(wal, 1, 11);
        }
        Assert.Contains(log.Warnings, w => w.Contains("cut the log after entry 11", StringComparison.Ordinal));
    }

    [Fact]
    public void FlippedBitInAMiddleRecordCutsTheLogThereEvenAcrossSegments()
    {
        using var tmp = new TempDir();
        using (var wal = OpenSmall(tmp.Path))
        {
            AppendRange(wal, 80);
        }
        var segments = Segments(tmp.Path);
        Assert.True(segments.Length >= 4);
        // Damage the second record of the second segment; everything after it (later segments too) must go.
        var victim = segments[1];
        var firstInVictim = ulong.Parse(Path.GetFileNameWithoutExtension(victim), System.Globalization.CultureInfo.InvariantCulture);
        FlipBit(victim, RecordOffsets(victim)[1] + WalFormat.RecordHeaderBytes + 2, bit: 0);
        var log = new CapturingLogger();
        using (var wal = OpenSmall(tmp.Path, log))
        {
            Assert.Equal(firstInVictim, wal.LastIndex);
            AssertHolds(wal, 1, firstInVictim);
            Assert.Equal(2, wal.SegmentCount);
        }
        Assert.Equal(2, Segments(tmp.Path).Length);
        var warning = Assert.Single(log.Warnings);
        Assert.Contains("checksum mismatch", warning, StringComparison.Ordinal);
        Assert.Contains($"{segments.Length - 2} later segment(s)", warning, StringComparison.Ordinal);
    }

    [Fact]
    public void ZeroFilledTailAndDamagedSegmentHeaderAreCut()
    {
        using var tmp = new TempDir();
        using (var wal = OpenSmall(tmp.Path))
        {
            AppendRange(wal, 40);
        }
        var segments = Segments(tmp.Path);
        // A crash can leave zeros where data was not yet written (file size updated, blocks not).
        using (var fs = new FileStream(segments[^1], FileMode.Append))
        {
            fs.Write(new byte[4096]);
        }
        using (var wal = OpenSmall(tmp.Path))
        {
            Assert.Equal(40ul, wal.LastIndex);
        }
        // A segment whose header is damaged is dropped with everything after it.
        var thirdFirst = ulong.Parse(Path.GetFileNameWithoutExtension(segments[2]), System.Globalization.CultureInfo.InvariantCulture);
        FlipBit(segments[2], 9, bit: 1);
        var log = new CapturingLogger();
        using (var wal = OpenSmall(tmp.Path, log))
        {
            Assert.Equal(thirdFirst - 1, wal.LastIndex);
            AssertHolds(wal, 1, thirdFirst - 1);
        }
        Assert.Contains(log.Warnings, w => w.Contains("unusable", StringComparison.Ordinal));
        Assert.Equal(2, Segments(tmp.Path).Length);
    }

    [Fact]
    public void TruncateSuffixRemovesEntriesDurablyAndAppendsContinue()
    {
        using var tmp = new TempDir();
        using (var wal = OpenSmall(tmp.Path))
        {
            AppendRange(wal, 50, term: 1);
            var segmentsBefore = wal.SegmentCount;
            wal.TruncateSuffix(21);
            Assert.Equal(20ul, wal.LastIndex);
            Assert.True(wal.SegmentCount < segmentsBefore);
            Assert.Null(wal.TermAt(21));
            Assert.Throws<ArgumentOutOfRangeException>(() => wal.Read(20, 21));
            wal.TruncateSuffix(100); // beyond the end: nothing to do
            Assert.Equal(20ul, wal.LastIndex);
            // A Raft follower replaces the suffix with entries of a newer term.
            wal.Append([new LogEntry(21, 2, PayloadFor(21)), new LogEntry(22, 2, PayloadFor(22))]);
        }
        using (var wal = OpenSmall(tmp.Path))
        {
            Assert.Equal(22ul, wal.LastIndex);
            AssertHolds(wal, 1, 22);
            Assert.Equal(2ul, wal.TermAt(21));
            Assert.Equal(1ul, wal.TermAt(20));
            wal.TruncateSuffix(1);
            Assert.Equal(0ul, wal.LastIndex);
            Assert.Equal(1ul, wal.FirstIndex);
        }
        using (var wal = OpenSmall(tmp.Path))
        {
            Assert.Equal(0ul, wal.LastIndex);
        }
    }

    [Fact]
    public void CompactPrefixDeletesOnlyWholeSegmentsBelowTheIndex()
    {
        using var tmp = new TempDir();
        using (var wal = OpenSmall(tmp.Path))
        {
            AppendRange(wal, 80);
            var files = Segments(tmp.Path);
            var thirdFirst = ulong.Parse(Path.GetFileNameWithoutExtension(files[2]), System.Globalization.CultureInfo.InvariantCulture);
            // Compacting to an index inside the third segment deletes the first two only.
            Assert.Equal(2, wal.CompactPrefix(thirdFirst + 1));
            Assert.Equal(thirdFirst, wal.FirstIndex);
            Assert.Throws<ArgumentOutOfRangeException>(() => wal.Read(thirdFirst - 1, thirdFirst));
            Assert.Throws<ArgumentOutOfRangeException>(() => wal.TruncateSuffix(thirdFirst - 1));
            AssertHolds(wal, thirdFirst, 80);
            // Compacting past the end keeps the newest segment, so the log's end survives.
            wal.CompactPrefix(1000);
            Assert.Equal(1, wal.SegmentCount);
            Assert.Equal(80ul, wal.LastIndex);
            Assert.Equal(81ul, wal.Append(1, PayloadFor(81)));
        }
        using (var wal = OpenSmall(tmp.Path))
        {
            Assert.Equal(81ul, wal.LastIndex);
            AssertHolds(wal, wal.FirstIndex, 81);
        }
    }

    [Fact]
    public void ResetStartsAnEmptyLogAtTheGivenIndex()
    {
        using var tmp = new TempDir();
        using (var wal = OpenSmall(tmp.Path))
        {
            AppendRange(wal, 30);
            wal.Reset(500);
            Assert.Equal(500ul, wal.FirstIndex);
            Assert.Equal(499ul, wal.LastIndex);
            Assert.Equal(500ul, wal.Append(7, PayloadFor(500)));
        }
        using (var wal = OpenSmall(tmp.Path))
        {
            Assert.Equal(500ul, wal.FirstIndex);
            AssertHolds(wal, 500, 500);
            Assert.Equal(7ul, wal.TermAt(500));
        }
    }

    [Fact]
    public async Task GroupCommitSharesFsyncsAcrossConcurrentAppenders()
    {
        using var tmp = new TempDir();
        const int writers = 32;
        const int perWriter = 40;
        var acknowledged = new System.Collections.Concurrent.ConcurrentBag<(ulong Index, string Text)>();
        long fsyncs;
        using (var wal = WriteAheadLog.Open(tmp.Path))
        {
            await Task.WhenAll(Enumerable.Range(0, writers).Select(w => Task.Run(async () =>
            {
                for (var k = 0; k < perWriter; k++)
                {
                    var text = $"w{w}-{k}";
                    var index = await wal.AppendAsync(1, Encoding.UTF8.GetBytes(text));
                    // Acknowledged means durable: the durable mark must already cover it.
                    Assert.True(wal.DurableIndex >= index);
                    acknowledged.Add((index, text));
                }
            })));
            fsyncs = wal.FsyncCount;
            output.WriteLine($"{writers * perWriter} appends, {fsyncs} fsync rounds, {wal.RecordsSynced / (double)fsyncs:F1} records per round");
            Assert.True(fsyncs * 4 < writers * perWriter, $"{fsyncs} fsyncs for {writers * perWriter} appends: group commit is not batching");
        }
        using (var wal = WriteAheadLog.Open(tmp.Path))
        {
            Assert.Equal((ulong)(writers * perWriter), wal.LastIndex);
            foreach (var (index, text) in acknowledged)
            {
                Assert.Equal(text, Encoding.UTF8.GetString(wal.Read(index, index)[0].Payload.Span));
            }
        }
    }

    [Fact]
    public async Task NoWaiterCompletesBeforeItsFsyncReturns()
    {
        using var tmp = new TempDir();
        using var wal = WriteAheadLog.Open(tmp.Path);
        using var gate = new ManualResetEventSlim(false);
        using var entered = new ManualResetEventSlim(false);
        wal.SyncHookForTests = _ =>
        {
            entered.Set();
            gate.Wait(TimeSpan.FromSeconds(30));
        };
        var first = wal.AppendAsync(1, "a"u8.ToArray());
        Assert.True(entered.Wait(TimeSpan.FromSeconds(10)));
        // Appended while the first fsync is in flight: that fsync does not cover it.
        var second = wal.AppendAsync(1, "b"u8.ToArray());
        await Task.Delay(100);
        Assert.False(first.IsCompleted);
        Assert.False(second.IsCompleted);
        Assert.Equal(0ul, wal.DurableIndex);
        wal.SyncHookForTests = null;
        gate.Set();
        Assert.Equal(1ul, await first);
        Assert.Equal(2ul, await second);
        Assert.Equal(2ul, wal.DurableIndex);
        Assert.True(wal.FsyncCount >= 2);
    }

    [Fact]
    public async Task FailedFsyncFailsWaitersAndTheLog()
    {
        using var tmp = new TempDir();
        using (var wal = WriteAheadLog.Open(tmp.Path))
        {
            await wal.AppendAsync(1, "kept"u8.ToArray());
            wal.SyncHookForTests = _ => throw new IOException("injected EIO");
            var ex = await Assert.ThrowsAsync<IOException>(() => wal.AppendAsync(1, "lost?"u8.ToArray()));
            Assert.Contains("injected EIO", ex.Message, StringComparison.Ordinal);
            Assert.Throws<IOException>(() => wal.Append(1, "refused"u8.ToArray()));
            Assert.Equal(1ul, wal.DurableIndex);
        }
        using (var wal = WriteAheadLog.Open(tmp.Path))
        {
            // The unsynced entry may or may not be there (it reached the page cache); the synced one must be.
            Assert.Equal("kept", Encoding.UTF8.GetString(wal.Read(1, 1)[0].Payload.Span));
        }
    }

    [Fact]
    public void ANewerFormatVersionIsRefusedNotDeleted()
    {
        using var tmp = new TempDir();
        using (var wal = OpenSmall(tmp.Path))
        {
            AppendRange(wal, 3);
        }
        var segment = Segments(tmp.Path).Single();
        var bytes = File.ReadAllBytes(segment);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(8), 2);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(28), Crc32C.Compute(bytes.AsSpan(0, 28)));
        File.WriteAllBytes(segment, bytes);
        var ex = Assert.Throws<NotSupportedException>(() => OpenSmall(tmp.Path));
        Assert.Contains("format version 2", ex.Message, StringComparison.Ordinal);
        Assert.Equal(bytes, File.ReadAllBytes(segment));
    }

    [Fact]
    public void ASecondOpenOfTheSameDirectoryIsRefused()
    {
        using var tmp = new TempDir();
        using var wal = WriteAheadLog.Open(tmp.Path);
        var ex = Assert.Throws<IOException>(() => WriteAheadLog.Open(tmp.Path));
        Assert.Contains("in use", ex.Message, StringComparison.Ordinal);
    }

    private static void FlipBit(string path, long offset, int bit)
    {
        using var fs = new FileStream(path, FileMode.Open, FileAccess.ReadWrite);
        fs.Position = offset;
        var b = fs.ReadByte();
        fs.Position = offset;
        fs.WriteByte((byte)(b ^ (1 << bit)));
    }

    [Fact]
    public async Task SyncOnTheCallersThreadMakesEverythingDurableAndReleasesWaiters()
    {
        using var dir = new TempDir();
        var wal = OpenSmall(dir.Path);
        var synced = new List<string>();
        wal.SyncHookForTests = synced.Add;
        AppendRange(wal, 30); // several segments
        var waiter = wal.WaitDurableAsync(30);
        wal.Sync();
        Assert.Equal(30UL, wal.DurableIndex);
        await waiter.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.NotEmpty(synced);
        var before = synced.Count;
        wal.Sync(); // nothing new: no fsync
        Assert.Equal(before, synced.Count);
        wal.Dispose();
        using var reopened = OpenSmall(dir.Path);
        AssertHolds(reopened, 1, 30);
    }
}
