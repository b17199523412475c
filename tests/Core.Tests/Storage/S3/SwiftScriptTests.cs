// The failure paths of deploy/swift/swift-s3.sh that need no running Swift (the fixture covers a real start).
using System.Net;
using System.Net.Sockets;

namespace MirrorFS.Core.Tests.Storage.S3;

public sealed class SwiftScriptTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public async Task RefusesABusyPortWithoutStartingAnything()
    {
        using var busy = new TcpListener(IPAddress.Loopback, 0);
        busy.Start();
        var port = ((IPEndPoint)busy.LocalEndpoint).Port;
        var (code, output) = await SwiftFixture.RunScriptAsync("start", _dir.Path, port.ToString(System.Globalization.CultureInfo.InvariantCulture));
        Assert.NotEqual(0, code);
        Assert.Contains($"127.0.0.1:{port} is already in use", output, StringComparison.Ordinal);
        Assert.Empty(Directory.GetFiles(_dir.Path, "*.pid"));
    }

    [Theory]
    [InlineData("start")]
    [InlineData("start", "DIR")]
    [InlineData("start", "DIR", "not-a-port")]
    [InlineData("restart", "DIR")]
    public async Task RejectsBadArguments(params string[] args)
    {
        var (code, output) = await SwiftFixture.RunScriptAsync(args.Select(a => a == "DIR" ? _dir.Path : a).ToArray());
        Assert.NotEqual(0, code);
        Assert.Contains("swift-s3.sh:", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task StopOfADirectoryWithNothingRunningSucceeds()
    {
        var (code, output) = await SwiftFixture.RunScriptAsync("stop", _dir.Path);
        Assert.True(code == 0, output);
    }
}
