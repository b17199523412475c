using MirrorFS.Client.Cli;

namespace MirrorFS.Client.Tests.Cli;

public sealed class BenchAndArgumentTests
{
    [Fact]
    public async Task BenchRunsOnATempDirectoryAndCleansUp()
    {
        var dir = Directory.CreateTempSubdirectory("mirrorfs-bench-");
        try
        {
            var run = await CliHarness.RunAsync("bench", dir.FullName, "--big-file-size", "2M", "--small-files", "20",
                "--small-size", "1K", "--threads", "2");
            Assert.True(run.ExitCode == 0, run.Err);
            foreach (var test in new[] { "write big file", "read big file", "write small files", "read small files", "stat small files" })
            {
                Assert.Contains(test, run.Out, StringComparison.Ordinal);
            }
            Assert.Contains("MiB/s", run.Out, StringComparison.Ordinal);
            Assert.Contains("files/s", run.Out, StringComparison.Ordinal);
            Assert.Empty(dir.EnumerateFileSystemInfos());
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    [Fact]
    public async Task FsBenchCountsOperations()
    {
        var dir = Directory.CreateTempSubdirectory("mirrorfs-bench-");
        try
        {
            var results = await FsBench.RunAsync(dir.FullName, new FsBenchOptions
            {
                BigFileBytes = 3 << 20, SmallFiles = 10, SmallFileBytes = 100, Threads = 1, IoBytes = 1 << 20,
            });
            Assert.Equal(["write big file", "read big file", "write small files", "read small files", "stat small files"],
                results.Select(r => r.Test));
            Assert.Equal(3, results[0].Operations);
            Assert.Equal(10, results[2].Operations);
            Assert.All(results, r => Assert.True(r.Rate > 0 && r.MeanLatencyMs > 0, r.ToString()));
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    [Fact]
    public async Task ObjBenchOnAFileStore()
    {
        var dir = Directory.CreateTempSubdirectory("mirrorfs-objbench-");
        try
        {
            var run = await CliHarness.RunAsync("objbench", "file://" + dir.FullName, "--big-count", "2", "--big-size", "64K",
                "--small-count", "3", "--parallel", "1,2");
            Assert.True(run.ExitCode == 0, run.Err);
            Assert.Contains("put 64 KiB", run.Out, StringComparison.Ordinal);
            Assert.Contains("2 parallel", run.Out, StringComparison.Ordinal);
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    public static TheoryData<string[], string> BadArguments() => new()
    {
        { [], "Required command" },
        { ["nosuchcommand"], "nosuchcommand" },
        { ["format", "mirrorfs://127.0.0.1:1/ab", "ab"], "--storage" },
        { ["format", "mirrorfs://127.0.0.1:1/ab", "ab", "--storage", "file:///tmp/x", "--block-size", "3M"], "power of two" },
        { ["format", "mirrorfs://127.0.0.1:1/ab", "ab", "--storage", "file:///tmp/x", "--block-size", "32M"], "out of range" },
        { ["format", "mirrorfs://127.0.0.1:1/ab", "ab", "--storage", "file:///tmp/x", "--block-size", "lots"], "not a size" },
        { ["format", "mirrorfs://127.0.0.1:1/ab", "Bad_Name", "--storage", "file:///tmp/x"], "volume name 'Bad_Name'" },
        { ["format", "mirrorfs://127.0.0.1:1/ab", "cd", "--storage", "file:///tmp/x"], "NAME is cd" },
        { ["format", "mirrorfs://127.0.0.1:1/ab", "ab", "--storage", "ftp://x/y"], "unknown scheme" },
        { ["format", "mirrorfs://127.0.0.1:1/ab", "ab", "--storage", "file:///tmp/x", "--trash-days", "-1"], "--trash-days" },
        { ["status", "localhost:9400/ab"], "mirrorfs://" },
        { ["status", "mirrorfs://127.0.0.1:1/ab", "--bogus"], "--bogus" },
        { ["bench", "/definitely/not/here"], "not a directory" },
        { ["bench", "/tmp", "--threads", "0"], "--threads" },
        { ["objbench", "mem://", "--parallel", "1,x"], "--parallel" },
        { ["umount"], "MOUNTPOINT" },
    };

    [Theory]
    [MemberData(nameof(BadArguments))]
    public async Task BadArgumentsGiveNonZeroAndOneLine(string[] args, string mentions)
    {
        var run = await CliHarness.RunAsync(args);
        Assert.NotEqual(0, run.ExitCode);
        Assert.True(run.ErrLines.Length == 1, $"stderr was:\n{run.Err}");
        Assert.Contains(mentions, run.Err, StringComparison.Ordinal);
        Assert.Equal("", run.Out);
    }
}
