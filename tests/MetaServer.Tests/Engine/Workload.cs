// Seeded random workload over the whole API (no checks): feeds determinism and snapshot tests.
using Google.Protobuf;
using MirrorFS.Core.Meta;
using MirrorFS.MetaServer.Consensus;
using static MirrorFS.MetaServer.Tests.Engine.MetaHarness;

namespace MirrorFS.MetaServer.Tests.Engine;

/// <summary>An <see cref="IReplicatedLog"/> over <see cref="InMemoryLog"/> that keeps every proposed command.</summary>
internal sealed class RecordingLog(IStateMachine machine) : IReplicatedLog
{
    private readonly InMemoryLog _inner = new(machine);
    private readonly Lock _gate = new();

    public List<byte[]> Commands { get; } = [];

    public ulong CommitIndex => _inner.CommitIndex;

    public ulong AppliedIndex => _inner.AppliedIndex;

    public Task<(ulong Index, byte[] Reply)> ProposeAsync(ReadOnlyMemory<byte> command, CancellationToken ct = default)
    {
        lock (_gate)
        {
            Commands.Add(command.ToArray());
            return _inner.ProposeAsync(command, ct);
        }
    }

    public Task<ulong> ReadBarrierAsync(CancellationToken ct = default) => _inner.ReadBarrierAsync(ct);

    public ValueTask DisposeAsync() => _inner.DisposeAsync();
}

internal static class Workload
{
    private static readonly string[] Names = ["a", "b", "c", "d", "e"];

    public static async Task RunAsync(MetaHarness h, int seed, int ops)
    {
        var rng = new Random(seed);
        var dirs = new List<ulong> { Root };
        var files = new List<ulong>();
        ulong D() => dirs[rng.Next(dirs.Count)];
        ulong F() => files.Count == 0 ? Root : files[rng.Next(files.Count)];
        string Nm() => Names[rng.Next(Names.Length)] + rng.Next(3);
        Credentials C() => rng.Next(3) switch { 0 => RootCred, 1 => User(1000, 1000), _ => User(1001, 1001, 1000) };

        for (var i = 0; i < ops; i++)
        {
            switch (rng.Next(18))
            {
                case 0:
                case 1:
                    var md = await h.Mkdir(D(), Nm(), (uint)rng.Next(0x400) | 0x1C0, C());
                    if (md.Errno == 0)
                    {
                        dirs.Add(md.Attr.Inode);
                    }
                    break;
                case 2:
                    var cr = await h.Create(D(), Nm(), (uint)rng.Next(0x1000), C());
                    if (cr.Errno == 0)
                    {
                        files.Add(cr.Attr.Inode);
                    }
                    break;
                case 3:
                    var mk = await h.Mknod(D(), Nm(), PosixMode.Regular | (uint)rng.Next(0x1000), 0, C());
                    if (mk.Errno == 0)
                    {
                        files.Add(mk.Attr.Inode);
                    }
                    break;
                case 4:
                    await h.Unlink(D(), Nm(), C());
                    break;
                case 5:
                    await h.Rmdir(D(), Nm(), C());
                    break;
                case 6:
                case 7:
                    await h.Rename(D(), Nm(), D(), Nm(), (uint)(rng.Next(4) == 0 ? rng.Next(1, 3) : 0), C());
                    break;
                case 8:
                    await h.Link(F(), D(), Nm(), C());
                    break;
                case 9:
                    await h.Symlink(D(), Nm(), "target" + rng.Next(100), C());
                    break;
                case 10:
                    var id = await h.NewSliceIds((uint)rng.Next(1, 4));
                    var len = (uint)rng.Next(1, 100_000);
                    await h.Write(F(), (uint)rng.Next(3), new Slice { Id = id, Size = len, Length = len, Pos = (uint)rng.Next(1 << 20) }, C());
                    break;
                case 11:
                    await h.Truncate(F(), (ulong)rng.NextInt64(0, 200L << 20), C());
                    break;
                case 12:
                    await h.SetAttr(new SetAttrRequest
                    {
                        Inode = rng.Next(2) == 0 ? F() : D(),
                        Valid = (uint)rng.Next(0x200) & ~(uint)SetAttrValid.Size,
                        Mode = (uint)rng.Next(0x1000),
                        Uid = (uint)rng.Next(999, 1002),
                        Gid = (uint)rng.Next(999, 1002),
                        AtimeNs = rng.NextInt64(),
                        MtimeNs = rng.NextInt64(),
                    }, C());
                    break;
                case 13:
                    await h.Svc.SetXattrAsync(h.Stamp(new SetXattrRequest
                    {
                        Inode = rng.Next(2) == 0 ? F() : D(),
                        Name = N("user." + Nm()),
                        Value = ByteString.CopyFrom(new byte[rng.Next(20)]),
                        Flags = (uint)rng.Next(3),
                    }, C()));
                    break;
                case 14:
                    await h.Svc.RemoveXattrAsync(h.Stamp(new RemoveXattrRequest { Inode = F(), Name = N("user." + Nm()) }, C()));
                    break;
                case 15:
                    if (rng.Next(2) == 0)
                    {
                        await h.Open(F(), (uint)rng.Next(3));
                    }
                    else
                    {
                        await h.Release(F());
                    }
                    break;
                case 16:
                    await h.Svc.FallocateAsync(h.Stamp(new FallocateRequest
                    {
                        Inode = F(),
                        Mode = (uint)(rng.Next(3) switch { 0 => 0, 1 => 3, _ => 16 }),
                        Offset = (ulong)rng.Next(1 << 20),
                        Length = (ulong)rng.Next(1, 1 << 20),
                    }, C()));
                    break;
                case 17:
                    switch (rng.Next(4))
                    {
                        case 0:
                            h.Session = await h.NewSessionAsync("w" + i);
                            break;
                        case 1:
                            h.Clock.Ns += 60_000_000_000;
                            await h.Svc.ExpireSessionsAsync(TimeSpan.FromSeconds(30));
                            h.Session = await h.NewSessionAsync("after-expiry" + i);
                            break;
                        default:
                            await h.Svc.HeartbeatAsync(h.Stamp(new HeartbeatRequest()));
                            break;
                    }
                    break;
            }
        }
    }
}
