// The bearer token file shared by a cluster's members and its clients.
using System.Security.Cryptography;

namespace MirrorFS.MetaServer.Cli;

public static class Tokens
{
    /// <summary>Shortest token accepted from a file.</summary>
    public const int TokenCharsMin = 16;

    /// <summary>Reads the token file, or writes a new random token there (mode 0600) when it does not exist. Several
    /// members starting at once on one file agree: the first to create it wins and the others read it.</summary>
    public static string LoadOrCreate(string path)
    {
        if (!File.Exists(path))
        {
            var token = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(24));
            try
            {
                using var fs = new FileStream(path, new FileStreamOptions
                {
                    Mode = FileMode.CreateNew,
                    Access = FileAccess.Write,
                    UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite,
                });
                using var w = new StreamWriter(fs);
                w.WriteLine(token);
                return token;
            }
            catch (IOException) when (File.Exists(path))
            {
                // Another process created it first.
            }
        }
        return Load(path);
    }

    public static string Load(string path)
    {
        string text;
        try
        {
            text = File.ReadAllText(path).Trim();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new IOException($"cannot read token file {path}: {e.Message}", e);
        }
        if (text.Length < TokenCharsMin)
        {
            throw new IOException($"token file {path} holds fewer than {TokenCharsMin} characters; write a longer token or delete the file");
        }
        return text;
    }
}
