// Block deletion waits for the mirrors: a pending delete is eligible only once every recorded mirror applied its entry.
using Google.Protobuf;
using MirrorFS.Core.Meta;
using MirrorFS.MetaServer.Engine;

namespace MirrorFS.MetaServer.Tests.Mirror;

public sealed class MirrorGateTests
{
    private const long T0 = 1_700_000_000_000_000_000;

    [Fact]
    public void A_pending_delete_waits_until_every_mirror_has_applied_the_entry_that_released_it()
    {
        using var sm = new MetaStateMachine();
        ulong index = 0;
        var root = new Credentials();
        ulong Apply(Command c)
        {
            var r = HeartbeatReply.Parser.ParseFrom(sm.Apply(++index, c.ToByteArray()));
            Assert.True(r.Errno == 0, $"command {index} ({c.OpCase}) failed: errno {r.Errno}");
            return r.Index;
        }
        Progress(0); // no mirror yet: nothing to wait for, but register two now
        Apply(new Command { NowNs = T0, Format = new FormatRequest { Volume = new Volume { Name = "vol", Uuid = "0f8fad5b-d9cb-469f-a165-70867728950e", Storage = "mem://" } } });
        Apply(new Command { NowNs = T0, NewId = 7, NewSession = new NewSessionRequest { Info = new ClientInfo { Hostname = "h" } } });
        Apply(new Command { NowNs = T0 + 1, SessionId = 7, Seq = 1, NewInode = 2, Create = new CreateRequest { Cred = root, Parent = 1, Name = ByteString.CopyFromUtf8("f"), Mode = 0x1A4 } });
        Apply(new Command { NowNs = T0 + 2, NewId = 1, NewSliceIds = new NewSliceIdsRequest { Cred = root, Count = 1 } });
        Apply(new Command { NowNs = T0 + 3, WriteSlice = new WriteSliceRequest { Cred = root, Inode = 2, Slice = new Slice { Id = 1, Size = 10, Length = 10 } } });
        var released = Apply(new Command { NowNs = T0 + 4, Truncate = new TruncateRequest { Cred = root, Inode = 2, Size = 0 } });

        ListPendingDeletesReply Eligible() => sm.ListPendingDeletes(new ListPendingDeletesRequest { EligibleOnly = true }, T0 + 10);
        Assert.Empty(Eligible().Entries);               // both mirrors are at index 1
        Progress(released, ("a", released), ("b", released - 1));
        Assert.Empty(Eligible().Entries);               // b has not applied the truncate yet
        Assert.Equal(released - 1, sm.MinMirrorApplied());
        Progress(released, ("b", released));
        Assert.Single(Eligible().Entries);
        Assert.Equal(1UL, Eligible().Entries[0].SliceId);

        void Progress(ulong at, params (string Id, ulong Applied)[] mirrors)
        {
            var cmd = new Command { NowNs = T0 + 5 + (long)index, MirrorProgress = new MirrorProgressRequest() };
            if (mirrors.Length == 0)
            {
                mirrors = [("a", 1), ("b", 1)];
            }
            cmd.MirrorProgress.Mirrors.Add(mirrors.Select(m => new MirrorInfo { MirrorId = m.Id, AppliedIndex = m.Applied }));
            _ = at;
            Apply(cmd);
        }
    }
}
