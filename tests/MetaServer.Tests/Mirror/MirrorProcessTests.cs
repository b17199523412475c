// `mirrorfs-meta serve --mirror-of` as real processes with tokens on both sides, and the mirror options' checks.
using Google.Protobuf;
using MirrorFS.Core.Meta;
using MirrorFS.Core.Rpc;
using MirrorFS.MetaServer.Tests.Server;
using MirrorFS.MetaServer.Tests.Storage;

namespace MirrorFS.MetaServer.Tests.Mirror;

public sealed class MirrorProcessTests
{
    [Fact]
    public async Task A_mirror_process_follows_a_primary_process_with_the_primarys_token()
    {
        using var dir = new TempDir();
        await using var primary = await MetaServerProcess.StartAsync(dir.Sub("p"));
        var primaryToken = (await File.ReadAllTextAsync(Path.Combine(dir.Sub("p"), "token"))).Trim();
        await using var mirror = await MetaServerProcess.StartAsync(dir.Sub("m"), "127.0.0.1:0",
            "--mirror-of", $"mirrorfs://{primary.Address}/vol", "--mirror-storage", "mem://mirror",
            "--token-file-primary", Path.Combine(dir.Sub("p"), "token"), "--mirror-id", "region-b");
        var mirrorToken = (await File.ReadAllTextAsync(Path.Combine(dir.Sub("m"), "token"))).Trim();
        Assert.NotEqual(primaryToken, mirrorToken);

        await using var p = new RpcMetaClient(new RpcMetaClientOptions { Addresses = [primary.Address], BearerToken = primaryToken });
        await using var m = new RpcMetaClient(new RpcMetaClientOptions { Addresses = [mirror.Address], BearerToken = mirrorToken, FailoverTimeoutMs = 30_000 });
        await MirrorWorkload.FormatAsync(p);
        var s = await p.NewSessionAsync(new NewSessionRequest { Cred = MirrorWorkload.Root });
        var made = await p.MkdirAsync(new MkdirRequest { SessionId = s.SessionId, Seq = 1, Cred = MirrorWorkload.Root, Parent = 1, Name = ByteString.CopyFromUtf8("d"), Mode = 0x1ED });
        Assert.Equal(0, made.Errno);

        // The mirror may still be connecting: a read at the write's index waits (or says behind) until it has it.
        LookupReply? seen = null;
        await MirrorWorkload.EventuallyAsync(() =>
        {
            try
            {
                using (MetaCallContext.WithMinIndex(made.Index))
                {
                    seen = m.LookupAsync(new LookupRequest { Parent = 1, Name = ByteString.CopyFromUtf8("d") }).GetAwaiter().GetResult();
                }
                return true;
            }
            catch (RpcException e) when (e.Trailers.Get(MetaRpc.MirrorBehindTrailer) is not null)
            {
                return false;
            }
        }, "the mirror process to reach the write", 60_000);
        Assert.Equal(0, seen!.Errno);
        Assert.Equal(made.Attr.Inode, seen.Attr.Inode);

        var refused = await Assert.ThrowsAsync<RpcException>(() => m.MkdirAsync(new MkdirRequest { Cred = MirrorWorkload.Root, Parent = 1, Name = ByteString.CopyFromUtf8("x"), Mode = 0x1ED }));
        Assert.Equal(StatusCode.FailedPrecondition, refused.Status);
        var listed = await p.ListMirrorsAsync(new ListMirrorsRequest());
        Assert.Contains(listed.Mirrors, x => x.MirrorId == "region-b");
    }

    [Theory]
    [InlineData("--mirror-storage", "mem://x", "need --mirror-of")]
    [InlineData("--mirror-of", "http://h:1/vol", "does not start with mirrorfs://")]
    [InlineData("--mirror-of", "mirrorfs://h/vol", "needs HOST:PORT")]
    public async Task Bad_mirror_options_fail_with_one_line(string option, string value, string expected)
    {
        using var dir = new TempDir();
        var err = new StringWriter();
        var code = await Program.RunAsync(["serve", "--data", dir.Path, "--no-auth", "--listen", "127.0.0.1:0", option, value], new StringWriter(), err);
        Assert.Equal(1, code);
        Assert.Contains(expected, err.ToString(), StringComparison.Ordinal);
        Assert.Single(err.ToString().Trim().Split('\n'));
    }
}
