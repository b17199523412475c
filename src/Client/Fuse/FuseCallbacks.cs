// Native entry points libfuse calls: decode and copy arguments, then hand them to the FuseFileSystem.
// Nothing may escape an UnmanagedCallersOnly method, so every one catches and answers EIO.
using System.Buffers;
using System.Reflection;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;

namespace MirrorFS.Client.Fuse;

internal static unsafe class FuseCallbacks
{
    /// <summary>Builds the ops table with entries only for the operations <paramref name="fs"/> overrides.</summary>
    internal static FuseLowLevelOps BuildOps(FuseFileSystem fs)
    {
        var t = fs.GetType();
        bool Has(string name) => Overrides(t, name);
        var ops = default(FuseLowLevelOps);
        ops.Init = (delegate* unmanaged[Cdecl]<nint, FuseConnInfo*, void>)&Init;
        ops.Destroy = (delegate* unmanaged[Cdecl]<nint, void>)&Destroy;
        if (Has(nameof(FuseFileSystem.Lookup))) ops.Lookup = (delegate* unmanaged[Cdecl]<nint, ulong, byte*, void>)&Lookup;
        // Forget always gets a handler: it must be answered with fuse_reply_none.
        ops.Forget = (delegate* unmanaged[Cdecl]<nint, ulong, ulong, void>)&Forget;
        ops.ForgetMulti = (delegate* unmanaged[Cdecl]<nint, nuint, FuseForgetData*, void>)&ForgetMulti;
        if (Has(nameof(FuseFileSystem.GetAttr))) ops.GetAttr = (delegate* unmanaged[Cdecl]<nint, ulong, FuseFileInfo*, void>)&GetAttr;
        if (Has(nameof(FuseFileSystem.SetAttr))) ops.SetAttr = (delegate* unmanaged[Cdecl]<nint, ulong, FuseStat*, int, FuseFileInfo*, void>)&SetAttr;
        if (Has(nameof(FuseFileSystem.ReadLink))) ops.ReadLink = (delegate* unmanaged[Cdecl]<nint, ulong, void>)&ReadLink;
        if (Has(nameof(FuseFileSystem.MkNod))) ops.MkNod = (delegate* unmanaged[Cdecl]<nint, ulong, byte*, uint, ulong, void>)&MkNod;
        if (Has(nameof(FuseFileSystem.MkDir))) ops.MkDir = (delegate* unmanaged[Cdecl]<nint, ulong, byte*, uint, void>)&MkDir;
        if (Has(nameof(FuseFileSystem.Unlink))) ops.Unlink = (delegate* unmanaged[Cdecl]<nint, ulong, byte*, void>)&Unlink;
        if (Has(nameof(FuseFileSystem.RmDir))) ops.RmDir = (delegate* unmanaged[Cdecl]<nint, ulong, byte*, void>)&RmDir;
        if (Has(nameof(FuseFileSystem.SymLink))) ops.SymLink = (delegate* unmanaged[Cdecl]<nint, byte*, ulong, byte*, void>)&SymLink;
        if (Has(nameof(FuseFileSystem.Rename))) ops.Rename = (delegate* unmanaged[Cdecl]<nint, ulong, byte*, ulong, byte*, uint, void>)&Rename;
        if (Has(nameof(FuseFileSystem.Link))) ops.Link = (delegate* unmanaged[Cdecl]<nint, ulong, ulong, byte*, void>)&Link;
        if (Has(nameof(FuseFileSystem.Open))) ops.Open = (delegate* unmanaged[Cdecl]<nint, ulong, FuseFileInfo*, void>)&Open;
        if (Has(nameof(FuseFileSystem.Read))) ops.Read = (delegate* unmanaged[Cdecl]<nint, ulong, nuint, long, FuseFileInfo*, void>)&Read;
        if (Has(nameof(FuseFileSystem.Write))) ops.Write = (delegate* unmanaged[Cdecl]<nint, ulong, byte*, nuint, long, FuseFileInfo*, void>)&Write;
        if (Has(nameof(FuseFileSystem.Flush))) ops.Flush = (delegate* unmanaged[Cdecl]<nint, ulong, FuseFileInfo*, void>)&Flush;
        if (Has(nameof(FuseFileSystem.Release))) ops.Release = (delegate* unmanaged[Cdecl]<nint, ulong, FuseFileInfo*, void>)&Release;
        if (Has(nameof(FuseFileSystem.FSync))) ops.FSync = (delegate* unmanaged[Cdecl]<nint, ulong, int, FuseFileInfo*, void>)&FSync;
        if (Has(nameof(FuseFileSystem.OpenDir))) ops.OpenDir = (delegate* unmanaged[Cdecl]<nint, ulong, FuseFileInfo*, void>)&OpenDir;
        if (Has(nameof(FuseFileSystem.ReadDir))) ops.ReadDir = (delegate* unmanaged[Cdecl]<nint, ulong, nuint, long, FuseFileInfo*, void>)&ReadDir;
        if (Has(nameof(FuseFileSystem.ReadDirPlus))) ops.ReadDirPlus = (delegate* unmanaged[Cdecl]<nint, ulong, nuint, long, FuseFileInfo*, void>)&ReadDirPlus;
        if (Has(nameof(FuseFileSystem.ReleaseDir))) ops.ReleaseDir = (delegate* unmanaged[Cdecl]<nint, ulong, FuseFileInfo*, void>)&ReleaseDir;
        if (Has(nameof(FuseFileSystem.FSyncDir))) ops.FSyncDir = (delegate* unmanaged[Cdecl]<nint, ulong, int, FuseFileInfo*, void>)&FSyncDir;
        if (Has(nameof(FuseFileSystem.StatFs))) ops.StatFs = (delegate* unmanaged[Cdecl]<nint, ulong, void>)&StatFs;
        if (Has(nameof(FuseFileSystem.SetXattr))) ops.SetXattr = (delegate* unmanaged[Cdecl]<nint, ulong, byte*, byte*, nuint, int, void>)&SetXattr;
        if (Has(nameof(FuseFileSystem.GetXattr))) ops.GetXattr = (delegate* unmanaged[Cdecl]<nint, ulong, byte*, nuint, void>)&GetXattr;
        if (Has(nameof(FuseFileSystem.ListXattr))) ops.ListXattr = (delegate* unmanaged[Cdecl]<nint, ulong, nuint, void>)&ListXattr;
        if (Has(nameof(FuseFileSystem.RemoveXattr))) ops.RemoveXattr = (delegate* unmanaged[Cdecl]<nint, ulong, byte*, void>)&RemoveXattr;
        if (Has(nameof(FuseFileSystem.Access))) ops.Access = (delegate* unmanaged[Cdecl]<nint, ulong, int, void>)&Access;
        if (Has(nameof(FuseFileSystem.Create))) ops.Create = (delegate* unmanaged[Cdecl]<nint, ulong, byte*, uint, FuseFileInfo*, void>)&Create;
        if (Has(nameof(FuseFileSystem.GetLk))) ops.GetLk = (delegate* unmanaged[Cdecl]<nint, ulong, FuseFileInfo*, FuseFlock*, void>)&GetLk;
        if (Has(nameof(FuseFileSystem.SetLk))) ops.SetLk = (delegate* unmanaged[Cdecl]<nint, ulong, FuseFileInfo*, FuseFlock*, int, void>)&SetLk;
        if (Has(nameof(FuseFileSystem.Flock))) ops.Flock = (delegate* unmanaged[Cdecl]<nint, ulong, FuseFileInfo*, int, void>)&Flock;
        if (Has(nameof(FuseFileSystem.Fallocate))) ops.Fallocate = (delegate* unmanaged[Cdecl]<nint, ulong, int, long, long, FuseFileInfo*, void>)&Fallocate;
        return ops;
    }

    internal static bool Overrides(Type t, string name)
    {
        foreach (var m in t.GetMethods(BindingFlags.Instance | BindingFlags.Public))
        {
            if (m.Name == name && m.GetBaseDefinition().DeclaringType == typeof(FuseFileSystem) && m.DeclaringType != typeof(FuseFileSystem))
            {
                return true;
            }
        }
        return false;
    }

    private static byte[] Name(byte* p) => MemoryMarshal.CreateReadOnlySpanFromNullTerminated(p).ToArray();

    private static FuseFileInfo Fi(FuseFileInfo* fi) => fi == null ? default : *fi;

    private static FuseFileInfo? FiOrNull(FuseFileInfo* fi) => fi == null ? null : *fi;

    private static bool Begin(nint req, string op, out FuseSessionState s, out FuseRequest r)
    {
        var state = FuseSessionState.FromUserdata(FuseNative.ReqUserdata(req));
        if (state == null)
        {
            // Cannot happen while the session lives; answer so the kernel caller is not left hanging.
            FuseNative.ReplyErr(req, Errno.EIO);
            s = null!;
            r = null!;
            return false;
        }
        s = state;
        r = state.Begin(req, op);
        return true;
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static void Init(nint userdata, FuseConnInfo* conn)
    {
        var s = FuseSessionState.FromUserdata(userdata);
        try
        {
            s?.Fs.Init(ref *conn);
        }
        catch (Exception e)
        {
            s?.Logger.LogError(e, "FUSE init handler failed");
        }
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static void Destroy(nint userdata)
    {
        var s = FuseSessionState.FromUserdata(userdata);
        try
        {
            s?.Fs.Destroy();
        }
        catch (Exception e)
        {
            s?.Logger.LogError(e, "FUSE destroy handler failed");
        }
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static void Lookup(nint req, ulong parent, byte* name)
    {
        if (!Begin(req, "lookup", out var s, out var r)) return;
        try { var n = Name(name); r.Args = new(parent, n); s.Complete(r, s.Fs.Lookup(r, parent, n)); }
        catch (Exception e) { s.Fail(r, e); }
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static void Forget(nint req, ulong ino, ulong nlookup)
    {
        if (!Begin(req, "forget", out var s, out var r)) return;
        try { r.Args = new(ino, Size: (long)nlookup); s.Fs.Forget(ino, nlookup); }
        catch (Exception e) { s.Logger.LogError(e, "FUSE forget handler failed"); }
        finally { r.ReplyNone(); }
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static void ForgetMulti(nint req, nuint count, FuseForgetData* forgets)
    {
        if (!Begin(req, "forget_multi", out var s, out var r)) return;
        try { r.Args = new(Size: (long)count); s.Fs.ForgetMulti(new ReadOnlySpan<FuseForgetData>(forgets, checked((int)count))); }
        catch (Exception e) { s.Logger.LogError(e, "FUSE forget handler failed"); }
        finally { r.ReplyNone(); }
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static void GetAttr(nint req, ulong ino, FuseFileInfo* fi)
    {
        if (!Begin(req, "getattr", out var s, out var r)) return;
        try { r.Args = new(ino); s.Complete(r, s.Fs.GetAttr(r, ino, FiOrNull(fi))); }
        catch (Exception e) { s.Fail(r, e); }
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static void SetAttr(nint req, ulong ino, FuseStat* attr, int toSet, FuseFileInfo* fi)
    {
        if (!Begin(req, "setattr", out var s, out var r)) return;
        try { r.Args = new(ino, Flags: toSet, Off: attr->Size, Size: attr->Mode); s.Complete(r, s.Fs.SetAttr(r, ino, *attr, (FuseSetAttr)toSet, FiOrNull(fi))); }
        catch (Exception e) { s.Fail(r, e); }
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static void ReadLink(nint req, ulong ino)
    {
        if (!Begin(req, "readlink", out var s, out var r)) return;
        try { r.Args = new(ino); s.Complete(r, s.Fs.ReadLink(r, ino)); }
        catch (Exception e) { s.Fail(r, e); }
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static void MkNod(nint req, ulong parent, byte* name, uint mode, ulong rdev)
    {
        if (!Begin(req, "mknod", out var s, out var r)) return;
        try { var n = Name(name); r.Args = new(parent, n, Flags: mode); s.Complete(r, s.Fs.MkNod(r, parent, n, mode, rdev)); }
        catch (Exception e) { s.Fail(r, e); }
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static void MkDir(nint req, ulong parent, byte* name, uint mode)
    {
        if (!Begin(req, "mkdir", out var s, out var r)) return;
        try { var n = Name(name); r.Args = new(parent, n, Flags: mode); s.Complete(r, s.Fs.MkDir(r, parent, n, mode)); }
        catch (Exception e) { s.Fail(r, e); }
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static void Unlink(nint req, ulong parent, byte* name)
    {
        if (!Begin(req, "unlink", out var s, out var r)) return;
        try { var n = Name(name); r.Args = new(parent, n); s.Complete(r, s.Fs.Unlink(r, parent, n)); }
        catch (Exception e) { s.Fail(r, e); }
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static void RmDir(nint req, ulong parent, byte* name)
    {
        if (!Begin(req, "rmdir", out var s, out var r)) return;
        try { var n = Name(name); r.Args = new(parent, n); s.Complete(r, s.Fs.RmDir(r, parent, n)); }
        catch (Exception e) { s.Fail(r, e); }
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static void SymLink(nint req, byte* link, ulong parent, byte* name)
    {
        if (!Begin(req, "symlink", out var s, out var r)) return;
        try { var n = Name(name); var t = Name(link); r.Args = new(parent, n, Name2: t); s.Complete(r, s.Fs.SymLink(r, t, parent, n)); }
        catch (Exception e) { s.Fail(r, e); }
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static void Rename(nint req, ulong parent, byte* name, ulong newParent, byte* newName, uint flags)
    {
        if (!Begin(req, "rename", out var s, out var r)) return;
        try { var n = Name(name); var n2 = Name(newName); r.Args = new(parent, n, newParent, n2, Flags: flags); s.Complete(r, s.Fs.Rename(r, parent, n, newParent, n2, flags)); }
        catch (Exception e) { s.Fail(r, e); }
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static void Link(nint req, ulong ino, ulong newParent, byte* newName)
    {
        if (!Begin(req, "link", out var s, out var r)) return;
        try { var n2 = Name(newName); r.Args = new(ino, null, newParent, n2); s.Complete(r, s.Fs.Link(r, ino, newParent, n2)); }
        catch (Exception e) { s.Fail(r, e); }
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static void Open(nint req, ulong ino, FuseFileInfo* fi)
    {
        if (!Begin(req, "open", out var s, out var r)) return;
        try { var f = Fi(fi); r.Args = new(ino, Flags: f.Flags); s.Complete(r, s.Fs.Open(r, ino, f)); }
        catch (Exception e) { s.Fail(r, e); }
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static void Read(nint req, ulong ino, nuint size, long off, FuseFileInfo* fi)
    {
        if (!Begin(req, "read", out var s, out var r)) return;
        try { var f = Fi(fi); r.Args = new(ino, Off: off, Size: (long)size, Fh: f.Fh); s.Complete(r, s.Fs.Read(r, ino, (int)Math.Min(size, int.MaxValue), off, f)); }
        catch (Exception e) { s.Fail(r, e); }
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static void Write(nint req, ulong ino, byte* buf, nuint size, long off, FuseFileInfo* fi)
    {
        if (!Begin(req, "write", out var s, out var r)) return;
        byte[]? rented = null;
        try
        {
            // The kernel's buffer dies with this callback: copy into a pooled array returned when the handler ends.
            var n = checked((int)size);
            rented = ArrayPool<byte>.Shared.Rent(n);
            new ReadOnlySpan<byte>(buf, n).CopyTo(rented);
            var f = Fi(fi);
            r.Args = new(ino, Off: off, Size: n, Fh: f.Fh);
            var task = s.Fs.Write(r, ino, rented.AsMemory(0, n), off, f);
            var owned = rented;
            rented = null;
            s.Complete(r, task, owned);
        }
        catch (Exception e)
        {
            if (rented != null) ArrayPool<byte>.Shared.Return(rented);
            s.Fail(r, e);
        }
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static void Flush(nint req, ulong ino, FuseFileInfo* fi)
    {
        if (!Begin(req, "flush", out var s, out var r)) return;
        try { var f = Fi(fi); r.Args = new(ino, Fh: f.Fh); s.Complete(r, s.Fs.Flush(r, ino, f)); }
        catch (Exception e) { s.Fail(r, e); }
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static void Release(nint req, ulong ino, FuseFileInfo* fi)
    {
        if (!Begin(req, "release", out var s, out var r)) return;
        try { var f = Fi(fi); r.Args = new(ino, Fh: f.Fh); s.Complete(r, s.Fs.Release(r, ino, f)); }
        catch (Exception e) { s.Fail(r, e); }
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static void FSync(nint req, ulong ino, int datasync, FuseFileInfo* fi)
    {
        if (!Begin(req, "fsync", out var s, out var r)) return;
        try { var f = Fi(fi); r.Args = new(ino, Fh: f.Fh, Flags: datasync); s.Complete(r, s.Fs.FSync(r, ino, datasync != 0, f)); }
        catch (Exception e) { s.Fail(r, e); }
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static void OpenDir(nint req, ulong ino, FuseFileInfo* fi)
    {
        if (!Begin(req, "opendir", out var s, out var r)) return;
        try { r.Args = new(ino); s.Complete(r, s.Fs.OpenDir(r, ino, Fi(fi))); }
        catch (Exception e) { s.Fail(r, e); }
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static void ReadDir(nint req, ulong ino, nuint size, long off, FuseFileInfo* fi)
    {
        if (!Begin(req, "readdir", out var s, out var r)) return;
        try { var f = Fi(fi); r.Args = new(ino, Off: off, Size: (long)size, Fh: f.Fh); s.Complete(r, s.Fs.ReadDir(r, ino, (int)Math.Min(size, DirBuffer.SizeBytesMax), off, f)); }
        catch (Exception e) { s.Fail(r, e); }
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static void ReadDirPlus(nint req, ulong ino, nuint size, long off, FuseFileInfo* fi)
    {
        if (!Begin(req, "readdirplus", out var s, out var r)) return;
        try { var f = Fi(fi); r.Args = new(ino, Off: off, Size: (long)size, Fh: f.Fh); s.Complete(r, s.Fs.ReadDirPlus(r, ino, (int)Math.Min(size, DirBuffer.SizeBytesMax), off, f)); }
        catch (Exception e) { s.Fail(r, e); }
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static void ReleaseDir(nint req, ulong ino, FuseFileInfo* fi)
    {
        if (!Begin(req, "releasedir", out var s, out var r)) return;
        try { var f = Fi(fi); r.Args = new(ino, Fh: f.Fh); s.Complete(r, s.Fs.ReleaseDir(r, ino, f)); }
        catch (Exception e) { s.Fail(r, e); }
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static void FSyncDir(nint req, ulong ino, int datasync, FuseFileInfo* fi)
    {
        if (!Begin(req, "fsyncdir", out var s, out var r)) return;
        try { var f = Fi(fi); r.Args = new(ino, Fh: f.Fh, Flags: datasync); s.Complete(r, s.Fs.FSyncDir(r, ino, datasync != 0, f)); }
        catch (Exception e) { s.Fail(r, e); }
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static void StatFs(nint req, ulong ino)
    {
        if (!Begin(req, "statfs", out var s, out var r)) return;
        try { r.Args = new(ino); s.Complete(r, s.Fs.StatFs(r, ino)); }
        catch (Exception e) { s.Fail(r, e); }
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static void SetXattr(nint req, ulong ino, byte* name, byte* value, nuint size, int flags)
    {
        if (!Begin(req, "setxattr", out var s, out var r)) return;
        try { var n = Name(name); r.Args = new(ino, n, Size: (long)size, Flags: flags); s.Complete(r, s.Fs.SetXattr(r, ino, n, new ReadOnlySpan<byte>(value, checked((int)size)).ToArray(), flags)); }
        catch (Exception e) { s.Fail(r, e); }
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static void GetXattr(nint req, ulong ino, byte* name, nuint size)
    {
        if (!Begin(req, "getxattr", out var s, out var r)) return;
        try { var n = Name(name); r.Args = new(ino, n, Size: (long)size); s.Complete(r, s.Fs.GetXattr(r, ino, n, (int)Math.Min(size, int.MaxValue))); }
        catch (Exception e) { s.Fail(r, e); }
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static void ListXattr(nint req, ulong ino, nuint size)
    {
        if (!Begin(req, "listxattr", out var s, out var r)) return;
        try { r.Args = new(ino, Size: (long)size); s.Complete(r, s.Fs.ListXattr(r, ino, (int)Math.Min(size, int.MaxValue))); }
        catch (Exception e) { s.Fail(r, e); }
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static void RemoveXattr(nint req, ulong ino, byte* name)
    {
        if (!Begin(req, "removexattr", out var s, out var r)) return;
        try { var n = Name(name); r.Args = new(ino, n); s.Complete(r, s.Fs.RemoveXattr(r, ino, n)); }
        catch (Exception e) { s.Fail(r, e); }
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static void Access(nint req, ulong ino, int mask)
    {
        if (!Begin(req, "access", out var s, out var r)) return;
        try { r.Args = new(ino, Flags: mask); s.Complete(r, s.Fs.Access(r, ino, mask)); }
        catch (Exception e) { s.Fail(r, e); }
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static void Create(nint req, ulong parent, byte* name, uint mode, FuseFileInfo* fi)
    {
        if (!Begin(req, "create", out var s, out var r)) return;
        try { var n = Name(name); var f = Fi(fi); r.Args = new(parent, n, Flags: mode, Size: f.Flags); s.Complete(r, s.Fs.Create(r, parent, n, mode, f)); }
        catch (Exception e) { s.Fail(r, e); }
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static void GetLk(nint req, ulong ino, FuseFileInfo* fi, FuseFlock* lk)
    {
        if (!Begin(req, "getlk", out var s, out var r)) return;
        try { var f = Fi(fi); r.Args = new(ino, Fh: f.Fh); s.Complete(r, s.Fs.GetLk(r, ino, f, *lk)); }
        catch (Exception e) { s.Fail(r, e); }
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static void SetLk(nint req, ulong ino, FuseFileInfo* fi, FuseFlock* lk, int sleep)
    {
        if (!Begin(req, "setlk", out var s, out var r)) return;
        try { var f = Fi(fi); r.Args = new(ino, Fh: f.Fh, Flags: sleep); s.Complete(r, s.Fs.SetLk(r, ino, f, *lk, sleep != 0)); }
        catch (Exception e) { s.Fail(r, e); }
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static void Flock(nint req, ulong ino, FuseFileInfo* fi, int op)
    {
        if (!Begin(req, "flock", out var s, out var r)) return;
        try { var f = Fi(fi); r.Args = new(ino, Fh: f.Fh, Flags: op); s.Complete(r, s.Fs.Flock(r, ino, f, op)); }
        catch (Exception e) { s.Fail(r, e); }
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static void Fallocate(nint req, ulong ino, int mode, long offset, long length, FuseFileInfo* fi)
    {
        if (!Begin(req, "fallocate", out var s, out var r)) return;
        try { var f = Fi(fi); r.Args = new(ino, Off: offset, Size: length, Fh: f.Fh, Flags: mode); s.Complete(r, s.Fs.Fallocate(r, ino, mode, offset, length, f)); }
        catch (Exception e) { s.Fail(r, e); }
    }
}
