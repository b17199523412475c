// Mirroring between Raft clusters: a three-node primary and a three-node mirror, with leaders stopped on both sides.
using MirrorFS.MetaServer.Engine;
using MirrorFS.MetaServer.Mirror;
using Xunit.Abstractions;

namespace MirrorFS.MetaServer.Tests.Mirror;

public sealed class MirrorRaftTests(ITestOutputHelper output)
{
    private static MirrorHostOptions MirrorOf(RaftMetaCluster primary) => new()
    {
        Primary = PrimaryUrl.Parse($"mirrorfs://{string.Join(",", primary.Addresses)}/vol"),
        MirrorStorage = "mem://mirror-bucket",
        RenewMs = 500,
    };

    [Fact]
    public async Task The_mirror_cluster_follows_a_new_primary_leader_and_a_new_mirror_leader_carries_on()
    {
        const int seed = 6501;
        output.WriteLine($"seed {seed}");
        await using var primary = await RaftMetaCluster.StartAsync(snapshotEvery: 200);
        await using var p = primary.Client();
        await MirrorWorkload.FormatAsync(p);
        await MirrorWorkload.RunAsync(p, seed, 150);
        await using var mirror = await RaftMetaCluster.StartAsync(mirror: MirrorOf(primary));

        var pl = await primary.LeaderAsync();
        var ml = await mirror.LeaderAsync();
        var (index, pb, mb) = await MirrorWorkload.SameIndexSnapshotsAsync(pl.State, ml.State);
        Assert.Equal(pb, mb);
        // Only the mirror leader follows; its followers replicate what it proposed.
        await MirrorWorkload.EventuallyAsync(() => mirror.Running.Where(n => n.Id != ml.Id).All(n => n.Follower!.Status().State == "standby"),
            "the mirror's followers to stand by");

        // The primary's leader goes away: the mirror finds the new one.
        await primary.StopAsync(pl.Id);
        var writes = MirrorWorkload.RunAsync(p, seed + 1, 150);
        // ... and so does the mirror's: another mirror node takes over the following.
        await mirror.StopAsync(ml.Id);
        await writes;
        var pl2 = await primary.LeaderAsync();
        var ml2 = await mirror.LeaderAsync();
        Assert.NotEqual(pl.Id, pl2.Id);
        Assert.NotEqual(ml.Id, ml2.Id);
        var (index2, pb2, mb2) = await MirrorWorkload.SameIndexSnapshotsAsync(pl2.State, ml2.State);
        output.WriteLine($"compared at {index} and {index2}");
        Assert.True(index2 > index);
        Assert.Equal(pb2, mb2);

        // Every surviving mirror replica holds the same state (the mirror's own log replicated it).
        foreach (var n in mirror.Running)
        {
            var (_, x, y) = await MirrorWorkload.SameIndexSnapshotsAsync(pl2.State, n.State);
            Assert.Equal(x, y);
        }
        Assert.Equal(MirrorRole.Mirror, ml2.State.Role);
    }
}
