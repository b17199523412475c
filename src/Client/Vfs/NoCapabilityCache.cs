// Files known, for one attribute-cache period, to have no security.capability xattr. The kernel asks a FUSE file
// system for that xattr before every write (it never caches the answer), so without this each write() would cost a
// metadata call. The staleness is the attribute cache's: another client setting a capability is seen within it.
using System.Collections.Concurrent;

namespace MirrorFS.Client.Vfs;

internal sealed class NoCapabilityCache(double ttlSec)
{
    /// <summary>Past this many files the cache starts over (it is a shortcut, never needed for correctness).</summary>
    private const int EntriesMax = 65_536;

    private readonly ConcurrentDictionary<ulong, long> _untilMs = new();
    private readonly long _ttlMs = (long)(ttlSec * 1000);

    private static ReadOnlySpan<byte> CapabilityName => "security.capability"u8;

    public static bool IsCapability(byte[] name) => name.AsSpan().SequenceEqual(CapabilityName);

    /// <summary>Whether <paramref name="inode"/> was seen without a capability within the last period.</summary>
    public bool KnownAbsent(ulong inode) =>
        _ttlMs > 0 && _untilMs.TryGetValue(inode, out var until) && Environment.TickCount64 < until;

    /// <summary>A new file, or the metaserver just answered ENODATA.</summary>
    public void NoteAbsent(ulong inode)
    {
        if (_ttlMs <= 0)
        {
            return;
        }
        if (_untilMs.Count >= EntriesMax)
        {
            _untilMs.Clear();
        }
        _untilMs[inode] = Environment.TickCount64 + _ttlMs;
    }

    /// <summary>This client changes the file's xattrs: ask the metaserver again.</summary>
    public void Forget(ulong inode) => _untilMs.TryRemove(inode, out _);
}
