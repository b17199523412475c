// Retries transient store failures with bounded, jittered exponential backoff; permanent ones fail at once.
namespace MirrorFS.Core.Storage;

public sealed record RetryOptions
{
    /// <summary>Tries in all, the first included.</summary>
    public int AttemptsMax { get; init; } = 6;
    public int BaseDelayMs { get; init; } = 100;
    public int DelayMaxMs { get; init; } = 5_000;
}

public sealed class RetryingObjectStore(IObjectStore inner, RetryOptions? options = null) : IObjectStore
{
    private readonly RetryOptions _options = options ?? new RetryOptions();

    public string Description => inner.Description;

    /// <summary>Retries done so far, for metrics and tests.</summary>
    public long Retries => Interlocked.Read(ref _retries);

    private long _retries;

    public Task PutAsync(string key, ReadOnlyMemory<byte> data, CancellationToken ct = default) =>
        Run(() => inner.PutAsync(key, data, ct), ct);

    public Task<byte[]?> GetAsync(string key, ByteRange? range = null, CancellationToken ct = default) =>
        Run(() => inner.GetAsync(key, range, ct), ct);

    public Task<ObjectInfo?> HeadAsync(string key, CancellationToken ct = default) =>
        Run(() => inner.HeadAsync(key, ct), ct);

    public Task DeleteAsync(string key, CancellationToken ct = default) => Run(() => inner.DeleteAsync(key, ct), ct);

    public Task<ObjectPage> ListAsync(string prefix, string? startAfter = null, int limit = 1000, CancellationToken ct = default) =>
        Run(() => inner.ListAsync(prefix, startAfter, limit, ct), ct);

    public Task DeleteManyAsync(IReadOnlyCollection<string> keys, CancellationToken ct = default) =>
        Run(() => inner.DeleteManyAsync(keys, ct), ct);

    public ValueTask DisposeAsync() => inner.DisposeAsync();

    private async Task Run(Func<Task> op, CancellationToken ct) =>
        await Run(async () =>
        {
            await op().ConfigureAwait(false);
            return true;
        }, ct).ConfigureAwait(false);

    private async Task<T> Run<T>(Func<Task<T>> op, CancellationToken ct)
    {
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                return await op().ConfigureAwait(false);
            }
            catch (ObjectStoreException e) when (e.IsTransient && attempt < _options.AttemptsMax && !ct.IsCancellationRequested)
            {
                Interlocked.Increment(ref _retries);
                await Task.Delay(Backoff(attempt), ct).ConfigureAwait(false);
            }
            catch (ObjectStoreException e) when (e.IsTransient)
            {
                throw new ObjectStoreException(e.Store, e.Failure,
                    $"{e.Detail} (gave up after {attempt} tries)", e);
            }
        }
    }

    // Full jitter: a random delay up to min(max, base * 2^(attempt-1)).
    private TimeSpan Backoff(int attempt)
    {
        var cap = Math.Min(_options.DelayMaxMs, _options.BaseDelayMs * (1L << Math.Min(attempt - 1, 20)));
        return TimeSpan.FromMilliseconds(Random.Shared.NextDouble() * cap);
    }
}
