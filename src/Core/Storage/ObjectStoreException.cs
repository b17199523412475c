namespace MirrorFS.Core.Storage;

/// <summary>What kind of failure an object store met; decides whether a retry can help.</summary>
public enum StoreFailure
{
    /// <summary>5xx, throttling, timeouts, resets: retried with backoff.</summary>
    Transient,
    /// <summary>Bad credentials or signature.</summary>
    Unauthorized,
    /// <summary>Access denied to an existing resource.</summary>
    AccessDenied,
    /// <summary>The bucket or directory does not exist.</summary>
    NoSuchBucket,
    /// <summary>The endpoint could not be reached at all.</summary>
    Unreachable,
    /// <summary>The request itself is wrong (bad key, bad argument).</summary>
    BadRequest,
    /// <summary>Any other permanent failure.</summary>
    Other,
}

/// <summary>An infrastructure failure of an object store. The message is one line, names the store and the
/// cause, and never holds a secret.</summary>
public sealed class ObjectStoreException : Exception
{
    public ObjectStoreException(string store, StoreFailure failure, string message, Exception? inner = null)
        : base($"{store}: {message}", inner)
    {
        Store = store;
        Failure = failure;
        Detail = message;
    }

    public string Store { get; }

    /// <summary>The message without the store's name.</summary>
    public string Detail { get; }
    public StoreFailure Failure { get; }
    public bool IsTransient => Failure is StoreFailure.Transient;
}
