// kill -9 the metaserver during concurrent writes: every acknowledged change must be there after restart.
using System.Collections.Concurrent;
using Google.Protobuf;
using MirrorFS.Core.Meta;
using Xunit.Abstractions;

namespace MirrorFS.MetaServer.Tests.Server;

public sealed class CrashTests(ITestOutputHelper output) : IDisposable
{
    private static readonly Credentials Root = new();
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "mirrorfs-crash-" + Guid.NewGuid().ToString("N")[..12]);

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

    private static RpcMetaClient Client(string address, int failoverMs = 3_000) => new(new RpcMetaClientOptions
    {
        Addresses = [address],
        BearerToken = File.ReadAllText(Path.Combine(TokenDir(address), "token")).Trim(),
        FailoverTimeoutMs = failoverMs,
        CallTimeoutMs = 5_000,
    });

    private static readonly ConcurrentDictionary<string, string> Dirs = new();

    private static string TokenDir(string address) => Dirs[address];

    private async Task<MetaServerProcess> Start()
    {
        var p = await MetaServerProcess.StartAsync(_dir, "127.0.0.1:0", "--snapshot-every", "300");
        Dirs[p.Address] = _dir;
        return p;
    }

    [Fact]
    public async Task EveryAcknowledgedChangeSurvivesKillDashNine()
    {
        var acked = new ConcurrentBag<(ulong Dir, string Name, ulong Inode)>();
        var server = await Start();
        try
        {
            ulong[] dirs;
            await using (var setup = Client(server.Address))
            {
                Assert.Equal(0, (await setup.FormatAsync(new FormatRequest { Cred = Root, Volume = new Volume { Name = "crash" } })).Errno);
                dirs = new ulong[8];
                for (var w = 0; w < dirs.Length; w++)
                {
                    var mk = await setup.MkdirAsync(new MkdirRequest { Cred = Root, Parent = 1, Name = ByteString.CopyFromUtf8($"w{w}"), Mode = 0x1ED });
                    Assert.Equal(0, mk.Errno);
                    dirs[w] = mk.Attr.Inode;
                }
            }

            // 8 writers create files until the server dies under them; only replies they received count.
            using var stop = new CancellationTokenSource();
            var writers = dirs.Select((dir, w) => Task.Run(async () =>
            {
                await using var c = Client(server.Address, failoverMs: 500);
                for (var i = 0; !stop.IsCancellationRequested; i++)
                {
                    var name = $"f{i}";
                    try
                    {
                        var r = await c.MknodAsync(new MknodRequest { Cred = Root, Parent = dir, Name = ByteString.CopyFromUtf8(name), Mode = 0x81A4 });
                        Assert.Equal(0, r.Errno);
                        acked.Add((dir, name, r.Attr.Inode));
                    }
                    catch (MetaUnavailableException)
                    {
                        return;
                    }
                }
            })).ToArray();

            // Kill once enough creates are acknowledged (a count, not a time: CI machines are slow when loaded).
            var waitUntil = DateTime.UtcNow.AddSeconds(60);
            while (acked.Count < 300 && DateTime.UtcNow < waitUntil && !writers.All(w => w.IsCompleted))
            {
                await Task.Delay(20);
            }
            await server.KillAsync();
            stop.Cancel();
            await Task.WhenAll(writers);
            output.WriteLine($"{acked.Count} creates acknowledged before kill -9");
            Assert.True(acked.Count >= 300, $"only {acked.Count} creates were acknowledged before the kill");
        }
        catch
        {
            output.WriteLine(server.Output);
            throw;
        }
        finally
        {
            await server.DisposeAsync();
        }

        await using var restarted = await Start();
        try
        {
            await using var c = Client(restarted.Address);
            foreach (var (dir, name, inode) in acked)
            {
                var look = await c.LookupAsync(new LookupRequest { Cred = Root, Parent = dir, Name = ByteString.CopyFromUtf8(name) });
                Assert.True(look.Errno == 0, $"acknowledged create {dir}/{name} is missing after restart (errno {look.Errno})");
                Assert.Equal(inode, look.Attr.Inode);
            }
            // The server keeps working after recovery.
            var after = await c.MkdirAsync(new MkdirRequest { Cred = Root, Parent = 1, Name = ByteString.CopyFromUtf8("after"), Mode = 0x1ED });
            Assert.Equal(0, after.Errno);
        }
        catch
        {
            output.WriteLine(restarted.Output);
            throw;
        }
    }

    [Fact]
    public async Task CallsWithoutTheTokenAreRejected()
    {
        await using var server = await Start();
        await using var noToken = new RpcMetaClient(new RpcMetaClientOptions { Addresses = [server.Address], FailoverTimeoutMs = 30_000 }); // generous: a loaded machine may answer slowly
        var e = await Assert.ThrowsAsync<Core.Rpc.RpcException>(() => noToken.GetAttrAsync(new GetAttrRequest { Cred = Root, Inode = 1 }));
        Assert.Equal(Core.Rpc.StatusCode.Unauthenticated, e.Status);
    }
}
