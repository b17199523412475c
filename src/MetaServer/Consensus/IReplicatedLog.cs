// The seam between the metadata engine and whatever makes its commands durable: one node's WAL now, Raft later.
namespace MirrorFS.MetaServer.Consensus;

/// <summary>
/// A deterministic state machine fed by a log. <see cref="Apply"/> must use nothing but the state and the command
/// (no clock, randomness or I/O), so every replica that applies the same entries holds the same state.
/// Calls to <see cref="Apply"/>, <see cref="WriteSnapshot"/> and <see cref="RestoreSnapshot"/> are made one at a time.
/// </summary>
public interface IStateMachine
{
    /// <summary>Index of the last applied entry (0 before any).</summary>
    ulong AppliedIndex { get; }

    /// <summary>Applies the entry at <paramref name="index"/> (= AppliedIndex + 1) and returns its encoded reply.</summary>
    byte[] Apply(ulong index, ReadOnlySpan<byte> command);

    /// <summary>Writes the whole state as of <see cref="AppliedIndex"/> to <paramref name="output"/>, streaming.</summary>
    void WriteSnapshot(Stream output);

    /// <summary>Replaces the whole state with a snapshot written by <see cref="WriteSnapshot"/>.</summary>
    void RestoreSnapshot(Stream input);
}

/// <summary>
/// Makes commands durable (and, with Raft, replicated) and applies them in log order to the state machine.
/// </summary>
public interface IReplicatedLog : IAsyncDisposable
{
    /// <summary>Index of the last entry known durable/committed.</summary>
    ulong CommitIndex { get; }

    /// <summary>Index of the last entry applied to the state machine.</summary>
    ulong AppliedIndex { get; }

    /// <summary>Appends <paramref name="command"/>, waits until it is committed (fsynced; with Raft, on a quorum) and
    /// applied, and returns the state machine's reply and the entry's index. Throws <see cref="NotLeaderException"/>
    /// when this node cannot accept writes.</summary>
    Task<(ulong Index, byte[] Reply)> ProposeAsync(ReadOnlyMemory<byte> command, CancellationToken ct = default);

    /// <summary>Completes when this node may serve a linearizable read, i.e. it has applied every entry committed
    /// before the call (read-index or lease). Returns the applied index the read reflects.</summary>
    Task<ulong> ReadBarrierAsync(CancellationToken ct = default);
}

/// <summary>This node is not the leader; <see cref="LeaderHint"/> is the address of the node believed to lead, if known.</summary>
public sealed class NotLeaderException(string? leaderHint)
    : Exception(leaderHint is null ? "not the leader; leader unknown" : $"not the leader; try {leaderHint}")
{
    public string? LeaderHint { get; } = leaderHint;
}
