// A formatted in-process metaserver plus an object store, and helpers to drive MirrorVfs like the kernel would.
using System.Reflection;
using System.Text;
using MirrorFS.Client.Vfs;
using MirrorFS.Core.Meta;
using MirrorFS.Core.Storage;
using MirrorFS.MetaServer.Consensus;
using MirrorFS.MetaServer.Engine;

namespace MirrorFS.Client.Tests.VfsTests;

internal sealed class VfsFixture : IAsyncDisposable
{
    public const int BlockSize = 64 << 10;
    public const string VolumeName = "vol";
    private readonly List<MirrorVfs> _mounts = [];

    private VfsFixture(MetaService service, IObjectStore store)
    {
        Service = service;
        Meta = service;
        Store = store;
    }

    public MetaService Service { get; }

    public IMetaClient Meta { get; }

    public IObjectStore Store { get; }

    public static VfsContext Ctx => VfsContext.Root;

    public static async Task<VfsFixture> StartAsync(IObjectStore? store = null)
    {
        var state = new MetaStateMachine();
        var service = new MetaService(state, new InMemoryLog(state));
        var f = new VfsFixture(service, store ?? new MemoryObjectStore());
        var r = await f.Meta.FormatAsync(new FormatRequest
        {
            Cred = new Credentials(),
            Volume = new Volume { Name = VolumeName, Storage = "mem://", BlockSize = BlockSize },
        });
        Assert.Equal(0, r.Errno);
        return f;
    }

    public async Task<MirrorVfs> MountAsync(VfsOptions? options = null, IObjectStore? store = null, IMetaClient? meta = null)
    {
        var vfs = await MirrorVfs.CreateAsync(meta ?? Meta, store ?? Store, options ?? new VfsOptions { MemoryCacheBytesMax = 8 << 20 });
        _mounts.Add(vfs);
        return vfs;
    }

    public static byte[] Name(string s) => Encoding.UTF8.GetBytes(s);

    public static async Task<(ulong Inode, ulong Fh)> CreateAsync(MirrorVfs vfs, string name, ulong parent = 1)
    {
        var r = await vfs.CreateAsync(Ctx, parent, Name(name), 0x8000 | 0x1A4, 0x12, OpenFlags.ReadWrite);
        Assert.Equal(0, r.Errno);
        return (r.Value!.Entry.Inode, r.Value.Handle);
    }

    public static async Task<ulong> OpenAsync(MirrorVfs vfs, ulong inode, uint flags = OpenFlags.ReadWrite)
    {
        var r = await vfs.OpenAsync(Ctx, inode, flags);
        Assert.Equal(0, r.Errno);
        return r.Value!.Handle;
    }

    public static async Task WriteAsync(MirrorVfs vfs, ulong inode, ulong fh, long offset, byte[] data)
    {
        var r = await vfs.WriteAsync(Ctx, inode, fh, offset, data);
        Assert.Equal(0, r.Errno);
        Assert.Equal(data.Length, r.Value);
    }

    /// <summary>Reads like the kernel: requests of at most 128 KiB until a short read.</summary>
    public static async Task<byte[]> ReadAsync(MirrorVfs vfs, ulong inode, ulong fh, long offset, int length)
    {
        var buf = new byte[length];
        var done = 0;
        while (done < length)
        {
            var n = Math.Min(128 << 10, length - done);
            var r = await vfs.ReadAsync(Ctx, inode, fh, offset + done, buf.AsMemory(done, n));
            Assert.Equal(0, r.Errno);
            done += r.Value;
            if (r.Value < n)
            {
                break;
            }
        }
        return buf.AsSpan(0, done).ToArray();
    }

    public static byte[] Pattern(int length, int seed)
    {
        var data = new byte[length];
        new Random(seed).NextBytes(data);
        return data;
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var m in _mounts)
        {
            await m.DisposeAsync();
        }
    }
}

/// <summary>An object store that fails puts (all, or those a predicate picks) and counts calls.</summary>
internal sealed class FlakyStore(IObjectStore inner) : IObjectStore
{
    private int _puts;
    private int _gets;

    public Func<string, bool> FailPut { get; set; } = _ => false;

    public int Puts => Volatile.Read(ref _puts);

    public int Gets => Volatile.Read(ref _gets);

    /// <summary>Delay of each put, to keep uploads in flight.</summary>
    public int PutDelayMs { get; set; }

    public string Description => "flaky(" + inner.Description + ")";

    public async Task PutAsync(string key, ReadOnlyMemory<byte> data, CancellationToken ct = default)
    {
        Interlocked.Increment(ref _puts);
        if (PutDelayMs > 0)
        {
            await Task.Delay(PutDelayMs, ct);
        }
        if (FailPut(key))
        {
            throw new ObjectStoreException(Description, StoreFailure.Unreachable, $"injected put failure for {key}");
        }
        await inner.PutAsync(key, data, ct);
    }

    public Task<byte[]?> GetAsync(string key, ByteRange? range = null, CancellationToken ct = default)
    {
        Interlocked.Increment(ref _gets);
        return inner.GetAsync(key, range, ct);
    }

    public Task<ObjectInfo?> HeadAsync(string key, CancellationToken ct = default) => inner.HeadAsync(key, ct);

    public Task DeleteAsync(string key, CancellationToken ct = default) => inner.DeleteAsync(key, ct);

    public Task<ObjectPage> ListAsync(string prefix, string? startAfter = null, int limit = 1000, CancellationToken ct = default) =>
        inner.ListAsync(prefix, startAfter, limit, ct);

    public Task DeleteManyAsync(IReadOnlyCollection<string> keys, CancellationToken ct = default) => inner.DeleteManyAsync(keys, ct);

    public ValueTask DisposeAsync() => inner.DisposeAsync();
}

/// <summary>An IMetaClient that loses the reply of chosen calls after the server applied them (a dropped
/// connection), so the caller has to retry.</summary>
public class LossyMetaClient : DispatchProxy
{
    private IMetaClient? _inner;
    private int _dropsLeft;

    public string DropMethod { get; set; } = "";

    public int Calls;

    public static (IMetaClient Client, LossyMetaClient Control) Wrap(IMetaClient inner, string method, int drops)
    {
        var proxy = Create<IMetaClient, LossyMetaClient>();
        var control = (LossyMetaClient)(object)proxy;
        control._inner = inner;
        control.DropMethod = method;
        control._dropsLeft = drops;
        return (proxy, control);
    }

    protected override object? Invoke(MethodInfo? targetMethod, object?[]? args)
    {
        var result = targetMethod!.Invoke(_inner, args);
        if (targetMethod.Name != DropMethod)
        {
            return result;
        }
        Interlocked.Increment(ref Calls);
        if (Interlocked.Decrement(ref _dropsLeft) < 0)
        {
            return result;
        }
        var task = (Task)result!;
        var replyType = targetMethod.ReturnType.GetGenericArguments()[0];
        var drop = typeof(LossyMetaClient).GetMethod(nameof(DropAsync), BindingFlags.NonPublic | BindingFlags.Static)!.MakeGenericMethod(replyType);
        return drop.Invoke(null, [task]);
    }

    private static async Task<T> DropAsync<T>(Task<T> call)
    {
        await call;
        throw new IOException("injected: reply lost after the server applied the call");
    }
}
