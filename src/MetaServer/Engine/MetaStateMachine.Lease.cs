// Named leases with an expiry: at most one session holds a name at a time (e.g. the client writing metadata backups).
using System.Text;
using MirrorFS.Core.Meta;

namespace MirrorFS.MetaServer.Engine;

/// <summary>A named lease: the session holding it and when it lapses (leader time of the granting command + duration).</summary>
internal readonly record struct LeaseRec(ulong Holder, long ExpiresNs);

public sealed partial class MetaStateMachine
{
    /// <summary>
    /// Takes, renews or releases a lease for the calling session. A lease is free once it expired (by the command's
    /// prepared time, so every replica decides alike) or its session is gone.
    /// </summary>
    private AcquireLeaseReply AcquireLease(AcquireLeaseRequest r)
    {
        var nameBytes = Encoding.UTF8.GetByteCount(r.Name);
        if (_session is null || nameBytes is 0 or > DumpLoadLimits.LeaseNameBytesMax || r.DurationNs < 0)
        {
            return new AcquireLeaseReply { Errno = Errno.EINVAL };
        }
        var me = _session.Id;
        var held = _s.Leases.TryGetValue(r.Name, out var lease) && LeaseLive(lease);
        if (held && lease.Holder != me)
        {
            return new AcquireLeaseReply { Errno = Errno.EBUSY, Holder = lease.Holder, ExpiresNs = lease.ExpiresNs };
        }
        if (r.DurationNs == 0)
        {
            _s.Leases.Remove(r.Name);
            return new AcquireLeaseReply();
        }
        if (!_s.Leases.ContainsKey(r.Name) && _s.Leases.Count >= DumpLoadLimits.LeasesMax)
        {
            PruneLeases();
            if (_s.Leases.Count >= DumpLoadLimits.LeasesMax)
            {
                return new AcquireLeaseReply { Errno = Errno.ENOSPC };
            }
        }
        var expires = _now > long.MaxValue - r.DurationNs ? long.MaxValue : _now + r.DurationNs;
        _s.Leases[r.Name] = new LeaseRec(me, expires);
        return new AcquireLeaseReply { Holder = me, ExpiresNs = expires };
    }

    private bool LeaseLive(LeaseRec lease) => lease.ExpiresNs > _now && _s.Sessions.ContainsKey(lease.Holder);

    /// <summary>Drops lapsed leases, in name order (dictionary order differs between replicas).</summary>
    private void PruneLeases()
    {
        var names = _s.Leases.Keys.ToArray();
        Array.Sort(names, StringComparer.Ordinal);
        foreach (var name in names)
        {
            if (!LeaseLive(_s.Leases[name]))
            {
                _s.Leases.Remove(name);
            }
        }
    }
}
