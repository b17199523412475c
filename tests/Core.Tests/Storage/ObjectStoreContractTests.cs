// The one contract every IObjectStore must meet; each backend's test class derives from this.
using System.Security.Cryptography;
using System.Text;
using MirrorFS.Core.Storage;

namespace MirrorFS.Core.Tests.Storage;

public abstract class ObjectStoreContractTests : IAsyncLifetime
{
    private IObjectStore? _store;

    protected IObjectStore Store => _store ?? throw new InvalidOperationException("store not created");

    /// <summary>A store on an empty, unique prefix or bucket, for this test alone.</summary>
    protected abstract Task<IObjectStore> CreateStoreAsync();

    public async Task InitializeAsync() => _store = await CreateStoreAsync();

    public async Task DisposeAsync()
    {
        if (_store is not null)
        {
            await _store.DisposeAsync();
        }
    }

    private static byte[] RandomBytes(int n, int seed)
    {
        var data = new byte[n];
        new Random(seed).NextBytes(data);
        return data;
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(4 << 20)]
    public async Task RoundTripsWholeObjects(int size)
    {
        var data = RandomBytes(size, size);
        await Store.PutAsync($"rt/obj-{size}", data);
        var back = await Store.GetAsync($"rt/obj-{size}");
        Assert.NotNull(back);
        Assert.Equal(SHA256.HashData(data), SHA256.HashData(back));
        Assert.Equal(size, back.Length);
        var head = await Store.HeadAsync($"rt/obj-{size}");
        Assert.NotNull(head);
        Assert.Equal(size, head.Size);
        Assert.Equal($"rt/obj-{size}", head.Key);
    }

    [Fact]
    public async Task ReadsRanges()
    {
        var data = RandomBytes(10_000, 7);
        await Store.PutAsync("range/obj", data);

        Assert.Equal(data[1000..3000], await Store.GetAsync("range/obj", new ByteRange(1000, 2000)));
        Assert.Equal(data[9000..], await Store.GetAsync("range/obj", ByteRange.From(9000)));
        Assert.Equal(data[9990..], await Store.GetAsync("range/obj", new ByteRange(9990, 500)));
        Assert.Equal(data[..1], await Store.GetAsync("range/obj", new ByteRange(0, 1)));
        Assert.Equal(data[9999..], await Store.GetAsync("range/obj", new ByteRange(9999, 1)));
        var past = await Store.GetAsync("range/obj", new ByteRange(10_000, 10));
        Assert.NotNull(past);
        Assert.Empty(past);
        var farPast = await Store.GetAsync("range/obj", ByteRange.From(1_000_000));
        Assert.NotNull(farPast);
        Assert.Empty(farPast);
    }

    [Fact]
    public async Task MissingKeyIsOneOutcome()
    {
        Assert.Null(await Store.GetAsync("missing/key"));
        Assert.Null(await Store.GetAsync("missing/key", new ByteRange(0, 10)));
        Assert.Null(await Store.HeadAsync("missing/key"));
        await Store.DeleteAsync("missing/key");
        await Store.DeleteManyAsync(["missing/a", "missing/b"]);
        var page = await Store.ListAsync("missing/");
        Assert.Empty(page.Objects);
        Assert.Null(page.NextStartAfter);
    }

    [Fact]
    public async Task PutReplacesAndDeleteRemoves()
    {
        await Store.PutAsync("pd/obj", "first"u8.ToArray());
        await Store.PutAsync("pd/obj", "second!"u8.ToArray());
        Assert.Equal("second!"u8.ToArray(), await Store.GetAsync("pd/obj"));
        Assert.Equal(7, (await Store.HeadAsync("pd/obj"))!.Size);
        await Store.DeleteAsync("pd/obj");
        Assert.Null(await Store.GetAsync("pd/obj"));
        Assert.Null(await Store.HeadAsync("pd/obj"));
        await Store.DeleteAsync("pd/obj");
    }

    [Fact]
    public async Task ListsThousandsOfKeysThroughPages()
    {
        const int n = 2_500;
        var keys = Enumerable.Range(0, n).Select(i => $"list/k{i:D5}").ToList();
        await Parallel.ForEachAsync(keys, new ParallelOptions { MaxDegreeOfParallelism = 16 },
            async (k, ct) => await Store.PutAsync(k, Encoding.UTF8.GetBytes(k), ct));
        await Store.PutAsync("lisz/outside", "x"u8.ToArray());
        await Store.PutAsync("lis", "x"u8.ToArray());

        var seen = new List<ObjectInfo>();
        string? after = null;
        var pages = 0;
        do
        {
            var page = await Store.ListAsync("list/", after, 1000);
            Assert.True(page.Objects.Count <= 1000);
            seen.AddRange(page.Objects);
            after = page.NextStartAfter;
            pages++;
            Assert.True(pages <= 10, "listing does not end");
        }
        while (after is not null);

        Assert.Equal(keys, seen.Select(o => o.Key).ToList());
        Assert.True(pages >= 3, $"expected at least 3 pages, got {pages}");
        var now = DateTimeOffset.UtcNow;
        foreach (var o in seen)
        {
            Assert.Equal(Encoding.UTF8.GetByteCount(o.Key), o.Size);
            Assert.InRange(o.LastModified, now.AddHours(-1), now.AddHours(1));
        }

        var tail = await Store.ListAsync("list/", "list/k02489", 1000);
        Assert.Equal(keys[2490..], tail.Objects.Select(o => o.Key).ToList());
        Assert.Null(tail.NextStartAfter);

        var all = await Store.ListAllAsync("list/", pageSize: 700).Select(o => o.Key).ToListAsync();
        Assert.Equal(keys, all);

        await Store.DeleteManyAsync(keys.Concat(["list/never-existed"]).ToList());
        Assert.Empty((await Store.ListAsync("list/")).Objects);
        Assert.NotNull(await Store.HeadAsync("lisz/outside"));
    }

    [Fact]
    public async Task PutsInParallel()
    {
        var keys = Enumerable.Range(0, 32).Select(i => $"par/{i}").ToArray();
        await Task.WhenAll(keys.Select((k, i) => Store.PutAsync(k, RandomBytes(64 << 10, i))));
        var back = await Task.WhenAll(keys.Select(k => Store.GetAsync(k)));
        for (var i = 0; i < keys.Length; i++)
        {
            Assert.Equal(RandomBytes(64 << 10, i), back[i]);
        }
        Assert.Equal(32, (await Store.ListAsync("par/")).Objects.Count);
    }

    [Theory]
    [InlineData("odd/with space/file name.txt")]
    [InlineData("odd/ünïcödé/数据-ファイル-😀")]
    [InlineData("odd/plus+amp&eq=pct%20q?hash#semi;")]
    [InlineData("odd/tilde~star*quote'paren(x)")]
    public async Task HandlesUnusualKeys(string key)
    {
        var data = Encoding.UTF8.GetBytes(key);
        await Store.PutAsync(key, data);
        Assert.Equal(data, await Store.GetAsync(key));
        Assert.Equal(data.Length, (await Store.HeadAsync(key))!.Size);
        var page = await Store.ListAsync("odd/");
        Assert.Equal([key], page.Objects.Select(o => o.Key).ToArray());
        await Store.DeleteManyAsync([key]);
        Assert.Null(await Store.HeadAsync(key));
    }

    [Fact]
    public async Task ListsInOrdinalOrderAcrossDirectories()
    {
        // No key is also a "directory" of another: a file store cannot hold both, and MirrorFS never makes such keys.
        string[] keys = ["ord/a-", "ord/a.txt", "ord/a/b", "ord/a/c/d", "ord/ab", "ord/b"];
        foreach (var k in keys.Reverse())
        {
            await Store.PutAsync(k, "x"u8.ToArray());
        }
        var page = await Store.ListAsync("ord/");
        Assert.Equal(keys, page.Objects.Select(o => o.Key).ToArray());
        var afterA = await Store.ListAsync("ord/a", "ord/a.txt");
        Assert.Equal(["ord/a/b", "ord/a/c/d", "ord/ab"], afterA.Objects.Select(o => o.Key).ToArray());
    }
}
