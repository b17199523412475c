// Marker interfaces of the quota, volume-settings and trash messages (see MetaMessages.cs for the others).
namespace MirrorFS.Core.Meta;

public sealed partial class SetQuotaReply : IMetaReply
{
}

public sealed partial class GetQuotaReply : IMetaReply
{
}

public sealed partial class ListQuotasReply : IMetaReply
{
}

public sealed partial class DeleteQuotaReply : IMetaReply
{
}

public sealed partial class CheckQuotaReply : IMetaReply
{
}

public sealed partial class UpdateVolumeReply : IMetaReply
{
}

public sealed partial class GetPathReply : IMetaReply
{
}

public sealed partial class PurgeTrashReply : IMetaReply
{
}

public sealed partial class SetQuotaRequest : IMutatingRequest
{
}

public sealed partial class DeleteQuotaRequest : IMutatingRequest
{
}

public sealed partial class CheckQuotaRequest : IMutatingRequest
{
}

public sealed partial class UpdateVolumeRequest : IMutatingRequest
{
}

public sealed partial class GetQuotaRequest : IReadRequest
{
}

public sealed partial class ListQuotasRequest : IReadRequest
{
}

public sealed partial class GetPathRequest : IReadRequest
{
}
