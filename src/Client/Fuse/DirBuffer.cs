// Native buffer of directory entries for one readdir/readdirplus reply, filled by fuse_add_direntry(_plus).
using System.Runtime.InteropServices;
using System.Text;

namespace MirrorFS.Client.Fuse;

public sealed unsafe class DirBuffer : IDisposable
{
    /// <summary>The kernel never asks for more than a few pages; this caps a bogus size.</summary>
    public const int SizeBytesMax = 1 << 20;
    private const int NameBytesMax = 1024;

    private byte* _buf;
    private readonly int _capacity;
    private int _length;

    internal DirBuffer(FuseRequest request, long size, bool plus)
    {
        Request = request;
        Plus = plus;
        _capacity = (int)Math.Clamp(size, 0, SizeBytesMax);
        _buf = (byte*)NativeMemory.Alloc((nuint)Math.Max(_capacity, 1));
    }

    internal FuseRequest Request { get; }
    public bool Plus { get; }
    public int Length => _length;
    /// <summary>Entries added so far.</summary>
    public int Count { get; private set; }
    public int Capacity => _capacity;
    public bool IsEmpty => _length == 0;
    internal byte* Pointer => _buf;

    /// <summary>Adds a readdir entry (only attr.Ino and the type bits of attr.Mode are used).
    /// <paramref name="nextOffset"/> is the offset the next readdir continues from. False when full.</summary>
    public bool TryAdd(ReadOnlySpan<byte> name, in FuseStat attr, long nextOffset)
    {
        if (Plus)
        {
            throw new InvalidOperationException("this DirBuffer is for readdirplus: use TryAddPlus");
        }
        Span<byte> z = stackalloc byte[NameBytesMax + 1];
        var cname = Terminate(name, z);
        ObjectDisposedException.ThrowIf(_buf == null, this);
        fixed (byte* n = cname)
        fixed (FuseStat* st = &attr)
        {
            var need = FuseNative.AddDirentry(Request.Handle, _buf + _length, (nuint)(_capacity - _length), n, st, nextOffset);
            return Commit(need);
        }
    }

    /// <summary>Adds a readdirplus entry. Each entry added (other than "." and "..") counts as one lookup
    /// of entry.Ino that the kernel will forget later. False when full.</summary>
    public bool TryAddPlus(ReadOnlySpan<byte> name, in FuseEntry entry, long nextOffset)
    {
        if (!Plus)
        {
            throw new InvalidOperationException("this DirBuffer is for readdir: use TryAdd");
        }
        Span<byte> z = stackalloc byte[NameBytesMax + 1];
        var cname = Terminate(name, z);
        ObjectDisposedException.ThrowIf(_buf == null, this);
        fixed (byte* n = cname)
        fixed (FuseEntry* e = &entry)
        {
            var need = FuseNative.AddDirentryPlus(Request.Handle, _buf + _length, (nuint)(_capacity - _length), n, e, nextOffset);
            return Commit(need);
        }
    }

    public bool TryAdd(string name, in FuseStat attr, long nextOffset) => TryAdd(Encoding.UTF8.GetBytes(name), attr, nextOffset);

    public bool TryAddPlus(string name, in FuseEntry entry, long nextOffset) => TryAddPlus(Encoding.UTF8.GetBytes(name), entry, nextOffset);

    private bool Commit(nuint need)
    {
        if (need > (nuint)(_capacity - _length))
        {
            return false;
        }
        _length += (int)need;
        Count++;
        return true;
    }

    private static Span<byte> Terminate(ReadOnlySpan<byte> name, Span<byte> z)
    {
        if (name.Length == 0 || name.Length > NameBytesMax || name.IndexOf((byte)0) >= 0)
        {
            throw new ArgumentException($"directory entry name of {name.Length} bytes is empty, too long or holds a NUL", nameof(name));
        }
        name.CopyTo(z);
        z[name.Length] = 0;
        return z[..(name.Length + 1)];
    }

    public void Dispose()
    {
        if (_buf != null)
        {
            NativeMemory.Free(_buf);
            _buf = null;
        }
    }
}
