// mirrorfs gc: compares the bucket's block objects with the metadata's slices; reports valid, leaked, compacted and
// pending-delete objects; optionally compacts fragmented chunks and deletes what nothing uses.
using System.CommandLine;
using Command = System.CommandLine.Command;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging.Abstractions;
using MirrorFS.Client.Vfs;
using MirrorFS.Core.Layout;
using MirrorFS.Core.Meta;
using MirrorFS.Core.Storage;

namespace MirrorFS.Client.Cli;

public sealed record GcSettings
{
    public bool Compact { get; init; }

    public bool Delete { get; init; }

    /// <summary>Objects younger than this are left alone: their slice may still be uploading.</summary>
    public TimeSpan MinAge { get; init; } = TimeSpan.FromHours(1);

    /// <summary>--compact rewrites chunks with more slices than this.</summary>
    public int CompactSlicesMax { get; init; } = 20;

    /// <summary>How long slices replaced by --compact are kept before deletion.</summary>
    public TimeSpan CompactDelay { get; init; } = TimeSpan.FromHours(1);

    public bool Json { get; init; }

    /// <summary>Objects per listing page.</summary>
    public int ListPageObjects { get; init; } = 1000;
}

/// <summary>A count of objects and their bytes.</summary>
public sealed class GcTally
{
    public long Objects { get; private set; }

    public long Bytes { get; private set; }

    public void Add(long bytes)
    {
        Objects++;
        Bytes += bytes;
    }
}

/// <summary>What one gc run found and did.</summary>
public sealed class GcReport
{
    public GcTally Valid { get; } = new();

    public GcTally Leaked { get; } = new();

    public GcTally Compacted { get; } = new();

    public GcTally Pending { get; } = new();

    public GcTally Young { get; } = new();

    public GcTally Foreign { get; } = new();

    public long PendingSlices { get; set; }

    public long EligibleSlices { get; set; }

    public long DelayedSlices { get; set; }

    public int ChunksCompacted { get; set; }

    public long SlicesReplaced { get; set; }

    public GcTally LeakedDeleted { get; } = new();

    public DeleteRound PendingFinished { get; set; }

    /// <summary>More leaked objects than one pass keeps; the rest are left for the next run.</summary>
    public bool LeakedCapped { get; set; }
}

public static class GcCommand
{
    /// <summary>Leaked keys one run remembers (and deletes) at most.</summary>
    public const int LeakedKeysMax = 1_000_000;

    /// <summary>Pending slices deleted and confirmed per batch.</summary>
    public const int PendingBatchSlices = 256;

    public static Command Create(CliContext ctx)
    {
        var metaUrl = new Argument<string>("META-URL") { Description = "mirrorfs://HOST:PORT[,HOST:PORT...]/VOLUME" };
        var compact = new Option<bool>("--compact") { Description = "Rewrite fragmented chunks as one slice first" };
        var delete = new Option<bool>("--delete") { Description = "Delete leaked objects and finish pending deletes" };
        var compactSlices = new Option<int>("--compact-slices") { Description = "--compact rewrites chunks with more slices than this", DefaultValueFactory = _ => 20 };
        var compactDelay = new Option<int>("--compact-delay") { Description = "Seconds replaced slices are kept before deletion", DefaultValueFactory = _ => 3600 };
        var json = new Option<bool>("--json") { Description = "Print the report as JSON" };
        // For tests and emergencies: objects younger than this may belong to uploads in flight.
        var minAge = new Option<int>("--min-age") { Hidden = true, DefaultValueFactory = _ => 3600 };
        var tokenFile = MetaConnection.TokenFileOption();
        var cmd = new Command("gc", "Find objects no file uses (leaked) and pending deletes; --delete removes them")
        {
            metaUrl, compact, delete, compactSlices, compactDelay, json, minAge, tokenFile,
        };
        cmd.SetAction(CliApp.Guard(ctx, "gc", async (parse, ct) =>
        {
            var url = MetaUrl.Parse(parse.GetValue(metaUrl)!);
            var settings = new GcSettings
            {
                Compact = parse.GetValue(compact),
                Delete = parse.GetValue(delete),
                CompactSlicesMax = parse.GetValue(compactSlices) is > 0 and var n ? n : throw new CliException("--compact-slices must be at least 1"),
                CompactDelay = TimeSpan.FromSeconds(parse.GetValue(compactDelay) is >= 0 and var d ? d : throw new CliException("--compact-delay must be 0 or more seconds")),
                MinAge = TimeSpan.FromSeconds(Math.Max(0, parse.GetValue(minAge))),
                Json = parse.GetValue(json),
            };
            var token = MetaConnection.ResolveToken(url, parse.GetValue(tokenFile), ctx);
            await using var meta = MetaConnection.Open(url, token, ctx);
            var volume = await MetaConnection.GetVolumeAsync(meta, url, ct).ConfigureAwait(false);
            await using var store = ObjectStoreFactory.Open(volume.Storage);
            return await RunCoreAsync(ctx, url, meta, store, settings, ct).ConfigureAwait(false);
        }));
        return cmd;
    }

    /// <summary>Runs gc against <paramref name="store"/> (the volume's bucket) and prints the report; returns the exit
    /// code (failures print one line, as the command does). Nothing is deleted unless every listing and metadata read
    /// before succeeded.</summary>
    public static Task<int> RunAsync(CliContext ctx, MetaUrl url, IMetaClient meta, IObjectStore store, GcSettings settings,
        CancellationToken ct) =>
        CliApp.Guard(ctx, "gc", (_, c) => RunCoreAsync(ctx, url, meta, store, settings, c))(null!, ct); // the body reads no arguments

    private static async Task<int> RunCoreAsync(CliContext ctx, MetaUrl url, IMetaClient meta, IObjectStore store, GcSettings settings,
        CancellationToken ct)
    {
        var volume = await MetaConnection.GetVolumeAsync(meta, url, ct).ConfigureAwait(false);
        var report = await ProgressView.RunAsync(ctx, view => CollectAsync(url, meta, store, volume, settings, view, ct)).ConfigureAwait(false);
        if (settings.Json)
        {
            await ctx.Out.WriteLineAsync(Json(report)).ConfigureAwait(false);
        }
        else
        {
            await WriteTableAsync(ctx, volume, store, settings, report).ConfigureAwait(false);
        }
        return 0;
    }

    /// <summary>Live slice id -> stored size, and pending deletes by slice id, as one read of the metadata saw them.</summary>
    private sealed record MetaView(Dictionary<ulong, uint> Live, Dictionary<ulong, PendingDelete> Pending);

    private static async Task<GcReport> CollectAsync(MetaUrl url, IMetaClient meta, IObjectStore store, Volume volume,
        GcSettings settings, ProgressView view, CancellationToken ct)
    {
        var report = new GcReport();
        var blockSize = (int)volume.BlockSize;
        MetaSession? session = null;
        try
        {
            if (settings.Compact || settings.Delete)
            {
                session = await MetaConnection.CallAsync(url, () => MetaSession.StartAsync(meta, new MetaSessionOptions
                {
                    Info = new ClientInfo { Hostname = Environment.MachineName, MountPoint = "(mirrorfs gc)", Pid = (uint)Environment.ProcessId },
                }, NullLogger.Instance, ct)).ConfigureAwait(false);
            }
            if (settings.Compact)
            {
                await CompactAsync(url, session!, store, volume, settings, report, view.Add("compacting chunks"), ct).ConfigureAwait(false);
            }

            // Metadata first, then the bucket: an object listed is judged against a metadata read made before it.
            var first = await ReadMetaAsync(url, meta, view.Add("reading slices"), view.Add("reading pending deletes"), ct).ConfigureAwait(false);
            report.PendingSlices = first.Pending.Count;
            report.EligibleSlices = first.Pending.Values.Count(p => p.Eligible);
            report.DelayedSlices = first.Pending.Values.Count(p => p.NotBeforeNs > 0 && !p.Eligible);
            var leaked = new List<(string Key, BlockKey Block, long Size)>();
            var listed = view.Add("listing objects");
            var now = DateTimeOffset.UtcNow;
            await foreach (var o in store.ListAllAsync(BlockLayout.ChunksPrefix(volume.Name), null, settings.ListPageObjects, ct).ConfigureAwait(false))
            {
                listed.Add();
                if (!BlockLayout.TryParseKey(volume.Name, o.Key, out var block))
                {
                    report.Foreign.Add(o.Size);
                }
                else if (first.Live.TryGetValue(block.SliceId, out var size) && Fits(block, o.Size, size, blockSize))
                {
                    report.Valid.Add(o.Size);
                }
                else if (first.Pending.TryGetValue(block.SliceId, out var p))
                {
                    (p.NotBeforeNs > 0 ? report.Compacted : report.Pending).Add(o.Size);
                }
                else if (now - o.LastModified < settings.MinAge)
                {
                    report.Young.Add(o.Size);
                }
                else
                {
                    report.Leaked.Add(o.Size);
                    if (leaked.Count < LeakedKeysMax)
                    {
                        leaked.Add((o.Key, block, o.Size));
                    }
                    else
                    {
                        report.LeakedCapped = true;
                    }
                }
            }
            listed.Done();
            if (!settings.Delete)
            {
                return report;
            }

            // Read the metadata again: a slice committed while the bucket was listed must not lose its blocks.
            var second = await ReadMetaAsync(url, meta, view.Add("reading slices again"), view.Add("reading pending deletes again"), ct).ConfigureAwait(false);
            leaked.RemoveAll(l => second.Pending.ContainsKey(l.Block.SliceId)
                                  || (second.Live.TryGetValue(l.Block.SliceId, out var size) && Fits(l.Block, l.Size, size, blockSize)));
            var deleting = view.Add("deleting leaked objects", leaked.Count);
            foreach (var batch in leaked.Chunk(BlockDeleter.KeysPerCallMax))
            {
                await store.DeleteManyAsync(batch.Select(l => l.Key).ToList(), ct).ConfigureAwait(false);
                foreach (var l in batch)
                {
                    report.LeakedDeleted.Add(l.Size);
                }
                deleting.Add(batch.Length);
            }
            deleting.Done();

            var eligible = second.Pending.Values.Where(p => p.Eligible).OrderBy(p => p.SliceId).ToList();
            var finishing = view.Add("finishing pending deletes", eligible.Count);
            var deleter = new BlockDeleter(session!, store, volume.Name, blockSize, NullLogger.Instance, PendingBatchSlices);
            await using (deleter.ConfigureAwait(false))
            {
                foreach (var batch in eligible.Chunk(PendingBatchSlices))
                {
                    var done = await MetaConnection.CallAsync(url, () => deleter.DeleteAsync(batch, ct)).ConfigureAwait(false);
                    var sum = report.PendingFinished;
                    report.PendingFinished = new DeleteRound(sum.Slices + done.Slices, sum.Objects + done.Objects, sum.Bytes + done.Bytes);
                    finishing.Add(batch.Length);
                }
            }
            finishing.Done();
            return report;
        }
        finally
        {
            if (session is not null)
            {
                await session.DisposeAsync().ConfigureAwait(false);
            }
        }
    }

    /// <summary>Whether an object is one of the blocks a slice of <paramref name="sliceSize"/> bytes is stored as.</summary>
    private static bool Fits(BlockKey block, long objectSize, uint sliceSize, int blockSize)
    {
        var count = BlockLayout.BlockCount(sliceSize, blockSize);
        if (block.Index >= count)
        {
            return false;
        }
        var expected = Math.Min(blockSize, (long)sliceSize - ((long)block.Index * blockSize));
        return block.Size == expected && objectSize == expected;
    }

    private static async Task<MetaView> ReadMetaAsync(MetaUrl url, IMetaClient meta, ProgressLine slicesLine, ProgressLine pendingLine,
        CancellationToken ct)
    {
        var live = new Dictionary<ulong, uint>();
        await foreach (var chunk in AllChunksAsync(url, meta, 0, ct).ConfigureAwait(false))
        {
            foreach (var s in chunk.Slices)
            {
                if (s.Id != 0)
                {
                    live.TryAdd(s.Id, s.Size);
                }
            }
            slicesLine.Add();
        }
        slicesLine.Done();
        var pending = new Dictionary<ulong, PendingDelete>();
        ulong after = 0;
        while (true)
        {
            var from = after;
            var page = await MetaConnection.CallAsync(url,
                () => meta.ListPendingDeletesAsync(new ListPendingDeletesRequest { StartAfter = from, Limit = 10_000 }, ct)).ConfigureAwait(false);
            if (page.Errno != 0)
            {
                throw new CliException($"metaserver {url.Hosts} could not list pending deletes: errno {page.Errno}; nothing was deleted");
            }
            foreach (var p in page.Entries)
            {
                pending[p.SliceId] = p;
            }
            pendingLine.Add(page.Entries.Count);
            if (page.Eof)
            {
                break;
            }
            if (page.Entries.Count == 0 || page.Entries[^1].SliceId <= from)
            {
                throw new CliException($"metaserver {url.Hosts} gave a pending-delete page that does not advance; nothing was deleted");
            }
            after = page.Entries[^1].SliceId;
        }
        pendingLine.Done();
        return new MetaView(live, pending);
    }

    /// <summary>Every chunk with at least <paramref name="minSlices"/> slices, page by page (a failed page throws).</summary>
    internal static async IAsyncEnumerable<ChunkSlices> AllChunksAsync(MetaUrl url, IMetaClient meta, uint minSlices,
        [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken ct)
    {
        ulong inode = 0;
        uint index = 0;
        while (true)
        {
            var (i, c) = (inode, index);
            var page = await MetaConnection.CallAsync(url,
                () => meta.ListSlicesAsync(new ListSlicesRequest { AfterInode = i, AfterChunk = c, MinSlices = minSlices }, ct)).ConfigureAwait(false);
            if (page.Errno != 0)
            {
                throw new CliException($"metaserver {url.Hosts} could not list slices: errno {page.Errno}");
            }
            foreach (var chunk in page.Chunks)
            {
                yield return chunk;
            }
            if (page.Eof)
            {
                yield break;
            }
            if (page.Chunks.Count == 0)
            {
                throw new CliException($"metaserver {url.Hosts} gave an empty slice page before the end");
            }
            (inode, index) = (page.Chunks[^1].Inode, page.Chunks[^1].ChunkIndex);
        }
    }

    private static async Task CompactAsync(MetaUrl url, MetaSession session, IObjectStore store, Volume volume, GcSettings settings,
        GcReport report, ProgressLine line, CancellationToken ct)
    {
        var min = (uint)settings.CompactSlicesMax + 1;
        var chunks = new List<(ulong Inode, uint Chunk)>();
        await foreach (var chunk in AllChunksAsync(url, session.Meta, min, ct).ConfigureAwait(false))
        {
            chunks.Add((chunk.Inode, chunk.ChunkIndex));
        }
        line.SetMax(chunks.Count);
        var compactor = new ChunkCompactor(session, store, volume.Name, (int)volume.BlockSize, settings.CompactDelay, NullLogger.Instance);
        await using (compactor.ConfigureAwait(false))
        {
            foreach (var (inode, chunk) in chunks)
            {
                var r = await MetaConnection.CallAsync(url, () => compactor.CompactAsync(inode, chunk, (int)min, ct)).ConfigureAwait(false);
                if (r.Outcome == CompactOutcome.Compacted)
                {
                    report.ChunksCompacted++;
                    report.SlicesReplaced += r.Replaced;
                }
                line.Add();
            }
        }
        line.Done();
    }

    private static async Task WriteTableAsync(CliContext ctx, Volume volume, IObjectStore store, GcSettings settings, GcReport r)
    {
        var inv = CultureInfo.InvariantCulture;
        IReadOnlyList<string> Row(string name, GcTally t) => [name, t.Objects.ToString(inv), Sizes.Format(t.Bytes)];
        var age = settings.MinAge.TotalHours >= 1
            ? string.Create(inv, $"{settings.MinAge.TotalHours:0.#} h")
            : string.Create(inv, $"{settings.MinAge.TotalSeconds:0} s");
        Tables.Write(ctx, $"objects of volume {volume.Name}", ["objects", "count", "bytes"],
        [
            Row("valid (used by a slice)", r.Valid),
            Row("leaked (no slice uses them)", r.Leaked),
            Row("compacted (delayed delete)", r.Compacted),
            Row("pending delete", r.Pending),
            Row($"younger than {age} (skipped)", r.Young),
            Row("not block keys (not ours)", r.Foreign),
        ], new HashSet<int> { 1, 2 });
        await ctx.Out.WriteLineAsync($"listed {BlockLayout.ChunksPrefix(volume.Name)} in {store.Description}").ConfigureAwait(false);
        await ctx.Out.WriteLineAsync(string.Create(inv,
            $"pending deletes: {r.PendingSlices} slices, {r.EligibleSlices} deletable now, {r.DelayedSlices} compacted and still delayed")).ConfigureAwait(false);
        if (settings.Compact)
        {
            await ctx.Out.WriteLineAsync(string.Create(inv, $"compacted {r.ChunksCompacted} chunks ({r.SlicesReplaced} slices replaced)")).ConfigureAwait(false);
        }
        if (settings.Delete)
        {
            await ctx.Out.WriteLineAsync(string.Create(inv,
                $"deleted {r.LeakedDeleted.Objects} leaked objects ({Sizes.Format(r.LeakedDeleted.Bytes)}); finished {r.PendingFinished.Slices} pending deletes ({r.PendingFinished.Objects} objects)")).ConfigureAwait(false);
        }
        else if (r.Leaked.Objects > 0 || r.EligibleSlices > 0)
        {
            await ctx.Out.WriteLineAsync("run again with --delete to remove leaked objects and finish pending deletes").ConfigureAwait(false);
        }
        if (r.LeakedCapped)
        {
            await ctx.Out.WriteLineAsync(string.Create(inv, $"more than {LeakedKeysMax} leaked objects: run gc --delete again for the rest")).ConfigureAwait(false);
        }
    }

    public static string Json(GcReport r)
    {
        static JsonObject T(GcTally t) => new() { ["objects"] = t.Objects, ["bytes"] = t.Bytes };
        var root = new JsonObject
        {
            ["valid"] = T(r.Valid),
            ["leaked"] = T(r.Leaked),
            ["compacted"] = T(r.Compacted),
            ["pending"] = T(r.Pending),
            ["young"] = T(r.Young),
            ["foreign"] = T(r.Foreign),
            ["pendingSlices"] = r.PendingSlices,
            ["eligibleSlices"] = r.EligibleSlices,
            ["delayedSlices"] = r.DelayedSlices,
            ["chunksCompacted"] = r.ChunksCompacted,
            ["slicesReplaced"] = r.SlicesReplaced,
            ["leakedDeleted"] = T(r.LeakedDeleted),
            ["pendingFinished"] = new JsonObject
            {
                ["slices"] = r.PendingFinished.Slices,
                ["objects"] = r.PendingFinished.Objects,
                ["bytes"] = r.PendingFinished.Bytes,
            },
            ["leakedCapped"] = r.LeakedCapped,
        };
        return root.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }
}
