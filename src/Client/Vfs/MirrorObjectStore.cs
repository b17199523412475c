// Block storage of a client in a mirror region: read the near bucket first, the far one on a miss; write to one of them.
using MirrorFS.Core.Storage;

namespace MirrorFS.Client.Vfs;

/// <summary>
/// Reads go to <c>near</c> (this region's bucket) and, when it lacks the object or cannot be reached, to <c>far</c>
/// (the bucket blocks are first written to). Blocks never change once written, so either copy is correct; a block
/// the replicator has not copied yet is simply read from afar. Writes and deletes go to the bucket the volume writes
/// to: the primary's for a mirror client (<c>writeNear</c> false), this region's for a promoted mirror.
/// </summary>
public sealed class MirrorObjectStore(IObjectStore near, IObjectStore far, bool writeNear) : IObjectStore
{
    private long _farReads;
    private long _nearFailures;

    private IObjectStore Writes => writeNear ? near : far;

    public string Description => $"{near.Description} (else {far.Description})";

    /// <summary>Reads the far bucket answered.</summary>
    public long FarReads => Interlocked.Read(ref _farReads);

    /// <summary>Reads the near bucket failed (not "missing": failed).</summary>
    public long NearFailures => Interlocked.Read(ref _nearFailures);

    public Task PutAsync(string key, ReadOnlyMemory<byte> data, CancellationToken ct = default) => Writes.PutAsync(key, data, ct);

    public async Task<byte[]?> GetAsync(string key, ByteRange? range = null, CancellationToken ct = default)
    {
        try
        {
            var data = await near.GetAsync(key, range, ct).ConfigureAwait(false);
            if (data is not null)
            {
                return data;
            }
        }
        catch (ObjectStoreException) when (!ct.IsCancellationRequested)
        {
            Interlocked.Increment(ref _nearFailures);
        }
        Interlocked.Increment(ref _farReads);
        return await far.GetAsync(key, range, ct).ConfigureAwait(false);
    }

    public async Task<ObjectInfo?> HeadAsync(string key, CancellationToken ct = default)
    {
        try
        {
            var info = await near.HeadAsync(key, ct).ConfigureAwait(false);
            if (info is not null)
            {
                return info;
            }
        }
        catch (ObjectStoreException) when (!ct.IsCancellationRequested)
        {
            Interlocked.Increment(ref _nearFailures);
        }
        return await far.HeadAsync(key, ct).ConfigureAwait(false);
    }

    public Task DeleteAsync(string key, CancellationToken ct = default) => Writes.DeleteAsync(key, ct);

    public Task<ObjectPage> ListAsync(string prefix, string? startAfter = null, int limit = 1000, CancellationToken ct = default) =>
        Writes.ListAsync(prefix, startAfter, limit, ct);

    public Task DeleteManyAsync(IReadOnlyCollection<string> keys, CancellationToken ct = default) => Writes.DeleteManyAsync(keys, ct);

    public async ValueTask DisposeAsync()
    {
        await near.DisposeAsync().ConfigureAwait(false);
        await far.DisposeAsync().ConfigureAwait(false);
    }
}
