// Finds the slices a log entry introduces, so that their blocks can be copied.
using Google.Protobuf;
using Google.Protobuf.Reflection;
using MirrorFS.Core.Meta;

namespace MirrorFS.Mirror.Replication;

/// <summary>A stored slice: its id and the byte size of its object data.</summary>
public readonly record struct SliceRef(ulong Id, uint Size);

public static class SliceFinder
{
    /// <summary>Nesting bound for the walk: commands are a few levels deep.</summary>
    private const int DepthMax = 8;

    /// <summary>Every non-hole slice named anywhere in the command. WriteSlice is the common case; walking every
    /// field also catches commands added later that write a new slice (compaction), at the price of naming slices
    /// a command merely mentions — copying those is harmless, since a block that exists is skipped or rewritten with
    /// the same bytes, and one already deleted is skipped.</summary>
    public static List<SliceRef> Find(Command command)
    {
        var found = new List<SliceRef>();
        if (command.OpCase == Command.OpOneofCase.WriteSlice)
        {
            Add(found, command.WriteSlice.Slice);
            return found;
        }
        Walk(command, found, 0);
        return found;
    }

    /// <summary>The slices whose blocks the primary has deleted from its bucket, as a ConfirmDeletes entry records
    /// (the primary deletes only once every mirror has applied past the entry that dropped them).</summary>
    /// <remarks>
    /// The field is looked up by its proto name, so this builds with or without the gc commands in meta.proto.</remarks>
    public static ulong[] ConfirmedDeletes(Command command)
    {
        if (ConfirmDeletesField is not { } field || field.Accessor.GetValue(command) is not IMessage request
            || request.Descriptor.FindFieldByName("slice_ids") is not { IsRepeated: true } ids)
        {
            return [];
        }
        return [.. ((System.Collections.IEnumerable)ids.Accessor.GetValue(request)).Cast<ulong>()];
    }

    private static readonly FieldDescriptor? ConfirmDeletesField = Command.Descriptor.FindFieldByName("confirm_deletes");

    private static void Add(List<SliceRef> found, Slice? s)
    {
        if (s is not null && s.Id != 0 && s.Size != 0)
        {
            found.Add(new SliceRef(s.Id, s.Size));
        }
    }

    private static void Walk(IMessage message, List<SliceRef> found, int depth)
    {
        if (message is Slice s)
        {
            Add(found, s);
            return;
        }
        if (depth >= DepthMax)
        {
            return;
        }
        foreach (var field in message.Descriptor.Fields.InDeclarationOrder())
        {
            if (field.FieldType != FieldType.Message)
            {
                continue;
            }
            var value = field.Accessor.GetValue(message);
            if (field.IsRepeated)
            {
                foreach (var item in (System.Collections.IEnumerable)value)
                {
                    if (item is IMessage m)
                    {
                        Walk(m, found, depth + 1);
                    }
                }
            }
            else if (value is IMessage m)
            {
                Walk(m, found, depth + 1);
            }
        }
    }
}
