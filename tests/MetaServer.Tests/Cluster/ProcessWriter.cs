// A client that creates files in its own directory under failover, keeping every outcome for the exactly-once checks.
using System.Collections.Concurrent;
using System.Diagnostics;
using Google.Protobuf;
using MirrorFS.Core.Meta;

namespace MirrorFS.MetaServer.Tests.Cluster;

/// <summary>One create as the writer saw it. <see cref="ServedBy"/> is the member that answered.</summary>
public sealed record CreateOutcome(string Name, int Errno, ulong Inode, string ServedBy, long CompletedAt, int Retries);

public sealed class ProcessWriter : IAsyncDisposable
{
    /// <summary>Times one create is re-sent, with the same (session, seq), after the client's own failover gave up.</summary>
    private const int ResendsMax = 2;

    private static readonly Credentials Root = new();
    private readonly RpcMetaClient _client;
    private ulong _seq;

    private ProcessWriter(RpcMetaClient client, ulong dir, ulong session)
    {
        _client = client;
        Dir = dir;
        Session = session;
    }

    public ulong Dir { get; }

    public ulong Session { get; }

    public ConcurrentQueue<CreateOutcome> Outcomes { get; } = new();

    public int Acked => Outcomes.Count(o => o.Errno == 0);

    /// <summary>Makes directory <paramref name="name"/> under the root and a session for the writer.</summary>
    public static async Task<ProcessWriter> StartAsync(RpcMetaClient client, string name)
    {
        var mk = await client.MkdirAsync(new MkdirRequest { Cred = Root, Parent = 1, Name = ByteString.CopyFromUtf8(name), Mode = 0x1ED });
        if (mk.Errno != 0)
        {
            throw new InvalidOperationException($"mkdir /{name} failed with errno {mk.Errno}");
        }
        var s = await client.NewSessionAsync(new NewSessionRequest { Cred = Root, Info = new ClientInfo { Hostname = name } });
        if (s.Errno != 0)
        {
            throw new InvalidOperationException($"new session for {name} failed with errno {s.Errno}");
        }
        return new ProcessWriter(client, mk.Attr.Inode, s.SessionId);
    }

    /// <summary>Creates <paramref name="name"/>; a failed call is re-sent unchanged, so the state machine must answer the
    /// repeat with the first reply. Throws only when every re-send failed.</summary>
    public async Task<CreateOutcome> CreateAsync(string name)
    {
        var seq = ++_seq;
        var request = new CreateRequest
        {
            SessionId = Session, Seq = seq, AckedSeq = seq - 1, Cred = Root, Parent = Dir,
            Name = ByteString.CopyFromUtf8(name), Mode = 0x81A4, Flags = 2, // O_RDWR
        };
        for (var attempt = 0; ; attempt++)
        {
            try
            {
                var r = await _client.CreateAsync(request);
                // One call at a time per client: the member it last talked to is the one that answered.
                var outcome = new CreateOutcome(name, r.Errno, r.Attr?.Inode ?? 0, _client.CurrentAddress, Stopwatch.GetTimestamp(), attempt);
                Outcomes.Enqueue(outcome);
                return outcome;
            }
            catch (MetaUnavailableException) when (attempt < ResendsMax)
            {
            }
        }
    }

    public ValueTask DisposeAsync() => _client.DisposeAsync();

    /// <summary>Every entry of directory <paramref name="dir"/> (without . and ..), paging through the listing.</summary>
    public static async Task<List<(string Name, Attr Attr)>> ListAsync(IMetaClient client, ulong dir)
    {
        var all = new List<(string, Attr)>();
        ulong offset = 0;
        while (true)
        {
            var r = await client.ReadDirAsync(new ReadDirRequest { Cred = Root, Inode = dir, Offset = offset, Limit = 1024 });
            if (r.Errno != 0)
            {
                throw new InvalidOperationException($"readdir of inode {dir} at offset {offset} failed with errno {r.Errno}");
            }
            foreach (var e in r.Entries)
            {
                var name = e.Name.ToStringUtf8();
                if (name is not ("." or ".."))
                {
                    all.Add((name, e.Attr));
                }
                offset = e.Offset;
            }
            if (r.Eof || r.Entries.Count == 0)
            {
                return all;
            }
        }
    }
}
