// A tiny deterministic state machine for the storage tests (also compiled into tests/WalCrashProbe).
using System.Text;
using MirrorFS.MetaServer.Consensus;

namespace MirrorFS.MetaServer.Tests.Storage;

/// <summary>
/// A deterministic key/value state machine. Commands are UTF-8 "key=value"; the reply is the key's previous value.
/// <see cref="Hash"/> chains every (index, command) applied, so two instances that applied the same sequence agree.
/// </summary>
public sealed class HashChainStateMachine : IStateMachine
{
    private const ulong FnvPrime = 1099511628211UL;

    public ulong AppliedIndex { get; private set; }
    public ulong Hash { get; private set; } = 14695981039346656037UL;
    public Dictionary<string, string> Values { get; } = new(StringComparer.Ordinal);

    /// <summary>Called before each apply (tests use it to block or fail).</summary>
    public Action<ulong, string>? OnApply { get; set; }

    public byte[] Apply(ulong index, ReadOnlySpan<byte> command)
    {
        if (index != AppliedIndex + 1)
        {
            throw new InvalidOperationException($"apply out of order: {index} after {AppliedIndex}");
        }
        var text = Encoding.UTF8.GetString(command);
        OnApply?.Invoke(index, text);
        var h = Hash;
        for (var i = 0; i < 8; i++)
        {
            h = (h ^ ((index >> (8 * i)) & 0xFF)) * FnvPrime;
        }
        foreach (var b in command)
        {
            h = (h ^ b) * FnvPrime;
        }
        Hash = h;
        AppliedIndex = index;
        var eq = text.IndexOf('=', StringComparison.Ordinal);
        var key = eq < 0 ? text : text[..eq];
        var value = eq < 0 ? "" : text[(eq + 1)..];
        Values.TryGetValue(key, out var old);
        Values[key] = value;
        return Encoding.UTF8.GetBytes(old ?? "");
    }

    public void WriteSnapshot(Stream output)
    {
        using var w = new BinaryWriter(output, Encoding.UTF8, leaveOpen: true);
        w.Write(AppliedIndex);
        w.Write(Hash);
        w.Write(Values.Count);
        foreach (var (k, v) in Values.OrderBy(p => p.Key, StringComparer.Ordinal))
        {
            w.Write(k);
            w.Write(v);
        }
    }

    public void RestoreSnapshot(Stream input)
    {
        using var r = new BinaryReader(input, Encoding.UTF8, leaveOpen: true);
        AppliedIndex = r.ReadUInt64();
        Hash = r.ReadUInt64();
        Values.Clear();
        var n = r.ReadInt32();
        for (var i = 0; i < n; i++)
        {
            var k = r.ReadString();
            Values[k] = r.ReadString();
        }
    }
}
