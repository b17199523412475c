// A real RpcServer on a free loopback port serving the test Echo service, with probes the tests assert on.
using Google.Protobuf;
using Microsoft.Extensions.Logging;
using MirrorFS.Core.Rpc;
using MirrorFS.Core.Tests.Protos;

namespace MirrorFS.Core.Tests.Rpc;

internal sealed class EchoServer : IAsyncDisposable
{
    public const string Service = "mirrorfs.test.Echo";
    public const string Secret = "s3cr3t-do-not-leak";

    private EchoServer(RpcServer server, EchoProbe probe, CapturingLoggerFactory logs, string? token)
    {
        Server = server;
        Probe = probe;
        Logs = logs;
        Token = token;
    }

    public RpcServer Server { get; }

    public EchoProbe Probe { get; }

    public CapturingLoggerFactory Logs { get; }

    public string? Token { get; }

    public string Address => Server.Address;

    public static async Task<EchoServer> StartAsync(string? token = "test-token", int maxMessageBytes = 1024 * 1024, int port = 0,
        bool directServer = true, int maxStreams = 256)
    {
        var logs = new CapturingLoggerFactory();
        var server = new RpcServer(new RpcServerOptions
        {
            Listen = $"127.0.0.1:{port}",
            BearerToken = token,
            MaxMessageBytes = maxMessageBytes,
            LoggerFactory = logs,
            ShutdownTimeoutMs = 2_000,
            DirectHttp2 = directServer,
            MaxStreamsPerConnection = maxStreams,
        });
        var probe = new EchoProbe();
        Map(server.Router, probe);
        await server.StartAsync();
        return new EchoServer(server, probe, logs, token);
    }

    public static void Map(RpcRouter router, EchoProbe probe)
    {
        router.MapUnary<EchoRequest, EchoReply>(Service, "Unary", EchoRequest.Parser, async (request, context) =>
        {
            probe.Calls.Increment();
            await probe.BeforeUnaryAsync(context.CancellationToken);
            if (request.DelayMs > 0)
            {
                await Task.Delay(request.DelayMs, context.CancellationToken);
            }

            if (request.FailCode != 0)
            {
                var trailers = new RpcMetadata().Add("x-fail-detail", "detail-" + request.FailCode);
                throw new RpcException((StatusCode)request.FailCode, request.FailMessage, trailers);
            }

            var reply = new EchoReply
            {
                Text = request.Text,
                Payload = request.ReplyBytes > 0
                    ? ByteString.CopyFrom(new byte[request.ReplyBytes])
                    : request.Payload,
                Peer = context.Peer,
                HadDeadline = context.Deadline is not null,
            };
            foreach (var entry in context.RequestHeaders)
            {
                reply.Metadata[entry.Key] = entry.Value;
            }

            context.ResponseTrailers.Add("x-served-by", "echo");
            return reply;
        });

        router.MapServerStreaming<StreamRequest, EchoReply>(Service, "Stream", StreamRequest.Parser,
            async (request, writer, context) =>
            {
                probe.Calls.Increment();
                var payload = ByteString.CopyFrom(new byte[request.PayloadBytes]);
                try
                {
                    for (var i = 0; i < request.Count; i++)
                    {
                        if (request.FailAfter > 0 && i == request.FailAfter)
                        {
                            throw new RpcException(StatusCode.Aborted, $"stopped after {i} messages");
                        }

                        await writer.WriteAsync(new EchoReply { Index = i, Payload = payload });
                        probe.StreamMessagesSent = i + 1;
                        if (request.DelayMs > 0)
                        {
                            await Task.Delay(request.DelayMs, context.CancellationToken);
                        }
                    }
                }
                catch (OperationCanceledException) when (context.CancellationToken.IsCancellationRequested)
                {
                    probe.Cancelled.TrySetResult(context.Method);
                    throw;
                }
            });

        router.MapUnary<EchoRequest, EchoReply>(Service, "Wait", EchoRequest.Parser, async (request, context) =>
        {
            probe.Calls.Increment();
            probe.WaitStarted.TrySetResult(context.Deadline);
            try
            {
                await Task.Delay(Timeout.Infinite, context.CancellationToken);
            }
            catch (OperationCanceledException)
            {
                probe.Cancelled.TrySetResult(context.Method);
                throw;
            }

            return new EchoReply();
        });

        router.MapUnary<EchoRequest, EchoReply>(Service, "Crash", EchoRequest.Parser, (request, context) =>
        {
            probe.Calls.Increment();
            throw new InvalidOperationException($"database password is {Secret}");
        });
    }

    public RpcChannel CreateChannel(string? token = null, int maxMessageBytes = 1024 * 1024, bool useServerToken = true, bool direct = true) =>
        new(new RpcChannelOptions
        {
            DirectHttp2 = direct,
            Address = Address,
            BearerToken = token ?? (useServerToken ? Token : null),
            MaxMessageBytes = maxMessageBytes,
            ConnectTimeoutMs = 2_000,
        });

    public ValueTask DisposeAsync() => Server.DisposeAsync();
}

/// <summary>What the Echo handlers saw, for tests to assert on.</summary>
internal sealed class EchoProbe
{
    public Counter Calls { get; } = new();

    public TaskCompletionSource<DateTime?> WaitStarted { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public TaskCompletionSource<string> Cancelled { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public volatile int StreamMessagesSent;

    /// <summary>Runs at the start of each Unary call (e.g. a barrier proving calls run concurrently).</summary>
    public Func<CancellationToken, Task>? OnUnary { get; set; }

    public Task BeforeUnaryAsync(CancellationToken cancellationToken) =>
        OnUnary?.Invoke(cancellationToken) ?? Task.CompletedTask;

    internal sealed class Counter
    {
        private int _value;

        public int Value => Volatile.Read(ref _value);

        public void Increment() => Interlocked.Increment(ref _value);
    }
}

/// <summary>Keeps every log line so tests can check what was (and was not) logged.</summary>
internal sealed class CapturingLoggerFactory : ILoggerFactory
{
    private readonly List<string> _lines = [];

    public IReadOnlyList<string> Lines
    {
        get
        {
            lock (_lines)
            {
                return [.. _lines];
            }
        }
    }

    public ILogger CreateLogger(string categoryName) => new Logger(this, categoryName);

    public void AddProvider(ILoggerProvider provider)
    {
    }

    public void Dispose()
    {
    }

    private sealed class Logger(CapturingLoggerFactory owner, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Information;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            var line = $"{logLevel} {category}: {formatter(state, exception)} {exception}";
            lock (owner._lines)
            {
                owner._lines.Add(line);
            }
        }
    }
}
