// Marker interfaces over the generated metadata messages, so code can handle every reply or request alike.
namespace MirrorFS.Core.Meta;

/// <summary>Every metadata reply: a Linux errno (0 = ok) and the log index it reflects.</summary>
public interface IMetaReply
{
    int Errno { get; set; }

    ulong Index { get; set; }
}

/// <summary>A request that changes state: carries the session header for exactly-once application.</summary>
public interface IMutatingRequest
{
    ulong SessionId { get; set; }

    ulong Seq { get; set; }

    ulong AckedSeq { get; set; }

    Credentials Cred { get; set; }
}

/// <summary>A request served from state without a log entry.</summary>
public interface IReadRequest
{
    Credentials Cred { get; set; }
}

public sealed partial class LookupReply : IMetaReply
{
}

public sealed partial class GetAttrReply : IMetaReply
{
}

public sealed partial class SetAttrReply : IMetaReply
{
}

public sealed partial class MknodReply : IMetaReply
{
}

public sealed partial class CreateReply : IMetaReply
{
}

public sealed partial class MkdirReply : IMetaReply
{
}

public sealed partial class UnlinkReply : IMetaReply
{
}

public sealed partial class RmdirReply : IMetaReply
{
}

public sealed partial class RenameReply : IMetaReply
{
}

public sealed partial class LinkReply : IMetaReply
{
}

public sealed partial class SymlinkReply : IMetaReply
{
}

public sealed partial class ReadLinkReply : IMetaReply
{
}

public sealed partial class ReadDirReply : IMetaReply
{
}

public sealed partial class OpenReply : IMetaReply
{
}

public sealed partial class ReleaseReply : IMetaReply
{
}

public sealed partial class GetXattrReply : IMetaReply
{
}

public sealed partial class SetXattrReply : IMetaReply
{
}

public sealed partial class ListXattrReply : IMetaReply
{
}

public sealed partial class RemoveXattrReply : IMetaReply
{
}

public sealed partial class StatFsReply : IMetaReply
{
}

public sealed partial class FallocateReply : IMetaReply
{
}

public sealed partial class NewSliceIdsReply : IMetaReply
{
}

public sealed partial class WriteSliceReply : IMetaReply
{
}

public sealed partial class ReadChunkReply : IMetaReply
{
}

public sealed partial class TruncateReply : IMetaReply
{
}

public sealed partial class NewSessionReply : IMetaReply
{
}

public sealed partial class HeartbeatReply : IMetaReply
{
}

public sealed partial class CloseSessionReply : IMetaReply
{
}

public sealed partial class ExpireSessionsReply : IMetaReply
{
}

public sealed partial class FormatReply : IMetaReply
{
}

public sealed partial class GetVolumeReply : IMetaReply
{
}

public sealed partial class ListSessionsReply : IMetaReply
{
}

public sealed partial class SetAttrRequest : IMutatingRequest
{
}

public sealed partial class MknodRequest : IMutatingRequest
{
}

public sealed partial class CreateRequest : IMutatingRequest
{
}

public sealed partial class MkdirRequest : IMutatingRequest
{
}

public sealed partial class UnlinkRequest : IMutatingRequest
{
}

public sealed partial class RmdirRequest : IMutatingRequest
{
}

public sealed partial class RenameRequest : IMutatingRequest
{
}

public sealed partial class LinkRequest : IMutatingRequest
{
}

public sealed partial class SymlinkRequest : IMutatingRequest
{
}

public sealed partial class OpenRequest : IMutatingRequest
{
}

public sealed partial class ReleaseRequest : IMutatingRequest
{
}

public sealed partial class SetXattrRequest : IMutatingRequest
{
}

public sealed partial class RemoveXattrRequest : IMutatingRequest
{
}

public sealed partial class FallocateRequest : IMutatingRequest
{
}

public sealed partial class NewSliceIdsRequest : IMutatingRequest
{
}

public sealed partial class WriteSliceRequest : IMutatingRequest
{
}

public sealed partial class TruncateRequest : IMutatingRequest
{
}

public sealed partial class NewSessionRequest : IMutatingRequest
{
}

public sealed partial class HeartbeatRequest : IMutatingRequest
{
}

public sealed partial class CloseSessionRequest : IMutatingRequest
{
}

public sealed partial class FormatRequest : IMutatingRequest
{
}

public sealed partial class LookupRequest : IReadRequest
{
}

public sealed partial class GetAttrRequest : IReadRequest
{
}

public sealed partial class ReadLinkRequest : IReadRequest
{
}

public sealed partial class ReadDirRequest : IReadRequest
{
}

public sealed partial class GetXattrRequest : IReadRequest
{
}

public sealed partial class ListXattrRequest : IReadRequest
{
}

public sealed partial class StatFsRequest : IReadRequest
{
}

public sealed partial class ReadChunkRequest : IReadRequest
{
}

public sealed partial class GetVolumeRequest : IReadRequest
{
}

public sealed partial class ListSessionsRequest : IReadRequest
{
}
