// `mirrorfs-meta cluster status --json` as the process tests read it.
using System.Text.Json;

namespace MirrorFS.MetaServer.Tests.Cluster;

public sealed record ProcessNodeStatus(int Id, string Address, string Role, ulong Term, ulong CommitIndex, ulong AppliedIndex, bool Reachable);

public sealed record ProcessClusterStatus(IReadOnlyList<ProcessNodeStatus> Nodes, string Json)
{
    public IEnumerable<ProcessNodeStatus> Reachable => Nodes.Where(n => n.Reachable);

    public IReadOnlyList<ProcessNodeStatus> Leaders => Reachable.Where(n => n.Role.Equals("leader", StringComparison.OrdinalIgnoreCase)).ToArray();

    /// <summary>Every listed node answered and they have all applied the same index.</summary>
    public bool AllApplied(int count) =>
        Nodes.Count == count && Nodes.All(n => n.Reachable) && Nodes.Select(n => n.AppliedIndex).Distinct().Count() == 1;

    public static ProcessClusterStatus Parse(string json)
    {
        using var doc = JsonDocument.Parse(json);
        var nodes = new List<ProcessNodeStatus>();
        foreach (var m in doc.RootElement.GetProperty("members").EnumerateArray())
        {
            var reachable = !m.TryGetProperty("error", out var err) || err.ValueKind == JsonValueKind.Null;
            nodes.Add(new ProcessNodeStatus(
                m.GetProperty("id").GetInt32(),
                m.GetProperty("address").GetString() ?? "",
                reachable && m.TryGetProperty("role", out var role) ? role.GetString() ?? "" : "",
                reachable && m.TryGetProperty("term", out var term) ? term.GetUInt64() : 0,
                reachable && m.TryGetProperty("commitIndex", out var commit) ? commit.GetUInt64() : 0,
                reachable && m.TryGetProperty("appliedIndex", out var applied) ? applied.GetUInt64() : 0,
                reachable));
        }
        return new ProcessClusterStatus(nodes, json);
    }
}
