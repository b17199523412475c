// Blittable mirrors of the libfuse3 / glibc x86-64 structs the binding passes by pointer.
// Layout is checked against the C headers by tests/Client.Tests/Fuse/FuseLayoutTests.cs.
using System.Runtime.InteropServices;

namespace MirrorFS.Client.Fuse;

/// <summary>glibc x86-64 <c>struct stat</c> (144 bytes).</summary>
[StructLayout(LayoutKind.Sequential)]
public struct FuseStat
{
    public ulong Dev;
    public ulong Ino;
    public ulong Nlink;
    public uint Mode;
    public uint Uid;
    public uint Gid;
    private readonly int _pad0;
    public ulong Rdev;
    public long Size;
    public long Blksize;
    public long Blocks;
    public long AtimeSec;
    public long AtimeNsec;
    public long MtimeSec;
    public long MtimeNsec;
    public long CtimeSec;
    public long CtimeNsec;
    private readonly long _reserved0;
    private readonly long _reserved1;
    private readonly long _reserved2;

    public void SetAtime(long sec, long nsec) { AtimeSec = sec; AtimeNsec = nsec; }
    public void SetMtime(long sec, long nsec) { MtimeSec = sec; MtimeNsec = nsec; }
    public void SetCtime(long sec, long nsec) { CtimeSec = sec; CtimeNsec = nsec; }
}

/// <summary><c>struct fuse_entry_param</c> (176 bytes): the answer to lookup/mknod/mkdir/create/link/symlink.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct FuseEntry
{
    /// <summary>Inode number; 0 with an EntryTimeout caches a negative lookup.</summary>
    public ulong Ino;
    public ulong Generation;
    public FuseStat Attr;
    public double AttrTimeout;
    public double EntryTimeout;
}

/// <summary><c>struct fuse_file_info</c> (40 bytes). A copy of it is handed to handlers: the native one dies with the callback.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct FuseFileInfo
{
    public int Flags;
    // C bitfields: writepage:1 direct_io:1 keep_cache:1 flush:1 nonseekable:1 flock_release:1 cache_readdir:1 noflush:1 padding:24
    internal uint Bits;
    private readonly uint _padding2;
    private readonly uint _align;
    public ulong Fh;
    public ulong LockOwner;
    public uint PollEvents;
    private readonly uint _tail;

    internal const uint WritePageBit = 1u << 0;
    internal const uint DirectIoBit = 1u << 1;
    internal const uint KeepCacheBit = 1u << 2;
    internal const uint FlushBit = 1u << 3;
    internal const uint NonSeekableBit = 1u << 4;
    internal const uint FlockReleaseBit = 1u << 5;
    internal const uint CacheReaddirBit = 1u << 6;
    internal const uint NoFlushBit = 1u << 7;

    public readonly bool WritePage => (Bits & WritePageBit) != 0;
    public readonly bool Flush => (Bits & FlushBit) != 0;
    public readonly bool FlockRelease => (Bits & FlockReleaseBit) != 0;

    public bool DirectIo { readonly get => (Bits & DirectIoBit) != 0; set => SetBit(DirectIoBit, value); }
    public bool KeepCache { readonly get => (Bits & KeepCacheBit) != 0; set => SetBit(KeepCacheBit, value); }
    public bool NonSeekable { readonly get => (Bits & NonSeekableBit) != 0; set => SetBit(NonSeekableBit, value); }
    public bool CacheReaddir { readonly get => (Bits & CacheReaddirBit) != 0; set => SetBit(CacheReaddirBit, value); }
    public bool NoFlush { readonly get => (Bits & NoFlushBit) != 0; set => SetBit(NoFlushBit, value); }

    private void SetBit(uint bit, bool on) => Bits = on ? Bits | bit : Bits & ~bit;
}

/// <summary><c>struct fuse_ctx</c>: the caller of a request.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct FuseCtx
{
    public uint Uid;
    public uint Gid;
    public int Pid;
    public uint Umask;
}

/// <summary>glibc x86-64 <c>struct statvfs</c> (112 bytes).</summary>
[StructLayout(LayoutKind.Sequential)]
public struct FuseStatVfs
{
    public ulong Bsize;
    public ulong Frsize;
    public ulong Blocks;
    public ulong Bfree;
    public ulong Bavail;
    public ulong Files;
    public ulong Ffree;
    public ulong Favail;
    public ulong Fsid;
    public ulong Flag;
    public ulong Namemax;
    private readonly int _spare0;
    private readonly int _spare1;
    private readonly int _spare2;
    private readonly int _spare3;
    private readonly int _spare4;
    private readonly int _spare5;
}

/// <summary>glibc x86-64 <c>struct flock</c> (32 bytes), for POSIX record locks.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct FuseFlock
{
    public short Type;
    public short Whence;
    private readonly int _pad;
    public long Start;
    public long Len;
    public int Pid;
    private readonly int _tail;
}

/// <summary><c>struct fuse_forget_data</c>.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct FuseForgetData
{
    public ulong Ino;
    public ulong Nlookup;
}

/// <summary><c>struct fuse_conn_info</c> (128 bytes); writable only inside <see cref="FuseFileSystem.Init"/>.</summary>
[StructLayout(LayoutKind.Sequential)]
public unsafe struct FuseConnInfo
{
    public uint ProtoMajor;
    public uint ProtoMinor;
    public uint MaxWrite;
    public uint MaxRead;
    public uint MaxReadahead;
    public uint Capable;
    public uint Want;
    public uint MaxBackground;
    public uint CongestionThreshold;
    public uint TimeGran;
    private fixed uint _reserved[22];
}

/// <summary><c>struct fuse_args</c>.</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct FuseArgs
{
    public int Argc;
    public byte** Argv;
    public int Allocated;
}

/// <summary><c>struct fuse_lowlevel_ops</c> for libfuse 3.14: 44 function pointers in header order (352 bytes).</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct FuseLowLevelOps
{
    public void* Init;
    public void* Destroy;
    public void* Lookup;
    public void* Forget;
    public void* GetAttr;
    public void* SetAttr;
    public void* ReadLink;
    public void* MkNod;
    public void* MkDir;
    public void* Unlink;
    public void* RmDir;
    public void* SymLink;
    public void* Rename;
    public void* Link;
    public void* Open;
    public void* Read;
    public void* Write;
    public void* Flush;
    public void* Release;
    public void* FSync;
    public void* OpenDir;
    public void* ReadDir;
    public void* ReleaseDir;
    public void* FSyncDir;
    public void* StatFs;
    public void* SetXattr;
    public void* GetXattr;
    public void* ListXattr;
    public void* RemoveXattr;
    public void* Access;
    public void* Create;
    public void* GetLk;
    public void* SetLk;
    public void* Bmap;
    public void* Ioctl;
    public void* Poll;
    public void* WriteBuf;
    public void* RetrieveReply;
    public void* ForgetMulti;
    public void* Flock;
    public void* Fallocate;
    public void* ReadDirPlus;
    public void* CopyFileRange;
    public void* Lseek;
}

/// <summary>Bits of the setattr to_set mask (FUSE_SET_ATTR_*).</summary>
[Flags]
public enum FuseSetAttr
{
    None = 0,
    Mode = 1 << 0,
    Uid = 1 << 1,
    Gid = 1 << 2,
    Size = 1 << 3,
    Atime = 1 << 4,
    Mtime = 1 << 5,
    AtimeNow = 1 << 7,
    MtimeNow = 1 << 8,
    Force = 1 << 9,
    Ctime = 1 << 10,
    KillSuid = 1 << 11,
    KillSgid = 1 << 12,
    File = 1 << 13,
    KillPriv = 1 << 14,
    Open = 1 << 15,
    TimesSet = 1 << 16,
    Touch = 1 << 17,
}
