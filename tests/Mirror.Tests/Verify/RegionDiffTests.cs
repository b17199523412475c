// verify's comparison on two metaservers holding the same state (one a copy of the other's data directory).
using Google.Protobuf;
using MirrorFS.Core.Layout;
using MirrorFS.Core.Meta;
using MirrorFS.Core.Storage;
using MirrorFS.MetaServer.Hosting;
using MirrorFS.Mirror.Verify;

namespace MirrorFS.Mirror.Tests.Verify;

public sealed class RegionDiffTests : IAsyncLifetime
{
    private static readonly Credentials Root = new();
    private readonly string _dir = Directory.CreateTempSubdirectory("mirrorfs-verify-").FullName;
    private MetaServerHost _a = null!;
    private MetaServerHost _b = null!;
    private Volume _volume = null!;
    private readonly List<(string Key, int Size)> _blocks = [];

    public async Task InitializeAsync()
    {
        var a = await MetaServerHost.StartAsync(new MetaServerOptions { DataDirectory = Path.Combine(_dir, "a") });
        var m = a.Service;
        Assert.Equal(0, (await m.FormatAsync(new FormatRequest { Cred = Root, Volume = new Volume { Name = "vol", Storage = "mem://", BlockSize = 1 << 16 } })).Errno);
        var mkdir = await m.MkdirAsync(new MkdirRequest { Cred = Root, Parent = 1, Name = Name("dir"), Mode = 0x1ED });
        Assert.Equal(0, mkdir.Errno);
        var d = mkdir.Attr.Inode;
        var create = await m.MknodAsync(new MknodRequest { Cred = Root, Parent = d, Name = Name("file"), Mode = PosixMode.Regular | 0x1A4 });
        Assert.Equal(0, create.Errno);
        var f = create.Attr.Inode;
        var ids = await m.NewSliceIdsAsync(new NewSliceIdsRequest { Cred = Root, Count = 1 });
        var slice = new Slice { Id = ids.FirstId, Size = 150_000, Length = 150_000 };
        Assert.Equal(0, (await m.WriteSliceAsync(new WriteSliceRequest { Cred = Root, Inode = f, ChunkIndex = 0, Slice = slice })).Errno);
        foreach (var b in BlockLayout.Blocks(150_000, 1 << 16))
        {
            _blocks.Add((BlockLayout.Key("vol", ids.FirstId, b.Index, b.Size), b.Size));
        }
        await m.SymlinkAsync(new SymlinkRequest { Cred = Root, Parent = d, Name = Name("link"), Target = Name("file") });
        await m.LinkAsync(new LinkRequest { Cred = Root, Inode = f, NewParent = 1, NewName = Name("hard") });
        await m.SetXattrAsync(new SetXattrRequest { Cred = Root, Inode = f, Name = Name("user.k"), Value = Name("v") });
        await a.DisposeAsync();
        CopyDir(Path.Combine(_dir, "a"), Path.Combine(_dir, "b"));
        _a = await MetaServerHost.StartAsync(new MetaServerOptions { DataDirectory = Path.Combine(_dir, "a") });
        _b = await MetaServerHost.StartAsync(new MetaServerOptions { DataDirectory = Path.Combine(_dir, "b") });
        _volume = (await _a.Service.GetVolumeAsync(new GetVolumeRequest())).Volume;
    }

    public async Task DisposeAsync()
    {
        await _a.DisposeAsync();
        await _b.DisposeAsync();
        Directory.Delete(_dir, recursive: true);
    }

    private static ByteString Name(string s) => ByteString.CopyFromUtf8(s);

    private static void CopyDir(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (var f in Directory.GetFiles(from))
        {
            File.Copy(f, Path.Combine(to, Path.GetFileName(f)));
        }
        foreach (var d in Directory.GetDirectories(from))
        {
            CopyDir(d, Path.Combine(to, Path.GetFileName(d)));
        }
    }

    private async Task<MemoryObjectStore> BucketWithAllBlocksAsync()
    {
        var bucket = new MemoryObjectStore();
        foreach (var (key, size) in _blocks)
        {
            await bucket.PutAsync(key, new byte[size]);
        }
        return bucket;
    }

    private RegionDiff Diff(IObjectStore? bucket) =>
        new(_a.Service, _b.Service, _ => null, bucket, _volume, new VerifyLimits());

    [Fact]
    public async Task IdenticalRegionsAreClean()
    {
        var result = await Diff(await BucketWithAllBlocksAsync()).RunAsync(0, CancellationToken.None);
        Assert.True(result.Clean, string.Join("\n", result.Differences));
        Assert.Equal(4, result.Inodes); // root, dir, the file (linked twice, compared once), the symlink
        Assert.Equal(_blocks.Count, result.Blocks);
    }

    [Fact]
    public async Task EveryKindOfDifferenceIsListedWithItsPath()
    {
        var bucket = await BucketWithAllBlocksAsync();
        await bucket.DeleteAsync(_blocks[1].Key);
        var m = _b.Service;
        var dir = (await m.LookupAsync(new LookupRequest { Cred = Root, Parent = 1, Name = Name("dir") })).Attr.Inode;
        await m.MkdirAsync(new MkdirRequest { Cred = Root, Parent = 1, Name = Name("extra"), Mode = 0x1ED });
        await m.SetAttrAsync(new SetAttrRequest { Cred = Root, Inode = dir, Valid = 1, Mode = 0x1C0 });
        await m.UnlinkAsync(new UnlinkRequest { Cred = Root, Parent = dir, Name = Name("link") });
        var result = await Diff(bucket).RunAsync(0, CancellationToken.None);
        var all = string.Join("\n", result.Differences);
        Assert.False(result.Clean);
        Assert.Contains("/extra: only in the mirror", all, StringComparison.Ordinal);
        Assert.Contains("/dir: mode: primary 493, mirror 448", all, StringComparison.Ordinal);
        Assert.Contains("/dir/link: missing in the mirror", all, StringComparison.Ordinal);
        Assert.Contains($"{_blocks[1].Key} is missing from the mirror bucket", all, StringComparison.Ordinal);
        Assert.Equal(1, result.BlocksMissing);
    }
}
