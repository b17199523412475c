// The golden files of tests/MetaServer.Tests/Golden ("name hex" lines; # comments): read them, and compare encodings
// with them. GOLDENS MAY ONLY GROW: MIRRORFS_UPDATE_GOLDEN=1 appends missing names and never rewrites existing ones.
using System.Runtime.CompilerServices;

namespace MirrorFS.MetaServer.Tests.Engine;

internal static class GoldenFile
{
    private static string GoldenDir([CallerFilePath] string source = "") =>
        Path.Combine(Path.GetDirectoryName(Path.GetDirectoryName(source)!)!, "Golden");

    public static Dictionary<string, string> Read(string file)
    {
        var path = Path.Combine(GoldenDir(), file);
        var map = new Dictionary<string, string>();
        if (!File.Exists(path))
        {
            return map;
        }
        foreach (var line in File.ReadAllLines(path))
        {
            if (line.Length == 0 || line.StartsWith('#'))
            {
                continue;
            }
            var space = line.IndexOf(' ', StringComparison.Ordinal);
            map.Add(line[..space], line[(space + 1)..]);
        }
        return map;
    }

    /// <summary>Compares each actual value with its golden; appends missing ones only when asked to.</summary>
    public static void Verify(string file, IEnumerable<(string Name, string Hex)> actual)
    {
        var golden = Read(file);
        var missing = new List<string>();
        foreach (var (name, hex) in actual)
        {
            if (golden.TryGetValue(name, out var expected))
            {
                Assert.True(expected == hex, $"golden {file}:{name} changed; encodings are frozen (goldens may only grow).\nexpected {expected}\nactual   {hex}");
            }
            else
            {
                missing.Add($"{name} {hex}");
            }
        }
        if (missing.Count == 0)
        {
            return;
        }
        if (Environment.GetEnvironmentVariable("MIRRORFS_UPDATE_GOLDEN") == "1")
        {
            File.AppendAllLines(Path.Combine(GoldenDir(), file), missing);
            return;
        }
        Assert.Fail($"golden {file} lacks {string.Join(", ", missing.Select(m => m.Split(' ')[0]))}; run once with MIRRORFS_UPDATE_GOLDEN=1 to append them");
    }
}
