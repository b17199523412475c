// mirrorfs umount: unmounts a mirrorfs mount through fusermount3 (works without root for the user's own mounts).
using System.CommandLine;
using System.Diagnostics;
using System.ComponentModel;

namespace MirrorFS.Client.Cli;

public static class UmountCommand
{
    public const int FusermountTimeoutMs = 30_000;

    public static Command Create(CliContext ctx)
    {
        var mountPoint = new Argument<string>("MOUNTPOINT") { Description = "Where the volume is mounted" };
        var lazy = new Option<bool>("--lazy", "-l") { Description = "Detach now even if busy; clean up when no longer in use" };
        var cmd = new Command("umount", "Unmount a mirrorfs mount") { mountPoint, lazy };
        cmd.SetAction(CliApp.Guard(ctx, "umount", async (parse, ct) =>
        {
            var given = parse.GetValue(mountPoint)!;
            var full = MountTable.Normalize(given);
            var mount = MountTable.ReadSelf().LastOrDefault(m => m.MountPoint == full);
            if (mount is null)
            {
                throw new CliException($"{given} is not mounted");
            }
            await RunFusermountAsync(full, parse.GetValue(lazy), ct).ConfigureAwait(false);
            return 0;
        }));
        return cmd;
    }

    private static async Task RunFusermountAsync(string mountPoint, bool lazy, CancellationToken ct)
    {
        var psi = new ProcessStartInfo("fusermount3")
        {
            RedirectStandardError = true,
            RedirectStandardOutput = true,
            UseShellExecute = false,
        };
        psi.ArgumentList.Add(lazy ? "-uz" : "-u");
        psi.ArgumentList.Add(mountPoint);
        Process? p;
        try
        {
            p = Process.Start(psi);
        }
        catch (Win32Exception)
        {
            throw new CliException("fusermount3 was not found: install fuse3 (bash deploy/install-deps.sh)");
        }
        if (p is null)
        {
            throw new CliException("fusermount3 could not be started");
        }
        using (p)
        {
            var stderr = p.StandardError.ReadToEndAsync(ct);
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
            timeout.CancelAfter(FusermountTimeoutMs);
            try
            {
                await p.WaitForExitAsync(timeout.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (!ct.IsCancellationRequested)
            {
                p.Kill();
                throw new CliException($"fusermount3 did not finish unmounting {mountPoint} within {FusermountTimeoutMs / 1000} s: try --lazy");
            }
            if (p.ExitCode != 0)
            {
                var err = MetaConnection.FirstLine((await stderr.ConfigureAwait(false)).Trim());
                var busy = err.Contains("busy", StringComparison.OrdinalIgnoreCase) ? " (files are in use: close them or use --lazy)" : "";
                throw new CliException($"unmounting {mountPoint} failed: {err}{busy}");
            }
        }
    }
}
