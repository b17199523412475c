// End to end on real mounts: write in the primary region's mount, read the same bytes and attributes in the mirror
// region's mount; verify clean; the replicator killed mid-copy; the mirror bucket unreachable.
using MirrorFS.Client.Tests.Mount;
using MirrorFS.Core.Tests.Storage.S3;
using Xunit.Abstractions;

namespace MirrorFS.Mirror.Tests.EndToEnd;

[Collection(RegionCollection.Name)]
public sealed class MountRegionTests(SwiftFixture swift, ITestOutputHelper output)
{
    /// <summary>A tree with what a namespace can hold: nested directories, small and multi-block files, an empty
    /// file, a sparse one, a symlink, a hard link, a FIFO, odd permissions and an old mtime.</summary>
    private static string TreeScript(int seed) => $"""
        set -e
        mkdir -p a/b/c d 'with space'
        head -c 3500000 /dev/urandom > a/big.bin
        for i in $(seq 1 25); do head -c $((i * 997 + {seed % 1000})) /dev/urandom > a/b/s$i; done
        : > d/empty
        truncate -s 5M d/sparse && printf tail | dd of=d/sparse bs=1 seek=4000000 conv=notrunc status=none
        ln -s ../a/big.bin d/link
        ln a/b/s2 d/hard
        mkfifo d/fifo
        echo hello > 'with space/x y'
        chmod 600 a/b/s3 && chmod 750 d && chmod 1777 a/b/c
        touch -d '2020-01-02 03:04:05.123456789' a/b/s1
        """;

    /// <summary>Names, types, modes, owners, sizes, mtimes, link targets and link counts, one line per entry.</summary>
    private const string ListingScript = "find . -printf '%p %y %m %U %G %s %T@ %l %n\\n' | LC_ALL=C sort";

    private async Task WriteTreeAndCompareAsync(BucketKind primaryKind)
    {
        var seed = Environment.TickCount;
        output.WriteLine($"seed {seed}, primary on {primaryKind}");
        await using var env = await RegionEnv.StartAsync(output, swift, primaryKind);
        env.StartReplicator("--metrics", "127.0.0.1:0");
        await env.MountBothAsync();
        await Shell.OkAsync(TreeScript(seed), env.PrimaryMount);

        var verify = await env.VerifyAsync();
        Assert.True(verify.Code == 0, $"verify after catch-up:\n{verify.Out}{verify.Err}");
        // Read everything in the mirror region first, alone: every block was copied, so the mirror mount reads its
        // own bucket and (with the primary on OSS, where requests are counted) none from the primary's.
        var getsBefore = env.PrimaryGets;
        await Shell.OkAsync("find . -type f -exec cat {} + > /dev/null", env.MirrorMount);
        if (primaryKind == BucketKind.Oss)
        {
            Assert.Equal(0, env.PrimaryGets - getsBefore);
        }
        var primaryListing = await Shell.OkAsync(ListingScript, env.PrimaryMount);
        var mirrorListing = await Shell.OkAsync(ListingScript, env.MirrorMount);
        Assert.Equal(primaryListing, mirrorListing);
        Assert.Contains("./d/link l 777", mirrorListing, StringComparison.Ordinal);
        // diff compares every file's bytes; it cannot read a FIFO (the listing above covers it).
        await Shell.OkAsync($"diff -r --no-dereference -x fifo '{env.PrimaryMount}' '{env.MirrorMount}'", "/");
        var status = env.ReadReplicatorStatus();
        Assert.NotNull(status);
        Assert.True(status.BlocksCopied > 0, "the replicator copied nothing");
    }

    [Fact]
    public Task OssPrimaryMirroredToS3_ReadsTheSameTreeInTheMirrorMount() => WriteTreeAndCompareAsync(BucketKind.Oss);

    [Fact]
    public Task S3PrimaryMirroredToOss_ReadsTheSameTreeInTheMirrorMount() => WriteTreeAndCompareAsync(BucketKind.S3);

    [Fact]
    public async Task AReplicatorKilledMidCopyResumesFromItsCheckpoint()
    {
        await using var env = await RegionEnv.StartAsync(output, swift, BucketKind.Oss);
        await env.MountBothAsync();
        await Shell.OkAsync("for i in $(seq 1 16); do head -c 1048576 /dev/urandom > f$i; done", env.PrimaryMount);
        // Started once the data is there, at 1 MiB/s and two at a time: 16 MiB take long enough to kill it midway.
        var first = env.StartReplicator("--bandwidth", "1M", "--concurrency", "2");
        await env.WaitUntilAsync(() => env.ReadReplicatorStatus() is { BlocksCopied: >= 3, BlocksPending: > 0 },
            "the replicator to be part way through");
        var before = env.ReadReplicatorStatus()!;
        await env.KillReplicatorAsync();
        Assert.NotEqual(0, first.Process.ExitCode);
        var checkpoint = MirrorFS.Mirror.Replication.Checkpoint.Load(env.ReplicatorState);
        Assert.NotNull(checkpoint);
        output.WriteLine($"killed with {before.BlocksCopied} blocks copied, {before.BlocksPending} pending; checkpoint copied through {checkpoint.CopiedThrough}, {checkpoint.InFlight.Count} in flight");

        env.StartReplicator();
        var verify = await env.VerifyAsync();
        Assert.True(verify.Code == 0, $"verify after the restart:\n{verify.Out}{verify.Err}");
        await env.WaitUntilAsync(() => env.ReadReplicatorStatus() is { BlocksPending: 0, State: "running" } s && s.UpdatedUnixMs > before.UpdatedUnixMs,
            "the restarted replicator's status");
        var after = env.ReadReplicatorStatus()!;
        output.WriteLine($"restart: {after.BlocksCopied} copied, {after.BlocksAlreadyPresent} found present");
        // What the first run had copied was not copied again.
        Assert.True(after.BlocksCopied <= 16 - before.BlocksCopied, $"the restart copied {after.BlocksCopied} of 16 blocks, though {before.BlocksCopied} were done");
        await Shell.OkAsync($"cmp f7 '{env.MirrorMount}/f7' && cmp f16 '{env.MirrorMount}/f16'", env.PrimaryMount);
    }

    [Fact]
    public async Task AnUnreachableMirrorBucketIsRetriedWhileMirrorReadsComeFromThePrimaryBucket()
    {
        await using var env = await RegionEnv.StartAsync(output, swift, BucketKind.S3);
        env.StartReplicator();
        await env.MountBothAsync();
        await Shell.OkAsync("echo before > before.txt", env.PrimaryMount);
        var verify = await env.VerifyAsync();
        Assert.True(verify.Code == 0, $"verify before the outage:\n{verify.Out}{verify.Err}");

        await env.MirrorProxy.DownAsync();
        var errorsBefore = env.ReadReplicatorStatus()?.Errors ?? 0;
        await Shell.OkAsync("head -c 2500000 /dev/urandom > during.bin && echo small > during.txt", env.PrimaryMount);
        await env.WaitMirrorAppliedAsync();
        // The mirror knows the files; their blocks are only in the primary bucket, and the mirror bucket is down.
        await Shell.OkAsync($"cmp during.bin '{env.MirrorMount}/during.bin' && cmp during.txt '{env.MirrorMount}/during.txt'", env.PrimaryMount);
        await env.WaitUntilAsync(() => env.ReadReplicatorStatus() is { BlocksPending: > 0 } s && s.Errors > errorsBefore + 2,
            "the replicator to report failed tries and pending blocks");
        var stuck = env.ReadReplicatorStatus()!;
        Assert.True(stuck.CopiedThroughIndex < stuck.PrimaryCommitIndex, "the copy frontier passed blocks it could not copy");
        Assert.Contains("refused", stuck.LastError, StringComparison.Ordinal);
        Assert.False(env.Replicator!.Process.HasExited, "the replicator gave up");

        env.MirrorProxy.Up();
        verify = await env.VerifyAsync();
        Assert.True(verify.Code == 0, $"verify after the outage:\n{verify.Out}{verify.Err}");
    }
}
