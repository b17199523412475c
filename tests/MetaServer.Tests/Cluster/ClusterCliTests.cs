// mirrorfs-meta's cluster command line: flag and config-file parsing, validation, and one-line errors.
using MirrorFS.MetaServer.Cli;
using MirrorFS.MetaServer.Tests.Storage;

namespace MirrorFS.MetaServer.Tests.Cluster;

public sealed class ClusterCliTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public void PeersParseAndBadListsAreRefusedWithTheEntryNamed()
    {
        var peers = ServeConfig.ParsePeers("1=127.0.0.1:9401, 2=127.0.0.1:9402,3=node-c.example:9403");
        Assert.Equal("node-c.example:9403", peers[3]);
        Assert.Equal(3, peers.Count);
        Assert.Contains("'x' is not ID=HOST:PORT", Assert.Throws<CliException>(() => ServeConfig.ParsePeers("1=127.0.0.1:1,x")).Message);
        Assert.Contains("id 0 is reserved", Assert.Throws<CliException>(() => ServeConfig.ParsePeers("0=127.0.0.1:1")).Message);
        Assert.Contains("names member 1 twice", Assert.Throws<CliException>(() => ServeConfig.ParsePeers("1=127.0.0.1:1,1=127.0.0.1:2")).Message);
        Assert.Contains("to two members", Assert.Throws<CliException>(() => ServeConfig.ParsePeers("1=127.0.0.1:1,2=127.0.0.1:1")).Message);
        Assert.Contains("not HOST:PORT", Assert.Throws<CliException>(() => ServeConfig.ParsePeers("1=127.0.0.1")).Message);
        Assert.Contains("not HOST:PORT", Assert.Throws<CliException>(() => ServeConfig.ParsePeers("1=http://a:1")).Message);
        Assert.Contains("is empty", Assert.Throws<CliException>(() => ServeConfig.ParsePeers(" , ")).Message);
    }

    [Fact]
    public void ConfigFileIsReadRelativeToItselfAndFlagsOverrideIt()
    {
        var file = _dir.Sub("meta-2.json");
        File.WriteAllText(file, """
            {
              // comments are allowed
              "id": 2,
              "data": "n2",
              "listen": "0.0.0.0:9402",
              "peers": {"1": "10.0.0.1:9401", "2": "10.0.0.2:9402", "3": "10.0.0.3:9403"},
              "token-file": "token",
            }
            """);
        var c = ServeConfig.Load(file);
        Assert.Equal(2UL, c.Id);
        Assert.Equal(_dir.Sub("n2"), c.Data);
        Assert.Equal(_dir.Sub("token"), c.TokenFile);
        Assert.Equal("10.0.0.3:9403", c.Peers![3]);
        c.Validate();
        var merged = c.OverriddenBy(new ServeConfig { Listen = "127.0.0.1:1" });
        Assert.Equal("127.0.0.1:1", merged.EffectiveListen);
        Assert.Equal(2UL, merged.Id);
        var host = merged.ToHostOptions("t0123456789abcdef", null);
        Assert.Equal(2UL, host.NodeId);
        Assert.Equal(3, host.Peers!.Count);

        File.WriteAllText(file, """{"id": 1, "data": "d", "peers": "1=127.0.0.1:9401,2=127.0.0.1:9402"}""");
        Assert.Equal("127.0.0.1:9401", ServeConfig.Load(file).EffectiveListen); // this member's peers entry
    }

    [Theory]
    [InlineData("""{"id": 1, "dat": "d"}""", "unknown key \"dat\"")]
    [InlineData("""{"id": "one"}""", "\"id\" must be a whole number")]
    [InlineData("""{"peers": 5}""", "\"peers\" must be an object")]
    [InlineData("""[1]""", "one JSON object")]
    [InlineData("""{"id": 1,""", "not valid JSON")]
    public void BadConfigFilesAreRefusedInOneLine(string json, string expected)
    {
        var file = _dir.Sub("bad.json");
        File.WriteAllText(file, json);
        var e = Assert.Throws<CliException>(() => ServeConfig.Load(file));
        Assert.Contains(expected, e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void SettingsThatCannotWorkAreRefusedBeforeStarting()
    {
        var peers = ServeConfig.ParsePeers("1=127.0.0.1:9401,2=127.0.0.1:9402");
        Assert.Contains("--data", Assert.Throws<CliException>(() => new ServeConfig { Id = 1 }.Validate()).Message);
        Assert.Contains("need --id", Assert.Throws<CliException>(() => new ServeConfig { Data = "d", Peers = peers }.Validate()).Message);
        Assert.Contains("not this node's id 3", Assert.Throws<CliException>(() => new ServeConfig { Data = "d", Id = 3, Peers = peers, NoAuth = true }.Validate()).Message);
        Assert.Contains("share one token", Assert.Throws<CliException>(() => new ServeConfig { Data = "d", Id = 1, Peers = peers }.Validate()).Message);
        Assert.Contains("--heartbeat-ms", Assert.Throws<CliException>(() => new ServeConfig { Data = "d", Id = 1, HeartbeatMs = 500, ElectionTimeoutMs = 300 }.Validate()).Message);
        new ServeConfig { Data = "d", Id = 3, Peers = peers, Join = true, TokenFile = "t" }.Validate(); // a joining member need not be listed
        new ServeConfig { Data = "d", Id = 1 }.Validate(); // a one-member cluster may keep its token in DATA/token
        new ServeConfig { Data = "d" }.Validate();
    }

    [Theory]
    [InlineData(new[] { "bogus" }, 2, "Unrecognized command or argument 'bogus'")]
    [InlineData(new[] { "member", "add", "4" }, 2, "mirrorfs-meta member add --help")]
    [InlineData(new[] { "member", "add", "x", "127.0.0.1:1", "--meta", "127.0.0.1:1" }, 2, "mirrorfs-meta")]
    [InlineData(new[] { "member", "add", "0", "127.0.0.1:1", "--meta", "127.0.0.1:1" }, 1, "member id 0 is reserved")]
    [InlineData(new[] { "member", "add", "4", "nowhere", "--meta", "127.0.0.1:1" }, 1, "'nowhere' is not HOST:PORT")]
    [InlineData(new[] { "transfer-leader", "2", "--meta", "a:b" }, 1, "--meta address 'a:b' is not HOST:PORT")]
    [InlineData(new[] { "serve", "--id", "1" }, 1, "no data directory")]
    [InlineData(new[] { "serve", "--data", "d", "--peers", "1=127.0.0.1:1" }, 1, "need --id")]
    public async Task BadCommandLinesPrintOneLineAndFail(string[] args, int code, string expected)
    {
        var (exit, stdout, stderr) = await ClusterHarness.CliAsync(args);
        Assert.Equal(code, exit);
        Assert.Contains(expected, stderr);
        Assert.Single(stderr.TrimEnd().Split('\n'));
        Assert.Equal("", stdout);
    }

    [Fact]
    public async Task AdminCommandsAgainstNoServerFailWithTheAddressNamed()
    {
        var port = ClusterHarness.FreePort();
        var (exit, stdout, stderr) = await ClusterHarness.CliAsync("cluster", "status", "--meta", $"127.0.0.1:{port}");
        Assert.Equal(1, exit);
        Assert.Contains("unreachable", stdout);
        Assert.Contains($"no member answered: cannot reach metaserver 127.0.0.1:{port}", stderr);
        var ctx = new MetaCliContext(new StringWriter(), new StringWriter()) { AdminTimeoutMs = 500 };
        Assert.Equal(1, await MetaCli.RunAsync(["member", "remove", "2", "--meta", $"127.0.0.1:{port}"], ctx));
        // The wording depends on whether the connection attempt or the 500 ms budget ran out first (machine load).
        Assert.Contains($"127.0.0.1:{port}", ctx.Err.ToString());
        Assert.StartsWith("mirrorfs-meta member remove: ", ctx.Err.ToString());
    }

    [Fact]
    public void HostPortRecognisesNamesAndAddresses()
    {
        Assert.True(Hosting.ClusterRpc.IsHostPort("127.0.0.1:9401"));
        Assert.True(Hosting.ClusterRpc.IsHostPort("meta-1.internal:9401"));
        Assert.True(Hosting.ClusterRpc.IsHostPort("[::1]:9401"));
        Assert.False(Hosting.ClusterRpc.IsHostPort("::1:9401"));
        Assert.False(Hosting.ClusterRpc.IsHostPort("host:0"));
        Assert.False(Hosting.ClusterRpc.IsHostPort("host:70000"));
        Assert.False(Hosting.ClusterRpc.IsHostPort(":9401"));
        Assert.False(Hosting.ClusterRpc.IsHostPort("host"));
    }
}
