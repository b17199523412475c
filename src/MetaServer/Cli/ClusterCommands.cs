// Cluster administration commands: cluster status, member add/remove, transfer-leader, snapshot.
using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Json;
using MirrorFS.MetaServer.Hosting;
using MirrorFS.MetaServer.Wire;

namespace MirrorFS.MetaServer.Cli;

public static class ClusterCommands
{
    /// <summary>Where the admin token comes from when no --token-file is given.</summary>
    public const string TokenEnvironmentVariable = "MIRRORFS_TOKEN";

    private static Option<string> MetaOption() => new("--meta")
    {
        Description = "Members to ask: HOST:PORT[,HOST:PORT...] (any member; calls that need the leader find it)",
        Required = true,
    };

    private static Option<string?> TokenFileOption() => new("--token-file")
    {
        Description = $"File holding the cluster's bearer token (default: ${TokenEnvironmentVariable}, else none)",
    };

    private static AdminClient Connect(MetaCliContext ctx, ParseResult parse, Option<string> meta, Option<string?> tokenFile)
    {
        var addresses = AdminClient.ParseMeta(parse.GetValue(meta));
        var token = parse.GetValue(tokenFile) is { } file ? Tokens.Load(file) : ctx.Environment(TokenEnvironmentVariable);
        return new AdminClient(addresses, string.IsNullOrWhiteSpace(token) ? null : token.Trim(), ctx.AdminTimeoutMs);
    }

    private static Argument<ulong> IdArgument(string description) => new("ID") { Description = description };

    public static Command Cluster(MetaCliContext ctx)
    {
        var meta = MetaOption();
        var tokenFile = TokenFileOption();
        var json = new Option<bool>("--json") { Description = "Print JSON instead of a table" };
        var status = new Command("status", "Show every member: role, term, commit/applied/last/snapshot index and lag (exit 0 when a leader serves)")
        {
            meta, tokenFile, json,
        };
        status.SetAction(MetaCli.Guard(ctx, "cluster status", async (parse, ct) =>
        {
            using var client = Connect(ctx, parse, meta, tokenFile);
            var view = StatusView.From(await client.StatusAllAsync(ct).ConfigureAwait(false));
            await ctx.Out.WriteAsync(parse.GetValue(json) ? view.ToJson() : view.ToTable()).ConfigureAwait(false);
            if (view.Problem is { } problem)
            {
                await ctx.Err.WriteLineAsync($"mirrorfs-meta cluster status: {problem}").ConfigureAwait(false);
                return MetaCli.Failed;
            }
            return 0;
        }));
        return new Command("cluster", "Inspect a metaserver cluster") { status };
    }

    public static Command Member(MetaCliContext ctx)
    {
        var meta = MetaOption();
        var tokenFile = TokenFileOption();
        var addId = IdArgument("Id of the new member (non-zero, unused)");
        var addAddress = new Argument<string>("ADDR") { Description = "HOST:PORT the new member listens on (start it first with serve --id ID --join)" };
        var add = new Command("add", "Add a voting member (waits until the change is applied on the leader)") { addId, addAddress, meta, tokenFile };
        add.SetAction(MetaCli.Guard(ctx, "member add", async (parse, ct) =>
        {
            var id = parse.GetValue(addId);
            var address = parse.GetValue(addAddress)!;
            if (id == 0)
            {
                throw new CliException("member id 0 is reserved; use a non-zero id");
            }
            if (!ClusterRpc.IsHostPort(address))
            {
                throw new CliException($"member address '{address}' is not HOST:PORT");
            }
            using var client = Connect(ctx, parse, meta, tokenFile);
            var reply = await client.LeaderCallAsync("AddMember", new AddMemberRequest { Id = id, Address = address }, MemberChangeReply.Parser, ct).ConfigureAwait(false);
            await ctx.Out.WriteLineAsync($"added member {id} ({address}) at index {reply.Index}; members: {Members(reply)}").ConfigureAwait(false);
            return 0;
        }));
        var removeId = IdArgument("Id of the member to remove");
        var remove = new Command("remove", "Remove a voting member (waits until the change is applied on the leader)") { removeId, meta, tokenFile };
        remove.SetAction(MetaCli.Guard(ctx, "member remove", async (parse, ct) =>
        {
            var id = parse.GetValue(removeId);
            using var client = Connect(ctx, parse, meta, tokenFile);
            var reply = await client.LeaderCallAsync("RemoveMember", new RemoveMemberRequest { Id = id }, MemberChangeReply.Parser, ct).ConfigureAwait(false);
            await ctx.Out.WriteLineAsync($"removed member {id} at index {reply.Index}; members: {Members(reply)}").ConfigureAwait(false);
            return 0;
        }));
        return new Command("member", "Change the cluster's voting members, one at a time") { add, remove };
    }

    public static Command TransferLeader(MetaCliContext ctx)
    {
        var meta = MetaOption();
        var tokenFile = TokenFileOption();
        var id = IdArgument("Id of the member to lead");
        var cmd = new Command("transfer-leader", "Hand leadership to a member (waits until it leads)") { id, meta, tokenFile };
        cmd.SetAction(MetaCli.Guard(ctx, "transfer-leader", async (parse, ct) =>
        {
            var to = parse.GetValue(id);
            using var client = Connect(ctx, parse, meta, tokenFile);
            var reply = await client.LeaderCallAsync("TransferLeader", new TransferLeaderRequest { Id = to }, TransferLeaderReply.Parser, ct).ConfigureAwait(false);
            await ctx.Out.WriteLineAsync($"member {reply.Leader} leads (term {reply.Term})").ConfigureAwait(false);
            return 0;
        }));
        return cmd;
    }

    public static Command Snapshot(MetaCliContext ctx)
    {
        var meta = MetaOption();
        var tokenFile = TokenFileOption();
        var cmd = new Command("snapshot", "Snapshot every listed member now and compact its log") { meta, tokenFile };
        cmd.SetAction(MetaCli.Guard(ctx, "snapshot", async (parse, ct) =>
        {
            using var client = Connect(ctx, parse, meta, tokenFile);
            var addresses = AdminClient.ParseMeta(parse.GetValue(meta));
            var failed = 0;
            foreach (var address in addresses)
            {
                try
                {
                    var reply = await client.CallAsync(address, "Snapshot", new SnapshotRequest(), SnapshotReply.Parser, ctx.AdminTimeoutMs, ct).ConfigureAwait(false);
                    await ctx.Out.WriteLineAsync(reply.Id == 0
                        ? $"{address}: snapshot at index {reply.Index}"
                        : $"member {reply.Id} ({address}): snapshot at index {reply.Index}").ConfigureAwait(false);
                }
                catch (CliException e)
                {
                    failed++;
                    await ctx.Err.WriteLineAsync($"mirrorfs-meta snapshot: {e.Message}").ConfigureAwait(false);
                }
            }
            return failed == 0 ? 0 : MetaCli.Failed;
        }));
        return cmd;
    }

    private static string Members(MemberChangeReply reply) =>
        string.Join(", ", reply.Members.Select(m => m.Address.Length > 0 ? $"{m.Id}={m.Address}" : m.Id.ToString(CultureInfo.InvariantCulture)));
}

/// <summary>The cluster as the members that answered describe it: one row per member, the leader, and the lag of each.</summary>
public sealed class StatusView
{
    public sealed record Row(ulong? Id, string Address, NodeStatus? Node, ulong? Lag, string? Error);

    public IReadOnlyList<Row> Rows { get; private init; } = [];
    public ulong Leader { get; private init; }
    public string LeaderAddress { get; private init; } = "";
    public ulong Term { get; private init; }

    /// <summary>Why the cluster is not serving (no member reachable, no leader, leader unreachable), or null.</summary>
    public string? Problem { get; private init; }

    public static StatusView From(IReadOnlyList<NodeAnswer> answers)
    {
        var replies = answers.Where(a => a.Reply is not null).Select(a => a.Reply!).ToList();
        // The newest term's view of who leads wins.
        var leaderView = replies.Where(r => r.Node.Leader != 0).OrderByDescending(r => r.Node.Term).FirstOrDefault();
        var leader = leaderView?.Node.Leader ?? 0;
        var leaderNode = replies.FirstOrDefault(r => r.Node.Id == leader && r.Node.Role == "leader")?.Node;
        var reference = leaderNode?.Commit ?? (replies.Count > 0 ? replies.Max(r => r.Node.Commit) : 0);
        var idOf = replies.SelectMany(r => r.Members).Where(m => m.Address.Length > 0)
            .GroupBy(m => m.Address).ToDictionary(g => g.Key, g => g.First().Id, StringComparer.Ordinal);
        var rows = new List<Row>();
        var seen = new HashSet<ulong>();
        foreach (var a in answers)
        {
            if (a.Reply is { } r)
            {
                if (r.Node.Id != 0 && !seen.Add(r.Node.Id))
                {
                    continue; // the same member listed under two addresses
                }
                rows.Add(new Row(r.Node.Id, r.Node.Address.Length > 0 ? r.Node.Address : a.Address, r.Node,
                    reference > r.Node.Applied ? reference - r.Node.Applied : 0, null));
            }
            else
            {
                ulong? id = idOf.TryGetValue(a.Address, out var known) ? known : null;
                if (id is { } i && !seen.Add(i))
                {
                    continue;
                }
                rows.Add(new Row(id, a.Address, null, null, a.Error));
            }
        }
        rows.Sort((x, y) => (x.Id ?? ulong.MaxValue).CompareTo(y.Id ?? ulong.MaxValue));
        var single = replies.Count > 0 && replies.All(r => r.Node.Id == 0);
        string? problem = null;
        if (replies.Count == 0)
        {
            problem = "no member answered: " + string.Join("; ", answers.Select(a => a.Error));
        }
        else if (!single && leader == 0)
        {
            problem = "no leader (an election may be running, or too few members are up for a quorum)";
        }
        else if (!single && leaderNode is null)
        {
            problem = $"member {leader} is named leader but did not answer as leader";
        }
        return new StatusView
        {
            Rows = rows,
            Leader = leader,
            LeaderAddress = leaderView?.LeaderAddress ?? (single ? replies[0].Node.Address : ""),
            Term = leaderNode?.Term ?? leaderView?.Node.Term ?? 0,
            Problem = problem,
        };
    }

    public string ToTable()
    {
        var header = new[] { "ID", "ADDRESS", "ROLE", "TERM", "COMMIT", "APPLIED", "LAST", "SNAPSHOT", "LAG" };
        var lines = new List<string[]> { header };
        foreach (var r in Rows)
        {
            var id = r.Id?.ToString(CultureInfo.InvariantCulture) ?? "?";
            lines.Add(r.Node is { } n
                ? [id, r.Address, n.Role, N(n.Term), N(n.Commit), N(n.Applied), N(n.LastIndex), N(n.SnapshotIndex), N(r.Lag ?? 0)]
                : [id, r.Address, "unreachable", "-", "-", "-", "-", "-", "-"]);
        }
        var widths = Enumerable.Range(0, header.Length).Select(c => lines.Max(l => l[c].Length)).ToArray();
        var sb = new StringBuilder();
        foreach (var l in lines)
        {
            sb.AppendJoin("  ", l.Select((cell, c) => c == l.Length - 1 ? cell : cell.PadRight(widths[c]))).Append('\n');
        }
        foreach (var r in Rows.Where(r => r.Error is not null))
        {
            sb.Append(CultureInfo.InvariantCulture, $"{r.Address}: {r.Error}\n");
        }
        sb.Append(Leader != 0
            ? string.Create(CultureInfo.InvariantCulture, $"leader: {Leader} ({LeaderAddress}), term {Term}\n")
            : Problem is null ? "leader: this single-node metaserver\n" : "leader: none\n");
        return sb.ToString();
    }

    public string ToJson()
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartObject();
            w.WriteNumber("leader", Leader);
            w.WriteString("leaderAddress", LeaderAddress);
            w.WriteNumber("term", Term);
            w.WriteBoolean("healthy", Problem is null);
            if (Problem is not null)
            {
                w.WriteString("problem", Problem);
            }
            w.WriteStartArray("nodes");
            foreach (var r in Rows)
            {
                w.WriteStartObject();
                if (r.Id is { } id)
                {
                    w.WriteNumber("id", id);
                }
                else
                {
                    w.WriteNull("id");
                }
                w.WriteString("address", r.Address);
                w.WriteBoolean("reachable", r.Node is not null);
                if (r.Node is { } n)
                {
                    w.WriteString("role", n.Role);
                    w.WriteNumber("term", n.Term);
                    w.WriteNumber("commit", n.Commit);
                    w.WriteNumber("applied", n.Applied);
                    w.WriteNumber("lastIndex", n.LastIndex);
                    w.WriteNumber("snapshotIndex", n.SnapshotIndex);
                    w.WriteNumber("leader", n.Leader);
                    w.WriteNumber("lag", r.Lag ?? 0);
                }
                else
                {
                    w.WriteString("error", r.Error);
                }
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteEndObject();
        }
        return Encoding.UTF8.GetString(ms.ToArray()) + "\n";
    }

    private static string N(ulong v) => v.ToString(CultureInfo.InvariantCulture);
}
