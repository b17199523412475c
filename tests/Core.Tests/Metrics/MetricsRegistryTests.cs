using System.Net;
using MirrorFS.Core.Metrics;
using MirrorFS.Core.Storage;
using Xunit.Abstractions;

namespace MirrorFS.Core.Tests.Metrics;

public sealed class MetricsRegistryTests(ITestOutputHelper output)
{
    [Fact]
    public void Counters_gauges_and_histograms_round_trip_through_the_text_format()
    {
        var r = new MetricsRegistry();
        var ops = r.CounterFamily("test_ops_total", "Operations by op.", "op");
        ops.WithLabels("read").Inc(5);
        ops.WithLabels("write").Inc();
        ops.WithLabels("write").Inc(2);
        ops.WithLabels("write").Inc(-7); // ignored: counters never go down
        var g = r.Gauge("test_level", "A level.");
        g.Set(2.5);
        g.Dec(1);
        var h = r.HistogramFamily("test_latency_seconds", "Latency.", [0.1, 1, 10], "op").WithLabels("read");
        foreach (var v in new[] { 0.05, 0.1, 0.5, 5, 50, double.NaN })
        {
            h.Observe(v);
        }
        r.GaugeCallback("test_callback", "Read at collection.", () => 42);

        var text = r.Collect();
        output.WriteLine(text);
        var f = PrometheusParser.Parse(text);

        Assert.Equal("counter", f["test_ops_total"].Type);
        Assert.Equal(5, f.Value("test_ops_total", ("op", "read")));
        Assert.Equal(3, f.Value("test_ops_total", ("op", "write")));
        Assert.Equal(1.5, f.Value("test_level"));
        Assert.Equal("histogram", f["test_latency_seconds"].Type);
        // le is inclusive: 0.1 lands in the 0.1 bucket.
        Assert.Equal(2, f.Value("test_latency_seconds_bucket", ("op", "read"), ("le", "0.1")));
        Assert.Equal(3, f.Value("test_latency_seconds_bucket", ("op", "read"), ("le", "1")));
        Assert.Equal(4, f.Value("test_latency_seconds_bucket", ("op", "read"), ("le", "10")));
        Assert.Equal(5, f.Value("test_latency_seconds_bucket", ("op", "read"), ("le", "+Inf")));
        Assert.Equal(5, f.Value("test_latency_seconds_count", ("op", "read")));
        Assert.Equal(55.65, f.Value("test_latency_seconds_sum", ("op", "read")), 9);
        Assert.Equal(42, f.Value("test_callback"));
        Assert.Equal("Latency.", f["test_latency_seconds"].Help);
    }

    [Fact]
    public void Label_values_and_help_are_escaped()
    {
        var r = new MetricsRegistry();
        const string nasty = "a\\b\"c\nd,e=}{";
        r.CounterFamily("test_escape_total", "Help with a \\ backslash\nand a newline \"quoted\".", "path").WithLabels(nasty).Inc();
        var text = r.Collect();
        output.WriteLine(text);
        Assert.Contains("path=\"a\\\\b\\\"c\\nd,e=}{\"", text, StringComparison.Ordinal);
        Assert.Equal(2, text.Count(c => c == '\n') - 1); // HELP, TYPE, one sample: the newlines inside were escaped
        var f = PrometheusParser.Parse(text);
        Assert.Equal(1, f.Value("test_escape_total", ("path", nasty)));
        Assert.Equal("Help with a \\ backslash\nand a newline \"quoted\".", f["test_escape_total"].Help);
    }

    [Fact]
    public void An_unused_labeled_family_still_shows_help_and_type()
    {
        var r = new MetricsRegistry();
        r.HistogramFamily("test_unused_seconds", "Never observed.", Buckets.LatencySeconds, "op");
        r.Counter("test_zero_total", "Unlabeled starts at zero.");
        var f = PrometheusParser.Parse(r.Collect());
        Assert.Empty(f["test_unused_seconds"].Samples);
        Assert.Equal(0, f.Value("test_zero_total"));
    }

    [Fact]
    public void Registering_a_name_again_returns_the_same_family_or_fails_on_a_clash()
    {
        var r = new MetricsRegistry();
        var a = r.CounterFamily("test_shared_total", "Shared.", "op");
        var b = r.CounterFamily("test_shared_total", "Shared.", "op");
        Assert.Same(a, b);
        Assert.Same(a.WithLabels("x"), b.WithLabels("x"));
        Assert.Throws<InvalidOperationException>(() => r.GaugeFamily("test_shared_total", "Shared.", "op"));
        Assert.Throws<InvalidOperationException>(() => r.CounterFamily("test_shared_total", "Shared.", "other"));
        r.HistogramFamily("test_h", "h", [1, 2]);
        Assert.Throws<InvalidOperationException>(() => r.HistogramFamily("test_h", "h", [1, 3]));
        var level = 1.0;
        r.GaugeCallback("test_cb", "cb", () => level);
        r.GaugeCallback("test_cb", "cb", () => level * 10); // the newest owner wins
        Assert.Equal(10, PrometheusParser.Parse(r.Collect()).Value("test_cb"));
    }

    [Theory]
    [InlineData("9starts_with_digit")]
    [InlineData("has-dash")]
    [InlineData("")]
    [InlineData("has space")]
    public void Bad_metric_names_are_refused(string name) =>
        Assert.Throws<ArgumentException>(() => new MetricsRegistry().Counter(name, "x"));

    [Fact]
    public void Bad_labels_and_buckets_are_refused()
    {
        var r = new MetricsRegistry();
        Assert.Throws<ArgumentException>(() => r.CounterFamily("a_total", "x", "__reserved"));
        Assert.Throws<ArgumentException>(() => r.CounterFamily("b_total", "x", "op", "op"));
        Assert.Throws<ArgumentException>(() => r.HistogramFamily("c", "x", [1, 2], "le"));
        Assert.Throws<ArgumentException>(() => r.HistogramFamily("d", "x", [2, 1]));
        Assert.Throws<ArgumentException>(() => r.HistogramFamily("e", "x", [1, double.PositiveInfinity]));
        Assert.Throws<ArgumentException>(() => r.CounterFamily("f_total", "x", "op").WithLabels("a", "b"));
    }

    [Fact]
    public void Series_past_the_limit_share_one_overflow_series()
    {
        var r = new MetricsRegistry();
        var fam = r.CounterFamily("test_many_total", "Many.", "id");
        for (var i = 0; i < CounterFamily.SeriesMax + 50; i++)
        {
            fam.WithLabels(i.ToString(System.Globalization.CultureInfo.InvariantCulture)).Inc();
        }
        var f = PrometheusParser.Parse(r.Collect());
        Assert.Equal(CounterFamily.SeriesMax + 1, f["test_many_total"].Samples.Count);
        Assert.Equal(50, f.Value("test_many_total", ("id", CounterFamily.OverflowLabel)));
    }

    [Fact]
    public async Task Concurrent_updates_lose_nothing()
    {
        var r = new MetricsRegistry();
        var c = r.Counter("test_conc_total", "c");
        var g = r.Gauge("test_conc_gauge", "g");
        var h = r.Histogram("test_conc_seconds", "h", [0.5]);
        const int threads = 4;
        const int per = 50_000;
        await Task.WhenAll(Enumerable.Range(0, threads).Select(_ => Task.Run(() =>
        {
            for (var i = 0; i < per; i++)
            {
                c.Inc();
                g.Inc(0.5);
                h.Observe(i % 2 == 0 ? 0.25 : 1);
            }
        })));
        var f = PrometheusParser.Parse(r.Collect());
        Assert.Equal(threads * per, f.Value("test_conc_total"));
        Assert.Equal(threads * per * 0.5, f.Value("test_conc_gauge"));
        Assert.Equal(threads * per, f.Value("test_conc_seconds_count"));
        Assert.Equal(threads * per / 2, f.Value("test_conc_seconds_bucket", ("le", "0.5")));
        Assert.Equal(threads * per / 2 * 1.25, f.Value("test_conc_seconds_sum"));
    }

    [Fact]
    public async Task The_http_listener_serves_metrics_and_nothing_else()
    {
        var r = new MetricsRegistry();
        r.Counter("test_served_total", "Served.").Inc(7);
        await using var server = await MetricsHttpServer.StartAsync("127.0.0.1:0", r);
        using var http = new HttpClient();
        var resp = await http.GetAsync(server.Url);
        Assert.Equal(HttpStatusCode.OK, resp.StatusCode);
        Assert.Equal("text/plain; version=0.0.4; charset=utf-8", resp.Content.Headers.ContentType?.ToString());
        var f = PrometheusParser.Parse(await resp.Content.ReadAsStringAsync());
        Assert.Equal(7, f.Value("test_served_total"));
        Assert.Equal(HttpStatusCode.NotFound, (await http.GetAsync($"http://{server.Address}/other")).StatusCode);
        Assert.Equal(HttpStatusCode.MethodNotAllowed, (await http.PostAsync(server.Url, new StringContent(""))).StatusCode);

        // The port is taken now: a second listener fails with one clear line.
        var e = await Assert.ThrowsAsync<IOException>(() => MetricsHttpServer.StartAsync(server.Address, r));
        Assert.Contains(server.Address, e.Message, StringComparison.Ordinal);
        await Assert.ThrowsAsync<ArgumentException>(() => MetricsHttpServer.StartAsync("nonsense", r));
    }

    [Fact]
    public async Task The_metered_store_counts_requests_bytes_and_errors_by_operation()
    {
        var r = new MetricsRegistry();
        await using var store = new MeteredObjectStore(new MemoryObjectStore(), new ObjectStoreMetrics(r));
        await store.PutAsync("a", new byte[100]);
        await store.PutAsync("b", new byte[50]);
        Assert.NotNull(await store.GetAsync("a"));
        Assert.Null(await store.GetAsync("missing"));
        Assert.NotNull(await store.HeadAsync("a"));
        await store.ListAsync("");
        await store.DeleteAsync("a");
        await store.DeleteManyAsync(["b"]);
        await using var failing = new MeteredObjectStore(new FailingStore(), new ObjectStoreMetrics(r));
        await Assert.ThrowsAsync<ObjectStoreException>(() => failing.GetAsync("x"));

        var f = PrometheusParser.Parse(r.Collect());
        Assert.Equal(2, f.Value("mirrorfs_object_request_duration_seconds_count", ("method", "PUT")));
        Assert.Equal(3, f.Value("mirrorfs_object_request_duration_seconds_count", ("method", "GET")));
        Assert.Equal(1, f.Value("mirrorfs_object_request_duration_seconds_count", ("method", "HEAD")));
        Assert.Equal(1, f.Value("mirrorfs_object_request_duration_seconds_count", ("method", "LIST")));
        Assert.Equal(2, f.Value("mirrorfs_object_request_duration_seconds_count", ("method", "DELETE")));
        Assert.Equal(1, f.Value("mirrorfs_object_request_errors_total", ("method", "GET")));
        Assert.Equal(0, f.Value("mirrorfs_object_request_errors_total", ("method", "PUT")));
        Assert.Equal(150, f.Value("mirrorfs_object_upload_bytes_total"));
        Assert.Equal(100, f.Value("mirrorfs_object_download_bytes_total"));
    }

    private sealed class FailingStore : IObjectStore
    {
        public string Description => "failing://";

        private static ObjectStoreException Fail() => new("failing://", StoreFailure.Other, "injected failure");

        public Task PutAsync(string key, ReadOnlyMemory<byte> data, CancellationToken ct = default) => throw Fail();

        public Task<byte[]?> GetAsync(string key, ByteRange? range = null, CancellationToken ct = default) => throw Fail();

        public Task<ObjectInfo?> HeadAsync(string key, CancellationToken ct = default) => throw Fail();

        public Task DeleteAsync(string key, CancellationToken ct = default) => throw Fail();

        public Task<ObjectPage> ListAsync(string prefix, string? startAfter = null, int limit = 1000, CancellationToken ct = default) => throw Fail();

        public Task DeleteManyAsync(IReadOnlyCollection<string> keys, CancellationToken ct = default) => throw Fail();

        public ValueTask DisposeAsync() => ValueTask.CompletedTask;
    }
}
