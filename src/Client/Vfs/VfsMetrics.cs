// Counters the VFS updates: block reads served by the memory cache, the disk cache, or object storage; lookups served
// from cached directory listings.
using MirrorFS.Core.Metrics;

namespace MirrorFS.Client.Vfs;

public sealed class VfsMetrics
{
    public VfsMetrics(MetricsRegistry registry)
    {
        ArgumentNullException.ThrowIfNull(registry);
        var hits = registry.CounterFamily("mirrorfs_blockcache_hits_total",
            "Block reads served from a cache, by tier (memory, disk).", "tier");
        MemoryHits = hits.WithLabels("memory");
        DiskHits = hits.WithLabels("disk");
        Misses = registry.Counter("mirrorfs_blockcache_misses_total",
            "Block reads no cache could serve (fetched from object storage).");
        DirCacheHits = registry.Counter("mirrorfs_dircache_hits_total",
            "Lookups answered from a cached directory listing (no metadata call).");
        DirCacheListings = registry.Counter("mirrorfs_dircache_listings_total",
            "Directory listings read and kept to answer lookups.");
    }

    public Counter MemoryHits { get; }

    public Counter DiskHits { get; }

    public Counter Misses { get; }

    public Counter DirCacheHits { get; }

    public Counter DirCacheListings { get; }
}
