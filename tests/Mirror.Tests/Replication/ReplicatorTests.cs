// The replicator against an in-memory primary and memory buckets: copies, resumes, retries, skips, resyncs.
using Microsoft.Extensions.Logging.Abstractions;
using MirrorFS.Core.Meta;
using MirrorFS.Core.Storage;
using MirrorFS.Mirror.Replication;
using Xunit.Abstractions;

namespace MirrorFS.Mirror.Tests.Replication;

public sealed class ReplicatorTests(ITestOutputHelper output) : IDisposable
{
    /// <summary>Generous: the machine is small and shared.</summary>
    private const int WaitMs = 60_000;

    private readonly string _dir = Directory.CreateTempSubdirectory("mirrorfs-repl-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private ReplicatorOptions Options(int checkpointMs = 200) => new()
    {
        StateDirectory = _dir,
        ConcurrencyMax = 4,
        CheckpointEveryMs = checkpointMs,
        PendingBlocksMax = 64,
        Retry = new RetryPolicy { BaseDelayMs = 5, DelayMaxMs = 50 },
        ReconnectDelayMaxMs = 50,
    };

    private sealed class Running(Replicator r, Task task, CancellationTokenSource cts) : IAsyncDisposable
    {
        public Replicator Replicator => r;

        public async Task StopAsync()
        {
            await cts.CancelAsync();
            await task;
        }

        public async ValueTask DisposeAsync()
        {
            if (!task.IsCompleted)
            {
                await StopAsync();
            }
            cts.Dispose();
        }
    }

    private static Running Start(FakeChangelog log, IObjectStore from, IObjectStore to, ReplicatorOptions options,
        Action<BlockJob, CopyOutcome>? done = null)
    {
        var r = new Replicator(log, _ => from, to, options, NullLogger.Instance) { BlockDone = done };
        var cts = new CancellationTokenSource();
        return new Running(r, Task.Run(() => r.RunAsync(cts.Token)), cts);
    }

    private static async Task WaitUntil(Func<bool> condition, string what)
    {
        var deadline = Environment.TickCount64 + WaitMs;
        while (!condition())
        {
            Assert.True(Environment.TickCount64 < deadline, $"timed out waiting for {what}");
            await Task.Delay(20);
        }
    }

    private static async Task AssertSameAsync(IObjectStore from, IObjectStore to, IEnumerable<string> keys)
    {
        foreach (var k in keys)
        {
            var a = await from.GetAsync(k);
            var b = await to.GetAsync(k);
            Assert.NotNull(a);
            Assert.True(b is not null, $"block {k} is missing from the mirror bucket");
            Assert.Equal(a, b);
        }
    }

    [Fact]
    public async Task CopiesEveryBlockOfEveryWriteSliceAndAdvancesTheCheckpoint()
    {
        var seed = Environment.TickCount;
        output.WriteLine($"seed {seed}");
        var rng = new Random(seed);
        var log = new FakeChangelog();
        var from = new MemoryObjectStore();
        var to = new MemoryObjectStore();
        log.Append(new Command { NowNs = 1, Mkdir = new MkdirRequest { Parent = 1, Name = Google.Protobuf.ByteString.CopyFromUtf8("d") } });
        var keys = new List<string>();
        for (var i = 0; i < 20; i++)
        {
            keys.AddRange(await log.WriteSliceAsync(from, rng.Next(1, 300_000), rng));
        }
        await using var run = Start(log, from, to, Options());
        // More while it runs.
        for (var i = 0; i < 10; i++)
        {
            keys.AddRange(await log.WriteSliceAsync(from, rng.Next(1, 300_000), rng));
        }
        await WaitUntil(() => run.Replicator.CopiedThrough == log.LastIndex, "copied-through to reach the last entry");
        await AssertSameAsync(from, to, keys);
        Assert.Equal(keys.Count, to.Count);
        await run.StopAsync();
        var cp = Checkpoint.Load(_dir);
        Assert.NotNull(cp);
        Assert.Equal(log.LastIndex, cp.CopiedThrough);
        Assert.Empty(cp.InFlight);
        var status = run.Replicator.Status();
        Assert.Equal(keys.Count, status.BlocksCopied);
        Assert.Equal(0UL, status.LagEntries);
        Assert.Equal("vol", status.Volume);
        Assert.True(File.Exists(Path.Combine(_dir, ReplicatorStatus.FileName)));
    }

    [Fact]
    public async Task RestartResumesFromTheCheckpointWithoutCopyingAgain()
    {
        var rng = new Random(7);
        var log = new FakeChangelog();
        var from = new MemoryObjectStore();
        var to = new MemoryObjectStore();
        var keys = new List<string>();
        for (var i = 0; i < 10; i++)
        {
            keys.AddRange(await log.WriteSliceAsync(from, 200_000, rng));
        }
        var copies = 0;
        await using (var run = Start(log, from, to, Options(), (_, o) => { if (o == CopyOutcome.Copied) { Interlocked.Increment(ref copies); } }))
        {
            await WaitUntil(() => run.Replicator.CopiedThrough == log.LastIndex, "first run to catch up");
        }
        Assert.Equal(keys.Count, copies);
        for (var i = 0; i < 5; i++)
        {
            keys.AddRange(await log.WriteSliceAsync(from, 100_000, rng));
        }
        var second = 0;
        await using (var run = Start(log, from, to, Options(), (_, o) => { if (o == CopyOutcome.Copied) { Interlocked.Increment(ref second); } }))
        {
            await WaitUntil(() => run.Replicator.CopiedThrough == log.LastIndex, "second run to catch up");
        }
        // Only the new slices' blocks: 5 slices of 100,000 bytes in 64 KiB blocks are 2 blocks each.
        Assert.Equal(10, second);
        Assert.Equal(11UL, log.Requests.First(r => r.FromIndex > 1).FromIndex);
        await AssertSameAsync(from, to, keys);
    }

    [Fact]
    public async Task InFlightBlocksOfACheckpointAreCheckedAndCopiedAfterARestart()
    {
        var rng = new Random(11);
        var log = new FakeChangelog();
        var from = new MemoryObjectStore();
        var to = new SwitchableStore(new MemoryObjectStore()) { Down = true };
        var keys = new List<string>();
        for (var i = 0; i < 4; i++)
        {
            keys.AddRange(await log.WriteSliceAsync(from, 150_000, rng));
        }
        await using (var run = Start(log, from, to, Options()))
        {
            // Everything is read but nothing can be written: all blocks are in flight.
            await WaitUntil(() => run.Replicator.Status().DispatchedThroughIndex == log.LastIndex && to.Failures > 8, "entries dispatched and copies failing");
            Assert.Equal(0UL, run.Replicator.CopiedThrough);
        }
        var cp = Checkpoint.Load(_dir)!;
        Assert.Equal(0UL, cp.CopiedThrough);
        Assert.Equal(log.LastIndex, cp.DispatchedThrough);
        Assert.Equal(keys.Order(StringComparer.Ordinal), cp.InFlight.Select(b => b.Key).Order(StringComparer.Ordinal));
        to.Down = false;
        await using (var run = Start(log, from, to, Options()))
        {
            await WaitUntil(() => run.Replicator.CopiedThrough == log.LastIndex, "restart to finish the in-flight blocks");
        }
        await AssertSameAsync(from, to, keys);
        // The restart asked the changelog only for entries after the dispatched ones.
        Assert.Equal(log.LastIndex + 1, log.Requests[^1].FromIndex);
    }

    [Fact]
    public async Task AnUnreachableMirrorBucketIsRetriedAndTheFrontierWaitsForIt()
    {
        var rng = new Random(3);
        var log = new FakeChangelog();
        var from = new MemoryObjectStore();
        var to = new SwitchableStore(new MemoryObjectStore());
        var keys = await log.WriteSliceAsync(from, 100_000, rng);
        await using var run = Start(log, from, to, Options());
        await WaitUntil(() => run.Replicator.CopiedThrough == 1, "first slice copied");
        to.Down = true;
        keys.AddRange(await log.WriteSliceAsync(from, 100_000, rng));
        await WaitUntil(() => to.Failures >= 10, "ten failed tries");
        Assert.Equal(1UL, run.Replicator.CopiedThrough);
        var status = run.Replicator.Status();
        Assert.True(status.Errors >= 10);
        Assert.Contains("test outage", status.LastError, StringComparison.Ordinal);
        Assert.Equal(2, status.BlocksPending);
        to.Down = false;
        await WaitUntil(() => run.Replicator.CopiedThrough == 2, "copy after the outage");
        await AssertSameAsync(from, to, keys);
    }

    [Fact]
    public async Task ABlockDeletedFromThePrimaryBeforeTheCopyIsSkipped()
    {
        var rng = new Random(5);
        var log = new FakeChangelog();
        var from = new MemoryObjectStore();
        var to = new MemoryObjectStore();
        var gone = await log.WriteSliceAsync(from, 100_000, rng);
        foreach (var k in gone)
        {
            await from.DeleteAsync(k);
        }
        var kept = await log.WriteSliceAsync(from, 100_000, rng);
        await using var run = Start(log, from, to, Options());
        await WaitUntil(() => run.Replicator.CopiedThrough == 2, "both entries done");
        await AssertSameAsync(from, to, kept);
        Assert.Equal(kept.Count, to.Count);
        Assert.Equal(gone.Count, run.Replicator.Status().BlocksGoneFromSource);
    }

    [Fact]
    public async Task ACompactedChangelogIsBridgedByABucketResync()
    {
        var rng = new Random(9);
        var log = new FakeChangelog();
        var from = new MemoryObjectStore();
        var to = new MemoryObjectStore();
        var keys = new List<string>();
        for (var i = 0; i < 6; i++)
        {
            keys.AddRange(await log.WriteSliceAsync(from, 70_000, rng));
        }
        // One block already in the mirror bucket: the resync leaves it alone.
        await to.PutAsync(keys[0], (await from.GetAsync(keys[0]))!);
        log.FirstIndex = 5;
        var copied = 0;
        await using var run = Start(log, from, to, Options(), (_, o) => { if (o == CopyOutcome.Copied) { Interlocked.Increment(ref copied); } });
        // New entries once the resync is over (a slice written while it lists the bucket may be copied twice).
        await WaitUntil(() => run.Replicator.CopiedThrough == log.LastIndex, "the resync and the entries after it");
        keys.AddRange(await log.WriteSliceAsync(from, 70_000, rng));
        await WaitUntil(() => run.Replicator.CopiedThrough == log.LastIndex, "catch-up after the resync");
        await AssertSameAsync(from, to, keys);
        var status = run.Replicator.Status();
        Assert.Equal(1, status.Resyncs);
        Assert.Equal(keys.Count - 1, status.BlocksCopied);
        Assert.Contains(log.Requests, r => r.FromIndex == 5);
    }

    [Fact]
    public async Task ThePrimaryHearsTheCopyProgressWhenTheStreamIsReopened()
    {
        var rng = new Random(13);
        var log = new FakeChangelog();
        var from = new MemoryObjectStore();
        var to = new MemoryObjectStore();
        await log.WriteSliceAsync(from, 10_000, rng);
        await log.WriteSliceAsync(from, 10_000, rng);
        await using var run = Start(log, from, to, Options() with { ReportEveryMs = 100, MirrorId = "mirror-a" });
        await WaitUntil(() => log.Requests.Any(r => r.MirrorAppliedIndex == 2), "a pull reporting index 2");
        Assert.All(log.Requests, r => Assert.Equal("mirror-a", r.MirrorId));
    }

    [Fact]
    public async Task IndexesWithoutEntriesCountAsCopiedOnceTheStreamSaysSo()
    {
        var rng = new Random(19);
        var log = new FakeChangelog();
        var from = new MemoryObjectStore();
        var to = new MemoryObjectStore();
        await log.WriteSliceAsync(from, 10_000, rng);
        log.Skip();
        await log.WriteSliceAsync(from, 10_000, rng);
        log.Skip();
        log.Skip();
        await using var run = Start(log, from, to, Options());
        await WaitUntil(() => run.Replicator.CopiedThrough == 5, "copied-through to pass the trailing no-ops");
        Assert.Equal(0UL, run.Replicator.Status().LagEntries);
        Assert.Equal(2, to.Count);
    }

    [Fact]
    public async Task AStreamThatFailsIsReopenedAndCounted()
    {
        var rng = new Random(17);
        var log = new FakeChangelog { FailStreams = new MetaUnavailableException("primary down (test)") };
        var from = new MemoryObjectStore();
        var to = new MemoryObjectStore();
        var keys = await log.WriteSliceAsync(from, 10_000, rng);
        await using var run = Start(log, from, to, Options());
        await WaitUntil(() => log.Requests.Count >= 3, "three tries");
        Assert.Equal(0UL, run.Replicator.CopiedThrough);
        log.FailStreams = null;
        await WaitUntil(() => run.Replicator.CopiedThrough == 1, "copy after the primary is back");
        await AssertSameAsync(from, to, keys);
        Assert.True(run.Replicator.Status().Errors >= 3);
    }
}
