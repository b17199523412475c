// A seeded random workload over IMetaClient (the primary's API as clients use it), and waiting helpers for mirror tests.
using Google.Protobuf;
using MirrorFS.Core.Meta;
using MirrorFS.MetaServer.Engine;

namespace MirrorFS.MetaServer.Tests.Mirror;

internal static class MirrorWorkload
{
    public static readonly Credentials Root = new();

    private static readonly string[] Names = ["a", "b", "c", "d"];

    public static async Task FormatAsync(IMetaClient meta, string name = "vol", string storage = "mem://primary")
    {
        var f = await meta.FormatAsync(new FormatRequest { Cred = Root, Volume = new Volume { Name = name, Storage = storage, BlockSize = 1 << 20 } });
        Assert.Equal(0, f.Errno);
    }

    /// <summary>Runs <paramref name="ops"/> random calls in one session; returns the highest reply index.</summary>
    public static async Task<ulong> RunAsync(IMetaClient meta, int seed, int ops)
    {
        var rng = new Random(seed);
        var s = await meta.NewSessionAsync(new NewSessionRequest { Cred = Root, Info = new ClientInfo { Hostname = $"w{seed}" } });
        Assert.Equal(0, s.Errno);
        ulong seq = 0;
        ulong highest = s.Index;
        T S<T>(T r) where T : IMutatingRequest
        {
            r.SessionId = s.SessionId;
            r.Seq = ++seq;
            r.Cred = rng.Next(4) == 0 ? new Credentials { Uid = 1000, Gid = 1000 } : Root;
            return r;
        }
        var dirs = new List<ulong> { 1 };
        var files = new List<ulong>();
        ulong D() => dirs[rng.Next(dirs.Count)];
        ulong F() => files.Count == 0 ? 1 : files[rng.Next(files.Count)];
        ByteString Nm() => ByteString.CopyFromUtf8(Names[rng.Next(Names.Length)] + rng.Next(4));
        void Note(IMetaReply r) => highest = Math.Max(highest, r.Index);
        for (var i = 0; i < ops; i++)
        {
            switch (rng.Next(16))
            {
                case 0:
                case 1:
                    var md = await meta.MkdirAsync(S(new MkdirRequest { Parent = D(), Name = Nm(), Mode = 0x1ED }));
                    Note(md);
                    if (md.Errno == 0)
                    {
                        dirs.Add(md.Attr.Inode);
                    }
                    break;
                case 2:
                case 3:
                case 4:
                    var cr = await meta.CreateAsync(S(new CreateRequest { Parent = D(), Name = Nm(), Mode = 0x1A4, Flags = 2 }));
                    Note(cr);
                    if (cr.Errno == 0)
                    {
                        files.Add(cr.Attr.Inode);
                        if (rng.Next(3) != 0)
                        {
                            Note(await meta.ReleaseAsync(S(new ReleaseRequest { Inode = cr.Attr.Inode })));
                        }
                    }
                    break;
                case 5:
                case 6:
                    var ids = await meta.NewSliceIdsAsync(S(new NewSliceIdsRequest { Count = 2 }));
                    Note(ids);
                    var size = (uint)rng.Next(1, 3 << 20);
                    Note(await meta.WriteSliceAsync(S(new WriteSliceRequest
                    {
                        Inode = F(), ChunkIndex = (uint)rng.Next(2),
                        Slice = new Slice { Id = ids.FirstId, Size = size, Length = size, Pos = (uint)rng.Next(1 << 20) },
                    })));
                    break;
                case 7:
                    Note(await meta.TruncateAsync(S(new TruncateRequest { Inode = F(), Size = (ulong)rng.Next(2 << 20) })));
                    break;
                case 8:
                    Note(await meta.RenameAsync(S(new RenameRequest { Parent = D(), Name = Nm(), NewParent = D(), NewName = Nm() })));
                    break;
                case 9:
                    Note(await meta.UnlinkAsync(S(new UnlinkRequest { Parent = D(), Name = Nm() })));
                    break;
                case 10:
                    Note(await meta.RmdirAsync(S(new RmdirRequest { Parent = D(), Name = Nm() })));
                    break;
                case 11:
                    Note(await meta.SetXattrAsync(S(new SetXattrRequest { Inode = F(), Name = ByteString.CopyFromUtf8("user.k" + rng.Next(3)), Value = Nm() })));
                    break;
                case 12:
                    Note(await meta.SymlinkAsync(S(new SymlinkRequest { Parent = D(), Name = Nm(), Target = Nm() })));
                    break;
                case 13:
                    Note(await meta.LinkAsync(S(new LinkRequest { Inode = F(), NewParent = D(), NewName = Nm() })));
                    break;
                case 14:
                    Note(await meta.SetAttrAsync(S(new SetAttrRequest { Inode = F(), Valid = 1 | 32, Mode = (uint)rng.Next(0x200), MtimeNs = rng.Next() })));
                    break;
                default:
                    var op = await meta.OpenAsync(S(new OpenRequest { Inode = F(), Flags = (uint)(rng.Next(2) == 0 ? 0 : 0x200 | 2) }));
                    Note(op);
                    if (op.Errno == 0 && rng.Next(2) == 0)
                    {
                        Note(await meta.ReleaseAsync(S(new ReleaseRequest { Inode = F() })));
                    }
                    break;
            }
        }
        return highest;
    }

    public const int WaitMs = 60_000;

    /// <summary>Polls until <paramref name="done"/> holds; fails the test with <paramref name="what"/> after <see cref="WaitMs"/>.</summary>
    public static async Task EventuallyAsync(Func<bool> done, string what, int waitMs = WaitMs)
    {
        var deadline = Environment.TickCount64 + waitMs;
        while (!done())
        {
            if (Environment.TickCount64 > deadline)
            {
                Assert.Fail($"waited {waitMs} ms for {what}");
            }
            await Task.Delay(20);
        }
    }

    /// <summary>Waits until the mirror reflects the same primary index as the primary, then returns both comparable
    /// snapshots (taken at that index).</summary>
    public static async Task<(ulong Index, byte[] Primary, byte[] Mirror)> SameIndexSnapshotsAsync(MetaStateMachine primary, MetaStateMachine mirror)
    {
        var deadline = Environment.TickCount64 + WaitMs;
        while (true)
        {
            using var p = new MemoryStream();
            var pi = primary.WriteComparableSnapshot(p);
            try
            {
                await mirror.WaitForIndexAsync(pi, new CancellationTokenSource(Math.Max(1, (int)(deadline - Environment.TickCount64))).Token);
            }
            catch (OperationCanceledException)
            {
                Assert.Fail($"mirror did not reach primary index {pi} within {WaitMs} ms (it is at {mirror.LogicalIndex})");
            }
            using var m = new MemoryStream();
            var mi = mirror.WriteComparableSnapshot(m);
            if (mi == pi)
            {
                return (pi, p.ToArray(), m.ToArray());
            }
            // The primary moved on (e.g. it recorded mirror progress) meanwhile: take both again.
        }
    }
}
