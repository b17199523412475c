// fsync helpers for local state files: directory fsync (not reachable from managed APIs) and temp + fsync + rename + fsync-dir.
using System.Runtime.InteropServices;

namespace MirrorFS.Core.IO;

public static class DurableFiles
{
    /// <summary>Makes creations, renames and deletions inside <paramref name="directory"/> durable. A new file's
    /// contents are durable after its own fsync, but its name is durable only after the directory's.</summary>
    public static void FsyncDirectory(string directory)
    {
        // Windows offers no directory fsync (NTFS journals metadata); there is nothing to do there.
        if (OperatingSystem.IsWindows())
        {
            return;
        }
        var path = System.Text.Encoding.UTF8.GetBytes(Path.GetFullPath(directory) + "\0");
        var fd = Native.open(path, 0 /* O_RDONLY, valid for directories on Linux and macOS */);
        if (fd < 0)
        {
            throw new IOException($"cannot open directory {directory} to fsync it (errno {Marshal.GetLastPInvokeError()}); check it exists and is readable");
        }
        try
        {
            if (Native.fsync(fd) != 0)
            {
                throw new IOException($"fsync of directory {directory} failed (errno {Marshal.GetLastPInvokeError()}); the disk may be failing");
            }
        }
        finally
        {
            _ = Native.close(fd);
        }
    }

    /// <summary>Replaces <paramref name="path"/> with <paramref name="content"/> atomically: a crash leaves either the old
    /// file or the new one, never a mix. Temp file + fsync + rename + fsync of the directory.</summary>
    public static void WriteAtomically(string path, ReadOnlySpan<byte> content)
    {
        var dir = Path.GetDirectoryName(Path.GetFullPath(path))!;
        var tmp = path + ".tmp";
        using (var h = File.OpenHandle(tmp, FileMode.Create, FileAccess.Write, FileShare.None))
        {
            RandomAccess.Write(h, content, 0);
            RandomAccess.FlushToDisk(h);
        }
        File.Move(tmp, path, overwrite: true);
        FsyncDirectory(dir);
    }

    private static class Native
    {
        [DllImport("libc", SetLastError = true)]
        public static extern int open(byte[] path, int flags);

        [DllImport("libc", SetLastError = true)]
        public static extern int fsync(int fd);

        [DllImport("libc", SetLastError = true)]
        public static extern int close(int fd);
    }
}
