// Freezes the WAL record, segment header, snapshot header and hard-state encodings. Goldens may only grow: never
// edit a .hex file; a new format version gets new files.
using System.Globalization;
using System.Text;
using MirrorFS.MetaServer.Storage;

namespace MirrorFS.MetaServer.Tests.Storage;

public class WalGoldenTests
{
    private static readonly (ulong Index, ulong Term, byte[] Payload)[] Records =
    [
        (1, 1, Encoding.ASCII.GetBytes("hello")),
        (2, 1, []),
        (3, 7, [0x00, 0x01, 0x02, 0xFF]),
    ];

    private static readonly byte[] SnapshotBody = Encoding.ASCII.GetBytes("snap!");

    private static byte[] EncodeSegment()
    {
        var bytes = new byte[WalFormat.SegmentHeaderBytes + Records.Sum(r => WalFormat.RecordHeaderBytes + r.Payload.Length)];
        WalFormat.WriteSegmentHeader(bytes, 1);
        var pos = WalFormat.SegmentHeaderBytes;
        foreach (var (index, term, payload) in Records)
        {
            WalFormat.EncodeRecord(bytes.AsSpan(pos), index, term, payload);
            pos += WalFormat.RecordHeaderBytes + payload.Length;
        }
        return bytes;
    }

    private static byte[] EncodeSnapshot()
    {
        var bytes = new byte[WalFormat.SnapshotHeaderBytes + SnapshotBody.Length];
        WalFormat.WriteSnapshotHeader(bytes, 1000, 3, (ulong)SnapshotBody.Length, Crc32C.Compute(SnapshotBody));
        SnapshotBody.CopyTo(bytes, WalFormat.SnapshotHeaderBytes);
        return bytes;
    }

    private static byte[] EncodeHardState()
    {
        var bytes = new byte[WalFormat.HardStateBytes];
        WalFormat.WriteHardState(bytes, new HardState(5, 2, 4242));
        return bytes;
    }

    [Fact]
    public void SegmentEncodingIsFrozen()
    {
        var golden = Golden("wal-segment-v1.hex", EncodeSegment(),
            "WAL segment v1: 32-byte header (magic MFS-WAL\\0, version 1, first index 1, crc32c), then records",
            "[len u32][crc32c u32 of index..payload][index u64][term u64][payload]: (1,1,\"hello\") (2,1,empty) (3,7,00 01 02 ff)");
        Assert.Equal(Convert.ToHexString(golden), Convert.ToHexString(EncodeSegment()));

        // And the reader accepts the frozen bytes.
        using var tmp = new TempDir();
        File.WriteAllBytes(Path.Combine(tmp.Path, WriteAheadLog.SegmentFileName(1)), golden);
        var log = new CapturingLogger();
        using var wal = WriteAheadLog.Open(tmp.Path, logger: log);
        Assert.Empty(log.Warnings);
        var entries = wal.Read(1, 3);
        Assert.Equal(Records.Select(r => (r.Index, r.Term, Convert.ToHexString(r.Payload))),
            entries.Select(e => (e.Index, e.Term, Convert.ToHexString(e.Payload.Span))));
    }

    [Fact]
    public void SnapshotEncodingIsFrozen()
    {
        var golden = Golden("wal-snapshot-v1.hex", EncodeSnapshot(),
            "Snapshot file v1: 48-byte header (magic MFS-SNAP, version 1, index 1000, term 3, body length 5,",
            "crc32c of body, crc32c of header), then the body \"snap!\"");
        Assert.Equal(Convert.ToHexString(golden), Convert.ToHexString(EncodeSnapshot()));

        using var tmp = new TempDir();
        File.WriteAllBytes(Path.Combine(tmp.Path, "1000-3.snap"), golden);
        using var opened = new SnapshotStore(tmp.Path).OpenNewest();
        Assert.NotNull(opened);
        Assert.Equal((1000ul, 3ul), (opened.Info.Index, opened.Info.Term));
        using var ms = new MemoryStream();
        opened.Body.CopyTo(ms);
        Assert.Equal(SnapshotBody, ms.ToArray());
    }

    [Fact]
    public void HardStateEncodingIsFrozen()
    {
        var golden = Golden("wal-hardstate-v1.hex", EncodeHardState(),
            "Hard-state file v1: magic MFS-HARD, version 1, term 5, voted for 2, commit 4242, crc32c");
        Assert.Equal(Convert.ToHexString(golden), Convert.ToHexString(EncodeHardState()));
        using var tmp = new TempDir();
        File.WriteAllBytes(tmp.Sub("hardstate"), golden);
        Assert.Equal(new HardState(5, 2, 4242), new HardStateFile(tmp.Sub("hardstate")).Load());
    }

    // Reads a golden hex file ('#' comments, whitespace ignored). A missing golden is written only when
    // MIRRORFS_WRITE_GOLDEN=1, so a renamed or deleted file is noticed rather than silently regenerated.
    private static byte[] Golden(string name, byte[] current, params string[] comments)
    {
        var path = Path.Combine(GoldenDirectory(), name);
        if (!File.Exists(path))
        {
            Assert.True(Environment.GetEnvironmentVariable("MIRRORFS_WRITE_GOLDEN") == "1",
                $"golden file {path} is missing; run the tests once with MIRRORFS_WRITE_GOLDEN=1 to create it, then commit it");
            var sb = new StringBuilder();
            foreach (var c in comments)
            {
                sb.Append("# ").Append(c).Append('\n');
            }
            for (var i = 0; i < current.Length; i += 16)
            {
                sb.Append(Convert.ToHexString(current.AsSpan(i, Math.Min(16, current.Length - i))).ToLowerInvariant()).Append('\n');
            }
            File.WriteAllText(path, sb.ToString());
        }
        var hex = new StringBuilder();
        foreach (var line in File.ReadAllLines(path))
        {
            var text = line.Split('#')[0];
            hex.Append(string.Concat(text.Where(c => !char.IsWhiteSpace(c))));
        }
        return Convert.FromHexString(hex.ToString());
    }

    private static string GoldenDirectory()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Mirror.sln")))
            {
                return Path.Combine(dir.FullName, "tests", "MetaServer.Tests", "Golden");
            }
        }
        throw new DirectoryNotFoundException(string.Create(CultureInfo.InvariantCulture, $"no Mirror.sln above {AppContext.BaseDirectory}"));
    }
}
