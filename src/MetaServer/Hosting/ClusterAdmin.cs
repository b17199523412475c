// The mirrorfs.Cluster admin service: status of this node, membership changes, leadership transfer, snapshots.
using MirrorFS.Core.Rpc;
using MirrorFS.MetaServer.Consensus;
using MirrorFS.MetaServer.Raft;
using MirrorFS.MetaServer.Wire;

namespace MirrorFS.MetaServer.Hosting;

public static class ClusterRpc
{
    public const string ServiceName = "mirrorfs.Cluster";

    public static string RoleName(RaftRole role) => role switch
    {
        RaftRole.Leader => "leader",
        RaftRole.Candidate => "candidate",
        RaftRole.PreCandidate => "pre-candidate",
        _ => "follower",
    };

    /// <summary>True for "host:port" with a port in 1..65535 (a name, IPv4, or [IPv6]).</summary>
    public static bool IsHostPort(string address)
    {
        var colon = address.LastIndexOf(':');
        if (colon <= 0 || colon == address.Length - 1 || address.Contains("://", StringComparison.Ordinal) || address.Contains('/', StringComparison.Ordinal))
        {
            return false;
        }
        var host = address[..colon];
        if (host.Contains(':', StringComparison.Ordinal) && !(host.StartsWith('[') && host.EndsWith(']')))
        {
            return false;
        }
        return int.TryParse(address.AsSpan(colon + 1), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var port)
               && port is > 0 and <= ushort.MaxValue && !host.Any(char.IsWhiteSpace);
    }

    internal static void MapClusterService(this RpcServer server, ClusterAdmin admin, Func<Exception, RpcException?> translate)
    {
        server.MapUnary<ClusterStatusRequest, ClusterStatusReply>(ServiceName, "Status", ClusterStatusRequest.Parser,
            (_, ctx) => Invoke(() => admin.StatusAsync(ctx.CancellationToken), translate));
        server.MapUnary<AddMemberRequest, MemberChangeReply>(ServiceName, "AddMember", AddMemberRequest.Parser,
            (req, ctx) => Invoke(() => admin.AddMemberAsync(req, ctx.CancellationToken), translate));
        server.MapUnary<RemoveMemberRequest, MemberChangeReply>(ServiceName, "RemoveMember", RemoveMemberRequest.Parser,
            (req, ctx) => Invoke(() => admin.RemoveMemberAsync(req, ctx.CancellationToken), translate));
        server.MapUnary<TransferLeaderRequest, TransferLeaderReply>(ServiceName, "TransferLeader", TransferLeaderRequest.Parser,
            (req, ctx) => Invoke(() => admin.TransferLeaderAsync(req, ctx.CancellationToken), translate));
        server.MapUnary<SnapshotRequest, SnapshotReply>(ServiceName, "Snapshot", SnapshotRequest.Parser,
            (_, ctx) => Invoke(() => admin.SnapshotAsync(ctx.CancellationToken), translate));
    }

    private static async Task<T> Invoke<T>(Func<Task<T>> call, Func<Exception, RpcException?> translate)
    {
        try
        {
            return await call().ConfigureAwait(false);
        }
        catch (Exception e) when (e is not RpcException && translate(e) is { } mapped)
        {
            throw mapped;
        }
    }
}

/// <summary>Implements <c>mirrorfs.Cluster</c> for one host. Leader-only calls made on a follower throw
/// <see cref="NotLeaderException"/>, which becomes UNAVAILABLE with the leader's address as a trailer.</summary>
internal sealed class ClusterAdmin(MetaServerHost host)
{
    /// <summary>How long TransferLeader waits for the target to take over, in election timeouts.</summary>
    private const int TransferWaitElectionTimeouts = 10;

    private const int TransferPollMs = 10;

    private RaftLog Raft => host.Raft ?? throw new RpcException(StatusCode.FailedPrecondition,
        $"metaserver {host.PublicAddress} runs as a single node (no --id): membership and leadership cannot change; start a cluster with --id and --peers");

    public async Task<ClusterStatusReply> StatusAsync(CancellationToken ct)
    {
        if (host.Raft is not { } raft)
        {
            var log = host.Log;
            return new ClusterStatusReply
            {
                Node = new NodeStatus
                {
                    Id = 0, Address = host.PublicAddress, Role = "leader", Term = DurableSingleNodeLog.FixedTerm,
                    Commit = log.CommitIndex, Applied = log.AppliedIndex, LastIndex = log.CommitIndex,
                    SnapshotIndex = log.LastSnapshotIndex,
                },
                LeaderAddress = host.PublicAddress,
            };
        }
        var s = await raft.GetStatusAsync(ct).ConfigureAwait(false);
        var reply = new ClusterStatusReply
        {
            Node = new NodeStatus
            {
                Id = s.Id, Address = host.PublicAddress, Role = ClusterRpc.RoleName(s.Role), Term = s.Term,
                Commit = s.Commit, Applied = s.Applied, LastIndex = s.LastIndex, SnapshotIndex = s.SnapshotIndex,
                Leader = s.Leader,
            },
            LeaderAddress = s.Leader == 0 ? "" : AddressOf(s, s.Leader) ?? "",
        };
        AddMembers(reply.Members, s);
        return reply;
    }

    public async Task<MemberChangeReply> AddMemberAsync(AddMemberRequest r, CancellationToken ct)
    {
        if (r.Id == 0)
        {
            throw new RpcException(StatusCode.InvalidArgument, "member id 0 is reserved; give the new member a non-zero id");
        }
        if (!ClusterRpc.IsHostPort(r.Address))
        {
            throw new RpcException(StatusCode.InvalidArgument, $"member address '{r.Address}' is not host:port");
        }
        return await ChangeAsync(ConfChangeType.AddVoter, r.Id, r.Address, ct).ConfigureAwait(false);
    }

    public Task<MemberChangeReply> RemoveMemberAsync(RemoveMemberRequest r, CancellationToken ct) =>
        ChangeAsync(ConfChangeType.RemoveVoter, r.Id, null, ct);

    private async Task<MemberChangeReply> ChangeAsync(ConfChangeType type, ulong id, string? address, CancellationToken ct)
    {
        var raft = Raft;
        var index = await raft.ProposeConfChangeAsync(type, id, address, ct).ConfigureAwait(false);
        var reply = new MemberChangeReply { Index = index };
        AddMembers(reply.Members, await raft.GetStatusAsync(ct).ConfigureAwait(false));
        return reply;
    }

    public async Task<TransferLeaderReply> TransferLeaderAsync(TransferLeaderRequest r, CancellationToken ct)
    {
        var raft = Raft;
        var s = await raft.GetStatusAsync(ct).ConfigureAwait(false);
        if (s.Role != RaftRole.Leader)
        {
            throw new NotLeaderException(s.Leader == 0 ? null : AddressOf(s, s.Leader));
        }
        if (r.Id == s.Id)
        {
            return new TransferLeaderReply { Leader = s.Id, Term = s.Term };
        }
        if (!s.Voters.Contains(r.Id))
        {
            throw new RpcException(StatusCode.FailedPrecondition, $"node {r.Id} is not a member (members: {string.Join(",", s.Voters)})");
        }
        if (!await raft.TransferLeadershipAsync(r.Id, ct).ConfigureAwait(false))
        {
            throw new RpcException(StatusCode.FailedPrecondition, $"leadership transfer to node {r.Id} refused; retry (leadership may just have moved)");
        }
        var waitMs = TransferWaitElectionTimeouts * host.Options.ElectionTimeoutMs;
        var deadline = Environment.TickCount64 + waitMs;
        while (Environment.TickCount64 < deadline)
        {
            await Task.Delay(TransferPollMs, ct).ConfigureAwait(false);
            var now = await raft.GetStatusAsync(ct).ConfigureAwait(false);
            if (now.Leader == r.Id)
            {
                return new TransferLeaderReply { Leader = r.Id, Term = now.Term };
            }
        }
        throw new RpcException(StatusCode.DeadlineExceeded,
            $"leadership did not move to node {r.Id} within {waitMs} ms; check that it is running and caught up (cluster status)");
    }

    public async Task<SnapshotReply> SnapshotAsync(CancellationToken ct)
    {
        if (host.Raft is { } raft)
        {
            return new SnapshotReply { Id = raft.Id, Index = await raft.SnapshotAsync(ct).ConfigureAwait(false) };
        }
        var info = await host.Log.SnapshotAsync(ct).ConfigureAwait(false);
        return new SnapshotReply { Id = 0, Index = info?.Index ?? host.Log.LastSnapshotIndex };
    }

    private string? AddressOf(RaftStatus s, ulong id) =>
        s.Addresses.TryGetValue(id, out var a) ? a : host.Transport?.AddressOf(id);

    private void AddMembers(Google.Protobuf.Collections.RepeatedField<MemberInfo> members, RaftStatus s)
    {
        foreach (var v in s.Voters)
        {
            members.Add(new MemberInfo { Id = v, Address = AddressOf(s, v) ?? "", Match = s.Match.GetValueOrDefault(v) });
        }
    }
}
