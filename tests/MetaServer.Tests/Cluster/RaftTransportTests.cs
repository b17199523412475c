// The RPC Raft transport and the membership encoding: wire round trips, never blocking, old formats still read.
using System.Buffers.Binary;
using MirrorFS.MetaServer.Raft;
using MirrorFS.MetaServer.Storage;
using MirrorFS.MetaServer.Tests.Storage;

namespace MirrorFS.MetaServer.Tests.Cluster;

public sealed class RaftTransportTests
{
    [Fact]
    public void MembershipVersion2CarriesAddressesAndVersion1IsStillRead()
    {
        var v2 = Membership.Encode([1, 2, 7], new Dictionary<ulong, string> { [1] = "10.0.0.1:9401", [7] = "[::1]:9407" });
        var voters = Membership.Decode(v2, out var addresses);
        Assert.Equal([1UL, 2UL, 7UL], voters);
        Assert.Equal("10.0.0.1:9401", addresses[1]);
        Assert.False(addresses.ContainsKey(2)); // unknown stays unknown
        Assert.Equal("[::1]:9407", addresses[7]);

        var v1 = new byte[16];
        BinaryPrimitives.WriteUInt64LittleEndian(v1, 1);
        BinaryPrimitives.WriteUInt64LittleEndian(v1.AsSpan(8), 3);
        Assert.Equal([1UL, 3UL], Membership.Decode(v1, out var none));
        Assert.Empty(none);

        Assert.Throws<InvalidDataException>(() => Membership.Decode(v2.AsSpan(0, v2.Length - 1)));
        var future = (byte[])v2.Clone();
        future[8] = 9;
        Assert.Contains("version 9", Assert.Throws<InvalidDataException>(() => Membership.Decode(future)).Message);
    }

    [Fact]
    public void MessagesSurviveTheWireWithEntriesAndSnapshotChunks()
    {
        var append = new RaftMessage
        {
            Type = MessageType.Append, From = 1, To = 2, Term = 5, LogIndex = 9, LogTerm = 4, Commit = 8,
            Entries = [new RaftEntry(10, 5, EntryKind.Normal, new byte[] { 1, 2, 3 }), new RaftEntry(11, 5, EntryKind.ConfChange, Membership.Encode([1, 2]))],
        };
        var back = RaftWire.FromWire(1, RaftWire.ToWire(append));
        Assert.Equal(append with { Entries = [] }, back with { Entries = [] });
        Assert.Equal(2, back.Entries.Count);
        Assert.Equal(new byte[] { 1, 2, 3 }, back.Entries[0].Data.ToArray());
        Assert.Equal(EntryKind.ConfChange, back.Entries[1].Kind);

        var meta = new SnapshotMeta(100, 4, [1, 2, 3]) { Addresses = new Dictionary<ulong, string> { [3] = "h:3" } };
        var snap = new RaftMessage
        {
            Type = MessageType.Snapshot, From = 1, To = 3, Term = 5,
            Snapshot = new SnapshotChunk(meta, 1 << 20, new byte[] { 9, 9 }, Last: true),
        };
        var chunk = RaftWire.FromWire(1, RaftWire.ToWire(snap)).Snapshot!;
        Assert.Equal((100UL, 4UL), (chunk.Meta.Index, chunk.Meta.Term));
        Assert.Equal([1UL, 2UL, 3UL], chunk.Meta.Voters);
        Assert.Equal("h:3", chunk.Meta.Addresses[3]);
        Assert.Equal(1 << 20, chunk.Offset);
        Assert.True(chunk.Last);
        Assert.Equal(new byte[] { 9, 9 }, chunk.Data.ToArray());

        var bad = RaftWire.ToWire(append);
        bad.Type = (Wire.RaftMessageType)42;
        Assert.Throws<InvalidDataException>(() => RaftWire.FromWire(1, bad));
    }

    [Fact]
    public async Task SendNeverBlocksAndDropsWhatAnUnreachablePeerCannotTake()
    {
        var port = ClusterHarness.FreePort(); // nobody listens there
        await using var t = new RpcRaftTransport(new RpcRaftTransportOptions
        {
            SelfId = 1, SelfAddress = "127.0.0.1:1", Peers = new Dictionary<ulong, string> { [2] = $"127.0.0.1:{port}" },
            QueueMessagesMax = 64, BatchMessagesMax = 16,
        });
        var big = new RaftEntry(1, 1, EntryKind.Normal, new byte[1024]);
        var started = Environment.TickCount64;
        for (var i = 0; i < 20_000; i++)
        {
            t.Send(new RaftMessage { Type = MessageType.Append, From = 1, To = 2, Term = 1, Entries = [big] });
        }
        t.Send(new RaftMessage { Type = MessageType.Heartbeat, From = 1, To = 9, Term = 1 }); // no address known
        var elapsedMs = Environment.TickCount64 - started;
        // At most a full queue, one batch in its call and one message carried over are not dropped yet.
        Assert.True(t.MessagesDropped >= 20_000 - 64 - 16 - 1, $"only {t.MessagesDropped} dropped");
        Assert.True(elapsedMs < 10_000, $"sending 20,000 messages took {elapsedMs} ms");
        await ClusterHarness.Eventually(() => t.FailedCalls > 0 ? "" : null, "a failed call to the absent peer");
        Assert.Equal(0, t.MessagesSent);
    }

    [Fact]
    public async Task ASnapshotWrittenWithTheFirstBodyFormatIsStillRestored()
    {
        using var dir = new TempDir();
        var sm = new HashChainStateMachine();
        sm.Apply(1, "k=v"u8);
        sm.Apply(2, "k=w"u8);
        using (var state = new MemoryStream())
        {
            sm.WriteSnapshot(state);
            var body = new byte[4 + 16 + state.Length];
            BinaryPrimitives.WriteUInt32LittleEndian(body, 2);
            BinaryPrimitives.WriteUInt64LittleEndian(body.AsSpan(4), 1);
            BinaryPrimitives.WriteUInt64LittleEndian(body.AsSpan(12), 2);
            state.ToArray().CopyTo(body, 20);
            new SnapshotStore(dir.Sub("snap")).Write(2, 1, s => s.Write(body));
        }
        var restored = new HashChainStateMachine();
        await using var log = RaftLog.Open(restored, new RaftLogOptions
        {
            Id = 1, InitialVoters = [1], Directory = dir.Path, Transport = new NoTransport(), SnapshotEveryEntries = 1,
        });
        Assert.Equal("w", restored.Values["k"]);
        var status = await log.GetStatusAsync();
        Assert.Equal([1UL, 2UL], status.Voters);
        Assert.Equal(2UL, status.SnapshotIndex);
    }

    private sealed class NoTransport : IRaftTransport
    {
        public void Send(RaftMessage message)
        {
        }
    }
}
