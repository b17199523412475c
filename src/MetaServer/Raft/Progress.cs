// The leader's view of one follower's replication.
namespace MirrorFS.MetaServer.Raft;

internal enum ProgressState
{
    /// <summary>Finding where the logs agree: one append at a time, resumed by a reply or heartbeat reply.</summary>
    Probe,

    /// <summary>Logs agree: appends are pipelined, up to InflightMessagesMax.</summary>
    Replicate,

    /// <summary>The follower is behind the leader's first index: a snapshot is being streamed to it.</summary>
    Snapshot,
}

internal sealed class Progress(ulong next)
{
    public ulong Match { get; set; }
    public ulong Next { get; set; } = next;
    public ProgressState State { get; set; } = ProgressState.Probe;
    public bool ProbeSent { get; set; }

    /// <summary>Last index of each append in flight, oldest first.</summary>
    public Queue<ulong> Inflight { get; } = new();

    public bool RecentActive { get; set; } = true;

    /// <summary>Highest read-index round this follower confirmed.</summary>
    public ulong ReadAck { get; set; }

    public ulong MatchAtLastHeartbeat { get; set; }

    public SnapshotMeta? SnapshotMeta { get; set; }
    public long SnapshotOffset { get; set; }
    public bool SnapshotAcked { get; set; }

    public void BecomeProbe()
    {
        State = ProgressState.Probe;
        Next = Match + 1;
        ProbeSent = false;
        Inflight.Clear();
        SnapshotMeta = null;
    }

    public void BecomeReplicate()
    {
        State = ProgressState.Replicate;
        Next = Math.Max(Next, Match + 1);
        Inflight.Clear();
        SnapshotMeta = null;
    }
}
