// Leader side of quotas, volume settings and paths: commands prepared and proposed, reads after the read barrier.
using MirrorFS.Core.Meta;

namespace MirrorFS.MetaServer.Engine;

public sealed partial class MetaService
{
    public Task<SetQuotaReply> SetQuotaAsync(SetQuotaRequest r, CancellationToken ct = default) =>
        MutateAsync(r, static (c, o) => c.SetQuota = o, Alloc.None, SetQuotaReply.Parser, ct);

    public Task<DeleteQuotaReply> DeleteQuotaAsync(DeleteQuotaRequest r, CancellationToken ct = default) =>
        MutateAsync(r, static (c, o) => c.DeleteQuota = o, Alloc.None, DeleteQuotaReply.Parser, ct);

    public Task<CheckQuotaReply> CheckQuotaAsync(CheckQuotaRequest r, CancellationToken ct = default) =>
        MutateAsync(r, static (c, o) => c.CheckQuota = o, Alloc.None, CheckQuotaReply.Parser, ct);

    public Task<UpdateVolumeReply> UpdateVolumeAsync(UpdateVolumeRequest r, CancellationToken ct = default) =>
        MutateAsync(r, static (c, o) => c.UpdateVolume = o, Alloc.None, UpdateVolumeReply.Parser, ct);

    public async Task<GetQuotaReply> GetQuotaAsync(GetQuotaRequest r, CancellationToken ct = default)
    {
        await _log.ReadBarrierAsync(ct);
        return _state.GetQuota(r);
    }

    public async Task<ListQuotasReply> ListQuotasAsync(ListQuotasRequest r, CancellationToken ct = default)
    {
        await _log.ReadBarrierAsync(ct);
        return _state.ListQuotas(r);
    }

    public async Task<GetPathReply> GetPathAsync(GetPathRequest r, CancellationToken ct = default)
    {
        await _log.ReadBarrierAsync(ct);
        return _state.GetPath(r);
    }
}
