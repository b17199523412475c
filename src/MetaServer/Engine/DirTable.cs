// One directory's entries: a hash table whose slots never move, so a slot number is a stable readdir position.
namespace MirrorFS.MetaServer.Engine;

/// <summary>
/// Name -> inode map of one directory. Entries live in an append-only slot array (freed slots are reused, last
/// freed first); buckets chain slots by name hash. Slots never move while the directory has entries, so a listing
/// that resumes at a slot number sees every entry that stayed put exactly once. Slot layout depends only on the
/// sequence of adds and removes (not on hashes, which are seeded per process), so replicas agree on positions.
/// </summary>
internal sealed class DirTable
{
    private struct Slot
    {
        public byte[]? Name;   // null = free
        public ulong Inode;
        public int Hash;
        public int Next;       // live: next slot in the bucket chain; free: next free slot; -1 = none
    }

    private int[]? _buckets;   // slot + 1, 0 = empty
    private Slot[]? _slots;
    private int _used;         // slots handed out, live or free
    private int _freeHead = -1;
    private int _count;

    /// <summary>Live entries.</summary>
    public int Count => _count;

    /// <summary>Slots handed out (positions are below this).</summary>
    public int SlotCount => _used;

    public static int HashName(ReadOnlySpan<byte> name)
    {
        var h = default(HashCode);
        h.AddBytes(name);
        return h.ToHashCode();
    }

    /// <summary>Slot of <paramref name="name"/>, or -1.</summary>
    public int Find(ReadOnlySpan<byte> name)
    {
        if (_count == 0)
        {
            return -1;
        }
        var hash = HashName(name);
        var slots = _slots!;
        for (var i = _buckets![hash & (_buckets.Length - 1)] - 1; i >= 0; i = slots[i].Next)
        {
            ref var s = ref slots[i];
            if (s.Hash == hash && name.SequenceEqual(s.Name))
            {
                return i;
            }
        }
        return -1;
    }

    public ulong InodeAt(int slot) => _slots![slot].Inode;

    public byte[] NameAt(int slot) => _slots![slot].Name!;

    public void SetInode(int slot, ulong inode) => _slots![slot].Inode = inode;

    /// <summary>First live slot at or after <paramref name="from"/>, or -1.</summary>
    public int NextLive(long from)
    {
        for (var i = from < 0 ? 0 : from; i < _used; i++)
        {
            if (_slots![i].Name is not null)
            {
                return (int)i;
            }
        }
        return -1;
    }

    /// <summary>Adds a name that is not present; returns its slot.</summary>
    public int Add(byte[] name, ulong inode)
    {
        int slot;
        if (_freeHead >= 0)
        {
            slot = _freeHead;
            _freeHead = _slots![slot].Next;
        }
        else
        {
            if (_slots is null || _used == _slots.Length)
            {
                Grow();
            }
            slot = _used++;
        }
        var hash = HashName(name);
        ref var s = ref _slots![slot];
        s.Name = name;
        s.Inode = inode;
        s.Hash = hash;
        ref var bucket = ref _buckets![hash & (_buckets.Length - 1)];
        s.Next = bucket - 1;
        bucket = slot + 1;
        _count++;
        return slot;
    }

    public void RemoveAt(int slot)
    {
        var slots = _slots!;
        ref var bucket = ref _buckets![slots[slot].Hash & (_buckets.Length - 1)];
        if (bucket - 1 == slot)
        {
            bucket = slots[slot].Next + 1;
        }
        else
        {
            var i = bucket - 1;
            while (slots[i].Next != slot)
            {
                i = slots[i].Next;
            }
            slots[i].Next = slots[slot].Next;
        }
        _count--;
        if (_count == 0)
        {
            // An empty directory gives its memory back; positions restart at 0.
            _slots = null;
            _buckets = null;
            _used = 0;
            _freeHead = -1;
            return;
        }
        slots[slot] = new Slot { Next = _freeHead };
        _freeHead = slot;
    }

    private void Grow()
    {
        var size = _slots is null ? 4 : _slots.Length * 2;
        var slots = new Slot[size];
        if (_slots is not null)
        {
            Array.Copy(_slots, slots, _used);
        }
        _slots = slots;
        RebuildBuckets(size);
    }

    private void RebuildBuckets(int size)
    {
        var buckets = new int[size];
        var slots = _slots!;
        for (var i = 0; i < _used; i++)
        {
            ref var s = ref slots[i];
            if (s.Name is null)
            {
                continue;
            }
            ref var bucket = ref buckets[s.Hash & (size - 1)];
            s.Next = bucket - 1;
            bucket = i + 1;
        }
        _buckets = buckets;
    }

    /// <summary>Writes slots (live and free) and the free list exactly, so a restored table gives the same positions.</summary>
    public void Write(SnapshotWriter w)
    {
        w.WriteVarint((ulong)_used);
        w.WriteVarint((ulong)(_freeHead + 1));
        for (var i = 0; i < _used; i++)
        {
            ref var s = ref _slots![i];
            w.WriteVarint(s.Name is null ? 0 : s.Inode);
            if (s.Name is null)
            {
                w.WriteVarint((ulong)(s.Next + 1));
            }
            else
            {
                w.WriteBytes(s.Name);
            }
        }
    }

    public static DirTable Read(SnapshotReader r)
    {
        var t = new DirTable();
        var used = r.ReadCount(int.MaxValue / 2);
        var freeHead = r.ReadCount(used) - 1;
        if (used == 0)
        {
            return t;
        }
        var size = 4;
        while (size < used)
        {
            size *= 2;
        }
        t._slots = new Slot[size];
        t._used = used;
        t._freeHead = freeHead;
        for (var i = 0; i < used; i++)
        {
            ref var s = ref t._slots[i];
            var inode = r.ReadVarint();
            if (inode == 0)
            {
                s.Next = r.ReadCount(used) - 1;
            }
            else
            {
                s.Inode = inode;
                s.Name = r.ReadBytes(MetaLimits.NameBytesMax);
                s.Hash = HashName(s.Name);
                t._count++;
            }
        }
        if (t._count == 0)
        {
            throw new InvalidDataException("snapshot is corrupt: a directory table has slots but no entries; restore from another snapshot");
        }
        t.RebuildBuckets(size);
        return t;
    }
}
