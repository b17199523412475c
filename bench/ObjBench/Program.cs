// mirrorfs-objbench URI [--big-count N] [--small-count N] [--parallel 1,4,16]: measures an object store.
using System.Globalization;
using MirrorFS.Core.Storage;

var uri = args.FirstOrDefault(a => !a.StartsWith("--", StringComparison.Ordinal));
if (uri is null)
{
    Console.Error.WriteLine("usage: mirrorfs-objbench URI [--big-count N] [--small-count N] [--parallel 1,4,16]");
    return 2;
}
var options = new ObjectBenchmarkOptions();
for (var i = 0; i < args.Length - 1; i++)
{
    switch (args[i])
    {
        case "--big-count":
            options = options with { BigObjectCount = int.Parse(args[i + 1], CultureInfo.InvariantCulture) };
            break;
        case "--small-count":
            options = options with { SmallObjectCount = int.Parse(args[i + 1], CultureInfo.InvariantCulture) };
            break;
        case "--parallel":
            options = options with { Parallelism = args[i + 1].Split(',').Select(s => int.Parse(s, CultureInfo.InvariantCulture)).ToArray() };
            break;
        default:
            break;
    }
}
try
{
    await using var store = ObjectStoreFactory.Open(uri);
    Console.WriteLine($"objbench {store.Description}");
    var figures = await ObjectBenchmark.RunAsync(store, options, m => Console.Error.WriteLine(m));
    Console.WriteLine(ObjectBenchmark.Format(figures));
    return 0;
}
catch (Exception e) when (e is ObjectStoreException or ArgumentException)
{
    Console.Error.WriteLine($"mirrorfs-objbench: {e.Message}");
    return 1;
}
