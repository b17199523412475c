// mirrorfs-meta: the metadata server executable.
namespace MirrorFS.MetaServer;

public static class Program
{
    public static int Main(string[] args)
    {
        Console.Error.WriteLine("mirrorfs-meta: no commands yet");
        return args.Length == 0 ? 2 : 2;
    }
}
