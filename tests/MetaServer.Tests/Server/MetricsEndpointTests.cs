// The metaserver's /metrics: RPC counts by method, commit latency, indexes, sessions and inodes, in-process and as a process.
using MirrorFS.Core.Meta;
using MirrorFS.Core.Metrics;
using MirrorFS.Core.Tests.Metrics;
using MirrorFS.MetaServer.Hosting;
using Xunit.Abstractions;

namespace MirrorFS.MetaServer.Tests.Server;

public sealed class MetricsEndpointTests(ITestOutputHelper output) : IDisposable
{
    private const string Token = "metrics-token-0123456789abcdef";
    private readonly string _dir = Directory.CreateTempSubdirectory("mirrorfs-meta-metrics-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static readonly Credentials Root = new();

    [Fact]
    public async Task Metrics_show_rpc_counts_commit_latency_and_state_sizes()
    {
        await using var host = await MetaServerHost.StartAsync(new MetaServerOptions
        {
            DataDirectory = _dir,
            BearerToken = Token,
            MetricsListen = "127.0.0.1:0",
        });
        Assert.NotNull(host.Metrics.Address);
        var clientMetrics = new MetricsRegistry();
        await using (var meta = new RpcMetaClient(new RpcMetaClientOptions { Addresses = [host.Address], BearerToken = Token, Metrics = clientMetrics }))
        {
            Assert.Equal(0, (await meta.FormatAsync(new FormatRequest { Cred = Root, Volume = new Volume { Name = "vol", Storage = "file:///tmp/x" } })).Errno);
            var s = await meta.NewSessionAsync(new NewSessionRequest { Cred = Root, Info = new ClientInfo { Hostname = "t" } });
            Assert.Equal(0, s.Errno);
            for (var i = 0; i < 3; i++)
            {
                Assert.Equal(0, (await meta.GetVolumeAsync(new GetVolumeRequest { Cred = Root })).Errno);
            }
            Assert.Equal(0, (await meta.MkdirAsync(new MkdirRequest
            {
                Cred = Root, SessionId = s.SessionId, Seq = 1, Parent = 1, Name = Google.Protobuf.ByteString.CopyFromUtf8("d"), Mode = 0x1ED,
            })).Errno);
            // The client side of the same calls, with failover included.
            var c = PrometheusParser.Parse(clientMetrics.Collect());
            Assert.Equal(3, c.Value("mirrorfs_meta_request_duration_seconds_count", ("method", "GetVolume")));
            Assert.Equal(1, c.Value("mirrorfs_meta_request_duration_seconds_count", ("method", "Mkdir")));
            Assert.Equal(0, c.Value("mirrorfs_meta_request_errors_total", ("method", "Mkdir")));
        }

        using var http = new HttpClient();
        var text = await http.GetStringAsync($"http://{host.Metrics.Address}/metrics");
        output.WriteLine(text);
        var f = PrometheusParser.Parse(text);
        Assert.Equal(3, f.Value("mirrorfs_rpc_server_handled_total", ("method", "GetVolume"), ("code", "OK")));
        Assert.Equal(3, f.Value("mirrorfs_rpc_server_handling_seconds_count", ("method", "GetVolume")));
        Assert.Equal(1, f.Value("mirrorfs_rpc_server_handled_total", ("method", "Mkdir"), ("code", "OK")));
        Assert.Equal(MetaRpc.ServiceName, f["mirrorfs_rpc_server_handled_total"].Samples[0].Label("service"));
        // Format, NewSession and Mkdir were proposed and applied.
        Assert.True(f.Value("mirrorfs_meta_commit_duration_seconds_count") >= 3);
        Assert.True(f.Value("mirrorfs_meta_applied_index") >= 3);
        Assert.Equal(f.Value("mirrorfs_meta_applied_index"), host.Log.AppliedIndex);
        Assert.Equal(1, f.Value("mirrorfs_meta_sessions"));
        Assert.Equal(2, f.Value("mirrorfs_meta_inodes")); // the root and d
        Assert.True(f.Value("mirrorfs_process_resident_memory_bytes") > 0);
    }

    [Fact]
    public async Task The_serve_command_takes_a_metrics_address()
    {
        await using var p = await MetaServerProcess.StartAsync(Path.Combine(_dir, "data"), "127.0.0.1:0", "--no-auth", "--metrics", "127.0.0.1:0");
        const string marker = "mirrorfs-meta metrics at ";
        string? url = null;
        for (var i = 0; i < 300 && url is null; i++)
        {
            url = p.Output.Split('\n').FirstOrDefault(l => l.StartsWith(marker, StringComparison.Ordinal))?[marker.Length..].Trim();
            if (url is null)
            {
                await Task.Delay(100);
            }
        }
        Assert.True(url is not null, $"no metrics address printed:\n{p.Output}");
        await using (var meta = new RpcMetaClient(new RpcMetaClientOptions { Addresses = [p.Address] }))
        {
            Assert.Equal(0, (await meta.FormatAsync(new FormatRequest { Cred = Root, Volume = new Volume { Name = "vol", Storage = "file:///tmp/x" } })).Errno);
        }
        using var http = new HttpClient();
        var f = PrometheusParser.Parse(await http.GetStringAsync(url));
        Assert.Equal(1, f.Value("mirrorfs_rpc_server_handled_total", ("method", "Format"), ("code", "OK")));
        Assert.True(f.Value("mirrorfs_meta_applied_index") >= 1);
    }
}
