// Three Raft metaserver hosts over the real RPC transport: replication, failover, exactly-once, admin service.
using System.Text.Json;
using Google.Protobuf;
using MirrorFS.Core.Meta;
using MirrorFS.MetaServer.Consensus;
using MirrorFS.MetaServer.Raft;
using Xunit.Abstractions;

namespace MirrorFS.MetaServer.Tests.Cluster;

public sealed class ClusterTests(ITestOutputHelper output) : IAsyncLifetime
{
    private static readonly Credentials Root = new();
    private ClusterHarness _c = null!;

    public async Task InitializeAsync() => _c = await ClusterHarness.StartAsync();

    public async Task DisposeAsync() => await _c.DisposeAsync();

    private static ByteString N(string name) => ByteString.CopyFromUtf8(name);

    private static async Task<ulong> FormatAndMkdirAsync(RpcMetaClient client, string dir)
    {
        Assert.Equal(0, (await client.FormatAsync(new FormatRequest { Cred = Root, Volume = new Volume { Name = "v", Storage = "file:///tmp/x", BlockSize = 1 << 20 } })).Errno);
        var mk = await client.MkdirAsync(new MkdirRequest { Cred = Root, Parent = 1, Name = N(dir), Mode = 0x1ED });
        Assert.Equal(0, mk.Errno);
        return mk.Attr.Inode;
    }

    [Fact]
    public async Task ElectsALeaderAndReplicatesCreatesToEveryMember()
    {
        var leader = await _c.LeaderAsync();
        await using var client = _c.Client();
        var dir = await FormatAndMkdirAsync(client, "d");
        for (var i = 0; i < 50; i++)
        {
            Assert.Equal(0, (await client.MknodAsync(new MknodRequest { Cred = Root, Parent = dir, Name = N($"f{i}"), Mode = 0x81A4 })).Errno);
        }
        await _c.AllAppliedAsync(leader.Raft!.CommitIndex);
        // The followers' acknowledgements came back in the Step calls' replies, not as calls of their own.
        Assert.True(leader.Transport!.AnswersReceived >= 50, $"only {leader.Transport.AnswersReceived} answers rode Step replies");
        foreach (var host in _c.Running)
        {
            // Read each replica's state directly: followers answer clients only through the leader.
            var listing = host.Service.State.ReadDir(new ReadDirRequest { Cred = Root, Inode = dir, Limit = 1000 });
            Assert.Equal(0, listing.Errno);
            Assert.Equal(50, listing.Entries.Count(e => e.Name.ToStringUtf8().StartsWith('f')));
        }
        var follower = _c.Running.First(h => h != leader);
        var refused = await Assert.ThrowsAsync<NotLeaderException>(() => follower.Service.GetAttrAsync(new GetAttrRequest { Cred = Root, Inode = 1 }));
        Assert.Equal(leader.PublicAddress, refused.LeaderHint);
    }

    [Fact]
    public async Task ClientsListingEveryMemberSurviveStoppingTheLeaderAndEachCreateHappensOnce()
    {
        var leader = await _c.LeaderAsync();
        await using var setup = _c.Client();
        var dir = await FormatAndMkdirAsync(setup, "d");
        const int Writers = 4;
        const int PerWriter = 60;
        var stopAfter = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var done = 0;
        var writers = Enumerable.Range(0, Writers).Select(w => Task.Run(async () =>
        {
            await using var client = _c.Client();
            var session = (await client.NewSessionAsync(new NewSessionRequest { Cred = Root, Info = new ClientInfo { Hostname = $"w{w}" } })).SessionId;
            var errnos = new List<int>();
            for (ulong seq = 1; seq <= PerWriter; seq++)
            {
                var r = await client.CreateAsync(new CreateRequest
                {
                    SessionId = session, Seq = seq, AckedSeq = seq - 1, Cred = Root, Parent = dir, Name = N($"w{w}-{seq}"), Mode = 0x81A4,
                });
                errnos.Add(r.Errno);
                if (Interlocked.Increment(ref done) == Writers * PerWriter / 3)
                {
                    stopAfter.TrySetResult();
                }
            }
            return errnos;
        })).ToList();
        await stopAfter.Task.WaitAsync(TimeSpan.FromMilliseconds(ClusterHarness.WaitMs));
        var old = ClusterHarness.IdOf(leader);
        var stoppedAt = Environment.TickCount64;
        await _c.StopNodeAsync(old);
        var results = await Task.WhenAll(writers);
        var newLeader = await _c.LeaderAsync();
        output.WriteLine($"stopped leader {old}; writers finished {Environment.TickCount64 - stoppedAt} ms later; new leader {ClusterHarness.IdOf(newLeader)}");
        Assert.NotEqual(old, ClusterHarness.IdOf(newLeader));
        // A retried create that had committed before the failover returns its first reply (0), never EEXIST.
        Assert.All(results.SelectMany(r => r), e => Assert.Equal(0, e));
        var listing = await setup.ReadDirAsync(new ReadDirRequest { Cred = Root, Inode = dir, Limit = 4096 });
        Assert.Equal(0, listing.Errno);
        var names = listing.Entries.Select(e => e.Name.ToStringUtf8()).Where(n => n.StartsWith('w')).ToList();
        Assert.Equal(Writers * PerWriter, names.Count);
        Assert.Equal(Writers * PerWriter, names.Distinct().Count());
        Assert.NotEqual(old, ClusterHarness.IdOf(await _c.LeaderAsync()));
        Assert.Contains(_c.Addresses[ClusterHarness.IdOf(newLeader)], setup.CurrentAddress);
    }

    [Fact]
    public async Task ARetryWithTheSameSessionAndSeqOnANewLeaderReturnsTheFirstReply()
    {
        await _c.LeaderAsync();
        await using var client = _c.Client();
        var dir = await FormatAndMkdirAsync(client, "d");
        var session = (await client.NewSessionAsync(new NewSessionRequest { Cred = Root, Info = new ClientInfo { Hostname = "x" } })).SessionId;
        var request = new CreateRequest { SessionId = session, Seq = 1, Cred = Root, Parent = dir, Name = N("once"), Mode = 0x81A4 };
        var first = await client.CreateAsync(request);
        Assert.Equal(0, first.Errno);
        var leader = ClusterHarness.IdOf(await _c.LeaderAsync());
        var target = _c.Peers.Keys.First(id => id != leader);
        var (code, _, err) = await ClusterHarness.CliAsync("transfer-leader", $"{target}", "--meta", _c.Meta, "--token-file", _c.TokenFile);
        Assert.True(code == 0, err);
        var again = await client.CreateAsync(request);
        Assert.Equal(first.Attr.Inode, again.Attr.Inode);
        Assert.Equal(0, again.Errno);
        var fresh = await client.CreateAsync(new CreateRequest { SessionId = session, Seq = 2, Cred = Root, Parent = dir, Name = N("once"), Mode = 0x81A4 });
        Assert.Equal(Errno.EEXIST, fresh.Errno);
    }

    [Fact]
    public async Task TransferLeaderMovesLeadershipAndStatusShowsEveryMember()
    {
        var leader = ClusterHarness.IdOf(await _c.LeaderAsync());
        var target = _c.Peers.Keys.First(id => id != leader);
        // Sent to a follower first: the CLI follows the not-leader hint.
        var follower = _c.Addresses[_c.Peers.Keys.First(id => id != leader && id != target)];
        var (code, stdout, err) = await ClusterHarness.CliAsync("transfer-leader", $"{target}", "--meta", follower, "--token-file", _c.TokenFile);
        Assert.True(code == 0, err);
        Assert.Contains($"member {target} leads", stdout);
        Assert.Equal(target, ClusterHarness.IdOf(await _c.LeaderAsync()));

        (code, stdout, err) = await ClusterHarness.CliAsync("cluster", "status", "--meta", follower, "--token-file", _c.TokenFile, "--json");
        Assert.True(code == 0, err);
        using var json = JsonDocument.Parse(stdout);
        Assert.Equal(target, json.RootElement.GetProperty("leader").GetUInt64());
        var nodes = json.RootElement.GetProperty("nodes").EnumerateArray().ToList();
        Assert.Equal([1UL, 2UL, 3UL], nodes.Select(n => n.GetProperty("id").GetUInt64()).Order());
        Assert.All(nodes, n => Assert.True(n.GetProperty("reachable").GetBoolean()));
        Assert.Single(nodes, n => n.GetProperty("role").GetString() == "leader");

        (code, stdout, _) = await ClusterHarness.CliAsync("cluster", "status", "--meta", follower, "--token-file", _c.TokenFile);
        Assert.Equal(0, code);
        Assert.Contains($"leader: {target} ({_c.Addresses[target]})", stdout);
        Assert.Contains("LAG", stdout);
    }

    [Fact]
    public async Task MembersAreAddedAndRemovedThroughTheAdminService()
    {
        await using var client = _c.Client();
        var dir = await FormatAndMkdirAsync(client, "d");
        var leaderId = ClusterHarness.IdOf(await _c.LeaderAsync());
        // Node 4 starts with no configuration and learns everything (addresses included) from the leader.
        var fourth = await _c.StartNodeAsync(4, $"127.0.0.1:{ClusterHarness.FreePort()}");
        Assert.Empty((await fourth.Raft!.GetStatusAsync()).Voters);
        var follower = _c.Addresses[_c.Peers.Keys.First(id => id != leaderId)];
        var (code, stdout, err) = await ClusterHarness.CliAsync("member", "add", "4", _c.Addresses[4], "--meta", follower, "--token-file", _c.TokenFile);
        Assert.True(code == 0, err);
        Assert.Contains("added member 4", stdout);
        Assert.Equal(0, (await client.MknodAsync(new MknodRequest { Cred = Root, Parent = dir, Name = N("after-add"), Mode = 0x81A4 })).Errno);
        await _c.AllAppliedAsync((await _c.LeaderAsync()).Raft!.CommitIndex);
        var s4 = await fourth.Raft.GetStatusAsync();
        Assert.Equal([1UL, 2UL, 3UL, 4UL], s4.Voters.Order());
        Assert.Equal(_c.Addresses[1], s4.Addresses[1]);
        Assert.Equal(0, fourth.Service.State.Lookup(new LookupRequest { Cred = Root, Parent = dir, Name = N("after-add") }).Errno);

        // Adding it again is refused with a reason, not retried forever.
        (code, _, err) = await ClusterHarness.CliAsync("member", "add", "4", _c.Addresses[4], "--meta", _c.Meta, "--token-file", _c.TokenFile);
        Assert.Equal(1, code);
        Assert.Contains("already a member", err);

        // Remove the leader itself: it hands over, and the other three carry on.
        (code, stdout, err) = await ClusterHarness.CliAsync("member", "remove", $"{leaderId}", "--meta", _c.Meta, "--token-file", _c.TokenFile);
        Assert.True(code == 0, err);
        await _c.StopNodeAsync(leaderId);
        Assert.Equal(0, (await client.MknodAsync(new MknodRequest { Cred = Root, Parent = dir, Name = N("after-remove"), Mode = 0x81A4 })).Errno);
        var leader = await _c.LeaderAsync();
        Assert.NotEqual(leaderId, ClusterHarness.IdOf(leader));
        Assert.DoesNotContain(leaderId, (await leader.Raft!.GetStatusAsync()).Voters);
    }

    [Fact]
    public async Task ALaggingMemberCatchesUpByInstallSnapshotAfterAnAdminSnapshot()
    {
        await using var client = _c.Client();
        var dir = await FormatAndMkdirAsync(client, "d");
        var leader = await _c.LeaderAsync();
        var lagging = _c.Peers.Keys.First(id => id != ClusterHarness.IdOf(leader));
        await _c.StopNodeAsync(lagging);
        for (var i = 0; i < 40; i++)
        {
            Assert.Equal(0, (await client.MknodAsync(new MknodRequest { Cred = Root, Parent = dir, Name = N($"f{i}"), Mode = 0x81A4 })).Errno);
        }
        // Every running member compacts its log, so whichever of them leads when the lagging one returns (a busy
        // machine can delay heartbeats into an election) has to send a snapshot.
        foreach (var member in _c.Running.ToList())
        {
            var (code, stdout, err) = await ClusterHarness.CliAsync("snapshot", "--meta", member.PublicAddress, "--token-file", _c.TokenFile);
            Assert.True(code == 0, err);
            Assert.Contains("snapshot at index", stdout);
            Assert.True((await member.Raft!.GetStatusAsync()).SnapshotIndex >= 42, $"member {ClusterHarness.IdOf(member)}'s log was not compacted");
        }

        var back = await _c.StartNodeAsync(lagging);
        // Waits on what the restarted member applies, not on a leader's commit index: leadership may move meanwhile
        // (a busy machine delays heartbeats), and a deposed leader learns the newest commit index late.
        await SeesAsync(back, dir, "f39");
        // The install is counted after the restored state is visible (the log reset in between syncs to disk).
        await ClusterHarness.Eventually(() => back.Raft!.SnapshotsInstalled >= 1 ? "ok" : null,
            "the lagging member to count a snapshot install (it may have caught up without one)");
        // And it keeps following after the install.
        Assert.Equal(0, (await client.MknodAsync(new MknodRequest { Cred = Root, Parent = dir, Name = N("later"), Mode = 0x81A4 })).Errno);
        await SeesAsync(back, dir, "later");
    }

    private static Task<string> SeesAsync(MirrorFS.MetaServer.Hosting.MetaServerHost node, ulong dir, string name) => ClusterHarness.Eventually(
        () => node.Service.State.Lookup(new LookupRequest { Cred = Root, Parent = dir, Name = N(name) }).Errno == 0 ? "ok" : null,
        $"node {ClusterHarness.IdOf(node)} to apply the creation of {name}");

    [Fact]
    public async Task ANodeRestartedFromItsDirectoryKeepsItsStateAndRejoins()
    {
        await using var client = _c.Client();
        var dir = await FormatAndMkdirAsync(client, "d");
        var leader = ClusterHarness.IdOf(await _c.LeaderAsync());
        var follower = _c.Peers.Keys.First(id => id != leader);
        await _c.StopNodeAsync(follower);
        Assert.Equal(0, (await client.MknodAsync(new MknodRequest { Cred = Root, Parent = dir, Name = N("while-down"), Mode = 0x81A4 })).Errno);
        var back = await _c.StartNodeAsync(follower);
        await _c.AllAppliedAsync((await _c.LeaderAsync()).Raft!.CommitIndex);
        Assert.Equal(0, back.Service.State.Lookup(new LookupRequest { Cred = Root, Parent = dir, Name = N("while-down") }).Errno);
    }
}
