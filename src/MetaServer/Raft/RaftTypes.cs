// Values exchanged between the pure Raft core (RaftNode) and its host: entries, messages, snapshots and the Ready batch.
using System.Buffers.Binary;
using MirrorFS.MetaServer.Storage;

namespace MirrorFS.MetaServer.Raft;

/// <summary>What an entry carries. Only <see cref="Normal"/> entries hold application commands.</summary>
public enum EntryKind : byte
{
    Normal = 0,
    /// <summary>Appended by a new leader so that it can commit (Raft commits only current-term entries by counting).</summary>
    NoOp = 1,
    /// <summary>The complete new voter set (see <see cref="Membership"/>); takes effect as soon as it is appended.</summary>
    ConfChange = 2,
}

/// <summary>One log entry as the core sees it.</summary>
public readonly record struct RaftEntry(ulong Index, ulong Term, EntryKind Kind, ReadOnlyMemory<byte> Data)
{
    /// <summary>Approximate wire size, used to bound message batches.</summary>
    public int SizeBytes => Data.Length + 24;

    public override string ToString() => $"#{Index}@{Term} {Kind} ({Data.Length} bytes)";
}

public enum MessageType
{
    PreVote,
    PreVoteResponse,
    Vote,
    VoteResponse,
    Append,
    AppendResponse,
    Heartbeat,
    HeartbeatResponse,
    Snapshot,
    SnapshotResponse,
    TimeoutNow,
}

/// <summary>
/// A Raft message. Field use by type: Append — LogIndex/LogTerm are the entry before <see cref="Entries"/>;
/// (Pre)Vote — LogIndex/LogTerm are the candidate's last entry; AppendResponse — LogIndex is the last index known to
/// match (or, with Reject, the rejected LogIndex, with RejectHint/LogTerm a hint where to retry); Heartbeat(Response) —
/// Context is the read-index round being confirmed; SnapshotResponse — LogIndex is the snapshot's index and Context the
/// next byte offset the receiver expects.
/// </summary>
public sealed record RaftMessage
{
    public required MessageType Type { get; init; }
    public required ulong From { get; init; }
    public required ulong To { get; init; }
    public required ulong Term { get; init; }
    public ulong LogIndex { get; init; }
    public ulong LogTerm { get; init; }
    public IReadOnlyList<RaftEntry> Entries { get; init; } = [];
    public ulong Commit { get; init; }
    public bool Reject { get; init; }
    public ulong RejectHint { get; init; }
    public ulong Context { get; init; }

    /// <summary>A vote requested after TimeoutNow: receivers grant it even while they still hear from a leader.</summary>
    public bool Transfer { get; init; }

    public SnapshotChunk? Snapshot { get; init; }

    public override string ToString() =>
        $"{Type} {From}->{To} t{Term} idx{LogIndex} lt{LogTerm} n{Entries.Count} c{Commit}{(Reject ? " reject" : "")} ctx{Context}";
}

/// <summary>What a snapshot covers: every entry up to <see cref="Index"/> (of <see cref="Term"/>), and the voters then.</summary>
public sealed record SnapshotMeta(ulong Index, ulong Term, IReadOnlyList<ulong> Voters);

/// <summary>A piece of a snapshot being sent: bytes [Offset, Offset + Data.Length) of the snapshot body.</summary>
public sealed record SnapshotChunk(SnapshotMeta Meta, long Offset, ReadOnlyMemory<byte> Data, bool Last);

/// <summary>A linearizable read confirmed: once the host has applied <see cref="Index"/>, the read <see cref="Context"/>
/// may be served from the state machine.</summary>
public readonly record struct ReadState(ulong Context, ulong Index);

public enum RaftRole
{
    Follower,
    PreCandidate,
    Candidate,
    Leader,
}

/// <summary>Where a leader reads snapshot bodies to send to followers that are behind its first log index.</summary>
public interface ISnapshotSource
{
    /// <summary>Copies up to <paramref name="countMax"/> bytes of the snapshot at <paramref name="index"/> from
    /// <paramref name="offset"/>; false when that snapshot is no longer available (the transfer then restarts with the
    /// newest one).</summary>
    bool TryRead(ulong index, long offset, int countMax, out ReadOnlyMemory<byte> data, out long totalBytes);
}

/// <summary>
/// The work the host must do, in this order: write <see cref="SnapshotChunks"/> (offset 0 starts a new snapshot);
/// if <see cref="Snapshot"/> is set, install the snapshot those chunks form (restore the state machine, drop the whole
/// log); persist <see cref="Entries"/> (first truncate the log from Entries[0].Index); persist <see cref="HardState"/>;
/// only then send <see cref="Messages"/>; apply <see cref="CommittedEntries"/>; serve <see cref="ReadStates"/>; then
/// call <see cref="RaftNode.Advance"/> before any other input to the node.
/// </summary>
public sealed class RaftReady
{
    public HardState? HardState { get; init; }
    public IReadOnlyList<SnapshotChunk> SnapshotChunks { get; init; } = [];
    public SnapshotMeta? Snapshot { get; init; }
    public IReadOnlyList<RaftEntry> Entries { get; init; } = [];
    public IReadOnlyList<RaftMessage> Messages { get; init; } = [];
    public IReadOnlyList<RaftEntry> CommittedEntries { get; init; } = [];
    public IReadOnlyList<ReadState> ReadStates { get; init; } = [];

    /// <summary>Read contexts that will never be confirmed (leadership lost): fail them now rather than time out.</summary>
    public IReadOnlyList<ulong> DroppedReads { get; init; } = [];

    public RaftRole Role { get; init; }
    public ulong Leader { get; init; }
    public ulong Term { get; init; }
}

/// <summary>Tuning and wiring of a <see cref="RaftNode"/>. Times are in ticks of the host's clock.</summary>
public sealed class RaftOptions
{
    public required ulong Id { get; init; }

    /// <summary>Seeded by the host: the only source of randomness (the election timeout), so runs replay exactly.</summary>
    public required Random Random { get; init; }

    public ISnapshotSource? SnapshotSource { get; init; }

    /// <summary>A follower campaigns after a random timeout in [ElectionTicks, 2 * ElectionTicks); a leader steps down
    /// after ElectionTicks without hearing from a quorum (check-quorum).</summary>
    public int ElectionTicks { get; init; } = 10;

    public int HeartbeatTicks { get; init; } = 1;
    public bool PreVote { get; init; } = true;
    public bool CheckQuorum { get; init; } = true;
    public int EntriesPerMessageMax { get; init; } = 256;
    public int BytesPerMessageMax { get; init; } = 1 << 20;

    /// <summary>Append messages a leader pipelines to one follower before waiting for acknowledgements.</summary>
    public int InflightMessagesMax { get; init; } = 64;

    public int SnapshotChunkBytesMax { get; init; } = 1 << 20;

    /// <summary>Proposals are refused while this many entries are appended but not committed.</summary>
    public int UncommittedEntriesMax { get; init; } = 10_000;

    public int PendingReadsMax { get; init; } = 4096;
    public int CommittedEntriesPerReadyMax { get; init; } = 1024;
}

/// <summary>Initial or recovered state of a node: what its disk holds.</summary>
public sealed record RaftStartState(HardState HardState, SnapshotMeta Snapshot, IReadOnlyList<RaftEntry> Entries, ulong Applied)
{
    /// <summary>A brand-new cluster member; <paramref name="voters"/> is the initial configuration (empty for a node
    /// that will be added later and learns the configuration from the leader).</summary>
    public static RaftStartState Fresh(IReadOnlyList<ulong> voters) => new(default, new SnapshotMeta(0, 0, voters), [], 0);
}

/// <summary>Encoding of the voter set carried by <see cref="EntryKind.ConfChange"/> entries.</summary>
public static class Membership
{
    public static byte[] Encode(IReadOnlyList<ulong> voters)
    {
        var bytes = new byte[voters.Count * 8];
        for (var i = 0; i < voters.Count; i++)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(bytes.AsSpan(i * 8), voters[i]);
        }
        return bytes;
    }

    public static ulong[] Decode(ReadOnlySpan<byte> data)
    {
        if (data.Length % 8 != 0)
        {
            throw new InvalidDataException($"membership entry of {data.Length} bytes is not a whole number of node ids");
        }
        var voters = new ulong[data.Length / 8];
        for (var i = 0; i < voters.Length; i++)
        {
            voters[i] = BinaryPrimitives.ReadUInt64LittleEndian(data[(i * 8)..]);
        }
        return voters;
    }
}
