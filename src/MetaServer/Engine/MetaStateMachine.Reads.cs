// Reads served from the state under the read lock (no log entry); each reply carries the applied index it saw.
using System.Runtime.CompilerServices;
using Google.Protobuf;
using MirrorFS.Core.Meta;

namespace MirrorFS.MetaServer.Engine;

public sealed partial class MetaStateMachine
{
    public LookupReply Lookup(LookupRequest r)
    {
        _lock.EnterReadLock();
        try
        {
            var reply = new LookupReply { Index = _s.AppliedIndex };
            var e = ParentDir(r.Parent, out var dir);
            if (e != Errno.OK)
            {
                reply.Errno = e;
                return reply;
            }
            var name = r.Name.Span;
            ulong ino;
            switch (Dots(name))
            {
                case 1:
                    ino = r.Parent;
                    break;
                case 2:
                    ino = _s.Inodes[r.Parent].Aux;
                    break;
                default:
                    if ((e = CheckName(name)) != Errno.OK)
                    {
                        reply.Errno = e;
                        return reply;
                    }
                    var slot = dir.Find(name);
                    if (slot < 0)
                    {
                        reply.Errno = Errno.ENOENT;
                        return reply;
                    }
                    ino = dir.InodeAt(slot);
                    break;
            }
            reply.Attr = ToAttr(ino, _s.Inodes[ino]);
            return reply;
        }
        finally
        {
            _lock.ExitReadLock();
        }
    }

    public GetAttrReply GetAttr(GetAttrRequest r)
    {
        _lock.EnterReadLock();
        try
        {
            ref var rec = ref Rec(r.Inode);
            return Unsafe.IsNullRef(ref rec)
                ? new GetAttrReply { Errno = Errno.ENOENT, Index = _s.AppliedIndex }
                : new GetAttrReply { Index = _s.AppliedIndex, Attr = ToAttr(r.Inode, rec) };
        }
        finally
        {
            _lock.ExitReadLock();
        }
    }

    public ReadLinkReply ReadLink(ReadLinkRequest r)
    {
        _lock.EnterReadLock();
        try
        {
            var reply = new ReadLinkReply { Index = _s.AppliedIndex };
            if (!_s.Inodes.ContainsKey(r.Inode))
            {
                reply.Errno = Errno.ENOENT;
            }
            else if (_s.Symlinks.TryGetValue(r.Inode, out var target))
            {
                reply.Target = ByteString.CopyFrom(target);
            }
            else
            {
                reply.Errno = Errno.EINVAL;
            }
            return reply;
        }
        finally
        {
            _lock.ExitReadLock();
        }
    }

    public ReadDirReply ReadDir(ReadDirRequest r)
    {
        _lock.EnterReadLock();
        try
        {
            var reply = new ReadDirReply { Index = _s.AppliedIndex };
            var e = ParentDir(r.Inode, out var dir);
            if (e != Errno.OK)
            {
                reply.Errno = e;
                return reply;
            }
            var limit = r.Limit == 0 ? MetaLimits.ReadDirEntriesDefault : (int)Math.Min(r.Limit, MetaLimits.ReadDirEntriesMax);
            var pos = r.Offset;
            if (pos == 0 && reply.Entries.Count < limit)
            {
                reply.Entries.Add(new DirEntry { Name = ByteString.CopyFromUtf8("."), Attr = ToAttr(r.Inode, _s.Inodes[r.Inode]), Offset = 1 });
                pos = 1;
            }
            if (pos == 1 && reply.Entries.Count < limit)
            {
                var parent = _s.Inodes[r.Inode].Aux;
                reply.Entries.Add(new DirEntry { Name = ByteString.CopyFromUtf8(".."), Attr = ToAttr(parent, _s.Inodes[parent]), Offset = 2 });
                pos = 2;
            }
            // Positions 2.. map to slots 0..; an offset past the slots simply finds nothing.
            var slot = pos < 2 ? -1 : pos - 2 >= (ulong)dir.SlotCount ? -1 : dir.NextLive((long)(pos - 2));
            while (slot >= 0 && reply.Entries.Count < limit)
            {
                var ino = dir.InodeAt(slot);
                reply.Entries.Add(new DirEntry
                {
                    Name = ByteString.CopyFrom(dir.NameAt(slot)),
                    Attr = ToAttr(ino, _s.Inodes[ino]),
                    Offset = (ulong)slot + 3,
                });
                slot = dir.NextLive(slot + 1);
            }
            reply.Eof = pos >= 2 && slot < 0;
            return reply;
        }
        finally
        {
            _lock.ExitReadLock();
        }
    }

    public GetXattrReply GetXattr(GetXattrRequest r)
    {
        _lock.EnterReadLock();
        try
        {
            var reply = new GetXattrReply { Index = _s.AppliedIndex };
            var e = CheckXattrName(r.Name);
            ref var rec = ref Rec(r.Inode);
            if (e == Errno.OK && Unsafe.IsNullRef(ref rec))
            {
                e = Errno.ENOENT;
            }
            if (e == Errno.OK)
            {
                e = XattrAccess(r.Name.Span, rec, r.Cred, write: false);
            }
            if (e == Errno.OK)
            {
                _s.Xattrs.TryGetValue(r.Inode, out var list);
                var i = FindXattr(list, r.Name.Span);
                if (i < 0)
                {
                    e = Errno.ENODATA;
                }
                else
                {
                    reply.Value = ByteString.CopyFrom(list![i].Value);
                }
            }
            reply.Errno = e;
            return reply;
        }
        finally
        {
            _lock.ExitReadLock();
        }
    }

    public ListXattrReply ListXattr(ListXattrRequest r)
    {
        _lock.EnterReadLock();
        try
        {
            var reply = new ListXattrReply { Index = _s.AppliedIndex };
            if (!_s.Inodes.ContainsKey(r.Inode))
            {
                reply.Errno = Errno.ENOENT;
                return reply;
            }
            if (_s.Xattrs.TryGetValue(r.Inode, out var list))
            {
                var root = IsRoot(r.Cred);
                foreach (var x in list)
                {
                    if (root || SpaceOf(x.Name, out _) != XattrSpace.Trusted)
                    {
                        reply.Names.Add(ByteString.CopyFrom(x.Name));
                    }
                }
            }
            return reply;
        }
        finally
        {
            _lock.ExitReadLock();
        }
    }

    public StatFsReply StatFs(StatFsRequest r)
    {
        _lock.EnterReadLock();
        try
        {
            var reply = new StatFsReply { Index = _s.AppliedIndex, NameMax = MetaLimits.NameBytesMax, BlockSize = 4096 };
            if (r.Inode != 0 && !_s.Inodes.ContainsKey(r.Inode))
            {
                reply.Errno = Errno.ENOENT;
                return reply;
            }
            var v = _s.Volume;
            var capacity = v is { CapacityBytes: > 0 } ? v.CapacityBytes : Math.Max(MetaLimits.ReportedCapacityBytesUnlimited, _s.UsedBytes);
            var inodes = v is { InodesMax: > 0 } ? v.InodesMax : Math.Max(MetaLimits.ReportedInodesUnlimited, _s.InodeCount);
            reply.TotalBytes = capacity;
            reply.UsedBytes = _s.UsedBytes;
            reply.AvailBytes = capacity > _s.UsedBytes ? capacity - _s.UsedBytes : 0;
            reply.TotalInodes = inodes;
            reply.UsedInodes = _s.InodeCount;
            reply.AvailInodes = inodes > _s.InodeCount ? inodes - _s.InodeCount : 0;
            return reply;
        }
        finally
        {
            _lock.ExitReadLock();
        }
    }

    public ReadChunkReply ReadChunk(ReadChunkRequest r)
    {
        _lock.EnterReadLock();
        try
        {
            var reply = new ReadChunkReply { Index = _s.AppliedIndex };
            ref var rec = ref Rec(r.Inode);
            if (Unsafe.IsNullRef(ref rec))
            {
                reply.Errno = Errno.ENOENT;
            }
            else if (rec.IsDir)
            {
                reply.Errno = Errno.EISDIR;
            }
            else if (!rec.IsRegular)
            {
                reply.Errno = Errno.EINVAL;
            }
            else if (_s.Chunks.TryGetValue(new ChunkKey(r.Inode, r.ChunkIndex), out var slices))
            {
                foreach (var s in slices)
                {
                    reply.Slices.Add(new Slice { Id = s.Id, Size = s.Size, Offset = s.Offset, Length = s.Length, Pos = s.Pos });
                }
            }
            if (r.WithAttr && reply.Errno == 0)
            {
                reply.Attr = ToAttr(r.Inode, rec);
            }
            return reply;
        }
        finally
        {
            _lock.ExitReadLock();
        }
    }

    public GetVolumeReply GetVolume(GetVolumeRequest r)
    {
        _lock.EnterReadLock();
        try
        {
            // A half-loaded tree is not a volume to mount: EBUSY until the load finishes.
            return _s.Volume is null ? new GetVolumeReply { Errno = Errno.ENOENT, Index = _s.AppliedIndex }
                : _s.Loading ? new GetVolumeReply { Errno = Errno.EBUSY, Index = _s.AppliedIndex }
                : new GetVolumeReply { Index = _s.AppliedIndex, Volume = _s.Volume.Clone() };
        }
        finally
        {
            _lock.ExitReadLock();
        }
    }

    /// <summary>Live sessions in id order, a page at a time.</summary>
    public ListSessionsReply ListSessions(ListSessionsRequest r)
    {
        var limit = r.Limit == 0 ? MetaLimits.ListSessionsDefault : (int)Math.Min(r.Limit, MetaLimits.ListSessionsMax);
        _lock.EnterReadLock();
        try
        {
            var reply = new ListSessionsReply { Index = _s.AppliedIndex, Eof = true };
            foreach (var id in _s.Sessions.Keys.Where(id => id > r.StartAfter).Order())
            {
                if (reply.Sessions.Count == limit)
                {
                    reply.Eof = false;
                    break;
                }
                var s = _s.Sessions[id];
                var entry = new SessionEntry
                {
                    SessionId = id,
                    LastActiveNs = s.LastActiveNs,
                    OpenInodes = (uint)(s.Opens?.Count ?? 0),
                };
                if (s.Info.Length > 0)
                {
                    entry.Info = ClientInfo.Parser.ParseFrom(s.Info);
                }
                reply.Sessions.Add(entry);
            }
            return reply;
        }
        finally
        {
            _lock.ExitReadLock();
        }
    }

    // ---- for the leader's prepare step and for tests ----

    /// <summary>Counters the leader's cursors must stay ahead of.</summary>
    internal (ulong NextInode, ulong NextSliceId, ulong NextSessionId, long LastTimeNs) Counters()
    {
        _lock.EnterReadLock();
        try
        {
            return (_s.NextInode, _s.NextSliceId, _s.NextSessionId, _s.LastTimeNs);
        }
        finally
        {
            _lock.ExitReadLock();
        }
    }

    /// <summary>Whether some session was last active before <paramref name="cutoffNs"/>.</summary>
    internal bool AnySessionIdleBefore(long cutoffNs)
    {
        _lock.EnterReadLock();
        try
        {
            foreach (var s in _s.Sessions.Values)
            {
                if (s.LastActiveNs < cutoffNs)
                {
                    return true;
                }
            }
            return false;
        }
        finally
        {
            _lock.ExitReadLock();
        }
    }

    /// <summary>A copy of the slices waiting for deletion, in slice id order.</summary>
    internal PendingSlice[] PendingDeletes()
    {
        _lock.EnterReadLock();
        try
        {
            return [.. _s.Pending.Values.OrderBy(p => p.Id)];
        }
        finally
        {
            _lock.ExitReadLock();
        }
    }

    /// <summary>Used bytes, inode count and number of open inodes, for tests.</summary>
    internal (ulong UsedBytes, ulong Inodes, int OpenInodes, int Sessions) Usage()
    {
        _lock.EnterReadLock();
        try
        {
            return (_s.UsedBytes, _s.InodeCount, _s.OpenCounts.Count, _s.Sessions.Count);
        }
        finally
        {
            _lock.ExitReadLock();
        }
    }
}
