// Compiles a C probe against /usr/include/fuse3 and compares every size and offset the binding assumes.
using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Text;
using MirrorFS.Client.Fuse;

namespace MirrorFS.Client.Tests.Fuse;

public sealed unsafe class FuseLayoutTests
{
    private static long Off<T>(ref T root, ref byte field) where T : struct =>
        Unsafe.ByteOffset(ref Unsafe.As<T, byte>(ref root), ref field);

    private static List<(string Key, string C, long Managed)> Expectations()
    {
        var list = new List<(string, string, long)>();
        void Size<T>(string c) where T : unmanaged => list.Add(("sizeof " + c, $"sizeof({c})", sizeof(T)));
        void At(string c, string field, long managed) => list.Add(($"offsetof {c}.{field}", $"offsetof({c}, {field})", managed));

        var st = default(FuseStat);
        Size<FuseStat>("struct stat");
        At("struct stat", "st_dev", Off(ref st, ref Unsafe.As<ulong, byte>(ref st.Dev)));
        At("struct stat", "st_ino", Off(ref st, ref Unsafe.As<ulong, byte>(ref st.Ino)));
        At("struct stat", "st_nlink", Off(ref st, ref Unsafe.As<ulong, byte>(ref st.Nlink)));
        At("struct stat", "st_mode", Off(ref st, ref Unsafe.As<uint, byte>(ref st.Mode)));
        At("struct stat", "st_uid", Off(ref st, ref Unsafe.As<uint, byte>(ref st.Uid)));
        At("struct stat", "st_gid", Off(ref st, ref Unsafe.As<uint, byte>(ref st.Gid)));
        At("struct stat", "st_rdev", Off(ref st, ref Unsafe.As<ulong, byte>(ref st.Rdev)));
        At("struct stat", "st_size", Off(ref st, ref Unsafe.As<long, byte>(ref st.Size)));
        At("struct stat", "st_blksize", Off(ref st, ref Unsafe.As<long, byte>(ref st.Blksize)));
        At("struct stat", "st_blocks", Off(ref st, ref Unsafe.As<long, byte>(ref st.Blocks)));
        At("struct stat", "st_atim.tv_sec", Off(ref st, ref Unsafe.As<long, byte>(ref st.AtimeSec)));
        At("struct stat", "st_atim.tv_nsec", Off(ref st, ref Unsafe.As<long, byte>(ref st.AtimeNsec)));
        At("struct stat", "st_mtim.tv_sec", Off(ref st, ref Unsafe.As<long, byte>(ref st.MtimeSec)));
        At("struct stat", "st_mtim.tv_nsec", Off(ref st, ref Unsafe.As<long, byte>(ref st.MtimeNsec)));
        At("struct stat", "st_ctim.tv_sec", Off(ref st, ref Unsafe.As<long, byte>(ref st.CtimeSec)));
        At("struct stat", "st_ctim.tv_nsec", Off(ref st, ref Unsafe.As<long, byte>(ref st.CtimeNsec)));

        var e = default(FuseEntry);
        Size<FuseEntry>("struct fuse_entry_param");
        At("struct fuse_entry_param", "ino", Off(ref e, ref Unsafe.As<ulong, byte>(ref e.Ino)));
        At("struct fuse_entry_param", "generation", Off(ref e, ref Unsafe.As<ulong, byte>(ref e.Generation)));
        At("struct fuse_entry_param", "attr", Off(ref e, ref Unsafe.As<FuseStat, byte>(ref e.Attr)));
        At("struct fuse_entry_param", "attr_timeout", Off(ref e, ref Unsafe.As<double, byte>(ref e.AttrTimeout)));
        At("struct fuse_entry_param", "entry_timeout", Off(ref e, ref Unsafe.As<double, byte>(ref e.EntryTimeout)));

        var fi = default(FuseFileInfo);
        Size<FuseFileInfo>("struct fuse_file_info");
        At("struct fuse_file_info", "flags", Off(ref fi, ref Unsafe.As<int, byte>(ref fi.Flags)));
        At("struct fuse_file_info", "fh", Off(ref fi, ref Unsafe.As<ulong, byte>(ref fi.Fh)));
        At("struct fuse_file_info", "lock_owner", Off(ref fi, ref Unsafe.As<ulong, byte>(ref fi.LockOwner)));
        At("struct fuse_file_info", "poll_events", Off(ref fi, ref Unsafe.As<uint, byte>(ref fi.PollEvents)));
        // Bitfields have no offsetof: the probe sets each one and reports the 32-bit word at offset 4.
        list.Add(("bitword direct_io", "BIT(direct_io)", FuseFileInfo.DirectIoBit));
        list.Add(("bitword keep_cache", "BIT(keep_cache)", FuseFileInfo.KeepCacheBit));
        list.Add(("bitword writepage", "BIT(writepage)", FuseFileInfo.WritePageBit));
        list.Add(("bitword flush", "BIT(flush)", FuseFileInfo.FlushBit));
        list.Add(("bitword nonseekable", "BIT(nonseekable)", FuseFileInfo.NonSeekableBit));
        list.Add(("bitword flock_release", "BIT(flock_release)", FuseFileInfo.FlockReleaseBit));
        list.Add(("bitword cache_readdir", "BIT(cache_readdir)", FuseFileInfo.CacheReaddirBit));
        list.Add(("bitword noflush", "BIT(noflush)", FuseFileInfo.NoFlushBit));
        list.Add(("offset of bitword", "4", Off(ref fi, ref Unsafe.As<uint, byte>(ref fi.Bits))));

        var ctx = default(FuseCtx);
        Size<FuseCtx>("struct fuse_ctx");
        At("struct fuse_ctx", "uid", Off(ref ctx, ref Unsafe.As<uint, byte>(ref ctx.Uid)));
        At("struct fuse_ctx", "gid", Off(ref ctx, ref Unsafe.As<uint, byte>(ref ctx.Gid)));
        At("struct fuse_ctx", "pid", Off(ref ctx, ref Unsafe.As<int, byte>(ref ctx.Pid)));
        At("struct fuse_ctx", "umask", Off(ref ctx, ref Unsafe.As<uint, byte>(ref ctx.Umask)));

        var sv = default(FuseStatVfs);
        Size<FuseStatVfs>("struct statvfs");
        At("struct statvfs", "f_bsize", Off(ref sv, ref Unsafe.As<ulong, byte>(ref sv.Bsize)));
        At("struct statvfs", "f_frsize", Off(ref sv, ref Unsafe.As<ulong, byte>(ref sv.Frsize)));
        At("struct statvfs", "f_blocks", Off(ref sv, ref Unsafe.As<ulong, byte>(ref sv.Blocks)));
        At("struct statvfs", "f_bfree", Off(ref sv, ref Unsafe.As<ulong, byte>(ref sv.Bfree)));
        At("struct statvfs", "f_bavail", Off(ref sv, ref Unsafe.As<ulong, byte>(ref sv.Bavail)));
        At("struct statvfs", "f_files", Off(ref sv, ref Unsafe.As<ulong, byte>(ref sv.Files)));
        At("struct statvfs", "f_ffree", Off(ref sv, ref Unsafe.As<ulong, byte>(ref sv.Ffree)));
        At("struct statvfs", "f_favail", Off(ref sv, ref Unsafe.As<ulong, byte>(ref sv.Favail)));
        At("struct statvfs", "f_fsid", Off(ref sv, ref Unsafe.As<ulong, byte>(ref sv.Fsid)));
        At("struct statvfs", "f_flag", Off(ref sv, ref Unsafe.As<ulong, byte>(ref sv.Flag)));
        At("struct statvfs", "f_namemax", Off(ref sv, ref Unsafe.As<ulong, byte>(ref sv.Namemax)));

        var fl = default(FuseFlock);
        Size<FuseFlock>("struct flock");
        At("struct flock", "l_type", Off(ref fl, ref Unsafe.As<short, byte>(ref fl.Type)));
        At("struct flock", "l_whence", Off(ref fl, ref Unsafe.As<short, byte>(ref fl.Whence)));
        At("struct flock", "l_start", Off(ref fl, ref Unsafe.As<long, byte>(ref fl.Start)));
        At("struct flock", "l_len", Off(ref fl, ref Unsafe.As<long, byte>(ref fl.Len)));
        At("struct flock", "l_pid", Off(ref fl, ref Unsafe.As<int, byte>(ref fl.Pid)));

        var fd = default(FuseForgetData);
        Size<FuseForgetData>("struct fuse_forget_data");
        At("struct fuse_forget_data", "ino", Off(ref fd, ref Unsafe.As<ulong, byte>(ref fd.Ino)));
        At("struct fuse_forget_data", "nlookup", Off(ref fd, ref Unsafe.As<ulong, byte>(ref fd.Nlookup)));

        var ci = default(FuseConnInfo);
        Size<FuseConnInfo>("struct fuse_conn_info");
        At("struct fuse_conn_info", "proto_major", Off(ref ci, ref Unsafe.As<uint, byte>(ref ci.ProtoMajor)));
        At("struct fuse_conn_info", "max_write", Off(ref ci, ref Unsafe.As<uint, byte>(ref ci.MaxWrite)));
        At("struct fuse_conn_info", "max_readahead", Off(ref ci, ref Unsafe.As<uint, byte>(ref ci.MaxReadahead)));
        At("struct fuse_conn_info", "capable", Off(ref ci, ref Unsafe.As<uint, byte>(ref ci.Capable)));
        At("struct fuse_conn_info", "want", Off(ref ci, ref Unsafe.As<uint, byte>(ref ci.Want)));
        At("struct fuse_conn_info", "max_background", Off(ref ci, ref Unsafe.As<uint, byte>(ref ci.MaxBackground)));
        At("struct fuse_conn_info", "time_gran", Off(ref ci, ref Unsafe.As<uint, byte>(ref ci.TimeGran)));

        var a = default(FuseArgs);
        Size<FuseArgs>("struct fuse_args");
        At("struct fuse_args", "argc", Off(ref a, ref Unsafe.As<int, byte>(ref a.Argc)));
        At("struct fuse_args", "argv", (long)System.Runtime.InteropServices.Marshal.OffsetOf<FuseArgs>(nameof(FuseArgs.Argv)));
        At("struct fuse_args", "allocated", Off(ref a, ref Unsafe.As<int, byte>(ref a.Allocated)));

        Size<FuseLowLevelOps>("struct fuse_lowlevel_ops");
        foreach (var (c, managed) in new (string, string)[]
        {
            ("init", nameof(FuseLowLevelOps.Init)), ("destroy", nameof(FuseLowLevelOps.Destroy)), ("lookup", nameof(FuseLowLevelOps.Lookup)),
            ("forget", nameof(FuseLowLevelOps.Forget)), ("getattr", nameof(FuseLowLevelOps.GetAttr)), ("setattr", nameof(FuseLowLevelOps.SetAttr)),
            ("readlink", nameof(FuseLowLevelOps.ReadLink)), ("mknod", nameof(FuseLowLevelOps.MkNod)), ("mkdir", nameof(FuseLowLevelOps.MkDir)),
            ("unlink", nameof(FuseLowLevelOps.Unlink)), ("rmdir", nameof(FuseLowLevelOps.RmDir)), ("symlink", nameof(FuseLowLevelOps.SymLink)),
            ("rename", nameof(FuseLowLevelOps.Rename)), ("link", nameof(FuseLowLevelOps.Link)), ("open", nameof(FuseLowLevelOps.Open)),
            ("read", nameof(FuseLowLevelOps.Read)), ("write", nameof(FuseLowLevelOps.Write)), ("flush", nameof(FuseLowLevelOps.Flush)),
            ("release", nameof(FuseLowLevelOps.Release)), ("fsync", nameof(FuseLowLevelOps.FSync)), ("opendir", nameof(FuseLowLevelOps.OpenDir)),
            ("readdir", nameof(FuseLowLevelOps.ReadDir)), ("releasedir", nameof(FuseLowLevelOps.ReleaseDir)), ("fsyncdir", nameof(FuseLowLevelOps.FSyncDir)),
            ("statfs", nameof(FuseLowLevelOps.StatFs)), ("setxattr", nameof(FuseLowLevelOps.SetXattr)), ("getxattr", nameof(FuseLowLevelOps.GetXattr)),
            ("listxattr", nameof(FuseLowLevelOps.ListXattr)), ("removexattr", nameof(FuseLowLevelOps.RemoveXattr)), ("access", nameof(FuseLowLevelOps.Access)),
            ("create", nameof(FuseLowLevelOps.Create)), ("getlk", nameof(FuseLowLevelOps.GetLk)), ("setlk", nameof(FuseLowLevelOps.SetLk)),
            ("bmap", nameof(FuseLowLevelOps.Bmap)), ("ioctl", nameof(FuseLowLevelOps.Ioctl)), ("poll", nameof(FuseLowLevelOps.Poll)),
            ("write_buf", nameof(FuseLowLevelOps.WriteBuf)), ("retrieve_reply", nameof(FuseLowLevelOps.RetrieveReply)),
            ("forget_multi", nameof(FuseLowLevelOps.ForgetMulti)), ("flock", nameof(FuseLowLevelOps.Flock)), ("fallocate", nameof(FuseLowLevelOps.Fallocate)),
            ("readdirplus", nameof(FuseLowLevelOps.ReadDirPlus)), ("copy_file_range", nameof(FuseLowLevelOps.CopyFileRange)), ("lseek", nameof(FuseLowLevelOps.Lseek)),
        })
        {
            At("struct fuse_lowlevel_ops", c, (long)System.Runtime.InteropServices.Marshal.OffsetOf<FuseLowLevelOps>(managed));
        }
        return list;
    }

    [Fact]
    public void ManagedStructsMatchTheCHeaders()
    {
        var dir = Directory.CreateTempSubdirectory("fuse-layout-");
        try
        {
            var expectations = Expectations();
            var src = new StringBuilder();
            src.AppendLine("#define FUSE_USE_VERSION 312");
            src.AppendLine("#define _FILE_OFFSET_BITS 64");
            src.AppendLine("#include <fuse_lowlevel.h>");
            src.AppendLine("#include <sys/stat.h>\n#include <sys/statvfs.h>\n#include <fcntl.h>\n#include <stdio.h>\n#include <stddef.h>\n#include <string.h>");
            src.AppendLine("static unsigned bitword(struct fuse_file_info *f) { unsigned w; memcpy(&w, (char*)f + 4, 4); return w; }");
            src.AppendLine("#define BIT(name) ({ struct fuse_file_info f; memset(&f, 0, sizeof f); f.name = 1; bitword(&f); })");
            src.AppendLine("int main(void) {");
            foreach (var (key, c, _) in expectations)
            {
                src.AppendLine($"  printf(\"%s=%ld\\n\", \"{key}\", (long)({c}));");
            }
            src.AppendLine("  return 0; }");
            var cFile = Path.Combine(dir.FullName, "probe.c");
            var exe = Path.Combine(dir.FullName, "probe");
            File.WriteAllText(cFile, src.ToString());
            var (ccode, ccOut) = RunProcess("gcc", ["-Wall", "-I/usr/include/fuse3", "-o", exe, cFile]);
            Assert.True(ccode == 0, "gcc failed to compile the layout probe:\n" + ccOut);
            var (rcode, output) = RunProcess(exe, []);
            Assert.Equal(0, rcode);

            var native = output.Split('\n', StringSplitOptions.RemoveEmptyEntries)
                .Select(l => l.Split('=', 2)).ToDictionary(p => p[0], p => long.Parse(p[1], System.Globalization.CultureInfo.InvariantCulture));
            var mismatches = expectations.Where(x => native[x.Key] != x.Managed)
                .Select(x => $"{x.Key}: C says {native[x.Key]}, C# says {x.Managed}").ToList();
            Assert.True(mismatches.Count == 0, "FUSE struct layout mismatch:\n" + string.Join('\n', mismatches));
            // The facts measured on this machine, as a second anchor.
            Assert.Equal(144, native["sizeof struct stat"]);
            Assert.Equal(176, native["sizeof struct fuse_entry_param"]);
            Assert.Equal(40, native["sizeof struct fuse_file_info"]);
            Assert.Equal(352, native["sizeof struct fuse_lowlevel_ops"]);
            Assert.Equal(expectations.Count, native.Count);
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    private static (int Code, string Output) RunProcess(string file, string[] args)
    {
        using var p = Process.Start(new ProcessStartInfo(file, args) { RedirectStandardOutput = true, RedirectStandardError = true })!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(60_000))
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"{file} did not finish within 60 s");
        }
        return (p.ExitCode, stdout.Result + stderr.Result);
    }
}
