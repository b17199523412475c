using System.Text;
using MirrorFS.MetaServer.Storage;
using Xunit.Abstractions;

namespace MirrorFS.MetaServer.Tests.Storage;

public class Crc32CTests(ITestOutputHelper output)
{
    public static TheoryData<string, uint> Vectors => new()
    {
        { "", 0x00000000u },
        { "a", 0xC1D04330u },
        { "abc", 0x364B3FB7u },
        { "123456789", 0xE3069283u },
        { "The quick brown fox jumps over the lazy dog", 0x22620404u },
    };

    [Theory]
    [MemberData(nameof(Vectors))]
    public void MatchesKnownVectors(string input, uint expected)
    {
        var bytes = Encoding.ASCII.GetBytes(input);
        Assert.Equal(expected, Crc32C.Compute(bytes));
        Assert.Equal(expected, Crc32C.ComputeSoftware(bytes));
    }

    [Fact]
    public void MatchesRfc3720Vectors()
    {
        // iSCSI (RFC 3720, B.4): 32 bytes of zeros, of 0xFF, and ascending 0..31.
        Assert.Equal(0x8A9136AAu, Crc32C.Compute(new byte[32]));
        Assert.Equal(0x62A8AB43u, Crc32C.Compute(Enumerable.Repeat((byte)0xFF, 32).ToArray()));
        Assert.Equal(0x46DD794Eu, Crc32C.Compute(Enumerable.Range(0, 32).Select(i => (byte)i).ToArray()));
        Assert.Equal(0x113FDB5Cu, Crc32C.Compute(Enumerable.Range(0, 32).Select(i => (byte)(31 - i)).ToArray()));
    }

    [Fact]
    public void HardwareAndTablePathsAgreeAndAppendComposes()
    {
        var seed = Environment.TickCount;
        output.WriteLine($"seed {seed}");
        var rng = new Random(seed);
        for (var round = 0; round < 200; round++)
        {
            var data = new byte[rng.Next(0, 3000)];
            rng.NextBytes(data);
            var whole = Crc32C.Compute(data);
            Assert.Equal(Crc32C.ComputeSoftware(data), whole);
            var cut = rng.Next(0, data.Length + 1);
            Assert.Equal(whole, Crc32C.Append(Crc32C.Compute(data.AsSpan(0, cut)), data.AsSpan(cut)));
        }
    }
}
