// P/Invoke surface of libfuse3.so.3 (low-level API) and the few libc calls the mount needs.
using System.Runtime.InteropServices;

namespace MirrorFS.Client.Fuse;

internal static unsafe partial class FuseNative
{
    private const string Lib = "libfuse3.so.3";
    private const string LibC = "libc";

    [LibraryImport(Lib, EntryPoint = "fuse_session_new")]
    internal static partial nint SessionNew(FuseArgs* args, FuseLowLevelOps* ops, nuint opSize, nint userdata);

    [LibraryImport(Lib, EntryPoint = "fuse_session_mount")]
    internal static partial int SessionMount(nint se, byte* mountpoint);

    // The FUSE_3.12 loop that takes a fuse_loop_config*; the plain name resolves to the same default-version
    // symbol here, but the _312 alias is what the 3.12+ header binds to on builds without symbol versioning.
    [LibraryImport(Lib, EntryPoint = "fuse_session_loop_mt_312")]
    internal static partial int SessionLoopMt(nint se, nint config);

    [LibraryImport(Lib, EntryPoint = "fuse_session_exit")]
    internal static partial void SessionExit(nint se);

    [LibraryImport(Lib, EntryPoint = "fuse_session_exited")]
    internal static partial int SessionExited(nint se);

    [LibraryImport(Lib, EntryPoint = "fuse_session_unmount")]
    internal static partial void SessionUnmount(nint se);

    [LibraryImport(Lib, EntryPoint = "fuse_session_destroy")]
    internal static partial void SessionDestroy(nint se);

    [LibraryImport(Lib, EntryPoint = "fuse_opt_free_args")]
    internal static partial void OptFreeArgs(FuseArgs* args);

    [LibraryImport(Lib, EntryPoint = "fuse_loop_cfg_create")]
    internal static partial nint LoopCfgCreate();

    [LibraryImport(Lib, EntryPoint = "fuse_loop_cfg_destroy")]
    internal static partial void LoopCfgDestroy(nint config);

    [LibraryImport(Lib, EntryPoint = "fuse_loop_cfg_set_max_threads")]
    internal static partial void LoopCfgSetMaxThreads(nint config, uint value);

    [LibraryImport(Lib, EntryPoint = "fuse_loop_cfg_set_idle_threads")]
    internal static partial void LoopCfgSetIdleThreads(nint config, uint value);

    [LibraryImport(Lib, EntryPoint = "fuse_loop_cfg_set_clone_fd")]
    internal static partial void LoopCfgSetCloneFd(nint config, uint value);

    [LibraryImport(Lib, EntryPoint = "fuse_req_ctx")]
    internal static partial FuseCtx* ReqCtx(nint req);

    [LibraryImport(Lib, EntryPoint = "fuse_req_userdata")]
    internal static partial nint ReqUserdata(nint req);

    [LibraryImport(Lib, EntryPoint = "fuse_req_interrupted")]
    internal static partial int ReqInterrupted(nint req);

    [LibraryImport(Lib, EntryPoint = "fuse_reply_err")]
    internal static partial int ReplyErr(nint req, int err);

    [LibraryImport(Lib, EntryPoint = "fuse_reply_none")]
    internal static partial void ReplyNone(nint req);

    [LibraryImport(Lib, EntryPoint = "fuse_reply_entry")]
    internal static partial int ReplyEntry(nint req, FuseEntry* e);

    [LibraryImport(Lib, EntryPoint = "fuse_reply_create")]
    internal static partial int ReplyCreate(nint req, FuseEntry* e, FuseFileInfo* fi);

    [LibraryImport(Lib, EntryPoint = "fuse_reply_attr")]
    internal static partial int ReplyAttr(nint req, FuseStat* attr, double attrTimeout);

    [LibraryImport(Lib, EntryPoint = "fuse_reply_readlink")]
    internal static partial int ReplyReadlink(nint req, byte* link);

    [LibraryImport(Lib, EntryPoint = "fuse_reply_open")]
    internal static partial int ReplyOpen(nint req, FuseFileInfo* fi);

    [LibraryImport(Lib, EntryPoint = "fuse_reply_write")]
    internal static partial int ReplyWrite(nint req, nuint count);

    [LibraryImport(Lib, EntryPoint = "fuse_reply_buf")]
    internal static partial int ReplyBuf(nint req, byte* buf, nuint size);

    [LibraryImport(Lib, EntryPoint = "fuse_reply_statfs")]
    internal static partial int ReplyStatfs(nint req, FuseStatVfs* stbuf);

    [LibraryImport(Lib, EntryPoint = "fuse_reply_xattr")]
    internal static partial int ReplyXattr(nint req, nuint count);

    [LibraryImport(Lib, EntryPoint = "fuse_reply_lock")]
    internal static partial int ReplyLock(nint req, FuseFlock* lk);

    [LibraryImport(Lib, EntryPoint = "fuse_add_direntry")]
    internal static partial nuint AddDirentry(nint req, byte* buf, nuint bufsize, byte* name, FuseStat* stbuf, long off);

    [LibraryImport(Lib, EntryPoint = "fuse_add_direntry_plus")]
    internal static partial nuint AddDirentryPlus(nint req, byte* buf, nuint bufsize, byte* name, FuseEntry* e, long off);

    [LibraryImport(LibC, EntryPoint = "umount2", SetLastError = true)]
    internal static partial int Umount2(byte* target, int flags);

    [LibraryImport(LibC, EntryPoint = "statfs", SetLastError = true)]
    internal static partial int StatFs(byte* path, byte* buf);

    internal const int MntDetach = 2;
}
