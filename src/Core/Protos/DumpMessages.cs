// Marker interfaces over the dump, load and lease messages (see MetaMessages.cs for the rest).
namespace MirrorFS.Core.Meta;

public sealed partial class DumpPage : IMetaReply
{
}

public sealed partial class LoadEntriesReply : IMetaReply
{
}

public sealed partial class AcquireLeaseReply : IMetaReply
{
}

public sealed partial class LoadEntriesRequest : IMutatingRequest
{
}

public sealed partial class AcquireLeaseRequest : IMutatingRequest
{
}

public sealed partial class DumpRequest : IReadRequest
{
}
