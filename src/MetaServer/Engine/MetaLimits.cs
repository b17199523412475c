// Limits and fixed sizes of the metadata engine (bytes unless the name says otherwise).
namespace MirrorFS.MetaServer.Engine;

internal static class MetaLimits
{
    public const int NameBytesMax = 255;
    public const int SymlinkTargetBytesMax = 4095;
    public const int XattrNameBytesMax = 255;
    public const int XattrValueBytesMax = 65536;
    public const int XattrBytesMaxPerInode = 1 << 20;
    public const uint ChunkBytes = 64 << 20;
    public const ulong FileSizeBytesMax = (ulong)ChunkBytes << 32;
    public const uint LinkCountMax = 65000;
    public const uint NewSliceIdsCountMax = 1_000_000;
    public const int ReadDirEntriesDefault = 1024;
    public const int ReadDirEntriesMax = 4096;
    public const int ReplyCacheEntriesMax = 1024;
    public const int SessionsMax = 100_000;
    public const int SessionInfoBytesMax = 4096;
    public const int VolumeBytesMax = 64 << 10;
    public const int ListSessionsDefault = 1000;
    public const int ListSessionsMax = 10_000;
    public const uint DefaultBlockBytes = 4 << 20;
    public const uint BlockBytesMin = 64 << 10;
    public const uint BlockBytesMax = 16 << 20;
    public const uint DirSizeBytes = 4096;
    public const uint DefaultRootMode = 0x1ED; // 0755
    public const ulong ReportedCapacityBytesUnlimited = 1UL << 50; // 1 PiB shown when no capacity is set
    public const ulong ReportedInodesUnlimited = 10_000_000_000;
    public const ulong RootInode = 1;
}
