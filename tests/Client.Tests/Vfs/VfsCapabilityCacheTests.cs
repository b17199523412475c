// The kernel asks for security.capability before every write: MirrorVfs answers a file known to have none without a
// metadata call, for one attribute-cache period, and asks again after this client changes the file's xattrs.
using System.Text;
using MirrorFS.Client.Vfs;
using MirrorFS.Core.Meta;
using static MirrorFS.Client.Tests.VfsTests.VfsFixture;

namespace MirrorFS.Client.Tests.VfsTests;

public sealed class VfsCapabilityCacheTests
{
    private static readonly byte[] Capability = Encoding.ASCII.GetBytes("security.capability");

    [Fact]
    public async Task A_file_without_a_capability_is_answered_locally_until_this_client_sets_one()
    {
        await using var f = await VfsFixture.StartAsync();
        var (meta, calls) = LossyMetaClient.Wrap(f.Meta, nameof(IMetaClient.GetXattrAsync), drops: 0);
        var vfs = await f.MountAsync(new VfsOptions { MemoryCacheBytesMax = 8 << 20, AttrTimeoutSec = 60 }, meta: meta);

        // A file this client created: no call at all, however many writes ask.
        var (created, _) = await CreateAsync(vfs, "new");
        for (var i = 0; i < 3; i++)
        {
            Assert.Equal(Errno.ENODATA, (await vfs.GetXattrAsync(Ctx, created, Capability)).Errno);
        }
        Assert.Equal(0, calls.Calls);

        // Another name: always asked.
        Assert.Equal(Errno.ENODATA, (await vfs.GetXattrAsync(Ctx, created, Encoding.ASCII.GetBytes("user.x"))).Errno);
        Assert.Equal(1, calls.Calls);

        // Setting the capability drops the shortcut: the next ask reaches the metaserver and sees the value.
        byte[] value = [1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        Assert.Equal(0, await vfs.SetXattrAsync(Ctx, created, Capability, value, 0));
        var got = await vfs.GetXattrAsync(Ctx, created, Capability);
        Assert.Equal(0, got.Errno);
        Assert.Equal(value, got.Value);
        Assert.Equal(2, calls.Calls);

        // Removed again: one call learns it is gone, later asks are local.
        Assert.Equal(0, await vfs.RemoveXattrAsync(Ctx, created, Capability));
        Assert.Equal(Errno.ENODATA, (await vfs.GetXattrAsync(Ctx, created, Capability)).Errno);
        Assert.Equal(Errno.ENODATA, (await vfs.GetXattrAsync(Ctx, created, Capability)).Errno);
        Assert.Equal(3, calls.Calls);
    }

    [Fact]
    public async Task Without_an_attribute_cache_every_ask_reaches_the_metaserver()
    {
        await using var f = await VfsFixture.StartAsync();
        var (meta, calls) = LossyMetaClient.Wrap(f.Meta, nameof(IMetaClient.GetXattrAsync), drops: 0);
        var vfs = await f.MountAsync(new VfsOptions { MemoryCacheBytesMax = 8 << 20, AttrTimeoutSec = 0 }, meta: meta);
        var (created, _) = await CreateAsync(vfs, "new");
        Assert.Equal(Errno.ENODATA, (await vfs.GetXattrAsync(Ctx, created, Capability)).Errno);
        Assert.Equal(Errno.ENODATA, (await vfs.GetXattrAsync(Ctx, created, Capability)).Errno);
        Assert.Equal(2, calls.Calls);

        // A capability set by another client is seen at once.
        var other = await f.MountAsync();
        Assert.Equal(0, await other.SetXattrAsync(Ctx, created, Capability, [1, 2, 3, 4], 0));
        Assert.Equal(0, (await vfs.GetXattrAsync(Ctx, created, Capability)).Errno);
    }
}
