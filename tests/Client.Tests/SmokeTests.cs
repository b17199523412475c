namespace MirrorFS.Client.Tests;

public sealed class SmokeTests
{
    [Fact]
    public void ClientAssemblyLoads() => Assert.Equal("mirrorfs", typeof(Program).Assembly.GetName().Name);
}
