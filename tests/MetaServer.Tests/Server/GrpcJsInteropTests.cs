// A standard gRPC client (grpc-js) drives the running metaserver: proof that we speak the real wire protocol.
using System.Text.Json;
using MirrorFS.Core.Tests.Rpc;
using MirrorFS.MetaServer.Hosting;

namespace MirrorFS.MetaServer.Tests.Server;

public sealed class GrpcJsInteropTests : IAsyncLifetime
{
    private const string Token = "interop-token-0123456789abcdef";
    private const string Service = "mirrorfs.meta.v1.Meta";
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "mirrorfs-interop-" + Guid.NewGuid().ToString("N")[..12]);
    private MetaServerHost? _host;
    private GrpcJsClient? _js;

    public async Task InitializeAsync()
    {
        _host = await MetaServerHost.StartAsync(new MetaServerOptions { DataDirectory = _dir, BearerToken = Token });
        _js = await GrpcJsClient.CreateAsync();
    }

    public async Task DisposeAsync()
    {
        if (_host is not null)
        {
            await _host.DisposeAsync();
        }
        Directory.Delete(_dir, recursive: true);
    }

    private static string B64(string s) => Convert.ToBase64String(System.Text.Encoding.UTF8.GetBytes(s));

    private static object Call(string name, string method, object request, bool noToken = false) =>
        new { name, service = Service, method, request, noToken };

    [Fact]
    public async Task GrpcJsDrivesLookupGetAttrMkdirReadDir()
    {
        var proto = Path.Combine(_js!.RepoRoot, "src", "Core", "Protos", "meta.proto");
        var results = await _js.RunAsync(_host!.Address, Token, proto,
        [
            Call("format", "Format", new { volume = new { name = "interop" } }),
            Call("mkdir", "Mkdir", new { parent = 1, name = B64("projects"), mode = 0x1ED }),
            Call("mkdir-dup", "Mkdir", new { parent = 1, name = B64("projects"), mode = 0x1ED }),
            Call("lookup", "Lookup", new { parent = 1, name = B64("projects") }),
            Call("lookup-missing", "Lookup", new { parent = 1, name = B64("nothing") }),
            Call("getattr-root", "GetAttr", new { inode = 1 }),
            Call("readdir", "ReadDir", new { inode = 1, offset = 0, limit = 100 }),
            Call("no-token", "GetAttr", new { inode = 1 }, noToken: true),
        ]);
        var byName = results.ToDictionary(r => r.GetProperty("name").GetString()!);
        foreach (var n in new[] { "format", "mkdir", "mkdir-dup", "lookup", "lookup-missing", "getattr-root", "readdir" })
        {
            Assert.True(byName[n].GetProperty("ok").GetBoolean(), $"{n}: {byName[n]}");
        }

        static JsonElement Resp(JsonElement r) => r.GetProperty("response");
        static long Num(JsonElement e, string field) =>
            e.TryGetProperty(field, out var v) ? (v.ValueKind == JsonValueKind.String ? long.Parse(v.GetString()!, System.Globalization.CultureInfo.InvariantCulture) : v.GetInt64()) : 0;

        var mkdirAttr = Resp(byName["mkdir"]).GetProperty("attr");
        var inode = Num(mkdirAttr, "inode");
        Assert.True(inode > 1);
        Assert.Equal(0x41ED, Num(mkdirAttr, "mode"));
        Assert.Equal(17, Num(Resp(byName["mkdir-dup"]), "errno")); // EEXIST, as a value in the reply
        Assert.Equal(inode, Num(Resp(byName["lookup"]).GetProperty("attr"), "inode"));
        Assert.Equal(2, Num(Resp(byName["lookup-missing"]), "errno")); // ENOENT
        var root = Resp(byName["getattr-root"]).GetProperty("attr");
        Assert.Equal(1, Num(root, "inode"));
        Assert.Equal(3, Num(root, "nlink"));
        var names = Resp(byName["readdir"]).GetProperty("entries").EnumerateArray()
            .Select(e => System.Text.Encoding.UTF8.GetString(Convert.FromBase64String(e.GetProperty("name").GetString()!)))
            .ToList();
        Assert.Contains("projects", names);
        Assert.Equal(16, Num(byName["no-token"], "code")); // UNAUTHENTICATED
    }
}
