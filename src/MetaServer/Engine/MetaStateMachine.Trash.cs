// The trash: a file losing its last name (unlink, or overwritten by rename) moves to /.trash/YYYY-MM-DD-HH/ instead of
// being deleted; PurgeTrash deletes hour directories once they are old enough.
using System.Globalization;
using System.Text;
using MirrorFS.Core.Meta;

namespace MirrorFS.MetaServer.Engine;

/// <summary>
/// /.trash has a fixed inode (<see cref="TrashInode"/>) and is made, like each hour directory, on first use at apply
/// time from the command's leader time (UTC), so every replica builds the same tree. Entries are named
/// <c>{parent}-{inode}-{name}</c> (cut to 255 bytes). Only non-directories go to the trash: rmdir deletes at once, so
/// <c>rm -r</c> keeps the files of a tree but not its directories. Nothing can be created, linked or renamed into the
/// trash; names may be moved out (that is how restore works) and deleted (for real). /.trash is 0555 and hour
/// directories 01777 (root-owned): under the kernel's permission checks anyone may delete or move out what they own.
/// </summary>
public sealed partial class MetaStateMachine
{
    /// <summary>Inode of /.trash: far above any inode the counter hands out.</summary>
    public const ulong TrashInode = 1UL << 62;

    public const string TrashDirName = ".trash";

    /// <summary>Name format of an hour directory (UTC).</summary>
    public const string TrashHourFormat = "yyyy-MM-dd-HH";

    private const uint TrashDirPerm = 0x16D;                         // 0555
    private const uint TrashHourPerm = PosixMode.Sticky | 0x1FF;     // 01777
    private const uint PurgeEntriesDefault = 10_000;
    private const uint PurgeEntriesMax = 1_000_000;
    private const long HourNs = 3_600_000_000_000;

    private static ReadOnlySpan<byte> TrashNameBytes => ".trash"u8;

    /// <summary>Deleted files go to the trash (the volume turned it on and keeps files at least a day).</summary>
    private bool TrashActive => _s.Volume is { TrashEnabled: true, TrashDays: > 0 };

    /// <summary>Whether <paramref name="ino"/> is /.trash or one of its hour directories.</summary>
    private bool IsTrashInode(ulong ino) =>
        ino == TrashInode || (ino != 0 && _s.Inodes.TryGetValue(ino, out var r) && r.IsDir && r.Aux == TrashInode);

    /// <summary>Whether a name in directory <paramref name="dir"/> lies inside the trash.</summary>
    private bool InTrash(ulong dir) => IsTrashInode(dir);

    /// <summary>/.trash is a reserved name at the root once the volume has turned the trash on.</summary>
    private bool IsTrashName(ulong parent, ReadOnlySpan<byte> name) =>
        parent == MetaLimits.RootInode && _s.Volume is { TrashEnabled: true } && name.SequenceEqual(TrashNameBytes);

    /// <summary>EPERM for removing /.trash itself.</summary>
    private int TrashGuardRmdir(ulong ino) => ino == TrashInode ? Errno.EPERM : Errno.OK;

    /// <summary>
    /// Moves the last name of a non-directory, already taken out of <paramref name="parent"/> (and its usage with it),
    /// into the current hour directory. False when the trash is off, the name was in the trash, the inode keeps other
    /// names, or /.trash cannot be made: the caller then deletes as usual.
    /// </summary>
    private bool TrashPut(ulong parent, ulong ino, ReadOnlySpan<byte> name)
    {
        if (!TrashActive || InTrash(parent))
        {
            return false;
        }
        var r = _s.Inodes[ino];
        if (r.IsDir || r.Nlink != 1)
        {
            return false;
        }
        var hour = HourDir();
        if (hour == 0)
        {
            return false;
        }
        var entry = EntryName(parent, ino, name);
        var t = _s.Dirs[hour];
        if (t.Find(entry) >= 0)
        {
            return false; // cannot happen: an inode enters the trash once, with its last name, and the inode is in the name
        }
        t.Add(entry, ino);
        TouchDir(hour, 0);
        NameAdded(hour, ino);
        ref var rec = ref Rec(ino);
        rec.Ctime = _now;
        return true;
    }

    /// <summary>"{parent}-{inode}-{name}", cut to the longest name allowed.</summary>
    internal static byte[] EntryName(ulong parent, ulong ino, ReadOnlySpan<byte> name)
    {
        var prefix = Encoding.ASCII.GetBytes(string.Create(CultureInfo.InvariantCulture, $"{parent}-{ino}-"));
        var length = Math.Min(prefix.Length + name.Length, MetaLimits.NameBytesMax);
        var entry = new byte[length];
        prefix.CopyTo(entry, 0);
        name[..(length - prefix.Length)].CopyTo(entry.AsSpan(prefix.Length));
        return entry;
    }

    internal static string HourName(long ns) =>
        DateTime.UnixEpoch.AddTicks(ns / 100).ToString(TrashHourFormat, CultureInfo.InvariantCulture);

    /// <summary>Start of the hour an hour directory's name stands for (ns), or null for another name.</summary>
    internal static long? HourStartNs(ReadOnlySpan<byte> name)
    {
        if (name.Length != TrashHourFormat.Length
            || !DateTime.TryParseExact(Encoding.ASCII.GetString(name), TrashHourFormat, CultureInfo.InvariantCulture,
                DateTimeStyles.AdjustToUniversal | DateTimeStyles.AssumeUniversal, out var t))
        {
            return null;
        }
        return (t.Ticks - DateTime.UnixEpoch.Ticks) * 100;
    }

    /// <summary>The hour directory of the command's time, made (with /.trash) when missing; 0 when a user's entry
    /// already holds the name /.trash.</summary>
    private ulong HourDir()
    {
        if (!_s.Inodes.ContainsKey(TrashInode))
        {
            var root = _s.Dirs[MetaLimits.RootInode];
            if (root.Find(TrashNameBytes) >= 0)
            {
                return 0;
            }
            MakeTrashDir(TrashInode, MetaLimits.RootInode, TrashDirPerm, TrashNameBytes.ToArray());
        }
        var trash = _s.Dirs[TrashInode];
        var name = Encoding.ASCII.GetBytes(HourName(_now));
        var slot = trash.Find(name);
        if (slot >= 0)
        {
            return trash.InodeAt(slot);
        }
        var ino = Claim(ref _s.NextInode, 0, 1);
        MakeTrashDir(ino, TrashInode, TrashHourPerm, name);
        return ino;
    }

    private void MakeTrashDir(ulong ino, ulong parent, uint perm, byte[] name)
    {
        _s.Inodes.Add(ino, new InodeRec
        {
            Mode = PosixMode.Directory | perm,
            Nlink = 2,
            Size = MetaLimits.DirSizeBytes,
            Atime = _now,
            Mtime = _now,
            Ctime = _now,
            Aux = parent,
        });
        _s.InodeCount++;
        _s.Dirs.Add(ino, new DirTable());
        _s.Dirs[parent].Add(name, ino);
        TouchDir(parent, 1);
        NameAdded(parent, ino);
    }

    /// <summary>Hour directories (name order, which is time order) whose hour ended at or before <paramref name="beforeNs"/>.</summary>
    private List<(byte[] Name, ulong Inode)> ExpiredHours(long beforeNs)
    {
        var hours = new List<(byte[] Name, ulong Inode)>();
        if (!_s.Dirs.TryGetValue(TrashInode, out var trash))
        {
            return hours;
        }
        for (var slot = trash.NextLive(0); slot >= 0; slot = trash.NextLive(slot + 1))
        {
            var name = trash.NameAt(slot);
            if (HourStartNs(name) is { } start && start <= beforeNs - HourNs && _s.Dirs.ContainsKey(trash.InodeAt(slot)))
            {
                hours.Add((name, trash.InodeAt(slot)));
            }
        }
        hours.Sort((a, b) => a.Name.AsSpan().SequenceCompareTo(b.Name));
        return hours;
    }

    private PurgeTrashReply PurgeTrash(PurgeTrashRequest r)
    {
        var reply = new PurgeTrashReply();
        var max = r.EntriesMax == 0 ? PurgeEntriesDefault : Math.Min(r.EntriesMax, PurgeEntriesMax);
        foreach (var (name, hour) in ExpiredHours(r.BeforeNs))
        {
            var t = _s.Dirs[hour];
            var removed = false;
            for (var slot = t.NextLive(0); slot >= 0; slot = t.NextLive(slot + 1))
            {
                if (reply.Entries == max)
                {
                    reply.More = true;
                    break;
                }
                var ino = t.InodeAt(slot);
                if (_s.Inodes[ino].IsDir)
                {
                    continue; // nothing makes directories here; left alone rather than lost
                }
                t.RemoveAt(slot);
                NameRemoved(hour, ino);
                DropLink(ino);
                reply.Entries++;
                removed = true;
            }
            if (t.Count == 0)
            {
                var trash = _s.Dirs[TrashInode];
                trash.RemoveAt(trash.Find(name));
                TouchDir(TrashInode, -1);
                NameRemoved(TrashInode, hour);
                DeleteInode(hour);
                reply.Dirs++;
            }
            else if (removed)
            {
                TouchDir(hour, 0);
            }
            if (reply.More)
            {
                break;
            }
        }
        return reply;
    }

    /// <summary>Whether some hour directory ended at or before <paramref name="beforeNs"/> (the purge job asks first,
    /// so an idle trash costs no log entries).</summary>
    internal bool TrashHasExpired(long beforeNs)
    {
        _lock.EnterReadLock();
        try
        {
            return ExpiredHours(beforeNs).Count > 0;
        }
        finally
        {
            _lock.ExitReadLock();
        }
    }

    /// <summary>The volume's trash days when the trash is in effect, else 0 (for the purge job).</summary>
    internal (bool Formatted, uint TrashDays) TrashSetting()
    {
        _lock.EnterReadLock();
        try
        {
            return (_s.Volume is not null, TrashActive ? _s.Volume!.TrashDays : 0);
        }
        finally
        {
            _lock.ExitReadLock();
        }
    }
}
