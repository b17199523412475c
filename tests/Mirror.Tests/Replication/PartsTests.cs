// Pieces of the replicator: the copy tracker, slice discovery, the bandwidth bucket, the checkpoint file.
using MirrorFS.Core.Meta;
using MirrorFS.Mirror.Replication;

namespace MirrorFS.Mirror.Tests.Replication;

public sealed class PartsTests
{
    private static BlockJob Job(string key, ulong entry) => new(key, 10, entry, 1);

    [Fact]
    public void TheFrontierStopsBeforeTheOldestEntryWithABlockInFlight()
    {
        var t = new CopyTracker(0, 100);
        var a = t.Dispatch(1, [Job("a", 1), Job("b", 1)]);
        t.Dispatch(2, []);
        var c = t.Dispatch(3, [Job("c", 3)]);
        Assert.Equal(0UL, t.CopiedThrough);
        t.Complete(c[0]);
        Assert.Equal(0UL, t.CopiedThrough);
        t.Complete(a[0]);
        Assert.Equal(0UL, t.CopiedThrough);
        t.Complete(a[1]);
        Assert.Equal(3UL, t.CopiedThrough);
        Assert.Equal((0, 0L, 0L), t.Pending());
    }

    [Fact]
    public void AKeyAlreadyInFlightIsNotHandedOutTwice()
    {
        var t = new CopyTracker(0, 100);
        Assert.Single(t.Dispatch(1, [Job("a", 1)]));
        Assert.Empty(t.Dispatch(2, [Job("a", 2)]));
        Assert.Equal(1, t.Pending().Blocks);
        Assert.Throws<InvalidOperationException>(() => t.Dispatch(2, []));
    }

    [Fact]
    public void RestoreKeepsOnlyBlocksBetweenTheFrontiers()
    {
        var t = new CopyTracker(5, 100);
        var jobs = t.Restore(5, 9, [Job("old", 4), Job("x", 6), Job("y", 9), Job("late", 10)]);
        Assert.Equal(["x", "y"], jobs.Select(j => j.Key));
        Assert.Equal(5UL, t.CopiedThrough);
        Assert.Equal(9UL, t.DispatchedThrough);
        t.Complete(jobs[0]);
        Assert.Equal(8UL, t.CopiedThrough);
        t.Complete(jobs[1]);
        Assert.Equal(9UL, t.CopiedThrough);
    }

    [Fact]
    public async Task ReadingWaitsWhileTheInFlightSetIsFull()
    {
        var t = new CopyTracker(0, 2);
        var jobs = t.Dispatch(1, [Job("a", 1), Job("b", 1)]);
        var wait = t.WaitForRoomAsync(CancellationToken.None);
        await Task.Delay(50);
        Assert.False(wait.IsCompleted);
        t.Complete(jobs[0]);
        await wait.WaitAsync(TimeSpan.FromSeconds(30));
    }

    [Fact]
    public void SlicesAreFoundInWriteSliceAndHolesAreNot()
    {
        var write = new Command { WriteSlice = new WriteSliceRequest { Slice = new Slice { Id = 42, Size = 1000 } } };
        Assert.Equal([new SliceRef(42, 1000)], SliceFinder.Find(write));
        var hole = new Command { WriteSlice = new WriteSliceRequest { Slice = new Slice { Id = 0, Size = 0, Length = 5 } } };
        Assert.Empty(SliceFinder.Find(hole));
        Assert.Empty(SliceFinder.Find(new Command { Truncate = new TruncateRequest { Inode = 2, Size = 0 } }));
        Assert.Empty(SliceFinder.Find(new Command()));
    }

    [Fact]
    public async Task TheBandwidthBucketHoldsTakersToTheRate()
    {
        // 1 MiB/s with a 256 KiB burst: 1.25 MiB more than the burst cannot pass in under a second.
        var bucket = new TokenBucket(1 << 20, 256 << 10);
        var sw = System.Diagnostics.Stopwatch.StartNew();
        for (var i = 0; i < 6; i++)
        {
            await bucket.TakeAsync(256 << 10, CancellationToken.None);
        }
        Assert.True(sw.ElapsedMilliseconds >= 900, $"6 x 256 KiB passed a 1 MiB/s bucket in {sw.ElapsedMilliseconds} ms");
        var unlimited = new TokenBucket(0, 1);
        await unlimited.TakeAsync(long.MaxValue / 2, CancellationToken.None);
    }

    [Fact]
    public void ACheckpointRoundTripsAndABadOneIsRefusedWithItsPath()
    {
        var dir = Directory.CreateTempSubdirectory("mirrorfs-cp-").FullName;
        try
        {
            Assert.Null(Checkpoint.Load(dir));
            var cp = new Checkpoint { VolumeUuid = "u", CopiedThrough = 3, DispatchedThrough = 7, InFlight = [Job("k", 5)] };
            cp.Save(dir);
            var back = Checkpoint.Load(dir)!;
            Assert.Equal(7UL, back.DispatchedThrough);
            Assert.Equal("k", Assert.Single(back.InFlight).Key);
            File.WriteAllText(Path.Combine(dir, Checkpoint.FileName), "{not json");
            var e = Assert.Throws<InvalidDataException>(() => Checkpoint.Load(dir));
            Assert.Contains(Checkpoint.FileName, e.Message, StringComparison.Ordinal);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
