// Turns AWS SDK and network exceptions into one-line ObjectStoreExceptions with the right StoreFailure.
using System.Net;
using System.Net.Http;
using System.Net.Sockets;
using System.Security.Authentication;
using Amazon.Runtime;

namespace MirrorFS.Core.Storage.S3;

internal static class S3Errors
{
    private const int ServerMessageCharsMax = 200;

    public static bool IsNoSuchKey(AmazonServiceException e) => e.ErrorCode == "NoSuchKey";

    public static bool IsNoSuchBucket(AmazonServiceException e) => e.ErrorCode == "NoSuchBucket";

    /// <summary>416 for a range that starts at or past the end of the object.</summary>
    public static bool IsInvalidRange(AmazonServiceException e) =>
        e.ErrorCode == "InvalidRange" || e.StatusCode == HttpStatusCode.RequestedRangeNotSatisfiable;

    /// <summary>The failure and a one-line message for <paramref name="e"/>, which <paramref name="op"/> on
    /// <paramref name="key"/> met. The message names no secret: SDK messages are not copied for auth errors.</summary>
    public static ObjectStoreException Map(string store, string op, string key, Exception e)
    {
        var what = key.Length == 0 ? op : $"{op} '{key}'";
        if (e is AmazonServiceException service && service.StatusCode != 0)
        {
            var (failure, hint) = Classify(service);
            var code = string.IsNullOrEmpty(service.ErrorCode) ? ReasonOf(service.StatusCode) : service.ErrorCode;
            var detail = failure is StoreFailure.Unauthorized or StoreFailure.AccessDenied or StoreFailure.NoSuchBucket
                ? ""
                : ServerMessage(service);
            return new ObjectStoreException(store, failure,
                $"{what} failed: {code} (HTTP {(int)service.StatusCode}){detail}; {hint}", e);
        }
        if (Network(e) is { } net)
        {
            return new ObjectStoreException(store, net.Failure, $"{what} failed: {net.Reason}; {net.Hint}", e);
        }
        if (e is AmazonClientException && e.Message.Contains("credential", StringComparison.OrdinalIgnoreCase))
        {
            return new ObjectStoreException(store, StoreFailure.Unauthorized,
                $"{what} failed: no AWS credentials found; {CredentialHint}", e);
        }
        return new ObjectStoreException(store, StoreFailure.Other,
            $"{what} failed: {e.GetType().Name}: {OneLine(e.Message)}", e);
    }

    public const string CredentialHint =
        "give ACCESS_KEY:SECRET@ or access-key=/secret-key= in the URI, or set AWS_ACCESS_KEY_ID and " +
        "AWS_SECRET_ACCESS_KEY, or configure an AWS profile";

    /// <summary>The failure an S3 error code means (for calls and for per-key DeleteObjects errors alike).</summary>
    internal static StoreFailure FailureOf(string? code) => FromCode(code)?.Failure ?? StoreFailure.Other;

    private static (StoreFailure Failure, string Hint)? FromCode(string? code) => code switch
    {
        "NoSuchBucket" => (StoreFailure.NoSuchBucket, "create the bucket or fix the bucket name in the URI"),
        "InvalidAccessKeyId" or "SignatureDoesNotMatch" or "InvalidToken" or "ExpiredToken"
            or "TokenRefreshRequired" or "AuthorizationHeaderMalformed" or "InvalidSecurity"
            or "MissingSecurityHeader" or "InvalidClientTokenId" or "UnrecognizedClientException" =>
            (StoreFailure.Unauthorized, "check the access key and secret; " + CredentialHint),
        "RequestTimeTooSkewed" => (StoreFailure.Unauthorized, "this machine's clock is off by more than 15 minutes: fix it (NTP)"),
        "AccessDenied" or "AllAccessDisabled" or "AccountProblem" =>
            (StoreFailure.AccessDenied, "these credentials lack permission for this bucket or key"),
        "SlowDown" or "InternalError" or "ServiceUnavailable" or "RequestTimeout" or "Throttling"
            or "ThrottlingException" or "RequestThrottled" or "RequestLimitExceeded" or "OperationAborted" =>
            (StoreFailure.Transient, "the server is busy or failing; a retry may succeed"),
        _ => null,
    };

    private static (StoreFailure Failure, string Hint) Classify(AmazonServiceException e)
    {
        if (FromCode(e.ErrorCode) is { } known)
        {
            return known;
        }
        var status = (int)e.StatusCode;
        return status switch
        {
            >= 500 or 429 or 408 => (StoreFailure.Transient, "the server is busy or failing; a retry may succeed"),
            401 => (StoreFailure.Unauthorized, "check the access key and secret; " + CredentialHint),
            403 => (StoreFailure.AccessDenied, "access denied: check the credentials and their permissions"),
            404 => (StoreFailure.Other, "the endpoint answered 'not found': check the endpoint and path-style setting"),
            >= 400 => (StoreFailure.BadRequest, "the server rejected the request"),
            _ => (StoreFailure.Other, "unexpected answer from the server"),
        };
    }

    private static (StoreFailure Failure, string Reason, string Hint)? Network(Exception e)
    {
        const string Down = "check the endpoint and that the server is up";
        const string Busy = "a retry may succeed";
        for (var x = e; x is not null; x = x.InnerException)
        {
            switch (x)
            {
                case SocketException s:
                    return s.SocketErrorCode switch
                    {
                        SocketError.ConnectionRefused => (StoreFailure.Unreachable, "connection refused", Down),
                        SocketError.HostNotFound or SocketError.NoData or SocketError.TryAgain =>
                            (StoreFailure.Unreachable, "endpoint host name not found", Down),
                        SocketError.HostUnreachable or SocketError.NetworkUnreachable or SocketError.NetworkDown
                            or SocketError.AddressNotAvailable =>
                            (StoreFailure.Unreachable, "endpoint network unreachable", Down),
                        SocketError.TimedOut => (StoreFailure.Transient, "connection timed out", Busy),
                        _ => (StoreFailure.Transient, $"connection failed ({s.SocketErrorCode})", Busy),
                    };
                case HttpRequestException { HttpRequestError: HttpRequestError.NameResolutionError }:
                    return (StoreFailure.Unreachable, "endpoint host name not found", Down);
                case AuthenticationException:
                    return (StoreFailure.Unreachable, "TLS handshake failed",
                        "check the endpoint's certificate and the system's CA store");
            }
        }
        for (var x = e; x is not null; x = x.InnerException)
        {
            switch (x)
            {
                case TimeoutException or OperationCanceledException:
                    return (StoreFailure.Transient, "timed out", Busy);
                case HttpRequestException or IOException:
                    return (StoreFailure.Transient, $"connection failed ({OneLine(x.Message)})", Busy);
            }
        }
        return null;
    }

    private static string ServerMessage(AmazonServiceException e) =>
        string.IsNullOrWhiteSpace(e.Message) ? "" : $": {OneLine(e.Message)}";

    private static string ReasonOf(HttpStatusCode status) =>
        Enum.IsDefined(status) ? status.ToString() : $"HTTP{(int)status}";

    internal static string OneLine(string text)
    {
        var line = string.Join(' ', text.Split(['\r', '\n'], StringSplitOptions.RemoveEmptyEntries)).Trim();
        return line.Length <= ServerMessageCharsMax ? line : line[..ServerMessageCharsMax] + "...";
    }
}
