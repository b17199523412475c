// The mirror-mode options of `mirrorfs-meta serve`: --mirror-of, --mirror-storage, --token-file-primary, --mirror-id.
using System.CommandLine;
using MirrorFS.MetaServer.Mirror;

namespace MirrorFS.MetaServer.Cli;

public sealed class MirrorServeOptions
{
    public Option<string?> MirrorOf { get; } = new("--mirror-of")
    {
        Description = "Run as a read-only mirror of this primary: mirrorfs://HOST:PORT[,HOST:PORT...]/VOLUME",
    };

    public Option<string?> MirrorStorage { get; } = new("--mirror-storage") { Description = "This region's bucket URI (with --mirror-of)" };

    public Option<string?> PrimaryTokenFile { get; } = new("--token-file-primary") { Description = "File holding the primary cluster's token (with --mirror-of)" };

    public Option<string?> MirrorId { get; } = new("--mirror-id") { Description = "Name this mirror reports to the primary (default: from the bucket URI)" };

    public void AddTo(Command cmd)
    {
        cmd.Options.Add(MirrorOf);
        cmd.Options.Add(MirrorStorage);
        cmd.Options.Add(PrimaryTokenFile);
        cmd.Options.Add(MirrorId);
    }

    /// <summary>Mirror-mode host settings; null without --mirror-of. Throws <see cref="CliException"/> on bad values.</summary>
    public MirrorHostOptions? Build(ParseResult parse) =>
        Build(parse.GetValue(MirrorOf), parse.GetValue(MirrorStorage), parse.GetValue(PrimaryTokenFile), parse.GetValue(MirrorId));

    public static MirrorHostOptions? Build(string? mirrorOf, string? storage, string? primaryTokenFile, string? id)
    {
        if (mirrorOf is null)
        {
            return storage is null && primaryTokenFile is null && id is null
                ? null
                : throw new CliException("--mirror-storage, --token-file-primary and --mirror-id need --mirror-of PRIMARY-URL");
        }
        string? token = null;
        if (primaryTokenFile is not null)
        {
            try
            {
                token = File.ReadAllText(primaryTokenFile).Trim();
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new CliException($"cannot read primary token file {primaryTokenFile}: {e.Message}");
            }
            if (token.Length == 0)
            {
                throw new CliException($"primary token file {primaryTokenFile} is empty: write the primary cluster's token into it");
            }
        }
        if (id is not null && (id.Length is 0 or > Engine.MirrorLimits.MirrorIdBytesMax))
        {
            throw new CliException($"--mirror-id must be 1 to {Engine.MirrorLimits.MirrorIdBytesMax} characters");
        }
        PrimaryUrl primary;
        try
        {
            primary = PrimaryUrl.Parse(mirrorOf);
        }
        catch (ArgumentException e)
        {
            throw new CliException($"--mirror-of: {e.Message}");
        }
        return new MirrorHostOptions { Primary = primary, PrimaryToken = token, MirrorStorage = storage ?? "", MirrorId = id };
    }
}
