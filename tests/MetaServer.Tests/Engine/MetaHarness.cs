// Test harness: a formatted volume on MetaService + InMemoryLog with a manual clock and one session.
using Google.Protobuf;
using MirrorFS.Core.Meta;
using MirrorFS.MetaServer.Consensus;
using MirrorFS.MetaServer.Engine;

namespace MirrorFS.MetaServer.Tests.Engine;

/// <summary>A clock the test moves by hand (100 ns resolution, like DateTimeOffset ticks).</summary>
internal sealed class ManualClock(long startNs) : TimeProvider
{
    public long Ns { get; set; } = startNs;

    public override DateTimeOffset GetUtcNow() => new(DateTime.UnixEpoch.Ticks + (Ns / 100), TimeSpan.Zero);
}

internal sealed class MetaHarness : IDisposable
{
    public const ulong Root = 1;
    public const long StartNs = 1_700_000_000_000_000_000;

    public static readonly Credentials RootCred = new() { Uid = 0, Gid = 0 };

    private ulong _seq;

    public MetaHarness(Func<MetaStateMachine, IReplicatedLog>? logFactory = null)
    {
        Clock = new ManualClock(StartNs);
        State = new MetaStateMachine();
        Log = logFactory?.Invoke(State) ?? new InMemoryLog(State);
        Svc = new MetaService(State, Log, Clock);
    }

    public ManualClock Clock { get; }

    public MetaStateMachine State { get; }

    public IReplicatedLog Log { get; }

    public MetaService Svc { get; }

    public ulong Session { get; set; }

    /// <summary>Time the last mutating call was stamped with (the clock moves 1 ms before each).</summary>
    public long Now => Clock.Ns;

    public static Credentials User(uint uid, uint gid, params uint[] groups)
    {
        var c = new Credentials { Uid = uid, Gid = gid };
        c.Gids.Add(groups);
        return c;
    }

    public static ByteString N(string s) => ByteString.CopyFromUtf8(s);

    public static async Task<MetaHarness> StartAsync(uint rootMode = 0x1FF, ulong capacityBytes = 0, ulong inodesMax = 0,
        Func<MetaStateMachine, IReplicatedLog>? logFactory = null)
    {
        var h = new MetaHarness(logFactory);
        var f = await h.Svc.FormatAsync(new FormatRequest
        {
            Volume = new Volume { Name = "test", Storage = "memory://", CapacityBytes = capacityBytes, InodesMax = inodesMax },
            RootMode = rootMode,
            Cred = RootCred,
        });
        Assert.Equal(0, f.Errno);
        h.Session = await h.NewSessionAsync();
        return h;
    }

    public async Task<ulong> NewSessionAsync(string host = "test")
    {
        Tick();
        var s = await Svc.NewSessionAsync(new NewSessionRequest { Info = new ClientInfo { Hostname = host } });
        Assert.Equal(0, s.Errno);
        return s.SessionId;
    }

    public void Tick() => Clock.Ns += 1_000_000;

    /// <summary>Fills the session header (a fresh seq, everything before it acked) and the caller.</summary>
    public T Stamp<T>(T r, Credentials? cred = null) where T : IMutatingRequest
    {
        Tick();
        r.SessionId = Session;
        r.Seq = ++_seq;
        r.AckedSeq = _seq - 1;
        r.Cred = cred ?? RootCred;
        return r;
    }

    public Task<MkdirReply> Mkdir(ulong parent, string name, uint mode = 0x1ED, Credentials? c = null, uint umask = 0) =>
        Svc.MkdirAsync(Stamp(new MkdirRequest { Parent = parent, Name = N(name), Mode = mode, Umask = umask }, c));

    public Task<MknodReply> Mknod(ulong parent, string name, uint mode = PosixMode.Regular | 0x1A4, ulong rdev = 0, Credentials? c = null) =>
        Svc.MknodAsync(Stamp(new MknodRequest { Parent = parent, Name = N(name), Mode = mode, Rdev = rdev }, c));

    public Task<CreateReply> Create(ulong parent, string name, uint mode = 0x1A4, Credentials? c = null, uint flags = OpenFlags.ReadWrite) =>
        Svc.CreateAsync(Stamp(new CreateRequest { Parent = parent, Name = N(name), Mode = mode, Flags = flags }, c));

    public Task<UnlinkReply> Unlink(ulong parent, string name, Credentials? c = null) =>
        Svc.UnlinkAsync(Stamp(new UnlinkRequest { Parent = parent, Name = N(name) }, c));

    public Task<RmdirReply> Rmdir(ulong parent, string name, Credentials? c = null) =>
        Svc.RmdirAsync(Stamp(new RmdirRequest { Parent = parent, Name = N(name) }, c));

    public Task<RenameReply> Rename(ulong parent, string name, ulong newParent, string newName, uint flags = 0, Credentials? c = null) =>
        Svc.RenameAsync(Stamp(new RenameRequest { Parent = parent, Name = N(name), NewParent = newParent, NewName = N(newName), Flags = flags }, c));

    public Task<LinkReply> Link(ulong inode, ulong newParent, string newName, Credentials? c = null) =>
        Svc.LinkAsync(Stamp(new LinkRequest { Inode = inode, NewParent = newParent, NewName = N(newName) }, c));

    public Task<SymlinkReply> Symlink(ulong parent, string name, string target, Credentials? c = null) =>
        Svc.SymlinkAsync(Stamp(new SymlinkRequest { Parent = parent, Name = N(name), Target = N(target) }, c));

    public Task<SetAttrReply> SetAttr(SetAttrRequest r, Credentials? c = null) => Svc.SetAttrAsync(Stamp(r, c));

    public Task<OpenReply> Open(ulong inode, uint flags = OpenFlags.ReadWrite, Credentials? c = null) =>
        Svc.OpenAsync(Stamp(new OpenRequest { Inode = inode, Flags = flags }, c));

    public Task<ReleaseReply> Release(ulong inode) => Svc.ReleaseAsync(Stamp(new ReleaseRequest { Inode = inode }));

    public Task<TruncateReply> Truncate(ulong inode, ulong size, Credentials? c = null) =>
        Svc.TruncateAsync(Stamp(new TruncateRequest { Inode = inode, Size = size }, c));

    public async Task<ulong> NewSliceIds(uint count = 1)
    {
        var r = await Svc.NewSliceIdsAsync(Stamp(new NewSliceIdsRequest { Count = count }));
        Assert.Equal(0, r.Errno);
        return r.FirstId;
    }

    public Task<WriteSliceReply> Write(ulong inode, uint chunk, Slice slice, Credentials? c = null) =>
        Svc.WriteSliceAsync(Stamp(new WriteSliceRequest { Inode = inode, ChunkIndex = chunk, Slice = slice }, c));

    /// <summary>Allocates a slice id and records a whole-slice write of <paramref name="length"/> bytes at <paramref name="pos"/>.</summary>
    public async Task<(ulong Id, WriteSliceReply Reply)> WriteNew(ulong inode, uint chunk, uint pos, uint length, Credentials? c = null)
    {
        var id = await NewSliceIds();
        var r = await Write(inode, chunk, new Slice { Id = id, Size = length, Offset = 0, Length = length, Pos = pos }, c);
        return (id, r);
    }

    public async Task<Attr?> GetAttr(ulong inode)
    {
        var r = await Svc.GetAttrAsync(new GetAttrRequest { Inode = inode });
        return r.Errno == 0 ? r.Attr : null;
    }

    public async Task<Attr> Attr(ulong inode)
    {
        var r = await Svc.GetAttrAsync(new GetAttrRequest { Inode = inode });
        Assert.Equal(0, r.Errno);
        return r.Attr;
    }

    public Task<LookupReply> Lookup(ulong parent, string name) =>
        Svc.LookupAsync(new LookupRequest { Parent = parent, Name = N(name) });

    public async Task<ulong> Ino(ulong parent, string name)
    {
        var r = await Lookup(parent, name);
        Assert.Equal(0, r.Errno);
        return r.Attr.Inode;
    }

    /// <summary>Every entry of a directory except "." and "..", read in pages of <paramref name="page"/>.</summary>
    public async Task<List<DirEntry>> List(ulong dir, uint page = 1000)
    {
        var all = new List<DirEntry>();
        ulong offset = 0;
        for (var guard = 0; guard < 1_000_000; guard++)
        {
            var r = await Svc.ReadDirAsync(new ReadDirRequest { Inode = dir, Offset = offset, Limit = page });
            Assert.Equal(0, r.Errno);
            foreach (var e in r.Entries)
            {
                if (e.Name != N(".") && e.Name != N(".."))
                {
                    all.Add(e);
                }
                offset = e.Offset;
            }
            if (r.Eof)
            {
                return all;
            }
            Assert.NotEmpty(r.Entries);
        }
        throw new InvalidOperationException("directory listing did not end");
    }

    public void Dispose() => State.Dispose();
}
