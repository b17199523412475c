// Deterministic simulation of a Raft cluster: fake clock, network and disks driven by one seed, checked on every step.
using System.Text;
using MirrorFS.MetaServer.Raft;
using MirrorFS.MetaServer.Storage;

namespace MirrorFS.MetaServer.Tests.Raft;

public sealed class SimulationFailure(string message) : Exception(message);

/// <summary>Knobs of one simulated run. Probabilities are per time unit unless noted.</summary>
public sealed class SimOptions
{
    public int Nodes { get; init; } = 3;
    public int InitialVoters { get; init; } = 3;
    public int FaultUnits { get; init; } = 2400;
    public int HealUnitsMax { get; init; } = 3000;
    public int UnitsPerTick { get; init; } = 4;
    public bool Membership { get; init; }
    public double DropPerMessage { get; init; } = 0.05;
    public double DuplicatePerMessage { get; init; } = 0.03;
    public double LongDelayPerMessage { get; init; } = 0.03;
    public int DelayUnitsMax { get; init; } = 6;
    public int LongDelayUnitsMax { get; init; } = 60;
    public double PartitionChange { get; init; } = 0.003;
    public double Heal { get; init; } = 0.004;
    public double Crash { get; init; } = 0.0015;
    public double Restart { get; init; } = 0.006;

    /// <summary>A node stops (GC pause, VM stall) with its messages queued: a leader that wakes may be deposed.</summary>
    public double Pause { get; init; } = 0.002;

    public int PauseUnitsMax { get; init; } = 300;
    public double TornCrashPerReady { get; init; } = 0.002;
    public double ConfChange { get; init; } = 0.003;
    public double Transfer { get; init; } = 0.0015;
    public double ClientStart { get; init; } = 0.06;
    public int Clients { get; init; } = 3;
    public int Keys { get; init; } = 6;
    public int OpsPerKeyMax { get; init; } = 24;
    public int ClientTimeoutUnits { get; init; } = 80;
    public ulong CompactEveryEntries { get; init; } = 20;
    public int SnapshotChunkBytesMax { get; init; } = 40;

    /// <summary>Keep a trace of events to print on failure (slower; used when replaying one seed).</summary>
    public bool Trace { get; init; }

    /// <summary>Seeds rotate through three shapes: 5 nodes with membership changes, 5 voters, 3 voters.</summary>
    public static SimOptions ForSeed(int seed) => (seed % 3) switch
    {
        0 => new SimOptions { Nodes = 5, InitialVoters = 3, Membership = true },
        1 => new SimOptions { Nodes = 5, InitialVoters = 5 },
        _ => new SimOptions { Nodes = 3, InitialVoters = 3 },
    };
}

/// <summary>Counters summed over runs, to show which faults were exercised.</summary>
public sealed class SimStats
{
    public long Elections { get; set; }
    public long Crashes { get; set; }
    public long TornCrashes { get; set; }
    public long SnapshotsInstalled { get; set; }
    public long ConfChanges { get; set; }
    public long Transfers { get; set; }
    public long OpsChecked { get; set; }
    public long ReadsServed { get; set; }
    public long ReadsByDeposedLeaders { get; set; }
    public long EntriesApplied { get; set; }

    public void Add(SimStats o)
    {
        Elections += o.Elections;
        Crashes += o.Crashes;
        TornCrashes += o.TornCrashes;
        SnapshotsInstalled += o.SnapshotsInstalled;
        ConfChanges += o.ConfChanges;
        Transfers += o.Transfers;
        OpsChecked += o.OpsChecked;
        ReadsServed += o.ReadsServed;
        ReadsByDeposedLeaders += o.ReadsByDeposedLeaders;
        EntriesApplied += o.EntriesApplied;
    }

    public override string ToString() =>
        $"elections {Elections}, crashes {Crashes} (torn {TornCrashes}), snapshots installed {SnapshotsInstalled}, conf changes {ConfChanges}, transfers {Transfers}, entries applied {EntriesApplied}, reads {ReadsServed} (by deposed leaders {ReadsByDeposedLeaders}), ops checked {OpsChecked}";
}

/// <summary>A deterministic key-value state machine: commands are "opId|key|value".</summary>
internal sealed class KvStateMachine
{
    private SortedDictionary<string, string> _kv = new(StringComparer.Ordinal);

    public ulong Applied { get; private set; }

    public static byte[] Encode(long opId, string key, string value) => Encoding.UTF8.GetBytes($"{opId}|{key}|{value}");

    public static (long OpId, string Key, string Value) Decode(ReadOnlySpan<byte> data)
    {
        var parts = Encoding.UTF8.GetString(data).Split('|');
        return (long.Parse(parts[0], System.Globalization.CultureInfo.InvariantCulture), parts[1], parts[2]);
    }

    public void Apply(RaftEntry e)
    {
        Applied = e.Index;
        if (e.Kind == EntryKind.Normal)
        {
            var (_, key, value) = Decode(e.Data.Span);
            _kv[key] = value;
        }
    }

    public string? Get(string key) => _kv.TryGetValue(key, out var v) ? v : null;

    public byte[] Serialize()
    {
        var sb = new StringBuilder();
        foreach (var (k, v) in _kv)
        {
            sb.Append(k).Append('=').Append(v).Append('\n');
        }
        return Encoding.UTF8.GetBytes(sb.ToString());
    }

    public void Restore(ulong index, byte[] data)
    {
        _kv = new SortedDictionary<string, string>(StringComparer.Ordinal);
        foreach (var line in Encoding.UTF8.GetString(data).Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            var eq = line.IndexOf('=', StringComparison.Ordinal);
            _kv[line[..eq]] = line[(eq + 1)..];
        }
        Applied = index;
    }

    public string Dump() => Encoding.UTF8.GetString(Serialize()).Replace('\n', ' ');
}

/// <summary>What survives a crash: exactly what the node persisted while handling Ready batches.</summary>
internal sealed class SimDisk
{
    public HardState Hard { get; set; }
    public SnapshotMeta Snap { get; set; } = new(0, 0, []);
    public byte[] SnapData { get; set; } = [];
    public List<RaftEntry> Log { get; } = [];
    public MemoryStream? Receiving { get; set; }
    public ulong LastIndex => Snap.Index + (ulong)Log.Count;

    public ulong? TermAt(ulong index) =>
        index == Snap.Index ? Snap.Term : index < Snap.Index || index > LastIndex ? null : Log[(int)(index - Snap.Index - 1)].Term;
}

internal sealed class SimNode(ulong id, int phase, int unitsPerTick) : ISnapshotSource
{
    public ulong Id { get; } = id;
    public int Phase { get; } = phase;

    /// <summary>Each node's clock runs at its own rate (drift); Raft's safety must not depend on it.</summary>
    public int UnitsPerTick { get; } = unitsPerTick;

    public long PausedUntil { get; set; }
    public SimDisk Disk { get; } = new();
    public RaftNode? Core { get; set; }
    public KvStateMachine? Sm { get; set; }
    public bool Up => Core is not null;
    public ulong LeaderTermSeen { get; set; }
    public ulong CommitSeen { get; set; }
    public List<ReadState> ReadStates { get; } = [];

    public bool TryRead(ulong index, long offset, int countMax, out ReadOnlyMemory<byte> data, out long totalBytes)
    {
        totalBytes = Disk.SnapData.Length;
        if (Disk.Snap.Index != index)
        {
            data = default;
            return false;
        }
        var n = (int)Math.Min(countMax, Disk.SnapData.Length - offset);
        data = Disk.SnapData.AsMemory((int)offset, n);
        return true;
    }
}

public sealed class RaftSimulation
{
    private readonly SimOptions _o;
    private readonly Random _rng;
    private readonly List<SimNode> _nodes = [];
    private readonly PriorityQueue<RaftMessage, (long At, long Seq)> _net = new();
    private readonly int[] _group;
    private readonly Queue<string> _trace = new();
    private long _now;
    private long _seq;
    private long _clock;
    private long _nextOpId;
    private bool _faults = true;

    // Invariant bookkeeping.
    private readonly Dictionary<ulong, ulong> _leaderOfTerm = [];
    private readonly Dictionary<(ulong Index, ulong Term), (ulong PrevTerm, string Data)> _entryIds = [];
    private readonly Dictionary<ulong, (ulong Term, string Data)> _appliedAt = [];
    private readonly Dictionary<ulong, (ulong EntryTerm, ulong CommitTerm)> _committed = [];

    // Clients.
    private readonly List<KvOp> _history = [];
    private readonly Dictionary<string, int> _opsPerKey = [];
    private readonly Pending?[] _clients;
    private readonly ulong[] _clientLeader;

    private sealed record Pending(long OpId, ulong Node, bool IsPut, string Key, string? Value, long Call, long Deadline)
    {
        public ulong Index { get; init; } // put: entry index; get: confirmed read index (0 until confirmed)
        public bool Confirmed { get; init; }
    }

    public RaftSimulation(int seed, SimOptions options)
    {
        Seed = seed;
        _o = options;
        _rng = new Random(seed);
        _group = new int[options.Nodes];
        _clients = new Pending?[options.Clients];
        _clientLeader = new ulong[options.Clients];
        var voters = Enumerable.Range(1, options.InitialVoters).Select(i => (ulong)i).ToArray();
        for (var i = 1; i <= options.Nodes; i++)
        {
            var n = new SimNode((ulong)i, _rng.Next(options.UnitsPerTick), options.UnitsPerTick - 1 + _rng.Next(3));
            n.Disk.Snap = new SnapshotMeta(0, 0, i <= options.InitialVoters ? voters : []);
            _nodes.Add(n);
            Start(n);
        }
    }

    public int Seed { get; }
    public SimStats Stats { get; } = new();

    /// <summary>Runs faults, then heals everything and requires the cluster to converge; throws
    /// <see cref="SimulationFailure"/> on any violated property.</summary>
    public void Run()
    {
        try
        {
            for (; _now < _o.FaultUnits; _now++)
            {
                InjectFaults();
                Step();
            }
            _faults = false;
            Array.Clear(_group);
            foreach (var n in _nodes)
            {
                n.PausedUntil = 0;
            }
            foreach (var n in _nodes.Where(n => !n.Up))
            {
                Start(n);
            }
            var healEnd = _now + _o.HealUnitsMax;
            for (; _now < healEnd; _now++)
            {
                Step();
                if (Converged())
                {
                    break;
                }
            }
            if (!Converged())
            {
                Fail($"cluster did not converge within {_o.HealUnitsMax} units after healing: {Describe()}");
            }
            foreach (var c in _clients.Where(c => c is { IsPut: true }))
            {
                _history.Add(new KvOp(0, c!.Call, long.MaxValue, true, c.Key, c.Value));
            }
            var bad = LinearizabilityChecker.FindViolation(_history);
            if (bad is not null)
            {
                Fail($"client history on key {bad} is not linearizable:\n  "
                    + string.Join("\n  ", _history.Where(h => h.Key == bad).OrderBy(h => h.Call)));
            }
            Stats.OpsChecked = _history.Count;
        }
        catch (SimulationFailure)
        {
            throw;
        }
        catch (Exception e)
        {
            Fail($"unexpected {e.GetType().Name}: {e.Message}\n{e.StackTrace}");
        }
    }

    private void Fail(string message)
    {
        var trace = _trace.Count > 0 ? "\nlast events:\n" + string.Join("\n", _trace) : "";
        throw new SimulationFailure($"at unit {_now}: {message}{trace}");
    }

    private void Trace(string s)
    {
        if (!_o.Trace)
        {
            return;
        }
        _trace.Enqueue($"[{_now}] {s}");
        if (_trace.Count > 400)
        {
            _trace.Dequeue();
        }
    }

    private string Describe() => string.Join("; ", _nodes.Select(n => n.Up
        ? $"n{n.Id} {n.Core!.Role} t{n.Core.Term} last{n.Core.LastIndex} commit{n.Core.Commit} applied{n.Sm!.Applied} voters[{string.Join(",", n.Core.Voters)}]"
        : $"n{n.Id} down"));

    // ---------------------------------------------------------------- time step

    private void Step()
    {
        RunClients();
        foreach (var n in _nodes)
        {
            if (n.Up && n.PausedUntil <= _now && (_now + n.Phase) % n.UnitsPerTick == 0)
            {
                n.Core!.Tick();
                Drain(n);
            }
        }
        while (_net.TryPeek(out _, out var at) && at.At <= _now)
        {
            var m = _net.Dequeue();
            var to = _nodes[(int)m.To - 1];
            if (!to.Up || _group[m.From - 1] != _group[m.To - 1])
            {
                continue;
            }
            if (to.PausedUntil > _now)
            {
                // The backlog is read after waking, interleaved with new requests.
                _net.Enqueue(m, (to.PausedUntil + 1 + _rng.Next(3 * _o.DelayUnitsMax), _seq++));
                continue;
            }
            Trace($"deliver {m}");
            to.Core!.Step(m);
            Drain(to);
        }
    }

    private void InjectFaults()
    {
        if (_rng.NextDouble() < _o.PartitionChange)
        {
            for (var i = 0; i < _group.Length; i++)
            {
                _group[i] = _rng.Next(2);
            }
            Trace($"partition [{string.Join(",", _group)}]");
        }
        else if (_rng.NextDouble() < _o.Heal)
        {
            Array.Clear(_group);
        }
        if (_rng.NextDouble() < _o.Crash)
        {
            var up = _nodes.Where(n => n.Up).ToList();
            if (up.Count > 0)
            {
                Crash(up[_rng.Next(up.Count)]);
            }
        }
        if (_rng.NextDouble() < _o.Pause)
        {
            var up = _nodes.Where(n => n.Up).ToList();
            if (up.Count > 0)
            {
                var p = up[_rng.Next(up.Count)];
                p.PausedUntil = _now + 1 + _rng.Next(_o.PauseUnitsMax);
                Trace($"pause n{p.Id} until {p.PausedUntil}");
            }
        }
        if (_rng.NextDouble() < _o.Restart)
        {
            var down = _nodes.Where(n => !n.Up).ToList();
            if (down.Count > 0)
            {
                Start(down[_rng.Next(down.Count)]);
            }
        }
        var leaders = _nodes.Where(n => n.Up && n.PausedUntil <= _now && n.Core!.Role == RaftRole.Leader).ToList();
        if (leaders.Count == 0)
        {
            return;
        }
        var l = leaders[_rng.Next(leaders.Count)];
        if (_o.Membership && _rng.NextDouble() < _o.ConfChange)
        {
            var x = (ulong)_rng.Next(1, _o.Nodes + 1);
            var remove = l.Core!.Voters.Contains(x);
            if (!remove || l.Core.Voters.Count > 2)
            {
                if (l.Core.ProposeConfChange(remove ? ConfChangeType.RemoveVoter : ConfChangeType.AddVoter, x) != 0)
                {
                    Stats.ConfChanges++;
                    Trace($"n{l.Id} proposes {(remove ? "remove" : "add")} {x}");
                }
                Drain(l);
            }
        }
        if (_rng.NextDouble() < _o.Transfer && l.Up) // a torn write may have crashed it just now
        {
            var others = l.Core!.Voters.Where(v => v != l.Id).ToList();
            if (others.Count > 0 && l.Core.TransferLeadership(others[_rng.Next(others.Count)]))
            {
                Stats.Transfers++;
                Drain(l);
            }
        }
    }

    // ---------------------------------------------------------------- nodes

    private void Start(SimNode n)
    {
        var d = n.Disk;
        n.Sm = new KvStateMachine();
        n.Sm.Restore(d.Snap.Index, d.SnapData);
        n.Core = new RaftNode(
            new RaftOptions
            {
                Id = n.Id,
                Random = new Random(_rng.Next()),
                SnapshotSource = n,
                ElectionTicks = 10,
                HeartbeatTicks = 2,
                EntriesPerMessageMax = 1 + (Seed % 4), // batch sizes vary by seed, down to one entry per message
                BytesPerMessageMax = 256,
                BroadcastCommit = (Seed / 4) % 2 == 0, // half the seeds leave commit news to the next append or heartbeat
                InflightMessagesMax = 4,
                SnapshotChunkBytesMax = _o.SnapshotChunkBytesMax,
                UncommittedEntriesMax = 64,
                PendingReadsMax = 16,
                CommittedEntriesPerReadyMax = 8,
            },
            new RaftStartState(d.Hard, d.Snap, [.. d.Log], d.Snap.Index));
        n.LeaderTermSeen = 0;
        n.ReadStates.Clear();
        Trace($"start n{n.Id} term {d.Hard.Term} log {d.Snap.Index}+{d.Log.Count}");
        Drain(n);
    }

    private void Crash(SimNode n)
    {
        Trace($"crash n{n.Id}");
        Stats.Crashes++;
        n.Core = null;
        n.Sm = null;
        n.Disk.Receiving = null;
        for (var i = 0; i < _clients.Length; i++)
        {
            if (_clients[i] is { } c && c.Node == n.Id)
            {
                EndUnknown(i);
            }
        }
    }

    private void Drain(SimNode n)
    {
        while (n.Up && n.Core!.HasReady)
        {
            var core = n.Core;
            var rd = core.GetReady();
            var d = n.Disk;
            var torn = _faults && rd.Entries.Count > 0 && _rng.NextDouble() < _o.TornCrashPerReady;
            foreach (var c in rd.SnapshotChunks)
            {
                if (c.Offset == 0)
                {
                    d.Receiving = new MemoryStream();
                }
                if (d.Receiving is null || d.Receiving.Length != c.Offset)
                {
                    Fail($"n{n.Id} got snapshot chunk at offset {c.Offset} but holds {d.Receiving?.Length}");
                }
                d.Receiving!.Write(c.Data.Span);
            }
            if (rd.Snapshot is { } snap)
            {
                var data = d.Receiving?.ToArray() ?? [];
                d.Receiving = null;
                d.Snap = snap;
                d.SnapData = data;
                d.Log.Clear();
                n.Sm!.Restore(snap.Index, data);
                Stats.SnapshotsInstalled++;
                Trace($"n{n.Id} installs snapshot {snap.Index}@{snap.Term}");
                CheckSnapshot(n, snap);
            }
            if (rd.Entries.Count > 0)
            {
                var first = rd.Entries[0].Index;
                if (first > d.LastIndex + 1 || first <= d.Snap.Index)
                {
                    Fail($"n{n.Id} asked to persist entries from {first} but its disk holds {d.Snap.Index + 1}..{d.LastIndex}");
                }
                d.Log.RemoveRange((int)(first - d.Snap.Index - 1), (int)(d.LastIndex - first + 1));
                var count = torn ? _rng.Next(rd.Entries.Count) : rd.Entries.Count;
                for (var k = 0; k < count; k++)
                {
                    var e = rd.Entries[k];
                    CheckLogMatching(n, e, d.TermAt(e.Index - 1)!.Value);
                    d.Log.Add(e);
                }
            }
            if (torn)
            {
                if (rd.HardState is { } h && _rng.Next(2) == 0)
                {
                    d.Hard = h;
                }
                Stats.TornCrashes++;
                Crash(n);
                return;
            }
            if (rd.HardState is { } hs)
            {
                d.Hard = hs;
            }
            foreach (var m in rd.Messages)
            {
                Send(m);
            }
            foreach (var e in rd.CommittedEntries)
            {
                Apply(n, e);
            }
            n.ReadStates.AddRange(rd.ReadStates);
            foreach (var ctx in rd.DroppedReads)
            {
                for (var i = 0; i < _clients.Length; i++)
                {
                    if (_clients[i] is { IsPut: false } c && c.OpId == (long)ctx && c.Node == n.Id)
                    {
                        _clients[i] = null; // a read that never happened
                    }
                }
            }
            core.Advance(rd);
            ObserveLeader(n);
            if (n.Sm!.Applied - d.Snap.Index >= _o.CompactEveryEntries && n.Sm.Applied == core.Applied)
            {
                var oldSnap = d.Snap.Index;
                d.SnapData = n.Sm.Serialize();
                core.Compact(n.Sm.Applied);
                d.Snap = core.Snapshot;
                d.Log.RemoveRange(0, (int)(d.Snap.Index - oldSnap));
            }
            ServeReads(n);
        }
    }

    private void Send(RaftMessage m)
    {
        if (_faults && _rng.NextDouble() < _o.DropPerMessage)
        {
            return;
        }
        var copies = _faults && _rng.NextDouble() < _o.DuplicatePerMessage ? 2 : 1;
        for (var i = 0; i < copies; i++)
        {
            var delay = 1 + _rng.Next(_o.DelayUnitsMax);
            if (_faults && _rng.NextDouble() < _o.LongDelayPerMessage)
            {
                delay += _rng.Next(_o.LongDelayUnitsMax);
            }
            _net.Enqueue(m, (_now + delay, _seq++));
        }
    }

    private void Apply(SimNode n, RaftEntry e)
    {
        var sm = n.Sm!;
        if (e.Index != sm.Applied + 1)
        {
            Fail($"n{n.Id} asked to apply entry {e.Index} after {sm.Applied}");
        }
        var data = Convert.ToHexString(e.Data.Span) + (int)e.Kind;
        if (_appliedAt.TryGetValue(e.Index, out var prior))
        {
            if (prior.Term != e.Term || prior.Data != data)
            {
                Fail($"state machine safety: n{n.Id} applies {e} at {e.Index} but another node applied term {prior.Term} there");
            }
        }
        else
        {
            _appliedAt[e.Index] = (e.Term, data);
        }
        sm.Apply(e);
        Stats.EntriesApplied++;
        for (var i = 0; i < _clients.Length; i++)
        {
            if (_clients[i] is { IsPut: true } c && c.Node == n.Id && c.Index == e.Index)
            {
                if (e.Kind == EntryKind.Normal && KvStateMachine.Decode(e.Data.Span).OpId == c.OpId)
                {
                    _history.Add(new KvOp(i, c.Call, _clock++, true, c.Key, c.Value));
                    _clients[i] = null;
                }
                else
                {
                    EndUnknown(i); // another leader's entry took its index; recording it as unknown is the weaker, always-safe claim
                }
            }
        }
    }

    // ---------------------------------------------------------------- invariants

    private void CheckLogMatching(SimNode n, RaftEntry e, ulong prevTerm)
    {
        // (index, term) must identify one entry content and one predecessor term; by induction this is Log Matching.
        var data = Convert.ToHexString(e.Data.Span) + (int)e.Kind;
        if (_entryIds.TryGetValue((e.Index, e.Term), out var known))
        {
            if (known.PrevTerm != prevTerm || known.Data != data)
            {
                Fail($"log matching: n{n.Id} persists {e} after term {prevTerm}; another node has ({e.Index},{e.Term}) after term {known.PrevTerm} with other data={known.Data != data}");
            }
        }
        else
        {
            _entryIds[(e.Index, e.Term)] = (prevTerm, data);
        }
    }

    private void CheckSnapshot(SimNode n, SnapshotMeta snap)
    {
        if (!_committed.TryGetValue(snap.Index, out var c) || c.EntryTerm != snap.Term)
        {
            Fail($"n{n.Id} installed snapshot {snap.Index}@{snap.Term} that does not match a committed entry");
        }
    }

    private void ObserveLeader(SimNode n)
    {
        var core = n.Core!;
        if (core.Role != RaftRole.Leader)
        {
            // A leader that just stepped down (e.g. removed by a membership change it committed) may have committed
            // entries in the same step: still record them.
            if (n.LeaderTermSeen == core.Term)
            {
                RecordCommits(n);
            }
            return;
        }
        if (_leaderOfTerm.TryGetValue(core.Term, out var other) && other != n.Id)
        {
            Fail($"election safety: n{n.Id} and n{other} both lead term {core.Term}");
        }
        if (n.LeaderTermSeen != core.Term)
        {
            _leaderOfTerm[core.Term] = n.Id;
            n.LeaderTermSeen = core.Term;
            n.CommitSeen = core.Commit;
            Stats.Elections++;
            Trace($"n{n.Id} leads term {core.Term}");
            foreach (var (index, (entryTerm, commitTerm)) in _committed)
            {
                if (commitTerm < core.Term && index > core.SnapshotIndex && core.TermAt(index) != entryTerm)
                {
                    Fail($"leader completeness: n{n.Id} leads term {core.Term} without entry {index}@{entryTerm} committed in term {commitTerm} (has term {core.TermAt(index)})");
                }
            }
        }
        RecordCommits(n);
    }

    private void RecordCommits(SimNode n)
    {
        var core = n.Core!;
        for (var i = n.CommitSeen + 1; i <= core.Commit; i++)
        {
            var t = core.TermAt(i)!.Value;
            if (_committed.TryGetValue(i, out var c))
            {
                if (c.EntryTerm != t)
                {
                    Fail($"n{n.Id} (term {core.Term}) commits {i}@{t} but {i}@{c.EntryTerm} was committed in term {c.CommitTerm}");
                }
            }
            else
            {
                _committed[i] = (t, core.Term);
            }
        }
        n.CommitSeen = core.Commit;
    }

    private bool Converged()
    {
        var leader = _nodes.FirstOrDefault(n => n.Up && n.Core!.Role == RaftRole.Leader && n.Core.TermAt(n.Core.Commit) == n.Core.Term);
        if (leader is null || leader.Core!.Commit != leader.Core.LastIndex || _clients.Any(c => c is not null))
        {
            return false;
        }
        var l = leader.Core;
        var members = l.Voters.Select(v => _nodes[(int)v - 1]).ToList();
        if (members.Any(m => !m.Up || m.Sm!.Applied != l.Commit || m.Core!.LastIndex != l.LastIndex))
        {
            return false;
        }
        var state = leader.Sm!.Dump();
        foreach (var m in members.Where(m => m.Sm!.Dump() != state))
        {
            Fail($"n{m.Id} and leader n{leader.Id} applied up to {l.Commit} but hold different states: [{m.Sm!.Dump()}] vs [{state}]");
        }
        return true;
    }

    // ---------------------------------------------------------------- clients

    private void RunClients()
    {
        for (var i = 0; i < _clients.Length; i++)
        {
            if (_clients[i] is { } c && _now > c.Deadline)
            {
                EndUnknown(i);
            }
            if (_clients[i] is not null || !_faults || _rng.NextDouble() >= _o.ClientStart)
            {
                continue;
            }
            var leaders = _nodes.Where(n => n.Up && n.Core!.Role == RaftRole.Leader).ToList();
            // Client 0 sticks to the leader it used last while that node still claims to lead, waiting out its stalls
            // (as a real client would), so its reads reach deposed leaders that have not noticed yet; the others
            // pick any leader that is running.
            var sticky = i == 0;
            if (leaders.Count == 0 || (sticky && leaders.Any(l => l.Id == _clientLeader[i] && l.PausedUntil > _now)))
            {
                continue;
            }
            leaders.RemoveAll(l => l.PausedUntil > _now);
            if (leaders.Count == 0)
            {
                continue;
            }
            var n = (sticky ? leaders.FirstOrDefault(l => l.Id == _clientLeader[i]) : null) ?? leaders[_rng.Next(leaders.Count)];
            _clientLeader[i] = n.Id;
            var key = $"k{_rng.Next(_o.Keys)}";
            if (_opsPerKey.GetValueOrDefault(key) >= _o.OpsPerKeyMax)
            {
                continue;
            }
            var opId = ++_nextOpId;
            if (_rng.Next(2) == 0)
            {
                var value = $"v{opId}";
                var call = _clock++;
                var index = n.Core!.Propose(KvStateMachine.Encode(opId, key, value));
                if (index == 0)
                {
                    continue;
                }
                _opsPerKey[key] = _opsPerKey.GetValueOrDefault(key) + 1;
                _clients[i] = new Pending(opId, n.Id, true, key, value, call, _now + _o.ClientTimeoutUnits) { Index = index };
                Trace($"client {i} put {key}={value} at n{n.Id} index {index}");
            }
            else
            {
                var call = _clock++;
                if (!n.Core!.ReadIndex((ulong)opId))
                {
                    continue;
                }
                _opsPerKey[key] = _opsPerKey.GetValueOrDefault(key) + 1;
                _clients[i] = new Pending(opId, n.Id, false, key, null, call, _now + _o.ClientTimeoutUnits);
                Trace($"client {i} get {key} at n{n.Id}");
            }
            Drain(n);
        }
    }

    private void ServeReads(SimNode n)
    {
        if (n.ReadStates.Count == 0)
        {
            return;
        }
        for (var i = 0; i < _clients.Length; i++)
        {
            if (_clients[i] is not { IsPut: false } c || c.Node != n.Id)
            {
                continue;
            }
            var rs = n.ReadStates.FindIndex(r => r.Context == (ulong)c.OpId);
            if (rs >= 0 && n.ReadStates[rs].Index <= n.Sm!.Applied)
            {
                n.ReadStates.RemoveAt(rs);
                var value = n.Sm.Get(c.Key);
                _history.Add(new KvOp(i, c.Call, _clock++, false, c.Key, value));
                Stats.ReadsServed++;
                if (_leaderOfTerm.Keys.Max() > n.Core!.Term)
                {
                    Stats.ReadsByDeposedLeaders++;
                }
                _clients[i] = null;
                Trace($"client {i} read {c.Key}={value}");
            }
        }
    }

    private void EndUnknown(int client)
    {
        var c = _clients[client]!;
        if (c.IsPut)
        {
            _history.Add(new KvOp(client, c.Call, long.MaxValue, true, c.Key, c.Value));
        }
        _clients[client] = null;
    }
}
