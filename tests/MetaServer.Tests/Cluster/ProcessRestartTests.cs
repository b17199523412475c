// kill -9 of all three mirrorfs-meta processes, then a restart: the tree, file lengths and slices are as they were.
using System.Globalization;
using Google.Protobuf;
using MirrorFS.Core.Meta;
using Xunit.Abstractions;

namespace MirrorFS.MetaServer.Tests.Cluster;

[Collection(ProcessClusterCollection.Name)]
public sealed class ProcessRestartTests(ITestOutputHelper output) : IDisposable
{
    private static readonly Credentials Root = new();
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "mirrorfs-prestart-" + Guid.NewGuid().ToString("N")[..12]);

    public void Dispose()
    {
        try
        {
            Directory.Delete(_dir, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    [Fact]
    public async Task AllThreeKilledAndRestarted_TreeAndFileLengthsIntact()
    {
        var seed = Random.Shared.Next();
        output.WriteLine($"seed {seed}");
        // A small snapshot interval so that recovery reads a snapshot and the log after it.
        await using var cluster = await ProcessCluster.StartAsync(_dir, 3, output, "--snapshot-every", "100");
        try
        {
            SortedDictionary<string, string> before;
            await using (var c = cluster.Client())
            {
                var f = await c.FormatAsync(new FormatRequest { Cred = Root, Volume = new Volume { Name = "prestart" } });
                Assert.True(f.Errno is 0 or Errno.EEXIST, $"format failed with errno {f.Errno}");
                await BuildTreeAsync(c, new Random(seed));
                before = await WalkAsync(c);
            }
            output.WriteLine($"tree of {before.Count} entries built");
            // Every member recovers from a snapshot plus the log after it.
            var taken = await cluster.WaitStatusAsync(s => s.AllApplied(3) && s.Nodes.All(n => n.SnapshotIndex > 0), 120_000,
                "equal applied indexes and a snapshot on every member");
            output.WriteLine($"before the kill: applied {taken.Nodes[0].AppliedIndex}, snapshots at " +
                             string.Join(",", taken.Nodes.Select(n => n.SnapshotIndex)));

            await Task.WhenAll(cluster.Ids.ToArray().Select(cluster.KillAsync));
            foreach (var id in cluster.Ids)
            {
                await cluster.StartNodeAsync(id, cluster.Ids);
            }

            await using (var c = cluster.Client())
            {
                var after = await WalkAsync(c);
                foreach (var (path, desc) in before)
                {
                    Assert.True(after.TryGetValue(path, out var now), $"{path} is missing after the restart");
                    Assert.Equal(desc, now);
                }
                Assert.Equal(before.Count, after.Count);

                // Still writable, and a new inode does not reuse a number from before the crash.
                var mk = await c.MknodAsync(new MknodRequest { Cred = Root, Parent = 1, Name = ByteString.CopyFromUtf8("after"), Mode = 0x81A4 });
                Assert.Equal(0, mk.Errno);
                Assert.DoesNotContain($"ino={mk.Attr.Inode.ToString(CultureInfo.InvariantCulture)} ", string.Join("\n", before.Values));
            }
            var back = await cluster.WaitStatusAsync(s => s.AllApplied(3) && s.Leaders.Count == 1, 120_000, "three members, one leader, equal applied indexes");
            Assert.True(back.Nodes[0].AppliedIndex > taken.Nodes[0].AppliedIndex, "the write after the restart is not applied");
        }
        catch
        {
            cluster.DumpLogs();
            throw;
        }
    }

    /// <summary>Directories three deep, files with slices of varied lengths, symlinks, hard links and renames.</summary>
    private static async Task BuildTreeAsync(IMetaClient c, Random rng)
    {
        // Mutations carry (session, seq) as the client's do, so a call retried after a timeout (the first attempt
        // may have committed) returns its first result instead of EEXIST.
        var session = (await c.NewSessionAsync(new NewSessionRequest { Cred = Root, Info = new ClientInfo { Hostname = "prestart" } })).SessionId;
        ulong seq = 0;
        var dirs = new List<ulong> { 1 };
        var files = new List<ulong>();
        ulong nextSlice = 0;
        ulong sliceLeft = 0;
        for (var i = 0; i < 300; i++)
        {
            var parent = dirs[rng.Next(dirs.Count)];
            var name = ByteString.CopyFromUtf8($"e{i}");
            switch (rng.Next(10))
            {
                case 0 or 1 when dirs.Count < 40:
                {
                    var r = await c.MkdirAsync(new MkdirRequest { SessionId = session, Seq = ++seq, AckedSeq = seq - 1, Cred = Root, Parent = parent, Name = name, Mode = 0x1ED });
                    Check(r.Errno, "mkdir");
                    dirs.Add(r.Attr.Inode);
                    break;
                }
                case 2 when files.Count > 0:
                {
                    var r = await c.SymlinkAsync(new SymlinkRequest { SessionId = session, Seq = ++seq, AckedSeq = seq - 1, Cred = Root, Parent = parent, Name = name, Target = ByteString.CopyFromUtf8($"../t{i}") });
                    Check(r.Errno, "symlink");
                    break;
                }
                case 3 when files.Count > 0:
                {
                    var r = await c.LinkAsync(new LinkRequest { SessionId = session, Seq = ++seq, AckedSeq = seq - 1, Cred = Root, Inode = files[rng.Next(files.Count)], NewParent = parent, NewName = name });
                    Check(r.Errno, "link");
                    break;
                }
                default:
                {
                    var r = await c.MknodAsync(new MknodRequest { SessionId = session, Seq = ++seq, AckedSeq = seq - 1, Cred = Root, Parent = parent, Name = name, Mode = 0x81A4 });
                    Check(r.Errno, "mknod");
                    files.Add(r.Attr.Inode);
                    // One or two slices per file, as a client records its writes.
                    for (var s = rng.Next(1, 3); s > 0; s--)
                    {
                        if (sliceLeft == 0)
                        {
                            var ids = await c.NewSliceIdsAsync(new NewSliceIdsRequest { Cred = Root, Count = 64 });
                            Check(ids.Errno, "new slice ids");
                            (nextSlice, sliceLeft) = (ids.FirstId, ids.Count);
                        }
                        var length = (uint)rng.Next(1, 5 << 20);
                        var w = await c.WriteSliceAsync(new WriteSliceRequest
                        {
                            SessionId = session, Seq = ++seq, AckedSeq = seq - 1, Cred = Root, Inode = r.Attr.Inode, ChunkIndex = (uint)rng.Next(2),
                            Slice = new Slice { Id = nextSlice++, Size = length, Offset = 0, Length = length, Pos = (uint)rng.Next(1 << 20) },
                        });
                        sliceLeft--;
                        Check(w.Errno, "write slice");
                    }
                    break;
                }
            }
        }
        // A rename and an unlink, so the replayed log holds more than creations.
        Check((await c.RenameAsync(new RenameRequest { SessionId = session, Seq = ++seq, AckedSeq = seq - 1, Cred = Root, Parent = 1, Name = ByteString.CopyFromUtf8("e0"), NewParent = 1, NewName = ByteString.CopyFromUtf8("renamed") })).Errno, "rename");
    }

    /// <summary>Every path with its type, inode, mode, nlink, length, symlink target and chunk slices.</summary>
    private static async Task<SortedDictionary<string, string>> WalkAsync(IMetaClient c)
    {
        var result = new SortedDictionary<string, string>(StringComparer.Ordinal);
        var pending = new Queue<(ulong Inode, string Path)>();
        pending.Enqueue((1, ""));
        while (pending.TryDequeue(out var dir))
        {
            foreach (var (name, a) in await ProcessWriter.ListAsync(c, dir.Inode))
            {
                var path = dir.Path + "/" + name;
                var desc = string.Create(CultureInfo.InvariantCulture,
                    $"ino={a.Inode} mode={a.Mode:x} nlink={a.Nlink} size={a.Size} mtime={a.MtimeNs} ");
                switch (a.Mode & 0xF000)
                {
                    case 0x4000:
                        pending.Enqueue((a.Inode, path));
                        break;
                    case 0xA000:
                        var l = await c.ReadLinkAsync(new ReadLinkRequest { Cred = Root, Inode = a.Inode });
                        Check(l.Errno, "readlink");
                        desc += "-> " + l.Target.ToStringUtf8();
                        break;
                    default:
                        for (uint chunk = 0; chunk < 2; chunk++)
                        {
                            var rc = await c.ReadChunkAsync(new ReadChunkRequest { Cred = Root, Inode = a.Inode, ChunkIndex = chunk });
                            Check(rc.Errno, "read chunk");
                            desc += $"c{chunk}[{string.Join(",", rc.Slices.Select(s => $"{s.Id}:{s.Pos}+{s.Length}"))}]";
                        }
                        break;
                }
                result[path] = desc;
            }
        }
        return result;
    }

    private static void Check(int errno, string what)
    {
        if (errno != 0)
        {
            throw new InvalidOperationException($"{what} failed with errno {errno}");
        }
    }
}
