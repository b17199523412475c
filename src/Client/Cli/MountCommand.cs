// mirrorfs mount: serves a volume through FUSE — in the foreground, or as a background process with --background.
using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using Microsoft.Extensions.Logging;
using MirrorFS.Client.Dump;
using MirrorFS.Client.Fuse;
using MirrorFS.Client.Mount;
using MirrorFS.Client.Vfs;
using MirrorFS.Core.Metrics;
using MirrorFS.Core.Storage;
using Volume = MirrorFS.Core.Meta.Volume;

namespace MirrorFS.Client.Cli;

public static class MountCommand
{
    /// <summary>How long --background waits for the child to finish mounting.</summary>
    public const int BackgroundMountWaitMs = 60_000;

    public static Command Create(CliContext ctx)
    {
        var metaUrl = new Argument<string>("META-URL") { Description = "mirrorfs://HOST:PORT[,HOST:PORT...]/VOLUME" };
        var mountPoint = new Argument<string>("MOUNTPOINT") { Description = "An existing, empty directory" };
        var background = new Option<bool>("--background", "-d") { Description = "Mount, then return; the mount keeps running" };
        var logFile = new Option<string?>("--log") { Description = "Log file of a background mount (default: /tmp/mirrorfs-<volume>.log)" };
        var cacheDir = new Option<string?>("--cache-dir") { Description = "Directory of the on-disk block cache (default: none)" };
        var cacheSize = new Option<string>("--cache-size") { Description = "Bytes of the disk cache", DefaultValueFactory = _ => "1G" };
        var memCache = new Option<string>("--memory-cache") { Description = "Bytes of blocks cached in memory", DefaultValueFactory = _ => "128M" };
        var bufferSize = new Option<string>("--buffer-size") { Description = "Bytes of written data buffered before uploads finish", DefaultValueFactory = _ => "256M" };
        var maxUploads = new Option<int>("--max-uploads") { Description = "Block uploads in flight", DefaultValueFactory = _ => 16 };
        var prefetch = new Option<int>("--prefetch") { Description = "Blocks read ahead on sequential reads", DefaultValueFactory = _ => 8 };
        var attrCache = new Option<double>("--attr-cache") { Description = "Seconds the kernel caches attributes", DefaultValueFactory = _ => 1.0 };
        var entryCache = new Option<double>("--entry-cache") { Description = "Seconds the kernel caches name lookups", DefaultValueFactory = _ => 1.0 };
        var noDirCache = new Option<bool>("--no-dir-cache")
        {
            Description = "Ask the metaserver for every lookup (by default, lookups of several names in one directory within a second "
                + "read its listing, which then answers for --entry-cache seconds)",
        };
        var readOnly = new Option<bool>("--read-only") { Description = "Mount read-only" };
        var uploadLimit = new Option<string?>("--upload-limit") { Description = "Upload bandwidth, e.g. 100M per second (0 = unlimited); overrides the volume's (mirrorfs config)" };
        var downloadLimit = new Option<string?>("--download-limit") { Description = "Download bandwidth, e.g. 100M per second (0 = unlimited); overrides the volume's" };
        var metaOpsLimit = new Option<long?>("--meta-ops-limit") { Description = "Metadata calls per second (0 = unlimited); overrides the volume's" };
        var deleteInterval = new Option<int>("--delete-interval") { Description = "Seconds between passes deleting blocks of removed data (0 = this client does not delete)", DefaultValueFactory = _ => 10 };
        var compactSlices = new Option<int>("--compact-slices") { Description = "Compact a chunk this client wrote once it has more slices than this (0 = never)", DefaultValueFactory = _ => 20 };
        var compactDelay = new Option<int>("--compact-delay") { Description = "Seconds slices replaced by compaction are kept before deletion", DefaultValueFactory = _ => 3600 };
        var tokenFile = MetaConnection.TokenFileOption();
        var backupMeta = new Option<string>("--backup-meta")
        {
            Description = "Write a compressed metadata dump to VOLUME/meta/ in the bucket this often (one client at a time; 0 = off)",
            DefaultValueFactory = _ => "1h",
        };
        var backupSkipAbove = new Option<ulong>("--backup-skip-above")
        {
            Description = "Skip metadata backups (with a warning) when the volume has more inodes than this",
            DefaultValueFactory = _ => 1_000_000,
        };
        var backupKeep = new Option<int>("--backup-keep") { Description = "Metadata backups kept in the bucket", DefaultValueFactory = _ => 7 };
        var primaryTokenFile = new Option<string?>("--primary-token-file")
        {
            Description = $"Mounting a mirror: file holding the primary cluster's token (else ${MirrorConnection.PrimaryTokenEnvironment}, else the mirror's)",
        };
        var metrics = new Option<string?>("--metrics")
        {
            Description = "Serve Prometheus metrics at http://ADDR/metrics, e.g. 127.0.0.1:9567 (port 0: any free port)",
        };
        var showInternal = new Option<bool>("--show-internal")
        {
            Description = "List .stats, .config and .accesslog in the root (always reachable by name; unlisted by default so that "
                + "diff -r, grep -r, rsync and backups neither block on .accesslog nor copy changing figures)",
        };
        var readAhead = new Option<string>("--read-ahead")
        {
            Description = "Kernel read-ahead of the mount (its read_ahead_kb; larger reads reach the client in 1 MiB requests; 0 = the kernel's default)",
            DefaultValueFactory = _ => "1M",
        };
        var fuseOptions = new Option<string?>("--fuse-options") { Description = "More kernel mount options, comma-separated (nosuid,nodev,allow_other...)" };
        var cmd = new Command("mount", "Mount a volume (-o a,b=c is read as --a --b c, as /etc/fstab and mount.mirrorfs pass options)")
        {
            metaUrl, mountPoint, background, logFile, cacheDir, cacheSize, memCache, bufferSize, maxUploads, prefetch,
            attrCache, entryCache, noDirCache, readOnly, uploadLimit, downloadLimit, metaOpsLimit, deleteInterval, compactSlices, compactDelay,
            tokenFile, backupMeta, backupSkipAbove, backupKeep, primaryTokenFile, metrics, showInternal, readAhead, fuseOptions,
        };
        cmd.SetAction(CliApp.Guard(ctx, "mount", async (parse, ct) =>
        {
            var url = MetaUrl.Parse(parse.GetValue(metaUrl)!);
            var mp = MountTable.Normalize(parse.GetValue(mountPoint)!);
            CheckMountPoint(mp);
            var options = new VfsOptions
            {
                AttrTimeoutSec = NonNegative(parse.GetValue(attrCache), "--attr-cache"),
                EntryTimeoutSec = NonNegative(parse.GetValue(entryCache), "--entry-cache"),
                DirCache = !parse.GetValue(noDirCache),
                UploadConcurrencyMax = Positive(parse.GetValue(maxUploads), "--max-uploads"),
                PrefetchBlocks = Math.Max(0, parse.GetValue(prefetch)),
                BufferBytesMax = Sizes.Parse(parse.GetValue(bufferSize)!, "--buffer-size"),
                MemoryCacheBytesMax = Sizes.Parse(parse.GetValue(memCache)!, "--memory-cache"),
                DiskCacheDirectory = parse.GetValue(cacheDir) is { } d ? Path.GetFullPath(d) : null,
                DiskCacheBytesMax = Sizes.Parse(parse.GetValue(cacheSize)!, "--cache-size"),
                UploadLimitBytes = parse.GetValue(uploadLimit) is { } up ? Sizes.Parse(up, "--upload-limit") : null,
                DownloadLimitBytes = parse.GetValue(downloadLimit) is { } down ? Sizes.Parse(down, "--download-limit") : null,
                MetaOpsLimit = parse.GetValue(metaOpsLimit) is { } ops
                    ? ops >= 0 ? ops : throw new CliException($"--meta-ops-limit must be 0 (unlimited) or more, not {ops}")
                    : null,
                DeleteIntervalMs = Math.Min(NonNegative(parse.GetValue(deleteInterval), "--delete-interval"), int.MaxValue / 1000) * 1000,
                CompactSlicesMax = NonNegative(parse.GetValue(compactSlices), "--compact-slices"),
                CompactDeleteDelay = TimeSpan.FromSeconds(NonNegative(parse.GetValue(compactDelay), "--compact-delay")),
            };
            var backupEvery = Durations.Parse(parse.GetValue(backupMeta)!, "--backup-meta");
            if (backupEvery > TimeSpan.Zero && backupEvery < TimeSpan.FromSeconds(1))
            {
                throw new CliException("--backup-meta must be 0 (off) or at least 1s");
            }
            var backup = backupEvery == TimeSpan.Zero ? null : new MetaBackupOptions
            {
                Interval = backupEvery,
                SkipAboveInodes = parse.GetValue(backupSkipAbove),
                Keep = Positive(parse.GetValue(backupKeep), "--backup-keep"),
            };
            var token = MetaConnection.ResolveToken(url, parse.GetValue(tokenFile), ctx);
            var primaryToken = MirrorConnection.ResolvePrimaryToken(url, parse.GetValue(primaryTokenFile), ctx);
            var readAheadBytes = Sizes.Parse(parse.GetValue(readAhead)!, "--read-ahead");
            if (readAheadBytes > 1L << 30)
            {
                throw new CliException($"--read-ahead must be at most 1G, not {parse.GetValue(readAhead)}");
            }
            if (parse.GetValue(background))
            {
                var log = parse.GetValue(logFile) ?? Path.Combine(Path.GetTempPath(), $"mirrorfs-{url.Volume}.log");
                return await StartBackgroundAsync(ctx, url, mp, log, token, primaryToken, ct).ConfigureAwait(false);
            }
            var settings = new ForegroundSettings(parse.GetValue(readOnly), parse.GetValue(metrics), !parse.GetValue(showInternal),
                FuseOptionList(parse.GetValue(fuseOptions)), backup, (int)(readAheadBytes / 1024));
            return await RunForegroundAsync(ctx, url, mp, token, primaryToken, options, settings, ct).ConfigureAwait(false);
        }));
        return cmd;
    }

    /// <summary>Mount settings beyond the VFS options.</summary>
    private sealed record ForegroundSettings(bool ReadOnly, string? MetricsAddress, bool HideInternal, IReadOnlyList<string> FuseOptions,
        MetaBackupOptions? Backup, int ReadAheadKb);

    /// <summary>Environment variable naming another updatedb.conf (tests point it at a copy).</summary>
    public const string UpdatedbConfEnvironment = "MIRRORFS_UPDATEDB_CONF";

    private static string[] FuseOptionList(string? list) =>
        list is null ? [] : list.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    private static double NonNegative(double v, string what) =>
        v >= 0 ? v : throw new CliException($"{what} must be 0 or more seconds, not {v.ToString(CultureInfo.InvariantCulture)}");

    private static int NonNegative(int v, string what) => v >= 0 ? v : throw new CliException($"{what} must be 0 or more, not {v}");

    private static int Positive(int v, string what) => v > 0 ? v : throw new CliException($"{what} must be at least 1, not {v}");

    private static void CheckMountPoint(string mp)
    {
        if (!Directory.Exists(mp))
        {
            throw new CliException($"mount point {mp} does not exist: create it with mkdir -p {mp}");
        }
        if (MountTable.ReadSelf().Any(m => m.MountPoint == mp))
        {
            throw new CliException($"{mp} is already a mount point: unmount it first (mirrorfs umount {mp})");
        }
        if (Directory.EnumerateFileSystemEntries(mp).Any())
        {
            throw new CliException($"mount point {mp} is not empty: use an empty directory");
        }
    }

    private static async Task<int> RunForegroundAsync(CliContext ctx, MetaUrl url, string mp, string? token, string? primaryToken,
        VfsOptions options, ForegroundSettings settings, CancellationToken ct)
    {
        using var loggers = LoggerFactory.Create(b => b.AddSimpleConsole(o =>
        {
            o.SingleLine = true;
            o.TimestampFormat = "HH:mm:ss.fff ";
        }).SetMinimumLevel(LogLevel.Information));
        var log = loggers.CreateLogger("mirrorfs");
        var registry = new MetricsRegistry();
        ProcessMetrics.Register(registry);
        var direct = MetaConnection.Open(url, token, ctx, registry);
        Volume volume;
        try
        {
            volume = await MetaConnection.GetVolumeAsync(direct, url, ct).ConfigureAwait(false);
        }
        catch
        {
            await direct.DisposeAsync().ConfigureAwait(false);
            throw;
        }
        // A mirror's reads stay in this region; writes go to the primary (MirrorConnection). Every store is metered
        // under its retries: every try is one request to the store.
        var storeMetrics = new ObjectStoreMetrics(registry);
        var (routed, routedStore) = MirrorConnection.Open(direct, volume, url, token, primaryToken, ctx,
            uri => new RetryingObjectStore(new MeteredObjectStore(ObjectStoreFactory.OpenRaw(uri), storeMetrics)));
        await using var meta = routed;
        await using var store = routedStore;
        if (volume.MirrorOf.Length > 0)
        {
            log.LogInformation("{Url} mirrors {Primary}: reads here, writes to the primary", url, volume.MirrorOf);
        }
        options = options with { Metrics = new VfsMetrics(registry) };
        await using var vfs = await MetaConnection.CallAsync(url,
            () => MirrorVfs.CreateAsync(meta, store, options, loggers.CreateLogger("mirrorfs.vfs"), ct: ct)).ConfigureAwait(false);
        // A read-only mount writes nothing to the bucket, backups included.
        await using var backup = settings.Backup is null || settings.ReadOnly
            ? null
            : new MetaBackup(vfs.Session, store, volume.Name, settings.Backup, loggers.CreateLogger("mirrorfs.backup"));
        registry.GaugeCallback("mirrorfs_buffered_bytes", "Bytes written but not yet committed.", () => vfs.BufferedBytes);
        registry.GaugeCallback("mirrorfs_blockcache_memory_bytes", "Bytes of blocks in the memory cache.", () => vfs.MemoryCache.Bytes);
        registry.GaugeCallback("mirrorfs_blockcache_disk_bytes", "Bytes of blocks in the disk cache.", () => vfs.DiskCache?.Bytes ?? 0);

        MetricsHttpServer? metricsServer = null;
        if (settings.MetricsAddress is { } addr)
        {
            try
            {
                metricsServer = await MetricsHttpServer.StartAsync(addr, registry, loggers, ct).ConfigureAwait(false);
            }
            catch (ArgumentException e)
            {
                throw new CliException(e.Message);
            }
            log.LogInformation("metrics at {Url}", metricsServer.Url);
            if (System.Net.IPEndPoint.TryParse(addr, out var ep) && !System.Net.IPAddress.IsLoopback(ep.Address))
            {
                log.LogWarning("metrics are served to other hosts on {Address}; use 127.0.0.1:PORT to keep them local", addr);
            }
        }
        await using var metricsOwner = metricsServer;

        var info = new MountInfo
        {
            MetaUrl = url.Redacted,
            MountPoint = mp,
            FsName = url.ToString(),
            FsType = FsType,
            ReadOnly = settings.ReadOnly,
            HideInternalFiles = settings.HideInternal,
            MetricsUrl = metricsServer?.Url,
            FuseOptions = settings.FuseOptions,
        };
        var accessLog = new AccessLog();
        var internals = new InternalFiles(registry, accessLog, () => MountConfigJson.Build(info, vfs.Options, vfs.Volume), !settings.HideInternal);
        var fuseOptions = new FuseMountOptions
        {
            FsName = info.FsName,
            Subtype = "mirrorfs",
            DefaultPermissions = true,
            ReadOnly = settings.ReadOnly,
            ExtraOptions = settings.FuseOptions,
            ReadAheadKb = settings.ReadAheadKb,
            Logger = loggers.CreateLogger("mirrorfs.fuse"),
            Observer = new FuseMetrics(registry, accessLog),
        };
        if (Environment.IsPrivilegedProcess)
        {
            KeepUpdatedbAway(ctx, log);
        }
        FuseMount mount;
        try
        {
            mount = FuseMount.Mount(new VfsFuseAdapter(vfs, internals), mp, fuseOptions);
        }
        catch (Exception e) when (e is FuseMountException or ArgumentException)
        {
            throw new CliException(e.Message);
        }
        using (mount)
        {
            var loop = mount.RunAsync();
            backup?.Start();
            await ctx.Out.WriteLineAsync($"mirrorfs: {url.Volume} ({ObjectStoreFactory.Redact(volume.Storage)}) mounted at {mp}; " +
                                         $"stop with: mirrorfs umount {mp}").ConfigureAwait(false);
            await ctx.Out.FlushAsync(ct).ConfigureAwait(false);
            try
            {
                await loop.WaitAsync(ct).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                log.LogInformation("interrupted: unmounting {MountPoint}", mp);
            }
            mount.Unmount();
        }
        var flush = await vfs.FlushAllAsync().ConfigureAwait(false);
        if (flush != 0)
        {
            throw new CliException($"unmounted {mp}, but buffered writes could not be stored (errno {flush}); see the log");
        }
        return 0;
    }

    // Starts this same program in the foreground mode as a detached child and waits until the mount appears.
    private static async Task<int> StartBackgroundAsync(CliContext ctx, MetaUrl url, string mp, string log, string? token,
        string? primaryToken, CancellationToken ct)
    {
        var args = Environment.GetCommandLineArgs().Skip(1).Where(a => a is not "--background" and not "-d").ToList();
        var psi = new ProcessStartInfo("/bin/sh") { UseShellExecute = false };
        // setsid detaches from the terminal's session so closing it does not stop the mount; output goes to the log.
        var self = SelfCommand();
        psi.ArgumentList.Add("-c");
        psi.ArgumentList.Add("exec setsid \"$@\" >>\"$LOGFILE\" 2>&1 </dev/null");
        psi.ArgumentList.Add("mirrorfs-mount");
        foreach (var a in self.Concat(args))
        {
            psi.ArgumentList.Add(a);
        }
        psi.Environment["LOGFILE"] = log;
        if (token is not null)
        {
            psi.Environment[MetaConnection.TokenEnvironment] = token;
        }
        if (primaryToken is not null)
        {
            psi.Environment[MirrorConnection.PrimaryTokenEnvironment] = primaryToken;
        }
        using var child = Process.Start(psi) ?? throw new CliException("could not start the background mount process");
        var deadline = Environment.TickCount64 + BackgroundMountWaitMs;
        while (Environment.TickCount64 < deadline)
        {
            if (MountTable.ReadSelf().Any(m => m.MountPoint == mp))
            {
                await ctx.Out.WriteLineAsync($"mirrorfs: {url.Volume} mounted at {mp} in the background (pid {child.Id}, log {log}); " +
                                             $"stop with: mirrorfs umount {mp}").ConfigureAwait(false);
                return 0;
            }
            if (child.HasExited)
            {
                var tail = File.Exists(log) ? File.ReadLines(log).TakeLast(1).FirstOrDefault() : null;
                throw new CliException($"background mount exited with code {child.ExitCode}: {tail ?? "no output"} (log {log})");
            }
            await Task.Delay(100, ct).ConfigureAwait(false);
        }
        throw new CliException($"{mp} did not appear mounted within {BackgroundMountWaitMs} ms (log {log})");
    }

    /// <summary>The type /proc/mounts shows: FUSE's "fuse." plus our subtype.</summary>
    public const string FsType = "fuse.mirrorfs";

    // A mount as root adds our type to updatedb's PRUNEFS, so nightly locate scans skip the volume.
    private static void KeepUpdatedbAway(CliContext ctx, ILogger log)
    {
        var path = ctx.Environment(UpdatedbConfEnvironment) is { Length: > 0 } p ? p : UpdatedbConf.DefaultPath;
        try
        {
            if (UpdatedbConf.AddPruneFs(path, FsType) == PruneFsResult.Added)
            {
                log.LogInformation("added {FsType} to PRUNEFS in {Path}", FsType, path);
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            log.LogWarning("could not add {FsType} to PRUNEFS in {Path}: {Error}", FsType, path, e.Message);
        }
    }

    /// <summary>How to run this program again: the executable, plus the assembly when run through dotnet.</summary>
    internal static string[] SelfCommand()
    {
        var process = Environment.ProcessPath ?? "dotnet";
        return Path.GetFileNameWithoutExtension(process) == "dotnet"
            ? [process, typeof(MountCommand).Assembly.Location]
            : [process];
    }
}
