// Options for one FUSE mount: kernel mount options plus loop and shutdown limits.
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace MirrorFS.Client.Fuse;

public sealed class FuseMountOptions
{
    /// <summary>Shown as the source in /proc/mounts and df.</summary>
    public string FsName { get; init; } = "mirrorfs";
    /// <summary>Shown as fuse.SUBTYPE in the filesystem type column.</summary>
    public string Subtype { get; init; } = "mirrorfs";
    /// <summary>Let users other than the mounting one use the mount.</summary>
    public bool AllowOther { get; init; }
    /// <summary>Let the kernel check permissions from the mode bits (no access() calls reach the filesystem).</summary>
    public bool DefaultPermissions { get; init; }
    public bool ReadOnly { get; init; }
    /// <summary>Mount over a directory that has entries (hidden while mounted).</summary>
    public bool AllowNonEmpty { get; init; }
    /// <summary>Upper bound of libfuse worker threads.</summary>
    public int MaxThreads { get; init; } = 16;
    /// <summary>One /dev/fuse descriptor per worker thread.</summary>
    public bool CloneFd { get; init; }
    /// <summary>libfuse's own request trace on stderr.</summary>
    public bool Debug { get; init; }
    /// <summary>The mount's kernel read-ahead in KiB, written to its backing device's read_ahead_kb after mounting
    /// (needs root; 0 leaves the kernel's default, 128 KiB for FUSE).</summary>
    public int ReadAheadKb { get; init; }
    /// <summary>More -o options passed as they are (each without commas).</summary>
    public IReadOnlyList<string> ExtraOptions { get; init; } = [];
    /// <summary>How long Unmount waits for the loop to stop.</summary>
    public int UnmountTimeoutMs { get; init; } = 10_000;
    /// <summary>How long Unmount waits for handlers that have not replied yet before freeing the session.</summary>
    public int DrainTimeoutMs { get; init; } = 5_000;
    public ILogger Logger { get; init; } = NullLogger.Instance;
    /// <summary>Told about every answered request (metrics, access log); null for none.</summary>
    public IFuseRequestObserver? Observer { get; init; }

    internal const int MaxThreadsMax = 1024;

    /// <summary>The value of "-o", checked for characters that would split or smuggle options.</summary>
    internal string ToOptionString()
    {
        var opts = new List<string>
        {
            "fsname=" + EscapedFsName(FsName),
            "subtype=" + Checked(Subtype, nameof(Subtype)),
        };
        if (AllowOther) opts.Add("allow_other");
        if (DefaultPermissions) opts.Add("default_permissions");
        if (ReadOnly) opts.Add("ro");
        foreach (var o in ExtraOptions)
        {
            opts.Add(Checked(o, nameof(ExtraOptions)));
        }
        return string.Join(',', opts);
    }

    /// <summary>A META-URL with several hosts holds commas: libfuse's option parser reads "\," as a comma inside a
    /// value, so the fsname (the mount's source) keeps the whole URL.</summary>
    private static string EscapedFsName(string value)
    {
        if (string.IsNullOrEmpty(value) || value.AsSpan().IndexOfAny("\\\0 ") >= 0)
        {
            throw new ArgumentException($"FUSE mount option FsName '{value}' is empty or holds a backslash, space or NUL; pick a plain value", nameof(FsName));
        }
        return value.Replace(",", "\\,", StringComparison.Ordinal);
    }

    private static string Checked(string value, string what)
    {
        if (string.IsNullOrEmpty(value) || value.AsSpan().IndexOfAny(",\\\0 ") >= 0)
        {
            throw new ArgumentException($"FUSE mount option {what} '{value}' is empty or holds a comma, backslash, space or NUL; pick a plain value", what);
        }
        return value;
    }
}
