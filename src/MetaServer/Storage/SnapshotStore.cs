// Snapshot files: snap/{index}-{term}.snap, a checksummed header then the state machine's streamed body.
using System.Globalization;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace MirrorFS.MetaServer.Storage;

/// <summary>A snapshot on disk: the last log entry it includes (index and term) and its body size.</summary>
public sealed record SnapshotInfo(ulong Index, ulong Term, long BodyBytes, string Path);

/// <summary>
/// Writes snapshots atomically (temp file + fsync + rename + directory fsync), keeps the newest <see cref="KeepCount"/>,
/// and opens the newest one whose checksum verifies. A damaged snapshot is renamed to <c>*.corrupt</c>, logged and
/// skipped in favour of an older good one. Bodies are streamed both ways, never held in memory.
/// </summary>
public sealed class SnapshotStore
{
    public const string Extension = ".snap";
    private const int IoBufferBytes = 1 << 20;
    private readonly ILogger _logger;

    public SnapshotStore(string directory, int keepCount = 2, ILogger? logger = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(keepCount, 1);
        Directory = directory;
        KeepCount = keepCount;
        _logger = logger ?? NullLogger.Instance;
        System.IO.Directory.CreateDirectory(directory);
        // Temp files are snapshots whose writer crashed before the rename: never valid, so remove them.
        foreach (var tmp in System.IO.Directory.EnumerateFiles(directory, "*" + Extension + ".tmp"))
        {
            File.Delete(tmp);
        }
    }

    public string Directory { get; }

    /// <summary>How many snapshots are kept after a write (older ones deleted).</summary>
    public int KeepCount { get; }

    /// <summary>The snapshot files present, newest first, from their names only (not verified).</summary>
    public IReadOnlyList<(ulong Index, ulong Term, string Path)> List()
    {
        var found = new List<(ulong Index, ulong Term, string Path)>();
        foreach (var path in System.IO.Directory.EnumerateFiles(Directory, "*" + Extension))
        {
            if (TryParseName(System.IO.Path.GetFileName(path), out var index, out var term))
            {
                found.Add((index, term, path));
            }
        }
        found.Sort((a, b) => a.Index != b.Index ? b.Index.CompareTo(a.Index) : b.Term.CompareTo(a.Term));
        return found;
    }

    public static string FileName(ulong index, ulong term) =>
        string.Create(CultureInfo.InvariantCulture, $"{index}-{term}{Extension}");

    /// <summary>Starts writing the snapshot that includes every entry up to <paramref name="index"/> (whose term is
    /// <paramref name="term"/>). Write the body to <see cref="SnapshotWriter.Body"/>, then <see cref="SnapshotWriter.Commit"/>;
    /// disposing without committing discards it.</summary>
    public SnapshotWriter Create(ulong index, ulong term) => new(this, index, term);

    /// <summary>Writes a whole snapshot whose body <paramref name="writeBody"/> streams out; durable when this returns.</summary>
    public SnapshotInfo Write(ulong index, ulong term, Action<Stream> writeBody)
    {
        using var writer = Create(index, term);
        writeBody(writer.Body);
        return writer.Commit();
    }

    /// <summary>Opens the newest snapshot whose header and body checksum verify (null when there is none). The body
    /// is read twice: once to verify it, once by the caller, so a bad snapshot is never half-restored.</summary>
    public OpenedSnapshot? OpenNewest()
    {
        foreach (var (index, term, path) in List())
        {
            var problem = Verify(path, index, term, out var header);
            if (problem is null)
            {
                var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, IoBufferBytes);
                stream.Position = WalFormat.SnapshotHeaderBytes;
                var info = new SnapshotInfo(index, term, (long)header.BodyLength, path);
                return new OpenedSnapshot(info, new BoundedReadStream(stream, (long)header.BodyLength));
            }
            var kept = path + ".corrupt";
            File.Move(path, kept, overwrite: true);
            _logger.LogWarning("Snapshot {Path} is damaged ({Problem}); ignored it (kept as {Kept}) and trying an older one", path, problem, kept);
        }
        return null;
    }

    private static string? Verify(string path, ulong index, ulong term, out WalFormat.SnapshotHeader header)
    {
        header = default;
        using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 0);
        var buf = new byte[IoBufferBytes];
        var headerBytes = buf.AsSpan(0, WalFormat.SnapshotHeaderBytes);
        var got = fs.ReadAtLeast(headerBytes, headerBytes.Length, throwOnEndOfStream: false);
        var parsed = WalFormat.ReadSnapshotHeader(headerBytes[..got], $"snapshot {path}", out var problem);
        if (parsed is not { } h)
        {
            return problem;
        }
        header = h;
        if (h.Index != index || h.Term != term)
        {
            return $"header says index {h.Index} term {h.Term}, file name says index {index} term {term}";
        }
        if (fs.Length - WalFormat.SnapshotHeaderBytes != (long)h.BodyLength)
        {
            return $"body is {fs.Length - WalFormat.SnapshotHeaderBytes} bytes, header says {h.BodyLength}";
        }
        uint crc = 0;
        int n;
        while ((n = fs.Read(buf, 0, buf.Length)) > 0)
        {
            crc = Crc32C.Append(crc, buf.AsSpan(0, n));
        }
        return crc == h.BodyCrc ? null : $"body checksum mismatch (stored {h.BodyCrc:x8}, computed {crc:x8})";
    }

    internal SnapshotInfo Publish(string tmpPath, ulong index, ulong term, long bodyBytes)
    {
        var path = System.IO.Path.Combine(Directory, FileName(index, term));
        File.Move(tmpPath, path, overwrite: true);
        DurableFiles.FsyncDirectory(Directory);
        // Prune only after the new one is durable, so a crash never leaves fewer good snapshots than before.
        var all = List();
        for (var i = KeepCount; i < all.Count; i++)
        {
            File.Delete(all[i].Path);
        }
        return new SnapshotInfo(index, term, bodyBytes, path);
    }

    internal static bool TryParseName(string name, out ulong index, out ulong term)
    {
        index = term = 0;
        if (!name.EndsWith(Extension, StringComparison.Ordinal))
        {
            return false;
        }
        var stem = name.AsSpan(0, name.Length - Extension.Length);
        var dash = stem.IndexOf('-');
        return dash > 0
            && ulong.TryParse(stem[..dash], NumberStyles.None, CultureInfo.InvariantCulture, out index)
            && ulong.TryParse(stem[(dash + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out term);
    }
}

/// <summary>A snapshot being written; see <see cref="SnapshotStore.Create"/>.</summary>
public sealed class SnapshotWriter : IDisposable
{
    private readonly SnapshotStore _store;
    private readonly string _tmpPath;
    private readonly FileStream _file;
    private readonly ChecksumWriteStream _body;
    private bool _done;

    internal SnapshotWriter(SnapshotStore store, ulong index, ulong term)
    {
        _store = store;
        Index = index;
        Term = term;
        _tmpPath = Path.Combine(store.Directory, SnapshotStore.FileName(index, term) + ".tmp");
        _file = new FileStream(_tmpPath, FileMode.Create, FileAccess.ReadWrite, FileShare.None, 1 << 20);
        _file.Write(new byte[WalFormat.SnapshotHeaderBytes]); // placeholder until length and checksum are known
        _body = new ChecksumWriteStream(_file);
    }

    public ulong Index { get; }
    public ulong Term { get; }

    /// <summary>Where the body goes. Write-only; do not dispose it.</summary>
    public Stream Body => _body;

    /// <summary>Finishes the file and makes it durable and visible; older snapshots beyond the kept count are deleted.</summary>
    public SnapshotInfo Commit()
    {
        ObjectDisposedException.ThrowIf(_done, this);
        Span<byte> header = stackalloc byte[WalFormat.SnapshotHeaderBytes];
        WalFormat.WriteSnapshotHeader(header, Index, Term, (ulong)_body.BytesWritten, _body.Crc);
        _file.Position = 0;
        _file.Write(header);
        _file.Flush(flushToDisk: true);
        _file.Dispose();
        _done = true;
        return _store.Publish(_tmpPath, Index, Term, _body.BytesWritten);
    }

    public void Dispose()
    {
        if (_done)
        {
            return;
        }
        _done = true;
        _file.Dispose();
        File.Delete(_tmpPath);
    }
}

/// <summary>An opened, verified snapshot. Dispose it when the restore is done.</summary>
public sealed class OpenedSnapshot(SnapshotInfo info, Stream body) : IDisposable
{
    public SnapshotInfo Info { get; } = info;

    /// <summary>The body only (the header is skipped), ending exactly at the body's end.</summary>
    public Stream Body { get; } = body;

    public void Dispose() => Body.Dispose();
}

/// <summary>Forwards writes and keeps a running CRC-32C and byte count.</summary>
internal sealed class ChecksumWriteStream(Stream inner) : Stream
{
    public uint Crc { get; private set; }
    public long BytesWritten { get; private set; }

    public override bool CanRead => false;
    public override bool CanSeek => false;
    public override bool CanWrite => true;
    public override long Length => BytesWritten;
    public override long Position { get => BytesWritten; set => throw new NotSupportedException(); }

    public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

    public override void Write(ReadOnlySpan<byte> buffer)
    {
        inner.Write(buffer);
        Crc = Crc32C.Append(Crc, buffer);
        BytesWritten += buffer.Length;
    }

    public override void WriteByte(byte value) => Write([value]);

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken)
    {
        Write(buffer.AsSpan(offset, count));
        return Task.CompletedTask;
    }

    public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        Write(buffer.Span);
        return ValueTask.CompletedTask;
    }

    public override void Flush() => inner.Flush();
    public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
}

/// <summary>Reads at most <c>length</c> bytes of <c>inner</c> from its current position, then reports end of stream.</summary>
internal sealed class BoundedReadStream(Stream inner, long length) : Stream
{
    private readonly long _length = length;
    private long _remaining = length;

    public override bool CanRead => true;
    public override bool CanSeek => false;
    public override bool CanWrite => false;
    public override long Length => _length;
    public override long Position { get => _length - _remaining; set => throw new NotSupportedException(); }

    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    public override int Read(Span<byte> buffer)
    {
        if (_remaining <= 0)
        {
            return 0;
        }
        var n = inner.Read(buffer[..(int)Math.Min(buffer.Length, _remaining)]);
        _remaining -= n;
        return n;
    }

    public override void Flush()
    {
    }

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            inner.Dispose();
        }
        base.Dispose(disposing);
    }
}
