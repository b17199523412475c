// Follows the volume settings on the metaserver while mounted: bandwidth and metadata rate limits change without a remount.
using Microsoft.Extensions.Logging;
using MirrorFS.Core.Meta;

namespace MirrorFS.Client.Vfs;

/// <summary>
/// Reads the volume every <see cref="VfsOptions.SettingsPollMs"/> and sets the three limiters from it; a limit given as
/// a mount option (non-null in <see cref="VfsOptions"/>) overrides the volume's. Each change is logged once.
/// </summary>
internal sealed class LiveSettings : IAsyncDisposable
{
    private readonly IMetaClient _meta;
    private readonly VfsOptions _options;
    private readonly ILogger _log;
    private readonly CancellationTokenSource _stop = new();
    private Task? _loop;
    private Volume _volume;

    /// <param name="metaOps">The session's call limiter (the session owns it).</param>
    public LiveSettings(IMetaClient meta, Volume volume, VfsOptions options, RateLimiter metaOps, ILogger log)
    {
        MetaOps = metaOps;
        _meta = meta;
        _volume = volume;
        _options = options;
        _log = log;
        Apply(volume, initial: true);
    }

    public RateLimiter Upload { get; } = new();

    public RateLimiter Download { get; } = new();

    public RateLimiter MetaOps { get; }

    /// <summary>The volume settings as last read.</summary>
    public Volume Volume => Volatile.Read(ref _volume);

    public void Start() => _loop ??= Task.Run(LoopAsync, CancellationToken.None);

    private void Apply(Volume v, bool initial)
    {
        var old = Volatile.Read(ref _volume);
        Set(Upload, "upload limit", _options.UploadLimitBytes, ToLong(old.UploadLimitBytes), ToLong(v.UploadLimitBytes), "/s", initial);
        Set(Download, "download limit", _options.DownloadLimitBytes, ToLong(old.DownloadLimitBytes), ToLong(v.DownloadLimitBytes), "/s", initial);
        Set(MetaOps, "metadata ops limit", _options.MetaOpsLimit, old.MetaOpsLimit, v.MetaOpsLimit, " ops/s", initial);
        Volatile.Write(ref _volume, v);
    }

    private static long ToLong(ulong v) => (long)Math.Min(v, long.MaxValue);

    private void Set(RateLimiter limiter, string what, long? mountOption, long oldValue, long newValue, string unit, bool initial)
    {
        var rate = mountOption ?? newValue;
        if (initial)
        {
            limiter.SetRate(rate);
            if (rate != 0)
            {
                _log.LogInformation("{What} is {Rate} ({Source})", what, Show(rate, unit), mountOption is null ? "volume settings" : "mount option");
            }
            return;
        }
        if (mountOption is not null && newValue != oldValue)
        {
            _log.LogInformation("volume {What} changed to {Value}; the mount option keeps {Rate}", what, Show(newValue, unit), Show(rate, unit));
        }
        if (rate != limiter.Rate)
        {
            limiter.SetRate(rate);
            _log.LogInformation("{What} is now {Rate} (volume settings)", what, Show(rate, unit));
        }
    }

    private static string Show(long rate, string unit) =>
        rate == 0 ? "unlimited" : unit == "/s" ? FormatBytes(rate) + "/s" : rate.ToString(System.Globalization.CultureInfo.InvariantCulture) + unit;

    private static string FormatBytes(long bytes)
    {
        string[] units = ["B", "KiB", "MiB", "GiB", "TiB"];
        double v = bytes;
        var u = 0;
        while (v >= 1024 && u < units.Length - 1)
        {
            v /= 1024;
            u++;
        }
        return string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{v:0.##} {units[u]}");
    }

    private async Task LoopAsync()
    {
        var ct = _stop.Token;
        while (!ct.IsCancellationRequested)
        {
            try
            {
                await Task.Delay(Math.Max(100, _options.SettingsPollMs), ct).ConfigureAwait(false);
                // Not through the session's limiter: a tight metadata limit must not delay its own removal.
                var r = await _meta.GetVolumeAsync(new GetVolumeRequest { Cred = new Credentials() }, ct).ConfigureAwait(false);
                if (r.Errno == 0)
                {
                    Apply(r.Volume, initial: false);
                }
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                _log.LogDebug("reading the volume settings failed: {Error}; will try again", e.Message);
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        if (_loop is not null)
        {
            await _loop.ConfigureAwait(false);
        }
        _stop.Dispose();
        Upload.Dispose();
        Download.Dispose();
    }
}
