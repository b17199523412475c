// The stream behind .accesslog: one line per FUSE operation, fanned out to every open reader, free when none reads.
using System.Text;
using System.Threading.Channels;

namespace MirrorFS.Client.Mount;

/// <summary>
/// Readers come and go with opens and releases of <c>.accesslog</c>. <see cref="Active"/> is false while there is
/// none, and callers check it before formatting anything, so an unread log costs one volatile read per operation.
/// Each reader has its own bounded queue; a line that does not fit is dropped for that reader only, counted, and
/// announced to it as a "# N lines dropped" line at its next read.
/// </summary>
public sealed class AccessLog
{
    /// <summary>Readers at once; one more open fails with EBUSY.</summary>
    public const int ReadersMax = 16;

    /// <summary>Lines queued per reader before new ones are dropped for it.</summary>
    public const int LinesPerReaderMax = 10_000;

    /// <summary>Longer lines are cut (a name can be 255 bytes, a symlink target 4 KiB).</summary>
    public const int LineCharsMax = 8192;

    /// <summary>How long a read waits for a line before it returns a "#" keep-alive line instead.</summary>
    public const int IdleWaitMs = 1_000;

    private readonly Lock _lock = new();
    private volatile Reader[] _readers = [];
    private long _dropped;

    public bool Active => _readers.Length > 0;

    public int Readers => _readers.Length;

    /// <summary>Lines dropped for slow readers, summed over readers.</summary>
    public long Dropped => Interlocked.Read(ref _dropped);

    /// <summary>A new reader, or null when <see cref="ReadersMax"/> are open.</summary>
    public Reader? Open()
    {
        lock (_lock)
        {
            if (_readers.Length >= ReadersMax)
            {
                return null;
            }
            var r = new Reader(this);
            _readers = [.. _readers, r];
            return r;
        }
    }

    private void Remove(Reader r)
    {
        lock (_lock)
        {
            _readers = [.. _readers.Where(x => x != r)];
        }
    }

    /// <summary>Queues one line (without its newline) for every reader.</summary>
    public void Write(string line)
    {
        var readers = _readers;
        if (readers.Length == 0)
        {
            return;
        }
        if (line.Length > LineCharsMax)
        {
            line = line[..LineCharsMax] + "...";
        }
        foreach (var r in readers)
        {
            if (!r.Offer(line))
            {
                Interlocked.Increment(ref _dropped);
            }
        }
    }

    public sealed class Reader : IDisposable
    {
        private readonly AccessLog _log;
        private readonly Channel<string> _lines = Channel.CreateBounded<string>(new BoundedChannelOptions(LinesPerReaderMax)
        {
            SingleReader = true,
            FullMode = BoundedChannelFullMode.Wait, // TryWrite then fails instead of evicting: the drop is counted
        });
        private readonly SemaphoreSlim _readGate = new(1, 1);
        private byte[] _pending = [];
        private int _pendingAt;
        private long _dropped;
        private int _disposed;

        internal Reader(AccessLog log) => _log = log;

        internal bool Offer(string line)
        {
            if (_lines.Writer.TryWrite(line))
            {
                return true;
            }
            Interlocked.Increment(ref _dropped);
            return false;
        }

        /// <summary>
        /// Fills <paramref name="dest"/> with whole queued lines (a line longer than the buffer continues at the next
        /// read). Waits up to <paramref name="idleWaitMs"/> for the first line and returns "#\n" if none came, so a
        /// reader such as <c>cat</c> never sees end-of-file while the log is open.
        /// </summary>
        public async Task<int> ReadAsync(Memory<byte> dest, int idleWaitMs = IdleWaitMs, CancellationToken ct = default)
        {
            if (dest.Length == 0)
            {
                return 0;
            }
            await _readGate.WaitAsync(ct).ConfigureAwait(false);
            try
            {
                var n = TakePending(dest);
                if (n == 0 && !_lines.Reader.TryPeek(out _) && StageDropNotice())
                {
                    n = TakePending(dest);
                }
                if (n == 0)
                {
                    using var idle = CancellationTokenSource.CreateLinkedTokenSource(ct);
                    idle.CancelAfter(idleWaitMs);
                    try
                    {
                        if (!await _lines.Reader.WaitToReadAsync(idle.Token).ConfigureAwait(false))
                        {
                            return 0;
                        }
                    }
                    catch (OperationCanceledException) when (!ct.IsCancellationRequested)
                    {
                        if (!StageDropNotice())
                        {
                            Stage("#");
                        }
                        return TakePending(dest);
                    }
                }
                // Then whatever else is queued, without waiting, while whole lines fit; the drop notice goes where
                // the queue ran dry, which is where the lines went missing.
                while (n < dest.Length && _pendingAt >= _pending.Length)
                {
                    if (_lines.Reader.TryRead(out var line))
                    {
                        Stage(line);
                    }
                    else if (!StageDropNotice())
                    {
                        break;
                    }
                    if (n > 0 && _pending.Length > dest.Length - n)
                    {
                        break; // keep it whole for the next read rather than split it
                    }
                    n += TakePending(dest[n..]);
                }
                return n;
            }
            finally
            {
                _readGate.Release();
            }
        }

        private bool StageDropNotice()
        {
            var dropped = Interlocked.Exchange(ref _dropped, 0);
            if (dropped == 0)
            {
                return false;
            }
            Stage($"# {dropped} lines dropped: this reader was too slow");
            return true;
        }

        private void Stage(string line)
        {
            _pending = Encoding.UTF8.GetBytes(line + "\n");
            _pendingAt = 0;
        }

        private int TakePending(Memory<byte> dest)
        {
            var left = _pending.Length - _pendingAt;
            if (left <= 0)
            {
                return 0;
            }
            var n = Math.Min(left, dest.Length);
            _pending.AsSpan(_pendingAt, n).CopyTo(dest.Span);
            _pendingAt += n;
            return n;
        }

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _disposed, 1) != 0)
            {
                return;
            }
            _log.Remove(this);
            _lines.Writer.TryComplete();
        }
    }
}
