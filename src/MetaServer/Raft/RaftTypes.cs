// Values exchanged between the pure Raft core (RaftNode) and its host: entries, messages, snapshots and the Ready batch.
using System.Buffers.Binary;
using System.Text;
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
public sealed record SnapshotMeta(ulong Index, ulong Term, IReadOnlyList<ulong> Voters)
{
    /// <summary>Address of each voter, where known (see <see cref="Membership"/>).</summary>
    public IReadOnlyDictionary<ulong, string> Addresses { get; init; } = Membership.NoAddresses;
}

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

    /// <summary>When the commit index advances, tell followers at once with an append even if it carries no entries.
    /// False leaves it to the next append or heartbeat: followers apply a little later, and a lone write costs two
    /// messages per follower instead of four (what matters when each message is an RPC).</summary>
    public bool BroadcastCommit { get; init; } = true;
    public int CommittedEntriesPerReadyMax { get; init; } = 1024;
}

/// <summary>Initial or recovered state of a node: what its disk holds.</summary>
public sealed record RaftStartState(HardState HardState, SnapshotMeta Snapshot, IReadOnlyList<RaftEntry> Entries, ulong Applied)
{
    /// <summary>A brand-new cluster member; <paramref name="voters"/> is the initial configuration (empty for a node
    /// that will be added later and learns the configuration from the leader).</summary>
    public static RaftStartState Fresh(IReadOnlyList<ulong> voters, IReadOnlyDictionary<ulong, string>? addresses = null) =>
        new(default, new SnapshotMeta(0, 0, voters) { Addresses = addresses ?? Membership.NoAddresses }, [], 0);
}

/// <summary>
/// Encoding of the configuration carried by <see cref="EntryKind.ConfChange"/> entries (and snapshot metadata): the
/// voter set and, from version 2 on, each voter's address, so that a member added at run time is reachable by every
/// node and the address survives in the log and in snapshots.
/// </summary>
/// <remarks>Version 1 (still read): the voter ids, u64 little-endian each; never empty, and never starting with id 0.
/// Version 2: u64 0 (a marker no version-1 entry can start with), u8 2, u32 count, then per voter u64 id, u16 address
/// length and the address in UTF-8 (empty when unknown).</remarks>
public static class Membership
{
    private const byte Version2 = 2;

    /// <summary>Longest address accepted in a membership entry.</summary>
    public const int AddressBytesMax = 1024;

    public static readonly IReadOnlyDictionary<ulong, string> NoAddresses = new Dictionary<ulong, string>();

    public static byte[] Encode(IReadOnlyList<ulong> voters, IReadOnlyDictionary<ulong, string>? addresses = null)
    {
        var size = 8 + 1 + 4;
        var encoded = new byte[voters.Count][];
        for (var i = 0; i < voters.Count; i++)
        {
            encoded[i] = addresses is not null && addresses.TryGetValue(voters[i], out var a) ? Encoding.UTF8.GetBytes(a) : [];
            if (encoded[i].Length > AddressBytesMax)
            {
                throw new ArgumentException($"address of node {voters[i]} is {encoded[i].Length} bytes; the limit is {AddressBytesMax}", nameof(addresses));
            }
            size += 8 + 2 + encoded[i].Length;
        }
        var bytes = new byte[size];
        var pos = 8; // bytes [0, 8) stay 0: the version-2 marker
        bytes[pos++] = Version2;
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(pos), (uint)voters.Count);
        pos += 4;
        for (var i = 0; i < voters.Count; i++)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(bytes.AsSpan(pos), voters[i]);
            BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(pos + 8), (ushort)encoded[i].Length);
            encoded[i].CopyTo(bytes.AsSpan(pos + 10));
            pos += 10 + encoded[i].Length;
        }
        return bytes;
    }

    /// <summary>The voter ids of an entry in either version.</summary>
    public static ulong[] Decode(ReadOnlySpan<byte> data) => Decode(data, out _);

    /// <summary>The voter ids of an entry in either version, and the addresses it names (none for version 1).</summary>
    public static ulong[] Decode(ReadOnlySpan<byte> data, out IReadOnlyDictionary<ulong, string> addresses)
    {
        addresses = NoAddresses;
        if (data.Length >= 8 && BinaryPrimitives.ReadUInt64LittleEndian(data) == 0)
        {
            return DecodeVersion2(data, out addresses);
        }
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

    private static ulong[] DecodeVersion2(ReadOnlySpan<byte> data, out IReadOnlyDictionary<ulong, string> addresses)
    {
        if (data.Length < 13 || data[8] != Version2)
        {
            throw new InvalidDataException($"membership entry has version {(data.Length > 8 ? data[8] : 0)}; this build reads versions 1 and 2, upgrade it");
        }
        var count = BinaryPrimitives.ReadUInt32LittleEndian(data[9..]);
        if (count > (uint)(data.Length / 10))
        {
            throw new InvalidDataException($"membership entry claims {count} voters in {data.Length} bytes; the entry is damaged");
        }
        var voters = new ulong[count];
        var map = new Dictionary<ulong, string>((int)count);
        var pos = 13;
        for (var i = 0; i < voters.Length; i++)
        {
            if (pos + 10 > data.Length)
            {
                throw new InvalidDataException($"membership entry ends inside voter {i + 1} of {count}; the entry is damaged");
            }
            voters[i] = BinaryPrimitives.ReadUInt64LittleEndian(data[pos..]);
            int len = BinaryPrimitives.ReadUInt16LittleEndian(data[(pos + 8)..]);
            pos += 10;
            if (pos + len > data.Length)
            {
                throw new InvalidDataException($"membership entry ends inside the address of node {voters[i]}; the entry is damaged");
            }
            if (len > 0)
            {
                map[voters[i]] = Encoding.UTF8.GetString(data.Slice(pos, len));
            }
            pos += len;
        }
        if (pos != data.Length)
        {
            throw new InvalidDataException($"membership entry has {data.Length - pos} bytes after its last voter; the entry is damaged");
        }
        addresses = map;
        return voters;
    }
}
