namespace MirrorFS.Core.Rpc;

/// <summary>Per-call settings for <see cref="RpcChannel"/>. When both a deadline and a timeout are given the
/// earlier one wins; with neither, unary calls use the channel's default timeout and streams have none.</summary>
public readonly record struct CallOptions
{
    /// <summary>Absolute deadline (UTC).</summary>
    public DateTime? Deadline { get; init; }

    /// <summary>Deadline relative to the start of the call.</summary>
    public int? TimeoutMs { get; init; }

    public CancellationToken CancellationToken { get; init; }

    /// <summary>Custom request metadata sent as headers.</summary>
    public RpcMetadata? Metadata { get; init; }
}
