namespace MirrorFS.Testing.Oss;

/// <summary>How an <see cref="OssTestServer"/> listens, authenticates and stores.</summary>
public sealed class OssTestServerOptions
{
    /// <summary>IP address to listen on; loopback unless a deployment says otherwise.</summary>
    public string ListenAddress { get; set; } = "127.0.0.1";

    /// <summary>TCP port; 0 picks a free one (read it back from <see cref="OssTestServer.Port"/>).</summary>
    public int Port { get; set; }

    /// <summary>Directory holding the objects; null keeps them in memory.</summary>
    public string? DataDirectory { get; set; }

    /// <summary>Buckets that exist from the start.</summary>
    public IList<string> Buckets { get; } = new List<string>();

    public string AccessKeyId { get; set; } = "test-access-key";
    public string AccessKeySecret { get; set; } = "test-secret-key";

    /// <summary>When set, every request must carry this x-oss-security-token (STS credentials); when null,
    /// none may.</summary>
    public string? SecurityToken { get; set; }

    /// <summary>When set, V4 requests must be scoped to this region; null accepts the region the request names.</summary>
    public string? Region { get; set; }

    /// <summary>Requests dated further than this from the server clock are refused (RequestTimeTooSkewed).</summary>
    public int ClockSkewMaxMinutes { get; set; } = 15;

    /// <summary>Largest object a PUT may store.</summary>
    public long ObjectBytesMax { get; set; } = 1L << 30;

    /// <summary>Called with one line per request (method, path, status, time); null logs nothing.</summary>
    public Action<string>? Log { get; set; }
}
