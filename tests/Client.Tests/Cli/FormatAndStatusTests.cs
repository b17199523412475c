using System.Text;
using System.Text.Json;
using MirrorFS.Core.Meta;
using MirrorFS.Core.Storage;

namespace MirrorFS.Client.Tests.Cli;

public sealed class FormatAndStatusTests
{
    private const string StoreSecret = "VERYSECRETKEY42";

    [Fact]
    public async Task FormatWritesTheUuidRecordsSettingsAndPrintsNoSecret()
    {
        await using var f = await MetaServerFixture.StartAsync();
        var storage = $"{f.StorageUri}?secret-key={StoreSecret}";
        var run = await CliHarness.RunAsync("format", f.Url("myfs"), "myfs", "--storage", storage,
            "--block-size", "1M", "--trash-days", "3");
        Assert.True(run.ExitCode == 0, run.Err);
        Assert.DoesNotContain(StoreSecret, run.Out + run.Err, StringComparison.Ordinal);
        Assert.DoesNotContain(MetaServerFixture.Token, run.Out + run.Err, StringComparison.Ordinal);
        Assert.Contains("1 MiB", run.Out, StringComparison.Ordinal);
        Assert.Contains("secret-key=***", run.Out, StringComparison.Ordinal);

        await using var meta = new RpcMetaClient(new RpcMetaClientOptions { Addresses = [f.Host.Address], BearerToken = MetaServerFixture.Token });
        var volume = (await meta.GetVolumeAsync(new GetVolumeRequest())).Volume;
        Assert.Equal("myfs", volume.Name);
        Assert.Equal(1u << 20, volume.BlockSize);
        Assert.Equal(3u, volume.TrashDays);
        Assert.Equal(storage, volume.Storage);
        Assert.Contains(volume.Uuid, run.Out, StringComparison.Ordinal);

        await using var store = ObjectStoreFactory.Open(f.StorageUri);
        var uuid = await store.GetAsync("myfs/mirrorfs_uuid");
        Assert.NotNull(uuid);
        Assert.Equal(volume.Uuid, Encoding.UTF8.GetString(uuid));
        // The probe object is gone: only the uuid is left under the volume.
        var page = await store.ListAsync("myfs/");
        Assert.Equal(["myfs/mirrorfs_uuid"], page.Objects.Select(o => o.Key));

        var again = await CliHarness.RunAsync("format", f.Url("myfs"), "myfs", "--storage", storage);
        Assert.Equal(1, again.ExitCode);
        Assert.Single(again.ErrLines);
        Assert.Contains("already formatted", again.Err, StringComparison.Ordinal);
        Assert.DoesNotContain(StoreSecret, again.Out + again.Err, StringComparison.Ordinal);
    }

    [Fact]
    public async Task FormatRefusesABucketThatAlreadyHoldsTheVolume()
    {
        await using var f = await MetaServerFixture.StartAsync();
        await using (var store = ObjectStoreFactory.Open(f.StorageUri))
        {
            await store.PutAsync("myfs/mirrorfs_uuid", Encoding.UTF8.GetBytes("old-uuid"));
        }
        var run = await CliHarness.RunAsync("format", f.Url("myfs"), "myfs", "--storage", f.StorageUri);
        Assert.Equal(1, run.ExitCode);
        Assert.Single(run.ErrLines);
        Assert.Contains("already holds volume myfs (uuid old-uuid)", run.Err, StringComparison.Ordinal);
        await using var meta = new RpcMetaClient(new RpcMetaClientOptions { Addresses = [f.Host.Address], BearerToken = MetaServerFixture.Token });
        Assert.Equal(Errno.ENOENT, (await meta.GetVolumeAsync(new GetVolumeRequest())).Errno);
    }

    [Fact]
    public async Task TokenFromFileAndEnvironmentWorkAndAWrongOneIsOneLine()
    {
        await using var f = await MetaServerFixture.StartAsync();
        var tokenFile = Path.Combine(f.Root, "token");
        await File.WriteAllTextAsync(tokenFile, MetaServerFixture.Token + "\n");
        var url = $"mirrorfs://{f.Host.Address}/vol1";
        var run = await CliHarness.RunAsync("format", url, "vol1", "--storage", f.StorageUri, "--token-file", tokenFile);
        Assert.True(run.ExitCode == 0, run.Err);

        var env = new Dictionary<string, string> { ["MIRRORFS_TOKEN"] = MetaServerFixture.Token };
        run = await CliHarness.RunAsync(env, "status", url);
        Assert.True(run.ExitCode == 0, run.Err);

        run = await CliHarness.RunAsync("status", $"mirrorfs://:wrong-token-1234567@{f.Host.Address}/vol1");
        Assert.Equal(1, run.ExitCode);
        Assert.Single(run.ErrLines);
        Assert.Contains("refused the token", run.Err, StringComparison.Ordinal);
        Assert.DoesNotContain("wrong-token", run.Err, StringComparison.Ordinal);
    }

    [Fact]
    public async Task StatusShowsSettingsAndSessionsAsTablesAndJson()
    {
        await using var f = await MetaServerFixture.StartAsync();
        var storage = $"{f.StorageUri}?secret-key={StoreSecret}";
        Assert.Equal(0, (await CliHarness.RunAsync("format", f.Url("myfs"), "myfs", "--storage", storage)).ExitCode);

        await using var meta = new RpcMetaClient(new RpcMetaClientOptions { Addresses = [f.Host.Address], BearerToken = MetaServerFixture.Token });
        var s1 = await meta.NewSessionAsync(new NewSessionRequest
        {
            Info = new ClientInfo { Hostname = "host-a", MountPoint = "/mnt/a", Pid = 4242, Version = "0.1" },
        });
        var s2 = await meta.NewSessionAsync(new NewSessionRequest { Info = new ClientInfo { Hostname = "host-b", MountPoint = "/mnt/b" } });
        Assert.Equal(0, s1.Errno);

        var run = await CliHarness.RunAsync("status", f.Url("myfs"));
        Assert.True(run.ExitCode == 0, run.Err);
        foreach (var want in new[] { "myfs", "host-a", "/mnt/a", "4242", "host-b", "/mnt/b", "secret-key=***", "2 client session(s)" })
        {
            Assert.Contains(want, run.Out, StringComparison.Ordinal);
        }
        Assert.DoesNotContain(StoreSecret, run.Out, StringComparison.Ordinal);

        run = await CliHarness.RunAsync("status", f.Url("myfs"), "--json");
        Assert.True(run.ExitCode == 0, run.Err);
        Assert.DoesNotContain(StoreSecret, run.Out, StringComparison.Ordinal);
        using var doc = JsonDocument.Parse(run.Out);
        Assert.Equal("myfs", doc.RootElement.GetProperty("volume").GetProperty("name").GetString());
        var sessions = doc.RootElement.GetProperty("sessions").EnumerateArray().ToArray();
        Assert.Equal([s1.SessionId, s2.SessionId], sessions.Select(s => s.GetProperty("sessionId").GetUInt64()));
        Assert.Equal("/mnt/a", sessions[0].GetProperty("mountPoint").GetString());
        Assert.Equal(4242u, sessions[0].GetProperty("pid").GetUInt32());

        // A closed session is no longer listed.
        await meta.CloseSessionAsync(new CloseSessionRequest { SessionId = s1.SessionId });
        run = await CliHarness.RunAsync("status", f.Url("myfs"), "--json");
        using var after = JsonDocument.Parse(run.Out);
        Assert.Equal([s2.SessionId], after.RootElement.GetProperty("sessions").EnumerateArray().Select(s => s.GetProperty("sessionId").GetUInt64()));
    }

    [Fact]
    public async Task ListSessionsPages()
    {
        await using var f = await MetaServerFixture.StartAsync();
        await using var meta = new RpcMetaClient(new RpcMetaClientOptions { Addresses = [f.Host.Address], BearerToken = MetaServerFixture.Token });
        var ids = new List<ulong>();
        for (var i = 0; i < 5; i++)
        {
            ids.Add((await meta.NewSessionAsync(new NewSessionRequest())).SessionId);
        }
        var page1 = await meta.ListSessionsAsync(new ListSessionsRequest { Limit = 3 });
        Assert.False(page1.Eof);
        Assert.Equal(ids.Take(3), page1.Sessions.Select(s => s.SessionId));
        var page2 = await meta.ListSessionsAsync(new ListSessionsRequest { Limit = 3, StartAfter = page1.Sessions[^1].SessionId });
        Assert.True(page2.Eof);
        Assert.Equal(ids.Skip(3), page2.Sessions.Select(s => s.SessionId));
    }

    [Fact]
    public async Task StatusOfAnotherVolumeNamesWhatIsServed()
    {
        await using var f = await MetaServerFixture.StartAsync();
        Assert.Equal(0, (await CliHarness.RunAsync("format", f.Url("myfs"), "myfs", "--storage", f.StorageUri)).ExitCode);
        var run = await CliHarness.RunAsync("status", f.Url("other"));
        Assert.Equal(1, run.ExitCode);
        Assert.Single(run.ErrLines);
        Assert.Contains($"volume other not found on {f.Host.Address} (it serves myfs)", run.Err, StringComparison.Ordinal);
    }

    [Fact]
    public async Task StatusBeforeFormatSaysSo()
    {
        await using var f = await MetaServerFixture.StartAsync();
        var run = await CliHarness.RunAsync("status", f.Url("myfs"));
        Assert.Equal(1, run.ExitCode);
        Assert.Single(run.ErrLines);
        Assert.True(run.Err.Contains("not found", StringComparison.Ordinal), run.Err);
    }

    [Fact]
    public async Task UnreachableMetaserverIsOneLine()
    {
        // A port that was free a moment ago: nothing listens there.
        var l = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        l.Start();
        var port = ((System.Net.IPEndPoint)l.LocalEndpoint).Port;
        l.Stop();
        var run = await CliHarness.RunAsync(null, 500, "status", $"mirrorfs://127.0.0.1:{port}/myfs");
        Assert.Equal(1, run.ExitCode);
        Assert.Single(run.ErrLines);
        Assert.Contains($"cannot reach metaserver 127.0.0.1:{port}", run.Err, StringComparison.Ordinal);
    }
}
