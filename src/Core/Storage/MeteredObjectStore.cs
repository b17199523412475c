// Counts and times every object request (by operation) and the bytes moved, around any IObjectStore.
using System.Diagnostics;
using MirrorFS.Core.Metrics;

namespace MirrorFS.Core.Storage;

/// <summary>The metric series a <see cref="MeteredObjectStore"/> updates, resolved once.</summary>
public sealed class ObjectStoreMetrics
{
    public const string Get = "GET";
    public const string Put = "PUT";
    public const string Head = "HEAD";
    public const string Delete = "DELETE";
    public const string List = "LIST";

    /// <param name="prefix">Name prefix of the series, e.g. "mirrorfs_object"; a replicator metering two buckets
    /// uses one prefix per bucket.</param>
    public ObjectStoreMetrics(MetricsRegistry registry, string prefix = "mirrorfs_object")
    {
        ArgumentNullException.ThrowIfNull(registry);
        var latency = registry.HistogramFamily(prefix + "_request_duration_seconds",
            "Object storage request latency in seconds, by operation (each try of a retried call counts).",
            Buckets.LatencySeconds, "method");
        var errors = registry.CounterFamily(prefix + "_request_errors_total",
            "Object storage requests that failed, by operation.", "method");
        (GetLatency, GetErrors) = (latency.WithLabels(Get), errors.WithLabels(Get));
        (PutLatency, PutErrors) = (latency.WithLabels(Put), errors.WithLabels(Put));
        (HeadLatency, HeadErrors) = (latency.WithLabels(Head), errors.WithLabels(Head));
        (DeleteLatency, DeleteErrors) = (latency.WithLabels(Delete), errors.WithLabels(Delete));
        (ListLatency, ListErrors) = (latency.WithLabels(List), errors.WithLabels(List));
        UploadBytes = registry.Counter(prefix + "_upload_bytes_total", "Bytes sent to object storage in PUT bodies.");
        DownloadBytes = registry.Counter(prefix + "_download_bytes_total", "Bytes received from object storage in GET bodies.");
    }

    internal Histogram GetLatency { get; }
    internal Histogram PutLatency { get; }
    internal Histogram HeadLatency { get; }
    internal Histogram DeleteLatency { get; }
    internal Histogram ListLatency { get; }
    internal Counter GetErrors { get; }
    internal Counter PutErrors { get; }
    internal Counter HeadErrors { get; }
    internal Counter DeleteErrors { get; }
    internal Counter ListErrors { get; }
    public Counter UploadBytes { get; }
    public Counter DownloadBytes { get; }
}

/// <summary>
/// Decorates a store with <see cref="ObjectStoreMetrics"/>. Put it under <see cref="RetryingObjectStore"/> so each
/// try is one request; DeleteMany counts as one DELETE request. A "not found" answer is a success, not an error.
/// </summary>
public sealed class MeteredObjectStore(IObjectStore inner, ObjectStoreMetrics metrics) : IObjectStore
{
    public string Description => inner.Description;

    public async Task PutAsync(string key, ReadOnlyMemory<byte> data, CancellationToken ct = default)
    {
        var start = Stopwatch.GetTimestamp();
        try
        {
            await inner.PutAsync(key, data, ct).ConfigureAwait(false);
            metrics.UploadBytes.Inc(data.Length);
        }
        catch
        {
            metrics.PutErrors.Inc();
            throw;
        }
        finally
        {
            metrics.PutLatency.ObserveSince(start);
        }
    }

    public async Task<byte[]?> GetAsync(string key, ByteRange? range = null, CancellationToken ct = default)
    {
        var start = Stopwatch.GetTimestamp();
        try
        {
            var data = await inner.GetAsync(key, range, ct).ConfigureAwait(false);
            if (data is not null)
            {
                metrics.DownloadBytes.Inc(data.Length);
            }
            return data;
        }
        catch
        {
            metrics.GetErrors.Inc();
            throw;
        }
        finally
        {
            metrics.GetLatency.ObserveSince(start);
        }
    }

    public async Task<ObjectInfo?> HeadAsync(string key, CancellationToken ct = default)
    {
        var start = Stopwatch.GetTimestamp();
        try
        {
            return await inner.HeadAsync(key, ct).ConfigureAwait(false);
        }
        catch
        {
            metrics.HeadErrors.Inc();
            throw;
        }
        finally
        {
            metrics.HeadLatency.ObserveSince(start);
        }
    }

    public async Task DeleteAsync(string key, CancellationToken ct = default)
    {
        var start = Stopwatch.GetTimestamp();
        try
        {
            await inner.DeleteAsync(key, ct).ConfigureAwait(false);
        }
        catch
        {
            metrics.DeleteErrors.Inc();
            throw;
        }
        finally
        {
            metrics.DeleteLatency.ObserveSince(start);
        }
    }

    public async Task<ObjectPage> ListAsync(string prefix, string? startAfter = null, int limit = 1000, CancellationToken ct = default)
    {
        var start = Stopwatch.GetTimestamp();
        try
        {
            return await inner.ListAsync(prefix, startAfter, limit, ct).ConfigureAwait(false);
        }
        catch
        {
            metrics.ListErrors.Inc();
            throw;
        }
        finally
        {
            metrics.ListLatency.ObserveSince(start);
        }
    }

    public async Task DeleteManyAsync(IReadOnlyCollection<string> keys, CancellationToken ct = default)
    {
        var start = Stopwatch.GetTimestamp();
        try
        {
            await inner.DeleteManyAsync(keys, ct).ConfigureAwait(false);
        }
        catch
        {
            metrics.DeleteErrors.Inc();
            throw;
        }
        finally
        {
            metrics.DeleteLatency.ObserveSince(start);
        }
    }

    public ValueTask DisposeAsync() => inner.DisposeAsync();
}
