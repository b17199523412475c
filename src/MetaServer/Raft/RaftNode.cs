using MirrorFS.MetaServer.Storage;

namespace MirrorFS.MetaServer.Raft;

/// <summary>How a membership entry changes the voter set (one server at a time).</summary>
public enum ConfChangeType
{
    AddVoter,
    RemoveVoter,
}

/// <summary>
/// The Raft consensus core of one node: a pure state machine with no clock, threads, sockets or files. The host feeds
/// it <see cref="Tick"/>, <see cref="Step"/> and proposals, then drains <see cref="GetReady"/> (persist, send, apply)
/// and calls <see cref="Advance"/>. Implements pre-vote, check-quorum with leader stickiness, pipelined batched
/// replication, read-index reads, chunked snapshots, single-server membership changes and leadership transfer.
/// The log after the last snapshot is kept in memory, so the host compacts (<see cref="Compact"/>) to bound it.
/// </summary>
public sealed class RaftNode
{
    private readonly RaftOptions _opt;
    private readonly Random _rng;

    // Log: entries after the snapshot point; _log[k].Index == _snapIndex + 1 + k.
    private readonly List<RaftEntry> _log = [];
    private readonly List<(ulong Index, ulong[] Voters, IReadOnlyDictionary<ulong, string> Addresses)> _confs = []; // membership entries still in _log
    private ulong _snapIndex;
    private ulong _snapTerm;
    private ulong[] _snapVoters;
    private IReadOnlyDictionary<ulong, string> _snapAddresses;
    private ulong _unstableFrom; // first index not yet handed to the host for persisting
    private ulong _persisted; // last index the host has persisted
    private ulong _applied;

    private int _electionElapsed;
    private int _heartbeatElapsed;
    private int _randomizedTimeout;
    private readonly Dictionary<ulong, bool> _votes = [];
    private readonly Dictionary<ulong, Progress> _progress = [];
    private ulong _transferee;
    private int _transferElapsed;

    private ulong _readSeq;
    private readonly Queue<(ulong Ctx, ulong Index, ulong Seq)> _pendingReads = new();
    private readonly List<ulong> _readsAwaitingCommit = [];
    private List<ReadState> _readStates = [];
    private List<ulong> _droppedReads = [];

    private List<RaftMessage> _msgs = [];
    private HardState _prevHard;

    // Snapshot being received from the leader.
    private SnapshotMeta? _recvMeta;
    private long _recvOffset;
    private List<SnapshotChunk> _recvChunks = [];
    private SnapshotMeta? _pendingInstall;

    public RaftNode(RaftOptions options, RaftStartState start)
    {
        _opt = options;
        _rng = options.Random;
        Id = options.Id;
        if (Id == 0)
        {
            throw new ArgumentException("Raft node id 0 is reserved for \"none\"; give every node a non-zero id", nameof(options));
        }
        _snapIndex = start.Snapshot.Index;
        _snapTerm = start.Snapshot.Term;
        _snapVoters = [.. start.Snapshot.Voters];
        _snapAddresses = start.Snapshot.Addresses;
        foreach (var e in start.Entries)
        {
            if (e.Index != LastIndex + 1)
            {
                throw new ArgumentException($"recovered Raft log is not contiguous: entry {e.Index} follows {LastIndex}; repair or rebuild this node's log", nameof(start));
            }
            AppendToLog(e);
        }
        Term = start.HardState.Term;
        VotedFor = start.HardState.VotedFor;
        // A commit index beyond the recovered log (torn tail) is only a hint: lowering it is safe, it is re-learned.
        Commit = Math.Min(Math.Max(start.HardState.Commit, _snapIndex), LastIndex);
        _applied = Math.Min(Math.Max(start.Applied, _snapIndex), Commit);
        _persisted = LastIndex;
        _unstableFrom = LastIndex + 1;
        _prevHard = start.HardState;
        BecomeFollower(Term, 0);
    }

    public ulong Id { get; }
    public ulong Term { get; private set; }
    public ulong VotedFor { get; private set; }
    public ulong Commit { get; private set; }
    public ulong Leader { get; private set; }
    public RaftRole Role { get; private set; }
    public ulong Applied => _applied;
    public ulong FirstIndex => _snapIndex + 1;
    public ulong LastIndex => _snapIndex + (ulong)_log.Count;
    public ulong LastTerm => _log.Count > 0 ? _log[^1].Term : _snapTerm;
    public ulong SnapshotIndex => _snapIndex;

    /// <summary>What the latest compaction (or installed snapshot) covers.</summary>
    public SnapshotMeta Snapshot => new(_snapIndex, _snapTerm, _snapVoters) { Addresses = _snapAddresses };

    /// <summary>The voter set in effect: the newest membership entry in the log, else the snapshot's.</summary>
    public IReadOnlyList<ulong> Voters => _confs.Count > 0 ? _confs[^1].Voters : _snapVoters;

    /// <summary>Voters' addresses as the configuration in effect names them (the same instance until it changes).</summary>
    public IReadOnlyDictionary<ulong, string> Addresses => _confs.Count > 0 ? _confs[^1].Addresses : _snapAddresses;

    /// <summary>On a leader, the highest index known replicated on <paramref name="node"/>; null elsewhere.</summary>
    public ulong? MatchOf(ulong node) =>
        Role != RaftRole.Leader ? null : node == Id ? _persisted : _progress.TryGetValue(node, out var p) ? p.Match : null;

    public ulong Transferee => _transferee;

    private int Quorum => (Voters.Count / 2) + 1;
    private bool Promotable => Voters.Contains(Id);

    /// <summary>The term of entry <paramref name="index"/>, or null when compacted away or beyond the log.</summary>
    public ulong? TermAt(ulong index)
    {
        if (index == _snapIndex)
        {
            return _snapTerm;
        }
        if (index < _snapIndex || index > LastIndex)
        {
            return null;
        }
        return _log[(int)(index - _snapIndex - 1)].Term;
    }

    /// <summary>Entries [lo, hi] still in memory (for tests and the host's checks).</summary>
    public IReadOnlyList<RaftEntry> EntriesBetween(ulong lo, ulong hi)
    {
        lo = Math.Max(lo, FirstIndex);
        hi = Math.Min(hi, LastIndex);
        return lo > hi ? [] : _log.GetRange((int)(lo - _snapIndex - 1), (int)(hi - lo + 1));
    }

    private RaftEntry EntryAt(ulong index) => _log[(int)(index - _snapIndex - 1)];

    // ---------------------------------------------------------------- inputs

    /// <summary>Advances the logical clock by one tick.</summary>
    public void Tick()
    {
        if (Role == RaftRole.Leader)
        {
            TickLeader();
            return;
        }
        _electionElapsed++;
        if (Promotable && _electionElapsed >= _randomizedTimeout)
        {
            _electionElapsed = 0;
            if (_opt.PreVote)
            {
                CampaignPre();
            }
            else
            {
                Campaign(transfer: false);
            }
        }
    }

    /// <summary>Proposes a command; returns the index it was appended at, or 0 when refused (not the leader, a
    /// leadership transfer in progress, or too many uncommitted entries).</summary>
    public ulong Propose(ReadOnlyMemory<byte> data)
    {
        if (!CanPropose())
        {
            return 0;
        }
        return AppendAsLeader(EntryKind.Normal, data);
    }

    /// <summary>Proposes adding or removing one voter; returns the entry's index, or 0 when refused (not the leader,
    /// no entry of this term committed yet, another change still uncommitted, or the change is a no-op/empties the
    /// cluster).</summary>
    public ulong ProposeConfChange(ConfChangeType type, ulong node, string? address = null)
    {
        if (ConfChangeRefusal(type, node, address) is not null)
        {
            return 0;
        }
        var voters = Voters.ToList();
        var addresses = Addresses.Where(a => a.Key != node).ToDictionary();
        if (type == ConfChangeType.AddVoter)
        {
            if (!voters.Contains(node))
            {
                voters.Add(node);
            }
            if (!string.IsNullOrEmpty(address))
            {
                addresses[node] = address; // adding a voter again with a new address moves it
            }
        }
        else
        {
            voters.Remove(node);
        }
        voters.Sort();
        return AppendAsLeader(EntryKind.ConfChange, Membership.Encode(voters, addresses));
    }

    /// <summary>Why <see cref="ProposeConfChange"/> would refuse this change now, or null when it would accept it.</summary>
    public string? ConfChangeRefusal(ConfChangeType type, ulong node, string? address)
    {
        if (Role != RaftRole.Leader)
        {
            return "this node is not the leader";
        }
        if (!CanPropose())
        {
            return _transferee != 0 ? "a leadership transfer is in progress" : "too many entries are waiting to commit";
        }
        if (node == 0)
        {
            return "node id 0 is reserved";
        }
        if (!CommittedInCurrentTerm())
        {
            return "the new leader has not committed an entry of its term yet";
        }
        if (_confs.Count > 0 && _confs[^1].Index > Commit)
        {
            return "another membership change is not committed yet";
        }
        var member = Voters.Contains(node);
        if (type == ConfChangeType.AddVoter)
        {
            if (member && (string.IsNullOrEmpty(address) || (Addresses.TryGetValue(node, out var had) && had == address)))
            {
                return $"node {node} is already a member";
            }
        }
        else if (!member)
        {
            return $"node {node} is not a member";
        }
        else if (Voters.Count == 1)
        {
            return $"node {node} is the only member";
        }
        return null;
    }

    /// <summary>Starts a linearizable read: a <see cref="ReadState"/> with <paramref name="context"/> appears in a later
    /// Ready once leadership is confirmed by a quorum. False when this node is not the leader or too many reads wait.</summary>
    public bool ReadIndex(ulong context)
    {
        if (Role != RaftRole.Leader || _pendingReads.Count + _readsAwaitingCommit.Count >= _opt.PendingReadsMax)
        {
            return false;
        }
        if (!CommittedInCurrentTerm())
        {
            // The commit index of a new leader may be stale until its no-op commits.
            _readsAwaitingCommit.Add(context);
            return true;
        }
        StartRead(context);
        return true;
    }

    /// <summary>Hands leadership to <paramref name="to"/>: brings it up to date, then tells it to campaign at once.
    /// Proposals are refused meanwhile; the attempt is abandoned after an election timeout.</summary>
    public bool TransferLeadership(ulong to)
    {
        if (Role != RaftRole.Leader || to == Id || !_progress.TryGetValue(to, out var pr) || !Voters.Contains(to))
        {
            return false;
        }
        _transferee = to;
        _transferElapsed = 0;
        if (pr.Match == LastIndex)
        {
            Send(new RaftMessage { Type = MessageType.TimeoutNow, From = Id, To = to, Term = Term });
        }
        else
        {
            SendAppend(to, pr, sendIfEmpty: false);
        }
        return true;
    }

    /// <summary>The host saved a snapshot of the state machine at <paramref name="index"/> (≤ applied): entries up
    /// to it are dropped from memory, and followers behind it will be sent that snapshot.</summary>
    public void Compact(ulong index)
    {
        if (index <= _snapIndex)
        {
            return;
        }
        if (index > _applied)
        {
            throw new ArgumentOutOfRangeException(nameof(index), $"cannot compact the Raft log to {index}: only {_applied} is applied; snapshot at or below the applied index");
        }
        var term = TermAt(index)!.Value;
        var (voters, addresses) = ConfAt(index);
        _log.RemoveRange(0, (int)(index - _snapIndex));
        _confs.RemoveAll(c => c.Index <= index);
        _snapIndex = index;
        _snapTerm = term;
        _snapVoters = voters;
        _snapAddresses = addresses;
    }

    private (ulong[] Voters, IReadOnlyDictionary<ulong, string> Addresses) ConfAt(ulong index)
    {
        for (var i = _confs.Count - 1; i >= 0; i--)
        {
            if (_confs[i].Index <= index)
            {
                return (_confs[i].Voters, _confs[i].Addresses);
            }
        }
        return (_snapVoters, _snapAddresses);
    }

    /// <summary>Processes one message from a peer.</summary>
    public void Step(RaftMessage m)
    {
        if (m.To != Id)
        {
            return;
        }
        if (m.Term > Term)
        {
            var isVote = m.Type is MessageType.PreVote or MessageType.Vote;
            if (isVote && !m.Transfer && _opt.CheckQuorum && Leader != 0 && _electionElapsed < _opt.ElectionTicks)
            {
                // Leader stickiness: we heard from a leader recently, so this candidate must not disrupt it.
                return;
            }
            if (m.Type == MessageType.PreVote || (m.Type == MessageType.PreVoteResponse && !m.Reject))
            {
                // A pre-vote is about a future term: it changes no one's term.
            }
            else
            {
                var fromLeader = m.Type is MessageType.Append or MessageType.Heartbeat or MessageType.Snapshot;
                BecomeFollower(m.Term, fromLeader ? m.From : 0);
            }
        }
        else if (m.Term < Term)
        {
            if ((_opt.CheckQuorum || _opt.PreVote) && m.Type is MessageType.Append or MessageType.Heartbeat)
            {
                // Tell a stale leader about the newer term so it steps down.
                Send(new RaftMessage { Type = MessageType.AppendResponse, From = Id, To = m.From, Term = Term });
            }
            else if (m.Type == MessageType.PreVote)
            {
                Send(new RaftMessage { Type = MessageType.PreVoteResponse, From = Id, To = m.From, Term = Term, Reject = true });
            }
            return;
        }

        switch (m.Type)
        {
            case MessageType.PreVote:
            case MessageType.Vote:
                HandleVoteRequest(m);
                return;
        }

        switch (Role)
        {
            case RaftRole.Leader:
                StepLeader(m);
                break;
            case RaftRole.PreCandidate:
            case RaftRole.Candidate:
                StepCandidate(m);
                break;
            default:
                StepFollower(m);
                break;
        }
    }

    // ---------------------------------------------------------------- Ready / Advance

    private HardState CurrentHard => new(Term, VotedFor, Commit);

    /// <summary>True when <see cref="GetReady"/> has work for the host.</summary>
    public bool HasReady =>
        _msgs.Count > 0 || _recvChunks.Count > 0 || _pendingInstall is not null || _unstableFrom <= LastIndex
        || CurrentHard != _prevHard || _readStates.Count > 0 || _droppedReads.Count > 0
        || _applied < Math.Min(Commit, _persisted);

    /// <summary>Takes the pending work; see <see cref="RaftReady"/> for the order the host must follow.</summary>
    public RaftReady GetReady()
    {
        var hard = CurrentHard;
        var applyTo = Math.Min(Commit, _persisted);
        var committed = new List<RaftEntry>();
        for (var i = _applied + 1; i <= applyTo && committed.Count < _opt.CommittedEntriesPerReadyMax; i++)
        {
            committed.Add(EntryAt(i));
        }
        var ready = new RaftReady
        {
            HardState = hard != _prevHard ? hard : null,
            SnapshotChunks = _recvChunks,
            Snapshot = _pendingInstall,
            Entries = _unstableFrom <= LastIndex ? EntriesBetween(_unstableFrom, LastIndex) : [],
            Messages = _msgs,
            CommittedEntries = committed,
            ReadStates = _readStates,
            DroppedReads = _droppedReads,
            Role = Role,
            Leader = Leader,
            Term = Term,
        };
        _recvChunks = [];
        _msgs = [];
        _readStates = [];
        _droppedReads = [];
        return ready;
    }

    /// <summary>The host has done everything <paramref name="ready"/> asked.</summary>
    public void Advance(RaftReady ready)
    {
        if (ready.HardState is { } hs)
        {
            _prevHard = hs;
        }
        if (ready.Snapshot is not null)
        {
            _pendingInstall = null;
        }
        if (ready.Entries.Count > 0)
        {
            var last = ready.Entries[^1].Index;
            _persisted = Math.Max(_persisted, last);
            _unstableFrom = Math.Max(_unstableFrom, last + 1);
        }
        if (ready.CommittedEntries.Count > 0)
        {
            _applied = Math.Max(_applied, ready.CommittedEntries[^1].Index);
        }
        if (Role == RaftRole.Leader && MaybeCommit())
        {
            BroadcastAppend(sendIfEmpty: _opt.BroadcastCommit);
        }
    }

    // ---------------------------------------------------------------- roles

    private void ResetTimers()
    {
        _electionElapsed = 0;
        _heartbeatElapsed = 0;
        _randomizedTimeout = _opt.ElectionTicks + _rng.Next(_opt.ElectionTicks);
    }

    private void BecomeFollower(ulong term, ulong leader)
    {
        if (term != Term)
        {
            Term = term;
            VotedFor = 0;
        }
        Role = RaftRole.Follower;
        Leader = leader;
        ResetTimers();
        _progress.Clear();
        _votes.Clear();
        _transferee = 0;
        DropReads();
    }

    private void DropReads()
    {
        foreach (var r in _pendingReads)
        {
            _droppedReads.Add(r.Ctx);
        }
        _droppedReads.AddRange(_readsAwaitingCommit);
        _pendingReads.Clear();
        _readsAwaitingCommit.Clear();
    }

    private void CampaignPre()
    {
        Role = RaftRole.PreCandidate;
        Leader = 0;
        _votes.Clear();
        ResetTimers();
        _votes[Id] = true;
        if (_votes.Count(v => v.Value) >= Quorum)
        {
            Campaign(transfer: false);
            return;
        }
        foreach (var v in Voters)
        {
            if (v != Id)
            {
                Send(new RaftMessage { Type = MessageType.PreVote, From = Id, To = v, Term = Term + 1, LogIndex = LastIndex, LogTerm = LastTerm });
            }
        }
    }

    private void Campaign(bool transfer)
    {
        Term++;
        VotedFor = Id;
        Role = RaftRole.Candidate;
        Leader = 0;
        _votes.Clear();
        ResetTimers();
        _votes[Id] = true;
        if (_votes.Count(v => v.Value) >= Quorum)
        {
            BecomeLeader();
            return;
        }
        foreach (var v in Voters)
        {
            if (v != Id)
            {
                Send(new RaftMessage { Type = MessageType.Vote, From = Id, To = v, Term = Term, LogIndex = LastIndex, LogTerm = LastTerm, Transfer = transfer });
            }
        }
    }

    private void BecomeLeader()
    {
        Role = RaftRole.Leader;
        Leader = Id;
        ResetTimers();
        _votes.Clear();
        _progress.Clear();
        foreach (var v in Voters)
        {
            if (v != Id)
            {
                _progress[v] = new Progress(LastIndex + 1);
            }
        }
        AppendAsLeader(EntryKind.NoOp, ReadOnlyMemory<byte>.Empty);
    }

    private void HandleVoteRequest(RaftMessage m)
    {
        var pre = m.Type == MessageType.PreVote;
        var canVote = VotedFor == m.From || (VotedFor == 0 && Leader == 0) || (pre && m.Term > Term);
        var upToDate = m.LogTerm > LastTerm || (m.LogTerm == LastTerm && m.LogIndex >= LastIndex);
        var type = pre ? MessageType.PreVoteResponse : MessageType.VoteResponse;
        if (canVote && upToDate)
        {
            Send(new RaftMessage { Type = type, From = Id, To = m.From, Term = m.Term });
            if (!pre)
            {
                _electionElapsed = 0;
                VotedFor = m.From;
            }
        }
        else
        {
            Send(new RaftMessage { Type = type, From = Id, To = m.From, Term = Term, Reject = true });
        }
    }

    private void StepCandidate(RaftMessage m)
    {
        switch (m.Type)
        {
            case MessageType.Append:
            case MessageType.Heartbeat:
            case MessageType.Snapshot:
                BecomeFollower(m.Term, m.From);
                StepFollower(m);
                return;
            case MessageType.PreVoteResponse when Role == RaftRole.PreCandidate:
            case MessageType.VoteResponse when Role == RaftRole.Candidate:
                if (Role == RaftRole.PreCandidate && !m.Reject && m.Term != Term + 1)
                {
                    return;
                }
                if (!Voters.Contains(m.From))
                {
                    return;
                }
                _votes.TryAdd(m.From, !m.Reject);
                var granted = _votes.Count(v => v.Value);
                var rejected = _votes.Count - granted;
                if (granted >= Quorum)
                {
                    if (Role == RaftRole.PreCandidate)
                    {
                        Campaign(transfer: false);
                    }
                    else
                    {
                        BecomeLeader();
                    }
                }
                else if (rejected >= Quorum)
                {
                    BecomeFollower(Term, 0);
                }
                return;
        }
    }

    private void StepFollower(RaftMessage m)
    {
        switch (m.Type)
        {
            case MessageType.Append:
                _electionElapsed = 0;
                Leader = m.From;
                HandleAppend(m);
                return;
            case MessageType.Heartbeat:
                _electionElapsed = 0;
                Leader = m.From;
                Commit = Math.Max(Commit, Math.Min(m.Commit, LastIndex));
                Send(new RaftMessage { Type = MessageType.HeartbeatResponse, From = Id, To = m.From, Term = Term, Context = m.Context });
                return;
            case MessageType.Snapshot:
                _electionElapsed = 0;
                Leader = m.From;
                HandleSnapshot(m);
                return;
            case MessageType.TimeoutNow:
                if (Promotable)
                {
                    Campaign(transfer: true);
                }
                return;
        }
    }

    private void HandleAppend(RaftMessage m)
    {
        if (m.LogIndex < Commit)
        {
            Send(new RaftMessage { Type = MessageType.AppendResponse, From = Id, To = m.From, Term = Term, LogIndex = Commit });
            return;
        }
        if (TermAt(m.LogIndex) == m.LogTerm)
        {
            var lastNew = m.LogIndex + (ulong)m.Entries.Count;
            foreach (var e in m.Entries)
            {
                var have = TermAt(e.Index);
                if (have == e.Term)
                {
                    continue;
                }
                if (have is not null)
                {
                    if (e.Index <= Commit)
                    {
                        throw new InvalidOperationException($"Raft safety violated on node {Id}: leader {m.From} (term {m.Term}) conflicts with committed entry {e.Index}");
                    }
                    TruncateFrom(e.Index);
                }
                AppendToLog(e);
            }
            Commit = Math.Max(Commit, Math.Min(m.Commit, lastNew));
            Send(new RaftMessage { Type = MessageType.AppendResponse, From = Id, To = m.From, Term = Term, LogIndex = lastNew });
            return;
        }
        // Hint: the last index whose term is at most the leader's term at LogIndex, so the leader can skip a whole
        // conflicting term in one round trip.
        var hint = Math.Min(m.LogIndex, LastIndex);
        while (hint > _snapIndex && TermAt(hint) > m.LogTerm)
        {
            hint--;
        }
        Send(new RaftMessage
        {
            Type = MessageType.AppendResponse, From = Id, To = m.From, Term = Term, Reject = true,
            LogIndex = m.LogIndex, RejectHint = hint, LogTerm = TermAt(hint) ?? 0,
        });
    }

    private void HandleSnapshot(RaftMessage m)
    {
        var c = m.Snapshot!;
        if (_pendingInstall is not null)
        {
            return; // one install per Ready; the leader resends
        }
        if (c.Meta.Index <= Commit)
        {
            _recvMeta = null;
            Send(new RaftMessage { Type = MessageType.AppendResponse, From = Id, To = m.From, Term = Term, LogIndex = Commit });
            return;
        }
        if (c.Offset == 0)
        {
            _recvMeta = c.Meta;
            _recvOffset = 0;
        }
        if (_recvMeta is null || _recvMeta.Index != c.Meta.Index || _recvMeta.Term != c.Meta.Term || c.Offset != _recvOffset)
        {
            var expect = _recvMeta is not null && _recvMeta.Index == c.Meta.Index && _recvMeta.Term == c.Meta.Term ? _recvOffset : 0;
            Send(new RaftMessage { Type = MessageType.SnapshotResponse, From = Id, To = m.From, Term = Term, Reject = true, LogIndex = c.Meta.Index, Context = (ulong)expect });
            return;
        }
        _recvChunks.Add(c);
        _recvOffset += c.Data.Length;
        if (!c.Last)
        {
            Send(new RaftMessage { Type = MessageType.SnapshotResponse, From = Id, To = m.From, Term = Term, LogIndex = c.Meta.Index, Context = (ulong)_recvOffset });
            return;
        }
        _recvMeta = null;
        if (TermAt(c.Meta.Index) == c.Meta.Term)
        {
            // Our log already holds the snapshot's last entry: everything up to it matches, just commit it.
            Commit = c.Meta.Index;
        }
        else
        {
            _log.Clear();
            _confs.Clear();
            _snapIndex = c.Meta.Index;
            _snapTerm = c.Meta.Term;
            _snapVoters = [.. c.Meta.Voters];
            _snapAddresses = c.Meta.Addresses;
            Commit = _snapIndex;
            _applied = _snapIndex;
            _persisted = _snapIndex;
            _unstableFrom = _snapIndex + 1;
            _pendingInstall = c.Meta;
        }
        Send(new RaftMessage { Type = MessageType.AppendResponse, From = Id, To = m.From, Term = Term, LogIndex = c.Meta.Index });
    }

    // ---------------------------------------------------------------- leader

    private bool CanPropose() =>
        Role == RaftRole.Leader && _transferee == 0 && LastIndex - Commit < (ulong)_opt.UncommittedEntriesMax;

    private bool CommittedInCurrentTerm() => TermAt(Commit) == Term;

    private ulong AppendAsLeader(EntryKind kind, ReadOnlyMemory<byte> data)
    {
        var e = new RaftEntry(LastIndex + 1, Term, kind, data);
        AppendToLog(e);
        if (kind == EntryKind.ConfChange)
        {
            SyncProgressWithVoters();
        }
        BroadcastAppend(sendIfEmpty: false);
        return e.Index;
    }

    private void SyncProgressWithVoters()
    {
        var voters = Voters;
        foreach (var id in _progress.Keys.ToList())
        {
            if (!voters.Contains(id))
            {
                _progress.Remove(id);
            }
        }
        foreach (var v in voters)
        {
            if (v != Id && !_progress.ContainsKey(v))
            {
                _progress[v] = new Progress(LastIndex);
            }
        }
    }

    private void TickLeader()
    {
        _heartbeatElapsed++;
        _electionElapsed++;
        if (_electionElapsed >= _opt.ElectionTicks)
        {
            _electionElapsed = 0;
            if (_opt.CheckQuorum)
            {
                var active = (Promotable ? 1 : 0) + Voters.Count(v => v != Id && _progress.TryGetValue(v, out var p) && p.RecentActive);
                if (active < Quorum)
                {
                    BecomeFollower(Term, 0);
                    return;
                }
                foreach (var p in _progress.Values)
                {
                    p.RecentActive = false;
                }
            }
        }
        if (_transferee != 0 && ++_transferElapsed >= _opt.ElectionTicks)
        {
            _transferee = 0;
        }
        if (_heartbeatElapsed >= _opt.HeartbeatTicks)
        {
            _heartbeatElapsed = 0;
            foreach (var (id, pr) in _progress)
            {
                // Retransmission: a pipelined stream that made no progress for a heartbeat interval lost a message.
                if (pr.State == ProgressState.Replicate && pr.Inflight.Count > 0 && pr.Match == pr.MatchAtLastHeartbeat)
                {
                    pr.BecomeProbe();
                }
                pr.MatchAtLastHeartbeat = pr.Match;
                if (pr.State == ProgressState.Snapshot && !pr.SnapshotAcked)
                {
                    SendSnapshotChunk(id, pr);
                }
                pr.SnapshotAcked = false;
            }
            BroadcastHeartbeat(_readSeq);
        }
    }

    private void BroadcastHeartbeat(ulong context)
    {
        foreach (var (id, pr) in _progress)
        {
            Send(new RaftMessage { Type = MessageType.Heartbeat, From = Id, To = id, Term = Term, Commit = Math.Min(pr.Match, Commit), Context = context });
        }
    }

    private void BroadcastAppend(bool sendIfEmpty)
    {
        foreach (var (id, pr) in _progress)
        {
            SendAppend(id, pr, sendIfEmpty);
        }
    }

    private void SendAppend(ulong to, Progress pr, bool sendIfEmpty)
    {
        if (pr.State == ProgressState.Snapshot || (pr.State == ProgressState.Probe && pr.ProbeSent)
            || (pr.State == ProgressState.Replicate && pr.Inflight.Count >= _opt.InflightMessagesMax))
        {
            return;
        }
        var prev = pr.Next - 1;
        var prevTerm = TermAt(prev);
        if (prevTerm is null)
        {
            StartSnapshot(to, pr);
            return;
        }
        var entries = new List<RaftEntry>();
        var bytes = 0;
        for (var i = pr.Next; i <= LastIndex && entries.Count < _opt.EntriesPerMessageMax; i++)
        {
            var e = EntryAt(i);
            if (entries.Count > 0 && bytes + e.SizeBytes > _opt.BytesPerMessageMax)
            {
                break;
            }
            entries.Add(e);
            bytes += e.SizeBytes;
        }
        if (entries.Count == 0 && pr.State == ProgressState.Replicate && !sendIfEmpty)
        {
            return;
        }
        Send(new RaftMessage { Type = MessageType.Append, From = Id, To = to, Term = Term, LogIndex = prev, LogTerm = prevTerm.Value, Entries = entries, Commit = Commit });
        if (pr.State == ProgressState.Replicate)
        {
            if (entries.Count > 0)
            {
                pr.Next = entries[^1].Index + 1;
                pr.Inflight.Enqueue(entries[^1].Index);
            }
        }
        else
        {
            pr.ProbeSent = true;
        }
    }

    private void StartSnapshot(ulong to, Progress pr)
    {
        if (_opt.SnapshotSource is null)
        {
            throw new InvalidOperationException($"Raft node {Id} must send a snapshot to {to} but has no snapshot source; configure RaftOptions.SnapshotSource");
        }
        pr.State = ProgressState.Snapshot;
        pr.SnapshotMeta = Snapshot;
        pr.SnapshotOffset = 0;
        pr.Inflight.Clear();
        SendSnapshotChunk(to, pr);
    }

    private void SendSnapshotChunk(ulong to, Progress pr)
    {
        var meta = pr.SnapshotMeta!;
        if (!_opt.SnapshotSource!.TryRead(meta.Index, pr.SnapshotOffset, _opt.SnapshotChunkBytesMax, out var data, out var total))
        {
            // That snapshot was replaced by a newer one: restart with the newest.
            pr.BecomeProbe();
            SendAppend(to, pr, sendIfEmpty: false);
            return;
        }
        var last = pr.SnapshotOffset + data.Length >= total;
        Send(new RaftMessage
        {
            Type = MessageType.Snapshot, From = Id, To = to, Term = Term,
            Snapshot = new SnapshotChunk(meta, pr.SnapshotOffset, data, last),
        });
    }

    private void StepLeader(RaftMessage m)
    {
        if (m.Type is MessageType.Append or MessageType.Snapshot or MessageType.Heartbeat)
        {
            throw new InvalidOperationException($"Raft safety violated: two leaders in term {Term} ({Id} and {m.From})");
        }
        if (!_progress.TryGetValue(m.From, out var pr))
        {
            return;
        }
        switch (m.Type)
        {
            case MessageType.AppendResponse:
                pr.RecentActive = true;
                HandleAppendResponse(m, pr);
                return;
            case MessageType.HeartbeatResponse:
                pr.RecentActive = true;
                pr.ProbeSent = false;
                pr.ReadAck = Math.Max(pr.ReadAck, m.Context);
                if (pr.Match < LastIndex)
                {
                    SendAppend(m.From, pr, sendIfEmpty: false);
                }
                ReleaseReads();
                return;
            case MessageType.SnapshotResponse:
                pr.RecentActive = true;
                if (pr.State != ProgressState.Snapshot || pr.SnapshotMeta!.Index != m.LogIndex)
                {
                    return;
                }
                pr.SnapshotAcked = true;
                pr.SnapshotOffset = (long)m.Context;
                SendSnapshotChunk(m.From, pr);
                return;
        }
    }

    private void HandleAppendResponse(RaftMessage m, Progress pr)
    {
        if (m.Reject)
        {
            if (pr.State == ProgressState.Replicate)
            {
                if (m.LogIndex <= pr.Match)
                {
                    return; // stale
                }
                pr.BecomeProbe();
            }
            else if (pr.State == ProgressState.Probe)
            {
                if (m.LogIndex != pr.Next - 1)
                {
                    return; // stale
                }
                var k = m.RejectHint;
                while (k > _snapIndex && TermAt(k) > m.LogTerm)
                {
                    k--;
                }
                pr.Next = Math.Max(Math.Min(m.LogIndex, k + 1), pr.Match + 1);
                pr.ProbeSent = false;
            }
            else
            {
                return;
            }
            SendAppend(m.From, pr, sendIfEmpty: false);
            return;
        }
        var advanced = m.LogIndex > pr.Match;
        if (advanced)
        {
            pr.Match = m.LogIndex;
        }
        pr.Next = Math.Max(pr.Next, m.LogIndex + 1);
        while (pr.Inflight.Count > 0 && pr.Inflight.Peek() <= m.LogIndex)
        {
            pr.Inflight.Dequeue();
        }
        if (pr.State == ProgressState.Probe || (pr.State == ProgressState.Snapshot && pr.Match >= pr.SnapshotMeta!.Index))
        {
            pr.BecomeReplicate();
        }
        if (advanced && MaybeCommit())
        {
            BroadcastAppend(sendIfEmpty: _opt.BroadcastCommit);
        }
        else
        {
            SendAppend(m.From, pr, sendIfEmpty: false);
        }
        if (m.From == _transferee && pr.Match == LastIndex)
        {
            Send(new RaftMessage { Type = MessageType.TimeoutNow, From = Id, To = m.From, Term = Term });
        }
    }

    private bool MaybeCommit()
    {
        var voters = Voters;
        var matches = new List<ulong>(voters.Count);
        foreach (var v in voters)
        {
            matches.Add(v == Id ? _persisted : (_progress.TryGetValue(v, out var p) ? p.Match : 0));
        }
        matches.Sort();
        var q = matches[matches.Count - Quorum];
        // Only entries of the current term are committed by counting replicas (Raft §5.4.2, Figure 8).
        if (q <= Commit || TermAt(q) != Term)
        {
            return false;
        }
        Commit = q;
        if (_readsAwaitingCommit.Count > 0 && CommittedInCurrentTerm())
        {
            var waiting = _readsAwaitingCommit.ToList();
            _readsAwaitingCommit.Clear();
            foreach (var ctx in waiting)
            {
                StartRead(ctx);
            }
        }
        if (!Promotable && (_confs.Count == 0 || _confs[^1].Index <= Commit))
        {
            // The membership entry removing this leader is committed: hand over by stepping down.
            BroadcastAppend(sendIfEmpty: true);
            BecomeFollower(Term, 0);
            return false;
        }
        return true;
    }

    private void StartRead(ulong context)
    {
        _readSeq++;
        _pendingReads.Enqueue((context, Commit, _readSeq));
        BroadcastHeartbeat(_readSeq);
        ReleaseReads();
    }

    private void ReleaseReads()
    {
        while (_pendingReads.Count > 0)
        {
            var r = _pendingReads.Peek();
            var acks = (Promotable ? 1 : 0) + Voters.Count(v => v != Id && _progress.TryGetValue(v, out var p) && p.ReadAck >= r.Seq);
            if (acks < Quorum)
            {
                return;
            }
            _pendingReads.Dequeue();
            _readStates.Add(new ReadState(r.Ctx, r.Index));
        }
    }

    // ---------------------------------------------------------------- log

    private void AppendToLog(RaftEntry e)
    {
        _log.Add(e);
        if (e.Kind == EntryKind.ConfChange)
        {
            var voters = Membership.Decode(e.Data.Span, out var addresses);
            _confs.Add((e.Index, voters, addresses));
        }
    }

    private void TruncateFrom(ulong index)
    {
        _log.RemoveRange((int)(index - _snapIndex - 1), (int)(LastIndex - index + 1));
        _confs.RemoveAll(c => c.Index >= index);
        _unstableFrom = Math.Min(_unstableFrom, index);
        _persisted = Math.Min(_persisted, index - 1);
    }

    private void Send(RaftMessage m) => _msgs.Add(m);
}
