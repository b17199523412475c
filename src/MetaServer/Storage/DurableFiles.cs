// fsync helpers; the implementation lives in Core (the replicator's checkpoint uses it too).
namespace MirrorFS.MetaServer.Storage;

internal static class DurableFiles
{
    public static void FsyncDirectory(string directory) => Core.IO.DurableFiles.FsyncDirectory(directory);

    public static void WriteAtomically(string path, ReadOnlySpan<byte> content) =>
        Core.IO.DurableFiles.WriteAtomically(path, content);
}
