// Linux errno values and mode/open-flag bits used by the metadata contract (x86-64 and arm64 share these).
namespace MirrorFS.Core.Meta;

/// <summary>Linux errno values carried in <see cref="IMetaReply.Errno"/>.</summary>
public static class Errno
{
    public const int OK = 0;
    public const int EPERM = 1;
    public const int ENOENT = 2;
    public const int EIO = 5;
    public const int E2BIG = 7;
    public const int EBADF = 9;
    public const int EAGAIN = 11;
    public const int EACCES = 13;
    public const int EBUSY = 16;
    public const int EEXIST = 17;
    public const int EXDEV = 18;
    public const int ENODEV = 19;
    public const int ENOTDIR = 20;
    public const int EISDIR = 21;
    public const int EINVAL = 22;
    public const int EFBIG = 27;
    public const int ENOSPC = 28;
    public const int ESPIPE = 29;
    public const int EMLINK = 31;
    public const int ERANGE = 34;
    public const int ENAMETOOLONG = 36;
    public const int ENOSYS = 38;
    public const int ENOTEMPTY = 39;
    public const int ELOOP = 40;
    public const int ENODATA = 61;
    public const int EOPNOTSUPP = 95;
    public const int ENOTCONN = 107;
    public const int EALREADY = 114;
    public const int EDQUOT = 122;
}

/// <summary>Mode bits (S_IF* types and permission bits) as in Linux stat(2).</summary>
public static class PosixMode
{
    public const uint TypeMask = 0xF000;       // S_IFMT
    public const uint Socket = 0xC000;         // S_IFSOCK
    public const uint Symlink = 0xA000;        // S_IFLNK
    public const uint Regular = 0x8000;        // S_IFREG
    public const uint Block = 0x6000;          // S_IFBLK
    public const uint Directory = 0x4000;      // S_IFDIR
    public const uint Char = 0x2000;           // S_IFCHR
    public const uint Fifo = 0x1000;           // S_IFIFO
    public const uint SetUid = 0x800;          // S_ISUID
    public const uint SetGid = 0x400;          // S_ISGID
    public const uint Sticky = 0x200;          // S_ISVTX
    public const uint PermMask = 0xFFF;        // 07777
    public const uint GroupExec = 0x8;         // S_IXGRP

    public static uint Type(uint mode) => mode & TypeMask;

    public static bool IsDir(uint mode) => (mode & TypeMask) == Directory;

    public static bool IsRegular(uint mode) => (mode & TypeMask) == Regular;

    public static bool IsSymlink(uint mode) => (mode & TypeMask) == Symlink;
}

/// <summary>Linux open(2) flags the metadata engine looks at.</summary>
public static class OpenFlags
{
    public const uint AccessMask = 3;          // O_ACCMODE
    public const uint ReadOnly = 0;
    public const uint WriteOnly = 1;
    public const uint ReadWrite = 2;
    public const uint Create = 0x40;           // O_CREAT
    public const uint Exclusive = 0x80;        // O_EXCL
    public const uint Truncate = 0x200;        // O_TRUNC
    public const uint Append = 0x400;          // O_APPEND
}
