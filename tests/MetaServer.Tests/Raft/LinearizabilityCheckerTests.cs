namespace MirrorFS.MetaServer.Tests.Raft;

public class LinearizabilityCheckerTests
{
    private static KvOp Put(long call, long ret, string v) => new(0, call, ret, true, "k", v);
    private static KvOp Get(long call, long ret, string? v) => new(1, call, ret, false, "k", v);

    [Fact]
    public void AcceptsConcurrentOpsInSomeValidOrder()
    {
        // The get overlaps the put, so it may see the value before or after it.
        Assert.Null(LinearizabilityChecker.FindViolation([Put(1, 4, "a"), Get(2, 3, "a")]));
        Assert.Null(LinearizabilityChecker.FindViolation([Put(1, 4, "a"), Get(2, 3, null)]));
    }

    [Fact]
    public void RejectsAStaleReadAfterAWriteReturned()
    {
        Assert.Equal("k", LinearizabilityChecker.FindViolation([Put(1, 2, "a"), Put(3, 4, "b"), Get(5, 6, "a")]));
    }

    [Fact]
    public void RejectsAReadGoingBackInTime()
    {
        // Two sequential reads of concurrent writes must not observe b then a if a was written before b.
        Assert.Equal("k", LinearizabilityChecker.FindViolation(
            [Put(1, 2, "a"), Put(3, 10, "b"), Get(4, 5, "b"), Get(6, 7, "a")]));
    }

    [Fact]
    public void AnUnknownPutMayHaveHappenedOrNot()
    {
        Assert.Null(LinearizabilityChecker.FindViolation([Put(1, long.MaxValue, "a"), Get(5, 6, "a")]));
        Assert.Null(LinearizabilityChecker.FindViolation([Put(1, long.MaxValue, "a"), Get(5, 6, null)]));
        // But once seen it cannot be unseen.
        Assert.Equal("k", LinearizabilityChecker.FindViolation([Put(1, long.MaxValue, "a"), Get(5, 6, "a"), Get(7, 8, null)]));
    }
}
