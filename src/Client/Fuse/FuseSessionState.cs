// Per-mount managed state reached from native callbacks through the session's userdata GCHandle.
using System.Buffers;
using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;

namespace MirrorFS.Client.Fuse;

internal sealed class FuseSessionState
{
    private long _inFlight;

    private readonly IFuseRequestObserver? _observer;

    /// <summary>Runs once, on the first request: by then the kernel has processed the INIT reply.</summary>
    private Action? _firstRequest;

    internal FuseSessionState(FuseFileSystem fs, ILogger logger, IFuseRequestObserver? observer = null)
    {
        Fs = fs;
        Logger = logger;
        _observer = observer;
        Handle = GCHandle.Alloc(this);
    }

    internal FuseFileSystem Fs { get; }

    internal void OnFirstRequest(Action action) => _firstRequest = action;

    internal void RequestArrived()
    {
        if (_firstRequest is not null && Interlocked.Exchange(ref _firstRequest, null) is { } action)
        {
            try
            {
                action();
            }
            catch (Exception e)
            {
                Logger.LogWarning(e, "FUSE first-request setup failed");
            }
        }
    }
    internal ILogger Logger { get; }
    internal GCHandle Handle { get; }
    internal long InFlight => Interlocked.Read(ref _inFlight);

    internal static FuseSessionState? FromUserdata(nint userdata) =>
        userdata == 0 ? null : GCHandle.FromIntPtr(userdata).Target as FuseSessionState;

    internal FuseRequest Begin(nint req, string operation)
    {
        Interlocked.Increment(ref _inFlight);
        return new FuseRequest(this, req, operation);
    }

    internal void RequestDone() => Interlocked.Decrement(ref _inFlight);

    /// <summary>Hands an answered request to the observer; an observer that throws is logged, never propagated.</summary>
    internal void Observe(FuseRequest r)
    {
        if (_observer is null)
        {
            return;
        }
        try
        {
            _observer.Replied(r);
        }
        catch (Exception e)
        {
            Logger.LogError(e, "FUSE request observer failed on {Operation}", r.Operation);
        }
    }

    internal void ReplyFailed(string operation, int errno)
    {
        if (errno != Errno.ENOENT)
        {
            Logger.LogWarning("FUSE {Operation} reply was not delivered: errno {Errno}", operation, errno);
        }
    }

    /// <summary>Handler threw or faulted: log with the stack and answer EIO if it had not replied.</summary>
    internal void Fail(FuseRequest r, Exception e)
    {
        Logger.LogError(e, "FUSE {Operation} handler failed; replying EIO", r.Operation);
        r.TryReplyErrorIfPending(Errno.EIO);
    }

    /// <summary>Follows a handler's task to its end without blocking the libfuse worker thread.</summary>
    internal void Complete(FuseRequest r, ValueTask task, byte[]? rented = null)
    {
        if (!task.IsCompleted)
        {
            _ = AwaitAsync(r, task, rented);
            return;
        }
        Exception? error = null;
        try
        {
            // A ValueTask is consumed once: GetResult both observes and releases it.
            task.GetAwaiter().GetResult();
        }
        catch (Exception e)
        {
            error = e;
        }
        Finish(r, error, rented);
    }

    private async Task AwaitAsync(FuseRequest r, ValueTask task, byte[]? rented)
    {
        Exception? error = null;
        try
        {
            await task.ConfigureAwait(false);
        }
        catch (Exception e)
        {
            error = e;
        }
        Finish(r, error, rented);
    }

    private void Finish(FuseRequest r, Exception? error, byte[]? rented)
    {
        if (rented != null)
        {
            ArrayPool<byte>.Shared.Return(rented);
        }
        if (error != null)
        {
            Fail(r, error);
            return;
        }
        if (r.TryReplyErrorIfPending(Errno.EIO))
        {
            Logger.LogError("FUSE {Operation} handler completed without replying; replied EIO", r.Operation);
        }
    }
}
