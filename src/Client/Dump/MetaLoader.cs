// Reads a JSON dump as a stream and loads it through LoadEntries commands in bounded batches.
using System.IO.Compression;
using System.Text.Json;
using Google.Protobuf;
using MirrorFS.Core.Meta;

namespace MirrorFS.Client.Dump;

/// <summary>The dump's header as read before its tree.</summary>
public sealed record DumpInfo(string? DumpedAt, ulong LogIndex, bool SecretKeysRemoved, Volume Volume,
    ulong NextInode, ulong NextSliceId, ulong Inodes, ulong UsedBytes);

/// <summary>What a load read and what the metaserver holds after it.</summary>
public sealed record LoadResult(DumpInfo Info, ulong Nodes, ulong Inodes, ulong HardLinks, ulong Slices, ulong Batches,
    ulong ServerInodes, ulong ServerUsedBytes);

/// <summary>The metaserver refused a load step; the message is one line.</summary>
public sealed class MetaLoadException(string message, int errno) : Exception(message)
{
    public int Errno { get; } = errno;
}

/// <summary>
/// Parses the dump with <see cref="JsonPullReader"/> (never the whole document) and sends what it reads in
/// batches of at most <see cref="BatchBytesMax"/> bytes or <see cref="BatchItemsMax"/> items: BEGIN with the
/// volume settings, ENTRIES batches in file order (a directory before its entries, an inode before its chunks
/// and names), then FINISH with the counters. Memory holds one batch, one node and one stack entry per open directory.
/// </summary>
public sealed class MetaLoader
{
    public const int BatchBytesMax = 512 << 10;
    public const int BatchItemsMax = 8192;

    private static readonly JsonParser VolumeParser = new(JsonParser.Settings.Default.WithIgnoreUnknownFields(true));

    private readonly JsonPullReader _r;
    private readonly Func<LoadEntriesRequest, CancellationToken, Task<LoadEntriesReply>> _send;
    private readonly CancellationToken _ct;
    private LoadEntriesRequest _batch = NewBatch();
    private int _batchBytes;
    private int _batchItems;
    private ulong _batches;
    private ulong _nodes;
    private ulong _inodes;
    private ulong _hardLinks;
    private ulong _slices;

    private MetaLoader(Stream input, Func<LoadEntriesRequest, CancellationToken, Task<LoadEntriesReply>> send, CancellationToken ct)
    {
        _r = new JsonPullReader(input);
        _send = send;
        _ct = ct;
    }

    /// <summary>A stream that reads the dump whether it is plain or gzip-compressed (by its first two bytes).</summary>
    public static async Task<Stream> OpenAsync(Stream raw, CancellationToken ct = default)
    {
        var head = new byte[2];
        var n = 0;
        while (n < 2)
        {
            var got = await raw.ReadAsync(head.AsMemory(n), ct).ConfigureAwait(false);
            if (got == 0)
            {
                break;
            }
            n += got;
        }
        Stream joined = new PrefixedStream(head.AsMemory(0, n), raw);
        return n == 2 && head[0] == 0x1F && head[1] == 0x8B ? new GZipStream(joined, CompressionMode.Decompress) : joined;
    }

    /// <summary>
    /// Loads the dump in <paramref name="input"/> (plain JSON; see <see cref="OpenAsync"/>) through
    /// <paramref name="send"/>. <paramref name="volumeFor"/> sees the dump's header before anything is sent and
    /// returns the volume settings BEGIN records (it may throw to stop).
    /// </summary>
    public static Task<LoadResult> LoadAsync(Stream input, Func<LoadEntriesRequest, CancellationToken, Task<LoadEntriesReply>> send,
        Func<DumpInfo, Volume> volumeFor, CancellationToken ct = default) =>
        new MetaLoader(input, send, ct).RunAsync(volumeFor);

    private static LoadEntriesRequest NewBatch() => new() { Phase = LoadPhase.Entries };

    private async Task<LoadResult> RunAsync(Func<DumpInfo, Volume> volumeFor)
    {
        await _r.ExpectAsync(JsonTokenType.StartObject, "a JSON object", _ct);
        string? format = null;
        var version = 0L;
        string? dumpedAt = null;
        ulong logIndex = 0, nextInode = 0, nextSliceId = 0, inodes = 0, usedBytes = 0;
        var secretRemoved = false;
        Volume? volume = null;
        DumpInfo? info = null;
        var treeDone = false;
        var totalsSeen = false;
        while (await NextPropertyAsync())
        {
            if (_r.Is("format"u8))
            {
                await _r.ReadAsync(_ct);
                format = _r.GetString();
                if (format != DumpFormat.FormatName)
                {
                    throw new DumpFormatException($"not a MirrorFS dump (format '{format}', expected '{DumpFormat.FormatName}')");
                }
            }
            else if (_r.Is("version"u8))
            {
                await _r.ReadAsync(_ct);
                version = _r.GetInt64();
                if (version != DumpFormat.Version)
                {
                    throw new DumpFormatException($"dump format version {version} is not read by this build (it reads {DumpFormat.Version}); use a matching mirrorfs");
                }
            }
            else if (_r.Is("dumpedAt"u8))
            {
                await _r.ReadAsync(_ct);
                dumpedAt = _r.GetString();
            }
            else if (_r.Is("logIndex"u8))
            {
                await _r.ReadAsync(_ct);
                logIndex = _r.GetUInt64();
            }
            else if (_r.Is("secretKeysRemoved"u8))
            {
                await _r.ReadAsync(_ct);
                secretRemoved = _r.GetBoolean();
            }
            else if (_r.Is("volume"u8))
            {
                await _r.ExpectAsync(JsonTokenType.StartObject, "the volume object", _ct);
                volume = await ReadVolumeAsync();
            }
            else if (_r.Is("counters"u8))
            {
                await _r.ExpectAsync(JsonTokenType.StartObject, "the counters object", _ct);
                while (await NextPropertyAsync())
                {
                    var key = _r.Value.ToArray();
                    await _r.ReadAsync(_ct);
                    switch (System.Text.Encoding.UTF8.GetString(key))
                    {
                        case "nextInode": nextInode = _r.GetUInt64(); break;
                        case "nextSliceId": nextSliceId = _r.GetUInt64(); break;
                        case "inodes": inodes = _r.GetUInt64(); break;
                        case "usedBytes": usedBytes = _r.GetUInt64(); break;
                        default: await _r.SkipValueAsync(_ct); break;
                    }
                }
            }
            else if (_r.Is("tree"u8))
            {
                if (format is null || version == 0 || volume is null || treeDone)
                {
                    throw _r.Error("\"format\", \"version\" and \"volume\" must come before the one \"tree\"");
                }
                info = new DumpInfo(dumpedAt, logIndex, secretRemoved, volume, nextInode, nextSliceId, inodes, usedBytes);
                var begin = volumeFor(info);
                await SendAsync(new LoadEntriesRequest { Phase = LoadPhase.Begin, Volume = begin }, "start the load");
                await _r.ExpectAsync(JsonTokenType.StartObject, "the root node", _ct);
                await ReadTreeAsync();
                await FlushAsync();
                treeDone = true;
            }
            else if (_r.Is("totals"u8))
            {
                await _r.ExpectAsync(JsonTokenType.StartObject, "the totals object", _ct);
                while (await NextPropertyAsync())
                {
                    var key = System.Text.Encoding.UTF8.GetString(_r.Value);
                    await _r.ReadAsync(_ct);
                    var (expected, actual) = key switch
                    {
                        "nodes" => (_r.GetUInt64(), _nodes),
                        "inodes" => (_r.GetUInt64(), _inodes),
                        "hardLinks" => (_r.GetUInt64(), _hardLinks),
                        "slices" => (_r.GetUInt64(), _slices),
                        _ => (0UL, 0UL),
                    };
                    await _r.SkipValueAsync(_ct);
                    if (expected != actual)
                    {
                        throw new DumpFormatException($"dump totals say {expected} {key} but the tree holds {actual}: the file is damaged");
                    }
                }
                totalsSeen = true;
            }
            else
            {
                await _r.SkipNextValueAsync(_ct);
            }
        }
        if (await _r.ReadAsync(_ct))
        {
            throw _r.Error("data after the dump's closing brace");
        }
        if (!treeDone || !totalsSeen)
        {
            throw new DumpFormatException($"dump has no {(treeDone ? "totals" : "tree")}: the file is truncated or not a dump");
        }
        var done = await SendAsync(new LoadEntriesRequest
        {
            Phase = LoadPhase.Finish,
            NextInode = nextInode,
            NextSliceId = nextSliceId,
        }, "finish the load");
        return new LoadResult(info!, _nodes, _inodes, _hardLinks, _slices, _batches, done.Inodes, done.UsedBytes);
    }

    /// <summary>Reads the next property name of the current object; false at its end.</summary>
    private async ValueTask<bool> NextPropertyAsync()
    {
        if (!await _r.ReadAsync(_ct))
        {
            throw _r.Error("the JSON ends inside an object");
        }
        return _r.Token switch
        {
            JsonTokenType.PropertyName => true,
            JsonTokenType.EndObject => false,
            _ => throw _r.Error("expected a property name"),
        };
    }

    private async Task<Volume> ReadVolumeAsync()
    {
        using var ms = new MemoryStream();
        await using (var w = new Utf8JsonWriter(ms))
        {
            await _r.CopyValueAsync(w, _ct);
        }
        try
        {
            return VolumeParser.Parse<Volume>(System.Text.Encoding.UTF8.GetString(ms.ToArray()));
        }
        catch (InvalidProtocolBufferException e)
        {
            throw new DumpFormatException($"dump's volume settings do not parse: {e.Message}");
        }
    }

    /// <summary>One node's fields as read so far.</summary>
    private sealed class Node
    {
        public byte[]? Name;
        public ulong Inode;
        public uint Type;
        public uint Mode;
        public uint Uid;
        public uint Gid;
        public uint Nlink;
        public long Atime;
        public long Mtime;
        public long Ctime;
        public ulong Length;
        public ulong Rdev;
        public byte[]? Target;
        public List<DumpXattr>? Xattrs;
        public bool HardLink;
        public bool Sent;
    }

    /// <summary>Walks the tree with an explicit stack of open directories (no recursion: trees can be deep).</summary>
    private async Task ReadTreeAsync()
    {
        var dirs = new List<ulong>();
        if (await ReadNodeAsync(0, true) is { } rootDir)
        {
            dirs.Add(rootDir);
        }
        while (dirs.Count > 0)
        {
            if (!await _r.ReadAsync(_ct))
            {
                throw _r.Error("the JSON ends inside a directory");
            }
            if (_r.Token == JsonTokenType.EndArray)
            {
                // "entries" is a directory's last property.
                await _r.ExpectAsync(JsonTokenType.EndObject, "the end of a directory after its entries", _ct);
                dirs.RemoveAt(dirs.Count - 1);
                continue;
            }
            if (_r.Token != JsonTokenType.StartObject)
            {
                throw _r.Error("expected an entry object");
            }
            if (await ReadNodeAsync(dirs[^1], false) is { } dir)
            {
                dirs.Add(dir);
            }
        }
    }

    /// <summary>Reads a node's properties after its '{'. Returns the inode when it is a directory whose "entries"
    /// array is now open; null when the node's object has ended.</summary>
    private async Task<ulong?> ReadNodeAsync(ulong parent, bool root)
    {
        var n = new Node();
        while (await NextPropertyAsync())
        {
            var key = System.Text.Encoding.UTF8.GetString(_r.Value);
            if (n.Sent && key is not ("chunks" or "entries"))
            {
                throw _r.Error($"\"{key}\" must come before \"chunks\" and \"entries\"");
            }
            switch (key)
            {
                case "chunks":
                    Send(n, parent, root);
                    await SendPendingAsync();
                    await ReadChunksAsync(n);
                    continue;
                case "entries":
                    Send(n, parent, root);
                    await SendPendingAsync();
                    await _r.ExpectAsync(JsonTokenType.StartArray, "the entries array", _ct);
                    if (n.Type != PosixMode.Directory)
                    {
                        throw _r.Error($"inode {n.Inode} has entries but is not a directory");
                    }
                    return n.Inode;
            }
            await _r.ReadAsync(_ct);
            switch (key)
            {
                case "name": n.Name = _r.GetStringBytes(); break;
                case "nameBase64": n.Name = _r.GetBase64(); break;
                case "inode": n.Inode = _r.GetUInt64(); break;
                case "type":
                    n.Type = DumpFormat.TypeBits(_r.GetString());
                    if (n.Type == 0)
                    {
                        throw _r.Error($"unknown type '{_r.GetString()}'");
                    }
                    break;
                case "mode": n.Mode = _r.GetUInt32() & PosixMode.PermMask; break;
                case "uid": n.Uid = _r.GetUInt32(); break;
                case "gid": n.Gid = _r.GetUInt32(); break;
                case "nlink": n.Nlink = _r.GetUInt32(); break;
                case "atimeNs": n.Atime = _r.GetInt64(); break;
                case "mtimeNs": n.Mtime = _r.GetInt64(); break;
                case "ctimeNs": n.Ctime = _r.GetInt64(); break;
                case "length": n.Length = _r.GetUInt64(); break;
                case "rdev": n.Rdev = _r.GetUInt64(); break;
                case "target": n.Target = _r.GetStringBytes(); break;
                case "targetBase64": n.Target = _r.GetBase64(); break;
                case "hardlink": n.HardLink = _r.GetBoolean(); break;
                case "xattrs":
                    if (_r.Token != JsonTokenType.StartArray)
                    {
                        throw _r.Error("\"xattrs\" must be an array");
                    }
                    n.Xattrs = await ReadXattrsAsync();
                    break;
                default:
                    await _r.SkipValueAsync(_ct);
                    break;
            }
        }
        if (!n.Sent)
        {
            Send(n, parent, root);
            await SendPendingAsync();
        }
        if (n.Type == PosixMode.Directory)
        {
            throw _r.Error($"directory inode {n.Inode} has no \"entries\"");
        }
        return null;
    }

    private async Task<List<DumpXattr>> ReadXattrsAsync()
    {
        var list = new List<DumpXattr>();
        while (await _r.ReadAsync(_ct) && _r.Token == JsonTokenType.StartObject)
        {
            var x = new DumpXattr();
            while (await NextPropertyAsync())
            {
                var key = System.Text.Encoding.UTF8.GetString(_r.Value);
                await _r.ReadAsync(_ct);
                switch (key)
                {
                    case "name": x.Name = ByteString.CopyFrom(_r.GetStringBytes()); break;
                    case "nameBase64": x.Name = ByteString.CopyFrom(_r.GetBase64()); break;
                    case "value": x.Value = ByteString.CopyFrom(_r.GetBase64()); break;
                    default: await _r.SkipValueAsync(_ct); break;
                }
            }
            list.Add(x);
        }
        if (_r.Token != JsonTokenType.EndArray)
        {
            throw _r.Error("expected an xattr object");
        }
        return list;
    }

    /// <summary>Adds the node (inode and name, or only a name for a hard link) to the batch.</summary>
    private void Send(Node n, ulong parent, bool root)
    {
        if (n.Sent)
        {
            throw _r.Error("\"chunks\" or \"entries\" given twice");
        }
        n.Sent = true;
        _nodes++;
        if (n.Inode == 0)
        {
            throw _r.Error("a node has no \"inode\" before its chunks or entries");
        }
        if (root)
        {
            if (n.Inode != 1 || n.Type != PosixMode.Directory || n.HardLink)
            {
                throw _r.Error("the tree's root must be directory inode 1");
            }
        }
        else if (n.Name is null)
        {
            throw _r.Error($"entry inode {n.Inode} has no \"name\"");
        }
        if (n.HardLink)
        {
            _hardLinks++;
            AddDentry(parent, n);
            return;
        }
        if (n.Type == 0)
        {
            throw _r.Error($"inode {n.Inode} has no \"type\"");
        }
        _inodes++;
        var li = new LoadInode
        {
            Attr = new Attr
            {
                Inode = n.Inode,
                Mode = n.Type | n.Mode,
                Uid = n.Uid,
                Gid = n.Gid,
                Nlink = n.Nlink,
                Size = n.Length,
                Rdev = n.Rdev,
                AtimeNs = n.Atime,
                MtimeNs = n.Mtime,
                CtimeNs = n.Ctime,
                Parent = n.Type == PosixMode.Directory ? (root ? 1 : parent) : 0,
            },
        };
        var bytes = 96;
        if (n.Target is not null)
        {
            li.Target = ByteString.CopyFrom(n.Target);
            bytes += n.Target.Length;
        }
        if (n.Xattrs is not null)
        {
            li.Xattrs.AddRange(n.Xattrs);
            bytes += n.Xattrs.Sum(x => x.Name.Length + x.Value.Length + 8);
        }
        Reserve(bytes);
        _batch.Inodes.Add(li);
        if (!root)
        {
            AddDentry(parent, n);
        }
    }

    private void AddDentry(ulong parent, Node n)
    {
        Reserve(24 + n.Name!.Length);
        _batch.Dentries.Add(new LoadDentry { Parent = parent, Name = ByteString.CopyFrom(n.Name), Inode = n.Inode });
    }

    /// <summary>Counts an item into the batch; a full batch is queued for sending first.</summary>
    private void Reserve(int bytes)
    {
        if (_batchItems > 0 && (_batchItems >= BatchItemsMax || _batchBytes + bytes > BatchBytesMax))
        {
            _full.Enqueue(_batch);
            _batch = NewBatch();
            _batchBytes = 0;
            _batchItems = 0;
        }
        _batchBytes += bytes;
        _batchItems++;
    }

    // Batches that filled up, sent at the next await point (Send and Reserve are synchronous); at most two, as
    // every synchronous step adds at most two items and is followed by SendPendingAsync.
    private readonly Queue<LoadEntriesRequest> _full = new();

    private async Task SendPendingAsync()
    {
        while (_full.TryDequeue(out var b))
        {
            await SendAsync(b, "load a batch");
        }
    }

    private async Task FlushAsync()
    {
        await SendPendingAsync();
        if (_batchItems > 0)
        {
            var b = _batch;
            _batch = NewBatch();
            _batchBytes = 0;
            _batchItems = 0;
            await SendAsync(b, "load a batch");
        }
    }

    private async Task ReadChunksAsync(Node n)
    {
        await SendPendingAsync();
        if (n.HardLink || n.Type != PosixMode.Regular)
        {
            throw _r.Error($"inode {n.Inode} has chunks but is not a regular file");
        }
        await _r.ExpectAsync(JsonTokenType.StartArray, "the chunks array", _ct);
        while (await _r.ReadAsync(_ct) && _r.Token == JsonTokenType.StartObject)
        {
            uint? index = null;
            while (await NextPropertyAsync())
            {
                var key = System.Text.Encoding.UTF8.GetString(_r.Value);
                await _r.ReadAsync(_ct);
                if (key == "index")
                {
                    index = _r.GetUInt32();
                }
                else if (key == "slices")
                {
                    if (index is null || _r.Token != JsonTokenType.StartArray)
                    {
                        throw _r.Error("a chunk needs \"index\" before its \"slices\" array");
                    }
                    await ReadSlicesAsync(n.Inode, index.Value);
                }
                else
                {
                    await _r.SkipValueAsync(_ct);
                }
            }
        }
        if (_r.Token != JsonTokenType.EndArray)
        {
            throw _r.Error("expected a chunk object");
        }
    }

    private async Task ReadSlicesAsync(ulong inode, uint index)
    {
        LoadChunk? chunk = null;
        while (await _r.ReadAsync(_ct) && _r.Token == JsonTokenType.StartObject)
        {
            var s = new Slice();
            while (await NextPropertyAsync())
            {
                var key = System.Text.Encoding.UTF8.GetString(_r.Value);
                await _r.ReadAsync(_ct);
                switch (key)
                {
                    case "id": s.Id = _r.GetUInt64(); break;
                    case "size": s.Size = _r.GetUInt32(); break;
                    case "offset": s.Offset = _r.GetUInt32(); break;
                    case "length": s.Length = _r.GetUInt32(); break;
                    case "pos": s.Pos = _r.GetUInt32(); break;
                    default: await _r.SkipValueAsync(_ct); break;
                }
            }
            var before = _batch;
            Reserve(32);
            if (!ReferenceEquals(before, _batch) || chunk is null)
            {
                // First slice, or the batch filled: the chunk continues in the new batch (slices are appended).
                chunk = new LoadChunk { Inode = inode, Index = index };
                _batch.Chunks.Add(chunk);
            }
            chunk.Slices.Add(s);
            _slices++;
            await SendPendingAsync();
        }
        if (_r.Token != JsonTokenType.EndArray)
        {
            throw _r.Error("expected a slice object");
        }
    }

    private async Task<LoadEntriesReply> SendAsync(LoadEntriesRequest request, string what)
    {
        var reply = await _send(request, _ct).ConfigureAwait(false);
        if (request.Phase == LoadPhase.Entries)
        {
            _batches++;
        }
        if (reply.Errno != 0)
        {
            var about = reply.Inode != 0 ? $" at inode {reply.Inode}" : "";
            throw new MetaLoadException(reply.Errno switch
            {
                Errno.ENOTEMPTY => $"the target volume is not empty ({reply.Inodes} inodes): load into a new metaserver, or an empty volume",
                Errno.EPERM => "the metaserver refused the load: it needs root credentials",
                Errno.EBUSY => "the metaserver is busy with something that blocks the load (errno EBUSY)",
                _ => $"the metaserver refused to {what}{about} (errno {reply.Errno}); the volume stays marked as loading: run the load again",
            }, reply.Errno);
        }
        return reply;
    }
}

/// <summary>Bytes already read from a stream, followed by the rest of it.</summary>
internal sealed class PrefixedStream(ReadOnlyMemory<byte> prefix, Stream inner) : Stream
{
    private ReadOnlyMemory<byte> _prefix = prefix;

    public override bool CanRead => true;

    public override bool CanSeek => false;

    public override bool CanWrite => false;

    public override long Length => throw new NotSupportedException();

    public override long Position
    {
        get => throw new NotSupportedException();
        set => throw new NotSupportedException();
    }

    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    public override int Read(Span<byte> buffer)
    {
        if (!_prefix.IsEmpty)
        {
            var n = Math.Min(buffer.Length, _prefix.Length);
            _prefix.Span[..n].CopyTo(buffer);
            _prefix = _prefix[n..];
            return n;
        }
        return inner.Read(buffer);
    }

    public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        if (!_prefix.IsEmpty)
        {
            return ValueTask.FromResult(Read(buffer.Span));
        }
        return inner.ReadAsync(buffer, cancellationToken);
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override void Flush()
    {
    }

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
}
