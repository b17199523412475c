// Golden tests freezing the LoadEntries and AcquireLease command encodings and snapshot format v3 (load flag, leases).
//
// GOLDENS MAY ONLY GROW: never edit or delete a line of Golden/meta-dumpload.txt. To add a case, add it here and run
// once with MIRRORFS_UPDATE_GOLDEN=1, which appends missing names and never rewrites existing ones.
using Google.Protobuf;
using MirrorFS.Core.Meta;
using MirrorFS.MetaServer.Engine;
using static MirrorFS.MetaServer.Tests.Engine.MetaHarness;

namespace MirrorFS.MetaServer.Tests.Engine;

public sealed class DumpLoadGoldenTests
{
    private const long T0 = 1_700_000_000_123_456_789;
    private const string File = "meta-dumpload.txt";

    internal static IEnumerable<(string Name, Command Cmd)> Commands()
    {
        yield return ("new_session", new Command { NowNs = T0, NewId = 3, NewSession = new NewSessionRequest() });
        yield return ("load_begin", new Command
        {
            SessionId = 3, Seq = 1, NowNs = T0 + 1,
            LoadEntries = new LoadEntriesRequest
            {
                Phase = LoadPhase.Begin,
                Volume = new Volume { Name = "vol", Uuid = "0f8fad5b-d9cb-469f-a165-70867728950e", Storage = "file:///b", BlockSize = 1 << 20, CreatedNs = T0 - 10 },
            },
        });
        var entries = new LoadEntriesRequest { Phase = LoadPhase.Entries };
        entries.Inodes.Add(new LoadInode { Attr = new Attr { Inode = 1, Mode = PosixMode.Directory | 0x1ED, Nlink = 3, AtimeNs = T0, MtimeNs = T0, CtimeNs = T0, Parent = 1 } });
        entries.Inodes.Add(new LoadInode { Attr = new Attr { Inode = 2, Mode = PosixMode.Directory | 0x3FF, Uid = 7, Gid = 8, Nlink = 2, AtimeNs = -1, MtimeNs = T0, CtimeNs = T0, Parent = 1 } });
        entries.Inodes.Add(new LoadInode
        {
            Attr = new Attr { Inode = 9, Mode = PosixMode.Regular | 0x9A4, Uid = 1000, Gid = 50, Nlink = 2, Size = 70_000_000, AtimeNs = T0, MtimeNs = T0, CtimeNs = T0 },
            Xattrs = { new DumpXattr { Name = N("user.k"), Value = ByteString.CopyFrom(0, 255) } },
        });
        entries.Inodes.Add(new LoadInode { Attr = new Attr { Inode = 10, Mode = PosixMode.Symlink | 0x1FF, Nlink = 1, AtimeNs = T0, MtimeNs = T0, CtimeNs = T0 }, Target = N("../t") });
        entries.Inodes.Add(new LoadInode { Attr = new Attr { Inode = 11, Mode = PosixMode.Char | 0x180, Nlink = 1, Rdev = 0x0103, AtimeNs = T0, MtimeNs = T0, CtimeNs = T0 } });
        entries.Chunks.Add(new LoadChunk { Inode = 9, Index = 0, Slices = { new Slice { Id = 4, Size = 4096, Length = 4096 }, new Slice { Size = 10, Length = 10, Pos = 5 } } });
        entries.Chunks.Add(new LoadChunk { Inode = 9, Index = 1, Slices = { new Slice { Id = 12, Size = 1 << 20, Offset = 100, Length = 900, Pos = 7 } } });
        entries.Dentries.Add(new LoadDentry { Parent = 1, Name = N("dir"), Inode = 2 });
        entries.Dentries.Add(new LoadDentry { Parent = 2, Name = N("file"), Inode = 9 });
        entries.Dentries.Add(new LoadDentry { Parent = 1, Name = N("hard"), Inode = 9 });
        entries.Dentries.Add(new LoadDentry { Parent = 2, Name = N("ln"), Inode = 10 });
        entries.Dentries.Add(new LoadDentry { Parent = 1, Name = N("dev"), Inode = 11 });
        yield return ("load_entries", new Command { SessionId = 3, Seq = 2, AckedSeq = 1, NowNs = T0 + 2, LoadEntries = entries });
        yield return ("acquire_lease", new Command { SessionId = 3, Seq = 3, AckedSeq = 2, NowNs = T0 + 3, AcquireLease = new AcquireLeaseRequest { Name = "backup-meta", DurationNs = 3_600_000_000_000 } });
        yield return ("load_finish", new Command { SessionId = 3, Seq = 4, AckedSeq = 3, NowNs = T0 + 4, LoadEntries = new LoadEntriesRequest { Phase = LoadPhase.Finish, NextInode = 20, NextSliceId = 30 } });
    }

    /// <summary>The commands applied in order, stopped before FINISH so the state holds both v3 sections.</summary>
    private static MetaStateMachine Build(bool finish, out List<byte[]> replies)
    {
        var sm = new MetaStateMachine();
        replies = [];
        ulong index = 0;
        foreach (var (name, cmd) in Commands())
        {
            if (name == "load_finish" && !finish)
            {
                continue;
            }
            replies.Add(sm.Apply(++index, cmd.ToByteArray()));
        }
        return sm;
    }

    [Fact]
    public void Command_encodings_are_frozen()
    {
        var cmds = Commands().ToList();
        GoldenFile.Verify(File, cmds.Select(x => ($"cmd_{x.Name}", Convert.ToHexString(x.Cmd.ToByteArray()))));
        var golden = GoldenFile.Read(File);
        foreach (var (name, cmd) in cmds)
        {
            Assert.Equal(cmd, Command.Parser.ParseFrom(Convert.FromHexString(golden[$"cmd_{name}"])));
        }
    }

    [Fact]
    public void Snapshot_v3_encoding_is_frozen_and_a_finished_state_has_no_sections()
    {
        using var sm = Build(finish: false, out var replies);
        foreach (var reply in replies)
        {
            Assert.Equal(0, HeartbeatReply.Parser.ParseFrom(reply).Errno);
        }
        using var ms = new MemoryStream();
        sm.WriteSnapshot(ms);
        var bytes = ms.ToArray();
        Assert.Equal(3, bytes[8]);
        GoldenFile.Verify(File, [("snapshot_v3_loading_with_lease", Convert.ToHexString(bytes))]);

        var golden = Convert.FromHexString(GoldenFile.Read(File)["snapshot_v3_loading_with_lease"]);
        using var restored = new MetaStateMachine();
        restored.RestoreSnapshot(new MemoryStream(golden));
        using var again = new MemoryStream();
        restored.WriteSnapshot(again);
        Assert.Equal(golden, again.ToArray());
        Assert.Equal(Errno.EBUSY, restored.GetVolume(new GetVolumeRequest()).Errno);

        // Finished, with the lease released: still v3, with no section before the end marker.
        using var done = Build(finish: true, out _);
        done.Apply(done.AppliedIndex + 1, new Command { SessionId = 3, Seq = 5, NowNs = T0 + 5, AcquireLease = new AcquireLeaseRequest { Name = "backup-meta" } }.ToByteArray());
        using var noSections = new MemoryStream();
        done.WriteSnapshot(noSections);
        var b = noSections.ToArray();
        Assert.Equal(3, b[8]);
        // Layout tail: section count 0, "MFS-END.", 32-byte SHA-256.
        Assert.Equal(0, b[^(32 + 8 + 1)]);
        Assert.Equal("MFS-END."u8.ToArray(), b[^(32 + 8)..^32]);
        Assert.Equal(0, done.GetVolume(new GetVolumeRequest()).Errno);
    }
}
