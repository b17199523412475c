// mirrorfs config, quota and restore against a real metaserver (no mount): outputs, argument errors, exit codes.
using Google.Protobuf;
using MirrorFS.Client.Cli;
using MirrorFS.Core.Meta;

namespace MirrorFS.Client.Tests.Cli;

public sealed class QuotaConfigCliTests
{
    private static async Task<(MetaServerFixture F, string Url)> FormattedAsync(params string[] extra)
    {
        var f = await MetaServerFixture.StartAsync();
        var url = f.Url("vol");
        var run = await CliHarness.RunAsync(["format", url, "vol", "--storage", f.StorageUri, .. extra]);
        Assert.True(run.ExitCode == 0, run.Err);
        return (f, url);
    }

    private static RpcMetaClient Client(MetaServerFixture f) =>
        new(new RpcMetaClientOptions { Addresses = [f.Host.Address], BearerToken = MetaServerFixture.Token });

    [Fact]
    public async Task Config_prints_old_and_new_values_and_format_sets_capacity_and_trash()
    {
        var (f, url) = await FormattedAsync("--capacity", "1G", "--inodes", "1000");
        await using var _ = f;
        var show = await CliHarness.RunAsync("config", url);
        Assert.True(show.ExitCode == 0, show.Err);
        Assert.Contains("capacity:    1 GiB", show.Out, StringComparison.Ordinal);
        Assert.Contains("trash days:  1", show.Out, StringComparison.Ordinal);

        var run = await CliHarness.RunAsync("config", url, "--upload-limit", "100M", "--download-limit", "0", "--meta-ops-limit", "5000",
            "--trash-days", "7", "--capacity", "2G", "--inodes", "0");
        Assert.True(run.ExitCode == 0, run.Err);
        Assert.Equal(
            "upload limit: unlimited -> 100 MiB/s\ndownload limit: unlimited -> unlimited\nmeta ops limit: unlimited -> 5000/s\n" +
            "trash days: 1 -> 7\ncapacity: 1 GiB -> 2 GiB\ninodes: 1000 -> unlimited\n", run.Out);
        await using var meta = Client(f);
        var v = (await meta.GetVolumeAsync(new GetVolumeRequest())).Volume;
        Assert.Equal((100UL << 20, 5000u, 7u, true, 2UL << 30, 0UL), (v.UploadLimitBytes, v.MetaOpsLimit, v.TrashDays, v.TrashEnabled, v.CapacityBytes, v.InodesMax));

        var bad = await CliHarness.RunAsync("config", url, "--trash-days", "99999");
        Assert.Equal((1, 1), (bad.ExitCode, bad.ErrLines.Length));
        Assert.Contains("--trash-days 99999 is out of range", bad.Err, StringComparison.Ordinal);
        bad = await CliHarness.RunAsync("config", url, "--upload-limit", "fast");
        Assert.Contains("--upload-limit 'fast' is not a size", bad.Err, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Quota_commands_show_tables_and_refuse_bad_paths()
    {
        var (f, url) = await FormattedAsync();
        await using var _ = f;
        await using var meta = Client(f);
        var d = (await meta.MkdirAsync(new MkdirRequest { Parent = 1, Name = ByteString.CopyFromUtf8("proj"), Mode = 0x1ED })).Attr.Inode;
        await meta.MkdirAsync(new MkdirRequest { Parent = d, Name = ByteString.CopyFromUtf8("sub"), Mode = 0x1ED });
        await meta.MknodAsync(new MknodRequest { Parent = 1, Name = ByteString.CopyFromUtf8("file"), Mode = PosixMode.Regular | 0x1A4 });

        Assert.Contains("has no quotas", (await CliHarness.RunAsync("quota", "list", url)).Out, StringComparison.Ordinal);
        var none = await CliHarness.RunAsync("quota", "set", url, "--path", "/proj");
        Assert.Contains("needs --capacity, --inodes or both", none.Err, StringComparison.Ordinal);
        var missing = await CliHarness.RunAsync("quota", "set", url, "--path", "/nope", "--inodes", "5");
        Assert.Contains("/nope does not exist", missing.Err, StringComparison.Ordinal);
        var file = await CliHarness.RunAsync("quota", "set", url, "--path", "/file", "--inodes", "5");
        Assert.Contains("/file is not a directory", file.Err, StringComparison.Ordinal);

        var set = await CliHarness.RunAsync("quota", "set", url, "--path", "proj/", "--capacity", "1G", "--inodes", "4");
        Assert.True(set.ExitCode == 0, set.Err);
        foreach (var cell in new[] { "/proj", "1 GiB", "25%", "inodes %" })
        {
            Assert.Contains(cell, set.Out, StringComparison.Ordinal);
        }
        var list = await CliHarness.RunAsync("quota", "list", url);
        Assert.Contains("/proj", list.Out, StringComparison.Ordinal);
        var check = await CliHarness.RunAsync("quota", "check", url, "--path", "/proj");
        Assert.True(check.ExitCode == 0, check.Err);
        Assert.Contains("ok", check.Out, StringComparison.Ordinal);
        Assert.Equal(0, (await CliHarness.RunAsync("quota", "delete", url, "--path", "/proj")).ExitCode);
        var gone = await CliHarness.RunAsync("quota", "get", url, "--path", "/proj");
        Assert.Equal(1, gone.ExitCode);
        Assert.Contains("/proj has no quota", gone.Err, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Restore_needs_a_trash_and_a_choice()
    {
        var (f, url) = await FormattedAsync();
        await using var _ = f;
        var neither = await CliHarness.RunAsync("restore", url);
        Assert.Contains("or use --all", neither.Err, StringComparison.Ordinal);
        var noTrash = await CliHarness.RunAsync("restore", url, "--all");
        Assert.Equal(1, noTrash.ExitCode);
        Assert.Contains("has no trash", noTrash.Err, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("12-345-name", 12UL, 345UL, "name")]
    [InlineData("1-2-a-b-c", 1UL, 2UL, "a-b-c")]
    public void Trash_entry_names_parse(string entry, ulong parent, ulong inode, string name)
    {
        Assert.True(RestoreCommand.TryParseEntry(System.Text.Encoding.UTF8.GetBytes(entry), out var p, out var i, out var n));
        Assert.Equal((parent, inode, name), (p, i, System.Text.Encoding.UTF8.GetString(n)));
    }

    [Theory]
    [InlineData("name")]
    [InlineData("12-name")]
    [InlineData("x-1-name")]
    [InlineData("1-2-")]
    [InlineData("-1-2")]
    public void Other_names_are_not_trash_entries(string entry) =>
        Assert.False(RestoreCommand.TryParseEntry(System.Text.Encoding.UTF8.GetBytes(entry), out _, out _, out _));
}
