// A log that applies each proposal at once, in order, under a lock: for tests and the in-process client.
namespace MirrorFS.MetaServer.Consensus;

/// <summary>
/// Not durable and not replicated: <see cref="ProposeAsync"/> applies the command synchronously (so entries are
/// ordered by call order) and every read barrier is immediately satisfied.
/// </summary>
public sealed class InMemoryLog : IReplicatedLog
{
    private readonly IStateMachine _machine;
    private readonly Lock _gate = new();
    private ulong _index;
    private bool _disposed;

    public InMemoryLog(IStateMachine machine)
    {
        _machine = machine;
        _index = machine.AppliedIndex;
    }

    public ulong CommitIndex => Volatile.Read(ref _index);

    public ulong AppliedIndex => _machine.AppliedIndex;

    public Task<(ulong Index, byte[] Reply)> ProposeAsync(ReadOnlyMemory<byte> command, CancellationToken ct = default)
    {
        ct.ThrowIfCancellationRequested();
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            var index = _index + 1;
            var reply = _machine.Apply(index, command.Span);
            Volatile.Write(ref _index, index);
            return Task.FromResult((index, reply));
        }
    }

    public Task<ulong> ReadBarrierAsync(CancellationToken ct = default)
    {
        ct.ThrowIfCancellationRequested();
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed), this);
        return Task.FromResult(CommitIndex);
    }

    public ValueTask DisposeAsync()
    {
        lock (_gate)
        {
            _disposed = true;
        }
        return ValueTask.CompletedTask;
    }
}
