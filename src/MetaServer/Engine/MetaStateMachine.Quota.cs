// Directory quotas and volume limits: usage kept per quota directory on every name and size change, limits checked
// before a change (EDQUOT), quota commands and reads, and UpdateVolume.
using System.Runtime.CompilerServices;
using System.Text;
using MirrorFS.Core.Meta;

namespace MirrorFS.MetaServer.Engine;

/// <summary>Limits and usage of one quota directory. Usage counts every name below the directory (see meta.proto).</summary>
internal sealed class QuotaRec
{
    public ulong MaxBytes;
    public ulong MaxInodes;
    public long UsedBytes;
    public long UsedInodes;
}

/// <summary>
/// How a name's usage moves between two directories: quotas from <see cref="From"/> and <see cref="To"/> up to (not
/// including) their common ancestor <see cref="Stop"/> change; the ones above see no difference.
/// </summary>
internal readonly record struct UsageMove(ulong From, ulong To, ulong Stop, long Bytes, long Inodes);

public sealed partial class MetaStateMachine
{
    private const int QuotasMax = 100_000;
    private const int ListQuotasDefault = 1000;
    private const int ListQuotasMax = 10_000;

    /// <summary>A directory renamed across quota boundaries has its subtree counted; above this many names the
    /// rename gives EXDEV (mv then copies and deletes).</summary>
    private const long QuotaRenameWalkNamesMax = 1_000_000;

    /// <summary>Longest path GetPath builds (bytes); a deeper directory gives ENAMETOOLONG.</summary>
    private const int PathBytesMax = 1 << 20;

    private const uint TrashDaysMax = 3650;

    // ---- names of regular files (their directories are needed to charge size changes to quotas) ----

    private static void InsertSorted(List<ulong> list, ulong value)
    {
        var i = list.BinarySearch(value);
        list.Insert(i < 0 ? ~i : i, value);
    }

    /// <summary>Records one more name of a regular file in <paramref name="parent"/>.</summary>
    private void ParentAdd(ulong ino, ref InodeRec r, ulong parent)
    {
        if (!r.IsRegular)
        {
            return;
        }
        if (_s.LinkParents.TryGetValue(ino, out var list))
        {
            InsertSorted(list, parent);
            return;
        }
        if (r.Aux == 0)
        {
            r.Aux = parent;
            return;
        }
        list = new List<ulong>(2) { r.Aux };
        InsertSorted(list, parent);
        _s.LinkParents.Add(ino, list);
        r.Aux = 0;
    }

    /// <summary>Forgets one name of a regular file in <paramref name="parent"/>.</summary>
    private void ParentRemove(ulong ino, ref InodeRec r, ulong parent)
    {
        if (!r.IsRegular)
        {
            return;
        }
        if (_s.LinkParents.TryGetValue(ino, out var list))
        {
            var i = list.BinarySearch(parent);
            if (i >= 0)
            {
                list.RemoveAt(i);
            }
            if (list.Count <= 1)
            {
                r.Aux = list.Count == 1 ? list[0] : 0;
                _s.LinkParents.Remove(ino);
            }
            return;
        }
        if (r.Aux == parent)
        {
            r.Aux = 0;
        }
    }

    /// <summary>Rebuilds the names of regular files from the directories (after a snapshot restore; format v1 did not
    /// keep them). Canonical: the same tree always gives the same Aux values and lists.</summary>
    private static void RebuildParents(MetaState s)
    {
        s.LinkParents.Clear();
        var regular = new List<ulong>();
        foreach (var (ino, r) in s.Inodes)
        {
            if (r.IsRegular)
            {
                regular.Add(ino);
            }
        }
        foreach (var ino in regular)
        {
            System.Runtime.InteropServices.CollectionsMarshal.GetValueRefOrNullRef(s.Inodes, ino).Aux = 0;
        }
        var dirs = s.Dirs.Keys.ToArray();
        Array.Sort(dirs);
        foreach (var d in dirs)
        {
            var t = s.Dirs[d];
            for (var slot = t.NextLive(0); slot >= 0; slot = t.NextLive(slot + 1))
            {
                var child = t.InodeAt(slot);
                ref var c = ref System.Runtime.InteropServices.CollectionsMarshal.GetValueRefOrNullRef(s.Inodes, child);
                if (Unsafe.IsNullRef(ref c) || !c.IsRegular)
                {
                    continue;
                }
                if (s.LinkParents.TryGetValue(child, out var list))
                {
                    InsertSorted(list, d);
                }
                else if (c.Aux == 0)
                {
                    c.Aux = d;
                }
                else
                {
                    list = new List<ulong>(2) { c.Aux };
                    InsertSorted(list, d);
                    s.LinkParents.Add(child, list);
                    c.Aux = 0;
                }
            }
        }
    }

    /// <summary>Bytes a name of this inode charges to quotas: a regular file's size rounded up to 4 KiB.</summary>
    private static long BytesOf(in InodeRec r) => r.IsRegular ? (long)Align4K(r.Size) : 0;

    // ---- quota usage along the chain of directories ----

    private ulong ParentOfDir(ulong dir) => _s.Inodes[dir].Aux;

    /// <summary>Adds usage to every quota from <paramref name="dir"/> up to (not including) <paramref name="stop"/>;
    /// stop 0 means through the root.</summary>
    private void QuotaAdd(ulong dir, ulong stop, long bytes, long inodes)
    {
        if (_s.Quotas.Count == 0 || (bytes == 0 && inodes == 0))
        {
            return;
        }
        for (var d = dir; d != stop; d = ParentOfDir(d))
        {
            if (_s.Quotas.TryGetValue(d, out var q))
            {
                q.UsedBytes += bytes;
                q.UsedInodes += inodes;
            }
            if (d == MetaLimits.RootInode)
            {
                break;
            }
        }
    }

    private static bool Exceeds(QuotaRec q, long bytes, long inodes) =>
        (bytes > 0 && q.MaxBytes > 0 && q.UsedBytes + bytes > (long)q.MaxBytes)
        || (inodes > 0 && q.MaxInodes > 0 && q.UsedInodes + inodes > (long)q.MaxInodes);

    /// <summary>Whether adding usage below <paramref name="dir"/> passes a limit of a quota up to <paramref name="stop"/>.</summary>
    private bool QuotaFull(ulong dir, ulong stop, long bytes, long inodes)
    {
        if (_s.Quotas.Count == 0 || (bytes <= 0 && inodes <= 0))
        {
            return false;
        }
        for (var d = dir; d != stop; d = ParentOfDir(d))
        {
            if (_s.Quotas.TryGetValue(d, out var q) && Exceeds(q, bytes, inodes))
            {
                return true;
            }
            if (d == MetaLimits.RootInode)
            {
                break;
            }
        }
        return false;
    }

    private bool AnyQuota(ulong dir, ulong stop)
    {
        for (var d = dir; d != stop; d = ParentOfDir(d))
        {
            if (_s.Quotas.ContainsKey(d))
            {
                return true;
            }
            if (d == MetaLimits.RootInode)
            {
                break;
            }
        }
        return false;
    }

    private ulong CommonAncestor(ulong a, ulong b)
    {
        if (a == b)
        {
            return a;
        }
        var seen = new HashSet<ulong>();
        for (var d = a; ; d = ParentOfDir(d))
        {
            seen.Add(d);
            if (d == MetaLimits.RootInode)
            {
                break;
            }
        }
        for (var d = b; ; d = ParentOfDir(d))
        {
            if (seen.Contains(d) || d == MetaLimits.RootInode)
            {
                return d;
            }
        }
    }

    /// <summary>Counts the names below <paramref name="dir"/>. With <paramref name="useQuotas"/> a directory that has a
    /// quota contributes its stored usage instead of being walked. False when more than <paramref name="namesMax"/>
    /// names would be visited.</summary>
    private bool CountBelow(ulong dir, bool useQuotas, long namesMax, out long bytes, out long inodes)
    {
        bytes = 0;
        inodes = 0;
        long visited = 0;
        var stack = new Stack<ulong>();
        stack.Push(dir);
        while (stack.Count > 0)
        {
            var t = _s.Dirs[stack.Pop()];
            for (var slot = t.NextLive(0); slot >= 0; slot = t.NextLive(slot + 1))
            {
                if (++visited > namesMax)
                {
                    return false;
                }
                var child = t.InodeAt(slot);
                var c = _s.Inodes[child];
                inodes++;
                if (c.IsRegular)
                {
                    bytes += (long)Align4K(c.Size);
                }
                else if (c.IsDir)
                {
                    if (useQuotas && _s.Quotas.TryGetValue(child, out var q))
                    {
                        bytes += q.UsedBytes;
                        inodes += q.UsedInodes;
                    }
                    else
                    {
                        stack.Push(child);
                    }
                }
            }
        }
        return true;
    }

    // ---- hooks called by the namespace and data operations ----

    /// <summary>Whether a new name (of <paramref name="bytes"/> bytes) may be added in <paramref name="parent"/>:
    /// EPERM inside the trash or for the trash's own name, EDQUOT past a quota.</summary>
    private int AdmitName(ulong parent, ReadOnlySpan<byte> name, long bytes)
    {
        if (InTrash(parent) || IsTrashName(parent, name))
        {
            return Errno.EPERM;
        }
        return QuotaFull(parent, 0, bytes, 1) ? Errno.EDQUOT : Errno.OK;
    }

    /// <summary>A name of <paramref name="ino"/> was added in <paramref name="parent"/>.</summary>
    private void NameAdded(ulong parent, ulong ino)
    {
        ref var r = ref Rec(ino);
        ParentAdd(ino, ref r, parent);
        QuotaAdd(parent, 0, BytesOf(r), 1);
    }

    /// <summary>A name of <paramref name="ino"/> in <paramref name="parent"/> was removed (before the inode may go).</summary>
    private void NameRemoved(ulong parent, ulong ino)
    {
        ref var r = ref Rec(ino);
        QuotaAdd(parent, 0, -BytesOf(r), -1);
        ParentRemove(ino, ref r, parent);
    }

    /// <summary>Whether growing regular file <paramref name="ino"/> from <paramref name="oldSize"/> to
    /// <paramref name="newSize"/> passes a quota of a directory above one of its names.</summary>
    private bool OverQuota(ulong ino, ulong oldSize, ulong newSize)
    {
        var delta = (long)Align4K(newSize) - (long)Align4K(oldSize);
        if (_s.Quotas.Count == 0 || delta <= 0)
        {
            return false;
        }
        var r = _s.Inodes[ino];
        if (!_s.LinkParents.TryGetValue(ino, out var parents))
        {
            return r.Aux != 0 && QuotaFull(r.Aux, 0, delta, 0);
        }
        // Several names: a quota above two of them is charged twice.
        var charge = new Dictionary<ulong, long>();
        foreach (var p in parents)
        {
            for (var d = p; ; d = ParentOfDir(d))
            {
                if (_s.Quotas.ContainsKey(d))
                {
                    charge[d] = charge.GetValueOrDefault(d) + delta;
                }
                if (d == MetaLimits.RootInode)
                {
                    break;
                }
            }
        }
        foreach (var (d, bytes) in charge)
        {
            if (Exceeds(_s.Quotas[d], bytes, 0))
            {
                return true;
            }
        }
        return false;
    }

    /// <summary>Charges a regular file's size change to the quotas above its names (from Resize).</summary>
    private void QuotaResize(ulong ino, in InodeRec r, ulong newSize)
    {
        var delta = (long)Align4K(newSize) - (long)Align4K(r.Size);
        if (_s.Quotas.Count == 0 || delta == 0)
        {
            return;
        }
        if (_s.LinkParents.TryGetValue(ino, out var parents))
        {
            foreach (var p in parents)
            {
                QuotaAdd(p, 0, delta, 0);
            }
        }
        else if (r.Aux != 0)
        {
            QuotaAdd(r.Aux, 0, delta, 0);
        }
    }

    /// <summary>An inode is gone: its quota (a directory) and name list go with it.</summary>
    private void ForgetQuotaState(ulong ino)
    {
        _s.Quotas.Remove(ino);
        _s.LinkParents.Remove(ino);
    }

    /// <summary>
    /// Rename's trash and quota step, after every other check and before anything moves: EPERM for moves into the
    /// trash or of the trash itself, EDQUOT when the moved usage would pass a quota the name was not under, EXDEV for
    /// a huge directory crossing quota boundaries. On success moves the usage and the names of regular files, and
    /// takes an overwritten target's name off (the caller then deletes or trashes it).
    /// </summary>
    private int RenameQuota(RenameRequest r, ulong srcIno, ulong dstIno, bool exchange)
    {
        if (InTrash(r.NewParent) || IsTrashInode(srcIno) || IsTrashName(r.NewParent, r.NewName.Span)
            || (exchange && (InTrash(r.Parent) || IsTrashInode(dstIno))))
        {
            return Errno.EPERM;
        }
        if (srcIno == dstIno)
        {
            return Errno.OK;
        }
        UsageMove src = default, dst = default;
        var e = PlanMove(srcIno, r.Parent, r.NewParent, out src);
        if (e != Errno.OK)
        {
            return e;
        }
        long dstBytes = 0, dstInodes = 0;
        if (dstIno != 0)
        {
            if (exchange)
            {
                if ((e = PlanMove(dstIno, r.NewParent, r.Parent, out dst)) != Errno.OK)
                {
                    return e;
                }
                dstBytes = dst.Bytes;
                dstInodes = dst.Inodes;
            }
            else if (_s.Quotas.Count > 0)
            {
                // The overwritten target leaves the new parent (an empty directory, or one name of a file).
                var d = _s.Inodes[dstIno];
                dstBytes = BytesOf(d);
                dstInodes = 1;
            }
        }
        // The target's usage leaves the new parent's side as the source's arrives.
        if (src.Stop != 0 && QuotaFull(r.NewParent, src.Stop, src.Bytes - dstBytes, src.Inodes - dstInodes))
        {
            return Errno.EDQUOT;
        }
        if (exchange && dst.Stop != 0 && QuotaFull(r.Parent, dst.Stop, dst.Bytes - src.Bytes, dst.Inodes - src.Inodes))
        {
            return Errno.EDQUOT;
        }

        if (dstIno != 0 && !exchange)
        {
            NameRemoved(r.NewParent, dstIno);
        }
        ApplyMove(srcIno, r.Parent, r.NewParent, src);
        if (exchange)
        {
            ApplyMove(dstIno, r.NewParent, r.Parent, dst);
        }
        return Errno.OK;
    }

    /// <summary>The usage a name of <paramref name="ino"/> takes from <paramref name="from"/> to <paramref name="to"/>;
    /// Stop = 0 when no quota sees the difference.</summary>
    private int PlanMove(ulong ino, ulong from, ulong to, out UsageMove move)
    {
        move = default;
        if (from == to || _s.Quotas.Count == 0)
        {
            return Errno.OK;
        }
        var stop = CommonAncestor(from, to);
        if (!AnyQuota(from, stop) && !AnyQuota(to, stop))
        {
            return Errno.OK;
        }
        var r = _s.Inodes[ino];
        long bytes = BytesOf(r), inodes = 1;
        if (r.IsDir)
        {
            if (_s.Quotas.TryGetValue(ino, out var q))
            {
                bytes = q.UsedBytes;
                inodes += q.UsedInodes;
            }
            else if (CountBelow(ino, useQuotas: true, QuotaRenameWalkNamesMax, out var b, out var n))
            {
                bytes = b;
                inodes += n;
            }
            else
            {
                return Errno.EXDEV;
            }
        }
        move = new UsageMove(from, to, stop, bytes, inodes);
        return Errno.OK;
    }

    private void ApplyMove(ulong ino, ulong from, ulong to, in UsageMove move)
    {
        if (from == to)
        {
            return;
        }
        ref var r = ref Rec(ino);
        ParentRemove(ino, ref r, from);
        ParentAdd(ino, ref r, to);
        if (move.Stop != 0)
        {
            QuotaAdd(from, move.Stop, -move.Bytes, -move.Inodes);
            QuotaAdd(to, move.Stop, move.Bytes, move.Inodes);
        }
    }

    // ---- quota commands ----

    private static Quota ToQuota(ulong ino, QuotaRec q) => new()
    {
        Inode = ino,
        MaxBytes = q.MaxBytes,
        MaxInodes = q.MaxInodes,
        UsedBytes = q.UsedBytes > 0 ? (ulong)q.UsedBytes : 0,
        UsedInodes = q.UsedInodes > 0 ? (ulong)q.UsedInodes : 0,
    };

    /// <summary>ENOENT / ENOTDIR / EPERM (trash) for a directory a quota command names.</summary>
    private int QuotaDir(ulong ino)
    {
        ref var rec = ref Rec(ino);
        if (Unsafe.IsNullRef(ref rec))
        {
            return Errno.ENOENT;
        }
        if (!rec.IsDir)
        {
            return Errno.ENOTDIR;
        }
        return IsTrashInode(ino) ? Errno.EPERM : Errno.OK;
    }

    private SetQuotaReply SetQuota(SetQuotaRequest r)
    {
        if (!IsRoot(r.Cred))
        {
            return new SetQuotaReply { Errno = Errno.EPERM };
        }
        var e = QuotaDir(r.Inode);
        if (e != Errno.OK)
        {
            return new SetQuotaReply { Errno = e };
        }
        if ((r.HasMaxBytes && r.MaxBytes > long.MaxValue) || (r.HasMaxInodes && r.MaxInodes > long.MaxValue))
        {
            return new SetQuotaReply { Errno = Errno.EINVAL };
        }
        if (!_s.Quotas.TryGetValue(r.Inode, out var q))
        {
            if (_s.Quotas.Count >= QuotasMax)
            {
                return new SetQuotaReply { Errno = Errno.ENOSPC };
            }
            CountBelow(r.Inode, useQuotas: true, long.MaxValue, out var bytes, out var inodes);
            q = new QuotaRec { UsedBytes = bytes, UsedInodes = inodes };
            _s.Quotas.Add(r.Inode, q);
        }
        if (r.HasMaxBytes)
        {
            q.MaxBytes = r.MaxBytes;
        }
        if (r.HasMaxInodes)
        {
            q.MaxInodes = r.MaxInodes;
        }
        return new SetQuotaReply { Quota = ToQuota(r.Inode, q) };
    }

    private DeleteQuotaReply DeleteQuota(DeleteQuotaRequest r)
    {
        if (!IsRoot(r.Cred))
        {
            return new DeleteQuotaReply { Errno = Errno.EPERM };
        }
        return new DeleteQuotaReply { Errno = _s.Quotas.Remove(r.Inode) ? Errno.OK : Errno.ENOENT };
    }

    private CheckQuotaReply CheckQuota(CheckQuotaRequest r)
    {
        if (!IsRoot(r.Cred))
        {
            return new CheckQuotaReply { Errno = Errno.EPERM };
        }
        if (!_s.Quotas.TryGetValue(r.Inode, out var q))
        {
            return new CheckQuotaReply { Errno = Errno.ENOENT };
        }
        CountBelow(r.Inode, useQuotas: false, long.MaxValue, out var bytes, out var inodes);
        var reply = new CheckQuotaReply { Quota = ToQuota(r.Inode, q), CountedBytes = (ulong)bytes, CountedInodes = (ulong)inodes };
        if (r.Repair)
        {
            q.UsedBytes = bytes;
            q.UsedInodes = inodes;
        }
        return reply;
    }

    private UpdateVolumeReply UpdateVolume(UpdateVolumeRequest r)
    {
        if (_s.Volume is null)
        {
            return new UpdateVolumeReply { Errno = Errno.ENOENT };
        }
        if (!IsRoot(r.Cred))
        {
            return new UpdateVolumeReply { Errno = Errno.EPERM };
        }
        if (r.HasTrashDays && r.TrashDays > TrashDaysMax)
        {
            return new UpdateVolumeReply { Errno = Errno.EINVAL };
        }
        var old = _s.Volume.Clone();
        var v = _s.Volume;
        if (r.HasTrashDays)
        {
            v.TrashDays = r.TrashDays;
            v.TrashEnabled = true;
        }
        if (r.HasCapacityBytes)
        {
            v.CapacityBytes = r.CapacityBytes;
        }
        if (r.HasInodesMax)
        {
            v.InodesMax = r.InodesMax;
        }
        if (r.HasUploadLimitBytes)
        {
            v.UploadLimitBytes = r.UploadLimitBytes;
        }
        if (r.HasDownloadLimitBytes)
        {
            v.DownloadLimitBytes = r.DownloadLimitBytes;
        }
        if (r.HasMetaOpsLimit)
        {
            v.MetaOpsLimit = r.MetaOpsLimit;
        }
        return new UpdateVolumeReply { Old = old, Volume = v.Clone() };
    }

    // ---- reads ----

    public GetQuotaReply GetQuota(GetQuotaRequest r)
    {
        _lock.EnterReadLock();
        try
        {
            return _s.Quotas.TryGetValue(r.Inode, out var q)
                ? new GetQuotaReply { Index = _s.AppliedIndex, Quota = ToQuota(r.Inode, q) }
                : new GetQuotaReply { Index = _s.AppliedIndex, Errno = Errno.ENOENT };
        }
        finally
        {
            _lock.ExitReadLock();
        }
    }

    public ListQuotasReply ListQuotas(ListQuotasRequest r)
    {
        var limit = r.Limit == 0 ? ListQuotasDefault : (int)Math.Min(r.Limit, ListQuotasMax);
        _lock.EnterReadLock();
        try
        {
            var reply = new ListQuotasReply { Index = _s.AppliedIndex, Eof = true };
            foreach (var ino in _s.Quotas.Keys.Where(i => i > r.StartAfter).Order())
            {
                if (reply.Quotas.Count == limit)
                {
                    reply.Eof = false;
                    break;
                }
                reply.Quotas.Add(ToQuota(ino, _s.Quotas[ino]));
            }
            return reply;
        }
        finally
        {
            _lock.ExitReadLock();
        }
    }

    public GetPathReply GetPath(GetPathRequest r)
    {
        _lock.EnterReadLock();
        try
        {
            var reply = new GetPathReply { Index = _s.AppliedIndex };
            ref var rec = ref Rec(r.Inode);
            if (Unsafe.IsNullRef(ref rec))
            {
                reply.Errno = Errno.ENOENT;
                return reply;
            }
            if (!rec.IsDir)
            {
                reply.Errno = Errno.ENOTDIR;
                return reply;
            }
            var parts = new List<byte[]>();
            var total = 0;
            for (var d = r.Inode; d != MetaLimits.RootInode; d = ParentOfDir(d))
            {
                var name = NameIn(ParentOfDir(d), d);
                total += name.Length + 1;
                if (total > PathBytesMax)
                {
                    reply.Errno = Errno.ENAMETOOLONG;
                    return reply;
                }
                parts.Add(name);
            }
            var path = new List<byte>(total + 1);
            for (var i = parts.Count - 1; i >= 0; i--)
            {
                path.Add((byte)'/');
                path.AddRange(parts[i]);
            }
            reply.Path = parts.Count == 0 ? Google.Protobuf.ByteString.CopyFromUtf8("/") : Google.Protobuf.ByteString.CopyFrom(path.ToArray());
            return reply;
        }
        finally
        {
            _lock.ExitReadLock();
        }
    }

    /// <summary>The name under which <paramref name="dir"/> holds <paramref name="ino"/> (a scan: for tools only).</summary>
    private byte[] NameIn(ulong dir, ulong ino)
    {
        var t = _s.Dirs[dir];
        for (var slot = t.NextLive(0); slot >= 0; slot = t.NextLive(slot + 1))
        {
            if (t.InodeAt(slot) == ino)
            {
                return t.NameAt(slot);
            }
        }
        return Encoding.UTF8.GetBytes($"?{ino}"); // a directory always has its name in its parent; never reached
    }

    // ---- snapshot section (format v2) ----

    private static void WriteQuotas(MetaState s, SnapshotWriter w)
    {
        var quotas = SortedKeys(s.Quotas);
        w.WriteVarint((ulong)quotas.Length);
        ulong prev = 0;
        foreach (var ino in quotas)
        {
            var q = s.Quotas[ino];
            w.WriteVarint(ino - prev);
            prev = ino;
            w.WriteVarint(q.MaxBytes);
            w.WriteVarint(q.MaxInodes);
            w.WriteSigned(q.UsedBytes);
            w.WriteSigned(q.UsedInodes);
        }
    }

    private static void ReadQuotas(SnapshotReader r, MetaState s)
    {
        var n = r.ReadCount(QuotasMax);
        ulong ino = 0;
        for (var i = 0; i < n; i++)
        {
            ino = NextKey(r, ino);
            s.Quotas.Add(ino, new QuotaRec
            {
                MaxBytes = r.ReadVarint(),
                MaxInodes = r.ReadVarint(),
                UsedBytes = r.ReadSigned(),
                UsedInodes = r.ReadSigned(),
            });
        }
    }

    /// <summary>Used bytes and inodes of every quota, for tests.</summary>
    internal Dictionary<ulong, (long Bytes, long Inodes)> QuotaUsage()
    {
        _lock.EnterReadLock();
        try
        {
            return _s.Quotas.ToDictionary(kv => kv.Key, kv => (kv.Value.UsedBytes, kv.Value.UsedInodes));
        }
        finally
        {
            _lock.ExitReadLock();
        }
    }
}
