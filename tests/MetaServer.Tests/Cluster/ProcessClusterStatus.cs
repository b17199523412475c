// `mirrorfs-meta cluster status --json` as the process tests read it.
using System.Text.Json;

namespace MirrorFS.MetaServer.Tests.Cluster;

public sealed record ProcessNodeStatus(int Id, string Address, string Role, ulong Term, ulong CommitIndex, ulong AppliedIndex, ulong SnapshotIndex, bool Reachable);

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
        foreach (var m in doc.RootElement.GetProperty("nodes").EnumerateArray())
        {
            var reachable = m.GetProperty("reachable").GetBoolean();
            nodes.Add(new ProcessNodeStatus(
                m.GetProperty("id").ValueKind == JsonValueKind.Number ? m.GetProperty("id").GetInt32() : 0,
                m.GetProperty("address").GetString() ?? "",
                reachable ? m.GetProperty("role").GetString() ?? "" : "",
                reachable ? m.GetProperty("term").GetUInt64() : 0,
                reachable ? m.GetProperty("commit").GetUInt64() : 0,
                reachable ? m.GetProperty("applied").GetUInt64() : 0,
                reachable ? m.GetProperty("snapshotIndex").GetUInt64() : 0,
                reachable));
        }
        return new ProcessClusterStatus(nodes, json);
    }
}
