// One kernel request: caller identity plus the reply methods; exactly one reply, from any thread.
using System.Text;

namespace MirrorFS.Client.Fuse;

public sealed unsafe partial class FuseRequest
{
    private const int Open = 0;
    private const int Busy = 1;
    private const int Replied = 2;

    private readonly FuseSessionState _session;
    private nint _req;
    private int _state;

    internal FuseRequest(FuseSessionState session, nint req, string operation)
    {
        _session = session;
        _req = req;
        Operation = operation;
        var ctx = FuseNative.ReqCtx(req);
        Uid = ctx->Uid;
        Gid = ctx->Gid;
        Pid = ctx->Pid;
        Umask = ctx->Umask;
        StartTimestamp = System.Diagnostics.Stopwatch.GetTimestamp();
        session.RequestArrived();
    }

    /// <summary>Name of the low-level operation, for logs.</summary>
    public string Operation { get; }
    public uint Uid { get; }
    public uint Gid { get; }
    public int Pid { get; }
    public uint Umask { get; }

    public bool HasReplied => Volatile.Read(ref _state) == Replied;

    /// <summary>True when the kernel asked to interrupt this request (the caller got a signal).</summary>
    public bool Interrupted
    {
        get
        {
            // Busy keeps a concurrent reply (which frees the native request) out while we look at it.
            if (Interlocked.CompareExchange(ref _state, Busy, Open) != Open)
            {
                return false;
            }
            try
            {
                return FuseNative.ReqInterrupted(_req) != 0;
            }
            finally
            {
                Volatile.Write(ref _state, Open);
            }
        }
    }

    public void ReplyError(int errno)
    {
        if (errno <= 0)
        {
            throw new ArgumentOutOfRangeException(nameof(errno), errno, "ReplyError takes a positive errno; use a success reply instead");
        }
        var req = Take();
        Outcome(errno, ReplyKind.Error, 0);
        Done(FuseNative.ReplyErr(req, errno));
    }

    /// <summary>Success with no payload (unlink, rmdir, rename, flush, release, fsync, setxattr, removexattr, setlk, access...).</summary>
    public void ReplyOk()
    {
        var req = Take();
        Outcome(0, ReplyKind.Ok, 0);
        Done(FuseNative.ReplyErr(req, 0));
    }

    public void ReplyEntry(in FuseEntry entry)
    {
        var req = Take();
        Outcome(0, ReplyKind.Entry, (long)entry.Ino);
        fixed (FuseEntry* e = &entry)
        {
            Done(FuseNative.ReplyEntry(req, e));
        }
    }

    public void ReplyCreate(in FuseEntry entry, ulong fh, bool directIo = false, bool keepCache = false)
    {
        var fi = new FuseFileInfo { Fh = fh, DirectIo = directIo, KeepCache = keepCache };
        var req = Take();
        Outcome(0, ReplyKind.Entry, (long)entry.Ino, (long)fh);
        fixed (FuseEntry* e = &entry)
        {
            Done(FuseNative.ReplyCreate(req, e, &fi));
        }
    }

    public void ReplyAttr(in FuseStat attr, double attrTimeoutSeconds)
    {
        var req = Take();
        Outcome(0, ReplyKind.Attr, (long)attr.Ino, attr.Size);
        fixed (FuseStat* a = &attr)
        {
            Done(FuseNative.ReplyAttr(req, a, attrTimeoutSeconds));
        }
    }

    public void ReplyReadlink(ReadOnlySpan<byte> target)
    {
        var z = new byte[target.Length + 1];
        target.CopyTo(z);
        var req = Take();
        Outcome(0, ReplyKind.Bytes, target.Length);
        fixed (byte* p = z)
        {
            Done(FuseNative.ReplyReadlink(req, p));
        }
    }

    public void ReplyReadlink(string target) => ReplyReadlink(Encoding.UTF8.GetBytes(target));

    public void ReplyOpen(ulong fh, bool directIo = false, bool keepCache = false, bool cacheReaddir = false, bool nonSeekable = false)
    {
        var fi = new FuseFileInfo { Fh = fh, DirectIo = directIo, KeepCache = keepCache, CacheReaddir = cacheReaddir, NonSeekable = nonSeekable };
        var req = Take();
        Outcome(0, ReplyKind.Handle, (long)fh);
        Done(FuseNative.ReplyOpen(req, &fi));
    }

    public void ReplyWrite(long count)
    {
        var req = Take();
        Outcome(0, ReplyKind.Bytes, count);
        Done(FuseNative.ReplyWrite(req, (nuint)count));
    }

    /// <summary>Data for read, getxattr and listxattr (the bytes are copied before this returns).</summary>
    public void ReplyData(ReadOnlySpan<byte> data)
    {
        var req = Take();
        Outcome(0, ReplyKind.Bytes, data.Length);
        fixed (byte* p = data)
        {
            Done(FuseNative.ReplyBuf(req, p, (nuint)data.Length));
        }
    }

    public void ReplyBuf(ReadOnlySpan<byte> data) => ReplyData(data);

    public void ReplyStatFs(in FuseStatVfs st)
    {
        var req = Take();
        Outcome(0, ReplyKind.Ok, 0);
        fixed (FuseStatVfs* s = &st)
        {
            Done(FuseNative.ReplyStatfs(req, s));
        }
    }

    /// <summary>The size an xattr value or list needs, for getxattr/listxattr called with size 0.</summary>
    public void ReplyXattr(long size)
    {
        var req = Take();
        Outcome(0, ReplyKind.Size, size);
        Done(FuseNative.ReplyXattr(req, (nuint)size));
    }

    public void ReplyLock(in FuseFlock lk)
    {
        var req = Take();
        Outcome(0, ReplyKind.Ok, 0);
        fixed (FuseFlock* l = &lk)
        {
            Done(FuseNative.ReplyLock(req, l));
        }
    }

    /// <summary>Sends the entries added to <paramref name="buffer"/> (readdir or readdirplus) and disposes it.</summary>
    public void ReplyReadDir(DirBuffer buffer)
    {
        if (buffer.Request != this)
        {
            throw new ArgumentException("the DirBuffer was created for another request", nameof(buffer));
        }
        try
        {
            var req = Take();
            Outcome(0, ReplyKind.Entries, buffer.Count, buffer.Length);
            Done(FuseNative.ReplyBuf(req, buffer.Pointer, (nuint)buffer.Length));
        }
        finally
        {
            buffer.Dispose();
        }
    }

    /// <summary>A buffer of at most <paramref name="size"/> bytes (the size readdir was called with).</summary>
    public DirBuffer CreateDirBuffer(long size, bool plus) => new(this, size, plus);

    internal void ReplyNone()
    {
        var req = Take();
        Outcome(0, ReplyKind.None, 0);
        FuseNative.ReplyNone(req);
        _session.RequestDone();
        _session.Observe(this);
    }

    /// <summary>The native request while the reply has not been sent yet (DirBuffer fills need it).</summary>
    internal nint Handle
    {
        get
        {
            if (Volatile.Read(ref _state) == Replied)
            {
                throw new InvalidOperationException($"FUSE {Operation} request was already replied to");
            }
            return _req;
        }
    }

    internal bool TryReplyErrorIfPending(int errno)
    {
        if (!TryTake(out var req))
        {
            return false;
        }
        Outcome(errno, ReplyKind.Error, 0);
        Done(FuseNative.ReplyErr(req, errno));
        return true;
    }

    private nint Take()
    {
        if (!TryTake(out var req))
        {
            throw new InvalidOperationException($"FUSE {Operation} request was already replied to; a request takes exactly one reply");
        }
        return req;
    }

    private bool TryTake(out nint req)
    {
        var spin = new SpinWait();
        while (true)
        {
            var prev = Interlocked.CompareExchange(ref _state, Replied, Open);
            if (prev == Open)
            {
                req = _req;
                _req = 0;
                return true;
            }
            if (prev == Replied)
            {
                req = 0;
                return false;
            }
            spin.SpinOnce();
        }
    }

    private void Done(int rc)
    {
        _session.RequestDone();
        if (rc < 0)
        {
            // -ENOENT means the kernel dropped the request (interrupted caller): not an error worth a log line.
            _session.ReplyFailed(Operation, -rc);
        }
        _session.Observe(this);
    }
}
