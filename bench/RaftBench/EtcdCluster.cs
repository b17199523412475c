// The baseline: a three-member etcd cluster as real processes on loopback, driven through its JSON gateway.
using System.Globalization;
using System.Text;
using System.Text.Json;

namespace MirrorFS.Bench;

internal sealed class EtcdCluster : IAsyncDisposable
{
    private const int StartTimeoutMs = 60_000;
    private const int HealthPollMs = 100;
    private readonly ChildProcess[] _members;
    private readonly string[] _clientUrls;

    private EtcdCluster(ChildProcess[] members, string[] clientUrls, string version)
    {
        _members = members;
        _clientUrls = clientUrls;
        Version = version;
    }

    public string Version { get; }

    /// <summary>The etcd binary, or null when it is not installed.</summary>
    public static string? FindBinary() =>
        new[] { "/usr/bin/etcd", "/usr/local/bin/etcd" }.FirstOrDefault(File.Exists);

    /// <summary>Process ids of the members.</summary>
    public IReadOnlyList<int> Pids => [.. _members.Select(m => m.Pid)];

    public static async Task<EtcdCluster> StartAsync(string binary, string dir, int size)
    {
        Directory.CreateDirectory(dir);
        var ports = MetaCluster.FreePorts(2 * size);
        var clientUrls = Enumerable.Range(0, size).Select(i => $"http://127.0.0.1:{ports[i]}").ToArray();
        var peerUrls = Enumerable.Range(0, size).Select(i => $"http://127.0.0.1:{ports[size + i]}").ToArray();
        var initial = string.Join(',', peerUrls.Select((u, i) => $"e{i + 1}={u}"));
        var members = new List<ChildProcess>();
        try
        {
            for (var i = 0; i < size; i++)
            {
                // etcd logs to stderr and prints no single ready line: wait for /health below instead.
                members.Add(await ChildProcess.StartAsync($"etcd member e{i + 1}", binary,
                    ["--name", $"e{i + 1}", "--data-dir", Path.Combine(dir, $"e{i + 1}"),
                     "--listen-client-urls", clientUrls[i], "--advertise-client-urls", clientUrls[i],
                     "--listen-peer-urls", peerUrls[i], "--initial-advertise-peer-urls", peerUrls[i],
                     "--initial-cluster", initial, "--initial-cluster-state", "new",
                     "--initial-cluster-token", "raftbench-" + Path.GetFileName(dir)],
                    "", 0, Path.Combine(dir, $"e{i + 1}.log")));
            }
            var version = await WaitHealthyAsync(clientUrls, members);
            return new EtcdCluster(members.ToArray(), clientUrls, version);
        }
        catch
        {
            foreach (var m in members)
            {
                await m.DisposeAsync();
            }
            throw;
        }
    }

    private static async Task<string> WaitHealthyAsync(string[] clientUrls, List<ChildProcess> members)
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(2) };
        var deadline = Environment.TickCount64 + StartTimeoutMs;
        string? lastError = null;
        while (Environment.TickCount64 < deadline)
        {
            if (members.FirstOrDefault(m => m.HasExited) is { } dead)
            {
                throw new InvalidOperationException($"{dead.Name} exited while starting; its last output:\n{dead.LastOutput}");
            }
            try
            {
                var healthy = 0;
                foreach (var url in clientUrls)
                {
                    var body = await http.GetStringAsync(url + "/health");
                    healthy += body.Contains("\"true\"", StringComparison.Ordinal) ? 1 : 0;
                }
                if (healthy == clientUrls.Length)
                {
                    using var status = JsonDocument.Parse(await PostAsync(http, clientUrls[0] + "/v3/maintenance/status", "{}"));
                    return status.RootElement.GetProperty("version").GetString() ?? "?";
                }
                lastError = $"{healthy} of {clientUrls.Length} members healthy";
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
            {
                lastError = e.Message;
            }
            await Task.Delay(HealthPollMs);
        }
        throw new TimeoutException($"etcd cluster not healthy within {StartTimeoutMs} ms ({lastError})");
    }

    /// <summary>The member that is the Raft leader now, so that puts are not forwarded (as ours go to the leader).</summary>
    public async Task<string> LeaderUrlAsync()
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(5) };
        foreach (var url in _clientUrls)
        {
            using var doc = JsonDocument.Parse(await PostAsync(http, url + "/v3/maintenance/status", "{}"));
            var self = doc.RootElement.GetProperty("header").GetProperty("member_id").GetString();
            var leader = doc.RootElement.GetProperty("leader").GetString();
            if (self is not null && self == leader)
            {
                return url;
            }
        }
        throw new InvalidOperationException($"no etcd member at {string.Join(",", _clientUrls)} says it is the leader");
    }

    private static async Task<string> PostAsync(HttpClient http, string url, string json)
    {
        using var content = new StringContent(json, Encoding.UTF8, "application/json");
        using var resp = await http.PostAsync(url, content);
        var body = await resp.Content.ReadAsStringAsync();
        if (!resp.IsSuccessStatusCode)
        {
            throw new HttpRequestException($"POST {url} answered {(int)resp.StatusCode}: {body}");
        }
        return body;
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var m in _members)
        {
            await m.DisposeAsync();
        }
    }
}

/// <summary>Puts through etcd's JSON gateway (<c>POST /v3/kv/put</c>, base64 key and value), one pooled HttpClient.</summary>
internal sealed class EtcdPutClient : IDisposable
{
    private const int ConnectionsMax = 512;
    private readonly HttpClient _http;
    private readonly Uri _put;
    private readonly string _valueBase64;

    public EtcdPutClient(string baseUrl, int valueBytes)
    {
        _http = new HttpClient(new SocketsHttpHandler
        {
            MaxConnectionsPerServer = ConnectionsMax,
            UseProxy = false,
            UseCookies = false,
            PooledConnectionIdleTimeout = TimeSpan.FromMinutes(5),
        })
        { Timeout = TimeSpan.FromSeconds(30) };
        _put = new Uri(baseUrl + "/v3/kv/put");
        var value = new byte[valueBytes];
        new Random(42).NextBytes(value);
        _valueBase64 = Convert.ToBase64String(value);
    }

    public async Task PutAsync(int caller, long i)
    {
        var key = Convert.ToBase64String(Encoding.ASCII.GetBytes(string.Create(CultureInfo.InvariantCulture, $"raftbench/{caller}/{i}")));
        using var content = new StringContent($"{{\"key\":\"{key}\",\"value\":\"{_valueBase64}\"}}", Encoding.ASCII, "application/json");
        using var resp = await _http.PostAsync(_put, content);
        if (!resp.IsSuccessStatusCode)
        {
            var body = await resp.Content.ReadAsStringAsync();
            throw new HttpRequestException($"etcd put answered {(int)resp.StatusCode}: {body}");
        }
        // Read the reply like a real client does; its header carries the revision the put committed at.
        await resp.Content.ReadAsByteArrayAsync();
    }

    public void Dispose() => _http.Dispose();
}
