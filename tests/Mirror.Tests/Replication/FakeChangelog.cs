// An in-memory primary for replicator tests: a growing list of entries served like WatchChangelog, and a volume.
using System.Runtime.CompilerServices;
using Google.Protobuf;
using MirrorFS.Core.Layout;
using MirrorFS.Core.Meta;
using MirrorFS.Core.Storage;
using MirrorFS.Mirror.Replication;

namespace MirrorFS.Mirror.Tests.Replication;

public sealed class FakeChangelog : IChangelogSource
{
    private readonly Lock _lock = new();
    private readonly List<ChangelogEntry> _entries = [];
    private ulong _last;
    private TaskCompletionSource _grew = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private ulong _nextSlice = 1;

    public Volume Volume { get; } = new() { Name = "vol", Uuid = "uuid-1", BlockSize = BlockLayout.MinBlockSize };

    public string Description => "fake-primary";

    /// <summary>Entries before this index are compacted away: a stream asking for them gets snapshot_required.</summary>
    public ulong FirstIndex { get; set; } = 1;

    /// <summary>Requests seen (mirror id and reported index).</summary>
    public List<WatchChangelogRequest> Requests { get; } = [];

    /// <summary>When set, every stream fails with this before sending anything.</summary>
    public Exception? FailStreams { get; set; }

    public ulong LastIndex
    {
        get
        {
            lock (_lock)
            {
                return _last;
            }
        }
    }

    /// <summary>Uses up an index without a state-changing entry (a Raft no-op: not sent).</summary>
    public void Skip()
    {
        lock (_lock)
        {
            _last++;
            Grew();
        }
    }

    private void Grew()
    {
        var g = _grew;
        _grew = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        g.TrySetResult();
    }

    public Task<Volume?> GetVolumeAsync(CancellationToken ct) => Task.FromResult<Volume?>(Volume);

    /// <summary>Appends a command; returns its index.</summary>
    public ulong Append(Command command)
    {
        lock (_lock)
        {
            var index = ++_last;
            _entries.Add(new ChangelogEntry
            {
                Index = index,
                TimeNs = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() * 1_000_000,
                Command = command.ToByteString(),
            });
            Grew();
            return index;
        }
    }

    /// <summary>Stores a slice of <paramref name="size"/> random bytes in <paramref name="store"/> and appends its
    /// WriteSlice; returns the slice's block keys.</summary>
    public async Task<List<string>> WriteSliceAsync(IObjectStore store, int size, Random rng, bool commit = true)
    {
        ulong id;
        lock (_lock)
        {
            id = _nextSlice++;
        }
        var keys = new List<string>();
        foreach (var b in BlockLayout.Blocks(size, (int)Volume.BlockSize))
        {
            var data = new byte[b.Size];
            rng.NextBytes(data);
            var key = BlockLayout.Key(Volume.Name, id, b.Index, b.Size);
            await store.PutAsync(key, data);
            keys.Add(key);
        }
        if (commit)
        {
            Append(new Command
            {
                NowNs = 1,
                WriteSlice = new WriteSliceRequest { Inode = 2, Slice = new Slice { Id = id, Size = (uint)size, Length = (uint)size } },
            });
        }
        return keys;
    }

    public async IAsyncEnumerable<ChangelogBatch> WatchAsync(WatchChangelogRequest request, [EnumeratorCancellation] CancellationToken ct)
    {
        lock (_lock)
        {
            Requests.Add(request.Clone());
        }
        if (FailStreams is { } fail)
        {
            await Task.Delay(10, ct);
            throw fail;
        }
        var next = request.FromIndex;
        if (next < FirstIndex)
        {
            yield return new ChangelogBatch { SnapshotRequired = true, FirstIndex = FirstIndex, CommitIndex = LastIndex };
            yield break;
        }
        while (true)
        {
            ChangelogBatch batch;
            Task grew;
            lock (_lock)
            {
                batch = new ChangelogBatch { CommitIndex = _last, FirstIndex = FirstIndex };
                foreach (var e in _entries)
                {
                    if (e.Index >= next && batch.Entries.Count < (int)Math.Max(1, request.BatchEntriesMax))
                    {
                        batch.Entries.Add(e);
                    }
                }
                grew = _grew.Task;
            }
            if (batch.Entries.Count > 0)
            {
                next = batch.Entries[^1].Index + 1;
                yield return batch;
                continue;
            }
            // As the primary does: an empty batch says everything up to commit_index has been sent.
            yield return batch;
            next = Math.Max(next, batch.CommitIndex + 1);
            await grew.WaitAsync(ct);
        }
    }

    public ValueTask DisposeAsync() => ValueTask.CompletedTask;
}

/// <summary>A store that fails every call while <see cref="Down"/> is set, as an unreachable endpoint does.</summary>
public sealed class SwitchableStore(IObjectStore inner) : IObjectStore
{
    public volatile bool Down;
    private long _failures;

    public long Failures => Interlocked.Read(ref _failures);

    public string Description => "switchable(" + inner.Description + ")";

    private void Check()
    {
        if (Down)
        {
            Interlocked.Increment(ref _failures);
            throw new ObjectStoreException(Description, StoreFailure.Unreachable, "connection refused (test outage)");
        }
    }

    public Task PutAsync(string key, ReadOnlyMemory<byte> data, CancellationToken ct = default)
    {
        Check();
        return inner.PutAsync(key, data, ct);
    }

    public Task<byte[]?> GetAsync(string key, ByteRange? range = null, CancellationToken ct = default)
    {
        Check();
        return inner.GetAsync(key, range, ct);
    }

    public Task<ObjectInfo?> HeadAsync(string key, CancellationToken ct = default)
    {
        Check();
        return inner.HeadAsync(key, ct);
    }

    public Task DeleteAsync(string key, CancellationToken ct = default)
    {
        Check();
        return inner.DeleteAsync(key, ct);
    }

    public Task<ObjectPage> ListAsync(string prefix, string? startAfter = null, int limit = 1000, CancellationToken ct = default)
    {
        Check();
        return inner.ListAsync(prefix, startAfter, limit, ct);
    }

    public Task DeleteManyAsync(IReadOnlyCollection<string> keys, CancellationToken ct = default)
    {
        Check();
        return inner.DeleteManyAsync(keys, ct);
    }

    public ValueTask DisposeAsync() => ValueTask.CompletedTask;
}
