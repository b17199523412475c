using System.Net;
using Google.Protobuf;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace MirrorFS.Core.Rpc;

/// <summary>A gRPC server on its own Kestrel instance: cleartext HTTP/2 with prior knowledge, one
/// <see cref="RpcRouter"/> as the whole request pipeline.</summary>
public sealed class RpcServer : IAsyncDisposable
{
    private readonly RpcServerOptions _options;
    private readonly IPEndPoint _endpoint;
    private WebApplication? _app;
    private int _port;
    private int _disposed;
    private long _directConnections;

    public RpcServer(RpcServerOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        _options = options;
        _endpoint = ParseListen(options.Listen);
        Router = new RpcRouter(options);
    }

    public RpcRouter Router { get; }

    /// <summary>The port listened on; known after <see cref="StartAsync"/> (useful with port 0).</summary>
    public int Port => _app is null
        ? throw new InvalidOperationException("The RPC server has not been started.")
        : _port;

    /// <summary>"ip:port" a client on this machine can dial.</summary>
    public string Address
    {
        get
        {
            var ip = _endpoint.Address.Equals(IPAddress.Any) ? IPAddress.Loopback
                : _endpoint.Address.Equals(IPAddress.IPv6Any) ? IPAddress.IPv6Loopback
                : _endpoint.Address;
            return new IPEndPoint(ip, Port).ToString();
        }
    }

    /// <inheritdoc cref="RpcRouter.MapUnary"/>
    public void MapUnary<TRequest, TResponse>(
        string service,
        string method,
        MessageParser<TRequest> parser,
        Func<TRequest, RpcCallContext, Task<TResponse>> handler)
        where TRequest : IMessage<TRequest>
        where TResponse : IMessage<TResponse> =>
        Router.MapUnary(service, method, parser, handler);

    /// <inheritdoc cref="RpcRouter.MapServerStreaming"/>
    public void MapServerStreaming<TRequest, TResponse>(
        string service,
        string method,
        MessageParser<TRequest> parser,
        Func<TRequest, IRpcStreamWriter<TResponse>, RpcCallContext, Task> handler)
        where TRequest : IMessage<TRequest>
        where TResponse : IMessage<TResponse> =>
        Router.MapServerStreaming(service, method, parser, handler);

    /// <summary>Connections served by the server's own HTTP/2 handling (<see cref="RpcServerOptions.DirectHttp2"/>).</summary>
    public long DirectConnectionsAccepted => Interlocked.Read(ref _directConnections);

    /// <summary>The environment variable with which .NET runs socket completions on its I/O (epoll) thread instead of
    /// queueing them to the thread pool.</summary>
    public const string InlineCompletionsVariable = "DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS";

    /// <summary>For server processes: makes .NET complete socket operations on the I/O thread, so a request read
    /// from a connection is served on that thread with no hop to the thread pool (the server's handlers never block).
    /// .NET reads the variable once, when the first asynchronous socket operation starts, so this must run first
    /// thing in Main. An explicit setting (for instance <c>=0</c>) is left alone. Returns whether it is on.</summary>
    public static bool PreferInlineSocketCompletions()
    {
        if (Environment.GetEnvironmentVariable(InlineCompletionsVariable) is null)
        {
            Environment.SetEnvironmentVariable(InlineCompletionsVariable, "1");
        }

        return Environment.GetEnvironmentVariable(InlineCompletionsVariable) == "1";
    }

    public async Task StartAsync(CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        if (_app is not null)
        {
            throw new InvalidOperationException("The RPC server is already started.");
        }

        var builder = WebApplication.CreateEmptyBuilder(new WebApplicationOptions { ApplicationName = "MirrorFS.Rpc" });
        builder.WebHost.UseKestrelCore();
        if (_options.InlineScheduling)
        {
            builder.WebHost.UseSockets(sockets => sockets.UnsafePreferInlineScheduling = true);
        }
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.AddServerHeader = false;
            kestrel.Limits.MaxRequestBodySize = null;
            kestrel.Limits.Http2.MaxStreamsPerConnection = _options.MaxStreamsPerConnection;
            kestrel.Listen(_endpoint, listen =>
            {
                listen.Protocols = HttpProtocols.Http2;
                if (_options.DirectHttp2)
                {
                    listen.Use(Http2.H2ServerConnection.Middleware(Router, _options.MaxStreamsPerConnection,
                        _options.LoggerFactory?.CreateLogger("MirrorFS.Core.Rpc.Http2") ?? NullLogger.Instance,
                        () => Interlocked.Increment(ref _directConnections)));
                }
            });
        });
        builder.Services.Configure<HostOptions>(host =>
            host.ShutdownTimeout = TimeSpan.FromMilliseconds(_options.ShutdownTimeoutMs));

        builder.Logging.ClearProviders();
        if (_options.LoggerFactory is { } loggerFactory)
        {
            builder.Logging.AddProvider(new ForwardingLoggerProvider(loggerFactory));

            // Per-request hosting logs would cost more than the calls themselves.
            builder.Logging.AddFilter("Microsoft", LogLevel.Warning);
        }

        var app = builder.Build();
        app.Run(Router.HandleAsync);
        try
        {
            await app.StartAsync(cancellationToken);
        }
        catch (Exception ex)
        {
            await app.DisposeAsync();
            throw new IOException($"RPC server cannot listen on {_options.Listen}: {ex.Message}", ex);
        }

        var addresses = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>();
        var bound = addresses?.Addresses.FirstOrDefault()
            ?? throw new InvalidOperationException("Kestrel reported no bound address.");
        _port = new Uri(bound).Port;
        _app = app;
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        Router.Shutdown();
        if (_app is { } app)
        {
            using var timeout = new CancellationTokenSource(_options.ShutdownTimeoutMs);
            try
            {
                await app.StopAsync(timeout.Token);
            }
            catch (OperationCanceledException)
            {
                // Shutdown timed out; disposing below closes what is left.
            }

            await app.DisposeAsync();
        }
    }

    internal static IPEndPoint ParseListen(string listen)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(listen);
        if (listen.StartsWith("localhost:", StringComparison.OrdinalIgnoreCase)
            && ushort.TryParse(listen.AsSpan("localhost:".Length), out var localPort))
        {
            return new IPEndPoint(IPAddress.Loopback, localPort);
        }

        if (IPEndPoint.TryParse(listen, out var endpoint) && listen.Contains(':', StringComparison.Ordinal)
            && endpoint.Port is >= 0 and <= ushort.MaxValue)
        {
            return endpoint;
        }

        throw new ArgumentException(
            $"Invalid RPC listen address '{listen}': use ip:port, e.g. 127.0.0.1:7000 or [::1]:0.", nameof(listen));
    }

    /// <summary>Lets Kestrel log through the caller's factory while the host's own filters still apply.</summary>
    private sealed class ForwardingLoggerProvider(ILoggerFactory factory) : ILoggerProvider
    {
        public ILogger CreateLogger(string categoryName) => factory.CreateLogger(categoryName);

        public void Dispose()
        {
            // The caller owns the factory.
        }
    }
}
