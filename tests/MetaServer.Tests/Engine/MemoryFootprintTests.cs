// Heap bytes per empty file held by the metadata state (target: at most 350 per file).
using System.Globalization;
using MirrorFS.Core.Meta;
using MirrorFS.MetaServer.Consensus;
using MirrorFS.MetaServer.Engine;
using Xunit.Abstractions;
using static MirrorFS.MetaServer.Tests.Engine.MetaHarness;

namespace MirrorFS.MetaServer.Tests.Engine;

[CollectionDefinition("memory", DisableParallelization = true)]
public sealed class MemoryCollection;

[Collection("memory")]
public sealed class MemoryFootprintTests(ITestOutputHelper output)
{
    private const int FilesPerDir = 1000;
    private const double BytesPerFileMax = 350;

    [Fact]
    public async Task Empty_files_cost_at_most_350_heap_bytes_each()
    {
        // MIRRORFS_MEMORY_FILES=1000000 for the full-size measurement; the default keeps CI fast.
        var files = int.TryParse(Environment.GetEnvironmentVariable("MIRRORFS_MEMORY_FILES"), NumberStyles.Integer, CultureInfo.InvariantCulture, out var n) ? n : 100_000;
        var clock = new ManualClock(StartNs);
        var baseline = GC.GetTotalMemory(forceFullCollection: true);
        using var state = new MetaStateMachine();
        await using var log = new InMemoryLog(state);
        var svc = new MetaService(state, log, clock);
        Assert.Equal(0, (await svc.FormatAsync(new FormatRequest { Volume = new Volume { Name = "mem" } })).Errno);

        var mkdir = new MkdirRequest { Parent = Root, Mode = 0x1ED };
        var mknod = new MknodRequest { Mode = PosixMode.Regular | 0x1A4 };
        ulong dir = 0;
        for (var i = 0; i < files; i++)
        {
            if (i % FilesPerDir == 0)
            {
                mkdir.Name = N($"dir-{i / FilesPerDir:D6}");
                var d = await svc.MkdirAsync(mkdir);
                Assert.Equal(0, d.Errno);
                dir = d.Attr.Inode;
                mknod.Parent = dir;
            }
            mknod.Name = N($"file-{i:D7}");
            var r = await svc.MknodAsync(mknod);
            if (r.Errno != 0)
            {
                Assert.Fail($"mknod of file {i} failed with errno {r.Errno}");
            }
        }
        var used = GC.GetTotalMemory(forceFullCollection: true) - baseline;
        var perFile = (double)used / files;
        output.WriteLine($"{files} empty files in {files / FilesPerDir} directories: {used / (1 << 20)} MiB heap, {perFile:F0} bytes per file");
        Assert.Equal((ulong)files + (ulong)(files / FilesPerDir) + 1, state.Usage().Inodes);
        Assert.True(perFile <= BytesPerFileMax, $"{perFile:F0} heap bytes per empty file, above the {BytesPerFileMax} target");

        // Snapshot figures for the same state (printed, not asserted: timing is a benchmark's business).
        var watch = System.Diagnostics.Stopwatch.StartNew();
        using var snapshot = new MemoryStream();
        state.WriteSnapshot(snapshot);
        var writeMs = watch.ElapsedMilliseconds;
        watch.Restart();
        snapshot.Position = 0;
        using var restored = new MetaStateMachine();
        restored.RestoreSnapshot(snapshot);
        output.WriteLine($"snapshot: {snapshot.Length / 1024} KiB ({(double)snapshot.Length / files:F0} bytes per file), written in {writeMs} ms, restored in {watch.ElapsedMilliseconds} ms");
        Assert.Equal(state.Usage(), restored.Usage());
        GC.KeepAlive(state);
    }
}
