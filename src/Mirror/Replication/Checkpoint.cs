// The replicator's checkpoint: how far the copy is complete, and what was in flight. Saved atomically.
using System.Text.Json;
using System.Text.Json.Serialization;
using MirrorFS.Core.IO;

namespace MirrorFS.Mirror.Replication;

public sealed record Checkpoint
{
    public const int CurrentVersion = 1;
    public const string FileName = "checkpoint.json";

    /// <summary>Largest checkpoint file read back; a bigger one is not ours.</summary>
    public const long FileBytesMax = 256L << 20;

    public int Version { get; init; } = CurrentVersion;

    /// <summary>The volume's uuid: a state directory belongs to one volume.</summary>
    public string VolumeUuid { get; init; } = "";

    /// <summary>Every block of every entry up to this index is in the mirror bucket (or was gone from the primary).</summary>
    public ulong CopiedThrough { get; init; }

    /// <summary>The last entry read from the changelog; reading resumes after it.</summary>
    public ulong DispatchedThrough { get; init; }

    public long SavedUnixMs { get; init; }

    /// <summary>Blocks of entries in (CopiedThrough, DispatchedThrough] not yet known to be copied.</summary>
    public List<BlockJob> InFlight { get; init; } = [];

    internal static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        WriteIndented = false,
        DefaultIgnoreCondition = JsonIgnoreCondition.Never,
    };

    /// <summary>The checkpoint in <paramref name="dir"/>, or null when there is none.</summary>
    public static Checkpoint? Load(string dir)
    {
        var path = Path.Combine(dir, FileName);
        if (!File.Exists(path))
        {
            return null;
        }
        var info = new FileInfo(path);
        if (info.Length > FileBytesMax)
        {
            throw new InvalidDataException($"checkpoint {path} is larger than {FileBytesMax} bytes: it is not a replicator checkpoint; move it away");
        }
        Checkpoint? cp;
        try
        {
            cp = JsonSerializer.Deserialize<Checkpoint>(File.ReadAllBytes(path), Json);
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"checkpoint {path} is not valid JSON ({e.Message}); move it away to copy from the start", e);
        }
        if (cp is null || cp.Version != CurrentVersion)
        {
            throw new InvalidDataException($"checkpoint {path} has version {cp?.Version}, expected {CurrentVersion}; move it away to copy from the start");
        }
        if (cp.DispatchedThrough < cp.CopiedThrough)
        {
            throw new InvalidDataException($"checkpoint {path} is inconsistent (dispatched {cp.DispatchedThrough} < copied {cp.CopiedThrough}); move it away to copy from the start");
        }
        return cp;
    }

    /// <summary>Writes the checkpoint to a temporary file, fsyncs it, and renames it over the old one.</summary>
    public void Save(string dir)
    {
        DurableFiles.WriteAtomically(Path.Combine(dir, FileName), JsonSerializer.SerializeToUtf8Bytes(this, Json));
    }
}
