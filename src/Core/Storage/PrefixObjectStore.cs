// Puts every key of an inner store under a fixed prefix, e.g. one volume or one test inside a shared bucket.
namespace MirrorFS.Core.Storage;

public sealed class PrefixObjectStore : IObjectStore
{
    private readonly IObjectStore _inner;
    private readonly string _prefix;
    private readonly bool _ownsInner;

    /// <param name="prefix">Prepended to every key; a trailing '/' is added when missing.</param>
    public PrefixObjectStore(IObjectStore inner, string prefix, bool ownsInner = true)
    {
        ArgumentException.ThrowIfNullOrEmpty(prefix);
        _inner = inner;
        _prefix = prefix.EndsWith('/') ? prefix : prefix + "/";
        _ownsInner = ownsInner;
        var error = ObjectKeys.Validate(_prefix.TrimEnd('/'));
        if (error is not null)
        {
            throw new ArgumentException($"bad store prefix: {error}", nameof(prefix));
        }
    }

    public string Description => $"{_inner.Description}/{_prefix.TrimEnd('/')}";

    public Task PutAsync(string key, ReadOnlyMemory<byte> data, CancellationToken ct = default) =>
        _inner.PutAsync(_prefix + key, data, ct);

    public Task<byte[]?> GetAsync(string key, ByteRange? range = null, CancellationToken ct = default) =>
        _inner.GetAsync(_prefix + key, range, ct);

    public async Task<ObjectInfo?> HeadAsync(string key, CancellationToken ct = default)
    {
        var info = await _inner.HeadAsync(_prefix + key, ct).ConfigureAwait(false);
        return info is null ? null : info with { Key = key };
    }

    public Task DeleteAsync(string key, CancellationToken ct = default) => _inner.DeleteAsync(_prefix + key, ct);

    public async Task<ObjectPage> ListAsync(string prefix, string? startAfter = null, int limit = 1000, CancellationToken ct = default)
    {
        var page = await _inner.ListAsync(_prefix + prefix, startAfter is null ? null : _prefix + startAfter, limit, ct)
            .ConfigureAwait(false);
        var objects = page.Objects.Select(o => o with { Key = o.Key[_prefix.Length..] }).ToList();
        return new ObjectPage(objects, page.NextStartAfter?[_prefix.Length..]);
    }

    public Task DeleteManyAsync(IReadOnlyCollection<string> keys, CancellationToken ct = default) =>
        _inner.DeleteManyAsync(keys.Select(k => _prefix + k).ToList(), ct);

    public ValueTask DisposeAsync() => _ownsInner ? _inner.DisposeAsync() : ValueTask.CompletedTask;
}
