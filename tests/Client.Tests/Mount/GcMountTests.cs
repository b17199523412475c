// gc, fsck and compaction on real FUSE mounts: leaked objects and pending deletes made by hand, a listing that fails
// midway, a deleted block, and a file appended 100 times.
using System.Reflection;
using System.Text.Json.Nodes;
using MirrorFS.Client.Cli;
using MirrorFS.Core.Layout;
using MirrorFS.Core.Meta;
using MirrorFS.Core.Storage;
using Xunit.Abstractions;

namespace MirrorFS.Client.Tests.Mount;

[Collection(MountCollection.Name)]
public sealed class GcMountTests(ITestOutputHelper log) : IAsyncLifetime
{
    private const int TestTimeoutMs = 300_000;
    private const int WaitMs = 120_000;

    /// <summary>No background deleter and no compaction: pending deletes stay until the test finishes them.</summary>
    private static readonly string[] Quiet = ["--delete-interval", "0", "--compact-slices", "0"];

    private MountEnv _env = null!;
    private FileObjectStore _store = null!;

    public async Task InitializeAsync()
    {
        _env = await MountEnv.StartAsync(log);
        _store = new FileObjectStore(Path.Combine(_env.Root, "blocks"), create: false);
    }

    public async Task DisposeAsync()
    {
        await _store.DisposeAsync();
        await _env.DisposeAsync();
    }

    private IMetaClient Meta => _env.Host.Service;

    private string Mp(string name = "mnt") => Path.Combine(_env.Root, name);

    private async Task<(int Code, string Out, string Err)> CliAsync(params string[] args)
    {
        var o = new StringWriter();
        var e = new StringWriter();
        var code = await Program.RunAsync([args[0], _env.MetaUrl, .. args[1..], "--token-file", _env.TokenFile], o, e);
        log.WriteLine($"$ mirrorfs {string.Join(' ', args)} -> {code}\n{o}{e}");
        return (code, o.ToString(), e.ToString());
    }

    private async Task<JsonNode> GcJsonAsync(params string[] extra)
    {
        var (code, output, err) = await CliAsync(["gc", "--json", .. extra]);
        Assert.True(code == 0, $"gc failed ({code}): {err}");
        return JsonNode.Parse(output)!;
    }

    private static long N(JsonNode report, string cls, string field = "objects") => report[cls]![field]!.GetValue<long>();

    private static Task WriteFileAsync(string path, byte[] data) => Blocking.RunAsync(() => File.WriteAllBytes(path, data));

    private static Task<byte[]> ReadFileAsync(string path) => Blocking.RunAsync(() => File.ReadAllBytes(path));

    private static byte[] Pattern(int length, int seed)
    {
        var b = new byte[length];
        new Random(seed).NextBytes(b);
        return b;
    }

    /// <summary>The slices of every chunk of the file at <paramref name="path"/>, read from the metaserver.</summary>
    private async Task<List<Slice>> SlicesOfAsync(string path)
    {
        var inode = await Blocking.RunAsync(() => InfoCommand.InodeOf(path));
        var size = new FileInfo(path).Length;
        var slices = new List<Slice>();
        for (uint c = 0; c <= size / BlockLayout.ChunkSize; c++)
        {
            var r = await Meta.ReadChunkAsync(new ReadChunkRequest { Inode = inode, ChunkIndex = c });
            Assert.Equal(0, r.Errno);
            slices.AddRange(r.Slices.Where(s => s.Id != 0));
        }
        return slices;
    }

    private static int Blocks(IEnumerable<Slice> slices) => slices.Sum(s => BlockLayout.BlockCount(s.Size, 1 << 20));

    private async Task<List<PendingDelete>> PendingAsync() =>
        [.. (await Meta.ListPendingDeletesAsync(new ListPendingDeletesRequest { Limit = 10_000 })).Entries];

    private async Task WaitForAsync(Func<Task<bool>> done, string what)
    {
        var deadline = Environment.TickCount64 + WaitMs;
        while (!await done())
        {
            Assert.True(Environment.TickCount64 < deadline, $"timed out after {WaitMs} ms waiting for {what}");
            await Task.Delay(100);
        }
    }

    /// <summary>Block-shaped keys of slice ids no file uses, and two keys gc must treat as not its own.</summary>
    private async Task<(List<string> Leaked, long Bytes, List<string> Foreign)> PlantAsync()
    {
        var leaked = new List<string>();
        long bytes = 0;
        for (var k = 0; k < 3; k++)
        {
            var size = 1000 * (k + 1);
            var key = BlockLayout.Key(MountEnv.Volume, 5_000_000UL + (ulong)k, 0, size);
            await _store.PutAsync(key, new byte[size]);
            leaked.Add(key);
            bytes += size;
        }
        List<string> foreign = [$"{MountEnv.Volume}/chunks/notes.txt", $"{MountEnv.Volume}/chunks/0/0/07_0_5"];
        foreach (var key in foreign)
        {
            await _store.PutAsync(key, new byte[5]);
        }
        return (leaked, bytes, foreign);
    }

    [Fact(Timeout = TestTimeoutMs)]
    public async Task Gc_reports_and_deletes_exactly_the_leaked_objects_and_pending_deletes()
    {
        var m = await _env.MountAsync(Mp(), Quiet);
        var files = new Dictionary<string, byte[]>
        {
            ["keep1"] = Pattern((5 << 20) / 2, 1),
            ["d/keep2"] = Pattern(100_000, 2),
            ["gone1"] = Pattern((3 << 20) / 2, 3),
            ["d/gone2"] = Pattern(3 << 20, 4),
        };
        Directory.CreateDirectory(Path.Combine(m.MountPoint, "d"));
        foreach (var (name, data) in files)
        {
            await WriteFileAsync(Path.Combine(m.MountPoint, name), data);
        }
        var valid = 0;
        var goneSlices = 0;
        var pendingObjects = 0;
        foreach (var name in files.Keys)
        {
            var slices = await SlicesOfAsync(Path.Combine(m.MountPoint, name));
            if (name.Contains("keep", StringComparison.Ordinal))
            {
                valid += Blocks(slices);
            }
            else
            {
                goneSlices += slices.Count;
                pendingObjects += Blocks(slices);
            }
        }
        await Blocking.RunAsync(() =>
        {
            File.Delete(Path.Combine(m.MountPoint, "gone1"));
            File.Delete(Path.Combine(m.MountPoint, "d/gone2"));
        });
        // The kernel releases closed files asynchronously; the slices go pending at the last release.
        await WaitForAsync(async () => (await PendingAsync()).Count == goneSlices, $"{goneSlices} pending deletes");
        var (leaked, leakedBytes, foreign) = await PlantAsync();

        // Planted objects are brand new: under the default minimum age they are skipped, not leaked.
        var young = await GcJsonAsync();
        Assert.Equal((0L, 3L), (N(young, "leaked"), N(young, "young")));

        var report = await GcJsonAsync("--min-age", "0");
        Assert.Equal((3L, leakedBytes), (N(report, "leaked"), N(report, "leaked", "bytes")));
        Assert.Equal(pendingObjects, N(report, "pending"));
        Assert.Equal(valid, N(report, "valid"));
        Assert.Equal((2L, 0L, 0L), (N(report, "foreign"), N(report, "compacted"), N(report, "young")));
        Assert.Equal(goneSlices, report["pendingSlices"]!.GetValue<long>());
        Assert.Equal(0L, N(report, "leakedDeleted"));
        Assert.All(leaked, k => Assert.True(File.Exists(Path.Combine(_env.Root, "blocks", k)), k)); // reporting deletes nothing

        var deleted = await GcJsonAsync("--delete", "--min-age", "0");
        Assert.Equal((3L, leakedBytes), (N(deleted, "leakedDeleted"), N(deleted, "leakedDeleted", "bytes")));
        Assert.Equal(goneSlices, deleted["pendingFinished"]!["slices"]!.GetValue<long>());
        Assert.Equal(pendingObjects, deleted["pendingFinished"]!["objects"]!.GetValue<long>());
        foreach (var key in leaked)
        {
            Assert.Null(await _store.HeadAsync(key));
        }
        foreach (var key in foreign)
        {
            Assert.NotNull(await _store.HeadAsync(key));
        }
        Assert.Empty(await PendingAsync());
        var blocksLeft = 0;
        await foreach (var o in _store.ListAllAsync(BlockLayout.ChunksPrefix(MountEnv.Volume)))
        {
            blocksLeft += BlockLayout.TryParseKey(MountEnv.Volume, o.Key, out _) ? 1 : 0;
        }
        Assert.Equal(valid, blocksLeft);

        // Live files still read back, through this mount and a fresh one (no cached blocks).
        var fresh = await _env.MountAsync(Mp("fresh"), Quiet);
        foreach (var (name, data) in files.Where(kv => kv.Key.Contains("keep", StringComparison.Ordinal)))
        {
            Assert.Equal(data, await ReadFileAsync(Path.Combine(m.MountPoint, name)));
            Assert.Equal(data, await ReadFileAsync(Path.Combine(fresh.MountPoint, name)));
        }
        var again = await GcJsonAsync("--min-age", "0");
        Assert.Equal((0L, 0L, (long)valid), (N(again, "leaked"), N(again, "pending"), N(again, "valid")));
        Assert.Equal(0, (await CliAsync("fsck")).Code);
    }

    [Fact(Timeout = TestTimeoutMs)]
    public async Task Gc_deletes_nothing_when_a_listing_or_metadata_read_fails_midway()
    {
        var m = await _env.MountAsync(Mp(), Quiet);
        await WriteFileAsync(Path.Combine(m.MountPoint, "keep"), Pattern(3 << 20, 1));
        await WriteFileAsync(Path.Combine(m.MountPoint, "gone"), Pattern(2 << 20, 2));
        await Blocking.RunAsync(() => File.Delete(Path.Combine(m.MountPoint, "gone")));
        await WaitForAsync(async () => (await PendingAsync()).Count > 0, "a pending delete");
        var pending = await PendingAsync();
        var (leaked, _, _) = await PlantAsync();
        var url = MetaUrl.Parse(_env.MetaUrl);
        var settings = new GcSettings { Delete = true, MinAge = TimeSpan.Zero };

        // The bucket listing fails on its third page (two objects a page).
        var failing = new FailingListStore(_store, failOnCall: 3, pageMax: 2);
        var err = new StringWriter();
        var code = await GcCommand.RunAsync(new CliContext(new StringWriter(), err), url, Meta, failing, settings, CancellationToken.None);
        log.WriteLine(err.ToString());
        Assert.NotEqual(0, code);
        Assert.True(failing.ListCalls >= 3, $"the listing stopped after {failing.ListCalls} pages");
        Assert.Equal(0, failing.DeleteCalls);
        Assert.Contains("object storage failed", err.ToString(), StringComparison.Ordinal);

        // The second metadata read (the one right before deleting) fails.
        var (meta, control) = FailingMetaClient.Wrap(Meta, nameof(IMetaClient.ListPendingDeletesAsync), failOnCall: 2);
        var counting = new FailingListStore(_store, failOnCall: int.MaxValue, pageMax: 1000);
        err = new StringWriter();
        code = await GcCommand.RunAsync(new CliContext(new StringWriter(), err), url, meta, counting, settings, CancellationToken.None);
        log.WriteLine(err.ToString());
        Assert.NotEqual(0, code);
        Assert.Equal(2, control.Calls);
        Assert.Equal(0, counting.DeleteCalls);

        foreach (var key in leaked)
        {
            Assert.NotNull(await _store.HeadAsync(key));
        }
        Assert.Equal(pending, await PendingAsync());
        foreach (var p in pending)
        {
            Assert.NotNull(await _store.HeadAsync(BlockLayout.Key(MountEnv.Volume, p.SliceId, 0, (int)Math.Min(p.Size, 1u << 20))));
        }
    }

    [Fact(Timeout = TestTimeoutMs)]
    public async Task Fsck_is_clean_on_a_good_volume_and_names_the_file_whose_block_is_gone()
    {
        var m = await _env.MountAsync(Mp(), Quiet);
        Directory.CreateDirectory(Path.Combine(m.MountPoint, "d/e"));
        await WriteFileAsync(Path.Combine(m.MountPoint, "d/e/x"), Pattern((5 << 20) / 2, 1));
        await WriteFileAsync(Path.Combine(m.MountPoint, "d/y"), Pattern(300_000, 2));
        await WriteFileAsync(Path.Combine(m.MountPoint, "z"), Pattern(1 << 20, 3));
        await WriteFileAsync(Path.Combine(m.MountPoint, "empty"), []);

        var (code, output, _) = await CliAsync("fsck");
        Assert.Equal(0, code);
        Assert.Contains("checked 4 files", output, StringComparison.Ordinal);
        Assert.Contains(": 0 broken files", output, StringComparison.Ordinal);

        var x = await SlicesOfAsync(Path.Combine(m.MountPoint, "d/e/x"));
        await _store.DeleteAsync(BlockLayout.Key(MountEnv.Volume, x[0].Id, 1, 1 << 20));
        var y = await SlicesOfAsync(Path.Combine(m.MountPoint, "d/y"));
        await _store.PutAsync(BlockLayout.Key(MountEnv.Volume, y[0].Id, 0, (int)y[0].Size), new byte[10]); // damaged: wrong size

        (code, output, _) = await CliAsync("fsck");
        Assert.Equal(1, code);
        Assert.Contains("broken: /d/e/x: block", output, StringComparison.Ordinal);
        Assert.Contains("is missing", output, StringComparison.Ordinal);
        Assert.Contains("broken: /d/y: block", output, StringComparison.Ordinal);
        Assert.Contains("has 10 bytes", output, StringComparison.Ordinal);
        Assert.DoesNotContain("/z", output, StringComparison.Ordinal);
        Assert.Contains(": 2 broken files", output, StringComparison.Ordinal);

        (code, output, _) = await CliAsync("fsck", "/d/e");
        Assert.Equal(1, code);
        Assert.Contains("broken: /d/e/x", output, StringComparison.Ordinal);
        Assert.DoesNotContain("/d/y", output, StringComparison.Ordinal);
        Assert.Equal(0, (await CliAsync("fsck", "z")).Code);
        var missing = await CliAsync("fsck", "/nope");
        Assert.Equal(1, missing.Code);
        Assert.Contains("does not exist", missing.Err, StringComparison.Ordinal);
    }

    [Fact(Timeout = TestTimeoutMs)]
    public async Task A_file_appended_100_times_is_compacted_into_one_slice_and_old_blocks_wait_for_the_delay()
    {
        const int delaySec = 40;
        var m = await _env.MountAsync(Mp(), "--compact-slices", "20", "--compact-delay", delaySec.ToString(System.Globalization.CultureInfo.InvariantCulture),
            "--delete-interval", "1");
        var f = Path.Combine(m.MountPoint, "log");
        // Each >> opens, writes and closes: one committed slice per append.
        await Shell.OkAsync("for i in $(seq 1 100); do printf '%04d-abcdefghijklmnopqrstuvwxyz\\n' $i >> log; done", m.MountPoint);
        var expected = string.Concat(Enumerable.Range(1, 100).Select(i => $"{i:D4}-abcdefghijklmnopqrstuvwxyz\n"));
        var inode = await Blocking.RunAsync(() => InfoCommand.InodeOf(f));

        List<Slice> slices = [];
        await WaitForAsync(async () =>
        {
            slices = [.. (await Meta.ReadChunkAsync(new ReadChunkRequest { Inode = inode })).Slices];
            return slices.Count == 1 && slices[0].Length == expected.Length;
        }, "the chunk to become one slice");
        var compacted = slices[0];

        // Check the old blocks exist first, then that they are not deletable yet: the delay has not passed.
        var old = (await PendingAsync()).Where(p => p.NotBeforeNs > 0).ToList();
        Assert.True(old.Count >= 20, $"{old.Count} replaced slices pending");
        foreach (var p in old)
        {
            Assert.NotNull(await _store.HeadAsync(BlockLayout.Key(MountEnv.Volume, p.SliceId, 0, (int)p.Size)));
        }
        var stillWaiting = (await PendingAsync()).Where(p => old.Any(o => o.SliceId == p.SliceId)).ToList();
        Assert.Equal(old.Count, stillWaiting.Count);
        Assert.All(stillWaiting, p => Assert.False(p.Eligible, $"slice {p.SliceId} became deletable before the {delaySec} s delay"));

        var fresh = await _env.MountAsync(Mp("fresh"), Quiet);
        Assert.Equal(expected, await Blocking.RunAsync(() => File.ReadAllText(Path.Combine(fresh.MountPoint, "log"))));
        Assert.Equal(expected, await Blocking.RunAsync(() => File.ReadAllText(f)));

        // After the delay the mount's deleter removes the old blocks; the compacted slice stays.
        await WaitForAsync(async () =>
        {
            foreach (var p in old)
            {
                if (await _store.HeadAsync(BlockLayout.Key(MountEnv.Volume, p.SliceId, 0, (int)p.Size)) is not null)
                {
                    return false;
                }
            }
            return (await PendingAsync()).Count == 0;
        }, "the replaced slices' blocks to be deleted");
        Assert.NotNull(await _store.HeadAsync(BlockLayout.Key(MountEnv.Volume, compacted.Id, 0, (int)compacted.Size)));
        var third = await _env.MountAsync(Mp("third"), Quiet);
        Assert.Equal(expected, await Blocking.RunAsync(() => File.ReadAllText(Path.Combine(third.MountPoint, "log"))));
        Assert.Equal(0, (await CliAsync("fsck")).Code);
        await MountEnv.UnmountAsync(third);
        await MountEnv.UnmountAsync(fresh);
        await MountEnv.UnmountAsync(m);
    }

    /// <summary>A store whose listing returns at most <c>pageMax</c> keys a page and fails on call <c>failOnCall</c>;
    /// counts listings and deletions.</summary>
    private sealed class FailingListStore(IObjectStore inner, int failOnCall, int pageMax) : IObjectStore
    {
        private int _lists;
        private int _deletes;

        public int ListCalls => Volatile.Read(ref _lists);

        public int DeleteCalls => Volatile.Read(ref _deletes);

        public string Description => "failing(" + inner.Description + ")";

        public Task PutAsync(string key, ReadOnlyMemory<byte> data, CancellationToken ct = default) => inner.PutAsync(key, data, ct);

        public Task<byte[]?> GetAsync(string key, ByteRange? range = null, CancellationToken ct = default) => inner.GetAsync(key, range, ct);

        public Task<ObjectInfo?> HeadAsync(string key, CancellationToken ct = default) => inner.HeadAsync(key, ct);

        public Task DeleteAsync(string key, CancellationToken ct = default)
        {
            Interlocked.Increment(ref _deletes);
            return inner.DeleteAsync(key, ct);
        }

        public Task DeleteManyAsync(IReadOnlyCollection<string> keys, CancellationToken ct = default)
        {
            Interlocked.Increment(ref _deletes);
            return inner.DeleteManyAsync(keys, ct);
        }

        public Task<ObjectPage> ListAsync(string prefix, string? startAfter = null, int limit = 1000, CancellationToken ct = default)
        {
            if (Interlocked.Increment(ref _lists) == failOnCall)
            {
                throw new ObjectStoreException(Description, StoreFailure.Transient, "injected listing failure (connection reset)");
            }
            return inner.ListAsync(prefix, startAfter, Math.Min(limit, pageMax), ct);
        }

        public ValueTask DisposeAsync() => ValueTask.CompletedTask;
    }
}

/// <summary>An IMetaClient whose chosen method fails (metaserver unreachable) on its n-th call.</summary>
public class FailingMetaClient : DispatchProxy
{
    private IMetaClient? _inner;
    private string _method = "";
    private int _failOn;

    public int Calls;

    public static (IMetaClient Client, FailingMetaClient Control) Wrap(IMetaClient inner, string method, int failOnCall)
    {
        var proxy = Create<IMetaClient, FailingMetaClient>();
        var control = (FailingMetaClient)(object)proxy;
        control._inner = inner;
        control._method = method;
        control._failOn = failOnCall;
        return (proxy, control);
    }

    protected override object? Invoke(MethodInfo? targetMethod, object?[]? args)
    {
        if (targetMethod!.Name == _method && Interlocked.Increment(ref Calls) == _failOn)
        {
            var replyType = targetMethod.ReturnType.GetGenericArguments()[0];
            var fail = typeof(FailingMetaClient).GetMethod(nameof(FailAsync), BindingFlags.NonPublic | BindingFlags.Static)!.MakeGenericMethod(replyType);
            return fail.Invoke(null, []);
        }
        return targetMethod.Invoke(_inner, args);
    }

    private static Task<T> FailAsync<T>() =>
        Task.FromException<T>(new MetaUnavailableException("injected: no metaserver answered"));
}
