// mirrorfs format: checks the object store, writes {volume}/mirrorfs_uuid, and records the volume's settings.
using System.CommandLine;
using Command = System.CommandLine.Command;
using System.Globalization;
using System.Text;
using MirrorFS.Core.Layout;
using MirrorFS.Core.Meta;
using MirrorFS.Core.Storage;

namespace MirrorFS.Client.Cli;

public static class FormatCommand
{
    public const int TrashDaysMax = 3650;

    public static Command Create(CliContext ctx)
    {
        var metaUrl = new Argument<string>("META-URL") { Description = "mirrorfs://HOST:PORT[,HOST:PORT...][/VOLUME]" };
        var name = new Argument<string>("NAME") { Description = $"Volume name ({MetaUrl.VolumeNameRule})" };
        var storage = new Option<string>("--storage")
        {
            Description = "Object storage URI: file:///PATH, s3://BUCKET[/PREFIX]?..., oss://BUCKET[/PREFIX]?...",
            Required = true,
        };
        var blockSize = new Option<string>("--block-size")
        {
            Description = "Block size: a power of two from 64K to 16M",
            DefaultValueFactory = _ => "4M",
        };
        var trashDays = new Option<int>("--trash-days")
        {
            Description = "Days deleted files stay in the trash (0 = no trash)",
            DefaultValueFactory = _ => 1,
        };
        var capacity = new Option<string?>("--capacity") { Description = "Volume capacity, e.g. 1T (writes beyond it fail with ENOSPC; default: unlimited)" };
        var inodes = new Option<ulong>("--inodes") { Description = "Most files and directories the volume may hold (0 = unlimited)" };
        var tokenFile = MetaConnection.TokenFileOption();
        var cmd = new Command("format", "Create a volume: check the object store and record its settings on the metaserver")
        {
            metaUrl, name, storage, blockSize, trashDays, capacity, inodes, tokenFile,
        };
        cmd.SetAction(CliApp.Guard(ctx, "format", async (parse, ct) =>
        {
            var settings = new FormatSettings(
                parse.GetValue(metaUrl)!, parse.GetValue(name)!, parse.GetValue(storage)!,
                parse.GetValue(blockSize)!, parse.GetValue(trashDays), parse.GetValue(tokenFile))
            {
                CapacityBytes = parse.GetValue(capacity) is { } c ? (ulong)Sizes.Parse(c, "--capacity") : 0,
                InodesMax = parse.GetValue(inodes),
            };
            var volume = await RunAsync(settings, ctx, ct).ConfigureAwait(false);
            await ctx.Out.WriteAsync(Describe(volume)).ConfigureAwait(false);
            return 0;
        }));
        return cmd;
    }

    public sealed record FormatSettings(string MetaUrl, string Name, string Storage, string BlockSize, int TrashDays,
        string? TokenFile)
    {
        /// <summary>0 = unlimited.</summary>
        public ulong CapacityBytes { get; init; }

        /// <summary>0 = unlimited.</summary>
        public ulong InodesMax { get; init; }
    }

    /// <summary>Validates everything, checks the store, writes the uuid object, then formats; returns the volume.</summary>
    public static async Task<Volume> RunAsync(FormatSettings s, CliContext ctx, CancellationToken ct)
    {
        var url = MetaUrl.Parse(s.MetaUrl, volumeRequired: false);
        if (!MetaUrl.IsValidVolumeName(s.Name))
        {
            throw new CliException($"volume name '{s.Name}' is invalid: use {MetaUrl.VolumeNameRule}");
        }
        if (url.Volume.Length > 0 && url.Volume != s.Name)
        {
            throw new CliException($"META-URL names volume {url.Volume} but NAME is {s.Name}: make them the same or leave the volume out of the URL");
        }
        var blockBytes = Sizes.Parse(s.BlockSize, "--block-size");
        var blockError = BlockLayout.ValidateBlockSize(blockBytes);
        if (blockError is not null)
        {
            throw new CliException($"--block-size {s.BlockSize}: {blockError}");
        }
        if (s.TrashDays is < 0 or > TrashDaysMax)
        {
            throw new CliException($"--trash-days {s.TrashDays} is out of range: use 0 to {TrashDaysMax}");
        }
        var redactedStorage = ObjectStoreFactory.Redact(s.Storage);
        await using var store = ObjectStoreFactory.Open(s.Storage);

        var token = MetaConnection.ResolveToken(url, s.TokenFile, ctx);
        await using var meta = MetaConnection.Open(url, token, ctx);
        var existing = await MetaConnection.CallAsync(url, () => meta.GetVolumeAsync(new GetVolumeRequest(), ct)).ConfigureAwait(false);
        if (existing.Errno == Errno.OK)
        {
            throw new CliException(existing.Volume.Name == s.Name
                ? $"volume {s.Name} is already formatted on {url.Hosts} (uuid {existing.Volume.Uuid}): nothing to do; use mirrorfs status to see it"
                : $"metaserver {url.Hosts} already serves volume {existing.Volume.Name}: use a new metaserver for volume {s.Name}");
        }

        await CheckStoreAsync(store, s.Name, redactedStorage, ct).ConfigureAwait(false);
        var uuidKey = UuidKey(s.Name);
        var old = await store.GetAsync(uuidKey, null, ct).ConfigureAwait(false);
        if (old is not null)
        {
            // Slice ids start again at 1 on a new metaserver; old blocks under the same keys would be read as new data.
            throw new CliException($"storage {redactedStorage} already holds volume {s.Name} (uuid {Encoding.UTF8.GetString(old).Trim()}): "
                + $"use another bucket or prefix, or delete {s.Name}/ there first");
        }
        var uuid = Guid.NewGuid().ToString();
        await store.PutAsync(uuidKey, Encoding.UTF8.GetBytes(uuid), ct).ConfigureAwait(false);

        var reply = await MetaConnection.CallAsync(url, () => meta.FormatAsync(new FormatRequest
        {
            Volume = new Volume
            {
                Name = s.Name,
                Uuid = uuid,
                Storage = s.Storage,
                BlockSize = (uint)blockBytes,
                TrashDays = (uint)s.TrashDays,
                TrashEnabled = true,
                CapacityBytes = s.CapacityBytes,
                InodesMax = s.InodesMax,
            },
        }, ct)).ConfigureAwait(false);
        if (reply.Errno != Errno.OK)
        {
            // Leave nothing behind that would block a retry of this format.
            await store.DeleteAsync(uuidKey, CancellationToken.None).ConfigureAwait(false);
            throw new CliException(reply.Errno == Errno.EEXIST
                ? $"volume on {url.Hosts} was formatted meanwhile by someone else: use mirrorfs status to see it"
                : $"metaserver {url.Hosts} refused to format volume {s.Name}: errno {reply.Errno}");
        }
        return reply.Volume;
    }

    public static string UuidKey(string volume) => volume + "/mirrorfs_uuid";

    /// <summary>Puts, reads back and deletes a probe object, so a wrong bucket or key fails now and not at first write.</summary>
    private static async Task CheckStoreAsync(IObjectStore store, string volume, string shown, CancellationToken ct)
    {
        var key = $"{volume}/mirrorfs_probe_{Guid.NewGuid():N}";
        var data = Encoding.UTF8.GetBytes("mirrorfs format probe " + key);
        var step = "put";
        try
        {
            await store.PutAsync(key, data, ct).ConfigureAwait(false);
            step = "get";
            var back = await store.GetAsync(key, null, ct).ConfigureAwait(false);
            if (back is null || !back.AsSpan().SequenceEqual(data))
            {
                throw new CliException($"storage {shown} failed the format check: a probe object read back {(back is null ? "missing" : "different")}");
            }
            step = "delete";
            await store.DeleteAsync(key, ct).ConfigureAwait(false);
            if (await store.HeadAsync(key, ct).ConfigureAwait(false) is not null)
            {
                throw new CliException($"storage {shown} failed the format check: a deleted probe object is still there");
            }
        }
        catch (ObjectStoreException e)
        {
            throw new CliException($"storage {shown} failed the format check ({step}): {e.Detail}");
        }
    }

    /// <summary>The volume's settings as key: value lines, secrets redacted.</summary>
    public static string Describe(Volume v)
    {
        var inv = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        foreach (var (k, val) in Settings(v))
        {
            sb.Append(inv, $"{k + ":",-12} {val}").AppendLine();
        }
        return sb.ToString();
    }

    /// <summary>The settings a person wants to see, with the storage URI's secrets redacted.</summary>
    public static IReadOnlyList<(string Key, string Value)> Settings(Volume v)
    {
        var inv = CultureInfo.InvariantCulture;
        return
        [
            ("name", v.Name),
            ("uuid", v.Uuid),
            ("storage", ObjectStoreFactory.Redact(v.Storage)),
            ("block size", Sizes.Format(v.BlockSize)),
            ("chunk size", Sizes.Format(v.ChunkSize)),
            ("trash days", v.TrashEnabled || v.TrashDays == 0 ? v.TrashDays.ToString(inv) : "0 (formatted before the trash; enable with mirrorfs config --trash-days)"),
            ("capacity", v.CapacityBytes == 0 ? "unlimited" : Sizes.Format((long)v.CapacityBytes)),
            ("inodes", v.InodesMax == 0 ? "unlimited" : v.InodesMax.ToString(inv)),
            ("upload", v.UploadLimitBytes == 0 ? "unlimited" : Sizes.Format((long)v.UploadLimitBytes) + "/s"),
            ("download", v.DownloadLimitBytes == 0 ? "unlimited" : Sizes.Format((long)v.DownloadLimitBytes) + "/s"),
            ("meta ops", v.MetaOpsLimit == 0 ? "unlimited" : v.MetaOpsLimit.ToString(inv) + "/s"),
            ("created", v.CreatedNs == 0 ? "-" : DateTimeOffset.FromUnixTimeMilliseconds(v.CreatedNs / 1_000_000).ToString("u", inv)),
        ];
    }
}
