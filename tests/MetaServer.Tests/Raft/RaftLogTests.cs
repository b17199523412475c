using System.Text;
using MirrorFS.MetaServer.Consensus;
using MirrorFS.MetaServer.Raft;
using MirrorFS.MetaServer.Tests.Storage;

namespace MirrorFS.MetaServer.Tests.Raft;

/// <summary>Three real RaftLogs (WAL, hard state and snapshots on disk) talking over an in-process transport.</summary>
public sealed class RaftLogTests : IAsyncDisposable
{
    private const int WaitMs = 20_000;
    private readonly TempDir _dir = new();
    private readonly Dictionary<ulong, RaftLog?> _logs = [];
    private readonly Dictionary<ulong, HashChainStateMachine> _machines = [];
    private readonly ulong[] _voters = [1, 2, 3];

    private sealed class Loopback(RaftLogTests owner) : IRaftTransport
    {
        public void Send(RaftMessage message)
        {
            lock (owner._logs)
            {
                if (owner._logs.GetValueOrDefault(message.To) is { } to)
                {
                    to.Receive(message);
                }
            }
        }
    }

    private void Start(ulong id, string dirName)
    {
        var sm = new HashChainStateMachine();
        var log = RaftLog.Open(sm, new RaftLogOptions
        {
            Id = id, InitialVoters = _voters, Directory = _dir.Sub(dirName), Transport = new Loopback(this),
            TickMs = 10, ElectionTicks = 10, HeartbeatTicks = 2, SnapshotEveryEntries = 8,
        });
        lock (_logs)
        {
            _logs[id] = log;
            _machines[id] = sm;
        }
    }

    private async Task StopAsync(ulong id)
    {
        RaftLog? log;
        lock (_logs)
        {
            log = _logs[id];
            _logs[id] = null;
        }
        await log!.DisposeAsync();
    }

    private static async Task<T> Eventually<T>(Func<T?> probe, string what) where T : class
    {
        var deadline = Environment.TickCount64 + WaitMs;
        while (Environment.TickCount64 < deadline)
        {
            if (probe() is { } v)
            {
                return v;
            }
            await Task.Delay(20);
        }
        throw new TimeoutException($"waited {WaitMs} ms for {what}");
    }

    private Task<RaftLog> LeaderAsync() => Eventually(() =>
    {
        lock (_logs)
        {
            return _logs.Values.FirstOrDefault(l => l is { Status.Role: RaftRole.Leader });
        }
    }, "a leader");

    private async Task<string> ProposeOnLeaderAsync(string command)
    {
        for (var attempt = 0; ; attempt++)
        {
            var leader = await LeaderAsync();
            try
            {
                var (_, reply) = await leader.ProposeAsync(Encoding.UTF8.GetBytes(command));
                return Encoding.UTF8.GetString(reply);
            }
            catch (NotLeaderException) when (attempt < 20)
            {
                await Task.Delay(50);
            }
        }
    }

    private Task AllAppliedAsync(ulong index, params ulong[] ids) => Eventually(() =>
    {
        lock (_logs)
        {
            return ids.All(id => _logs[id] is { } l && l.AppliedIndex >= index) ? "ok" : null;
        }
    }, $"nodes {string.Join(",", ids)} to apply {index}");

    [Fact]
    public async Task ReplicatesRecoversFromDiskAndCatchesUpALaggingNodeBySnapshot()
    {
        foreach (var id in _voters)
        {
            Start(id, $"n{id}");
        }
        for (var i = 0; i < 20; i++)
        {
            Assert.Equal(i == 0 ? "" : $"v{i - 1}", await ProposeOnLeaderAsync($"k=v{i}"));
        }
        var leader = await LeaderAsync();
        var follower = _voters.First(id => !ReferenceEquals(_logs[id], leader));
        await Assert.ThrowsAsync<NotLeaderException>(() => _logs[follower]!.ProposeAsync(Encoding.UTF8.GetBytes("x=1")));
        var readAt = await leader.ReadBarrierAsync();
        Assert.True(readAt >= 20, $"read barrier at {readAt} before the 20 writes");
        await AllAppliedAsync(leader.CommitIndex, _voters);

        // Restart a follower from its disk: same state after replay.
        await StopAsync(follower);
        Start(follower, $"n{follower}");
        await ProposeOnLeaderAsync("after=restart");
        var leaderId = _voters.First(id => ReferenceEquals(_logs[id], leader));
        await AllAppliedAsync(leader.CommitIndex, _voters);
        Assert.Equal(_machines[leaderId].Values["k"], _machines[follower].Values["k"]);

        // Stop another follower while the leader moves on and compacts past it: on restart it needs a snapshot.
        var behind = _voters.First(id => id != leaderId && id != follower);
        await StopAsync(behind);
        var appliedBefore = leader.AppliedIndex;
        for (var i = 0; i < 30; i++)
        {
            await ProposeOnLeaderAsync($"b=w{i}");
        }
        Start(behind, $"n{behind}");
        await ProposeOnLeaderAsync("after=behind");
        await AllAppliedAsync(leader.CommitIndex, _voters);
        Assert.True(_machines[behind].AppliedIndex > appliedBefore + 30);
        Assert.True(_logs[behind]!.SnapshotsInstalled >= 1, "the lagging node caught up without a snapshot");
        Assert.Equal("w29", _machines[behind].Values["b"]);
        Assert.Equal("behind", _machines[behind].Values["after"]);
        Assert.Equal(_machines[leaderId].Hash, _machines[behind].Hash);
    }

    [Fact]
    public async Task RemovesAndReAddsAVoter()
    {
        foreach (var id in _voters)
        {
            Start(id, $"n{id}");
        }
        await ProposeOnLeaderAsync("a=1");
        var leader = await LeaderAsync();
        var leaderId = _voters.First(id => ReferenceEquals(_logs[id], leader));
        var other = _voters.First(id => id != leaderId);
        await leader.ProposeConfChangeAsync(ConfChangeType.RemoveVoter, other);
        // With the voter gone, the two left form the quorum even while it is down.
        await StopAsync(other);
        await ProposeOnLeaderAsync("a=2");
        Start(other, $"n{other}");
        await (await LeaderAsync()).ProposeConfChangeAsync(ConfChangeType.AddVoter, other);
        await ProposeOnLeaderAsync("a=3");
        await AllAppliedAsync((await LeaderAsync()).CommitIndex, _voters);
        Assert.Equal("3", _machines[other].Values["a"]);
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var id in _voters)
        {
            if (_logs.GetValueOrDefault(id) is not null)
            {
                await StopAsync(id);
            }
        }
        _dir.Dispose();
    }
}
