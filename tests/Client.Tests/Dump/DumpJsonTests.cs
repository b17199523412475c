// The JSON dump format end to end against in-process engines: verbatim round trips, names that are not UTF-8,
// gzip, damaged files, and bounded memory for a 200k-entry tree.
using System.IO.Compression;
using System.Text;
using System.Text.Json;
using Google.Protobuf;
using MirrorFS.Client.Dump;
using MirrorFS.Core.Meta;
using MirrorFS.MetaServer.Consensus;
using MirrorFS.MetaServer.Engine;
using Xunit.Abstractions;

namespace MirrorFS.Client.Tests.Dump;

/// <summary>An engine in this process: state machine, in-memory log, service.</summary>
internal sealed class Engine : IDisposable
{
    public Engine()
    {
        State = new MetaStateMachine();
        Svc = new MetaService(State, new InMemoryLog(State));
    }

    public MetaStateMachine State { get; }

    public MetaService Svc { get; }

    public static ByteString N(string s) => ByteString.CopyFromUtf8(s);

    public static async Task<Engine> FormattedAsync(string storage = "file:///tmp/blocks", string fallbackStorage = "")
    {
        var e = new Engine();
        var f = await e.Svc.FormatAsync(new FormatRequest
        {
            Volume = new Volume { Name = "vol", Storage = storage, BlockSize = 1 << 20, FallbackStorage = fallbackStorage },
        });
        Assert.Equal(0, f.Errno);
        return e;
    }

    public async Task<ulong> Mkdir(ulong parent, ByteString name, uint mode = 0x1ED)
    {
        var r = await Svc.MkdirAsync(new MkdirRequest { Parent = parent, Name = name, Mode = mode });
        Assert.Equal(0, r.Errno);
        return r.Attr.Inode;
    }

    public async Task<ulong> File(ulong parent, ByteString name, params uint[] slices)
    {
        var r = await Svc.MknodAsync(new MknodRequest { Parent = parent, Name = name, Mode = PosixMode.Regular | 0x1A4 });
        Assert.Equal(0, r.Errno);
        uint pos = 0;
        foreach (var len in slices)
        {
            var id = await Svc.NewSliceIdsAsync(new NewSliceIdsRequest { Count = 1 });
            var w = await Svc.WriteSliceAsync(new WriteSliceRequest
            {
                Inode = r.Attr.Inode,
                ChunkIndex = 0,
                Slice = new Slice { Id = id.FirstId, Size = len, Length = len, Pos = pos },
            });
            Assert.Equal(0, w.Errno);
            pos += len / 2; // overlapping slices
        }
        return r.Attr.Inode;
    }

    public Task<DumpResult> DumpAsync(Stream output, bool keepSecretKey = false) =>
        MetaDumpWriter.WriteAsync(Svc.DumpAsync(new DumpRequest()), output, keepSecretKey, DumpJsonTests.FixedNow);

    public Task<LoadResult> LoadAsync(Stream input) =>
        MetaLoader.LoadAsync(input, (r, ct) => Svc.LoadEntriesAsync(r, ct), info => info.Volume);

    public void Dispose() => State.Dispose();
}

public sealed class DumpJsonTests(ITestOutputHelper log)
{
    public static readonly DateTimeOffset FixedNow = new(2024, 5, 6, 7, 8, 9, TimeSpan.Zero);

    private static async Task<Engine> SampleAsync(string storage = "file:///tmp/blocks")
    {
        var e = await Engine.FormattedAsync(storage);
        var d = await e.Mkdir(1, Engine.N("dir ü \"q\""), 0x3FF);
        var f = await e.File(d, Engine.N("file"), 4096, 100, 7000);
        await e.File(1, ByteString.CopyFrom(0x66, 0xFF, 0xFE)); // not UTF-8
        Assert.Equal(0, (await e.Svc.LinkAsync(new LinkRequest { Inode = f, NewParent = 1, NewName = Engine.N("hard") })).Errno);
        Assert.Equal(0, (await e.Svc.SymlinkAsync(new SymlinkRequest { Parent = d, Name = Engine.N("ln"), Target = ByteString.CopyFrom(0x2E, 0x2E, 0x2F, 0xC3) })).Errno);
        Assert.Equal(0, (await e.Svc.SetXattrAsync(new SetXattrRequest { Inode = f, Name = Engine.N("user.bin"), Value = ByteString.CopyFrom(0, 1, 2, 255) })).Errno);
        Assert.Equal(0, (await e.Svc.SetXattrAsync(new SetXattrRequest { Inode = d, Name = Engine.N("trusted.t"), Value = Engine.N("x") })).Errno);
        Assert.Equal(0, (await e.Svc.MknodAsync(new MknodRequest { Parent = 1, Name = Engine.N("fifo"), Mode = PosixMode.Fifo | 0x1B6 })).Errno);
        Assert.Equal(0, (await e.Svc.MknodAsync(new MknodRequest { Parent = 1, Name = Engine.N("blk"), Mode = PosixMode.Block | 0x1B0, Rdev = 0x0801 })).Errno);
        Assert.Equal(0, (await e.Svc.SetAttrAsync(new SetAttrRequest { Inode = d, Valid = 2 | 4 | 16 | 32, Uid = 77, Gid = 88, AtimeNs = -123_456_789, MtimeNs = 1 })).Errno);
        // Sparse: one slice far into a large file.
        var sparse = await e.File(1, Engine.N("sparse"));
        var id = await e.Svc.NewSliceIdsAsync(new NewSliceIdsRequest { Count = 1 });
        Assert.Equal(0, (await e.Svc.WriteSliceAsync(new WriteSliceRequest { Inode = sparse, ChunkIndex = 3, Slice = new Slice { Id = id.FirstId, Size = 10, Length = 10, Pos = 5 } })).Errno);
        return e;
    }

    [Fact]
    public async Task A_dump_loaded_and_dumped_again_is_byte_for_byte_the_same()
    {
        using var src = await SampleAsync();
        using var first = new MemoryStream();
        var dumped = await src.DumpAsync(first);
        var json = Encoding.UTF8.GetString(first.ToArray());
        log.WriteLine(json);
        using var doc = JsonDocument.Parse(json); // well-formed
        Assert.Equal("mirrorfs-dump", doc.RootElement.GetProperty("format").GetString());
        Assert.Equal(1, doc.RootElement.GetProperty("version").GetInt32());
        Assert.Contains("\"nameBase64\":\"Zv/+\"", json, StringComparison.Ordinal);
        Assert.Contains("\"targetBase64\"", json, StringComparison.Ordinal);
        Assert.Contains("\"hardlink\":true", json, StringComparison.Ordinal);
        Assert.Equal(1UL, dumped.HardLinks);

        using var dst = new Engine();
        var loaded = await dst.LoadAsync(new MemoryStream(first.ToArray()));
        Assert.Equal(dumped.Inodes, loaded.Inodes);
        Assert.Equal(dumped.Inodes, loaded.ServerInodes);
        using var second = new MemoryStream();
        await dst.DumpAsync(second);
        // Same volume, counters and tree; only the log index may differ.
        var a = Encoding.UTF8.GetString(first.ToArray());
        var b = Encoding.UTF8.GetString(second.ToArray());
        Assert.Equal(Without(a, "logIndex"), Without(b, "logIndex"));
    }

    private static string Without(string json, string property)
    {
        var at = json.IndexOf($"\"{property}\":", StringComparison.Ordinal);
        var end = json.IndexOf(',', at);
        return json[..at] + json[(end + 1)..];
    }

    [Fact]
    public async Task Secret_keys_are_left_out_unless_asked_for()
    {
        const string secret = "TOPSECRETvalue123";
        using var src = await SampleAsync($"s3://bucket/pre?endpoint=http://127.0.0.1:9&access-key=AK&secret-key={secret}");
        using var plain = new MemoryStream();
        Assert.True((await src.DumpAsync(plain)).SecretKeysRemoved);
        var text = Encoding.UTF8.GetString(plain.ToArray());
        Assert.DoesNotContain(secret, text, StringComparison.Ordinal);
        Assert.Contains("\"secretKeysRemoved\":true", text, StringComparison.Ordinal);
        using var kept = new MemoryStream();
        Assert.False((await src.DumpAsync(kept, keepSecretKey: true)).SecretKeysRemoved);
        Assert.Contains(secret, Encoding.UTF8.GetString(kept.ToArray()), StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_secret_in_the_fallback_bucket_is_left_out_too()
    {
        const string secret = "FALLBACKsecret456";
        using var src = await Engine.FormattedAsync("file:///tmp/blocks", $"oss://b/p?endpoint=http://127.0.0.1:9&access-key=AK&secret-key={secret}");
        using var plain = new MemoryStream();
        Assert.True((await src.DumpAsync(plain)).SecretKeysRemoved);
        var text = Encoding.UTF8.GetString(plain.ToArray());
        Assert.DoesNotContain(secret, text, StringComparison.Ordinal);
        Assert.Contains("secret-key=***", text, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Gzip_dumps_load_and_damaged_ones_fail_with_one_line()
    {
        using var src = await SampleAsync();
        using var raw = new MemoryStream();
        await src.DumpAsync(raw);
        var bytes = raw.ToArray();
        using var gz = new MemoryStream();
        await using (var z = new GZipStream(gz, CompressionLevel.Fastest, leaveOpen: true))
        {
            await z.WriteAsync(bytes);
        }
        using (var dst = new Engine())
        {
            await using var input = await MetaLoader.OpenAsync(new MemoryStream(gz.ToArray()));
            Assert.True((await dst.LoadAsync(input)).Inodes > 5);
        }
        var cases = new Dictionary<string, byte[]>
        {
            ["truncated"] = bytes[..(bytes.Length * 2 / 3)],
            ["not json"] = "hello"u8.ToArray(),
            ["other format"] = "{\"format\":\"x\",\"version\":1}"u8.ToArray(),
            ["newer version"] = "{\"format\":\"mirrorfs-dump\",\"version\":9}"u8.ToArray(),
            ["no tree"] = Encoding.UTF8.GetBytes(Encoding.UTF8.GetString(bytes).Replace("\"tree\"", "\"tref\"", StringComparison.Ordinal)),
            ["totals off"] = Encoding.UTF8.GetBytes(Encoding.UTF8.GetString(bytes).Replace("\"totals\":{\"nodes\":", "\"totals\":{\"nodes\":1", StringComparison.Ordinal)),
        };
        foreach (var (name, data) in cases)
        {
            using var dst = new Engine();
            var e = await Assert.ThrowsAsync<DumpFormatException>(() => dst.LoadAsync(new MemoryStream(data)));
            log.WriteLine($"{name}: {e.Message}");
            Assert.DoesNotContain('\n', e.Message);
        }
    }

    [Fact]
    public async Task Loading_into_a_volume_in_use_is_refused()
    {
        using var src = await SampleAsync();
        using var raw = new MemoryStream();
        await src.DumpAsync(raw);
        using var busy = await SampleAsync();
        var e = await Assert.ThrowsAsync<MetaLoadException>(() => busy.LoadAsync(new MemoryStream(raw.ToArray())));
        Assert.Equal(Errno.ENOTEMPTY, e.Errno);
        Assert.Contains("not empty", e.Message, StringComparison.Ordinal);
    }
}
