// A small HTTP/1.1 listener that serves one registry at GET /metrics for Prometheus to scrape.
using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using MirrorFS.Core.Rpc;

namespace MirrorFS.Core.Metrics;

/// <summary>
/// Serves <see cref="MetricsRegistry.Collect"/> at <c>GET /metrics</c> on its own Kestrel instance (HTTP/1.1),
/// apart from any RPC listener so scrapers need no gRPC and the RPC port needs no plain HTTP.
/// Any other path answers 404, any other method 405.
/// </summary>
public sealed class MetricsHttpServer : IAsyncDisposable
{
    public const string Path = "/metrics";

    /// <summary>Scrapers are few; a bound keeps a misbehaving one from holding many sockets.</summary>
    public const int ConnectionsMax = 64;

    private const int ShutdownTimeoutMs = 2_000;

    private readonly WebApplication _app;

    private MetricsHttpServer(WebApplication app, string address)
    {
        _app = app;
        Address = address;
    }

    /// <summary>"ip:port" actually listened on (the port is known even when 0 was asked for).</summary>
    public string Address { get; }

    /// <summary>http://ip:port/metrics.</summary>
    public string Url => $"http://{Address}{Path}";

    /// <summary>Starts listening on <paramref name="listen"/> ("ip:port" or "localhost:port"; port 0 picks a free one).</summary>
    public static async Task<MetricsHttpServer> StartAsync(string listen, MetricsRegistry registry, ILoggerFactory? loggers = null,
        CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(registry);
        IPEndPoint endpoint;
        try
        {
            endpoint = RpcServer.ParseListen(listen);
        }
        catch (ArgumentException)
        {
            throw new ArgumentException($"metrics address '{listen}' is not ip:port: use e.g. 127.0.0.1:9567 (0.0.0.0:9567 to serve other hosts)");
        }
        var builder = WebApplication.CreateEmptyBuilder(new WebApplicationOptions { ApplicationName = "MirrorFS.Metrics" });
        builder.WebHost.UseKestrelCore();
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.AddServerHeader = false;
            k.Limits.MaxConcurrentConnections = ConnectionsMax;
            k.Limits.MaxRequestBodySize = 0;
            // Scrapers speak HTTP/1.1; cleartext HTTP/2 would need prior knowledge and buys nothing here.
            k.Listen(endpoint, l => l.Protocols = HttpProtocols.Http1);
        });
        builder.Services.Configure<Microsoft.Extensions.Hosting.HostOptions>(h => h.ShutdownTimeout = TimeSpan.FromMilliseconds(ShutdownTimeoutMs));
        builder.Logging.ClearProviders();
        if (loggers is not null)
        {
            builder.Logging.AddProvider(new FactoryProvider(loggers));
            builder.Logging.AddFilter("Microsoft", LogLevel.Warning);
        }
        var app = builder.Build();
        app.Run(ctx => Serve(ctx, registry));
        try
        {
            await app.StartAsync(ct).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            await app.DisposeAsync().ConfigureAwait(false);
            throw new IOException($"metrics listener cannot listen on {listen}: {e.Message}; pick another address or free the port", e);
        }
        var bound = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()?.Addresses.FirstOrDefault();
        var port = bound is null ? endpoint.Port : new Uri(bound).Port;
        var ip = endpoint.Address.Equals(IPAddress.Any) ? IPAddress.Loopback
            : endpoint.Address.Equals(IPAddress.IPv6Any) ? IPAddress.IPv6Loopback
            : endpoint.Address;
        return new MetricsHttpServer(app, new IPEndPoint(ip, port).ToString());
    }

    private static async Task Serve(HttpContext ctx, MetricsRegistry registry)
    {
        if (ctx.Request.Path != Path)
        {
            ctx.Response.StatusCode = StatusCodes.Status404NotFound;
            ctx.Response.ContentType = "text/plain; charset=utf-8";
            await ctx.Response.WriteAsync($"not found: metrics are at {Path}\n").ConfigureAwait(false);
            return;
        }
        if (!HttpMethods.IsGet(ctx.Request.Method) && !HttpMethods.IsHead(ctx.Request.Method))
        {
            ctx.Response.StatusCode = StatusCodes.Status405MethodNotAllowed;
            ctx.Response.Headers.Allow = "GET, HEAD";
            return;
        }
        var body = System.Text.Encoding.UTF8.GetBytes(registry.Collect());
        ctx.Response.StatusCode = StatusCodes.Status200OK;
        ctx.Response.ContentType = MetricsRegistry.ContentType;
        ctx.Response.ContentLength = body.Length;
        if (HttpMethods.IsGet(ctx.Request.Method))
        {
            await ctx.Response.Body.WriteAsync(body, ctx.RequestAborted).ConfigureAwait(false);
        }
    }

    public async ValueTask DisposeAsync()
    {
        using var cts = new CancellationTokenSource(ShutdownTimeoutMs);
        try
        {
            await _app.StopAsync(cts.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            // Disposing below closes what is left.
        }
        await _app.DisposeAsync().ConfigureAwait(false);
    }

    private sealed class FactoryProvider(ILoggerFactory factory) : ILoggerProvider
    {
        public ILogger CreateLogger(string categoryName) => factory.CreateLogger(categoryName);

        public void Dispose()
        {
            // The caller owns the factory.
        }
    }
}
