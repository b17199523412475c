// Prometheus text exposition (format 0.0.4) of the replicator's figures.
using System.Globalization;
using System.Text;
using MirrorFS.Mirror.Replication;

namespace MirrorFS.Mirror.Status;

public static class MetricsText
{
    public const string ContentType = "text/plain; version=0.0.4; charset=utf-8";
    private const string Prefix = "mirrorfs_replicator_";

    public static string Render(ReplicatorStatus s)
    {
        var w = new StringBuilder();
        var labels = $"mirror_id=\"{Escape(s.MirrorId)}\"";
        void Metric(string name, string type, string help, double value, string? extra = null)
        {
            w.Append("# HELP ").Append(Prefix).Append(name).Append(' ').Append(help).Append('\n');
            w.Append("# TYPE ").Append(Prefix).Append(name).Append(' ').Append(type).Append('\n');
            Sample(name, value, extra);
        }
        void Sample(string name, double value, string? extra = null)
        {
            w.Append(Prefix).Append(name).Append('{').Append(labels);
            if (extra is not null)
            {
                w.Append(',').Append(extra);
            }
            w.Append("} ").Append(value.ToString("R", CultureInfo.InvariantCulture)).Append('\n');
        }
        Metric("primary_commit_index", "gauge", "Highest commit index the primary reported.", s.PrimaryCommitIndex);
        Metric("copied_through_index", "gauge", "Every block of every entry up to this index is in the mirror bucket.", s.CopiedThroughIndex);
        Metric("dispatched_through_index", "gauge", "Last changelog entry read.", s.DispatchedThroughIndex);
        Metric("lag_entries", "gauge", "Primary commit index minus copied-through index.", s.LagEntries);
        Metric("lag_seconds", "gauge", "Age of the oldest block not yet copied.", s.LagSeconds);
        Metric("blocks_pending", "gauge", "Blocks read from the changelog and not yet copied.", s.BlocksPending);
        Metric("bytes_pending", "gauge", "Bytes of the pending blocks.", s.BytesPending);
        Metric("copy_rate_bytes_per_second", "gauge", "Bytes copied per second over the last 10 s.", s.CopyRateBytesPerSecond);
        Metric("blocks_copied_total", "counter", "Blocks written to the mirror bucket.", s.BlocksCopied);
        Metric("bytes_copied_total", "counter", "Bytes written to the mirror bucket.", s.BytesCopied);
        Metric("blocks_already_present_total", "counter", "Blocks found in the mirror bucket already.", s.BlocksAlreadyPresent);
        Metric("blocks_gone_from_source_total", "counter", "Blocks deleted from the primary bucket before they were copied.", s.BlocksGoneFromSource);
        Metric("blocks_damaged_in_source_total", "counter", "Blocks with the wrong size in the primary bucket (not copied).", s.BlocksDamagedInSource);
        Metric("blocks_deleted_total", "counter", "Blocks deleted from the mirror bucket after the primary deleted them.", s.BlocksDeleted);
        Metric("entries_read_total", "counter", "Changelog entries read.", s.EntriesRead);
        Metric("resyncs_total", "counter", "Full bucket resyncs (changelog compacted past the checkpoint).", s.Resyncs);
        Metric("errors_total", "counter", "Failed storage or changelog calls (each is retried).", s.Errors);
        Metric("last_checkpoint_timestamp_seconds", "gauge", "Unix time of the last saved checkpoint.", s.LastCheckpointUnixMs / 1000.0);
        Metric("last_checkpoint_index", "gauge", "Copied-through index in the last saved checkpoint.", s.LastCheckpointIndex);
        w.Append("# HELP ").Append(Prefix).Append("block_lag_seconds Entry commit to block present in the mirror bucket, over recent blocks.\n");
        w.Append("# TYPE ").Append(Prefix).Append("block_lag_seconds gauge\n");
        Sample("block_lag_seconds", s.BlockLagP50Ms / 1000, "quantile=\"0.5\"");
        Sample("block_lag_seconds", s.BlockLagP90Ms / 1000, "quantile=\"0.9\"");
        Sample("block_lag_seconds", s.BlockLagP99Ms / 1000, "quantile=\"0.99\"");
        Sample("block_lag_seconds", s.BlockLagMaxMs / 1000, "quantile=\"1\"");
        return w.ToString();
    }

    private static string Escape(string v) => v.Replace("\\", "\\\\", StringComparison.Ordinal)
        .Replace("\"", "\\\"", StringComparison.Ordinal).Replace("\n", "\\n", StringComparison.Ordinal);
}
