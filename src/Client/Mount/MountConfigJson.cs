// The text of .config: this mount's effective settings and the volume's, as JSON with every secret replaced by ***.
using System.Reflection;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Google.Protobuf;
using MirrorFS.Client.Vfs;
using MirrorFS.Core.Meta;
using MirrorFS.Core.Storage;

namespace MirrorFS.Client.Mount;

/// <summary>What this mount was started with, beyond <see cref="VfsOptions"/>.</summary>
public sealed record MountInfo
{
    public required string MetaUrl { get; init; }
    public required string MountPoint { get; init; }
    public required string FsName { get; init; }
    public required string FsType { get; init; }
    public bool ReadOnly { get; init; }
    public bool HideInternalFiles { get; init; }
    public string? MetricsUrl { get; init; }
    public IReadOnlyList<string> FuseOptions { get; init; } = [];
}

public static partial class MountConfigJson
{
    public const string Redacted = "***";

    // Marks a property that is not a plain setting (never inserted anywhere).
    private static readonly JsonNode Skip = JsonValue.Create("skip");

    /// <summary>{"version", "pid", "mount": {...}, "vfs": {...}, "volume": {...}}; built fresh at each open.</summary>
    public static string Build(MountInfo mount, VfsOptions options, Volume volume)
    {
        var root = new JsonObject
        {
            ["version"] = typeof(MountConfigJson).Assembly.GetName().Version?.ToString(),
            ["pid"] = Environment.ProcessId,
            ["host"] = Environment.MachineName,
            ["mount"] = JsonSerializer.SerializeToNode(mount, MountInfoContext.Default.MountInfo),
            ["vfs"] = Settings(options),
            // Protobuf's own JSON names every field of the volume, so settings added later show up here too.
            ["volume"] = JsonNode.Parse(new JsonFormatter(JsonFormatter.Settings.Default.WithFormatDefaultValues(true)).Format(volume)),
        };
        Redact(root);
        return root.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n";
    }

    /// <summary>The plain-valued public properties of the options (objects such as metrics sinks are not settings).</summary>
    private static JsonObject Settings(VfsOptions options)
    {
        var o = new JsonObject();
        foreach (var p in typeof(VfsOptions).GetProperties(BindingFlags.Public | BindingFlags.Instance).OrderBy(p => p.Name, StringComparer.Ordinal))
        {
            JsonNode? value = p.GetValue(options) switch
            {
                bool b => JsonValue.Create(b),
                int i => JsonValue.Create(i),
                uint u => JsonValue.Create(u),
                long l => JsonValue.Create(l),
                ulong ul => JsonValue.Create(ul),
                double d => JsonValue.Create(d),
                string str => JsonValue.Create(str),
                TimeSpan ts => JsonValue.Create(ts.ToString("c", System.Globalization.CultureInfo.InvariantCulture)),
                Enum e => JsonValue.Create(e.ToString()),
                null when p.PropertyType == typeof(string) => null,
                _ => Skip,
            };
            if (!ReferenceEquals(value, Skip))
            {
                o[JsonNamingPolicy.CamelCase.ConvertName(p.Name)] = value;
            }
        }
        return o;
    }

    /// <summary>Replaces values of secret-named keys by *** and strips secrets out of URIs anywhere in the tree.</summary>
    internal static void Redact(JsonNode? node)
    {
        switch (node)
        {
            case JsonObject obj:
                foreach (var (key, value) in obj.ToList())
                {
                    if (value is JsonValue v && SecretKey().IsMatch(key) && v.GetValueKind() == JsonValueKind.String && v.GetValue<string>().Length > 0)
                    {
                        obj[key] = Redacted;
                    }
                    else if (value is JsonValue s && s.GetValueKind() == JsonValueKind.String)
                    {
                        obj[key] = ObjectStoreFactory.Redact(s.GetValue<string>());
                    }
                    else
                    {
                        Redact(value);
                    }
                }
                break;
            case JsonArray arr:
                for (var i = 0; i < arr.Count; i++)
                {
                    if (arr[i] is JsonValue s && s.GetValueKind() == JsonValueKind.String)
                    {
                        arr[i] = ObjectStoreFactory.Redact(s.GetValue<string>());
                    }
                    else
                    {
                        Redact(arr[i]);
                    }
                }
                break;
        }
    }

    [GeneratedRegex("secret|token|password|passwd|credential|private", RegexOptions.IgnoreCase)]
    private static partial Regex SecretKey();
}

[System.Text.Json.Serialization.JsonSourceGenerationOptions(PropertyNamingPolicy = System.Text.Json.Serialization.JsonKnownNamingPolicy.CamelCase)]
[System.Text.Json.Serialization.JsonSerializable(typeof(MountInfo))]
internal sealed partial class MountInfoContext : System.Text.Json.Serialization.JsonSerializerContext;
