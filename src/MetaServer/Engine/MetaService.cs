// The metadata engine the RPC layer calls: prepares commands on the leader, proposes them, and serves reads.
using Google.Protobuf;
using MirrorFS.Core.Meta;
using MirrorFS.MetaServer.Consensus;

namespace MirrorFS.MetaServer.Engine;

/// <summary>
/// One method per <c>service Meta</c> call. Mutating calls become <see cref="Command"/> records prepared here — a
/// strictly increasing timestamp from <see cref="TimeProvider"/>, new inode numbers, slice ids and session ids from
/// cursors that never fall behind the state's counters — then go through <see cref="IReplicatedLog.ProposeAsync"/>.
/// Preparing and handing the entry to the log happen under one lock, so with a log that appends in call order the
/// entries carry increasing ids. Should an entry still arrive with an id already handed out (the log reordered
/// proposals, or a new leader's state lagged its log), apply gives it the next free id instead and the reply tells
/// which. Reads wait for
/// <see cref="IReplicatedLog.ReadBarrierAsync"/>, then read the state. <see cref="NotLeaderException"/> propagates.
/// </summary>
public sealed partial class MetaService : IMetaClient
{
    private readonly MetaStateMachine _state;
    private readonly IReplicatedLog _log;
    private readonly TimeProvider _time;
    private readonly Lock _prepare = new();
    private long _lastNs;
    private ulong _nextInode;
    private ulong _nextSliceId;
    private ulong _nextSessionId;

    public MetaService(MetaStateMachine state, IReplicatedLog log, TimeProvider? time = null)
    {
        _state = state;
        _log = log;
        _time = time ?? TimeProvider.System;
    }

    public MetaStateMachine State => _state;

    /// <summary>A session whose last call is older than this is expired by <see cref="ExpireSessionsAsync(CancellationToken)"/>.</summary>
    public TimeSpan SessionTimeout { get; init; } = TimeSpan.FromMinutes(5);

    private enum Alloc { None, Inode, Slices, Session }

    private long ClockNs() => (_time.GetUtcNow().UtcTicks - DateTime.UnixEpoch.Ticks) * 100;

    /// <summary>Fills the leader-assigned fields of <paramref name="cmd"/>; call under <see cref="_prepare"/>.</summary>
    private void Prepare(Command cmd, Alloc alloc, uint count)
    {
        var (nextInode, nextSlice, nextSession, lastNs) = _state.Counters();
        var now = Math.Max(ClockNs(), Math.Max(_lastNs, lastNs) + 1);
        _lastNs = now;
        cmd.NowNs = now;
        switch (alloc)
        {
            case Alloc.Inode:
                cmd.NewInode = Math.Max(_nextInode, nextInode);
                _nextInode = cmd.NewInode + 1;
                break;
            case Alloc.Slices:
                cmd.NewId = Math.Max(_nextSliceId, nextSlice);
                _nextSliceId = cmd.NewId + count;
                break;
            case Alloc.Session:
                cmd.NewId = Math.Max(_nextSessionId, nextSession);
                _nextSessionId = cmd.NewId + 1;
                break;
        }
    }

    private async Task<TReply> MutateAsync<TReq, TReply>(TReq request, Action<Command, TReq> embed, Alloc alloc,
        MessageParser<TReply> parser, CancellationToken ct, uint count = 1)
        where TReq : IMessage<TReq>, IMutatingRequest
        where TReply : IMessage<TReply>, IMetaReply
    {
        ThrowIfMirror();
        // The session header travels once, at the Command level.
        var op = request.Clone();
        op.SessionId = 0;
        op.Seq = 0;
        op.AckedSeq = 0;
        var cmd = new Command { SessionId = request.SessionId, Seq = request.Seq, AckedSeq = request.AckedSeq };
        embed(cmd, op);
        Task<(ulong Index, byte[] Reply)> proposal;
        lock (_prepare)
        {
            Prepare(cmd, alloc, count);
            proposal = _log.ProposeAsync(cmd.ToByteArray(), ct);
        }
        var (_, bytes) = await proposal;
        return parser.ParseFrom(bytes);
    }

    // ---- mutating calls ----

    public Task<SetAttrReply> SetAttrAsync(SetAttrRequest r, CancellationToken ct = default) =>
        MutateAsync(r, static (c, o) => c.SetAttr = o, Alloc.None, SetAttrReply.Parser, ct);

    public Task<MknodReply> MknodAsync(MknodRequest r, CancellationToken ct = default) =>
        MutateAsync(r, static (c, o) => c.Mknod = o, Alloc.Inode, MknodReply.Parser, ct);

    public async Task<CreateReply> CreateAsync(CreateRequest r, CancellationToken ct = default)
    {
        var reply = await MutateAsync(r, static (c, o) => c.Create = o, Alloc.Inode, CreateReply.Parser, ct);
        if (reply.Errno == 0)
        {
            // The parent as it is now (its mtime and ctime moved), for the client to answer the kernel's next
            // getattr of it. Added here, not by the state machine: its replies are logged and frozen.
            var parent = _state.GetAttr(new GetAttrRequest { Cred = r.Cred, Inode = r.Parent });
            if (parent.Errno == 0)
            {
                reply.ParentAttr = parent.Attr;
            }
        }

        return reply;
    }

    public Task<MkdirReply> MkdirAsync(MkdirRequest r, CancellationToken ct = default) =>
        MutateAsync(r, static (c, o) => c.Mkdir = o, Alloc.Inode, MkdirReply.Parser, ct);

    public Task<UnlinkReply> UnlinkAsync(UnlinkRequest r, CancellationToken ct = default) =>
        MutateAsync(r, static (c, o) => c.Unlink = o, Alloc.None, UnlinkReply.Parser, ct);

    public Task<RmdirReply> RmdirAsync(RmdirRequest r, CancellationToken ct = default) =>
        MutateAsync(r, static (c, o) => c.Rmdir = o, Alloc.None, RmdirReply.Parser, ct);

    public Task<RenameReply> RenameAsync(RenameRequest r, CancellationToken ct = default) =>
        MutateAsync(r, static (c, o) => c.Rename = o, Alloc.None, RenameReply.Parser, ct);

    public Task<LinkReply> LinkAsync(LinkRequest r, CancellationToken ct = default) =>
        MutateAsync(r, static (c, o) => c.Link = o, Alloc.None, LinkReply.Parser, ct);

    public Task<SymlinkReply> SymlinkAsync(SymlinkRequest r, CancellationToken ct = default) =>
        MutateAsync(r, static (c, o) => c.Symlink = o, Alloc.Inode, SymlinkReply.Parser, ct);

    public Task<OpenReply> OpenAsync(OpenRequest r, CancellationToken ct = default) =>
        MutateAsync(r, static (c, o) => c.Open = o, Alloc.None, OpenReply.Parser, ct);

    public Task<ReleaseReply> ReleaseAsync(ReleaseRequest r, CancellationToken ct = default) =>
        MutateAsync(r, static (c, o) => c.Release = o, Alloc.None, ReleaseReply.Parser, ct);

    public Task<SetXattrReply> SetXattrAsync(SetXattrRequest r, CancellationToken ct = default) =>
        MutateAsync(r, static (c, o) => c.SetXattr = o, Alloc.None, SetXattrReply.Parser, ct);

    public Task<RemoveXattrReply> RemoveXattrAsync(RemoveXattrRequest r, CancellationToken ct = default) =>
        MutateAsync(r, static (c, o) => c.RemoveXattr = o, Alloc.None, RemoveXattrReply.Parser, ct);

    public Task<FallocateReply> FallocateAsync(FallocateRequest r, CancellationToken ct = default) =>
        MutateAsync(r, static (c, o) => c.Fallocate = o, Alloc.None, FallocateReply.Parser, ct);

    public Task<NewSliceIdsReply> NewSliceIdsAsync(NewSliceIdsRequest r, CancellationToken ct = default) =>
        MutateAsync(r, static (c, o) => c.NewSliceIds = o, Alloc.Slices, NewSliceIdsReply.Parser, ct,
            r.Count <= MetaLimits.NewSliceIdsCountMax ? r.Count : 0); // an invalid count reserves nothing

    public Task<WriteSliceReply> WriteSliceAsync(WriteSliceRequest r, CancellationToken ct = default) =>
        MutateAsync(r, static (c, o) => c.WriteSlice = o, Alloc.None, WriteSliceReply.Parser, ct);

    public Task<TruncateReply> TruncateAsync(TruncateRequest r, CancellationToken ct = default) =>
        MutateAsync(r, static (c, o) => c.Truncate = o, Alloc.None, TruncateReply.Parser, ct);

    public Task<NewSessionReply> NewSessionAsync(NewSessionRequest r, CancellationToken ct = default) =>
        MutateAsync(r, static (c, o) => c.NewSession = o, Alloc.Session, NewSessionReply.Parser, ct);

    public Task<HeartbeatReply> HeartbeatAsync(HeartbeatRequest r, CancellationToken ct = default) =>
        MutateAsync(r, static (c, o) => c.Heartbeat = o, Alloc.None, HeartbeatReply.Parser, ct);

    public Task<CloseSessionReply> CloseSessionAsync(CloseSessionRequest r, CancellationToken ct = default) =>
        MutateAsync(r, static (c, o) => c.CloseSession = o, Alloc.None, CloseSessionReply.Parser, ct);

    /// <summary>Formats the volume; an empty uuid is generated here (randomness belongs to prepare, never to apply).</summary>
    public Task<FormatReply> FormatAsync(FormatRequest r, CancellationToken ct = default)
    {
        if (r.Volume is not null && string.IsNullOrEmpty(r.Volume.Uuid))
        {
            r = r.Clone();
            r.Volume.Uuid = Guid.NewGuid().ToString();
        }
        return MutateAsync(r, static (c, o) => c.Format = o, Alloc.None, FormatReply.Parser, ct);
    }

    /// <summary>Expires sessions idle for longer than <see cref="SessionTimeout"/>; see <see cref="ExpireSessionsAsync(TimeSpan, CancellationToken)"/>.</summary>
    public Task<ExpireSessionsReply> ExpireSessionsAsync(CancellationToken ct = default) => ExpireSessionsAsync(SessionTimeout, ct);

    /// <summary>
    /// Closes sessions idle for longer than <paramref name="timeout"/> (releasing their open files) through one
    /// leader-issued command. Proposes nothing when no session looks idle.
    /// </summary>
    public async Task<ExpireSessionsReply> ExpireSessionsAsync(TimeSpan timeout, CancellationToken ct = default)
    {
        if (timeout <= TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(timeout), timeout, "session timeout must be positive");
        }
        var timeoutNs = timeout.Ticks * 100;
        if (IsMirror || !_state.AnySessionIdleBefore(ClockNs() - timeoutNs))
        {
            return new ExpireSessionsReply { Index = _state.LogicalIndex }; // a mirror's sessions expire on the primary
        }
        var cmd = new Command { ExpireSessions = new ExpireSessionsRequest { TimeoutNs = timeoutNs } };
        Task<(ulong Index, byte[] Reply)> proposal;
        lock (_prepare)
        {
            Prepare(cmd, Alloc.None, 0);
            proposal = _log.ProposeAsync(cmd.ToByteArray(), ct);
        }
        var (_, bytes) = await proposal;
        return ExpireSessionsReply.Parser.ParseFrom(bytes);
    }

    // ---- reads ----

    public async Task<LookupReply> LookupAsync(LookupRequest r, CancellationToken ct = default)
    {
        await ReadBarrierAsync(ct);
        return _state.Lookup(r);
    }

    public async Task<GetAttrReply> GetAttrAsync(GetAttrRequest r, CancellationToken ct = default)
    {
        await ReadBarrierAsync(ct);
        return _state.GetAttr(r);
    }

    public async Task<ReadLinkReply> ReadLinkAsync(ReadLinkRequest r, CancellationToken ct = default)
    {
        await ReadBarrierAsync(ct);
        return _state.ReadLink(r);
    }

    public async Task<ReadDirReply> ReadDirAsync(ReadDirRequest r, CancellationToken ct = default)
    {
        await ReadBarrierAsync(ct);
        return _state.ReadDir(r);
    }

    public async Task<GetXattrReply> GetXattrAsync(GetXattrRequest r, CancellationToken ct = default)
    {
        await ReadBarrierAsync(ct);
        return _state.GetXattr(r);
    }

    public async Task<ListXattrReply> ListXattrAsync(ListXattrRequest r, CancellationToken ct = default)
    {
        await ReadBarrierAsync(ct);
        return _state.ListXattr(r);
    }

    public async Task<StatFsReply> StatFsAsync(StatFsRequest r, CancellationToken ct = default)
    {
        await ReadBarrierAsync(ct);
        return _state.StatFs(r);
    }

    public async Task<ReadChunkReply> ReadChunkAsync(ReadChunkRequest r, CancellationToken ct = default)
    {
        await ReadBarrierAsync(ct);
        return _state.ReadChunk(r);
    }

    public async Task<GetVolumeReply> GetVolumeAsync(GetVolumeRequest r, CancellationToken ct = default)
    {
        await ReadBarrierAsync(ct);
        return AddMirrorSettings(_state.GetVolume(r));
    }

    public async Task<ListSessionsReply> ListSessionsAsync(ListSessionsRequest r, CancellationToken ct = default)
    {
        await ReadBarrierAsync(ct);
        return _state.ListSessions(r);
    }

    // ---- block deletion and compaction ----

    public Task<ConfirmDeletesReply> ConfirmDeletesAsync(ConfirmDeletesRequest r, CancellationToken ct = default) =>
        MutateAsync(r, static (c, o) => c.ConfirmDeletes = o, Alloc.None, ConfirmDeletesReply.Parser, ct);

    public Task<CompactChunkReply> CompactChunkAsync(CompactChunkRequest r, CancellationToken ct = default) =>
        MutateAsync(r, static (c, o) => c.CompactChunk = o, Alloc.None, CompactChunkReply.Parser, ct);

    /// <summary>Eligibility is judged by this leader's clock.</summary>
    public async Task<ListPendingDeletesReply> ListPendingDeletesAsync(ListPendingDeletesRequest r, CancellationToken ct = default)
    {
        await _log.ReadBarrierAsync(ct);
        return _state.ListPendingDeletes(r, ClockNs());
    }

    public async Task<ListSlicesReply> ListSlicesAsync(ListSlicesRequest r, CancellationToken ct = default)
    {
        await _log.ReadBarrierAsync(ct);
        return _state.ListSlices(r);
    }

    /// <summary>The engine owns no connection: as an <see cref="IMetaClient"/> there is nothing to close.</summary>
    public ValueTask DisposeAsync() => ValueTask.CompletedTask;
}
