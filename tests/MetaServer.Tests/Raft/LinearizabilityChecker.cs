// A Wing–Gong style linearizability checker for a register per key (with Lowe's memoization of visited states).
namespace MirrorFS.MetaServer.Tests.Raft;

/// <summary>One client operation on one key. <see cref="Return"/> is <see cref="long.MaxValue"/> when the outcome is
/// unknown (a put that timed out may or may not have happened). <see cref="Value"/> is the value written, or read
/// (null = key absent).</summary>
public sealed record KvOp(int Client, long Call, long Return, bool IsPut, string Key, string? Value);

public static class LinearizabilityChecker
{
    /// <summary>Ops per key the search supports (a bitmask of linearized ops).</summary>
    public const int OpsPerKeyMax = 64;

    private const long StatesVisitedMax = 2_000_000;

    /// <summary>Null when the history is linearizable; otherwise the key whose history is not.</summary>
    public static string? FindViolation(IEnumerable<KvOp> history)
    {
        foreach (var group in history.GroupBy(o => o.Key).OrderBy(g => g.Key, StringComparer.Ordinal))
        {
            if (!CheckKey([.. group.OrderBy(o => o.Call)]))
            {
                return group.Key;
            }
        }
        return null;
    }

    /// <summary>True when the ops on one register can be put in a sequential order that respects real time.</summary>
    public static bool CheckKey(IReadOnlyList<KvOp> ops)
    {
        if (ops.Count > OpsPerKeyMax)
        {
            throw new ArgumentException($"history of {ops.Count} ops on one key exceeds the checker's {OpsPerKeyMax}; keep simulated histories smaller");
        }
        ulong required = 0;
        for (var i = 0; i < ops.Count; i++)
        {
            if (ops[i].Return != long.MaxValue)
            {
                required |= 1UL << i;
            }
        }
        var seen = new HashSet<(ulong, string?)>();
        long visited = 0;
        return Search(0, null);

        bool Search(ulong done, string? value)
        {
            if ((done & required) == required)
            {
                return true; // ops of unknown outcome left over can be taken to happen last, or never
            }
            if (!seen.Add((done, value)))
            {
                return false;
            }
            if (++visited > StatesVisitedMax)
            {
                throw new InvalidOperationException($"linearizability search exceeded {StatesVisitedMax} states; keep simulated histories smaller");
            }
            var minReturn = long.MaxValue;
            for (var i = 0; i < ops.Count; i++)
            {
                if ((done & (1UL << i)) == 0)
                {
                    minReturn = Math.Min(minReturn, ops[i].Return);
                }
            }
            for (var i = 0; i < ops.Count; i++)
            {
                var op = ops[i];
                // An op may go next only if it was invoked before every remaining op returned.
                if ((done & (1UL << i)) != 0 || op.Call > minReturn)
                {
                    continue;
                }
                if (op.IsPut)
                {
                    if (Search(done | (1UL << i), op.Value))
                    {
                        return true;
                    }
                }
                else if (op.Value == value && Search(done | (1UL << i), value))
                {
                    return true;
                }
            }
            return false;
        }
    }
}
