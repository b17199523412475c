// The rate limiter behind the bandwidth and metadata limits, and a VFS following the volume settings while mounted.
using System.Diagnostics;
using MirrorFS.Client.Vfs;
using MirrorFS.Core.Meta;

namespace MirrorFS.Client.Tests.VfsTests;

public sealed class LimitsTests
{
    private const int WaitMs = 10_000;

    [Fact]
    public async Task Unlimited_passes_at_once_and_a_rate_holds_its_average()
    {
        using var limiter = new RateLimiter();
        for (var i = 0; i < 10_000; i++)
        {
            var t = limiter.AcquireAsync(1 << 20);
            Assert.True(t.IsCompleted, "an unlimited acquire waited");
        }
        limiter.SetRate(1000);
        var sw = Stopwatch.StartNew();
        for (var i = 0; i < 30; i++)
        {
            await limiter.AcquireAsync(100);
        }
        // 3000 units at 1000/s after a burst of 1000: at least 2 s (a loaded machine only adds time).
        Assert.True(sw.Elapsed.TotalSeconds > 1.8, $"3000 units at 1000/s took {sw.Elapsed.TotalSeconds:0.00} s");
    }

    [Fact]
    public async Task A_request_larger_than_a_second_leaves_a_debt_and_a_new_rate_frees_waiters()
    {
        using var limiter = new RateLimiter();
        limiter.SetRate(10);
        await limiter.AcquireAsync(1000).AsTask().WaitAsync(TimeSpan.FromMilliseconds(WaitMs)); // a full bucket lets it through
        var next = limiter.AcquireAsync(1).AsTask();
        await Task.Delay(300);
        Assert.False(next.IsCompleted, "the debt of 990 units at 10/s was not waited out");
        limiter.SetRate(0);
        await next.WaitAsync(TimeSpan.FromMilliseconds(WaitMs));
        limiter.SetRate(1_000_000);
        await limiter.AcquireAsync(10).AsTask().WaitAsync(TimeSpan.FromMilliseconds(WaitMs));
    }

    [Fact]
    public async Task A_cancelled_wait_ends_and_lets_the_next_caller_in()
    {
        using var limiter = new RateLimiter();
        limiter.SetRate(1);
        await limiter.AcquireAsync(1000);
        using var cts = new CancellationTokenSource(200);
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () => await limiter.AcquireAsync(1, cts.Token));
        limiter.SetRate(0);
        await limiter.AcquireAsync(1).AsTask().WaitAsync(TimeSpan.FromMilliseconds(WaitMs));
    }

    [Fact]
    public async Task A_mounted_vfs_follows_volume_limits_unless_an_option_overrides_them()
    {
        await using var f = await VfsFixture.StartAsync();
        var follows = await f.MountAsync(new VfsOptions { SettingsPollMs = 100, MemoryCacheBytesMax = 8 << 20 });
        var pinned = await f.MountAsync(new VfsOptions { SettingsPollMs = 100, MetaOpsLimit = 3, MemoryCacheBytesMax = 8 << 20 });
        Assert.Equal(0L, follows.Session.OpsLimiter.Rate);
        Assert.Equal(3L, pinned.Session.OpsLimiter.Rate);
        var u = await f.Meta.UpdateVolumeAsync(new UpdateVolumeRequest { Cred = new Credentials(), MetaOpsLimit = 5000, UploadLimitBytes = 1 << 20 });
        Assert.Equal(0, u.Errno);
        var deadline = Environment.TickCount64 + WaitMs;
        while (follows.Session.OpsLimiter.Rate != 5000 || follows.CurrentVolume.UploadLimitBytes != 1 << 20)
        {
            Assert.True(Environment.TickCount64 < deadline, "the VFS did not pick up the new limits");
            await Task.Delay(50);
        }
        Assert.Equal(3L, pinned.Session.OpsLimiter.Rate);
        // Still works under the limit.
        var (ino, fh) = await VfsFixture.CreateAsync(follows, "f");
        await VfsFixture.WriteAsync(follows, ino, fh, 0, new byte[1000]);
        Assert.Equal(0, await follows.FlushAsync(VfsFixture.Ctx, ino, fh));
    }
}
