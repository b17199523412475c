// The figures `status` shows for one mirror, gathered from the primary, the mirror cluster and the replicator.
using System.Globalization;
using System.Text;
using System.Text.Json;
using MirrorFS.Core.Meta;
using MirrorFS.Mirror.Replication;

namespace MirrorFS.Mirror.Status;

public sealed record MirrorReport
{
    public required string MirrorId { get; init; }

    /// <summary>The primary's commit (applied) index when asked.</summary>
    public ulong PrimaryCommitIndex { get; init; }

    /// <summary>The mirror metaserver's applied primary index (its own figure when it was asked, else what it last
    /// reported to the primary); null when unknown.</summary>
    public ulong? MirrorAppliedIndex { get; init; }

    public ulong? LagEntries { get; init; }

    public double? LagSeconds { get; init; }

    public string? MirrorState { get; init; }

    public bool? Connected { get; init; }

    public double? LastSeenSecondsAgo { get; init; }

    /// <summary>The replicator's copied-through index (its own figure, else what it last reported to the primary).</summary>
    public ulong? BlocksCopiedThroughIndex { get; init; }

    public ulong? BlockLagEntries { get; init; }

    public double? BlockLagSeconds { get; init; }

    public int? BlocksPending { get; init; }

    public long? BytesPending { get; init; }

    public double? OldestPendingSeconds { get; init; }

    public double? CopyRateBytesPerSecond { get; init; }

    public long? Errors { get; init; }

    public string? LastError { get; init; }

    public double? LastCheckpointSecondsAgo { get; init; }

    public ulong? LastCheckpointIndex { get; init; }

    public double? BlockLagP99Ms { get; init; }

    /// <param name="mirrors">Mirror clusters asked directly, by their META-URL hosts.</param>
    public static List<MirrorReport> Build(ListMirrorsReply primary, IReadOnlyList<(string Hosts, ListMirrorsReply Reply)> mirrors,
        IReadOnlyList<ReplicatorStatus> replicators, DateTimeOffset now)
    {
        var nowNs = now.ToUnixTimeMilliseconds() * 1_000_000;
        var commit = primary.CommitIndex;
        var ids = new SortedSet<string>(StringComparer.Ordinal);
        foreach (var m in primary.Mirrors)
        {
            ids.Add(BaseId(m.MirrorId));
        }
        foreach (var r in replicators)
        {
            ids.Add(BaseId(r.MirrorId));
        }
        // A mirror cluster does not say its own id: it is paired with the primary's table when that is unambiguous
        // (one metadata mirror there), else shown on a row of its own named by its hosts.
        var metaIds = primary.Mirrors.Where(m => !m.MirrorId.EndsWith(Cli.RunCommand.BlocksSuffix, StringComparison.Ordinal)).ToList();
        var paired = mirrors.Count == 1 && metaIds.Count == 1 ? metaIds[0].MirrorId : null;
        if (paired is null)
        {
            foreach (var (hosts, _) in mirrors)
            {
                ids.Add(hosts);
            }
        }
        var reports = new List<MirrorReport>();
        foreach (var id in ids)
        {
            var meta = primary.Mirrors.FirstOrDefault(m => m.MirrorId == id);
            var blocksInfo = primary.Mirrors.FirstOrDefault(m => m.MirrorId == id + Cli.RunCommand.BlocksSuffix);
            var rep = replicators.FirstOrDefault(r => BaseId(r.MirrorId) == id);
            var follow = id == paired ? mirrors[0].Reply.Follow : mirrors.FirstOrDefault(m => m.Hosts == id).Reply?.Follow;
            ulong? applied = follow?.AppliedIndex ?? meta?.AppliedIndex;
            double? lagSeconds = null;
            if (applied is { } a && a >= commit)
            {
                lagSeconds = 0;
            }
            else if (follow is { AppliedTimeNs: > 0, PrimaryCommitTimeNs: > 0 })
            {
                lagSeconds = Math.Max(0, (follow.PrimaryCommitTimeNs - follow.AppliedTimeNs) / 1e9);
            }
            ulong? copied = rep?.CopiedThroughIndex ?? blocksInfo?.AppliedIndex;
            reports.Add(new MirrorReport
            {
                MirrorId = id,
                PrimaryCommitIndex = commit,
                MirrorAppliedIndex = applied,
                LagEntries = applied is { } x ? Sub(commit, x) : null,
                LagSeconds = lagSeconds,
                MirrorState = follow?.State,
                Connected = meta?.Connected,
                LastSeenSecondsAgo = meta is { LastSeenNs: > 0 } ? Math.Max(0, (nowNs - meta.LastSeenNs) / 1e9) : null,
                BlocksCopiedThroughIndex = copied,
                BlockLagEntries = copied is { } c ? Sub(Math.Max(commit, rep?.PrimaryCommitIndex ?? 0), c) : null,
                BlockLagSeconds = rep?.LagSeconds,
                BlocksPending = rep?.BlocksPending,
                BytesPending = rep?.BytesPending,
                OldestPendingSeconds = rep?.OldestPendingSeconds,
                CopyRateBytesPerSecond = rep?.CopyRateBytesPerSecond,
                Errors = rep?.Errors,
                LastError = rep?.LastError,
                LastCheckpointSecondsAgo = rep is { LastCheckpointUnixMs: > 0 } ? Math.Max(0, (now.ToUnixTimeMilliseconds() - rep.LastCheckpointUnixMs) / 1000.0) : null,
                LastCheckpointIndex = rep?.LastCheckpointIndex,
                BlockLagP99Ms = rep?.BlockLagP99Ms,
            });
        }
        return reports;
    }

    private static ulong Sub(ulong a, ulong b) => a > b ? a - b : 0;

    /// <summary>The mirror an id belongs to: a replicator's id is its mirror's plus "/blocks".</summary>
    public static string BaseId(string id) =>
        id.EndsWith(Cli.RunCommand.BlocksSuffix, StringComparison.Ordinal) ? id[..^Cli.RunCommand.BlocksSuffix.Length] : id;

    public static string Json(string primary, ulong commit, IReadOnlyList<MirrorReport> reports) =>
        JsonSerializer.Serialize(new { primary, primaryCommitIndex = commit, mirrors = reports }, JsonOptions);

    private static readonly JsonSerializerOptions JsonOptions = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        WriteIndented = true,
    };

    /// <summary>One row per mirror; "-" where a figure is unknown.</summary>
    public static string Table(string primary, ulong commit, IReadOnlyList<MirrorReport> reports)
    {
        var inv = CultureInfo.InvariantCulture;
        string[] headers =
        [
            "mirror", "primary commit", "mirror applied", "lag entries", "lag s", "blocks copied", "block lag entries",
            "blocks pending", "bytes pending", "oldest pending", "copy rate", "errors", "last checkpoint",
        ];
        var rows = reports.Select(r => new[]
        {
            r.MirrorId,
            r.PrimaryCommitIndex.ToString(inv),
            Show(r.MirrorAppliedIndex),
            Show(r.LagEntries),
            r.LagSeconds is { } l ? l.ToString("0.00", inv) : "-",
            Show(r.BlocksCopiedThroughIndex),
            Show(r.BlockLagEntries),
            r.BlocksPending?.ToString(inv) ?? "-",
            r.BytesPending is { } b ? Bytes(b) : "-",
            r.OldestPendingSeconds is { } o ? o.ToString("0.0", inv) + " s" : "-",
            r.CopyRateBytesPerSecond is { } rate ? Bytes((long)rate) + "/s" : "-",
            r.Errors?.ToString(inv) ?? "-",
            r.LastCheckpointSecondsAgo is { } ago ? string.Create(inv, $"{ago:0.0} s ago (index {r.LastCheckpointIndex})") : "-",
        }).ToList();
        var widths = headers.Select((h, i) => Math.Max(h.Length, rows.Count == 0 ? 0 : rows.Max(r => r[i].Length))).ToArray();
        var w = new StringBuilder();
        w.Append(inv, $"primary {primary}: commit index {commit}, {reports.Count} mirror(s)\n");
        void Line(IReadOnlyList<string> cells)
        {
            for (var i = 0; i < cells.Count; i++)
            {
                w.Append(i == 0 ? cells[i].PadRight(widths[i]) : cells[i].PadLeft(widths[i]));
                w.Append(i == cells.Count - 1 ? "\n" : "  ");
            }
        }
        Line(headers);
        foreach (var r in rows)
        {
            Line(r);
        }
        foreach (var r in reports.Where(r => r.LastError is not null || r.MirrorState is not null))
        {
            w.Append(inv, $"{r.MirrorId}: state {r.MirrorState ?? "-"}, connected {Show(r.Connected)}, last seen {(r.LastSeenSecondsAgo is { } s ? s.ToString("0.0", inv) + " s ago" : "-")}");
            if (r.LastError is not null)
            {
                w.Append(inv, $", last replicator error: {r.LastError}");
            }
            w.Append('\n');
        }
        return w.ToString();
    }

    private static string Show<T>(T? v)
        where T : struct => v is { } x ? Convert.ToString(x, CultureInfo.InvariantCulture)!.ToLowerInvariant() : "-";

    public static string Bytes(long bytes)
    {
        string[] units = ["B", "KiB", "MiB", "GiB", "TiB"];
        double v = bytes;
        var u = 0;
        while (v >= 1024 && u < units.Length - 1)
        {
            v /= 1024;
            u++;
        }
        return string.Create(CultureInfo.InvariantCulture, $"{v:0.#} {units[u]}");
    }
}
