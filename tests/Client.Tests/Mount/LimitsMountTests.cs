// Live limits on real mounts: `mirrorfs config` changes the upload and metadata limits of a running mount, and a mount
// option overrides the volume's download limit. Only lower bounds on time are asserted (load only makes things slower).
using System.Diagnostics;
using Xunit.Abstractions;

namespace MirrorFS.Client.Tests.Mount;

[Collection(MountCollection.Name)]
public sealed class LimitsMountTests(ITestOutputHelper log) : IAsyncLifetime
{
    private const int TestTimeoutMs = 240_000;

    /// <summary>The mount polls the settings every 3 s; the issue allows 10 s; this leaves room for a loaded machine.</summary>
    private const int PickUpWaitMs = 30_000;

    private MountEnv _env = null!;

    public async Task InitializeAsync() => _env = await MountEnv.StartAsync(log);

    public async Task DisposeAsync() => await _env.DisposeAsync();

    private static async Task WaitForLogAsync(MountProcess m, string text)
    {
        var deadline = Environment.TickCount64 + PickUpWaitMs;
        while (!m.Output.Contains(text, StringComparison.Ordinal))
        {
            Assert.True(Environment.TickCount64 < deadline, $"the mount did not log '{text}' within {PickUpWaitMs} ms:\n{m.Output}");
            await Task.Delay(100);
        }
    }

    private static async Task<double> TimedAsync(string script, string cwd)
    {
        var sw = Stopwatch.StartNew();
        await Shell.OkAsync(script, cwd);
        return sw.Elapsed.TotalSeconds;
    }

    [Fact(Timeout = TestTimeoutMs)]
    public async Task An_upload_limit_set_by_config_slows_a_running_mount()
    {
        var m = await _env.MountAsync(Path.Combine(_env.Root, "mnt"));
        var cfg = await _env.CliAsync("config", "--upload-limit", "2M");
        Assert.True(cfg.Code == 0, cfg.Err);
        Assert.Equal("upload limit: unlimited -> 2 MiB/s\n", cfg.Out);
        await WaitForLogAsync(m, "upload limit is now 2 MiB/s");

        // 16 MiB at 2 MiB/s with at most a second's burst: at least 7 s of uploads; 4 s leaves a wide margin.
        var seconds = await TimedAsync("dd if=/dev/urandom of=limited bs=1M count=16 conv=fsync status=none", m.MountPoint);
        log.WriteLine($"16 MiB under a 2 MiB/s upload limit took {seconds:0.0} s");
        Assert.True(seconds > 4, $"16 MiB took {seconds:0.0} s under a 2 MiB/s upload limit");
        Assert.Equal("16777216\n", await Shell.OkAsync("stat -c %s limited", m.MountPoint));

        var off = await _env.CliAsync("config", "--upload-limit", "0");
        Assert.Equal("upload limit: 2 MiB/s -> unlimited\n", off.Out);
        await WaitForLogAsync(m, "upload limit is now unlimited");
    }

    [Fact(Timeout = TestTimeoutMs)]
    public async Task A_metadata_ops_limit_set_by_config_slows_a_running_mount()
    {
        var m = await _env.MountAsync(Path.Combine(_env.Root, "mnt"));
        var cfg = await _env.CliAsync("config", "--meta-ops-limit", "20");
        Assert.Equal("meta ops limit: unlimited -> 20/s\n", cfg.Out);
        await WaitForLogAsync(m, "metadata ops limit is now 20 ops/s");

        // Each new file costs at least a create and a release: 120 calls at 20/s, 5 s after a second's burst.
        var seconds = await TimedAsync("for i in $(seq 1 60); do touch f$i; done", m.MountPoint);
        log.WriteLine($"60 creates under a 20 ops/s limit took {seconds:0.0} s");
        Assert.True(seconds > 4, $"60 creates took {seconds:0.0} s under a 20 ops/s limit");
        Assert.Equal("60\n", await Shell.OkAsync("ls | wc -l", m.MountPoint));
        await _env.CliAsync("config", "--meta-ops-limit", "0");
        await WaitForLogAsync(m, "metadata ops limit is now unlimited");
    }

    [Fact(Timeout = TestTimeoutMs)]
    public async Task A_download_limit_mount_option_overrides_the_volume()
    {
        var writer = await _env.MountAsync(Path.Combine(_env.Root, "w"));
        var outside = _env.NewDir("outside");
        await Shell.OkAsync($"head -c 16777216 /dev/urandom > '{outside}/data' && cp '{outside}/data' '{writer.MountPoint}/data'");
        Assert.Equal(0, (await _env.CliAsync("config", "--download-limit", "1G")).Code);

        var reader = await _env.MountAsync(Path.Combine(_env.Root, "r"), "--download-limit", "2M");
        await WaitForLogAsync(reader, "download limit is 2 MiB/s (mount option)");
        var seconds = await TimedAsync($"cmp '{outside}/data' '{reader.MountPoint}/data'", _env.Root);
        log.WriteLine($"reading 16 MiB under a 2 MiB/s download limit took {seconds:0.0} s");
        Assert.True(seconds > 4, $"reading 16 MiB took {seconds:0.0} s under a 2 MiB/s download limit");

        // A volume change is noted but the mount option stays in force.
        Assert.Equal(0, (await _env.CliAsync("config", "--download-limit", "0")).Code);
        await WaitForLogAsync(reader, "volume download limit changed to unlimited; the mount option keeps 2 MiB/s");
    }
}
