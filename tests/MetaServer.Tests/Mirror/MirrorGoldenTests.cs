// Golden tests freezing the mirror commands' encoding and snapshot format v3 (mirror section) byte for byte.
//
// GOLDENS MAY ONLY GROW (see GoldenTests): never edit a line of Golden/mirror.txt; add new cases and run once with
// MIRRORFS_UPDATE_GOLDEN=1 to append them.
using Google.Protobuf;
using MirrorFS.Core.Meta;
using MirrorFS.MetaServer.Engine;
using MirrorFS.MetaServer.Tests.Engine;

namespace MirrorFS.MetaServer.Tests.Mirror;

public sealed class MirrorGoldenTests
{
    private const long T0 = 1_700_000_000_123_456_789;
    private const string File = "mirror.txt";

    internal static IEnumerable<(string Name, Command Cmd)> Commands()
    {
        var inner = new Command { NowNs = T0, SessionId = 7, Seq = 3, Heartbeat = new HeartbeatRequest() };
        var entries = new Command { MirrorEntries = new MirrorEntriesRequest { FromIndex = 5, ThroughIndex = 9 } };
        entries.MirrorEntries.Entries.Add(new ChangelogEntry { Index = 6, TimeNs = T0, Command = inner.ToByteString() });
        entries.MirrorEntries.Entries.Add(new ChangelogEntry { Index = 8, TimeNs = T0 + 1, Command = ByteString.Empty });
        yield return ("mirror_entries", entries);
        var progress = new Command { NowNs = T0 + 2, MirrorProgress = new MirrorProgressRequest() };
        progress.MirrorProgress.Mirrors.Add(new MirrorInfo { MirrorId = "mirror-s3", AppliedIndex = 42, LastSeenNs = T0 + 2, RegisteredNs = T0 });
        yield return ("mirror_progress", progress);
        yield return ("mirror_bootstrap", new Command
        {
            MirrorBootstrap = new MirrorBootstrapRequest { PrimaryIndex = 77, Offset = 1 << 20, Data = ByteString.CopyFrom(1, 2, 3), TotalBytes = (2 << 20) + 3, Last = true },
        });
        yield return ("promote", new Command { Promote = new PromoteRequest() });
        yield return ("mirror_setup", new Command { MirrorSetup = new MirrorSetupRequest { Primary = "mirrorfs://10.0.0.1:9400,10.0.0.2:9400/vol", MirrorStorage = "s3://mirror-bucket/vol" } });
    }

    /// <summary>A primary's fixed state with a recorded mirror (snapshot v3, shared section only).</summary>
    private static MetaStateMachine PrimaryWithMirror()
    {
        var sm = new MetaStateMachine();
        ulong index = 0;
        foreach (var cmd in FixedCommands())
        {
            var errno = HeartbeatReply.Parser.ParseFrom(sm.Apply(++index, cmd.ToByteArray())).Errno;
            Assert.True(errno == 0, $"fixed command {index} failed with errno {errno}");
        }
        return sm;
    }

    /// <summary>A mirror that applied the same commands wrapped, after setup and a Raft no-op.</summary>
    private static MetaStateMachine MirrorOfIt()
    {
        var sm = new MetaStateMachine();
        ulong own = 0;
        Assert.Equal(0, HeartbeatReply.Parser.ParseFrom(sm.Apply(++own, Commands().First(c => c.Name == "mirror_setup").Cmd.ToByteArray())).Errno);
        sm.Apply(++own, []); // a Raft no-op of the mirror's own log
        var wrapped = new MirrorEntriesRequest { FromIndex = 1 };
        ulong index = 0;
        foreach (var cmd in FixedCommands())
        {
            wrapped.Entries.Add(new ChangelogEntry { Index = ++index, TimeNs = cmd.NowNs, Command = cmd.ToByteString() });
        }
        wrapped.ThroughIndex = index;
        var reply = MirrorEntriesReply.Parser.ParseFrom(sm.Apply(++own, new Command { MirrorEntries = wrapped }.ToByteArray()));
        Assert.Equal(0, reply.Errno);
        Assert.Equal(index, reply.Index);
        return sm;
    }

    /// <summary>A small fixed history (defined here, so other goldens growing cannot change it): a volume, a session,
    /// a directory, a file with data then truncated (a pending delete), an xattr, a symlink, and a mirror's progress.</summary>
    private static List<Command> FixedCommands()
    {
        var alice = new Credentials { Uid = 1000, Gid = 1000 };
        var n = (string s) => ByteString.CopyFromUtf8(s);
        Command C(ulong seq, long t) => new() { SessionId = 7, Seq = seq, AckedSeq = seq - 1, NowNs = T0 + t };
        var cmds = new List<Command>
        {
            new() { NowNs = T0, Format = new FormatRequest { Cred = new Credentials(), RootMode = 0x1FF, Volume = new Volume { Name = "vol", Uuid = "0f8fad5b-d9cb-469f-a165-70867728950e", Storage = "s3://bucket/vol", BlockSize = 4 << 20 } } },
            new() { NowNs = T0 + 1, NewId = 7, NewSession = new NewSessionRequest { Info = new ClientInfo { Hostname = "host-a" } } },
        };
        var c = C(1, 2);
        c.NewInode = 2;
        c.Mkdir = new MkdirRequest { Cred = alice, Parent = 1, Name = n("dir"), Mode = 0x1ED };
        cmds.Add(c);
        c = C(2, 3);
        c.NewInode = 3;
        c.Create = new CreateRequest { Cred = alice, Parent = 2, Name = n("file"), Mode = 0x1A4 };
        cmds.Add(c);
        c = C(3, 4);
        c.NewId = 1;
        c.NewSliceIds = new NewSliceIdsRequest { Cred = alice, Count = 4 };
        cmds.Add(c);
        c = C(4, 5);
        c.WriteSlice = new WriteSliceRequest { Cred = alice, Inode = 3, ChunkIndex = 0, Slice = new Slice { Id = 1, Size = 100, Length = 100 } };
        cmds.Add(c);
        c = C(5, 6);
        c.Truncate = new TruncateRequest { Cred = alice, Inode = 3, Size = 0 };
        cmds.Add(c);
        c = C(6, 7);
        c.SetXattr = new SetXattrRequest { Cred = alice, Inode = 3, Name = n("user.k"), Value = n("v") };
        cmds.Add(c);
        c = C(7, 8);
        c.NewInode = 4;
        c.Symlink = new SymlinkRequest { Cred = alice, Parent = 1, Name = n("ln"), Target = n("dir/file") };
        cmds.Add(c);
        cmds.Add(Commands().First(x => x.Name == "mirror_progress").Cmd);
        return cmds;
    }

    private static string Hex(Action<Stream> write)
    {
        using var ms = new MemoryStream();
        write(ms);
        return Convert.ToHexString(ms.ToArray());
    }

    [Fact]
    public void Mirror_commands_and_snapshot_v3_are_frozen()
    {
        using var primary = PrimaryWithMirror();
        using var mirror = MirrorOfIt();
        var actual = Commands().Select(c => (c.Name, Convert.ToHexString(c.Cmd.ToByteArray()))).ToList();
        actual.Add(("snapshot_v3_primary_with_mirror", Hex(s => primary.WriteSnapshot(s))));
        actual.Add(("snapshot_v3_mirror", Hex(s => mirror.WriteSnapshot(s))));
        GoldenFile.Verify(File, actual);

        var golden = GoldenFile.Read(File);
        foreach (var (name, cmd) in Commands())
        {
            Assert.Equal(cmd, Command.Parser.ParseFrom(Convert.FromHexString(golden[name])));
        }
        // Frozen snapshots restore to states that re-encode identically, with their roles and indexes.
        foreach (var name in new[] { "snapshot_v3_primary_with_mirror", "snapshot_v3_mirror" })
        {
            var bytes = Convert.FromHexString(golden[name]);
            using var restored = new MetaStateMachine();
            restored.RestoreSnapshot(new MemoryStream(bytes));
            Assert.Equal(Convert.ToHexString(bytes), Hex(s => restored.WriteSnapshot(s)));
        }
        // The mirror reflects the same primary state: equal comparable snapshots, different own log positions.
        Assert.Equal(Hex(s => primary.WriteComparableSnapshot(s)), Hex(s => mirror.WriteComparableSnapshot(s)));
        Assert.Equal(MirrorRole.Mirror, mirror.Role);
        Assert.NotEqual(primary.AppliedIndex, mirror.AppliedIndex);
        Assert.Equal(primary.LogicalIndex, mirror.LogicalIndex);
    }
}
