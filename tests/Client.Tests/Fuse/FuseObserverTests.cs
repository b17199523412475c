// The binding's request observer on a real mount: every answered request is reported once, with its arguments,
// its result and a latency, whatever the filesystem behind it.
using System.Collections.Concurrent;
using MirrorFS.Client.Fuse;

namespace MirrorFS.Client.Tests.Fuse;

public sealed partial class FuseMountTests
{
    private sealed class Recorder : IFuseRequestObserver
    {
        public ConcurrentQueue<(string Op, string Args, string Result, int Errno, TimeSpan Elapsed)> Seen { get; } = new();

        public void Replied(FuseRequest r) =>
            Seen.Enqueue((r.Operation, r.DescribeArgs(), r.DescribeResult(), r.ReplyErrno, r.Elapsed));
    }

    [Fact(Timeout = 120_000)]
    public async Task The_observer_sees_each_request_with_arguments_and_result()
    {
        var fs = new MemoryFuseFileSystem();
        var rec = new Recorder();
        var m = FuseMount.Mount(fs, _mp, new FuseMountOptions { FsName = "memtest", MaxThreads = 8, UnmountTimeoutMs = 5_000, Observer = rec });
        var loop = m.RunAsync();
        try
        {
            var (code, output) = await Within(() => Sh($"cd '{_mp}' && mkdir sub && printf 12345 > sub/f && cat sub/f > /dev/null && stat nope 2>/dev/null; true"), "shell");
            Assert.True(code == 0, output);
        }
        finally
        {
            m.Unmount();
            await loop.WaitAsync(TimeSpan.FromSeconds(30));
        }
        var seen = rec.Seen.ToList();
        Assert.Contains(seen, s => s.Op == "mkdir" && s.Args.StartsWith("(1,sub,0", StringComparison.Ordinal) && s.Result.StartsWith("OK (ino ", StringComparison.Ordinal));
        Assert.Contains(seen, s => s.Op == "lookup" && s.Args == "(1,nope)" && s.Result == "ENOENT" && s.Errno == Errno.ENOENT);
        Assert.Contains(seen, s => s.Op == "write" && s.Result == "OK (5 bytes)");
        Assert.Contains(seen, s => s.Op == "read" && s.Result == "OK (5 bytes)");
        Assert.Contains(seen, s => s.Op == "create" && s.Args.StartsWith("(", StringComparison.Ordinal) && s.Args.Contains(",f,0100", StringComparison.Ordinal));
        Assert.All(seen, s => Assert.True(s.Elapsed >= TimeSpan.Zero && s.Result != "no reply", $"{s.Op} {s.Args}: {s.Result}"));
    }
}
