using MirrorFS.Core.Storage;

namespace MirrorFS.Core.Tests.Storage;

public sealed class MemoryStoreContractTests : ObjectStoreContractTests
{
    protected override Task<IObjectStore> CreateStoreAsync() => Task.FromResult<IObjectStore>(new MemoryObjectStore());
}

public sealed class FileStoreContractTests : ObjectStoreContractTests, IDisposable
{
    private readonly TempDir _dir = new();

    protected override Task<IObjectStore> CreateStoreAsync() =>
        Task.FromResult<IObjectStore>(new FileObjectStore(_dir.Path));

    public void Dispose() => _dir.Dispose();
}

public sealed class PrefixedStoreContractTests : ObjectStoreContractTests
{
    private readonly MemoryObjectStore _inner = new();

    protected override async Task<IObjectStore> CreateStoreAsync()
    {
        await _inner.PutAsync("vol", "neighbour without the slash"u8.ToArray());
        await _inner.PutAsync("vol2/list/k00000", "a neighbour volume"u8.ToArray());
        return new PrefixObjectStore(_inner, "vol");
    }
}

public sealed class FileObjectStoreTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public async Task LeavesNoTempFilesAndHidesTheTempFolder()
    {
        var store = new FileObjectStore(_dir.Path);
        await store.PutAsync("a/b", new byte[100]);
        Assert.Empty(Directory.GetFiles(Path.Combine(_dir.Path, FileObjectStore.TempDirName)));
        Assert.Equal(["a/b"], (await store.ListAsync("")).Objects.Select(o => o.Key).ToArray());
        var e = await Assert.ThrowsAsync<ObjectStoreException>(() => store.PutAsync(".mirrorfs-tmp/x", new byte[1]));
        Assert.Equal(StoreFailure.BadRequest, e.Failure);
    }

    [Fact]
    public async Task AStrayTempFileIsNeverAnObject()
    {
        // What a crash between write and rename leaves behind.
        var store = new FileObjectStore(_dir.Path);
        File.WriteAllBytes(Path.Combine(_dir.Path, FileObjectStore.TempDirName, "deadbeef"), new byte[10]);
        Assert.Empty((await store.ListAsync("")).Objects);
        Assert.Null(await store.GetAsync("deadbeef"));
    }

    [Fact]
    public async Task DeletePrunesEmptyDirectories()
    {
        var store = new FileObjectStore(_dir.Path);
        await store.PutAsync("x/y/z", new byte[1]);
        await store.DeleteAsync("x/y/z");
        Assert.False(Directory.Exists(Path.Combine(_dir.Path, "x")));
        Assert.True(Directory.Exists(_dir.Path));
    }

    [Fact]
    public void MissingDirectoryWithoutCreateIsAClearError()
    {
        var missing = Path.Combine(_dir.Path, "nope");
        var e = Assert.Throws<ObjectStoreException>(() => new FileObjectStore(missing, create: false));
        Assert.Equal(StoreFailure.NoSuchBucket, e.Failure);
        Assert.Contains(missing, e.Message, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Theory]
    [InlineData("")]
    [InlineData("/abs")]
    [InlineData("a/../b")]
    [InlineData("a//b")]
    [InlineData("trailing/")]
    public async Task RejectsBadKeys(string key)
    {
        var store = new FileObjectStore(_dir.Path);
        var e = await Assert.ThrowsAsync<ObjectStoreException>(() => store.PutAsync(key, new byte[1]));
        Assert.Equal(StoreFailure.BadRequest, e.Failure);
    }
}

/// <summary>A fresh temp directory, removed at the end.</summary>
public sealed class TempDir : IDisposable
{
    public TempDir() => Directory.CreateDirectory(Path);

    public string Path { get; } = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "mirrorfs-test-" + Guid.NewGuid().ToString("N")[..12]);

    public void Dispose()
    {
        try
        {
            Directory.Delete(Path, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
