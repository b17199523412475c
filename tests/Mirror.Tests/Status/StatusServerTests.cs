// The replicator's HTTP endpoint: /metrics in Prometheus text with the lag figures, /status as JSON, 404 elsewhere.
using System.Net;
using MirrorFS.Mirror.Replication;
using MirrorFS.Mirror.Status;

namespace MirrorFS.Mirror.Tests.Status;

public sealed class StatusServerTests
{
    [Fact]
    public async Task Metrics_and_status_serve_the_replicators_current_figures()
    {
        var lag = 7UL;
        ReplicatorStatus Now() => new()
        {
            MirrorId = "mirror-s3",
            State = "running",
            PrimaryCommitIndex = 40,
            CopiedThroughIndex = 40 - lag,
            LagEntries = lag,
            LagSeconds = 1.5,
            BlocksPending = 3,
            BytesPending = 12_345,
            BlocksCopied = 99,
            BlockLagP50Ms = 250,
            BlockLagP99Ms = 1_250,
            BlockLagSamples = 99,
        };
        await using var server = await StatusServer.StartAsync("127.0.0.1:0", Now, CancellationToken.None);
        using var http = new HttpClient { BaseAddress = new Uri($"http://{server.Address}/") };

        var metrics = await http.GetStringAsync("metrics");
        Assert.Contains("# TYPE mirrorfs_replicator_lag_entries gauge", metrics, StringComparison.Ordinal);
        Assert.Contains("mirrorfs_replicator_lag_entries{mirror_id=\"mirror-s3\"} 7", metrics, StringComparison.Ordinal);
        Assert.Contains("mirrorfs_replicator_block_lag_seconds{mirror_id=\"mirror-s3\",quantile=\"0.5\"} 0.25", metrics, StringComparison.Ordinal);
        Assert.Contains("mirrorfs_replicator_block_lag_seconds{mirror_id=\"mirror-s3\",quantile=\"0.99\"} 1.25", metrics, StringComparison.Ordinal);

        // Figures are read per request, not cached at start.
        lag = 0;
        Assert.Contains("mirrorfs_replicator_lag_entries{mirror_id=\"mirror-s3\"} 0", await http.GetStringAsync("metrics"), StringComparison.Ordinal);
        var status = ReplicatorStatus.FromJson(await http.GetByteArrayAsync("status"));
        Assert.NotNull(status);
        Assert.Equal((40UL, 0UL, 3), (status.CopiedThroughIndex, status.LagEntries, status.BlocksPending));

        using var missing = await http.GetAsync("other");
        Assert.Equal(HttpStatusCode.NotFound, missing.StatusCode);
    }
}
