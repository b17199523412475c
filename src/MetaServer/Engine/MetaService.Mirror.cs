// Mirror side of the metadata service: refusing writes on a mirror, reads at the caller's index, status, promotion.
using Google.Protobuf;
using MirrorFS.Core.Meta;

namespace MirrorFS.MetaServer.Engine;

/// <summary>A write reached a mirror cluster: it belongs to the primary named in <see cref="Primary"/>.</summary>
public sealed class MirrorReadOnlyException(string primary)
    : InvalidOperationException($"this cluster is a read-only mirror of {(primary.Length == 0 ? "a primary" : primary)}; send writes to the primary (or promote this mirror)")
{
    public string Primary { get; } = primary;
}

/// <summary>A read asked for a primary index the mirror had not applied within the wait: ask the primary.</summary>
public sealed class MirrorBehindException(ulong applied, ulong wanted, int waitedMs)
    : TimeoutException($"mirror has applied primary index {applied}, the caller has seen {wanted}; not caught up within {waitedMs} ms, ask the primary")
{
    public ulong Applied { get; } = applied;

    public ulong Wanted { get; } = wanted;
}

/// <summary>
/// Which pending deletes may go: a block may be deleted only after every registered mirror has applied past the
/// entry that released it (mirror clients may still read it from the primary's bucket until then).
/// </summary>
public sealed class MirrorGate(MetaStateMachine state)
{
    /// <summary>Live progress the leader heard since it took over (set by the changelog service).</summary>
    public Func<IReadOnlyCollection<MirrorInfo>>? Live { get; set; }

    /// <summary>The lowest primary index every registered mirror has applied (durable table, raised by what this
    /// leader heard live); <see cref="ulong.MaxValue"/> when no mirror is registered. A pending delete recorded at
    /// index I is eligible when I is at most this.</summary>
    public ulong MinMirrorApplied
    {
        get
        {
            var durable = state.MirrorProgressTable();
            if (durable.Count == 0)
            {
                return ulong.MaxValue;
            }
            var live = Live?.Invoke();
            var min = ulong.MaxValue;
            foreach (var d in durable)
            {
                var applied = d.AppliedIndex;
                if (live is not null)
                {
                    foreach (var l in live)
                    {
                        if (l.MirrorId == d.MirrorId && l.AppliedIndex > applied)
                        {
                            applied = l.AppliedIndex;
                        }
                    }
                }
                min = Math.Min(min, applied);
            }
            return min;
        }
    }
}

public sealed partial class MetaService
{
    private MirrorGate? _gate;

    /// <summary>Set when this node was started as a mirror (the primary's META-URL, no token): writes are refused
    /// even before the mirror role is recorded in the state, and until a Promote.</summary>
    public string? MirrorOf { get; init; }

    /// <summary>This region's bucket, shown to mirror clients by GetVolume.</summary>
    public string? MirrorStorage { get; init; }

    /// <summary>How long a mirror read waits for the caller's minimum index before answering "behind".</summary>
    public int MirrorReadWaitMs { get; init; } = 2_000;

    /// <summary>What the mirror follower is doing (set by the host on mirror nodes).</summary>
    public Func<MirrorFollowStatus?>? FollowStatus { get; set; }

    public MirrorGate MirrorGate => _gate ??= new MirrorGate(_state);

    /// <summary>True when this node refuses writes because it follows a primary.</summary>
    public bool IsMirror => _state.Role switch
    {
        MirrorRole.Mirror => true,
        MirrorRole.None => MirrorOf is not null,
        _ => false,
    };

    private void ThrowIfMirror()
    {
        if (IsMirror)
        {
            var info = _state.MirrorRoleInfo();
            throw new MirrorReadOnlyException(info.Primary.Length > 0 ? info.Primary : MirrorOf ?? "");
        }
    }

    /// <summary>A linearizable read point on this cluster; on a mirror also at least the caller's primary index
    /// (<see cref="MetaCallContext.MinIndex"/>), waiting up to <see cref="MirrorReadWaitMs"/> for it.</summary>
    private async Task ReadBarrierAsync(CancellationToken ct)
    {
        await _log.ReadBarrierAsync(ct);
        var min = MetaCallContext.MinIndex;
        if (min == 0 || _state.LogicalIndex >= min || !IsMirror)
        {
            return; // a primary has applied everything any client saw (its reads follow its commits)
        }
        using var wait = CancellationTokenSource.CreateLinkedTokenSource(ct);
        wait.CancelAfter(MirrorReadWaitMs);
        try
        {
            await _state.WaitForIndexAsync(min, wait.Token);
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            throw new MirrorBehindException(_state.LogicalIndex, min, MirrorReadWaitMs);
        }
    }

    private GetVolumeReply AddMirrorSettings(GetVolumeReply reply)
    {
        if (reply.Volume is null || !IsMirror)
        {
            return reply;
        }
        var info = _state.MirrorRoleInfo();
        reply.Volume.MirrorOf = info.Primary.Length > 0 ? info.Primary : MirrorOf ?? "";
        reply.Volume.MirrorStorage = info.MirrorStorage.Length > 0 ? info.MirrorStorage : MirrorStorage ?? "";
        return reply;
    }

    public async Task<ListMirrorsReply> ListMirrorsAsync(ListMirrorsRequest request, CancellationToken ct = default)
    {
        await _log.ReadBarrierAsync(ct);
        var info = _state.MirrorRoleInfo();
        var reply = new ListMirrorsReply
        {
            Index = info.LogicalIndex,
            CommitIndex = info.LogicalIndex,
            IsMirror = IsMirror,
            MirrorOf = info.Primary.Length > 0 ? info.Primary : MirrorOf ?? "",
            Follow = FollowStatus?.Invoke(),
        };
        var merged = new SortedDictionary<string, MirrorInfo>(StringComparer.Ordinal);
        foreach (var d in _state.MirrorProgressTable())
        {
            merged[d.MirrorId] = d;
        }
        foreach (var l in MirrorGate.Live?.Invoke() ?? [])
        {
            if (merged.TryGetValue(l.MirrorId, out var d))
            {
                d.AppliedIndex = Math.Max(d.AppliedIndex, l.AppliedIndex);
                d.LastSeenNs = Math.Max(d.LastSeenNs, l.LastSeenNs);
                d.Connected = l.Connected;
            }
            else
            {
                merged[l.MirrorId] = l.Clone();
            }
        }
        reply.Mirrors.Add(merged.Values);
        return reply;
    }

    /// <summary>Turns this mirror into a primary; EINVAL when it is not a mirror (or has not recorded its role yet).</summary>
    public async Task<PromoteReply> PromoteAsync(PromoteRequest request, CancellationToken ct = default)
    {
        if (_state.Role != MirrorRole.Mirror)
        {
            return new PromoteReply { Errno = Errno.EINVAL, Index = _state.LogicalIndex };
        }
        var (_, bytes) = await _log.ProposeAsync(new Command { Promote = new PromoteRequest() }.ToByteArray(), ct);
        return PromoteReply.Parser.ParseFrom(bytes);
    }

    /// <summary>Proposes a mirror-role command (entries, snapshot piece, setup) as is; the reply bytes come back.</summary>
    internal async Task<byte[]> ProposeMirrorCommandAsync(Command cmd, CancellationToken ct)
    {
        var (_, bytes) = await _log.ProposeAsync(cmd.ToByteArray(), ct);
        return bytes;
    }

    /// <summary>Records mirrors' progress in the state (a primary's leader-issued command).</summary>
    internal async Task ProposeMirrorProgressAsync(IEnumerable<MirrorInfo> mirrors, CancellationToken ct)
    {
        var cmd = new Command { MirrorProgress = new MirrorProgressRequest() };
        cmd.MirrorProgress.Mirrors.Add(mirrors);
        Task<(ulong Index, byte[] Reply)> proposal;
        lock (_prepare)
        {
            Prepare(cmd, Alloc.None, 0);
            proposal = _log.ProposeAsync(cmd.ToByteArray(), ct);
        }
        await proposal;
    }

    /// <summary>Leader time as prepare would stamp it now (for progress reports).</summary>
    internal long NowNs => ClockNs();

    /// <summary>The log underneath (the changelog service reads committed entries from it).</summary>
    internal Consensus.IReplicatedLog Log => _log;
}
