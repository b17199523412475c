// Model-based test: seeded random operations against MetaService and a small path-tree reference model.
using System.Globalization;
using MirrorFS.Core.Meta;
using Xunit.Abstractions;
using static MirrorFS.MetaServer.Tests.Engine.MetaHarness;

namespace MirrorFS.MetaServer.Tests.Engine;

/// <summary>A node of the reference model: a plain tree of names, with hard links as shared nodes.</summary>
internal sealed class MNode
{
    public uint Type { get; init; }

    public uint Perm { get; set; }

    public uint Uid { get; set; }

    public uint Gid { get; set; }

    public ulong Size { get; set; }

    public string? Target { get; init; }

    public long Mtime { get; set; }

    public long Ctime { get; set; }

    public ulong Ino { get; set; }

    /// <summary>Names pointing at a non-directory.</summary>
    public int Links { get; set; } = 1;

    public SortedDictionary<string, MNode>? Children { get; init; }

    public MNode? Parent { get; set; }

    public bool IsDir => Type == PosixMode.Directory;

    public uint Mode => Type | Perm;

    /// <summary>Directories: 2 + subdirectories, computed from the tree rather than maintained.</summary>
    public uint Nlink => IsDir ? 2 + (uint)Children!.Values.Count(c => c.IsDir) : (uint)Links;

    public ulong ShownSize => IsDir ? 4096 : Size;
}

/// <summary>
/// The reference: Linux rules restated over a path tree, in the order the kernel checks them. It shares no code
/// with the engine; inode numbers are learned from the engine's replies.
/// </summary>
internal sealed class ModelFs
{
    public const uint SetUid = 0x800, SetGid = 0x400, Sticky = 0x200, GroupExec = 0x8;

    public ModelFs(uint rootPerm)
    {
        Root = new MNode { Type = PosixMode.Directory, Perm = rootPerm, Children = [], Ino = 1 };
    }

    public MNode Root { get; }

    public long Now { get; set; }

    public List<ulong> Dead { get; } = [];

    public static bool IsRoot(Credentials c) => c.Uid == 0;

    public static bool InGroup(Credentials c, uint gid) => c.Gid == gid || c.Gids.Contains(gid);

    public IEnumerable<MNode> All()
    {
        var stack = new Stack<MNode>([Root]);
        while (stack.Count > 0)
        {
            var n = stack.Pop();
            yield return n;
            if (n.IsDir)
            {
                foreach (var c in n.Children!.Values)
                {
                    if (c.IsDir)
                    {
                        stack.Push(c);
                    }
                    else if (c.Links > 0)
                    {
                        yield return c; // a hard-linked file shows once per name; callers deduplicate if needed
                    }
                }
            }
        }
    }

    private static int CheckParent(MNode? p) => p is null ? Errno.ENOENT : !p.IsDir ? Errno.ENOTDIR : 0;

    private static int CheckName(string name)
    {
        var bytes = System.Text.Encoding.UTF8.GetByteCount(name);
        return bytes == 0 ? Errno.ENOENT : bytes > 255 ? Errno.ENAMETOOLONG : 0;
    }

    private static bool IsDots(string n) => n is "." or "..";

    private static bool StickyDenies(MNode dir, MNode victim, Credentials c) =>
        (dir.Perm & Sticky) != 0 && !IsRoot(c) && c.Uid != victim.Uid && c.Uid != dir.Uid;

    private static bool IsAncestorOrSelf(MNode a, MNode x)
    {
        for (var n = x; n is not null; n = n.Parent)
        {
            if (n == a)
            {
                return true;
            }
        }
        return false;
    }

    private void Touch(MNode dir)
    {
        dir.Mtime = Now;
        dir.Ctime = Now;
    }

    private void Kill(MNode n)
    {
        Dead.Add(n.Ino);
        if (n.IsDir)
        {
            n.Parent = null;
        }
    }

    /// <summary>mkdir, mknod (regular) and symlink; <paramref name="node"/> is the new node on success.</summary>
    public int Create(MNode? p, string name, uint type, uint mode, uint umask, Credentials c, string? target, out MNode? node)
    {
        node = null;
        var e = CheckParent(p);
        if (e != 0)
        {
            return e;
        }
        if (type == PosixMode.Symlink)
        {
            // (target checks come first in symlink(2); the test only uses valid targets)
        }
        if (IsDots(name))
        {
            return Errno.EEXIST;
        }
        if ((e = CheckName(name)) != 0)
        {
            return e;
        }
        if (p!.Children!.ContainsKey(name))
        {
            return Errno.EEXIST;
        }
        var perm = mode & 0xFFF & ~umask;
        if (type == PosixMode.Directory)
        {
            perm &= 0x3FF;
        }
        if (type == PosixMode.Symlink)
        {
            perm = 0x1FF;
        }
        var gid = c.Gid;
        if ((p.Perm & SetGid) != 0)
        {
            gid = p.Gid;
            if (type == PosixMode.Directory)
            {
                perm |= SetGid;
            }
            else if ((perm & (SetGid | GroupExec)) == (SetGid | GroupExec) && !IsRoot(c) && !InGroup(c, p.Gid))
            {
                perm &= ~SetGid;
            }
        }
        node = new MNode
        {
            Type = type,
            Perm = perm,
            Uid = c.Uid,
            Gid = gid,
            Size = target is null ? 0 : (ulong)System.Text.Encoding.UTF8.GetByteCount(target),
            Target = target,
            Mtime = Now,
            Ctime = Now,
            Children = type == PosixMode.Directory ? [] : null,
            Parent = type == PosixMode.Directory ? p : null,
        };
        p.Children[name] = node;
        Touch(p);
        return 0;
    }

    public int Link(MNode? src, MNode? p, string name)
    {
        if (src is null)
        {
            return Errno.ENOENT;
        }
        var e = CheckParent(p);
        if (e != 0)
        {
            return e;
        }
        if (IsDots(name))
        {
            return Errno.EEXIST;
        }
        if ((e = CheckName(name)) != 0)
        {
            return e;
        }
        if (p!.Children!.ContainsKey(name))
        {
            return Errno.EEXIST;
        }
        if (src.IsDir)
        {
            return Errno.EPERM;
        }
        src.Links++;
        src.Ctime = Now;
        p.Children[name] = src;
        Touch(p);
        return 0;
    }

    public int Unlink(MNode? p, string name, Credentials c)
    {
        var e = CheckParent(p);
        if (e != 0)
        {
            return e;
        }
        if (IsDots(name))
        {
            return Errno.EISDIR;
        }
        if ((e = CheckName(name)) != 0)
        {
            return e;
        }
        if (!p!.Children!.TryGetValue(name, out var victim))
        {
            return Errno.ENOENT;
        }
        if (StickyDenies(p, victim, c))
        {
            return Errno.EPERM;
        }
        if (victim.IsDir)
        {
            return Errno.EISDIR;
        }
        p.Children.Remove(name);
        Touch(p);
        victim.Links--;
        victim.Ctime = Now;
        if (victim.Links == 0)
        {
            Kill(victim);
        }
        return 0;
    }

    public int Rmdir(MNode? p, string name, Credentials c)
    {
        var e = CheckParent(p);
        if (e != 0)
        {
            return e;
        }
        if (name == ".")
        {
            return Errno.EINVAL;
        }
        if (name == "..")
        {
            return Errno.ENOTEMPTY;
        }
        if ((e = CheckName(name)) != 0)
        {
            return e;
        }
        if (!p!.Children!.TryGetValue(name, out var victim))
        {
            return Errno.ENOENT;
        }
        if (StickyDenies(p, victim, c))
        {
            return Errno.EPERM;
        }
        if (!victim.IsDir)
        {
            return Errno.ENOTDIR;
        }
        if (victim.Children!.Count > 0)
        {
            return Errno.ENOTEMPTY;
        }
        p.Children.Remove(name);
        Touch(p);
        Kill(victim);
        return 0;
    }

    public int Rename(MNode? op, string on, MNode? np, string nn, uint flags, Credentials c)
    {
        const uint noReplace = 1, exchange = 2;
        if ((flags & ~3u) != 0 || flags == 3)
        {
            return Errno.EINVAL;
        }
        var e = CheckParent(op);
        if (e != 0 || (e = CheckParent(np)) != 0)
        {
            return e;
        }
        if ((e = CheckName(on)) != 0 || (e = CheckName(nn)) != 0)
        {
            return e;
        }
        if (IsDots(on))
        {
            return Errno.EBUSY;
        }
        if (IsDots(nn))
        {
            return (flags & noReplace) != 0 ? Errno.EEXIST : Errno.EBUSY;
        }
        if (!op!.Children!.TryGetValue(on, out var src))
        {
            return Errno.ENOENT;
        }
        np!.Children!.TryGetValue(nn, out var dst);
        if (dst is not null && (flags & noReplace) != 0)
        {
            return Errno.EEXIST;
        }
        if (dst is null && (flags & exchange) != 0)
        {
            return Errno.ENOENT;
        }
        if (src.IsDir && IsAncestorOrSelf(src, np))
        {
            return Errno.EINVAL;
        }
        if (dst is { IsDir: true } && IsAncestorOrSelf(dst, op))
        {
            return (flags & exchange) != 0 ? Errno.EINVAL : Errno.ENOTEMPTY;
        }
        if (src == dst)
        {
            return 0;
        }
        if (StickyDenies(op, src, c) || (dst is not null && StickyDenies(np, dst, c)))
        {
            return Errno.EPERM;
        }
        if (dst is not null && (flags & exchange) == 0)
        {
            if (src.IsDir && !dst.IsDir)
            {
                return Errno.ENOTDIR;
            }
            if (!src.IsDir && dst.IsDir)
            {
                return Errno.EISDIR;
            }
            if (dst.IsDir && dst.Children!.Count > 0)
            {
                return Errno.ENOTEMPTY;
            }
        }
        if ((flags & exchange) != 0)
        {
            op.Children[on] = dst!;
            np.Children[nn] = src;
            if (src.IsDir)
            {
                src.Parent = np;
            }
            if (dst!.IsDir)
            {
                dst.Parent = op;
            }
            src.Ctime = Now;
            dst.Ctime = Now;
        }
        else
        {
            op.Children.Remove(on);
            if (dst is not null)
            {
                if (dst.IsDir)
                {
                    Kill(dst);
                }
                else
                {
                    dst.Links--;
                    dst.Ctime = Now;
                    if (dst.Links == 0)
                    {
                        Kill(dst);
                    }
                }
            }
            np.Children[nn] = src;
            if (src.IsDir)
            {
                src.Parent = np;
            }
            src.Ctime = Now;
        }
        Touch(op);
        Touch(np);
        return 0;
    }

    private static bool KillOnWrite(MNode n, Credentials c)
    {
        if (IsRoot(c) || n.Type != PosixMode.Regular)
        {
            return false;
        }
        var p = n.Perm & ~SetUid;
        if ((p & SetGid) != 0 && (p & GroupExec) != 0)
        {
            p &= ~SetGid;
        }
        var changed = p != n.Perm;
        n.Perm = p;
        return changed;
    }

    public int SetAttr(MNode? n, SetAttrRequest r, Credentials c)
    {
        if (n is null)
        {
            return Errno.ENOENT;
        }
        var v = (SetAttrValid)r.Valid;
        var owner = IsRoot(c) || c.Uid == n.Uid;
        if (v.HasFlag(SetAttrValid.Size))
        {
            if (n.IsDir)
            {
                return Errno.EISDIR;
            }
            if (n.Type != PosixMode.Regular)
            {
                return Errno.EINVAL;
            }
        }
        if (v.HasFlag(SetAttrValid.Uid) && !IsRoot(c) && !(c.Uid == n.Uid && r.Uid == n.Uid))
        {
            return Errno.EPERM;
        }
        if (v.HasFlag(SetAttrValid.Gid) && !IsRoot(c) && !(c.Uid == n.Uid && (r.Gid == n.Gid || InGroup(c, r.Gid))))
        {
            return Errno.EPERM;
        }
        if (v.HasFlag(SetAttrValid.Mode) && !owner)
        {
            return Errno.EPERM;
        }
        var explicitTimes = (v.HasFlag(SetAttrValid.Atime) && !v.HasFlag(SetAttrValid.AtimeNow))
                            || (v.HasFlag(SetAttrValid.Mtime) && !v.HasFlag(SetAttrValid.MtimeNow));
        if (explicitTimes && !owner)
        {
            return Errno.EPERM;
        }
        var touched = (r.Valid & (uint)(SetAttrValid.Mode | SetAttrValid.Uid | SetAttrValid.Gid | SetAttrValid.Atime
                                        | SetAttrValid.Mtime | SetAttrValid.AtimeNow | SetAttrValid.MtimeNow)) != 0;
        if ((v.HasFlag(SetAttrValid.Uid) || v.HasFlag(SetAttrValid.Gid)) && !v.HasFlag(SetAttrValid.Mode) && !n.IsDir)
        {
            n.Perm &= ~SetUid;
            if ((n.Perm & SetGid) != 0 && ((n.Perm & GroupExec) != 0 || !(IsRoot(c) || InGroup(c, n.Gid))))
            {
                n.Perm &= ~SetGid;
            }
        }
        if (v.HasFlag(SetAttrValid.Uid))
        {
            n.Uid = r.Uid;
        }
        if (v.HasFlag(SetAttrValid.Gid))
        {
            n.Gid = r.Gid;
        }
        if (v.HasFlag(SetAttrValid.Mode))
        {
            n.Perm = r.Mode & 0xFFF;
            if (!IsRoot(c) && !InGroup(c, n.Gid))
            {
                n.Perm &= ~SetGid;
            }
        }
        if (v.HasFlag(SetAttrValid.Size))
        {
            if (!v.HasFlag(SetAttrValid.Mode) && KillOnWrite(n, c))
            {
                touched = true;
            }
            if (r.Size != n.Size)
            {
                n.Size = r.Size;
                n.Mtime = Now;
                touched = true;
            }
        }
        if (v.HasFlag(SetAttrValid.MtimeNow))
        {
            n.Mtime = Now;
        }
        else if (v.HasFlag(SetAttrValid.Mtime))
        {
            n.Mtime = r.MtimeNs;
        }
        if (touched)
        {
            n.Ctime = Now;
        }
        return 0;
    }

    public int Write(MNode? n, ulong end, Credentials c)
    {
        if (n is null)
        {
            return Errno.ENOENT;
        }
        if (n.IsDir)
        {
            return Errno.EISDIR;
        }
        if (n.Type != PosixMode.Regular)
        {
            return Errno.EINVAL;
        }
        n.Size = Math.Max(n.Size, end);
        n.Mtime = Now;
        n.Ctime = Now;
        KillOnWrite(n, c);
        return 0;
    }

    public int Truncate(MNode? n, ulong size, Credentials c)
    {
        if (n is null)
        {
            return Errno.ENOENT;
        }
        if (n.IsDir)
        {
            return Errno.EISDIR;
        }
        if (n.Type != PosixMode.Regular)
        {
            return Errno.EINVAL;
        }
        var killed = KillOnWrite(n, c);
        if (size != n.Size)
        {
            n.Size = size;
            n.Mtime = Now;
            n.Ctime = Now;
        }
        else if (killed)
        {
            n.Ctime = Now;
        }
        return 0;
    }
}

public sealed class ModelBasedTests(ITestOutputHelper output)
{
    private const int DefaultSeeds = 200;
    private const int DefaultOps = 300;
    private const int FullCompareEveryOps = 10;

    private static readonly Credentials[] Users =
    [
        RootCred,
        User(1000, 1000),
        User(1001, 1001, 1000),
    ];

    private static readonly string[] Pool = ["a", "b", "c", "d", "e"];

    /// <summary>MIRRORFS_MODEL_SEEDS: a count ("5000": seeds 1..5000) or a range ("42-42" replays seed 42).</summary>
    private static (int First, int Last) SeedRange()
    {
        var env = Environment.GetEnvironmentVariable("MIRRORFS_MODEL_SEEDS");
        if (string.IsNullOrWhiteSpace(env))
        {
            return (1, DefaultSeeds);
        }
        var dash = env.IndexOf('-', StringComparison.Ordinal);
        return dash > 0
            ? (int.Parse(env[..dash], CultureInfo.InvariantCulture), int.Parse(env[(dash + 1)..], CultureInfo.InvariantCulture))
            : (1, int.Parse(env, CultureInfo.InvariantCulture));
    }

    [Fact]
    public async Task Engine_matches_reference_model()
    {
        var (first, last) = SeedRange();
        var ops = int.TryParse(Environment.GetEnvironmentVariable("MIRRORFS_MODEL_OPS"), out var o) ? o : DefaultOps;
        var started = DateTime.UtcNow;
        for (var seed = first; seed <= last; seed++)
        {
            await RunSeedAsync(seed, ops);
        }
        output.WriteLine($"model test: seeds {first}..{last}, {ops} ops each, {(DateTime.UtcNow - started).TotalSeconds:F1} s");
    }

    private sealed class SeedFailure(string message) : Exception(message);

    private async Task RunSeedAsync(int seed, int ops)
    {
        var rng = new Random(seed);
        var rootPerm = rng.Next(2) == 0 ? 0x1FFu : 0x3FFu; // 0777 or sticky 1777
        using var h = await StartAsync(rootMode: rootPerm);
        var m = new ModelFs(rootPerm) { Now = h.Now };
        m.Root.Mtime = m.Root.Ctime = (await h.Attr(Root)).MtimeNs;
        var history = new List<string>();

        void Fail(string what) =>
            throw new SeedFailure($"model test failed: seed {seed} (replay: MIRRORFS_MODEL_SEEDS={seed}-{seed}), after op {history.Count}: {what}\nlast ops:\n  {string.Join("\n  ", history.TakeLast(12))}");

        void Check(string op, int engine, int model)
        {
            history.Add($"{op} -> {engine}");
            if (engine != model)
            {
                Fail($"{op}: engine errno {engine}, model errno {model}");
            }
        }

        for (var i = 0; i < ops; i++)
        {
            var nodes = m.All().Distinct().ToList();
            var dirs = nodes.Where(n => n.IsDir).ToList();
            var others = nodes.Where(n => !n.IsDir).ToList();
            var cred = Users[rng.Next(Users.Length)];
            var who = $"uid{cred.Uid}";

            (ulong Ino, MNode? Node) Parent()
            {
                var r = rng.Next(100);
                if (r < 85 || (r < 95 && others.Count == 0) || (r >= 95 && m.Dead.Count == 0))
                {
                    var d = dirs[rng.Next(dirs.Count)];
                    return (d.Ino, d);
                }
                if (r < 95)
                {
                    var f = others[rng.Next(others.Count)];
                    return (f.Ino, f);
                }
                return (m.Dead[rng.Next(m.Dead.Count)], null);
            }

            (ulong Ino, MNode? Node) Any()
            {
                var r = rng.Next(100);
                if (r < 95 || m.Dead.Count == 0)
                {
                    var n = nodes[rng.Next(nodes.Count)];
                    return (n.Ino, n);
                }
                return (m.Dead[rng.Next(m.Dead.Count)], null);
            }

            (ulong Ino, MNode? Node) AFile()
            {
                if (others.Count > 0 && rng.Next(10) < 8)
                {
                    var f = others[rng.Next(others.Count)];
                    return (f.Ino, f);
                }
                return Any();
            }

            string Name()
            {
                var r = rng.Next(100);
                return r switch
                {
                    < 92 => Pool[rng.Next(Pool.Length)],
                    < 95 => ".",
                    < 98 => "..",
                    _ => new string('L', 256),
                };
            }

            string Path(MNode? n)
            {
                if (n is null)
                {
                    return "<dead>";
                }
                if (n == m.Root)
                {
                    return "/";
                }
                return $"#{n.Ino}";
            }

            var kind = rng.Next(100);
            if (kind < 14)
            {
                var (pi, pn) = Parent();
                var name = Name();
                var mode = (uint)rng.Next(0x1000);
                var umask = rng.Next(2) == 0 ? 0u : 0x12u;
                var r = await h.Mkdir(pi, name, mode, cred, umask);
                m.Now = h.Now;
                var e = m.Create(pn, name, PosixMode.Directory, mode, umask, cred, null, out var node);
                Check($"mkdir {Path(pn)}/{name} {Convert.ToString(mode, 8)} umask {Convert.ToString(umask, 8)} as {who}", r.Errno, e);
                if (node is not null)
                {
                    node.Ino = r.Attr.Inode;
                }
            }
            else if (kind < 28)
            {
                var (pi, pn) = Parent();
                var name = Name();
                var mode = (uint)rng.Next(0x1000);
                var viaCreate = rng.Next(3) == 0;
                int errno;
                ulong ino = 0;
                if (viaCreate)
                {
                    var r = await h.Svc.CreateAsync(h.Stamp(new CreateRequest { Parent = pi, Name = N(name), Mode = mode, Flags = OpenFlags.ReadWrite }, cred));
                    (errno, ino) = (r.Errno, r.Attr?.Inode ?? 0);
                }
                else
                {
                    var r = await h.Mknod(pi, name, PosixMode.Regular | mode, 0, cred);
                    (errno, ino) = (r.Errno, r.Attr?.Inode ?? 0);
                }
                m.Now = h.Now;
                var e = m.Create(pn, name, PosixMode.Regular, mode, 0, cred, null, out var node);
                Check($"{(viaCreate ? "create" : "mknod")} {Path(pn)}/{name} {Convert.ToString(mode, 8)} as {who}", errno, e);
                if (node is not null)
                {
                    node.Ino = ino;
                }
                if (viaCreate && errno == 0)
                {
                    Assert.Equal(0, (await h.Release(ino)).Errno);
                }
            }
            else if (kind < 34)
            {
                var (pi, pn) = Parent();
                var name = Name();
                var target = "t" + rng.Next(1000);
                var r = await h.Symlink(pi, name, target, cred);
                m.Now = h.Now;
                var e = m.Create(pn, name, PosixMode.Symlink, 0, 0, cred, target, out var node);
                Check($"symlink {Path(pn)}/{name} -> {target} as {who}", r.Errno, e);
                if (node is not null)
                {
                    node.Ino = r.Attr.Inode;
                }
            }
            else if (kind < 46)
            {
                var (pi, pn) = Parent();
                var name = Name();
                var r = await h.Unlink(pi, name, cred);
                m.Now = h.Now;
                Check($"unlink {Path(pn)}/{name} as {who}", r.Errno, m.Unlink(pn, name, cred));
            }
            else if (kind < 54)
            {
                var (pi, pn) = Parent();
                var name = Name();
                var r = await h.Rmdir(pi, name, cred);
                m.Now = h.Now;
                Check($"rmdir {Path(pn)}/{name} as {who}", r.Errno, m.Rmdir(pn, name, cred));
            }
            else if (kind < 70)
            {
                var (opi, opn) = Parent();
                var (npi, npn) = Parent();
                var on = Name();
                var nn = Name();
                var flags = rng.Next(10) switch { 0 => 1u, 1 => 2u, 2 => (uint)rng.Next(3, 6), _ => 0u };
                var r = await h.Rename(opi, on, npi, nn, flags, cred);
                m.Now = h.Now;
                Check($"rename {Path(opn)}/{on} -> {Path(npn)}/{nn} flags {flags} as {who}", r.Errno, m.Rename(opn, on, npn, nn, flags, cred));
            }
            else if (kind < 76)
            {
                var (si, sn) = AFile();
                var (pi, pn) = Parent();
                var name = Name();
                var r = await h.Link(si, pi, name, cred);
                m.Now = h.Now;
                Check($"link {Path(sn)} -> {Path(pn)}/{name} as {who}", r.Errno, m.Link(sn, pn, name));
            }
            else if (kind < 88)
            {
                var (ti, tn) = rng.Next(4) == 0 ? Any() : AFile();
                var req = new SetAttrRequest { Inode = ti };
                var what = "";
                switch (rng.Next(6))
                {
                    case 0:
                        req.Valid = (uint)SetAttrValid.Mode;
                        req.Mode = (uint)rng.Next(0x1000);
                        what = "chmod " + Convert.ToString(req.Mode, 8);
                        break;
                    case 1:
                        req.Valid = (uint)SetAttrValid.Uid;
                        req.Uid = (uint)(rng.Next(3) switch { 0 => 0, 1 => 1000, _ => 1001 });
                        what = "chown " + req.Uid;
                        break;
                    case 2:
                        req.Valid = (uint)SetAttrValid.Gid;
                        req.Gid = (uint)(rng.Next(4) switch { 0 => 0, 1 => 1000, 2 => 1001, _ => 50 });
                        what = "chgrp " + req.Gid;
                        break;
                    case 3:
                        req.Valid = (uint)(SetAttrValid.Uid | SetAttrValid.Gid);
                        req.Uid = (uint)(rng.Next(2) == 0 ? 1000 : 1001);
                        req.Gid = (uint)(rng.Next(2) == 0 ? 1000 : 1001);
                        what = $"chown {req.Uid}:{req.Gid}";
                        break;
                    case 4:
                        req.Valid = rng.Next(2) == 0 ? (uint)SetAttrValid.Mtime : (uint)SetAttrValid.MtimeNow;
                        req.MtimeNs = rng.NextInt64(1, 1L << 60);
                        what = "utimes " + (SetAttrValid)req.Valid;
                        break;
                    default:
                        req.Valid = (uint)SetAttrValid.Size;
                        req.Size = (ulong)rng.Next(3) * 1000;
                        what = "truncate(setattr) " + req.Size;
                        break;
                }
                var r = await h.SetAttr(req, cred);
                m.Now = h.Now;
                Check($"setattr {Path(tn)} {what} as {who}", r.Errno, m.SetAttr(tn, req, cred));
            }
            else if (kind < 95)
            {
                var (ti, tn) = AFile();
                var id = await h.NewSliceIds();
                var pos = (uint)rng.Next(100_000);
                var len = (uint)rng.Next(1, 100_000);
                var chunk = (uint)rng.Next(2);
                var r = await h.Write(ti, chunk, new Slice { Id = id, Size = len, Length = len, Pos = pos }, cred);
                m.Now = h.Now;
                var end = ((ulong)chunk << 26) + pos + len;
                Check($"write {Path(tn)} chunk {chunk} [{pos},+{len}) as {who}", r.Errno, m.Write(tn, end, cred));
            }
            else
            {
                var (ti, tn) = AFile();
                var size = (ulong)rng.Next(4) * 40_000;
                var r = await h.Truncate(ti, size, cred);
                m.Now = h.Now;
                Check($"truncate {Path(tn)} {size} as {who}", r.Errno, m.Truncate(tn, size, cred));
            }

            if ((i + 1) % FullCompareEveryOps == 0 || i == ops - 1)
            {
                var diff = await CompareAsync(h, m);
                if (diff is not null)
                {
                    Fail(diff);
                }
            }
        }
    }

    /// <summary>Compares the whole visible tree; returns a description of the first difference, or null.</summary>
    private static async Task<string?> CompareAsync(MetaHarness h, ModelFs m)
    {
        var rootAttr = await h.Attr(Root);
        var d0 = AttrDiff("/", rootAttr, m.Root);
        if (d0 is not null)
        {
            return d0;
        }
        var stack = new Stack<(string Path, MNode Dir)>([("", m.Root)]);
        var seen = new HashSet<ulong>();
        while (stack.Count > 0)
        {
            var (path, dir) = stack.Pop();
            var entries = await h.List(dir.Ino, page: 3);
            var engineNames = entries.Select(e => e.Name.ToStringUtf8()).Order(StringComparer.Ordinal).ToList();
            var modelNames = dir.Children!.Keys.Order(StringComparer.Ordinal).ToList();
            if (!engineNames.SequenceEqual(modelNames))
            {
                return $"{path}/: engine lists [{string.Join(",", engineNames)}], model has [{string.Join(",", modelNames)}]";
            }
            foreach (var e in entries)
            {
                var name = e.Name.ToStringUtf8();
                var node = dir.Children[name];
                var p = $"{path}/{name}";
                if (e.Attr.Inode != node.Ino)
                {
                    return $"{p}: engine inode {e.Attr.Inode}, model inode {node.Ino}";
                }
                var d = AttrDiff(p, e.Attr, node);
                if (d is not null)
                {
                    return d;
                }
                if (node.IsDir)
                {
                    if (e.Attr.Parent != dir.Ino)
                    {
                        return $"{p}: engine parent {e.Attr.Parent}, model parent {dir.Ino}";
                    }
                    stack.Push((p, node));
                }
                if (node.Target is not null && seen.Add(node.Ino))
                {
                    var rl = await h.Svc.ReadLinkAsync(new ReadLinkRequest { Inode = node.Ino });
                    if (rl.Target.ToStringUtf8() != node.Target)
                    {
                        return $"{p}: engine target {rl.Target.ToStringUtf8()}, model target {node.Target}";
                    }
                }
            }
        }
        foreach (var dead in m.Dead.TakeLast(5))
        {
            if (await h.GetAttr(dead) is not null)
            {
                return $"inode {dead} should be gone but GetAttr finds it";
            }
        }
        var statfs = await h.Svc.StatFsAsync(new StatFsRequest());
        var count = (ulong)m.All().Distinct().Count();
        return statfs.UsedInodes == count ? null : $"statfs: engine counts {statfs.UsedInodes} inodes, model {count}";
    }

    private static string? AttrDiff(string path, Attr a, MNode n)
    {
        var engine = (a.Mode, a.Uid, a.Gid, a.Nlink, a.Size, a.MtimeNs, a.CtimeNs);
        var model = (n.Mode, n.Uid, n.Gid, n.Nlink, n.ShownSize, n.Mtime, n.Ctime);
        return engine == model
            ? null
            : $"{path}: engine (mode {Convert.ToString(a.Mode, 8)}, uid {a.Uid}, gid {a.Gid}, nlink {a.Nlink}, size {a.Size}, mtime {a.MtimeNs}, ctime {a.CtimeNs}) "
              + $"model (mode {Convert.ToString(n.Mode, 8)}, uid {n.Uid}, gid {n.Gid}, nlink {n.Nlink}, size {n.ShownSize}, mtime {n.Mtime}, ctime {n.Ctime})";
    }
}
