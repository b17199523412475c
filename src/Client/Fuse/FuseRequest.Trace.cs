// What a request asked and what it was answered, for metrics and access logs (IFuseRequestObserver).
using System.Diagnostics;
using System.Globalization;
using System.Text;

namespace MirrorFS.Client.Fuse;

/// <summary>
/// The decoded arguments of one request, as raw values: the callbacks store them always (it costs a struct copy)
/// and <see cref="FuseRequest.DescribeArgs"/> formats them only when someone reads an access log.
/// Which fields an operation uses is decided per operation in <see cref="FuseRequest.DescribeArgs"/>.
/// </summary>
public readonly record struct FuseOpArgs(
    ulong Ino = 0,
    byte[]? Name = null,
    ulong Ino2 = 0,
    byte[]? Name2 = null,
    long Off = 0,
    long Size = 0,
    ulong Fh = 0,
    long Flags = 0);

/// <summary>Told about every request once it has been answered. Runs on the replying thread: be quick, never throw.</summary>
public interface IFuseRequestObserver
{
    void Replied(FuseRequest request);
}

/// <summary>The shape of the reply sent, so a description can name what came back.</summary>
public enum ReplyKind
{
    Pending,
    Error,
    Ok,
    None,
    Entry,
    Attr,
    Handle,
    Bytes,
    Size,
    Entries,
}

public sealed partial class FuseRequest
{
    private long _replyTimestamp;

    /// <summary>Arguments of the request (set by the binding before the handler runs).</summary>
    public FuseOpArgs Args { get; internal set; }

    /// <summary><see cref="Stopwatch"/> timestamp of the request's arrival.</summary>
    public long StartTimestamp { get; }

    /// <summary>The errno replied; 0 for a success (valid once replied).</summary>
    public int ReplyErrno { get; private set; }

    public ReplyKind ReplyKind { get; private set; }

    /// <summary>The reply's main number: inode for entries and attributes, handle for opens, bytes for data and
    /// writes, entries for readdir, size for xattr probes.</summary>
    public long ReplyValue { get; private set; }

    /// <summary>A second number: the handle of a create, the size of an attr reply, the bytes of a readdir reply.</summary>
    public long ReplyValue2 { get; private set; }

    /// <summary>Time from arrival to reply (to now while not replied).</summary>
    public TimeSpan Elapsed => _replyTimestamp == 0
        ? Stopwatch.GetElapsedTime(StartTimestamp)
        : Stopwatch.GetElapsedTime(StartTimestamp, _replyTimestamp);

    private void Outcome(int errno, ReplyKind kind, long value, long value2 = 0)
    {
        ReplyErrno = errno;
        ReplyKind = kind;
        ReplyValue = value;
        ReplyValue2 = value2;
        _replyTimestamp = Stopwatch.GetTimestamp();
    }

    /// <summary>The arguments as "(a,b,...)" in the operation's own order, names as UTF-8 with control characters escaped.</summary>
    public string DescribeArgs()
    {
        var a = Args;
        var sb = new StringBuilder(48);
        sb.Append('(');
        switch (Operation)
        {
            case "lookup" or "unlink" or "rmdir":
                Num(sb, a.Ino).Append(',');
                Str(sb, a.Name);
                break;
            case "mknod" or "mkdir":
                Num(sb, a.Ino).Append(',');
                Str(sb, a.Name).Append(',');
                Mode(sb, a.Flags);
                break;
            case "create":
                Num(sb, a.Ino).Append(',');
                Str(sb, a.Name).Append(',');
                Mode(sb, a.Flags).Append(",0x");
                sb.Append(a.Size.ToString("x", CultureInfo.InvariantCulture));
                break;
            case "symlink":
                Num(sb, a.Ino).Append(',');
                Str(sb, a.Name).Append(',');
                Str(sb, a.Name2);
                break;
            case "rename":
                Num(sb, a.Ino).Append(',');
                Str(sb, a.Name).Append(',');
                Num(sb, a.Ino2).Append(',');
                Str(sb, a.Name2).Append(',');
                Num(sb, a.Flags);
                break;
            case "link":
                Num(sb, a.Ino).Append(',');
                Num(sb, a.Ino2).Append(',');
                Str(sb, a.Name2);
                break;
            case "open":
                Num(sb, a.Ino).Append(",0x");
                sb.Append(a.Flags.ToString("x", CultureInfo.InvariantCulture));
                break;
            case "read" or "write" or "readdir" or "readdirplus":
                Num(sb, a.Ino).Append(',');
                Num(sb, a.Size).Append(',');
                Num(sb, a.Off).Append(',');
                Num(sb, a.Fh);
                break;
            case "flush" or "release" or "releasedir" or "getlk":
                Num(sb, a.Ino).Append(',');
                Num(sb, a.Fh);
                break;
            case "fsync" or "fsyncdir" or "setlk" or "flock":
                Num(sb, a.Ino).Append(',');
                Num(sb, a.Fh).Append(',');
                Num(sb, a.Flags);
                break;
            case "setattr":
                // valid mask, then mode and size (meaningful only when their FATTR bit is set)
                Num(sb, a.Ino).Append(",0x");
                sb.Append(a.Flags.ToString("x", CultureInfo.InvariantCulture)).Append(',');
                Mode(sb, a.Size).Append(',');
                Num(sb, a.Off);
                break;
            case "setxattr":
                Num(sb, a.Ino).Append(',');
                Str(sb, a.Name).Append(',');
                Num(sb, a.Size).Append(',');
                Num(sb, a.Flags);
                break;
            case "getxattr":
                Num(sb, a.Ino).Append(',');
                Str(sb, a.Name).Append(',');
                Num(sb, a.Size);
                break;
            case "removexattr":
                Num(sb, a.Ino).Append(',');
                Str(sb, a.Name);
                break;
            case "listxattr" or "forget":
                Num(sb, a.Ino).Append(',');
                Num(sb, a.Size);
                break;
            case "forget_multi":
                Num(sb, a.Size);
                break;
            case "access":
                Num(sb, a.Ino).Append(',');
                Num(sb, a.Flags);
                break;
            case "fallocate":
                Num(sb, a.Ino).Append(',');
                Num(sb, a.Flags).Append(',');
                Num(sb, a.Off).Append(',');
                Num(sb, a.Size).Append(',');
                Num(sb, a.Fh);
                break;
            default:
                Num(sb, a.Ino);
                break;
        }
        return sb.Append(')').ToString();
    }

    /// <summary>"OK", "OK (ino 5)", "OK (4096 bytes)" or an errno name such as "ENOENT".</summary>
    public string DescribeResult() => ReplyKind switch
    {
        ReplyKind.Pending => "no reply",
        ReplyKind.Error => ErrnoName(ReplyErrno),
        ReplyKind.Entry when Operation == "create" => $"OK (ino {ReplyValue}, fh {ReplyValue2})",
        ReplyKind.Entry => $"OK (ino {ReplyValue})",
        ReplyKind.Attr => $"OK (ino {ReplyValue}, size {ReplyValue2})",
        ReplyKind.Handle => $"OK (fh {ReplyValue})",
        ReplyKind.Bytes => $"OK ({ReplyValue} bytes)",
        ReplyKind.Size => $"OK (size {ReplyValue})",
        ReplyKind.Entries => $"OK ({ReplyValue} entries)",
        _ => "OK",
    };

    /// <summary>The symbolic name of an errno (E-number for ones without a name here).</summary>
    public static string ErrnoName(int errno) => errno switch
    {
        Errno.EPERM => "EPERM",
        Errno.ENOENT => "ENOENT",
        Errno.EINTR => "EINTR",
        Errno.EIO => "EIO",
        Errno.EBADF => "EBADF",
        Errno.EAGAIN => "EAGAIN",
        Errno.ENOMEM => "ENOMEM",
        Errno.EACCES => "EACCES",
        Errno.EBUSY => "EBUSY",
        Errno.EEXIST => "EEXIST",
        Errno.EXDEV => "EXDEV",
        Errno.ENOTDIR => "ENOTDIR",
        Errno.EISDIR => "EISDIR",
        Errno.EINVAL => "EINVAL",
        Errno.EFBIG => "EFBIG",
        Errno.ENOSPC => "ENOSPC",
        Errno.EROFS => "EROFS",
        Errno.EMLINK => "EMLINK",
        Errno.ERANGE => "ERANGE",
        Errno.ENAMETOOLONG => "ENAMETOOLONG",
        Errno.ENOSYS => "ENOSYS",
        Errno.ENOTEMPTY => "ENOTEMPTY",
        Errno.ENODATA => "ENODATA",
        Errno.ENOTSUP => "ENOTSUP",
        Errno.EDQUOT => "EDQUOT",
        _ => "E" + errno.ToString(CultureInfo.InvariantCulture),
    };

    private static StringBuilder Num(StringBuilder sb, ulong v) => sb.Append(v.ToString(CultureInfo.InvariantCulture));

    private static StringBuilder Num(StringBuilder sb, long v) => sb.Append(v.ToString(CultureInfo.InvariantCulture));

    private static StringBuilder Mode(StringBuilder sb, long mode) =>
        sb.Append('0').Append(Convert.ToString(mode & 0xFFFFF, 8));

    /// <summary>Names are bytes: shown as UTF-8 (invalid bytes as U+FFFD), control characters as \xNN so a line stays one line.</summary>
    private static StringBuilder Str(StringBuilder sb, byte[]? name)
    {
        if (name is null)
        {
            return sb;
        }
        foreach (var c in Encoding.UTF8.GetString(name))
        {
            if (c < 0x20 || c == 0x7f || c == '\\')
            {
                sb.Append("\\x").Append(((int)c).ToString("x2", CultureInfo.InvariantCulture));
            }
            else
            {
                sb.Append(c);
            }
        }
        return sb;
    }
}
