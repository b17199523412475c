// What `mirrorfs-meta serve` runs with: flags, a JSON config file, or both (flags win), checked before anything starts.
using System.Globalization;
using System.Text.Json;
using MirrorFS.MetaServer.Hosting;

namespace MirrorFS.MetaServer.Cli;

/// <summary>The settings of one <c>serve</c>; null means "not given" (defaults apply later).</summary>
public sealed record ServeConfig
{
    public const string DefaultListen = "127.0.0.1:9400";

    /// <summary>Largest config file read.</summary>
    public const int ConfigBytesMax = 1 << 20;

    public ulong? Id { get; init; }
    public string? Data { get; init; }
    public string? Listen { get; init; }
    public IReadOnlyDictionary<ulong, string>? Peers { get; init; }
    public string? TokenFile { get; init; }
    public bool? NoAuth { get; init; }
    public bool? Join { get; init; }
    public string? Advertise { get; init; }
    public ulong? SnapshotEvery { get; init; }
    public int? ElectionTimeoutMs { get; init; }
    public int? HeartbeatMs { get; init; }

    /// <summary>Values of <paramref name="over"/> where given, else these.</summary>
    public ServeConfig OverriddenBy(ServeConfig over) => new()
    {
        Id = over.Id ?? Id,
        Data = over.Data ?? Data,
        Listen = over.Listen ?? Listen,
        Peers = over.Peers ?? Peers,
        TokenFile = over.TokenFile ?? TokenFile,
        NoAuth = over.NoAuth ?? NoAuth,
        Join = over.Join ?? Join,
        Advertise = over.Advertise ?? Advertise,
        SnapshotEvery = over.SnapshotEvery ?? SnapshotEvery,
        ElectionTimeoutMs = over.ElectionTimeoutMs ?? ElectionTimeoutMs,
        HeartbeatMs = over.HeartbeatMs ?? HeartbeatMs,
    };

    public bool Cluster => Id is not null;

    /// <summary>The listen address: the flag, else this member's entry in the peer list, else the default.</summary>
    public string EffectiveListen =>
        Listen ?? (Id is { } id && Peers is not null && Peers.TryGetValue(id, out var a) ? a : DefaultListen);

    /// <summary>Throws <see cref="CliException"/> naming the first setting that cannot work.</summary>
    public void Validate()
    {
        if (string.IsNullOrWhiteSpace(Data))
        {
            throw new CliException("no data directory: pass --data DIR (or \"data\" in the --config file)");
        }
        if (Id is 0)
        {
            throw new CliException("--id 0 is reserved; give each member a non-zero id");
        }
        if (!Cluster && (Peers is not null || Join == true || Advertise is not null))
        {
            throw new CliException("--peers, --join and --advertise need --id: a cluster member must know its own id");
        }
        if (Id is { } self && Join != true && Peers is { Count: > 0 } peers && !peers.ContainsKey(self))
        {
            throw new CliException($"--peers names members {string.Join(",", peers.Keys.Order())} but not this node's id {self}; add {self}=HOST:PORT, or pass --join to be added later");
        }
        if (Advertise is not null && !ClusterRpc.IsHostPort(Advertise))
        {
            throw new CliException($"--advertise '{Advertise}' is not HOST:PORT");
        }
        if (Cluster && NoAuth != true && TokenFile is null && (Join == true || Peers is { Count: > 1 }))
        {
            throw new CliException("a cluster's members must share one token: pass --token-file FILE (the same file content on every member) or --no-auth");
        }
        if (ElectionTimeoutMs is { } e && (e < 10 || e > 60_000))
        {
            throw new CliException($"--election-timeout-ms {e} is outside 10..60000");
        }
        if (HeartbeatMs is { } h && (h < 2 || h >= (ElectionTimeoutMs ?? 300)))
        {
            throw new CliException($"--heartbeat-ms {h} must be at least 2 and below the election timeout ({ElectionTimeoutMs ?? 300} ms)");
        }
    }

    /// <summary>Parses "1=HOST:PORT,2=HOST:PORT,..." (ids non-zero and distinct, addresses distinct).</summary>
    public static IReadOnlyDictionary<ulong, string> ParsePeers(string text, string source = "--peers")
    {
        var peers = new Dictionary<ulong, string>();
        foreach (var raw in text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
            var eq = raw.IndexOf('=', StringComparison.Ordinal);
            if (eq <= 0 || !ulong.TryParse(raw.AsSpan(0, eq), NumberStyles.None, CultureInfo.InvariantCulture, out var id))
            {
                throw new CliException($"{source} entry '{raw}' is not ID=HOST:PORT (e.g. 1=127.0.0.1:9401)");
            }
            AddPeer(peers, id, raw[(eq + 1)..].Trim(), source);
        }
        if (peers.Count == 0)
        {
            throw new CliException($"{source} is empty; list the members as ID=HOST:PORT,ID=HOST:PORT,...");
        }
        return peers;
    }

    private static void AddPeer(Dictionary<ulong, string> peers, ulong id, string address, string source)
    {
        if (id == 0)
        {
            throw new CliException($"{source}: member id 0 is reserved; use ids from 1");
        }
        if (!ClusterRpc.IsHostPort(address))
        {
            throw new CliException($"{source}: address '{address}' of member {id} is not HOST:PORT");
        }
        if (!peers.TryAdd(id, address))
        {
            throw new CliException($"{source} names member {id} twice");
        }
        if (peers.Count(p => p.Value == address) > 1)
        {
            throw new CliException($"{source} gives address {address} to two members");
        }
    }

    /// <summary>Reads a JSON config file: {"id": 1, "data": DIR, "listen": HOST:PORT, "peers": {"1": HOST:PORT, ...}
    /// or "1=HOST:PORT,...", "token-file": FILE, and optionally "join", "no-auth", "advertise", "snapshot-every",
    /// "election-timeout-ms", "heartbeat-ms"}. Unknown keys are refused (they are usually typos).</summary>
    public static ServeConfig Load(string path)
    {
        byte[] bytes;
        try
        {
            var info = new FileInfo(path);
            if (!info.Exists)
            {
                throw new CliException($"config file {path} does not exist");
            }
            if (info.Length > ConfigBytesMax)
            {
                throw new CliException($"config file {path} is {info.Length} bytes; the limit is {ConfigBytesMax}");
            }
            bytes = File.ReadAllBytes(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CliException($"cannot read config file {path}: {e.Message}");
        }
        try
        {
            using var doc = JsonDocument.Parse(bytes, new JsonDocumentOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true });
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
            {
                throw new CliException($"config file {path} must hold one JSON object");
            }
            var c = new ServeConfig();
            foreach (var p in doc.RootElement.EnumerateObject())
            {
                var where = $"config file {path}: \"{p.Name}\"";
                c = p.Name switch
                {
                    "id" => c with { Id = Number<ulong>(p.Value, where) },
                    "data" => c with { Data = Text(p.Value, where) },
                    "listen" => c with { Listen = Text(p.Value, where) },
                    "peers" => c with { Peers = PeersValue(p.Value, where) },
                    "token-file" => c with { TokenFile = Text(p.Value, where) },
                    "no-auth" => c with { NoAuth = Bool(p.Value, where) },
                    "join" => c with { Join = Bool(p.Value, where) },
                    "advertise" => c with { Advertise = Text(p.Value, where) },
                    "snapshot-every" => c with { SnapshotEvery = Number<ulong>(p.Value, where) },
                    "election-timeout-ms" => c with { ElectionTimeoutMs = Number<int>(p.Value, where) },
                    "heartbeat-ms" => c with { HeartbeatMs = Number<int>(p.Value, where) },
                    _ => throw new CliException($"config file {path}: unknown key \"{p.Name}\" (known: id, data, listen, peers, token-file, join, no-auth, advertise, snapshot-every, election-timeout-ms, heartbeat-ms)"),
                };
            }
            // Relative paths in a config file mean relative to the file, wherever serve is started from.
            var dir = Path.GetDirectoryName(Path.GetFullPath(path))!;
            return c with
            {
                Data = c.Data is null ? null : Path.GetFullPath(c.Data, dir),
                TokenFile = c.TokenFile is null ? null : Path.GetFullPath(c.TokenFile, dir),
            };
        }
        catch (JsonException e)
        {
            throw new CliException($"config file {path} is not valid JSON: {MetaCli.FirstLine(e.Message)}");
        }
    }

    private static string Text(JsonElement v, string where) =>
        v.ValueKind == JsonValueKind.String && v.GetString() is { Length: > 0 } s ? s : throw new CliException($"{where} must be a non-empty string");

    private static bool Bool(JsonElement v, string where) =>
        v.ValueKind is JsonValueKind.True or JsonValueKind.False ? v.GetBoolean() : throw new CliException($"{where} must be true or false");

    private static T Number<T>(JsonElement v, string where) where T : struct
    {
        if (v.ValueKind == JsonValueKind.Number)
        {
            if (typeof(T) == typeof(ulong) && v.TryGetUInt64(out var u))
            {
                return (T)(object)u;
            }
            if (typeof(T) == typeof(int) && v.TryGetInt32(out var i))
            {
                return (T)(object)i;
            }
        }
        throw new CliException($"{where} must be a whole number");
    }

    private static IReadOnlyDictionary<ulong, string> PeersValue(JsonElement v, string where)
    {
        if (v.ValueKind == JsonValueKind.String)
        {
            return ParsePeers(v.GetString() ?? "", where);
        }
        if (v.ValueKind != JsonValueKind.Object)
        {
            throw new CliException($"{where} must be an object {{\"1\": \"HOST:PORT\", ...}} or a string \"1=HOST:PORT,...\"");
        }
        var peers = new Dictionary<ulong, string>();
        foreach (var p in v.EnumerateObject())
        {
            if (!ulong.TryParse(p.Name, NumberStyles.None, CultureInfo.InvariantCulture, out var id))
            {
                throw new CliException($"{where}: key \"{p.Name}\" is not a member id");
            }
            AddPeer(peers, id, Text(p.Value, $"{where}.{p.Name}"), where);
        }
        if (peers.Count == 0)
        {
            throw new CliException($"{where} is empty");
        }
        return peers;
    }

    /// <summary>Host options for these settings (after <see cref="Validate"/>); the token is read by the caller.</summary>
    public MetaServerOptions ToHostOptions(string? token, Microsoft.Extensions.Logging.ILoggerFactory? loggers) => new()
    {
        DataDirectory = Path.GetFullPath(Data!),
        Listen = EffectiveListen,
        BearerToken = token,
        SnapshotEveryEntries = SnapshotEvery ?? 100_000,
        LoggerFactory = loggers,
        NodeId = Id ?? 0,
        Peers = Peers,
        Join = Join ?? false,
        AdvertiseAddress = Advertise,
        ElectionTimeoutMs = ElectionTimeoutMs ?? 300,
        HeartbeatMs = HeartbeatMs ?? 50,
    };
}
