// Reads /proc/self/mountinfo: which mount holds a path, and what its file-system type and source are.
using System.Text;

namespace MirrorFS.Client.Cli;

public sealed record MountEntry(string MountPoint, string FsType, string Source);

public static class MountTable
{
    public const string MirrorFsType = "fuse.mirrorfs";
    public const string SelfMountInfo = "/proc/self/mountinfo";

    public static IReadOnlyList<MountEntry> ReadSelf() => Parse(File.ReadAllText(SelfMountInfo));

    /// <summary>Parses mountinfo text (proc(5)): "ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER".
    /// Lines that do not have that shape are skipped.</summary>
    public static IReadOnlyList<MountEntry> Parse(string text)
    {
        var mounts = new List<MountEntry>();
        foreach (var line in text.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            var f = line.Split(' ');
            var dash = f.Length < 7 ? -1 : Array.IndexOf(f, "-", 6);
            if (dash < 0 || dash + 2 >= f.Length)
            {
                continue;
            }
            mounts.Add(new MountEntry(Unescape(f[4]), Unescape(f[dash + 1]), Unescape(f[dash + 2])));
        }
        return mounts;
    }

    /// <summary>The mount that holds <paramref name="fullPath"/>: the longest mount point above it; of equal ones the
    /// last, since a later mount covers an earlier one.</summary>
    public static MountEntry? Containing(IReadOnlyList<MountEntry> mounts, string fullPath)
    {
        MountEntry? best = null;
        foreach (var m in mounts)
        {
            var inside = m.MountPoint == "/"
                || fullPath == m.MountPoint
                || fullPath.StartsWith(m.MountPoint + "/", StringComparison.Ordinal);
            if (inside && (best is null || m.MountPoint.Length >= best.MountPoint.Length))
            {
                best = m;
            }
        }
        return best;
    }

    /// <summary>An absolute path without a trailing slash, with a final symlink followed.</summary>
    public static string Normalize(string path)
    {
        var full = Path.GetFullPath(path);
        try
        {
            var target = new FileInfo(full).ResolveLinkTarget(returnFinalTarget: true);
            if (target is not null)
            {
                full = Path.GetFullPath(target.FullName);
            }
        }
        catch (IOException)
        {
            // Not a link, or a broken one: the path as given is the best answer.
        }
        return full.Length > 1 ? full.TrimEnd('/') : full;
    }

    // mountinfo escapes space, tab, newline and backslash as \ooo octal.
    private static string Unescape(string s)
    {
        if (!s.Contains('\\', StringComparison.Ordinal))
        {
            return s;
        }
        var sb = new StringBuilder(s.Length);
        for (var i = 0; i < s.Length; i++)
        {
            if (s[i] == '\\' && i + 3 < s.Length && IsOctal(s[i + 1]) && IsOctal(s[i + 2]) && IsOctal(s[i + 3]))
            {
                sb.Append((char)(((s[i + 1] - '0') * 64) + ((s[i + 2] - '0') * 8) + (s[i + 3] - '0')));
                i += 3;
            }
            else
            {
                sb.Append(s[i]);
            }
        }
        return sb.ToString();
    }

    private static bool IsOctal(char c) => c is >= '0' and <= '7';
}
