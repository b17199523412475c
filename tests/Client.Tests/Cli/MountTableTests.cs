using MirrorFS.Client.Cli;

namespace MirrorFS.Client.Tests.Cli;

public sealed class MountTableTests
{
    private const string Sample =
        "22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
        + "30 22 0:25 / /tmp rw,nosuid shared:5 - tmpfs tmpfs rw\n"
        + "41 22 0:40 / /mnt/my\\040data rw,nosuid,nodev,relatime shared:20 - fuse.mirrorfs mirrorfs://127.0.0.1:9400/myfs rw,user_id=0\n"
        + "42 41 0:41 / /mnt/my\\040data/inner rw - fuse.other other rw\n"
        + "garbage line\n";

    [Fact]
    public void ParsesAndUnescapes()
    {
        var m = MountTable.Parse(Sample);
        Assert.Equal(4, m.Count);
        Assert.Equal(new MountEntry("/mnt/my data", "fuse.mirrorfs", "mirrorfs://127.0.0.1:9400/myfs"), m[2]);
    }

    [Theory]
    [InlineData("/mnt/my data", "/mnt/my data")]
    [InlineData("/mnt/my data/a/b.txt", "/mnt/my data")]
    [InlineData("/mnt/my data/inner/x", "/mnt/my data/inner")]
    [InlineData("/mnt/my datax", "/")]
    [InlineData("/tmp/f", "/tmp")]
    [InlineData("/etc", "/")]
    public void FindsTheDeepestMount(string path, string mountPoint) =>
        Assert.Equal(mountPoint, MountTable.Containing(MountTable.Parse(Sample), path)!.MountPoint);

    [Fact]
    public void ALaterMountOnTheSamePointWins()
    {
        var text = "1 0 0:1 / /m rw - ext4 a rw\n2 1 0:2 / /m rw - fuse.mirrorfs mirrorfs://h:1/v1 rw\n";
        Assert.Equal("fuse.mirrorfs", MountTable.Containing(MountTable.Parse(text), "/m/x")!.FsType);
    }

    [Fact]
    public async Task UmountOfAnUnmountedDirectoryIsOneLine()
    {
        var dir = Directory.CreateTempSubdirectory("mirrorfs-umount-");
        try
        {
            var run = await CliHarness.RunAsync("umount", dir.FullName);
            Assert.Equal(1, run.ExitCode);
            Assert.Single(run.ErrLines);
            Assert.Contains("is not mounted", run.Err, StringComparison.Ordinal);
        }
        finally
        {
            dir.Delete();
        }
    }
}
