using System.Collections.Concurrent;
using System.Text;
using MirrorFS.MetaServer.Consensus;
using Xunit.Abstractions;

namespace MirrorFS.MetaServer.Tests.Storage;

public class DurableSingleNodeLogTests(ITestOutputHelper output)
{
    private static DurableLogOptions Options(string dir, ulong snapshotEvery = 0, long segmentBytes = 4096, int pendingMax = 4096) =>
        new() { Directory = dir, SnapshotEveryEntries = snapshotEvery, SegmentBytesMax = segmentBytes, PendingProposalsMax = pendingMax };

    private static ReadOnlyMemory<byte> Cmd(string s) => Encoding.UTF8.GetBytes(s);

    [Fact]
    public async Task ProposalsGetIndicesAndRepliesInOrder()
    {
        using var tmp = new TempDir();
        var sm = new HashChainStateMachine();
        await using var log = DurableSingleNodeLog.Open(sm, Options(tmp.Path));
        var (i1, r1) = await log.ProposeAsync(Cmd("x=1"));
        var (i2, r2) = await log.ProposeAsync(Cmd("x=2"));
        Assert.Equal((1ul, ""), (i1, Encoding.UTF8.GetString(r1)));
        Assert.Equal((2ul, "1"), (i2, Encoding.UTF8.GetString(r2)));
        Assert.Equal(2ul, log.CommitIndex);
        Assert.Equal(2ul, log.AppliedIndex);
        Assert.Equal(2ul, await log.ReadBarrierAsync());
        Assert.Equal("2", sm.Values["x"]);
        await Assert.ThrowsAsync<ArgumentException>(() => log.ProposeAsync(new byte[(16 << 20) + 1]));
    }

    [Fact]
    public async Task RestartRestoresSnapshotAndReplaysToTheSameState()
    {
        using var tmp = new TempDir();
        var seed = Environment.TickCount;
        output.WriteLine($"seed {seed}");
        var rng = new Random(seed);
        var sm = new HashChainStateMachine();
        await using (var log = DurableSingleNodeLog.Open(sm, Options(tmp.Path, snapshotEvery: 300)))
        {
            for (var i = 0; i < 1000; i++)
            {
                await log.ProposeAsync(Cmd($"k{rng.Next(50)}={rng.Next()}"));
            }
            Assert.Equal(900ul, log.LastSnapshotIndex);
            Assert.Equal(3, log.Stats.SnapshotCount);
            // Compacted to the older kept snapshot (600), never past it.
            Assert.InRange(log.Wal.FirstIndex, 2ul, 601ul);
        }
        Assert.Equal(2, Directory.GetFiles(Path.Combine(tmp.Path, "snap"), "*.snap").Length);
        var restored = new HashChainStateMachine();
        var replayed = 0;
        restored.OnApply = (_, _) => replayed++;
        await using (var log = DurableSingleNodeLog.Open(restored, Options(tmp.Path, snapshotEvery: 300)))
        {
            Assert.Equal(1000ul, log.AppliedIndex);
            Assert.Equal(1000ul, log.CommitIndex);
            Assert.Equal(900ul, log.LastSnapshotIndex);
            Assert.Equal(100, replayed); // restored from the snapshot at 900, replayed 901..1000
            Assert.Equal(sm.Hash, restored.Hash);
            Assert.Equal(sm.Values, restored.Values);
            var (index, _) = await log.ProposeAsync(Cmd("after=restart"));
            Assert.Equal(1001ul, index);
        }
    }

    [Fact]
    public async Task ADamagedNewestSnapshotFallsBackToTheOlderOneAndReplaysMore()
    {
        using var tmp = new TempDir();
        var sm = new HashChainStateMachine();
        await using (var log = DurableSingleNodeLog.Open(sm, Options(tmp.Path)))
        {
            for (var i = 0; i < 200; i++)
            {
                await log.ProposeAsync(Cmd($"k{i % 17}={i}"));
                if (i == 79 || i == 159)
                {
                    Assert.NotNull(await log.SnapshotAsync());
                }
            }
        }
        var newest = Path.Combine(tmp.Path, "snap", "160-1.snap");
        var bytes = File.ReadAllBytes(newest);
        bytes[^5] ^= 0x40;
        File.WriteAllBytes(newest, bytes);
        var log2 = new CapturingLogger();
        var restored = new HashChainStateMachine();
        await using (var log = DurableSingleNodeLog.Open(restored, Options(tmp.Path), log2))
        {
            Assert.Equal(80ul, log.LastSnapshotIndex);
            Assert.Equal(200ul, log.AppliedIndex);
            Assert.Equal(sm.Hash, restored.Hash);
        }
        Assert.Contains(log2.Warnings, w => w.Contains("160-1.snap", StringComparison.Ordinal));
    }

    [Fact]
    public async Task OnDemandSnapshotIsSkippedWhenNothingIsNew()
    {
        using var tmp = new TempDir();
        await using var log = DurableSingleNodeLog.Open(new HashChainStateMachine(), Options(tmp.Path));
        Assert.Null(await log.SnapshotAsync());
        await log.ProposeAsync(Cmd("a=1"));
        var info = await log.SnapshotAsync();
        Assert.Equal(1ul, info!.Index);
        Assert.Equal(1ul, info.Term);
        Assert.Null(await log.SnapshotAsync());
        Assert.Equal(1ul, log.LastSnapshotIndex);
    }

    [Fact]
    public async Task ConcurrentProposalsShareFsyncsAndAllAcknowledgedSurviveReopen()
    {
        using var tmp = new TempDir();
        const int proposers = 32;
        const int each = 30;
        var acked = new ConcurrentBag<(ulong Index, string Command, string Reply)>();
        var sm = new HashChainStateMachine();
        await using (var log = DurableSingleNodeLog.Open(sm, Options(tmp.Path, snapshotEvery: 250, segmentBytes: 8192)))
        {
            await Task.WhenAll(Enumerable.Range(0, proposers).Select(p => Task.Run(async () =>
            {
                for (var k = 0; k < each; k++)
                {
                    var cmd = $"p{p}={k}";
                    var (index, reply) = await log.ProposeAsync(Cmd(cmd));
                    acked.Add((index, cmd, Encoding.UTF8.GetString(reply)));
                }
            })));
            var stats = log.Stats;
            output.WriteLine($"{proposers * each} proposals: {stats.FsyncCount} fsyncs, average batch {stats.AverageBatchSize:F1}, {stats.SnapshotCount} snapshots");
            Assert.True(stats.FsyncCount * 4 < proposers * each, $"{stats.FsyncCount} fsyncs for {proposers * each} proposals");
            Assert.True(stats.AverageBatchSize > 2);
            Assert.Equal((ulong)(proposers * each), stats.AppliedIndex);
        }
        Assert.Equal(proposers * each, acked.Select(a => a.Index).Distinct().Count());
        // Each proposer's replies show its own previous value: applies happened in its order.
        foreach (var a in acked)
        {
            var k = int.Parse(a.Command[(a.Command.IndexOf('=', StringComparison.Ordinal) + 1)..], System.Globalization.CultureInfo.InvariantCulture);
            Assert.Equal(k == 0 ? "" : (k - 1).ToString(System.Globalization.CultureInfo.InvariantCulture), a.Reply);
        }
        var restored = new HashChainStateMachine();
        await using (var log = DurableSingleNodeLog.Open(restored, Options(tmp.Path, snapshotEvery: 250, segmentBytes: 8192)))
        {
            Assert.Equal(sm.Hash, restored.Hash);
            foreach (var a in acked.Where(a => a.Index >= log.Wal.FirstIndex))
            {
                Assert.Equal(a.Command, Encoding.UTF8.GetString(log.Wal.Read(a.Index, a.Index)[0].Payload.Span));
            }
        }
    }

    [Fact]
    public async Task PendingProposalsAreBoundedAndReadBarrierWaitsForApply()
    {
        using var tmp = new TempDir();
        using var gate = new ManualResetEventSlim(false);
        using var applying = new ManualResetEventSlim(false);
        var sm = new HashChainStateMachine
        {
            OnApply = (_, _) =>
            {
                applying.Set();
                gate.Wait(TimeSpan.FromSeconds(30));
            },
        };
        await using var log = DurableSingleNodeLog.Open(sm, Options(tmp.Path, pendingMax: 2));
        var p1 = log.ProposeAsync(Cmd("a=1"));
        var p2 = log.ProposeAsync(Cmd("b=2"));
        var p3 = log.ProposeAsync(Cmd("c=3"));
        // Entry 1 is committed (its apply started), so a barrier now must wait for that apply.
        Assert.True(applying.Wait(TimeSpan.FromSeconds(10)));
        Assert.True(log.CommitIndex >= 1);
        var barrier = log.ReadBarrierAsync();
        await Task.Delay(100);
        // Apply is blocked: two proposals hold the two slots, the third waits before reaching the WAL.
        Assert.Equal(2ul, log.Wal.LastIndex);
        Assert.False(p1.IsCompleted || p2.IsCompleted || p3.IsCompleted || barrier.IsCompleted);
        gate.Set();
        await Task.WhenAll(p1, p2, p3);
        Assert.True(await barrier >= 2);
        Assert.Equal(3ul, (await p3).Index);
    }

    [Fact]
    public async Task DisposeAnswersAcceptedProposalsThenRefusesNewOnes()
    {
        using var tmp = new TempDir();
        var log = DurableSingleNodeLog.Open(new HashChainStateMachine(), Options(tmp.Path));
        var pending = Enumerable.Range(0, 100).Select(i => log.ProposeAsync(Cmd($"k={i}"))).ToList();
        await log.DisposeAsync();
        Assert.All(pending, p => Assert.True(p.IsCompletedSuccessfully));
        await Assert.ThrowsAsync<ObjectDisposedException>(() => log.ProposeAsync(Cmd("late=1")));
        var restored = new HashChainStateMachine();
        await using var reopened = DurableSingleNodeLog.Open(restored, Options(tmp.Path));
        Assert.Equal(100ul, reopened.AppliedIndex);
        Assert.Equal("99", restored.Values["k"]);
    }

    [Fact]
    public async Task AFailingApplyStopsTheLog()
    {
        using var tmp = new TempDir();
        var sm = new HashChainStateMachine { OnApply = (_, cmd) => { if (cmd == "boom") throw new FormatException("bad command"); } };
        await using var log = DurableSingleNodeLog.Open(sm, Options(tmp.Path));
        await log.ProposeAsync(Cmd("ok=1"));
        var ex = await Assert.ThrowsAsync<InvalidOperationException>(() => log.ProposeAsync(Cmd("boom")));
        Assert.Contains("entry 2", ex.Message, StringComparison.Ordinal);
        await Assert.ThrowsAsync<InvalidOperationException>(() => log.ProposeAsync(Cmd("after=1")));
        await Assert.ThrowsAsync<InvalidOperationException>(() => log.ReadBarrierAsync());
    }

    [Fact]
    public async Task ASnapshotPastTheEndOfTheWalRestartsTheWalAfterIt()
    {
        using var tmp = new TempDir();
        var sm = new HashChainStateMachine();
        await using (var log = DurableSingleNodeLog.Open(sm, Options(tmp.Path, segmentBytes: 1 << 20)))
        {
            for (var i = 0; i < 50; i++)
            {
                await log.ProposeAsync(Cmd($"k{i}=v"));
            }
            await log.SnapshotAsync();
        }
        // Lose the WAL's tail after the snapshot was taken (e.g. a damaged disk region): the snapshot still holds it.
        var seg = Directory.GetFiles(Path.Combine(tmp.Path, "wal"), "*.seg").Single();
        using (var fs = new FileStream(seg, FileMode.Open))
        {
            fs.SetLength(fs.Length / 2);
        }
        var restored = new HashChainStateMachine();
        await using (var log = DurableSingleNodeLog.Open(restored, Options(tmp.Path, segmentBytes: 1 << 20)))
        {
            Assert.Equal(50ul, log.AppliedIndex);
            Assert.Equal(sm.Hash, restored.Hash);
            Assert.Equal(51ul, (await log.ProposeAsync(Cmd("next=1"))).Index);
        }
    }
}
