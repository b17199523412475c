// Raft messages between metaserver members over the gRPC-wire stack: a bounded queue and one sender loop per peer.
using System.Collections.Concurrent;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using MirrorFS.Core.Rpc;
using MirrorFS.MetaServer.Wire;

namespace MirrorFS.MetaServer.Raft;

public sealed class RpcRaftTransportOptions
{
    public required ulong SelfId { get; init; }

    /// <summary>host:port peers reach this node on; sent with every batch.</summary>
    public required string SelfAddress { get; init; }

    /// <summary>The cluster's token, sent as <c>authorization: Bearer</c>; null when the cluster checks none.</summary>
    public string? BearerToken { get; init; }

    /// <summary>Addresses known before the configuration names them (the --peers list).</summary>
    public IReadOnlyDictionary<ulong, string>? Peers { get; init; }

    /// <summary>Messages queued for one peer; more are dropped (Raft retransmits).</summary>
    public int QueueMessagesMax { get; init; } = 4096;

    /// <summary>Bytes queued for one peer; more are dropped.</summary>
    public long QueueBytesMax { get; init; } = 64L << 20;

    /// <summary>Bytes per Step call (a single bigger message still goes alone).</summary>
    public int BatchBytesMax { get; init; } = 4 << 20;

    public int BatchMessagesMax { get; init; } = 4096;

    public int CallTimeoutMs { get; init; } = 5_000;
    public int ConnectTimeoutMs { get; init; } = 1_000;

    /// <summary>Pause after a failed call, doubling from the first to the second value while the peer stays down.</summary>
    public int RetryDelayMsMin { get; init; } = 20;

    public int RetryDelayMsMax { get; init; } = 500;

    /// <summary>Largest Step message; must exceed the largest command plus headers.</summary>
    public int MaxMessageBytes { get; init; } = RaftRpc.MaxMessageBytes;

    public ILoggerFactory? LoggerFactory { get; init; }
}

/// <summary>
/// <see cref="IRaftTransport"/> on RPC. <see cref="Send"/> never blocks the Raft loop: it puts the message in the
/// peer's bounded queue (or drops it when full); the peer's sender loop takes everything queued, sends it as one
/// <c>mirrorfs.Raft/Step</c> call and waits for the answer before the next batch, so messages to one peer stay in order
/// and batch themselves under load. A failed call drops its batch and what queued meanwhile (Raft resends what
/// matters), then retries after a growing pause; the HTTP/2 connection is re-established by the next call.
/// A peer's address comes from the configuration in effect, else from what the peer itself said in a batch it sent,
/// else from the --peers list.
/// </summary>
public sealed class RpcRaftTransport : IRaftTransport, IAsyncDisposable
{
    private readonly RpcRaftTransportOptions _o;
    private readonly ILogger _log;
    private readonly ConcurrentDictionary<ulong, Peer> _peers = new();
    private readonly ConcurrentDictionary<ulong, string> _learned = new();
    private readonly IReadOnlyDictionary<ulong, string> _static;
    private readonly Lock _peersLock = new();
    private volatile IReadOnlyDictionary<ulong, string> _members = Membership.NoAddresses;
    private long _sent;
    private long _dropped;
    private long _failedCalls;
    private long _answers;
    private bool _disposed;
    private volatile string _selfAddress;

    public RpcRaftTransport(RpcRaftTransportOptions options)
    {
        _o = options;
        _selfAddress = options.SelfAddress;
        _static = options.Peers ?? Membership.NoAddresses;
        _log = (options.LoggerFactory ?? NullLoggerFactory.Instance).CreateLogger("mirrorfs-meta.raft");
    }

    public ulong SelfId => _o.SelfId;

    /// <summary>Sent with every batch; set once known when the node listens on a port picked at start.</summary>
    public string SelfAddress
    {
        get => _selfAddress;
        internal set => _selfAddress = value;
    }

    /// <summary>Messages handed to a Step call that succeeded.</summary>
    public long MessagesSent => Interlocked.Read(ref _sent);

    /// <summary>Messages dropped: queue full, no address known, or their call failed.</summary>
    public long MessagesDropped => Interlocked.Read(ref _dropped);

    public long FailedCalls => Interlocked.Read(ref _failedCalls);

    /// <summary>Where node <paramref name="id"/> is reached, or null when no source names it.</summary>
    public string? AddressOf(ulong id) =>
        id == _o.SelfId ? (_selfAddress.Length > 0 ? _selfAddress : null)
        : _members.TryGetValue(id, out var a) ? a
        : _learned.TryGetValue(id, out a) ? a
        : _static.GetValueOrDefault(id);

    /// <summary>Takes the answers a peer returned in a Step reply (see <see cref="RaftLog.StepAsync"/>); unset, they
    /// are dropped and Raft resends.</summary>
    public Func<IReadOnlyList<RaftMessage>, bool>? Deliver { get; set; }

    /// <summary>Answers received in Step replies.</summary>
    public long AnswersReceived => Interlocked.Read(ref _answers);

    private void DeliverAnswers(ulong from, RaftStepReply reply)
    {
        var messages = new List<RaftMessage>(reply.Messages.Count);
        foreach (var w in reply.Messages)
        {
            if (w.To != _o.SelfId)
            {
                _log.LogWarning("raft: node {Peer} answered with a message for node {To}; dropped", from, w.To);
                continue;
            }
            try
            {
                messages.Add(RaftWire.FromWire(from, w));
            }
            catch (InvalidDataException e)
            {
                _log.LogWarning("raft: node {Peer} answered with a malformed message ({Error}); dropped", from, e.Message);
            }
        }
        Interlocked.Add(ref _answers, messages.Count);
        if (messages.Count > 0 && Deliver?.Invoke(messages) != true)
        {
            Interlocked.Add(ref _dropped, messages.Count);
        }
    }

    public void Send(RaftMessage message)
    {
        var peer = PeerFor(message.To);
        if (peer is null || !peer.TryEnqueue(message))
        {
            Interlocked.Increment(ref _dropped);
        }
    }

    public void UpdateMembers(IReadOnlyDictionary<ulong, string> addresses)
    {
        _members = addresses;
        lock (_peersLock)
        {
            foreach (var (id, peer) in _peers)
            {
                // A peer that moved gets a new sender; one that left is let go (a message to it later recreates it).
                if (AddressOf(id) != peer.Address)
                {
                    _peers.TryRemove(id, out _);
                    _ = peer.DisposeAsync().AsTask();
                }
            }
        }
    }

    /// <summary>A peer said where it answers (in a batch it sent): used until the configuration names it.</summary>
    public void Learn(ulong id, string address)
    {
        if (id == _o.SelfId || string.IsNullOrEmpty(address) || _members.ContainsKey(id)
            || (_learned.TryGetValue(id, out var had) && had == address))
        {
            return;
        }
        _learned[id] = address;
        UpdateMembers(_members);
    }

    private Peer? PeerFor(ulong id)
    {
        if (_peers.TryGetValue(id, out var peer))
        {
            return peer;
        }
        var address = AddressOf(id);
        if (address is null || id == _o.SelfId)
        {
            return null;
        }
        lock (_peersLock)
        {
            if (_disposed)
            {
                return null;
            }
            if (!_peers.TryGetValue(id, out peer))
            {
                peer = new Peer(this, id, address);
                _peers[id] = peer;
            }
            return peer;
        }
    }

    public async ValueTask DisposeAsync()
    {
        List<Peer> peers;
        lock (_peersLock)
        {
            _disposed = true;
            peers = [.. _peers.Values];
            _peers.Clear();
        }
        foreach (var p in peers)
        {
            await p.DisposeAsync();
        }
    }

    private sealed class Peer : IAsyncDisposable
    {
        private readonly RpcRaftTransport _t;
        private readonly ulong _id;
        private readonly Channel<(RaftMessage Message, int Bytes)> _queue;
        private readonly RpcChannel _channel;
        private readonly CancellationTokenSource _stop = new();
        private readonly Task _loop;
        private long _queuedBytes;

        public Peer(RpcRaftTransport t, ulong id, string address)
        {
            _t = t;
            _id = id;
            Address = address;
            _queue = Channel.CreateBounded<(RaftMessage, int)>(new BoundedChannelOptions(t._o.QueueMessagesMax)
            {
                SingleReader = true,
                // The sender loop resumes inside Send, on the Raft loop, and starts its call there: one thread hop
                // less per append. Send still never blocks: the loop's next wait is the call's answer.
                AllowSynchronousContinuations = true,
                FullMode = BoundedChannelFullMode.Wait, // TryWrite then fails, and the drop is counted
            });
            _channel = new RpcChannel(new RpcChannelOptions
            {
                Address = address,
                BearerToken = t._o.BearerToken,
                ConnectTimeoutMs = t._o.ConnectTimeoutMs,
                DefaultUnaryTimeoutMs = t._o.CallTimeoutMs,
                MaxMessageBytes = t._o.MaxMessageBytes,
            });
            _loop = Task.Run(LoopAsync);
        }

        public string Address { get; }

        public bool TryEnqueue(RaftMessage m)
        {
            var bytes = RaftWire.SizeBytes(m);
            if (Interlocked.Add(ref _queuedBytes, bytes) > _t._o.QueueBytesMax || !_queue.Writer.TryWrite((m, bytes)))
            {
                Interlocked.Add(ref _queuedBytes, -bytes);
                return false;
            }
            return true;
        }

        private async Task LoopAsync()
        {
            var o = _t._o;
            var retryDelayMs = o.RetryDelayMsMin;
            var failing = false;
            (RaftMessage Message, int Bytes)? carry = null;
            var ct = _stop.Token;
            try
            {
                while (true)
                {
                    if (carry is null && !await _queue.Reader.WaitToReadAsync(ct))
                    {
                        return;
                    }
                    var batch = new RaftBatch { From = o.SelfId, FromAddress = _t._selfAddress };
                    var bytes = 0L;
                    if (carry is { } c)
                    {
                        batch.Messages.Add(RaftWire.ToWire(c.Message));
                        bytes = c.Bytes;
                        carry = null;
                    }
                    while (batch.Messages.Count < o.BatchMessagesMax && _queue.Reader.TryRead(out var item))
                    {
                        Interlocked.Add(ref _queuedBytes, -item.Bytes);
                        if (bytes > 0 && bytes + item.Bytes > o.BatchBytesMax)
                        {
                            carry = item;
                            break;
                        }
                        batch.Messages.Add(RaftWire.ToWire(item.Message));
                        bytes += item.Bytes;
                    }
                    try
                    {
                        var reply = await _channel.UnaryAsync(RaftRpc.ServiceName, RaftRpc.StepMethod, batch, RaftStepReply.Parser,
                            new CallOptions { CancellationToken = ct });
                        Interlocked.Add(ref _t._sent, batch.Messages.Count);
                        if (reply.Messages.Count > 0)
                        {
                            _t.DeliverAnswers(_id, reply);
                        }
                        retryDelayMs = o.RetryDelayMsMin;
                        if (failing)
                        {
                            failing = false;
                            _t._log.LogInformation("raft: node {Peer} at {Address} is reachable again", _id, Address);
                        }
                    }
                    catch (RpcException e) when (!ct.IsCancellationRequested)
                    {
                        Interlocked.Increment(ref _t._failedCalls);
                        Interlocked.Add(ref _t._dropped, batch.Messages.Count);
                        if (!failing)
                        {
                            failing = true;
                            _t._log.LogWarning("raft: cannot reach node {Peer} at {Address}: {Status} {Message}; retrying",
                                _id, Address, e.Status, e.Message);
                        }
                        await Task.Delay(retryDelayMs, ct);
                        retryDelayMs = Math.Min(retryDelayMs * 2, o.RetryDelayMsMax);
                        // What queued during the pause is stale (heartbeats, appends the leader will resend).
                        carry = null;
                        while (_queue.Reader.TryRead(out var stale))
                        {
                            Interlocked.Add(ref _queuedBytes, -stale.Bytes);
                            Interlocked.Increment(ref _t._dropped);
                        }
                    }
                }
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
            }
            catch (Exception e)
            {
                _t._log.LogError(e, "raft: sender to node {Peer} stopped unexpectedly", _id);
            }
        }

        public async ValueTask DisposeAsync()
        {
            _queue.Writer.TryComplete();
            await _stop.CancelAsync();
            await _loop;
            _channel.Dispose();
            _stop.Dispose();
        }
    }
}
