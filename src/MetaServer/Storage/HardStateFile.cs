// Raft's persistent per-server state (current term, vote, commit), kept in one small file replaced atomically.
namespace MirrorFS.MetaServer.Storage;

/// <summary>Raft's hard state. <see cref="VotedFor"/> is a node id, 0 meaning "voted for nobody this term".</summary>
public readonly record struct HardState(ulong Term, ulong VotedFor, ulong Commit);

/// <summary>
/// Stores <see cref="HardState"/> in one file. <see cref="Save"/> returns only once the new state is durable (temp file,
/// fsync, rename, directory fsync), so a vote is never granted twice in a term across a crash.
/// </summary>
public sealed class HardStateFile(string path)
{
    public string Path { get; } = path;

    /// <summary>The saved state, or all zeros when none was ever saved. A damaged file throws: silently forgetting a
    /// term or vote would break Raft's safety.</summary>
    public HardState Load()
    {
        if (!File.Exists(Path))
        {
            return default;
        }
        var bytes = File.ReadAllBytes(Path);
        return WalFormat.ReadHardState(bytes, $"hard-state file {Path}", out var problem)
            ?? throw new InvalidDataException($"hard-state file {Path} is damaged ({problem}); restore it from a backup or rebuild this node from its peers");
    }

    /// <summary>Replaces the stored state; durable when this returns.</summary>
    public void Save(HardState state)
    {
        Span<byte> buf = stackalloc byte[WalFormat.HardStateBytes];
        WalFormat.WriteHardState(buf, state);
        DurableFiles.WriteAtomically(Path, buf);
    }
}
