// Marker interfaces over the mirror messages of meta.proto (see MetaMessages.cs for the others).
namespace MirrorFS.Core.Meta;

public sealed partial class ListMirrorsReply : IMetaReply
{
}

public sealed partial class PromoteReply : IMetaReply
{
}

public sealed partial class MirrorEntriesReply : IMetaReply
{
}

public sealed partial class ListMirrorsRequest : IReadRequest
{
}

public sealed partial class PromoteRequest : IMutatingRequest
{
}
