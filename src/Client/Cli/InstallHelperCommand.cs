// mirrorfs install-helper: writes /sbin/mount.mirrorfs so `mount -t mirrorfs` and /etc/fstab entries mount volumes.
using System.CommandLine;
using System.Text;

namespace MirrorFS.Client.Cli;

public static class InstallHelperCommand
{
    /// <summary>Marks a helper we wrote, so a reinstall may replace it but a stranger's file is left alone.</summary>
    public const string Marker = "# written by `mirrorfs install-helper`";

    public const string HelperName = "mount.mirrorfs";

    public static Command Create(CliContext ctx)
    {
        var prefix = new Option<string>("--prefix")
        {
            Description = "Install under PREFIX/sbin instead of /sbin (mount(8) looks only in /sbin)",
            DefaultValueFactory = _ => "/",
        };
        var force = new Option<bool>("--force") { Description = "Replace an existing mount.mirrorfs that this command did not write" };
        var cmd = new Command("install-helper", "Install the mount.mirrorfs helper for mount -t mirrorfs and /etc/fstab") { prefix, force };
        cmd.SetAction(CliApp.Guard(ctx, "install-helper", async (parse, ct) =>
        {
            var dir = Path.Combine(Path.GetFullPath(parse.GetValue(prefix)!), "sbin");
            var path = Install(dir, MountCommand.SelfCommand(), parse.GetValue(force));
            await ctx.Out.WriteLineAsync($"installed {path}; an /etc/fstab line looks like:").ConfigureAwait(false);
            await ctx.Out.WriteLineAsync("  mirrorfs://HOST:PORT/VOLUME  /mnt/VOLUME  mirrorfs  _netdev,token-file=/etc/mirrorfs/token  0 0").ConfigureAwait(false);
            return 0;
        }));
        return cmd;
    }

    /// <summary>Writes the helper into <paramref name="dir"/> (mode 0755, replaced atomically) and returns its path.</summary>
    public static string Install(string dir, IReadOnlyList<string> self, bool force)
    {
        var path = Path.Combine(dir, HelperName);
        if (File.Exists(path) && !force && !File.ReadLines(path).Take(5).Contains(Marker))
        {
            throw new CliException($"{path} exists and was not written by mirrorfs: move it away or pass --force");
        }
        try
        {
            Directory.CreateDirectory(dir);
            var tmp = path + ".tmp-" + Environment.ProcessId;
            File.WriteAllText(tmp, Script(self), new UTF8Encoding(false));
            File.SetUnixFileMode(tmp, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute
                                      | UnixFileMode.GroupRead | UnixFileMode.GroupExecute
                                      | UnixFileMode.OtherRead | UnixFileMode.OtherExecute);
            File.Move(tmp, path, overwrite: true);
        }
        catch (UnauthorizedAccessException)
        {
            throw new CliException($"cannot write {path}: permission denied (run as root, or use --prefix)");
        }
        return path;
    }

    /// <summary>
    /// The helper: mount(8) runs it as <c>mount.mirrorfs SPEC DIR [-sfnv] [-N NS] [-o OPTS] [-t TYPE]</c>; it runs
    /// <c>mirrorfs mount SPEC DIR --background -o OPTS</c>, which returns once the mount is up.
    /// </summary>
    public static string Script(IReadOnlyList<string> self)
    {
        var cmd = string.Join(' ', self.Select(Quote));
        return $$"""
            #!/bin/sh
            {{Marker}}
            # mount(8) runs: mount.mirrorfs META-URL MOUNTPOINT [-sfnv] [-N NAMESPACE] [-o OPTIONS] [-t TYPE]
            # and this runs: mirrorfs mount META-URL MOUNTPOINT --background -o OPTIONS
            if [ $# -lt 2 ]; then
              echo "usage: mount.mirrorfs META-URL MOUNTPOINT [-o OPTIONS]" >&2
              exit 1
            fi
            url=$1
            mp=$2
            shift 2
            opts=
            fake=
            while [ $# -gt 0 ]; do
              case $1 in
                -o) opts=$2; shift 2 ;;
                -o*) opts=${1#-o}; shift ;;
                -t|-N) shift 2 ;;
                -t*|-N*) shift ;;
                -*f*) fake=1; shift ;;
                -[snvi]*) shift ;;
                *) echo "mount.mirrorfs: unexpected argument: $1" >&2; exit 1 ;;
              esac
            done
            # mount -f only pretends.
            [ -z "$fake" ] || exit 0
            if [ -n "$opts" ]; then
              exec {{cmd}} mount "$url" "$mp" --background -o "$opts"
            fi
            exec {{cmd}} mount "$url" "$mp" --background

            """;
    }

    private static string Quote(string s) => "'" + s.Replace("'", "'\\''", StringComparison.Ordinal) + "'";
}
