namespace MirrorFS.MetaServer.Storage;

/// <summary>One log entry: its position, the term (leader epoch) that created it, and the opaque command bytes.</summary>
public readonly struct LogEntry(ulong index, ulong term, ReadOnlyMemory<byte> payload)
{
    public ulong Index { get; } = index;
    public ulong Term { get; } = term;
    public ReadOnlyMemory<byte> Payload { get; } = payload;

    public override string ToString() => $"#{Index} (term {Term}, {Payload.Length} bytes)";
}
