// Mirror-mode settings of a metaserver node, and how mirror refusals look on the wire.
using System.Security.Cryptography;
using System.Text;
using MirrorFS.Core.Meta;
using MirrorFS.Core.Rpc;
using MirrorFS.MetaServer.Engine;

namespace MirrorFS.MetaServer.Mirror;

public sealed record MirrorHostOptions
{
    public required PrimaryUrl Primary { get; init; }

    /// <summary>Token of the primary cluster (else the URL's own).</summary>
    public string? PrimaryToken { get; init; }

    /// <summary>This region's bucket URI.</summary>
    public string MirrorStorage { get; init; } = "";

    /// <summary>How the primary knows this mirror; default: derived from the bucket URI (the same on every node).</summary>
    public string? MirrorId { get; init; }

    /// <summary>How long a read waits for the caller's index before answering "behind".</summary>
    public int ReadWaitMs { get; init; } = 2_000;

    /// <summary>Stream renewal (progress report) period.</summary>
    public int RenewMs { get; init; } = 3_000;

    public MirrorFollowerOptions ToFollowerOptions() => new()
    {
        Primary = Primary,
        PrimaryToken = PrimaryToken,
        MirrorStorage = MirrorStorage,
        MirrorId = MirrorId ?? DefaultMirrorId(MirrorStorage, Primary),
        RenewMs = RenewMs,
    };

    /// <summary>"mirror-" and a hash of the bucket URI: stable across restarts and nodes, and no secret in it.</summary>
    public static string DefaultMirrorId(string mirrorStorage, PrimaryUrl primary)
    {
        var seed = mirrorStorage.Length > 0 ? mirrorStorage : primary.ToString();
        return "mirror-" + Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(seed)))[..12];
    }
}

public static class MirrorErrors
{
    /// <summary>A write on a mirror: FAILED_PRECONDITION naming the primary; a read the mirror could not serve in
    /// time: UNAVAILABLE marked so clients ask the primary rather than another mirror member.</summary>
    public static RpcException? Translate(Exception e) => e switch
    {
        MirrorReadOnlyException ro => new RpcException(StatusCode.FailedPrecondition, ro.Message,
            new RpcMetadata().Add(MetaRpc.PrimaryTrailer, ro.Primary)),
        MirrorBehindException b => new RpcException(StatusCode.Unavailable, b.Message,
            new RpcMetadata().Add(MetaRpc.MirrorBehindTrailer, $"{b.Applied}/{b.Wanted}")),
        _ => null,
    };
}
