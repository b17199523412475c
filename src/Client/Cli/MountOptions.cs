// mount(8)-style "-o a,b=c" for `mirrorfs mount`: what /etc/fstab and the mount.mirrorfs helper pass, turned into flags.
namespace MirrorFS.Client.Cli;

public static class MountOptions
{
    /// <summary>Options mount(8) and fstab use for their own purposes; they mean nothing to MirrorFS.</summary>
    private static readonly HashSet<string> Ignored = new(StringComparer.Ordinal)
    {
        "defaults", "rw", "auto", "noauto", "user", "nouser", "users", "owner", "group", "nofail", "_netdev",
        "async", "loud", "silent", "nomand", "mand",
    };

    /// <summary>Kernel mount flags handed to FUSE as they are.</summary>
    private static readonly HashSet<string> Kernel = new(StringComparer.Ordinal)
    {
        "nosuid", "suid", "nodev", "dev", "noexec", "exec", "noatime", "atime", "relatime", "strictatime",
        "nodiratime", "diratime", "lazytime", "sync", "dirsync", "allow_other", "allow_root",
    };

    /// <summary>Longest -o value taken; fstab lines are short.</summary>
    public const int OptionCharsMax = 4096;

    /// <summary>
    /// Rewrites <c>mount ... -o OPTS</c> into plain flags: <c>ro</c> becomes --read-only, <c>key=value</c> becomes
    /// <c>--key value</c> and a bare <c>key</c> <c>--key</c> (underscores read as dashes), kernel flags such as nosuid
    /// go to --fuse-options, and fstab-only words (defaults, noauto, _netdev, x-*, comment=...) are dropped.
    /// Arguments of other commands are returned unchanged.
    /// </summary>
    public static string[] Expand(string[] args)
    {
        if (args.Length == 0 || args[0] != "mount" || !args.Any(a => a == "-o" || (a.StartsWith("-o", StringComparison.Ordinal) && a.Length > 2 && a[2] != '-')))
        {
            return args;
        }
        var rest = new List<string>(args.Length);
        var flags = new List<string>();
        var fuse = new List<string>();
        for (var i = 0; i < args.Length; i++)
        {
            string? value = null;
            if (args[i] == "-o")
            {
                if (i + 1 >= args.Length)
                {
                    throw new CliException("-o needs a value: -o opt1,opt2=value");
                }
                value = args[++i];
            }
            else if (args[i].StartsWith("-o", StringComparison.Ordinal) && args[i].Length > 2 && args[i][2] != '-')
            {
                value = args[i][2..];
            }
            if (value is null)
            {
                rest.Add(args[i]);
                continue;
            }
            if (value.Length > OptionCharsMax)
            {
                throw new CliException($"-o value is longer than {OptionCharsMax} characters");
            }
            foreach (var raw in value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            {
                var eq = raw.IndexOf('=', StringComparison.Ordinal);
                var key = eq < 0 ? raw : raw[..eq];
                if (Ignored.Contains(key) || key.StartsWith("x-", StringComparison.Ordinal) || key == "comment")
                {
                    continue;
                }
                if (Kernel.Contains(key))
                {
                    fuse.Add(raw);
                    continue;
                }
                if (key == "ro")
                {
                    flags.Add("--read-only");
                    continue;
                }
                if (key.Length == 0 || !key.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_'))
                {
                    throw new CliException($"mount option '{raw}' is not name or name=value");
                }
                flags.Add("--" + key.Replace('_', '-'));
                if (eq >= 0)
                {
                    flags.Add(raw[(eq + 1)..]);
                }
            }
        }
        if (fuse.Count > 0)
        {
            flags.Add("--fuse-options");
            flags.Add(string.Join(',', fuse));
        }
        return [.. rest, .. flags];
    }
}
