// Keeps mlocate/plocate's nightly updatedb from walking MirrorFS mounts (each walk would stat every file on the metaserver).
using System.Text;
using System.Text.RegularExpressions;

namespace MirrorFS.Client.Mount;

public enum PruneFsResult
{
    /// <summary>The file system type was added to PRUNEFS.</summary>
    Added,
    /// <summary>PRUNEFS already names it.</summary>
    AlreadyPresent,
    /// <summary>There is no updatedb.conf: no locate is installed, nothing to do.</summary>
    NoFile,
    /// <summary>The file has no PRUNEFS="..." line; we do not invent one in someone else's config.</summary>
    NoPruneFs,
    /// <summary>Another process holds the file locked (probably another mount adding the same entry).</summary>
    Busy,
}

/// <summary>
/// Adds a file system type to PRUNEFS in updatedb.conf, as JuiceFS does for its own type: only when the file exists and
/// already has an uncommented PRUNEFS="..." line, leaving everything else byte for byte. The new text goes to a temp
/// file that replaces the old one (same mode), so a crash leaves the old or the new file, never half of one.
/// </summary>
public static partial class UpdatedbConf
{
    public const string DefaultPath = "/etc/updatedb.conf";

    /// <summary>updatedb.conf is a few lines; a bigger file is not one we should rewrite.</summary>
    public const int FileBytesMax = 1 << 20;

    public static PruneFsResult AddPruneFs(string path, string fsType)
    {
        if (string.IsNullOrWhiteSpace(fsType) || fsType.Any(c => char.IsWhiteSpace(c) || c == '"'))
        {
            throw new ArgumentException($"file system type '{fsType}' cannot go into PRUNEFS", nameof(fsType));
        }
        FileStream lockHolder;
        try
        {
            // FileShare.None takes an exclusive advisory lock on Linux: two mounts starting together do not both edit.
            lockHolder = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.None);
        }
        catch (FileNotFoundException)
        {
            return PruneFsResult.NoFile;
        }
        catch (DirectoryNotFoundException)
        {
            return PruneFsResult.NoFile;
        }
        catch (IOException) when (File.Exists(path))
        {
            return PruneFsResult.Busy;
        }
        using (lockHolder)
        {
            if (lockHolder.Length > FileBytesMax)
            {
                throw new IOException($"{path} is larger than {FileBytesMax} bytes; not editing it");
            }
            var bytes = new byte[lockHolder.Length];
            lockHolder.ReadExactly(bytes);
            var text = Encoding.UTF8.GetString(bytes);
            var m = PruneFsLine().Match(text);
            if (!m.Success)
            {
                return PruneFsResult.NoPruneFs;
            }
            var list = m.Groups["list"].Value;
            if (list.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries).Contains(fsType, StringComparer.Ordinal))
            {
                return PruneFsResult.AlreadyPresent;
            }
            var newList = list.TrimEnd().Length == 0 ? fsType : list.TrimEnd() + " " + fsType;
            var group = m.Groups["list"];
            var updated = text[..group.Index] + newList + text[(group.Index + group.Length)..];
            var tmp = path + ".mirrorfs-" + Environment.ProcessId + ".tmp";
            try
            {
                var mode = File.GetUnixFileMode(path);
                using (var fs = new FileStream(tmp, new FileStreamOptions
                {
                    Mode = FileMode.Create,
                    Access = FileAccess.Write,
                    UnixCreateMode = mode,
                }))
                {
                    fs.Write(Encoding.UTF8.GetBytes(updated));
                    fs.Flush(flushToDisk: true);
                }
                File.SetUnixFileMode(tmp, mode);
                File.Move(tmp, path, overwrite: true);
            }
            catch
            {
                File.Delete(tmp);
                throw;
            }
            return PruneFsResult.Added;
        }
    }

    // The first uncommented PRUNEFS = "..." (spaces allowed around '='; the list may span lines).
    [GeneratedRegex(@"^[ \t]*PRUNEFS[ \t]*=[ \t]*""(?<list>[^""]*)""", RegexOptions.Multiline)]
    private static partial Regex PruneFsLine();
}
