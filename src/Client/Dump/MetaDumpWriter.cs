// Writes the metaserver's dump stream (DumpPage messages) as the versioned JSON dump, streaming.
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Unicode;
using Google.Protobuf;
using MirrorFS.Core.Meta;
using MirrorFS.Core.Storage;

namespace MirrorFS.Client.Dump;

/// <summary>What a dump wrote.</summary>
public sealed record DumpResult(ulong Index, ulong Nodes, ulong Inodes, ulong HardLinks, ulong Slices, bool SecretKeysRemoved);

/// <summary>
/// Turns pages of <see cref="DumpNode"/>s (a depth-first walk) into nested JSON with <see cref="Utf8JsonWriter"/>:
/// each node is written as it arrives and the writer is flushed every <see cref="FlushBytes"/>, so memory holds one
/// page plus one open object per directory level, never the tree.
/// </summary>
public static class MetaDumpWriter
{
    public const int FlushBytes = 64 << 10;

    private static readonly JsonFormatter VolumeFormatter = new(JsonFormatter.Settings.Default.WithFormatDefaultValues(true));

    /// <summary>Writes the dump to <paramref name="output"/>; secret keys in the storage URI are replaced by ***
    /// unless <paramref name="keepSecretKey"/>.</summary>
    public static async Task<DumpResult> WriteAsync(IAsyncEnumerable<DumpPage> pages, Stream output, bool keepSecretKey,
        DateTimeOffset now, CancellationToken ct = default)
    {
        await using var w = new Utf8JsonWriter(output, new JsonWriterOptions
        {
            Indented = false,
            Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping, // names stay readable; quotes and controls are still escaped
            SkipValidation = false,
            MaxDepth = DumpFormat.JsonDepthMax,
        });
        // Open JSON objects, one per node not yet closed: whether it is a directory (its "entries" array is open)
        // and whether a file's "chunks" array is open.
        var open = new List<(bool Dir, bool ChunksOpen)>();
        DumpHeader? header = null;
        ulong index = 0, nodes = 0, hardLinks = 0, slices = 0, inodes = 0;
        var secretRemoved = false;
        var eof = false;
        await foreach (var page in pages.WithCancellation(ct).ConfigureAwait(false))
        {
            if (page.Errno != 0)
            {
                throw new DumpFormatException(page.Errno switch
                {
                    Errno.ENOENT => "the metaserver serves no volume yet: nothing to dump",
                    Errno.EBUSY => "the volume is being loaded (or a load was interrupted): dump it after the load finishes",
                    Errno.EPERM => "the metaserver refused the dump: it needs root credentials",
                    _ => $"the metaserver refused the dump: errno {page.Errno}",
                });
            }
            if (eof)
            {
                throw new DumpFormatException("the metaserver sent pages after the last one");
            }
            if (header is null)
            {
                header = page.Header ?? throw new DumpFormatException("the metaserver's dump began without its header");
                index = page.Index;
                secretRemoved = WriteHead(w, header, index, keepSecretKey, now);
            }
            foreach (var node in page.Nodes)
            {
                if (node.Continued)
                {
                    if (open.Count == 0 || open[^1].Dir)
                    {
                        throw new DumpFormatException("the metaserver's dump continued a node that is not a file");
                    }
                    if (!open[^1].ChunksOpen)
                    {
                        w.WriteStartArray("chunks");
                        open[^1] = (false, true);
                    }
                    slices += WriteChunks(w, node);
                    continue;
                }
                if (node.Depth > DumpFormat.TreeDepthMax)
                {
                    throw new DumpFormatException($"the tree is deeper than {DumpFormat.TreeDepthMax} directories; the dump format does not hold it");
                }
                if (node.Depth > open.Count || (node.Depth == 0) != (open.Count == 0 && nodes == 0))
                {
                    throw new DumpFormatException($"the metaserver's dump has a node at depth {node.Depth} under {open.Count} open ones");
                }
                while (open.Count > node.Depth)
                {
                    Close(w, open);
                }
                if (open.Count > 0 && !open[^1].Dir)
                {
                    throw new DumpFormatException("the metaserver's dump has an entry under a non-directory");
                }
                nodes++;
                if (node.HardLink)
                {
                    hardLinks++;
                    w.WriteStartObject();
                    WriteBytesOrBase64(w, "name", "nameBase64", node.Name.Span);
                    w.WriteNumber("inode", node.Attr.Inode);
                    w.WriteBoolean("hardlink", true);
                    open.Add((false, false));
                }
                else
                {
                    inodes++;
                    var chunksOpen = WriteNode(w, node, ref slices);
                    open.Add((PosixMode.IsDir(node.Attr.Mode), chunksOpen));
                }
                if (w.BytesPending >= FlushBytes)
                {
                    await w.FlushAsync(ct).ConfigureAwait(false);
                }
            }
            eof = page.Eof;
        }
        if (header is null || !eof)
        {
            throw new DumpFormatException("the metaserver's dump stream ended early; run the dump again");
        }
        while (open.Count > 0)
        {
            Close(w, open);
        }
        w.WriteStartObject("totals");
        w.WriteNumber("nodes", nodes);
        w.WriteNumber("inodes", inodes);
        w.WriteNumber("hardLinks", hardLinks);
        w.WriteNumber("slices", slices);
        w.WriteEndObject();
        w.WriteEndObject();
        await w.FlushAsync(ct).ConfigureAwait(false);
        return new DumpResult(index, nodes, inodes, hardLinks, slices, secretRemoved);
    }

    private static bool WriteHead(Utf8JsonWriter w, DumpHeader h, ulong index, bool keepSecretKey, DateTimeOffset now)
    {
        var volume = h.Volume.Clone();
        // Every bucket URI of the volume may carry a secret key: the primary's, a mirror region's, the fallback.
        var removed = false;
        if (!keepSecretKey)
        {
            string Strip(string uri)
            {
                var redacted = ObjectStoreFactory.Redact(uri);
                removed |= redacted != uri;
                return redacted;
            }
            volume.Storage = Strip(volume.Storage);
            volume.MirrorStorage = Strip(volume.MirrorStorage);
            volume.FallbackStorage = Strip(volume.FallbackStorage);
        }
        w.WriteStartObject();
        w.WriteString("format", DumpFormat.FormatName);
        w.WriteNumber("version", DumpFormat.Version);
        w.WriteString("dumpedAt", now.UtcDateTime);
        w.WriteNumber("logIndex", index);
        w.WriteBoolean("secretKeysRemoved", removed);
        // The protobuf JSON form carries every Volume field, including ones later builds add.
        w.WritePropertyName("volume");
        w.WriteRawValue(VolumeFormatter.Format(volume), skipInputValidation: false);
        w.WriteStartObject("counters");
        w.WriteNumber("nextInode", h.NextInode);
        w.WriteNumber("nextSliceId", h.NextSliceId);
        w.WriteNumber("inodes", h.Inodes);
        w.WriteNumber("usedBytes", h.UsedBytes);
        w.WriteEndObject();
        w.WritePropertyName("tree");
        return removed;
    }

    /// <summary>Writes a node's attributes, symlink target and xattrs, opens "chunks" or "entries" as needed;
    /// returns whether a "chunks" array is open.</summary>
    private static bool WriteNode(Utf8JsonWriter w, DumpNode node, ref ulong slices)
    {
        var a = node.Attr;
        var type = PosixMode.Type(a.Mode);
        w.WriteStartObject();
        if (node.Depth > 0)
        {
            WriteBytesOrBase64(w, "name", "nameBase64", node.Name.Span);
        }
        w.WriteNumber("inode", a.Inode);
        w.WriteString("type", DumpFormat.TypeName(a.Mode));
        w.WriteNumber("mode", a.Mode & PosixMode.PermMask);
        w.WriteNumber("uid", a.Uid);
        w.WriteNumber("gid", a.Gid);
        w.WriteNumber("nlink", a.Nlink);
        w.WriteNumber("atimeNs", a.AtimeNs);
        w.WriteNumber("mtimeNs", a.MtimeNs);
        w.WriteNumber("ctimeNs", a.CtimeNs);
        if (type == PosixMode.Regular)
        {
            w.WriteNumber("length", a.Size);
        }
        if (type is PosixMode.Char or PosixMode.Block)
        {
            w.WriteNumber("rdev", a.Rdev);
        }
        if (type == PosixMode.Symlink)
        {
            WriteBytesOrBase64(w, "target", "targetBase64", node.Target.Span);
        }
        if (node.Xattrs.Count > 0)
        {
            w.WriteStartArray("xattrs");
            foreach (var x in node.Xattrs)
            {
                w.WriteStartObject();
                WriteBytesOrBase64(w, "name", "nameBase64", x.Name.Span);
                w.WriteBase64String("value", x.Value.Span);
                w.WriteEndObject();
            }
            w.WriteEndArray();
        }
        if (type == PosixMode.Directory)
        {
            w.WriteStartArray("entries");
            return false;
        }
        if (node.Chunks.Count == 0)
        {
            return false;
        }
        w.WriteStartArray("chunks");
        slices += WriteChunks(w, node);
        return true;
    }

    private static ulong WriteChunks(Utf8JsonWriter w, DumpNode node)
    {
        ulong n = 0;
        foreach (var c in node.Chunks)
        {
            w.WriteStartObject();
            w.WriteNumber("index", c.Index);
            w.WriteStartArray("slices");
            foreach (var s in c.Slices)
            {
                w.WriteStartObject();
                w.WriteNumber("id", s.Id);
                w.WriteNumber("size", s.Size);
                w.WriteNumber("offset", s.Offset);
                w.WriteNumber("length", s.Length);
                w.WriteNumber("pos", s.Pos);
                w.WriteEndObject();
                n++;
            }
            w.WriteEndArray();
            w.WriteEndObject();
        }
        return n;
    }

    private static void Close(Utf8JsonWriter w, List<(bool Dir, bool ChunksOpen)> open)
    {
        var (dir, chunks) = open[^1];
        open.RemoveAt(open.Count - 1);
        if (dir || chunks)
        {
            w.WriteEndArray();
        }
        w.WriteEndObject();
    }

    /// <summary>Names are bytes: valid UTF-8 is written as a string, anything else as base64 under the other key.</summary>
    private static void WriteBytesOrBase64(Utf8JsonWriter w, string textKey, string base64Key, ReadOnlySpan<byte> value)
    {
        if (Utf8.IsValid(value))
        {
            w.WriteString(textKey, value);
        }
        else
        {
            w.WriteBase64String(base64Key, value);
        }
    }
}
