// The ambient read condition of one metadata call: the lowest primary index its answer may reflect.
namespace MirrorFS.Core.Meta;

/// <summary>
/// Carries the caller's minimum index along an async call chain. Clients set it around a call
/// (<see cref="WithMinIndex"/>); <see cref="RpcMetaClient"/> sends it as the <see cref="MetaRpc.MinIndexHeader"/>
/// header and the server side of <see cref="MetaRpc"/> turns the header back into this value, so an in-process
/// engine and a remote one see the same thing. 0 means no condition.
/// </summary>
public static class MetaCallContext
{
    private static readonly AsyncLocal<ulong> Min = new();

    /// <summary>The lowest primary index the current call's answer may reflect (0 = any).</summary>
    public static ulong MinIndex => Min.Value;

    /// <summary>Sets <see cref="MinIndex"/> until the returned scope is disposed (on the same async flow).</summary>
    public static IDisposable WithMinIndex(ulong minIndex)
    {
        var previous = Min.Value;
        Min.Value = minIndex;
        return new Scope(previous);
    }

    private sealed class Scope(ulong previous) : IDisposable
    {
        public void Dispose() => Min.Value = previous;
    }
}
