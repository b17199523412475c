// Names and fixed values of the JSON dump format (docs/dump-format.md); shared by the writer and the loader.
using MirrorFS.Core.Meta;

namespace MirrorFS.Client.Dump;

public static class DumpFormat
{
    public const string FormatName = "mirrorfs-dump";
    public const int Version = 1;

    /// <summary>Deepest directory nesting a dump may hold (a path of one-byte names within PATH_MAX is far less).</summary>
    public const int TreeDepthMax = 32_768;

    /// <summary>JSON nesting that allows it: two levels per directory (its object and its "entries" array), plus the
    /// document's own levels.</summary>
    public const int JsonDepthMax = (2 * TreeDepthMax) + 16;

    /// <summary>The "type" strings by S_IFMT value.</summary>
    public static string TypeName(uint mode) => PosixMode.Type(mode) switch
    {
        PosixMode.Directory => "directory",
        PosixMode.Regular => "file",
        PosixMode.Symlink => "symlink",
        PosixMode.Fifo => "fifo",
        PosixMode.Socket => "socket",
        PosixMode.Char => "char",
        PosixMode.Block => "block",
        _ => "unknown",
    };

    /// <summary>The S_IFMT value of a "type" string, or 0 for an unknown one.</summary>
    public static uint TypeBits(string name) => name switch
    {
        "directory" => PosixMode.Directory,
        "file" => PosixMode.Regular,
        "symlink" => PosixMode.Symlink,
        "fifo" => PosixMode.Fifo,
        "socket" => PosixMode.Socket,
        "char" => PosixMode.Char,
        "block" => PosixMode.Block,
        _ => 0,
    };
}

/// <summary>A dump file that cannot be read or loaded; the message is one line.</summary>
public sealed class DumpFormatException(string message) : Exception(message);
