namespace MirrorFS.Core.Meta;

/// <summary>The metadata service as a client sees it; the calls are generated from meta.proto (IMetaClient.g.cs).</summary>
public partial interface IMetaClient : IAsyncDisposable
{
}
