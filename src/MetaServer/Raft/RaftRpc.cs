// Serves mirrorfs.Raft/Step: hands each received batch to the local RaftLog.
using MirrorFS.Core.Rpc;
using MirrorFS.MetaServer.Wire;

namespace MirrorFS.MetaServer.Raft;

public static class RaftRpc
{
    public const string ServiceName = "mirrorfs.Raft";
    public const string StepMethod = "Step";

    /// <summary>Largest RPC message a cluster member accepts: a command (16 MiB at most) in an append, plus headers.</summary>
    public const int MaxMessageBytes = 32 << 20;

    private static readonly RaftStepReply Taken = new();

    /// <summary>Serves Step on <paramref name="server"/>; <paramref name="log"/> returns null while the node starts.</summary>
    public static void MapRaftService(this RpcServer server, RpcRaftTransport transport, Func<RaftLog?> log) =>
        server.MapUnary<RaftBatch, RaftStepReply>(ServiceName, StepMethod, RaftBatch.Parser, (batch, call) =>
        {
            var target = log() ?? throw new RpcException(StatusCode.Unavailable, $"Raft node {transport.SelfId} is starting");
            if (batch.From == 0 || batch.From == transport.SelfId)
            {
                throw new RpcException(StatusCode.InvalidArgument, $"Raft batch from node {batch.From} reached node {transport.SelfId}; every member needs its own non-zero id");
            }
            transport.Learn(batch.From, batch.FromAddress);
            var messages = new RaftMessage[batch.Messages.Count];
            for (var i = 0; i < messages.Length; i++)
            {
                var w = batch.Messages[i];
                if (w.To != transport.SelfId)
                {
                    throw new RpcException(StatusCode.FailedPrecondition,
                        $"Raft message for node {w.To} reached node {transport.SelfId} at {transport.SelfAddress}; check the members' addresses (--peers)");
                }
                try
                {
                    messages[i] = RaftWire.FromWire(batch.From, w);
                }
                catch (InvalidDataException e)
                {
                    throw new RpcException(StatusCode.InvalidArgument, e.Message);
                }
            }
            return AnswerAsync(target, batch.From, messages, call.CancellationToken);
        });

    private static async Task<RaftStepReply> AnswerAsync(RaftLog target, ulong from, RaftMessage[] messages, CancellationToken ct)
    {
        var answers = await target.StepAsync(from, messages, RaftLog.ReplyWaitMsMax, ct); // empty when the inbox is full: Raft resends
        if (answers.Count == 0)
        {
            return Taken;
        }
        var reply = new RaftStepReply();
        foreach (var m in answers)
        {
            reply.Messages.Add(RaftWire.ToWire(m));
        }
        return reply;
    }
}
