// Marker interfaces of the block-deletion, slice-listing and compaction messages (see MetaMessages.cs).
namespace MirrorFS.Core.Meta;

public sealed partial class ListPendingDeletesRequest : IReadRequest
{
}

public sealed partial class ListPendingDeletesReply : IMetaReply
{
}

public sealed partial class ConfirmDeletesRequest : IMutatingRequest
{
}

public sealed partial class ConfirmDeletesReply : IMetaReply
{
}

public sealed partial class ListSlicesRequest : IReadRequest
{
}

public sealed partial class ListSlicesReply : IMetaReply
{
}

public sealed partial class CompactChunkRequest : IMutatingRequest
{
}

public sealed partial class CompactChunkReply : IMetaReply
{
}
