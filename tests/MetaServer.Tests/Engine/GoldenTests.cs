// Golden tests freezing the Command record encoding and snapshot formats (v3 written, v1 and v2 still read) byte for byte.
//
// GOLDENS MAY ONLY GROW. Never edit or delete a line in Golden/*.txt: a difference means an encoding changed and
// existing logs or snapshots would no longer read the same. To add a golden for a new case, add it to the test and
// run once with MIRRORFS_UPDATE_GOLDEN=1, which appends missing names and never rewrites existing ones.
using Google.Protobuf;
using MirrorFS.Core.Meta;
using MirrorFS.MetaServer.Engine;
using static MirrorFS.MetaServer.Tests.Engine.MetaHarness;

namespace MirrorFS.MetaServer.Tests.Engine;

public sealed class GoldenTests
{
    private const long T0 = 1_700_000_000_123_456_789;

    private static readonly Credentials Alice = User(1000, 1000, 50, 60);

    /// <summary>One record per Command op (and a no-op), with every field the op carries set.</summary>
    internal static IEnumerable<(string Name, Command Cmd)> Commands()
    {
        Command C(ulong seq) => new() { SessionId = 7, Seq = seq, AckedSeq = seq - 1, NowNs = T0 + (long)seq };
        yield return ("noop", new Command());
        yield return ("format", new Command
        {
            NowNs = T0,
            Format = new FormatRequest
            {
                Cred = RootCred,
                RootMode = 0x1FF,
                Volume = new Volume { Name = "vol", Uuid = "0f8fad5b-d9cb-469f-a165-70867728950e", Storage = "s3://bucket/prefix", BlockSize = 4 << 20, TrashDays = 1, CapacityBytes = 1UL << 40, InodesMax = 1_000_000 },
            },
        });
        yield return ("new_session", new Command { NowNs = T0 + 1, NewId = 7, NewSession = new NewSessionRequest { Info = new ClientInfo { Hostname = "host-a", MountPoint = "/mnt/fs", Pid = 4242, Version = "0.1.0" } } });
        var c = C(1);
        c.NewInode = 2;
        c.Mkdir = new MkdirRequest { Cred = Alice, Parent = 1, Name = N("dir"), Mode = 0x1ED, Umask = 0x12 };
        yield return ("mkdir", c);
        c = C(2);
        c.NewInode = 3;
        c.Create = new CreateRequest { Cred = Alice, Parent = 2, Name = N("file"), Mode = 0x1A4, Umask = 0x12, Flags = 0x42 };
        yield return ("create", c);
        c = C(3);
        c.NewInode = 4;
        c.Mknod = new MknodRequest { Cred = RootCred, Parent = 1, Name = N("dev"), Mode = PosixMode.Char | 0x180, Rdev = 0x0103 };
        yield return ("mknod", c);
        c = C(4);
        c.NewInode = 5;
        c.Symlink = new SymlinkRequest { Cred = Alice, Parent = 1, Name = N("ln"), Target = N("../target") };
        yield return ("symlink", c);
        c = C(5);
        c.Link = new LinkRequest { Cred = Alice, Inode = 3, NewParent = 1, NewName = N("hard") };
        yield return ("link", c);
        c = C(6);
        c.NewId = 1;
        c.NewSliceIds = new NewSliceIdsRequest { Cred = Alice, Count = 16 };
        yield return ("new_slice_ids", c);
        c = C(7);
        c.WriteSlice = new WriteSliceRequest { Cred = Alice, Inode = 3, ChunkIndex = 1, Slice = new Slice { Id = 1, Size = 5 << 20, Offset = 4096, Length = 1 << 20, Pos = 8192 } };
        yield return ("write_slice", c);
        c = C(8);
        c.SetAttr = new SetAttrRequest { Cred = Alice, Inode = 3, Valid = 0x1FF, Mode = 0x1B6, Uid = 1000, Gid = 50, Size = 100, AtimeNs = -5, MtimeNs = T0 - 1, CtimeNs = 0 };
        yield return ("set_attr", c);
        c = C(9);
        c.Truncate = new TruncateRequest { Cred = Alice, Inode = 3, Size = 12345 };
        yield return ("truncate", c);
        c = C(10);
        c.Fallocate = new FallocateRequest { Cred = Alice, Inode = 3, Mode = 3, Offset = 100, Length = 200 };
        yield return ("fallocate", c);
        c = C(11);
        c.SetXattr = new SetXattrRequest { Cred = Alice, Inode = 3, Name = N("user.k"), Value = ByteString.CopyFrom(0, 1, 2, 255), Flags = 1 };
        yield return ("set_xattr", c);
        c = C(12);
        c.RemoveXattr = new RemoveXattrRequest { Cred = Alice, Inode = 3, Name = N("user.k") };
        yield return ("remove_xattr", c);
        c = C(13);
        c.Rename = new RenameRequest { Cred = Alice, Parent = 2, Name = N("file"), NewParent = 1, NewName = N("moved"), Flags = 1 };
        yield return ("rename", c);
        c = C(14);
        c.Open = new OpenRequest { Cred = Alice, Inode = 3, Flags = 0x202 };
        yield return ("open", c);
        c = C(15);
        c.Release = new ReleaseRequest { Cred = Alice, Inode = 3 };
        yield return ("release", c);
        c = C(16);
        c.Unlink = new UnlinkRequest { Cred = Alice, Parent = 1, Name = N("hard") };
        yield return ("unlink", c);
        c = C(17);
        c.Rmdir = new RmdirRequest { Cred = Alice, Parent = 1, Name = N("dir") };
        yield return ("rmdir", c);
        c = C(18);
        c.Heartbeat = new HeartbeatRequest();
        yield return ("heartbeat", c);
        c = C(19);
        c.CloseSession = new CloseSessionRequest();
        yield return ("close_session", c);
        yield return ("expire_sessions", new Command { NowNs = T0 + 100, ExpireSessions = new ExpireSessionsRequest { TimeoutNs = 30_000_000_000 } });
        c = C(40);
        c.ConfirmDeletes = new ConfirmDeletesRequest { Cred = RootCred, SliceIds = { 1, 2, 1UL << 40 } };
        yield return ("confirm_deletes", c);
        c = C(41);
        c.CompactChunk = new CompactChunkRequest
        {
            Cred = RootCred,
            Inode = 3,
            ChunkIndex = 2,
            ExpectedCount = 31,
            ExpectedDigest = ByteString.CopyFrom(Enumerable.Range(0, 32).Select(i => (byte)i).ToArray()),
            Slice = new Slice { Id = 9, Size = 3 << 20, Offset = 0, Length = 3 << 20, Pos = 4096 },
            DeleteDelayNs = 3_600_000_000_000,
        };
        yield return ("compact_chunk", c);
        foreach (var x in QuotaAndTrashCommands())
        {
            yield return x;
        }
    }

    /// <summary>The quota, volume-settings and trash ops (Command fields 60..64).</summary>
    internal static IEnumerable<(string Name, Command Cmd)> QuotaAndTrashCommands()
    {
        Command C(ulong seq) => new() { SessionId = 7, Seq = seq, AckedSeq = seq - 1, NowNs = T0 + 200 + (long)seq };
        var c = C(40);
        c.UpdateVolume = new UpdateVolumeRequest { Cred = RootCred, TrashDays = 2, CapacityBytes = 1UL << 41, InodesMax = 2_000_000, UploadLimitBytes = 100 << 20, DownloadLimitBytes = 200 << 20, MetaOpsLimit = 5000 };
        yield return ("update_volume", c);
        c = C(41);
        c.SetQuota = new SetQuotaRequest { Cred = RootCred, Inode = 1, MaxBytes = 1UL << 30, MaxInodes = 1000 };
        yield return ("set_quota", c);
        c = C(42);
        c.CheckQuota = new CheckQuotaRequest { Cred = RootCred, Inode = 1, Repair = true };
        yield return ("check_quota", c);
        c = C(43);
        c.DeleteQuota = new DeleteQuotaRequest { Cred = RootCred, Inode = 1 };
        yield return ("delete_quota", c);
        yield return ("purge_trash", new Command { NowNs = T0 + 300, PurgeTrash = new PurgeTrashRequest { BeforeNs = T0 - 86_400_000_000_000, EntriesMax = 500 } });
    }

    /// <summary>Commands not part of the v1 fixed state (its replies golden is frozen).</summary>
    private static bool InV1FixedState(string name) =>
        name is not ("close_session" or "expire_sessions" or "confirm_deletes" or "compact_chunk")
        && !QuotaAndTrashCommands().Any(c => c.Name == name);

    [Fact]
    public void Command_encodings_are_frozen()
    {
        var cmds = Commands().ToList();
        GoldenFile.Verify("meta-commands.txt", cmds.Select(x => (x.Name, Convert.ToHexString(x.Cmd.ToByteArray()))));
        // And the frozen bytes still decode to the same records.
        var golden = GoldenFile.Read("meta-commands.txt");
        foreach (var (name, cmd) in cmds)
        {
            Assert.Equal(cmd, Command.Parser.ParseFrom(Convert.FromHexString(golden[name])));
        }
    }

    /// <summary>A small fixed state: the commands above applied in order, plus an open unlinked file and an xattr.</summary>
    internal static MetaStateMachine BuildFixedState(out List<(string Name, byte[] Reply)> replies)
    {
        var sm = new MetaStateMachine();
        replies = [];
        var cmds = Commands().Where(c => InV1FixedState(c.Name)).ToList(); // keep the session
        cmds.Add(("extra_create", new Command { SessionId = 7, Seq = 30, NowNs = T0 + 50, NewInode = 9, Create = new CreateRequest { Cred = Alice, Parent = 1, Name = N("open-unlinked"), Mode = 0x1A4 } }));
        cmds.Add(("extra_unlink", new Command { SessionId = 7, Seq = 31, NowNs = T0 + 51, Unlink = new UnlinkRequest { Cred = Alice, Parent = 1, Name = N("open-unlinked") } }));
        cmds.Add(("extra_xattr", new Command { SessionId = 7, Seq = 32, NowNs = T0 + 52, SetXattr = new SetXattrRequest { Cred = Alice, Inode = 3, Name = N("user.keep"), Value = N("v") } }));
        cmds.Add(("extra_write", new Command { SessionId = 7, Seq = 33, NowNs = T0 + 53, WriteSlice = new WriteSliceRequest { Cred = Alice, Inode = 3, ChunkIndex = 0, Slice = new Slice { Id = 2, Size = 100, Length = 100 } } }));
        cmds.Add(("extra_truncate", new Command { SessionId = 7, Seq = 34, NowNs = T0 + 54, Truncate = new TruncateRequest { Cred = Alice, Inode = 3, Size = 0 } }));
        ulong index = 0;
        foreach (var (name, cmd) in cmds)
        {
            replies.Add((name, sm.Apply(++index, cmd.ToByteArray())));
        }
        return sm;
    }

    /// <summary>The v1 fixed state plus a compaction, so v2's pending deletes carry times and a delay.</summary>
    internal static MetaStateMachine BuildV2State(out List<(string Name, byte[] Reply)> replies)
    {
        var sm = BuildFixedState(out var v1Replies);
        _ = v1Replies;
        replies = [];
        var index = sm.AppliedIndex;
        Command C(ulong seq, long dt) => new() { SessionId = 7, Seq = seq, NowNs = T0 + 60 + dt };
        var cmds = new List<(string, Command)>();
        var c = C(40, 0);
        c.NewSliceIds = new NewSliceIdsRequest { Cred = Alice, Count = 3 };
        c.NewId = 17;
        cmds.Add(("v2_new_ids", c));
        c = C(41, 1);
        c.WriteSlice = new WriteSliceRequest { Cred = Alice, Inode = 3, ChunkIndex = 0, Slice = new Slice { Id = 17, Size = 100, Length = 100 } };
        cmds.Add(("v2_write_a", c));
        c = C(42, 2);
        c.WriteSlice = new WriteSliceRequest { Cred = Alice, Inode = 3, ChunkIndex = 0, Slice = new Slice { Id = 18, Size = 50, Length = 50, Pos = 70 } };
        cmds.Add(("v2_write_b", c));
        c = C(43, 3);
        c.CompactChunk = new CompactChunkRequest
        {
            Cred = Alice,
            Inode = 3,
            ExpectedCount = 2,
            ExpectedDigest = ByteString.CopyFrom(SliceDigest.Of([new Slice { Id = 17, Size = 100, Length = 100 }, new Slice { Id = 18, Size = 50, Length = 50, Pos = 70 }])),
            Slice = new Slice { Id = 19, Size = 120, Length = 120 },
            DeleteDelayNs = 3_600_000_000_000,
        };
        cmds.Add(("v2_compact", c));
        foreach (var (name, cmd) in cmds)
        {
            replies.Add((name, sm.Apply(++index, cmd.ToByteArray())));
        }
        return sm;
    }

    /// <summary>The v2 state, then the trash turned on, quotas set, a hard link, a quota-limited write and a file trashed.</summary>
    internal static MetaStateMachine BuildV3State(out List<(string Name, byte[] Reply)> replies)
    {
        var sm = BuildV2State(out _);
        replies = [];
        var index = sm.AppliedIndex;
        var cmds = new List<(string, Command)>
        {
            ("v3_update_volume", new Command { SessionId = 7, Seq = 50, NowNs = T0 + 70, UpdateVolume = new UpdateVolumeRequest { Cred = RootCred, TrashDays = 3, UploadLimitBytes = 1 << 20 } }),
            ("v3_quota_root", new Command { SessionId = 7, Seq = 51, NowNs = T0 + 71, SetQuota = new SetQuotaRequest { Cred = RootCred, Inode = 1, MaxInodes = 100 } }),
            ("v3_mkdir", new Command { SessionId = 7, Seq = 52, NowNs = T0 + 72, NewInode = 10, Mkdir = new MkdirRequest { Cred = Alice, Parent = 1, Name = N("q"), Mode = 0x1FF } }),
            ("v3_quota_dir", new Command { SessionId = 7, Seq = 53, NowNs = T0 + 73, SetQuota = new SetQuotaRequest { Cred = RootCred, Inode = 10, MaxBytes = 8192 } }),
            ("v3_mknod", new Command { SessionId = 7, Seq = 54, NowNs = T0 + 74, NewInode = 11, Mknod = new MknodRequest { Cred = Alice, Parent = 10, Name = N("f"), Mode = PosixMode.Regular | 0x1A4 } }),
            ("v3_link", new Command { SessionId = 7, Seq = 55, NowNs = T0 + 75, Link = new LinkRequest { Cred = Alice, Inode = 11, NewParent = 1, NewName = N("f-link") } }),
            ("v3_write", new Command { SessionId = 7, Seq = 56, NowNs = T0 + 76, WriteSlice = new WriteSliceRequest { Cred = Alice, Inode = 11, Slice = new Slice { Id = 3, Size = 5000, Length = 5000 } } }),
            ("v3_unlink_link", new Command { SessionId = 7, Seq = 57, NowNs = T0 + 77, Unlink = new UnlinkRequest { Cred = Alice, Parent = 1, Name = N("f-link") } }),
            ("v3_unlink_to_trash", new Command { SessionId = 7, Seq = 58, NowNs = T0 + 78, Unlink = new UnlinkRequest { Cred = Alice, Parent = 10, Name = N("f") } }),
        };
        foreach (var (name, cmd) in cmds)
        {
            replies.Add((name, sm.Apply(++index, cmd.ToByteArray())));
        }
        return sm;
    }

    private static string SnapshotHex(MetaStateMachine sm)
    {
        using var ms = new MemoryStream();
        sm.WriteSnapshot(ms);
        return Convert.ToHexString(ms.ToArray());
    }

    [Fact]
    public void Snapshot_v2_still_restores()
    {
        using var sm = BuildV2State(out var replies);
        Assert.All(replies, r => Assert.Equal(0, HeartbeatReply.Parser.ParseFrom(r.Reply).Errno));
        Assert.True(CompactChunkReply.Parser.ParseFrom(replies[^1].Reply).Compacted);
        GoldenFile.Verify("meta-snapshot.txt", [("replies_v2_extra", string.Join(":", replies.Select(r => Convert.ToHexString(r.Reply))))]);

        // The frozen v2 snapshot restores to the state the same commands build today (v2 kept no directory for a
        // regular file's name: restore rebuilds it), so it re-encodes as today's bytes of that state.
        var golden = Convert.FromHexString(GoldenFile.Read("meta-snapshot.txt")["snapshot_v2_fixed_state"]);
        using var restored = new MetaStateMachine();
        restored.RestoreSnapshot(new MemoryStream(golden));
        Assert.Equal(SnapshotHex(sm), SnapshotHex(restored));
        Assert.Equal(0u, restored.GetAttr(new GetAttrRequest { Inode = 9 }).Attr.Nlink);
        Assert.Equal(2, restored.PendingDeletes().Count(p => p.NotBeforeNs == T0 + 63 + 3_600_000_000_000));
    }

    [Fact]
    public void Snapshot_v3_encoding_is_frozen()
    {
        using var v2State = BuildV2State(out _);
        using var sm = BuildV3State(out var replies);
        Assert.All(replies, r => Assert.Equal(0, HeartbeatReply.Parser.ParseFrom(r.Reply).Errno));
        GoldenFile.Verify("meta-snapshot.txt",
        [
            ("snapshot_v3_v2_state", SnapshotHex(v2State)),
            ("snapshot_v3_quota_trash", SnapshotHex(sm)),
            ("replies_v3_extra", string.Join(":", replies.Select(r => Convert.ToHexString(r.Reply)))),
        ]);

        // The frozen v3 snapshots restore to states that re-encode identically.
        var golden = GoldenFile.Read("meta-snapshot.txt");
        foreach (var name in new[] { "snapshot_v3_v2_state", "snapshot_v3_quota_trash" })
        {
            using var restored = new MetaStateMachine();
            restored.RestoreSnapshot(new MemoryStream(Convert.FromHexString(golden[name])));
            Assert.Equal(golden[name], SnapshotHex(restored));
        }
        using var q = new MetaStateMachine();
        q.RestoreSnapshot(new MemoryStream(Convert.FromHexString(golden["snapshot_v3_quota_trash"])));
        Assert.Equal(2, q.QuotaUsage().Count);
        Assert.Equal(1u, q.GetAttr(new GetAttrRequest { Inode = 11 }).Attr.Nlink); // in the trash, data kept
        Assert.Equal(sm.PendingDeletes(), q.PendingDeletes());
    }

    [Fact]
    public void Snapshot_v1_still_restores()
    {
        using var sm = BuildFixedState(out var replies);
        // The v1 golden pins the state and replies this build makes: nothing but the snapshot layout changed.
        var golden = GoldenFile.Read("meta-snapshot.txt");
        Assert.Equal(golden["replies_fixed_state"], string.Join(":", replies.Select(r => Convert.ToHexString(r.Reply))));
        var v1 = Convert.FromHexString(golden["snapshot_v1_fixed_state"]);
        using var restored = new MetaStateMachine();
        restored.RestoreSnapshot(new MemoryStream(v1));
        Assert.Equal(0u, restored.GetAttr(new GetAttrRequest { Inode = 9 }).Attr.Nlink);
        // v1 kept no drop times: the same pending deletes, times unknown (0).
        Assert.Equal(sm.PendingDeletes().Select(p => p with { TimeNs = 0 }), restored.PendingDeletes());
        // Written again (as v2), it reads back to the same state.
        using var fromV1 = new MemoryStream();
        restored.WriteSnapshot(fromV1);
        using var again = new MetaStateMachine();
        again.RestoreSnapshot(new MemoryStream(fromV1.ToArray()));
        using var twice = new MemoryStream();
        again.WriteSnapshot(twice);
        Assert.Equal(fromV1.ToArray(), twice.ToArray());
        Assert.Equal(sm.AppliedIndex, again.AppliedIndex);
    }

    [Fact]
    public void Fixed_state_replies_are_all_successes()
    {
        // Guards the golden state itself: a golden built from failing commands would freeze little.
        using var sm = BuildFixedState(out var replies);
        foreach (var (name, reply) in replies)
        {
            var errno = HeartbeatReply.Parser.ParseFrom(reply).Errno;
            Assert.True(errno == 0, $"fixed-state command {name} failed with errno {errno}");
        }
        Assert.Equal(2, sm.PendingDeletes().Length);
    }
}
