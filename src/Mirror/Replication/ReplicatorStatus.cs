// What the replicator publishes about itself: served as /status (JSON) and /metrics, and written to the state dir.
using System.Text.Json;

namespace MirrorFS.Mirror.Replication;

public sealed record ReplicatorStatus
{
    public const string FileName = "status.json";

    public string MirrorId { get; init; } = "";
    public string State { get; init; } = "";
    public string Primary { get; init; } = "";
    public string From { get; init; } = "";
    public string To { get; init; } = "";
    public string Volume { get; init; } = "";
    public ulong PrimaryCommitIndex { get; init; }
    public ulong CopiedThroughIndex { get; init; }
    public ulong DispatchedThroughIndex { get; init; }
    public ulong LagEntries { get; init; }
    public double LagSeconds { get; init; }
    public int BlocksPending { get; init; }
    public long BytesPending { get; init; }
    public double OldestPendingSeconds { get; init; }
    public double CopyRateBytesPerSecond { get; init; }
    public long BlocksCopied { get; init; }
    public long BytesCopied { get; init; }
    public long BlocksAlreadyPresent { get; init; }
    public long BlocksGoneFromSource { get; init; }
    public long BlocksDamagedInSource { get; init; }
    public long BlocksDeleted { get; init; }
    public long EntriesRead { get; init; }
    public long Resyncs { get; init; }
    public long Errors { get; init; }
    public string? LastError { get; init; }
    public long LastErrorUnixMs { get; init; }
    public long LastCheckpointUnixMs { get; init; }
    public ulong LastCheckpointIndex { get; init; }
    public double BlockLagP50Ms { get; init; }
    public double BlockLagP90Ms { get; init; }
    public double BlockLagP99Ms { get; init; }
    public double BlockLagMaxMs { get; init; }
    public int BlockLagSamples { get; init; }
    public long UpdatedUnixMs { get; init; }

    public byte[] ToJson() => JsonSerializer.SerializeToUtf8Bytes(this, Checkpoint.Json);

    public static ReplicatorStatus? FromJson(ReadOnlySpan<byte> json) =>
        JsonSerializer.Deserialize<ReplicatorStatus>(json, Checkpoint.Json);
}
