// Snapshot format v2 (reads v1) of the metadata state: canonical (sorted) order, so equal states give equal bytes.
using Google.Protobuf;
using MirrorFS.Core.Meta;

namespace MirrorFS.MetaServer.Engine;

/// <summary>
/// Layout (all integers LEB128 varints, signed ones zigzag; "bytes" = varint length + data):
/// magic "MFS-META", version, applied index, next inode, next slice id, next session id, last time (signed),
/// used bytes, inode count, volume (bytes; empty = unformatted);
/// inodes sorted (inode delta, mode, uid, gid, nlink, size, atime, mtime, ctime, aux);
/// directories sorted (inode delta, slot table exactly as <see cref="DirTable.Write"/>);
/// symlinks sorted (inode delta, target); xattrs sorted (inode delta, count, (name, value)...);
/// chunks sorted by (inode, index) (inode, index, count, (id, size, offset, length, pos)...);
/// sessions sorted (id, info, last active, acked seq, replies sorted (seq, bytes), opens sorted (inode, count));
/// pending deletes sorted by id (id, size, index, time (signed), not-before (signed)); magic "MFS-END."; then
/// SHA-256 of everything before it. Version 1 differs only in its pending deletes: in drop order, (id, size, index).
/// FROZEN: readers must keep reading every released version; a new layout gets a new version.
/// </summary>
public sealed partial class MetaStateMachine
{
    private static ReadOnlySpan<byte> SnapshotMagic => "MFS-META"u8;

    private static ReadOnlySpan<byte> SnapshotEndMagic => "MFS-END."u8;

    public const int SnapshotVersion = 2;

    private const int PresizeMax = 1 << 22;

    public void WriteSnapshot(Stream output)
    {
        _lock.EnterReadLock();
        try
        {
            using var w = new SnapshotWriter(output);
            Write(_s, w);
            w.Finish();
        }
        finally
        {
            _lock.ExitReadLock();
        }
    }

    public void RestoreSnapshot(Stream input)
    {
        MetaState s;
        using (var r = new SnapshotReader(input))
        {
            s = Read(r);
            r.VerifyEnd();
        }
        _lock.EnterWriteLock();
        try
        {
            _s = s;
            Volatile.Write(ref _applied, s.AppliedIndex);
        }
        finally
        {
            _lock.ExitWriteLock();
        }
    }

    private static T[] SortedKeys<T, TV>(Dictionary<T, TV> d) where T : notnull
    {
        var keys = d.Keys.ToArray();
        Array.Sort(keys);
        return keys;
    }

    private static void Write(MetaState s, SnapshotWriter w)
    {
        w.WriteRaw(SnapshotMagic);
        w.WriteVarint(SnapshotVersion);
        w.WriteVarint(s.AppliedIndex);
        w.WriteVarint(s.NextInode);
        w.WriteVarint(s.NextSliceId);
        w.WriteVarint(s.NextSessionId);
        w.WriteSigned(s.LastTimeNs);
        w.WriteVarint(s.UsedBytes);
        w.WriteVarint(s.InodeCount);
        w.WriteBytes(s.Volume is null ? [] : s.Volume.ToByteArray());

        var inodes = SortedKeys(s.Inodes);
        w.WriteVarint((ulong)inodes.Length);
        ulong prev = 0;
        foreach (var ino in inodes)
        {
            var r = s.Inodes[ino];
            w.WriteVarint(ino - prev);
            prev = ino;
            w.WriteVarint(r.Mode);
            w.WriteVarint(r.Uid);
            w.WriteVarint(r.Gid);
            w.WriteVarint(r.Nlink);
            w.WriteVarint(r.Size);
            w.WriteSigned(r.Atime);
            w.WriteSigned(r.Mtime);
            w.WriteSigned(r.Ctime);
            w.WriteVarint(r.Aux);
        }

        var dirs = SortedKeys(s.Dirs);
        w.WriteVarint((ulong)dirs.Length);
        prev = 0;
        foreach (var ino in dirs)
        {
            w.WriteVarint(ino - prev);
            prev = ino;
            s.Dirs[ino].Write(w);
        }

        var links = SortedKeys(s.Symlinks);
        w.WriteVarint((ulong)links.Length);
        prev = 0;
        foreach (var ino in links)
        {
            w.WriteVarint(ino - prev);
            prev = ino;
            w.WriteBytes(s.Symlinks[ino]);
        }

        var xattrs = SortedKeys(s.Xattrs);
        w.WriteVarint((ulong)xattrs.Length);
        prev = 0;
        foreach (var ino in xattrs)
        {
            w.WriteVarint(ino - prev);
            prev = ino;
            var list = s.Xattrs[ino];
            w.WriteVarint((ulong)list.Count);
            foreach (var x in list)
            {
                w.WriteBytes(x.Name);
                w.WriteBytes(x.Value);
            }
        }

        var chunks = SortedKeys(s.Chunks);
        w.WriteVarint((ulong)chunks.Length);
        foreach (var key in chunks)
        {
            w.WriteVarint(key.Inode);
            w.WriteVarint(key.Index);
            var list = s.Chunks[key];
            w.WriteVarint((ulong)list.Count);
            foreach (var sl in list)
            {
                w.WriteVarint(sl.Id);
                w.WriteVarint(sl.Size);
                w.WriteVarint(sl.Offset);
                w.WriteVarint(sl.Length);
                w.WriteVarint(sl.Pos);
            }
        }

        var sessions = SortedKeys(s.Sessions);
        w.WriteVarint((ulong)sessions.Length);
        foreach (var id in sessions)
        {
            var se = s.Sessions[id];
            w.WriteVarint(id);
            w.WriteBytes(se.Info);
            w.WriteSigned(se.LastActiveNs);
            w.WriteVarint(se.AckedSeq);
            if (se.Replies is null)
            {
                w.WriteVarint(0);
            }
            else
            {
                var seqs = SortedKeys(se.Replies);
                w.WriteVarint((ulong)seqs.Length);
                foreach (var seq in seqs)
                {
                    w.WriteVarint(seq);
                    w.WriteBytes(se.Replies[seq]);
                }
            }
            if (se.Opens is null)
            {
                w.WriteVarint(0);
            }
            else
            {
                var opens = SortedKeys(se.Opens);
                w.WriteVarint((ulong)opens.Length);
                foreach (var ino in opens)
                {
                    w.WriteVarint(ino);
                    w.WriteVarint((ulong)se.Opens[ino]);
                }
            }
        }

        var pending = SortedKeys(s.Pending);
        w.WriteVarint((ulong)pending.Length);
        foreach (var id in pending)
        {
            var p = s.Pending[id];
            w.WriteVarint(p.Id);
            w.WriteVarint(p.Size);
            w.WriteVarint(p.Index);
            w.WriteSigned(p.TimeNs);
            w.WriteSigned(p.NotBeforeNs);
        }
        w.WriteRaw(SnapshotEndMagic);
    }

    private static InvalidDataException Corrupt(string what) =>
        new($"snapshot is corrupt ({what}); restore from another snapshot");

    private static MetaState Read(SnapshotReader r)
    {
        Span<byte> magic = stackalloc byte[8];
        r.ReadRaw(magic);
        if (!magic.SequenceEqual(SnapshotMagic))
        {
            throw new InvalidDataException("not a MirrorFS metadata snapshot (bad magic); check the file you restore from");
        }
        var version = r.ReadVarint();
        if (version is not (1 or SnapshotVersion))
        {
            throw new InvalidDataException($"snapshot format version {version} is not supported by this build (supports 1 to {SnapshotVersion}); use a matching mirrorfs-meta");
        }
        const int countMax = int.MaxValue / 2;
        var s = new MetaState
        {
            AppliedIndex = r.ReadVarint(),
            NextInode = r.ReadVarint(),
            NextSliceId = r.ReadVarint(),
            NextSessionId = r.ReadVarint(),
            LastTimeNs = r.ReadSigned(),
            UsedBytes = r.ReadVarint(),
            InodeCount = r.ReadVarint(),
        };
        var volume = r.ReadBytes(MetaLimits.VolumeBytesMax);
        s.Volume = volume.Length == 0 ? null : Volume.Parser.ParseFrom(volume);

        var n = r.ReadCount(countMax);
        s.Inodes.EnsureCapacity(Math.Min(n, PresizeMax)); // never trust a count for a huge allocation
        ulong ino = 0;
        for (var i = 0; i < n; i++)
        {
            ino = NextKey(r, ino);
            s.Inodes.Add(ino, new InodeRec
            {
                Mode = r.ReadUInt32(),
                Uid = r.ReadUInt32(),
                Gid = r.ReadUInt32(),
                Nlink = r.ReadUInt32(),
                Size = r.ReadVarint(),
                Atime = r.ReadSigned(),
                Mtime = r.ReadSigned(),
                Ctime = r.ReadSigned(),
                Aux = r.ReadVarint(),
            });
        }

        n = r.ReadCount(countMax);
        ino = 0;
        for (var i = 0; i < n; i++)
        {
            ino = NextKey(r, ino);
            s.Dirs.Add(ino, DirTable.Read(r));
        }

        n = r.ReadCount(countMax);
        ino = 0;
        for (var i = 0; i < n; i++)
        {
            ino = NextKey(r, ino);
            s.Symlinks.Add(ino, r.ReadBytes(MetaLimits.SymlinkTargetBytesMax));
        }

        n = r.ReadCount(countMax);
        ino = 0;
        for (var i = 0; i < n; i++)
        {
            ino = NextKey(r, ino);
            var count = r.ReadCount(MetaLimits.XattrBytesMaxPerInode);
            var list = new List<XattrRec>(Math.Min(count, 64));
            for (var j = 0; j < count; j++)
            {
                list.Add(new XattrRec(r.ReadBytes(MetaLimits.XattrNameBytesMax), r.ReadBytes(MetaLimits.XattrValueBytesMax)));
            }
            s.Xattrs.Add(ino, list);
        }

        n = r.ReadCount(countMax);
        for (var i = 0; i < n; i++)
        {
            var key = new ChunkKey(r.ReadVarint(), r.ReadUInt32());
            var count = r.ReadCount(countMax);
            var list = new List<SliceRec>(Math.Min(count, 64));
            for (var j = 0; j < count; j++)
            {
                list.Add(new SliceRec(r.ReadVarint(), r.ReadUInt32(), r.ReadUInt32(), r.ReadUInt32(), r.ReadUInt32()));
            }
            if (!s.Chunks.TryAdd(key, list))
            {
                throw Corrupt("duplicate chunk");
            }
        }

        n = r.ReadCount(MetaLimits.SessionsMax);
        for (var i = 0; i < n; i++)
        {
            var se = new Session(r.ReadVarint(), r.ReadBytes(MetaLimits.SessionInfoBytesMax), r.ReadSigned())
            {
                AckedSeq = r.ReadVarint(),
            };
            var count = r.ReadCount(MetaLimits.ReplyCacheEntriesMax);
            if (count > 0)
            {
                se.Replies = new Dictionary<ulong, byte[]>(count);
                for (var j = 0; j < count; j++)
                {
                    se.Replies.Add(r.ReadVarint(), r.ReadBytes(countMax));
                }
            }
            count = r.ReadCount(countMax);
            if (count > 0)
            {
                se.Opens = new Dictionary<ulong, int>(Math.Min(count, 64));
                for (var j = 0; j < count; j++)
                {
                    var open = r.ReadVarint();
                    var times = r.ReadCount(int.MaxValue);
                    se.Opens.Add(open, times);
                    s.OpenCounts[open] = s.OpenCounts.GetValueOrDefault(open) + times;
                }
            }
            if (!s.Sessions.TryAdd(se.Id, se))
            {
                throw Corrupt("duplicate session");
            }
        }

        n = r.ReadCount(countMax);
        s.Pending.EnsureCapacity(Math.Min(n, PresizeMax));
        for (var i = 0; i < n; i++)
        {
            var p = new PendingSlice(r.ReadVarint(), r.ReadUInt32(), r.ReadVarint());
            if (version >= 2)
            {
                p = p with { TimeNs = r.ReadSigned(), NotBeforeNs = r.ReadSigned() };
            }
            // A v1 list could name a slice twice; deleting its blocks once is enough.
            s.Pending.TryAdd(p.Id, p);
        }
        Span<byte> end = stackalloc byte[8];
        r.ReadRaw(end);
        if (!end.SequenceEqual(SnapshotEndMagic))
        {
            throw Corrupt("bad end marker");
        }
        return s;
    }

    private static ulong NextKey(SnapshotReader r, ulong prev)
    {
        var delta = r.ReadVarint();
        return delta != 0 && prev + delta > prev ? prev + delta : throw Corrupt("keys out of order");
    }
}
