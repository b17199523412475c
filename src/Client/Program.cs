// mirrorfs: the user CLI (format, mount, umount, info, status, bench, objbench).
namespace MirrorFS.Client;

public static class Program
{
    public static int Main(string[] args)
    {
        _ = args;
        Console.Error.WriteLine("mirrorfs: the client CLI is being built (see issue: FUSE client)");
        return 2;
    }
}
