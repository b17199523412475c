// mount --backup-meta: one client at a time (a metadata lease) writes a gzip dump to {volume}/meta/ in the bucket.
using System.Globalization;
using System.IO.Compression;
using Microsoft.Extensions.Logging;
using MirrorFS.Client.Vfs;
using MirrorFS.Core.Meta;
using MirrorFS.Core.Storage;

namespace MirrorFS.Client.Dump;

public sealed record MetaBackupOptions
{
    /// <summary>A backup is due when the newest one in the bucket is at least this old.</summary>
    public required TimeSpan Interval { get; init; }

    /// <summary>Newest backups kept; older ones are deleted after each new one.</summary>
    public int Keep { get; init; } = 7;

    /// <summary>Above this many inodes the backup is skipped with a warning (a dump that large belongs to an operator).</summary>
    public ulong SkipAboveInodes { get; init; } = 1_000_000;

    /// <summary>How long the lease lets one client write a backup before another may take over.</summary>
    public TimeSpan LeaseDuration { get; init; } = TimeSpan.FromHours(1);

    /// <summary>Largest compressed backup uploaded (the object store takes one buffer per object).</summary>
    public long BackupBytesMax { get; init; } = 1L << 30;

    /// <summary>Where the dump is compressed before upload; null = the temp directory.</summary>
    public string? SpoolDirectory { get; init; }
}

/// <summary>
/// Checks every tenth of the interval (1 s to 10 min) whether a backup is due, so restarts and several mounts do
/// not multiply backups: due means the newest <c>dump-*.json.gz</c> under <c>{volume}/meta/</c> is older than the
/// interval. A due backup is written only by the session holding the <see cref="LeaseName"/> lease.
/// </summary>
public sealed class MetaBackup : IAsyncDisposable
{
    public const string LeaseName = "backup-meta";
    public const string KeyPrefix = "dump-";
    public const string KeySuffix = ".json.gz";
    private const string TimeFormat = "yyyyMMdd-HHmmss";

    private readonly MetaSession _session;
    private readonly IObjectStore _store;
    private readonly string _volume;
    private readonly MetaBackupOptions _options;
    private readonly ILogger _log;
    private readonly CancellationTokenSource _stop = new();
    private Task? _loop;
    private DateTimeOffset _lastSkipWarning = DateTimeOffset.MinValue;

    public MetaBackup(MetaSession session, IObjectStore store, string volume, MetaBackupOptions options, ILogger log)
    {
        if (options.Interval < TimeSpan.FromSeconds(1) || options.Keep < 1)
        {
            throw new ArgumentException("backup interval must be at least 1 s and at least one backup must be kept");
        }
        _session = session;
        _store = store;
        _volume = volume;
        _options = options;
        _log = log;
    }

    public string Prefix => $"{_volume}/meta/{KeyPrefix}";

    public TimeSpan CheckPeriod =>
        TimeSpan.FromTicks(Math.Clamp(_options.Interval.Ticks / 10, TimeSpan.TicksPerSecond, TimeSpan.TicksPerMinute * 10));

    public void Start() => _loop ??= Task.Run(LoopAsync);

    /// <summary>The key a backup taken at <paramref name="at"/> is stored under.</summary>
    public string KeyFor(DateTimeOffset at) =>
        Prefix + at.UtcDateTime.ToString(TimeFormat, CultureInfo.InvariantCulture) + KeySuffix;

    private async Task LoopAsync()
    {
        var ct = _stop.Token;
        while (!ct.IsCancellationRequested)
        {
            try
            {
                await Task.Delay(CheckPeriod, ct).ConfigureAwait(false);
                await RunOnceAsync(ct).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                _log.LogWarning("metadata backup failed: {Error}; will try again in {Period}", e.Message, CheckPeriod);
            }
        }
    }

    /// <summary>One check: writes a backup if one is due and this session gets the lease; returns its key or null.</summary>
    public async Task<string?> RunOnceAsync(CancellationToken ct)
    {
        var now = DateTimeOffset.UtcNow;
        if (!await DueAsync(now, ct).ConfigureAwait(false))
        {
            return null;
        }
        var statfs = await _session.ReadAsync(new StatFsRequest { Cred = new Credentials() },
            static (m, r, c) => m.StatFsAsync(r, c), ct).ConfigureAwait(false);
        if (statfs.Errno == 0 && statfs.UsedInodes > _options.SkipAboveInodes)
        {
            if (now - _lastSkipWarning >= _options.Interval)
            {
                _lastSkipWarning = now;
                _log.LogWarning("metadata backup skipped: the volume has {Inodes} inodes, above --backup-skip-above {Max}; " +
                                "back it up with mirrorfs dump instead", statfs.UsedInodes, _options.SkipAboveInodes);
            }
            return null;
        }
        var lease = await _session.MutateAsync(new AcquireLeaseRequest { Name = LeaseName, DurationNs = _options.LeaseDuration.Ticks * 100 },
            static (m, r, c) => m.AcquireLeaseAsync(r, c), ct).ConfigureAwait(false);
        if (lease.Errno == Errno.EBUSY)
        {
            _log.LogDebug("metadata backup left to session {Holder}, which holds the lease", lease.Holder);
            return null;
        }
        if (lease.Errno != 0)
        {
            throw new IOException($"the metaserver refused the backup lease: errno {lease.Errno}");
        }
        try
        {
            // Someone may have finished a backup between the first check and the lease.
            if (!await DueAsync(now, ct).ConfigureAwait(false))
            {
                return null;
            }
            var key = await WriteBackupAsync(now, ct).ConfigureAwait(false);
            await PruneAsync(ct).ConfigureAwait(false);
            return key;
        }
        finally
        {
            await ReleaseAsync().ConfigureAwait(false);
        }
    }

    private async Task<bool> DueAsync(DateTimeOffset now, CancellationToken ct)
    {
        var newest = (await ListAsync(ct).ConfigureAwait(false)).LastOrDefault();
        return newest.Key is null || now - newest.Time >= _options.Interval;
    }

    /// <summary>Existing backups by time, oldest first (keys that do not parse are not ours and are left alone).</summary>
    public async Task<List<(string Key, DateTimeOffset Time)>> ListAsync(CancellationToken ct)
    {
        var found = new List<(string, DateTimeOffset)>();
        await foreach (var o in _store.ListAllAsync(Prefix, ct: ct).ConfigureAwait(false))
        {
            var stamp = o.Key[Prefix.Length..];
            if (stamp.EndsWith(KeySuffix, StringComparison.Ordinal)
                && DateTime.TryParseExact(stamp[..^KeySuffix.Length], TimeFormat, CultureInfo.InvariantCulture,
                    DateTimeStyles.AdjustToUniversal | DateTimeStyles.AssumeUniversal, out var t))
            {
                found.Add((o.Key, new DateTimeOffset(t, TimeSpan.Zero)));
            }
        }
        found.Sort((a, b) => a.Item2.CompareTo(b.Item2));
        return found;
    }

    private async Task<string> WriteBackupAsync(DateTimeOffset now, CancellationToken ct)
    {
        var dir = _options.SpoolDirectory ?? Path.GetTempPath();
        var path = Path.Combine(dir, $"mirrorfs-backup-{Guid.NewGuid():N}.json.gz");
        await using var spool = new FileStream(path, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.None, 1 << 16, FileOptions.Asynchronous);
        File.Delete(path); // nothing is left behind by a crash
        DumpResult result;
        await using (var gz = new GZipStream(spool, CompressionLevel.Optimal, leaveOpen: true))
        {
            result = await MetaDumpWriter.WriteAsync(_session.Meta.DumpAsync(new DumpRequest { Cred = new Credentials() }, ct), gz,
                keepSecretKey: false, now, ct).ConfigureAwait(false);
        }
        if (spool.Length > _options.BackupBytesMax)
        {
            throw new IOException($"the compressed backup is {spool.Length} bytes, above the {_options.BackupBytesMax} the upload takes; use mirrorfs dump");
        }
        var data = new byte[spool.Length];
        spool.Position = 0;
        await spool.ReadExactlyAsync(data, ct).ConfigureAwait(false);
        var key = KeyFor(now);
        await _store.PutAsync(key, data, ct).ConfigureAwait(false);
        _log.LogInformation("metadata backup {Key} written: {Inodes} inodes at log index {Index}, {Bytes} bytes",
            key, result.Inodes, result.Index, data.Length);
        return key;
    }

    private async Task PruneAsync(CancellationToken ct)
    {
        var all = await ListAsync(ct).ConfigureAwait(false);
        var old = all.Take(Math.Max(0, all.Count - _options.Keep)).Select(b => b.Key).ToList();
        if (old.Count > 0)
        {
            await _store.DeleteManyAsync(old, ct).ConfigureAwait(false);
        }
    }

    private async Task ReleaseAsync()
    {
        try
        {
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            await _session.MutateAsync(new AcquireLeaseRequest { Name = LeaseName, DurationNs = 0 },
                static (m, r, c) => m.AcquireLeaseAsync(r, c), cts.Token).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            _log.LogWarning("releasing the backup lease failed ({Error}); it lapses by itself", e.Message);
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
    }
}
