using System.Security.Cryptography;
using MirrorFS.MetaServer.Storage;

namespace MirrorFS.MetaServer.Tests.Storage;

public class SnapshotStoreTests
{
    private static byte[] Body(int seed, int length)
    {
        var b = new byte[length];
        new Random(seed).NextBytes(b);
        return b;
    }

    private static byte[] ReadAll(Stream s)
    {
        using var ms = new MemoryStream();
        s.CopyTo(ms);
        return ms.ToArray();
    }

    [Fact]
    public void WritesAndOpensTheNewestSnapshotStreaming()
    {
        using var tmp = new TempDir();
        var store = new SnapshotStore(tmp.Path);
        Assert.Null(store.OpenNewest());
        var big = Body(1, 3 << 20); // bigger than the I/O buffers, so the body really streams in pieces
        var info = store.Write(1000, 3, s =>
        {
            for (var i = 0; i < big.Length; i += 100_000)
            {
                s.Write(big, i, Math.Min(100_000, big.Length - i));
            }
        });
        Assert.Equal("1000-3.snap", Path.GetFileName(info.Path));
        Assert.Equal(big.Length, info.BodyBytes);
        Assert.Equal(WalFormat.SnapshotHeaderBytes + big.Length, new FileInfo(info.Path).Length);
        using var opened = store.OpenNewest();
        Assert.NotNull(opened);
        Assert.Equal(1000ul, opened.Info.Index);
        Assert.Equal(3ul, opened.Info.Term);
        Assert.Equal(SHA256.HashData(big), SHA256.HashData(ReadAll(opened.Body)));
        Assert.Empty(Directory.GetFiles(tmp.Path, "*.tmp"));
    }

    [Fact]
    public void KeepsTheNewestTwoAndIgnoresAbandonedWrites()
    {
        using var tmp = new TempDir();
        var store = new SnapshotStore(tmp.Path);
        for (ulong i = 1; i <= 5; i++)
        {
            store.Write(i * 10, 1, s => s.Write(Body((int)i, 100)));
        }
        Assert.Equal(["40-1.snap", "50-1.snap"], Directory.GetFiles(tmp.Path).Select(Path.GetFileName).Order(StringComparer.Ordinal));
        using (var writer = store.Create(60, 1))
        {
            writer.Body.Write(Body(6, 100));
            // Disposed without Commit: as if the process died mid-write.
        }
        using (var opened = store.OpenNewest())
        {
            Assert.Equal(50ul, opened!.Info.Index);
            Assert.Equal(Body(5, 100), ReadAll(opened.Body));
        }
        File.WriteAllBytes(Path.Combine(tmp.Path, "70-1.snap.tmp"), Body(7, 10)); // left by a crash
        _ = new SnapshotStore(tmp.Path);
        Assert.Empty(Directory.GetFiles(tmp.Path, "*.tmp"));
    }

    [Theory]
    [InlineData(100, "body checksum mismatch")]  // a bit flipped in the body
    [InlineData(20, "header checksum mismatch")] // a bit flipped in the index field
    [InlineData(-1, "bytes, header says")]       // truncated body
    public void ADamagedSnapshotFallsBackToTheOlderGoodOne(int damageAt, string expectedProblem)
    {
        using var tmp = new TempDir();
        var log = new CapturingLogger();
        var store = new SnapshotStore(tmp.Path, logger: log);
        store.Write(10, 1, s => s.Write(Body(1, 500)));
        var newest = store.Write(20, 2, s => s.Write(Body(2, 500)));
        using (var fs = new FileStream(newest.Path, FileMode.Open))
        {
            if (damageAt < 0)
            {
                fs.SetLength(fs.Length - 1);
            }
            else
            {
                fs.Position = damageAt;
                var b = fs.ReadByte();
                fs.Position = damageAt;
                fs.WriteByte((byte)(b ^ 0x10));
            }
        }
        using (var opened = store.OpenNewest())
        {
            Assert.Equal(10ul, opened!.Info.Index);
            Assert.Equal(Body(1, 500), ReadAll(opened.Body));
        }
        Assert.Contains(log.Warnings, w => w.Contains(expectedProblem, StringComparison.Ordinal) && w.Contains("20-2.snap", StringComparison.Ordinal));
        Assert.True(File.Exists(newest.Path + ".corrupt"));
    }

    [Fact]
    public void HardStateRoundTripsAndRefusesDamage()
    {
        using var tmp = new TempDir();
        var file = new HardStateFile(tmp.Sub("hardstate"));
        Assert.Equal(default, file.Load());
        file.Save(new HardState(7, 3, 1234));
        file.Save(new HardState(8, 0, 1300));
        Assert.Equal(new HardState(8, 0, 1300), new HardStateFile(tmp.Sub("hardstate")).Load());
        Assert.False(File.Exists(tmp.Sub("hardstate.tmp")));
        var bytes = File.ReadAllBytes(file.Path);
        bytes[20] ^= 1;
        File.WriteAllBytes(file.Path, bytes);
        var ex = Assert.Throws<InvalidDataException>(() => file.Load());
        Assert.Contains("checksum mismatch", ex.Message, StringComparison.Ordinal);
    }
}
