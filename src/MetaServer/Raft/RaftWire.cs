// Conversion between the Raft core's messages and their protobuf form (Protos/raft.proto), without copying entry data.
using Google.Protobuf;
using MirrorFS.MetaServer.Wire;

namespace MirrorFS.MetaServer.Raft;

internal static class RaftWire
{
    /// <summary>Fixed part of a message's size estimate (header fields and framing).</summary>
    private const int MessageOverheadBytes = 64;

    /// <summary>About what <paramref name="m"/> takes on the wire and in a queue; bounds batches and queues.</summary>
    public static int SizeBytes(RaftMessage m)
    {
        var size = MessageOverheadBytes;
        foreach (var e in m.Entries)
        {
            size += e.SizeBytes;
        }
        if (m.Snapshot is { } c)
        {
            size += c.Data.Length + 64 + (c.Meta.Voters.Count * 32);
        }
        return size;
    }

    public static RaftMessageWire ToWire(RaftMessage m)
    {
        var w = new RaftMessageWire
        {
            Type = (RaftMessageType)m.Type,
            To = m.To,
            Term = m.Term,
            LogIndex = m.LogIndex,
            LogTerm = m.LogTerm,
            Commit = m.Commit,
            Reject = m.Reject,
            RejectHint = m.RejectHint,
            Context = m.Context,
            Transfer = m.Transfer,
        };
        foreach (var e in m.Entries)
        {
            // Entry data is never modified once in the log, so the wire message may share it.
            w.Entries.Add(new RaftEntryWire
            {
                Index = e.Index, Term = e.Term, Kind = (RaftEntryKind)e.Kind, Data = UnsafeByteOperations.UnsafeWrap(e.Data),
            });
        }
        if (m.Snapshot is { } c)
        {
            w.Snapshot = new RaftSnapshotChunk
            {
                Index = c.Meta.Index,
                Term = c.Meta.Term,
                Membership = UnsafeByteOperations.UnsafeWrap(Membership.Encode(c.Meta.Voters, c.Meta.Addresses)),
                Offset = c.Offset,
                Data = UnsafeByteOperations.UnsafeWrap(c.Data),
                Last = c.Last,
            };
        }
        return w;
    }

    /// <summary>The core's form of a received message; throws <see cref="InvalidDataException"/> for one no node sends.</summary>
    public static RaftMessage FromWire(ulong from, RaftMessageWire w)
    {
        if (w.Type is < RaftMessageType.PreVote or > RaftMessageType.TimeoutNow)
        {
            throw new InvalidDataException($"Raft message type {(int)w.Type} is unknown; is the peer a newer version?");
        }
        IReadOnlyList<RaftEntry> entries = [];
        if (w.Entries.Count > 0)
        {
            var list = new RaftEntry[w.Entries.Count];
            for (var i = 0; i < list.Length; i++)
            {
                var e = w.Entries[i];
                if (e.Kind is < RaftEntryKind.Normal or > RaftEntryKind.ConfChange)
                {
                    throw new InvalidDataException($"Raft entry {e.Index} has unknown kind {(int)e.Kind}; is the peer a newer version?");
                }
                list[i] = new RaftEntry(e.Index, e.Term, (EntryKind)e.Kind, e.Data.Memory);
            }
            entries = list;
        }
        SnapshotChunk? chunk = null;
        if (w.Snapshot is { } s)
        {
            if (s.Offset < 0)
            {
                throw new InvalidDataException($"Raft snapshot chunk at offset {s.Offset} is invalid");
            }
            var voters = Membership.Decode(s.Membership.Span, out var addresses);
            chunk = new SnapshotChunk(new SnapshotMeta(s.Index, s.Term, voters) { Addresses = addresses }, s.Offset, s.Data.Memory, s.Last);
        }
        return new RaftMessage
        {
            Type = (MessageType)w.Type,
            From = from,
            To = w.To,
            Term = w.Term,
            LogIndex = w.LogIndex,
            LogTerm = w.LogTerm,
            Commit = w.Commit,
            Reject = w.Reject,
            RejectHint = w.RejectHint,
            Context = w.Context,
            Transfer = w.Transfer,
            Entries = entries,
            Snapshot = chunk,
        };
    }
}
