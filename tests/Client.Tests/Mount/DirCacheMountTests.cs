// The directory entry cache on real mounts: stat of many files by name is served from one listing (counted in .stats),
// this mount's own changes show at once, another mount's once the entry-cache period has passed.
using System.Globalization;
using MirrorFS.Core.Tests.Metrics;
using Xunit.Abstractions;

namespace MirrorFS.Client.Tests.Mount;

[Collection(MountCollection.Name)]
public sealed class DirCacheMountTests(ITestOutputHelper log) : IAsyncLifetime
{
    private const int TestTimeoutMs = 240_000;
    private const int Files = 60;
    private const string Hits = "mirrorfs_dircache_hits_total";
    private const string Listings = "mirrorfs_dircache_listings_total";

    private MountEnv _env = null!;

    public async Task InitializeAsync() => _env = await MountEnv.StartAsync(log);

    public async Task DisposeAsync() => await _env.DisposeAsync();

    private string Mp(string name) => Path.Combine(_env.Root, name);

    /// <summary>A mount that caches nothing: its changes are another client's for the mount under test.</summary>
    private Task<MountProcess> OtherAsync() =>
        _env.MountAsync(Mp("other"), "--no-dir-cache", "--entry-cache", "0", "--attr-cache", "0");

    /// <summary>d/f000..d/f059, file i holding i+1 bytes.</summary>
    private static Task MakeFilesAsync(string mp) =>
        Shell.OkAsync($"mkdir d && for i in $(seq 0 {Files - 1}); do head -c $((i + 1)) /dev/zero > d/$(printf f%03d $i); done", mp);

    /// <summary>stat by name only (no readdir, so every name reaches the file system as a lookup); "name size" lines.</summary>
    private static async Task<string[]> StatAllAsync(string mp, int from = 0, int count = Files)
    {
        var names = string.Join(' ', Enumerable.Range(from, count).Select(i => $"d/f{i:D3}"));
        var text = await Shell.OkAsync($"stat -c '%n %s' {names}", mp);
        return text.Split('\n', StringSplitOptions.RemoveEmptyEntries);
    }

    private static async Task<double> CounterAsync(string mp, string name) =>
        PrometheusParser.Parse(await Shell.OkAsync("cat .stats", mp)).Value(name);

    [Fact(Timeout = TestTimeoutMs)]
    public async Task Stats_by_name_come_from_one_listing_and_this_mounts_changes_show_at_once()
    {
        var other = await OtherAsync();
        await MakeFilesAsync(other.MountPoint);
        await Shell.OkAsync("touch r1 r2 r3", other.MountPoint);
        var m = await _env.MountAsync(Mp("mnt"), "--entry-cache", "60", "--attr-cache", "60");
        var mp = m.MountPoint;

        var lines = await StatAllAsync(mp);
        Assert.Equal(Enumerable.Range(0, Files).Select(i => $"d/f{i:D3} {i + 1}"), lines);
        var hits = await CounterAsync(mp, Hits);
        log.WriteLine($"after {Files} stats: {hits} lookups from the cache");
        // The first misses go to the metaserver; the rest are answered from the listing they caused.
        Assert.True(hits >= Files - 5, $"only {hits} of {Files} lookups came from the cache");
        Assert.True(await CounterAsync(mp, Listings) >= 1);

        // This mount's changes, then the kernel drops its dentries so that each name is looked up again.
        await Shell.OkAsync("printf hello > d/f005 && rm d/f006 && mv d/f007 d/h007 && chmod 600 d/f008 && touch d/new", mp);
        await Shell.OkAsync("sync && echo 2 > /proc/sys/vm/drop_caches");
        Assert.Equal("5\n", await Shell.OkAsync("stat -c %s d/f005", mp));
        await Shell.OkAsync("test ! -e d/f006 && test ! -e d/f007 && test -e d/h007 && test -e d/new", mp);
        Assert.Equal("600\n", await Shell.OkAsync("stat -c %a d/f008", mp));
        Assert.Equal(Enumerable.Range(10, 10).Select(i => $"d/f{i:D3} {i + 1}"), await StatAllAsync(mp, 10, 10));
        Assert.True(await CounterAsync(mp, Hits) > hits, "no lookup came from the cache after the dentries were dropped");

        // The root's internal files still answer by name once the root's listing is cached.
        await Shell.OkAsync("stat r1 r2 r3 >/dev/null && stat r1 r2 r3 >/dev/null", mp);
        Assert.Contains("\"vfs\"", await Shell.OkAsync("cat .config", mp), StringComparison.Ordinal);
        await Shell.OkAsync("test -f .accesslog && test -f .stats", mp);
    }

    [Fact(Timeout = TestTimeoutMs)]
    public async Task Another_mounts_rename_unlink_and_write_show_once_the_entry_period_has_passed()
    {
        const int EntrySec = 2;
        var other = await OtherAsync();
        await MakeFilesAsync(other.MountPoint);
        var sec = EntrySec.ToString(CultureInfo.InvariantCulture);
        var m = await _env.MountAsync(Mp("mnt"), "--entry-cache", sec, "--attr-cache", sec);
        var mp = m.MountPoint;

        Assert.Equal(Files, (await StatAllAsync(mp)).Length);
        Assert.True(await CounterAsync(mp, Hits) > 0, "no lookup came from the cache");

        await Shell.OkAsync("mv d/f030 d/g030 && rm d/f031 && printf 123456789 > d/f032", other.MountPoint);
        // The listing and the entries the kernel got from it expire together, EntrySec after the listing was read;
        // the margin is for the kernel receiving the reply later than it was made.
        await Task.Delay(TimeSpan.FromSeconds(EntrySec + 2));
        await Shell.OkAsync("test ! -e d/f030 && test -e d/g030 && test ! -e d/f031", mp);
        Assert.Equal("9\n", await Shell.OkAsync("stat -c %s d/f032", mp));
    }
}
