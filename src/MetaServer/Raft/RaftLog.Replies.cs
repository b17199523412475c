// Answers in the same call: a batch stepped through StepAsync returns what this node says back to the sender while
// handling it (an append's acknowledgement, a vote), so the reply rides the Step call's response instead of a call of
// its own in the other direction. That takes one RPC off every commit's critical path.
namespace MirrorFS.MetaServer.Raft;

public sealed partial class RaftLog
{
    /// <summary>Longest a Step call waits for this node's answer; after it the answer goes out as a call of its own.</summary>
    public const int ReplyWaitMsMax = 1_000;

    // Loop-only: the open capture per peer, filled by Send and closed at the end of the loop iteration.
    private readonly Dictionary<ulong, ReplyCapture> _captures = [];

    /// <summary>
    /// Steps <paramref name="messages"/> from <paramref name="from"/> and returns the messages this node addresses to
    /// <paramref name="from"/> while handling them (handed over at the end of that loop iteration, after any fsync they
    /// depend on). Empty when the inbox is full (the batch is dropped; Raft resends), or when the wait ends first: then
    /// the answers, if any, are sent through the transport as usual.
    /// </summary>
    public async Task<IReadOnlyList<RaftMessage>> StepAsync(ulong from, IReadOnlyList<RaftMessage> messages,
        int waitMs = ReplyWaitMsMax, CancellationToken ct = default)
    {
        var capture = new ReplyCapture();
        if (!_inbox.Writer.TryWrite(() =>
        {
            foreach (var m in messages)
            {
                _node.Step(m);
            }
            if (_captures.Remove(from, out var older))
            {
                older.Close(_o.Transport);
            }
            _captures[from] = capture;
        }))
        {
            return [];
        }
        try
        {
            return await capture.Done.Task.WaitAsync(TimeSpan.FromMilliseconds(waitMs), ct);
        }
        catch (Exception e) when (e is TimeoutException or OperationCanceledException)
        {
            return capture.Abandon() ? [] : await capture.Done.Task;
        }
    }

    /// <summary>Every message this node sends goes through here: to a peer whose Step call waits, into its reply.</summary>
    private void Send(RaftMessage m)
    {
        if (_captures.Count > 0 && _captures.TryGetValue(m.To, out var c))
        {
            c.Messages.Add(m);
            return;
        }
        _o.Transport.Send(m);
    }

    /// <summary>End of a loop iteration: hands each waiting Step call what was collected for it.</summary>
    private void CloseCaptures()
    {
        if (_captures.Count == 0)
        {
            return;
        }
        foreach (var c in _captures.Values)
        {
            c.Close(_o.Transport);
        }
        _captures.Clear();
    }

    private sealed class ReplyCapture
    {
        private const int Open = 0, Closed = 1, Abandoned = 2;
        private int _state;

        public List<RaftMessage> Messages { get; } = [];

        public TaskCompletionSource<IReadOnlyList<RaftMessage>> Done { get; } =
            new(TaskCreationOptions.RunContinuationsAsynchronously);

        /// <summary>The caller stopped waiting: true unless the answers were already handed over.</summary>
        public bool Abandon() => Interlocked.CompareExchange(ref _state, Abandoned, Open) != Closed;

        /// <summary>Hands the answers to the waiting call, or sends them the usual way when it gave up.</summary>
        public void Close(IRaftTransport transport)
        {
            if (Interlocked.CompareExchange(ref _state, Closed, Open) == Open)
            {
                Done.TrySetResult(Messages);
                return;
            }
            foreach (var m in Messages)
            {
                transport.Send(m);
            }
        }
    }
}
