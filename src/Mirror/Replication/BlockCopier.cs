// Copies one block from the primary bucket to the mirror bucket: bandwidth-bounded, retried until it succeeds.
using Microsoft.Extensions.Logging;
using MirrorFS.Core.Storage;

namespace MirrorFS.Mirror.Replication;

public enum CopyOutcome
{
    /// <summary>Read from the primary bucket and written to the mirror bucket.</summary>
    Copied,
    /// <summary>The mirror bucket already held it with the right size.</summary>
    AlreadyPresent,
    /// <summary>The primary bucket no longer holds it (its file was deleted before the copy): nothing to copy.</summary>
    GoneFromSource,
    /// <summary>The primary bucket holds it with the wrong size: not copied, reported as an error.</summary>
    DamagedInSource,
    /// <summary>A deletion job: the slices' blocks were removed from the mirror bucket.</summary>
    Deleted,
}

public sealed record RetryPolicy
{
    public int BaseDelayMs { get; init; } = 200;

    /// <summary>Longest pause between tries: an unreachable bucket is retried at this pace, forever.</summary>
    public int DelayMaxMs { get; init; } = 10_000;
}

public sealed class BlockCopier(IObjectStore source, IObjectStore target, TokenBucket bandwidth, RetryPolicy retry,
    ReplicatorStats stats, ILogger log)
{
    public IObjectStore Source => source;

    public IObjectStore Target => target;

    /// <summary>Copies one block. <paramref name="headFirst"/> asks the mirror bucket first, for blocks an earlier run
    /// may already have copied. Failures are retried with backoff until they pass or <paramref name="ct"/> fires:
    /// a block is never skipped because a bucket is unreachable.</summary>
    public async Task<CopyOutcome> CopyAsync(string key, int size, bool headFirst, CancellationToken ct)
    {
        if (headFirst)
        {
            var present = await WithRetry("HEAD", target, key, () => target.HeadAsync(key, ct), ct).ConfigureAwait(false);
            if (present is not null && present.Size == size)
            {
                return CopyOutcome.AlreadyPresent;
            }
        }
        await bandwidth.TakeAsync(size, ct).ConfigureAwait(false);
        var data = await WithRetry("GET", source, key, () => source.GetAsync(key, null, ct), ct).ConfigureAwait(false);
        if (data is null)
        {
            return CopyOutcome.GoneFromSource;
        }
        if (data.Length != size)
        {
            stats.NoteError($"block {key} in {source.Description} has {data.Length} bytes, expected {size}: not copied");
            return CopyOutcome.DamagedInSource;
        }
        await WithRetry("PUT", target, key, async () =>
        {
            await target.PutAsync(key, data, ct).ConfigureAwait(false);
            return true;
        }, ct).ConfigureAwait(false);
        return CopyOutcome.Copied;
    }

    /// <summary>Runs one store call until it succeeds; every failure is counted, and logged when the try count is a
    /// power of two (so a long outage logs a few lines, not thousands).</summary>
    public async Task<T> WithRetry<T>(string op, IObjectStore store, string key, Func<Task<T>> call, CancellationToken ct)
    {
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                return await call().ConfigureAwait(false);
            }
            catch (Exception e) when (!ct.IsCancellationRequested && IsStoreFailure(e))
            {
                var message = $"{op} {key} on {store.Description} failed (try {attempt}): {FirstLine(e.Message)}";
                stats.NoteError(message);
                if ((attempt & (attempt - 1)) == 0)
                {
                    log.LogWarning("{Message}; retrying", message);
                }
                await Task.Delay(Backoff(attempt), ct).ConfigureAwait(false);
            }
        }
    }

    private static bool IsStoreFailure(Exception e) =>
        e is ObjectStoreException or HttpRequestException or IOException or TimeoutException or TaskCanceledException;

    // Full jitter: a random pause up to min(max, base * 2^(attempt-1)), never below a tenth of that cap.
    private TimeSpan Backoff(int attempt)
    {
        var cap = Math.Min(retry.DelayMaxMs, retry.BaseDelayMs * (1L << Math.Min(attempt - 1, 20)));
        return TimeSpan.FromMilliseconds(cap * (0.1 + (0.9 * Random.Shared.NextDouble())));
    }

    private static string FirstLine(string s)
    {
        var nl = s.IndexOfAny(['\r', '\n']);
        return nl < 0 ? s : s[..nl];
    }
}
