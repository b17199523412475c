// Buffered, checksummed binary writer/reader for state snapshots (LEB128 varints, SHA-256 trailer).
using System.Security.Cryptography;

namespace MirrorFS.MetaServer.Engine;

/// <summary>Streams snapshot bytes to an output through a buffer, hashing everything written.</summary>
internal sealed class SnapshotWriter : IDisposable
{
    private const int BufferBytes = 64 << 10;
    private readonly Stream _out;
    private readonly IncrementalHash _hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
    private readonly byte[] _buf = new byte[BufferBytes];
    private int _pos;

    public SnapshotWriter(Stream output) => _out = output;

    public void WriteRaw(ReadOnlySpan<byte> data)
    {
        while (!data.IsEmpty)
        {
            if (_pos == _buf.Length)
            {
                Flush();
            }
            var n = Math.Min(data.Length, _buf.Length - _pos);
            data[..n].CopyTo(_buf.AsSpan(_pos));
            _pos += n;
            data = data[n..];
        }
    }

    public void WriteVarint(ulong v)
    {
        if (_buf.Length - _pos < 10)
        {
            Flush();
        }
        while (v >= 0x80)
        {
            _buf[_pos++] = (byte)(v | 0x80);
            v >>= 7;
        }
        _buf[_pos++] = (byte)v;
    }

    public void WriteSigned(long v) => WriteVarint((ulong)((v << 1) ^ (v >> 63)));

    public void WriteBytes(ReadOnlySpan<byte> data)
    {
        WriteVarint((ulong)data.Length);
        WriteRaw(data);
    }

    /// <summary>Flushes and appends the SHA-256 of everything written (the trailer is not hashed).</summary>
    public void Finish()
    {
        Flush();
        _out.Write(_hash.GetHashAndReset());
        _out.Flush();
    }

    private void Flush()
    {
        _hash.AppendData(_buf, 0, _pos);
        _out.Write(_buf, 0, _pos);
        _pos = 0;
    }

    public void Dispose() => _hash.Dispose();
}

/// <summary>Reads what <see cref="SnapshotWriter"/> wrote, hashing as it goes; every length is bounded.</summary>
internal sealed class SnapshotReader : IDisposable
{
    private const int BufferBytes = 64 << 10;
    private readonly Stream _in;
    private readonly IncrementalHash _hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
    private readonly byte[] _buf = new byte[BufferBytes];
    private int _pos;
    private int _len;
    private int _hashedTo;

    public SnapshotReader(Stream input) => _in = input;

    private static InvalidDataException Corrupt(string what) =>
        new($"snapshot is corrupt or truncated ({what}); restore from another snapshot");

    private bool Fill()
    {
        _hash.AppendData(_buf, _hashedTo, _pos - _hashedTo);
        var keep = _len - _pos;
        Array.Copy(_buf, _pos, _buf, 0, keep);
        _len = keep;
        _pos = 0;
        _hashedTo = 0;
        var n = _in.Read(_buf, _len, _buf.Length - _len);
        _len += n;
        return n > 0;
    }

    public byte ReadByte()
    {
        if (_pos == _len && !Fill())
        {
            throw Corrupt("unexpected end");
        }
        return _buf[_pos++];
    }

    public void ReadRaw(Span<byte> dest)
    {
        while (!dest.IsEmpty)
        {
            if (_pos == _len && !Fill())
            {
                throw Corrupt("unexpected end");
            }
            var n = Math.Min(dest.Length, _len - _pos);
            _buf.AsSpan(_pos, n).CopyTo(dest);
            _pos += n;
            dest = dest[n..];
        }
    }

    public ulong ReadVarint()
    {
        ulong v = 0;
        for (var shift = 0; shift < 64; shift += 7)
        {
            var b = ReadByte();
            v |= (ulong)(b & 0x7F) << shift;
            if (b < 0x80)
            {
                return v;
            }
        }
        throw Corrupt("varint too long");
    }

    public long ReadSigned()
    {
        var v = ReadVarint();
        return (long)(v >> 1) ^ -(long)(v & 1);
    }

    public uint ReadUInt32()
    {
        var v = ReadVarint();
        return v <= uint.MaxValue ? (uint)v : throw Corrupt("value exceeds 32 bits");
    }

    /// <summary>A count or length no larger than <paramref name="max"/>.</summary>
    public int ReadCount(int max)
    {
        var v = ReadVarint();
        return v <= (ulong)max ? (int)v : throw Corrupt($"count {v} above {max}");
    }

    public byte[] ReadBytes(int maxBytes)
    {
        var data = new byte[ReadCount(maxBytes)];
        ReadRaw(data);
        return data;
    }

    /// <summary>Checks the SHA-256 trailer and that nothing follows it.</summary>
    public void VerifyEnd()
    {
        _hash.AppendData(_buf, _hashedTo, _pos - _hashedTo);
        _hashedTo = _pos;
        var expected = _hash.GetHashAndReset();
        Span<byte> actual = stackalloc byte[32];
        ReadRaw(actual);
        if (!actual.SequenceEqual(expected))
        {
            throw Corrupt("checksum mismatch");
        }
        if (_pos != _len || _in.Read(_buf, 0, 1) != 0)
        {
            throw Corrupt("bytes after the checksum");
        }
    }

    public void Dispose() => _hash.Dispose();
}
