// Deletes the blocks of pending-delete slices from object storage, then confirms them to the metaserver.
using Microsoft.Extensions.Logging;
using MirrorFS.Core.Layout;
using MirrorFS.Core.Meta;
using MirrorFS.Core.Storage;

namespace MirrorFS.Client.Vfs;

/// <summary>What one deletion pass did.</summary>
public readonly record struct DeleteRound(int Slices, long Objects, long Bytes);

/// <summary>
/// Takes pages of eligible pending deletes (the metaserver decides eligibility), deletes every block of each slice,
/// and only then confirms the slices. Safe to run in several clients and in <c>mirrorfs gc</c> at once: deleting a
/// missing object succeeds and confirming an already confirmed slice does nothing. A crash between the two steps
/// leaves the slice pending; the next pass deletes its (already gone) blocks again and confirms it.
/// </summary>
public sealed class BlockDeleter : IAsyncDisposable
{
    /// <summary>Keys per DeleteMany call (the S3 and OSS maximum).</summary>
    public const int KeysPerCallMax = 1000;

    private readonly MetaSession _session;
    private readonly IObjectStore _store;
    private readonly string _volume;
    private readonly int _blockSize;
    private readonly int _batchSlices;
    private readonly int _pagesPerPassMax;
    private readonly ILogger _log;
    private readonly CancellationTokenSource _stop = new();
    private Task? _loop;

    /// <param name="batchSlices">Slices per listed page, deleted and confirmed together (1..10000).</param>
    /// <param name="pagesPerPassMax">Pages one pass handles at most, so a pass ends even while deletes keep coming.</param>
    public BlockDeleter(MetaSession session, IObjectStore store, string volume, int blockSize, ILogger log,
        int batchSlices = 256, int pagesPerPassMax = 64)
    {
        BlockLayout.CheckBlockSize(blockSize);
        _session = session;
        _store = store;
        _volume = volume;
        _blockSize = blockSize;
        _batchSlices = Math.Clamp(batchSlices, 1, 10_000);
        _pagesPerPassMax = Math.Max(1, pagesPerPassMax);
        _log = log;
    }

    /// <summary>Every block key of a stored slice of <paramref name="size"/> bytes.</summary>
    public static IEnumerable<string> Keys(string volume, int blockSize, ulong sliceId, uint size) =>
        BlockLayout.Blocks((int)size, blockSize).Select(b => BlockLayout.Key(volume, sliceId, b.Index, b.Size));

    /// <summary>One pass: pages of eligible slices until none is left (or the page bound). Store or metadata
    /// failures propagate; what was confirmed before them stays done.</summary>
    public async Task<DeleteRound> RunOnceAsync(CancellationToken ct = default)
    {
        var total = new DeleteRound();
        for (var page = 0; page < _pagesPerPassMax; page++)
        {
            var list = await _session.ReadAsync(new ListPendingDeletesRequest { EligibleOnly = true, Limit = (uint)_batchSlices },
                static (m, r, c) => m.ListPendingDeletesAsync(r, c), ct).ConfigureAwait(false);
            if (list.Errno != 0)
            {
                throw new IOException($"metaserver could not list pending deletes: errno {list.Errno}");
            }
            if (list.Entries.Count == 0)
            {
                break;
            }
            var done = await DeleteAsync(list.Entries, ct).ConfigureAwait(false);
            total = new DeleteRound(total.Slices + done.Slices, total.Objects + done.Objects, total.Bytes + done.Bytes);
            if (list.Eof)
            {
                break;
            }
        }
        return total;
    }

    /// <summary>Deletes the blocks of <paramref name="entries"/> (all of them), then confirms them in one command.</summary>
    public async Task<DeleteRound> DeleteAsync(IReadOnlyCollection<PendingDelete> entries, CancellationToken ct = default)
    {
        long objects = 0, bytes = 0;
        var keys = new List<string>(KeysPerCallMax);
        foreach (var e in entries)
        {
            foreach (var key in Keys(_volume, _blockSize, e.SliceId, e.Size))
            {
                keys.Add(key);
                if (keys.Count == KeysPerCallMax)
                {
                    await _store.DeleteManyAsync(keys, ct).ConfigureAwait(false);
                    objects += keys.Count;
                    keys.Clear();
                }
            }
            bytes += e.Size;
        }
        if (keys.Count > 0)
        {
            await _store.DeleteManyAsync(keys, ct).ConfigureAwait(false);
            objects += keys.Count;
        }
        var confirm = new ConfirmDeletesRequest();
        confirm.SliceIds.AddRange(entries.Select(e => e.SliceId));
        var reply = await _session.MutateAsync(confirm, static (m, r, c) => m.ConfirmDeletesAsync(r, c), ct).ConfigureAwait(false);
        if (reply.Errno != 0)
        {
            throw new IOException($"metaserver refused to confirm {entries.Count} deleted slices: errno {reply.Errno}");
        }
        return new DeleteRound(entries.Count, objects, bytes);
    }

    /// <summary>Runs a pass every <paramref name="intervalMs"/> (with up to 20% jitter, so clients do not move in
    /// step) until disposed; failures are logged and retried next time.</summary>
    public void Start(int intervalMs)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(intervalMs);
        _loop ??= Task.Run(async () =>
        {
            var ct = _stop.Token;
            while (!ct.IsCancellationRequested)
            {
                try
                {
                    await Task.Delay(intervalMs + Random.Shared.Next(intervalMs / 5 + 1), ct).ConfigureAwait(false);
                    var r = await RunOnceAsync(ct).ConfigureAwait(false);
                    if (r.Slices > 0)
                    {
                        _log.LogInformation("deleted {Objects} objects ({Bytes} bytes) of {Slices} unreferenced slices",
                            r.Objects, r.Bytes, r.Slices);
                    }
                }
                catch (OperationCanceledException) when (ct.IsCancellationRequested)
                {
                    return;
                }
                catch (Exception e)
                {
                    _log.LogWarning("deleting blocks of unreferenced slices failed: {Error}; will try again", e.Message);
                }
            }
        }, CancellationToken.None);
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        if (_loop is not null)
        {
            await _loop.ConfigureAwait(false);
        }
        _stop.Dispose();
    }
}
