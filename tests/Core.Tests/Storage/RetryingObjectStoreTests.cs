using MirrorFS.Core.Storage;

namespace MirrorFS.Core.Tests.Storage;

public sealed class RetryingObjectStoreTests
{
    /// <summary>Fails the first <c>failures</c> calls with the given failure, then delegates.</summary>
    private sealed class Flaky(IObjectStore inner, int failures, StoreFailure failure) : IObjectStore
    {
        public int Calls;

        public string Description => "flaky://";

        private void MaybeFail()
        {
            if (Interlocked.Increment(ref Calls) <= failures)
            {
                throw new ObjectStoreException(Description, failure, "injected");
            }
        }

        public Task PutAsync(string key, ReadOnlyMemory<byte> data, CancellationToken ct = default)
        {
            MaybeFail();
            return inner.PutAsync(key, data, ct);
        }

        public Task<byte[]?> GetAsync(string key, ByteRange? range = null, CancellationToken ct = default)
        {
            MaybeFail();
            return inner.GetAsync(key, range, ct);
        }

        public Task<ObjectInfo?> HeadAsync(string key, CancellationToken ct = default)
        {
            MaybeFail();
            return inner.HeadAsync(key, ct);
        }

        public Task DeleteAsync(string key, CancellationToken ct = default)
        {
            MaybeFail();
            return inner.DeleteAsync(key, ct);
        }

        public Task<ObjectPage> ListAsync(string prefix, string? startAfter = null, int limit = 1000, CancellationToken ct = default)
        {
            MaybeFail();
            return inner.ListAsync(prefix, startAfter, limit, ct);
        }

        public Task DeleteManyAsync(IReadOnlyCollection<string> keys, CancellationToken ct = default)
        {
            MaybeFail();
            return inner.DeleteManyAsync(keys, ct);
        }

        public ValueTask DisposeAsync() => ValueTask.CompletedTask;
    }

    private static readonly RetryOptions Fast = new() { AttemptsMax = 4, BaseDelayMs = 1, DelayMaxMs = 5 };

    [Fact]
    public async Task RetriesTransientFailuresUntilSuccess()
    {
        var flaky = new Flaky(new MemoryObjectStore(), 3, StoreFailure.Transient);
        var store = new RetryingObjectStore(flaky, Fast);
        await store.PutAsync("k", new byte[] { 1 });
        Assert.Equal(4, flaky.Calls);
        Assert.Equal(3, store.Retries);
        Assert.Equal(new byte[] { 1 }, await store.GetAsync("k"));
    }

    [Fact]
    public async Task GivesUpAfterTheBoundAndSaysSo()
    {
        var flaky = new Flaky(new MemoryObjectStore(), 100, StoreFailure.Transient);
        var store = new RetryingObjectStore(flaky, Fast);
        var e = await Assert.ThrowsAsync<ObjectStoreException>(() => store.HeadAsync("k"));
        Assert.Equal(4, flaky.Calls);
        Assert.Contains("gave up after 4 tries", e.Message, StringComparison.Ordinal);
        Assert.StartsWith("flaky://: injected", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(StoreFailure.Unauthorized)]
    [InlineData(StoreFailure.AccessDenied)]
    [InlineData(StoreFailure.NoSuchBucket)]
    [InlineData(StoreFailure.Unreachable)]
    public async Task PermanentFailuresAreNotRetried(StoreFailure failure)
    {
        var flaky = new Flaky(new MemoryObjectStore(), 100, failure);
        var store = new RetryingObjectStore(flaky, Fast);
        var e = await Assert.ThrowsAsync<ObjectStoreException>(() => store.ListAsync(""));
        Assert.Equal(1, flaky.Calls);
        Assert.Equal(failure, e.Failure);
    }
}
