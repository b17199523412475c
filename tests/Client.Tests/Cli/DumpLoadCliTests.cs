// mirrorfs dump and load as commands against real metaservers: files, stdout, gzip, secrets, refusals.
using System.Text.Json;
using Google.Protobuf;
using MirrorFS.Core.Meta;

namespace MirrorFS.Client.Tests.Cli;

public sealed class DumpLoadCliTests
{
    private const string Secret = "DUMPSECRET987";

    private static RpcMetaClient Client(MetaServerFixture f) =>
        new(new RpcMetaClientOptions { Addresses = [f.Host.Address], BearerToken = MetaServerFixture.Token });

    private static async Task<MetaServerFixture> SourceAsync()
    {
        var f = await MetaServerFixture.StartAsync();
        var run = await CliHarness.RunAsync("format", f.Url("myfs"), "myfs", "--storage", $"{f.StorageUri}?secret-key={Secret}");
        Assert.True(run.ExitCode == 0, run.Err);
        await using var meta = Client(f);
        var d = await meta.MkdirAsync(new MkdirRequest { Parent = 1, Name = ByteString.CopyFromUtf8("d"), Mode = 0x1ED });
        Assert.Equal(0, d.Errno);
        Assert.Equal(0, (await meta.MknodAsync(new MknodRequest { Parent = d.Attr.Inode, Name = ByteString.CopyFromUtf8("f"), Mode = PosixMode.Regular | 0x1A4 })).Errno);
        Assert.Equal(0, (await meta.SymlinkAsync(new SymlinkRequest { Parent = 1, Name = ByteString.CopyFromUtf8("l"), Target = ByteString.CopyFromUtf8("d/f") })).Errno);
        return f;
    }

    private static string Tree(string path)
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(path));
        return doc.RootElement.GetProperty("tree").GetRawText();
    }

    [Fact]
    public async Task DumpThenLoadIntoANewMetaserverGivesTheSameTree()
    {
        await using var src = await SourceAsync();
        var dir = Path.Combine(src.Root, "dumps");
        Directory.CreateDirectory(dir);
        var plain = Path.Combine(dir, "d.json");
        var run = await CliHarness.RunAsync("dump", src.Url("myfs"), plain);
        Assert.True(run.ExitCode == 0, run.Err);
        Assert.Contains("secret keys left out", run.Out, StringComparison.Ordinal);
        Assert.DoesNotContain(Secret, await File.ReadAllTextAsync(plain), StringComparison.Ordinal);
        Assert.False(File.Exists(plain + ".partial"));

        await using var dst = await MetaServerFixture.StartAsync();
        // The dump has no secret: the storage must be given.
        run = await CliHarness.RunAsync("load", dst.Url("myfs"), plain);
        Assert.Equal(1, run.ExitCode);
        Assert.Single(run.ErrLines);
        Assert.Contains("--storage", run.Err, StringComparison.Ordinal);

        run = await CliHarness.RunAsync("load", dst.Url("myfs"), plain, "--storage", src.StorageUri);
        Assert.True(run.ExitCode == 0, run.Err);
        Assert.Contains("ready to mount", run.Out, StringComparison.Ordinal);
        run = await CliHarness.RunAsync("status", dst.Url("myfs"));
        Assert.True(run.ExitCode == 0, run.Err);

        var again = Path.Combine(dir, "again.json");
        Assert.Equal(0, (await CliHarness.RunAsync("dump", dst.Url("myfs"), again)).ExitCode);
        Assert.Equal(Tree(plain), Tree(again));

        // Not empty any more.
        run = await CliHarness.RunAsync("load", dst.Url("myfs"), plain, "--storage", src.StorageUri);
        Assert.Equal(1, run.ExitCode);
        Assert.Single(run.ErrLines);
        Assert.Contains("not empty", run.Err, StringComparison.Ordinal);

        // With the secret kept and gzip: loads as it is, secret included.
        var gz = Path.Combine(dir, "d.json.gz");
        run = await CliHarness.RunAsync("dump", src.Url("myfs"), gz, "--keep-secret-key");
        Assert.True(run.ExitCode == 0, run.Err);
        Assert.Equal(0x1F, File.ReadAllBytes(gz)[0]);
        await using var third = await MetaServerFixture.StartAsync();
        run = await CliHarness.RunAsync("load", third.Url("myfs"), gz);
        Assert.True(run.ExitCode == 0, run.Err);
        await using var meta = Client(third);
        Assert.Contains(Secret, (await meta.GetVolumeAsync(new GetVolumeRequest())).Volume.Storage, StringComparison.Ordinal);
    }

    [Fact]
    public async Task DumpToStdoutAndRefusals()
    {
        await using var src = await SourceAsync();
        var run = await CliHarness.RunAsync("dump", src.Url("myfs"), "-");
        Assert.True(run.ExitCode == 0, run.Err);
        using (var doc = JsonDocument.Parse(run.Out))
        {
            Assert.Equal(3, doc.RootElement.GetProperty("totals").GetProperty("nodes").GetInt32() - 1);
        }
        Assert.Contains("dumped volume myfs", run.Err, StringComparison.Ordinal);

        var file = Path.Combine(src.Root, "x.json");
        await File.WriteAllTextAsync(file, run.Out);
        await using var dst = await MetaServerFixture.StartAsync();
        run = await CliHarness.RunAsync("load", dst.Url("other"), file, "--storage", src.StorageUri);
        Assert.Equal(1, run.ExitCode);
        Assert.Single(run.ErrLines);
        Assert.Contains("must stay", run.Err, StringComparison.Ordinal);

        run = await CliHarness.RunAsync("dump", dst.Url("myfs"), Path.Combine(src.Root, "none.json"));
        Assert.Equal(1, run.ExitCode);
        Assert.Single(run.ErrLines);
        Assert.Contains("format", run.Err, StringComparison.Ordinal);

        await File.WriteAllTextAsync(file, "{\"format\":\"mirrorfs-dump\",\"version\":1,\"volume\":");
        run = await CliHarness.RunAsync("load", dst.Url("myfs"), file);
        Assert.Equal(1, run.ExitCode);
        Assert.Single(run.ErrLines);
    }
}
