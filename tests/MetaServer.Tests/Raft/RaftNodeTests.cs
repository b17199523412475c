using MirrorFS.MetaServer.Raft;
using MirrorFS.MetaServer.Storage;

namespace MirrorFS.MetaServer.Tests.Raft;

/// <summary>Scripted scenarios against the Raft core, with messages delivered by hand.</summary>
public class RaftNodeTests
{
    /// <summary>Nodes with a fake disk (what Ready asked to persist) and a hand-driven message queue.</summary>
    private sealed class Harness : ISnapshotSource
    {
        private readonly Dictionary<ulong, (HardState Hard, List<RaftEntry> Log)> _disks = [];
        private readonly ulong[] _voters;
        private readonly int _entriesPerMessage;

        private readonly bool _preVote;

        public Harness(int nodes, int entriesPerMessage = 64, bool preVote = true)
        {
            _preVote = preVote;
            _voters = Enumerable.Range(1, nodes).Select(i => (ulong)i).ToArray();
            _entriesPerMessage = entriesPerMessage;
            foreach (var id in _voters)
            {
                _disks[id] = (default, []);
                Start(id);
            }
        }

        public Dictionary<ulong, RaftNode> Nodes { get; } = [];
        public List<RaftMessage> Queue { get; } = [];
        public Dictionary<ulong, List<RaftEntry>> Applied { get; } = [];
        public Dictionary<ulong, List<ReadState>> Reads { get; } = [];

        public void Start(ulong id)
        {
            var (hard, log) = _disks[id];
            Nodes[id] = new RaftNode(
                new RaftOptions
                {
                    Id = id, Random = new Random((int)id), SnapshotSource = this, EntriesPerMessageMax = _entriesPerMessage,
                    PreVote = _preVote, CheckQuorum = _preVote,
                },
                new RaftStartState(hard, new SnapshotMeta(0, 0, _voters), [.. log], 0));
            Applied[id] = [];
            Reads[id] = [];
            Drain(id);
        }

        public void Crash(ulong id)
        {
            Nodes.Remove(id);
            Queue.RemoveAll(m => m.To == id || m.From == id);
        }

        public void Drain(ulong id)
        {
            var n = Nodes[id];
            while (n.HasReady)
            {
                var rd = n.GetReady();
                var (hard, log) = _disks[id];
                if (rd.Entries.Count > 0)
                {
                    log.RemoveRange((int)rd.Entries[0].Index - 1, log.Count - ((int)rd.Entries[0].Index - 1));
                    log.AddRange(rd.Entries);
                }
                _disks[id] = (rd.HardState ?? hard, log);
                Queue.AddRange(rd.Messages);
                Applied[id].AddRange(rd.CommittedEntries);
                Reads[id].AddRange(rd.ReadStates);
                n.Advance(rd);
            }
        }

        /// <summary>Delivers queued messages (new ones too) matching <paramref name="filter"/>; others stay queued.</summary>
        public void Deliver(Func<RaftMessage, bool>? filter = null)
        {
            for (var round = 0; round < 1000; round++)
            {
                var next = Queue.FindIndex(m => filter is null || filter(m));
                if (next < 0)
                {
                    return;
                }
                var m = Queue[next];
                Queue.RemoveAt(next);
                if (Nodes.TryGetValue(m.To, out var to))
                {
                    to.Step(m);
                    Drain(m.To);
                }
            }
            throw new InvalidOperationException("messages kept flowing after 1000 deliveries");
        }

        /// <summary>Makes <paramref name="id"/> campaign now (as on an election timeout).</summary>
        public void Campaign(ulong id)
        {
            var n = Nodes[id];
            var term = n.Term;
            for (var i = 0; i < 100 && n.Role is RaftRole.Follower or RaftRole.Candidate && n.Term == term; i++)
            {
                n.Tick();
            }
            Drain(id);
        }

        public bool TryRead(ulong index, long offset, int countMax, out ReadOnlyMemory<byte> data, out long totalBytes)
        {
            data = default;
            totalBytes = 0;
            return false;
        }
    }

    private static byte[] Cmd(string s) => System.Text.Encoding.UTF8.GetBytes(s);

    [Fact]
    public void SingleNodeCommitsAfterPersisting()
    {
        var h = new Harness(1);
        h.Campaign(1);
        var n = h.Nodes[1];
        Assert.Equal(RaftRole.Leader, n.Role);
        var index = n.Propose(Cmd("x"));
        Assert.Equal(2UL, index); // after the leader's no-op
        var rd = n.GetReady();
        Assert.Equal(index, rd.Entries[^1].Index);
        Assert.Empty(rd.CommittedEntries); // not applied before it is persisted
        n.Advance(rd);
        rd = n.GetReady();
        Assert.Equal(index, rd.CommittedEntries[^1].Index);
        n.Advance(rd);
    }

    [Fact]
    public void ThreeNodesElectReplicateAndApplyTheSameEntries()
    {
        var h = new Harness(3);
        h.Campaign(1);
        h.Deliver();
        Assert.Equal(RaftRole.Leader, h.Nodes[1].Role);
        for (var i = 0; i < 10; i++)
        {
            Assert.NotEqual(0UL, h.Nodes[1].Propose(Cmd($"c{i}")));
        }
        h.Drain(1);
        h.Deliver();
        h.Nodes[1].Tick(); // a heartbeat carries the final commit index to the followers
        h.Deliver();
        foreach (var id in new ulong[] { 1, 2, 3 })
        {
            Assert.Equal(11, h.Applied[id].Count);
            Assert.Equal(h.Applied[1].Select(e => (e.Index, e.Term)), h.Applied[id].Select(e => (e.Index, e.Term)));
        }
    }

    [Fact]
    public void ReadIndexWaitsForAHeartbeatQuorum()
    {
        var h = new Harness(3);
        h.Campaign(1);
        h.Deliver();
        var leader = h.Nodes[1];
        Assert.True(leader.ReadIndex(42));
        h.Drain(1);
        Assert.Empty(h.Reads[1]);
        // Only one follower answers: with the leader that is a quorum of 3.
        h.Deliver(m => m.To == 2 || (m.From == 2 && m.To == 1));
        var rs = Assert.Single(h.Reads[1]);
        Assert.Equal(42UL, rs.Context);
        Assert.Equal(leader.Commit, rs.Index);
        Assert.False(h.Nodes[2].ReadIndex(43)); // followers do not serve read-index
    }

    [Fact]
    public void IsolatedLeaderStepsDownByCheckQuorumAndItsReadsAreDropped()
    {
        var h = new Harness(3);
        h.Campaign(1);
        h.Deliver();
        var leader = h.Nodes[1];
        Assert.True(leader.ReadIndex(7));
        for (var i = 0; i < 25 && leader.Role == RaftRole.Leader; i++)
        {
            leader.Tick();
            h.Drain(1);
            h.Queue.Clear(); // the leader is cut off
        }
        Assert.Equal(RaftRole.Follower, leader.Role);
        Assert.Empty(h.Reads[1]);
    }

    [Fact]
    public void LeadershipTransferHandsOverWithTimeoutNow()
    {
        var h = new Harness(3);
        h.Campaign(1);
        h.Deliver();
        h.Nodes[1].Propose(Cmd("a"));
        h.Drain(1);
        Assert.True(h.Nodes[1].TransferLeadership(3));
        Assert.Equal(0UL, h.Nodes[1].Propose(Cmd("refused during transfer")));
        h.Drain(1);
        h.Deliver();
        Assert.Equal(RaftRole.Leader, h.Nodes[3].Role);
        Assert.Equal(RaftRole.Follower, h.Nodes[1].Role);
    }

    [Fact]
    public void PreVoteKeepsAPartitionedNodeFromRaisingTheTerm()
    {
        var h = new Harness(3);
        h.Campaign(1);
        h.Deliver();
        var term = h.Nodes[1].Term;
        // Node 3 is cut off and times out repeatedly: its pre-votes never win, so its term stays.
        for (var i = 0; i < 100; i++)
        {
            h.Nodes[3].Tick();
            h.Drain(3);
            h.Queue.RemoveAll(m => m.From == 3 || m.To == 3);
        }
        Assert.Equal(term, h.Nodes[3].Term);
        // Back in touch, its pre-vote is refused by nodes that hear from the leader: no disruption.
        h.Nodes[3].Tick();
        h.Drain(3);
        h.Nodes[1].Tick();
        h.Drain(1);
        h.Deliver();
        Assert.Equal(RaftRole.Leader, h.Nodes[1].Role);
        Assert.Equal(term, h.Nodes[1].Term);
    }

    /// <summary>Raft paper, Figure 8: an entry from an older term replicated on a majority must not be committed by
    /// counting, or a later leader may overwrite it.</summary>
    [Fact]
    public void OldTermEntryOnAMajorityIsNotCommittedByCounting()
    {
        // Without pre-vote and check-quorum, so that the scripted elections need no waiting out of leader leases.
        var h = new Harness(5, entriesPerMessage: 1, preVote: false);
        // (a) S1 leads term 1 and gets its no-op everywhere, then entry 2 only to S2.
        h.Campaign(1);
        h.Deliver();
        h.Nodes[1].Tick();
        h.Deliver();
        var t1 = h.Nodes[1].Term;
        Assert.Equal(2UL, h.Nodes[1].Propose(Cmd("old")));
        h.Drain(1);
        h.Deliver(m => m.To == 2 || m.From == 2);
        Assert.Equal(t1, h.Nodes[2].TermAt(2));
        // (b) S1 crashes; S5 wins with S3, S4 and appends entry 2 of its own term, which goes nowhere.
        h.Crash(1);
        h.Queue.Clear();
        h.Campaign(5);
        h.Deliver(m => m.To != 2 && m.From != 2 && m.Type is not MessageType.Append);
        Assert.Equal(RaftRole.Leader, h.Nodes[5].Role);
        h.Crash(5);
        h.Queue.Clear();
        // (c) S1 restarts and wins with S2, S3; it sends S3 entry 2 (old term) but not yet its new no-op.
        h.Start(1);
        for (var attempt = 0; attempt < 5 && h.Nodes[1].Role != RaftRole.Leader; attempt++)
        {
            h.Campaign(1); // the first attempt may lose to S3's vote for S5 in that term
            h.Deliver(m => m.Type is MessageType.Vote or MessageType.VoteResponse && (m.To is 2 or 3 || m.From is 2 or 3));
            h.Queue.RemoveAll(m => m.Type is MessageType.Vote);
        }
        Assert.Equal(RaftRole.Leader, h.Nodes[1].Role);
        h.Queue.RemoveAll(m => m.To == 4);
        // S2 already holds entry 2: let S1's first append reach it without the no-op (as if sent alone).
        for (var i = 0; i < h.Queue.Count; i++)
        {
            if (h.Queue[i] is { To: 2, Type: MessageType.Append } m)
            {
                h.Queue[i] = m with { Entries = [] };
            }
        }
        // S2 and S3 may reject the no-op while they lack entry 2; once they hold it, the no-op is held back.
        h.Deliver(m => (m.To is 2 or 3 && !(m.Entries.Any(e => e.Index >= 3) && h.Nodes[m.To].TermAt(2) == t1))
            || (m.From is 2 or 3 && m.To == 1));
        Assert.Equal(t1, h.Nodes[3].TermAt(2)); // entry 2 of term 1 is now on S1, S2, S3
        Assert.True(h.Nodes[1].Commit < 2, $"leader committed an old-term entry by counting (commit {h.Nodes[1].Commit})");
    }
}
