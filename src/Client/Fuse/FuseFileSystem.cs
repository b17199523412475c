// The managed face of the low-level FUSE API: override what the filesystem supports, reply through FuseRequest.
namespace MirrorFS.Client.Fuse;

/// <summary>
/// One virtual method per low-level operation. A handler must reply exactly once through the request, from any
/// thread, before the returned task completes; a handler that throws, faults, or completes without a reply gets
/// EIO sent for it (and a log line). Arguments are copies: they stay valid after the native callback returned,
/// except the write payload, which is pooled and valid until the returned task completes.
/// Only overridden operations are registered with libfuse, so libfuse's own defaults apply to the rest
/// (for example readdirplus is offered to the kernel only when <see cref="ReadDirPlus"/> is overridden).
/// The base implementations reply ENOSYS.
/// </summary>
public abstract class FuseFileSystem
{
    /// <summary>Called once the kernel connected; <paramref name="conn"/> may be changed here only.</summary>
    public virtual void Init(ref FuseConnInfo conn) { }

    /// <summary>Called when the session is destroyed after unmount.</summary>
    public virtual void Destroy() { }

    public virtual ValueTask Lookup(FuseRequest request, ulong parent, byte[] name) => NotImplemented(request);

    /// <summary>Drops <paramref name="nlookup"/> lookups of <paramref name="ino"/>; takes no reply (the binding sends none).</summary>
    public virtual void Forget(ulong ino, ulong nlookup) { }

    public virtual void ForgetMulti(ReadOnlySpan<FuseForgetData> forgets)
    {
        foreach (var f in forgets)
        {
            Forget(f.Ino, f.Nlookup);
        }
    }

    public virtual ValueTask GetAttr(FuseRequest request, ulong ino, FuseFileInfo? fi) => NotImplemented(request);

    public virtual ValueTask SetAttr(FuseRequest request, ulong ino, FuseStat attr, FuseSetAttr toSet, FuseFileInfo? fi) => NotImplemented(request);

    public virtual ValueTask ReadLink(FuseRequest request, ulong ino) => NotImplemented(request);

    public virtual ValueTask MkNod(FuseRequest request, ulong parent, byte[] name, uint mode, ulong rdev) => NotImplemented(request);

    public virtual ValueTask MkDir(FuseRequest request, ulong parent, byte[] name, uint mode) => NotImplemented(request);

    public virtual ValueTask Unlink(FuseRequest request, ulong parent, byte[] name) => NotImplemented(request);

    public virtual ValueTask RmDir(FuseRequest request, ulong parent, byte[] name) => NotImplemented(request);

    public virtual ValueTask SymLink(FuseRequest request, byte[] target, ulong parent, byte[] name) => NotImplemented(request);

    /// <summary><paramref name="flags"/>: RENAME_NOREPLACE (1) or RENAME_EXCHANGE (2).</summary>
    public virtual ValueTask Rename(FuseRequest request, ulong parent, byte[] name, ulong newParent, byte[] newName, uint flags) => NotImplemented(request);

    public virtual ValueTask Link(FuseRequest request, ulong ino, ulong newParent, byte[] newName) => NotImplemented(request);

    public virtual ValueTask Open(FuseRequest request, ulong ino, FuseFileInfo fi) => NotImplemented(request);

    public virtual ValueTask Read(FuseRequest request, ulong ino, int size, long offset, FuseFileInfo fi) => NotImplemented(request);

    /// <summary><paramref name="data"/> is a pooled copy, valid until the returned task completes.</summary>
    public virtual ValueTask Write(FuseRequest request, ulong ino, ReadOnlyMemory<byte> data, long offset, FuseFileInfo fi) => NotImplemented(request);

    public virtual ValueTask Flush(FuseRequest request, ulong ino, FuseFileInfo fi) => NotImplemented(request);

    public virtual ValueTask Release(FuseRequest request, ulong ino, FuseFileInfo fi) => NotImplemented(request);

    public virtual ValueTask FSync(FuseRequest request, ulong ino, bool dataSync, FuseFileInfo fi) => NotImplemented(request);

    public virtual ValueTask OpenDir(FuseRequest request, ulong ino, FuseFileInfo fi) => NotImplemented(request);

    /// <summary>Fill <see cref="FuseRequest.CreateDirBuffer"/> (plus: false) from <paramref name="offset"/> and reply it.</summary>
    public virtual ValueTask ReadDir(FuseRequest request, ulong ino, int size, long offset, FuseFileInfo fi) => NotImplemented(request);

    /// <summary>Fill <see cref="FuseRequest.CreateDirBuffer"/> (plus: true) from <paramref name="offset"/> and reply it.</summary>
    public virtual ValueTask ReadDirPlus(FuseRequest request, ulong ino, int size, long offset, FuseFileInfo fi) => NotImplemented(request);

    public virtual ValueTask ReleaseDir(FuseRequest request, ulong ino, FuseFileInfo fi) => NotImplemented(request);

    public virtual ValueTask FSyncDir(FuseRequest request, ulong ino, bool dataSync, FuseFileInfo fi) => NotImplemented(request);

    public virtual ValueTask StatFs(FuseRequest request, ulong ino) => NotImplemented(request);

    /// <summary><paramref name="flags"/>: XATTR_CREATE (1) or XATTR_REPLACE (2).</summary>
    public virtual ValueTask SetXattr(FuseRequest request, ulong ino, byte[] name, byte[] value, int flags) => NotImplemented(request);

    /// <summary><paramref name="size"/> 0 asks for the value's size (ReplyXattr); otherwise ReplyData or ERANGE.</summary>
    public virtual ValueTask GetXattr(FuseRequest request, ulong ino, byte[] name, int size) => NotImplemented(request);

    /// <summary>Names NUL-terminated back to back; <paramref name="size"/> 0 asks for the size (ReplyXattr).</summary>
    public virtual ValueTask ListXattr(FuseRequest request, ulong ino, int size) => NotImplemented(request);

    public virtual ValueTask RemoveXattr(FuseRequest request, ulong ino, byte[] name) => NotImplemented(request);

    public virtual ValueTask Access(FuseRequest request, ulong ino, int mask) => NotImplemented(request);

    public virtual ValueTask Create(FuseRequest request, ulong parent, byte[] name, uint mode, FuseFileInfo fi) => NotImplemented(request);

    public virtual ValueTask GetLk(FuseRequest request, ulong ino, FuseFileInfo fi, FuseFlock lk) => NotImplemented(request);

    public virtual ValueTask SetLk(FuseRequest request, ulong ino, FuseFileInfo fi, FuseFlock lk, bool sleep) => NotImplemented(request);

    /// <summary><paramref name="op"/>: LOCK_SH (1), LOCK_EX (2), LOCK_UN (8), optionally | LOCK_NB (4).</summary>
    public virtual ValueTask Flock(FuseRequest request, ulong ino, FuseFileInfo fi, int op) => NotImplemented(request);

    public virtual ValueTask Fallocate(FuseRequest request, ulong ino, int mode, long offset, long length, FuseFileInfo fi) => NotImplemented(request);

    private static ValueTask NotImplemented(FuseRequest request)
    {
        request.ReplyError(Errno.ENOSYS);
        return ValueTask.CompletedTask;
    }
}
