// The replicator's HTTP endpoint: GET /metrics (Prometheus text) and GET /status (JSON).
using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using MirrorFS.Mirror.Replication;

namespace MirrorFS.Mirror.Status;

public sealed class StatusServer : IAsyncDisposable
{
    private readonly WebApplication _app;

    private StatusServer(WebApplication app, string address)
    {
        _app = app;
        Address = address;
    }

    /// <summary>host:port the endpoint answers on.</summary>
    public string Address { get; }

    /// <summary>Listens on <paramref name="listen"/> (host:port; port 0 picks one).</summary>
    public static async Task<StatusServer> StartAsync(string listen, Func<ReplicatorStatus> status, CancellationToken ct)
    {
        if (!IPEndPoint.TryParse(listen, out var endpoint))
        {
            throw new ArgumentException($"metrics address '{listen}' is not HOST:PORT with an IP host (e.g. 127.0.0.1:9500)");
        }
        var builder = WebApplication.CreateEmptyBuilder(new WebApplicationOptions { ApplicationName = "MirrorFS.Mirror.Status" });
        builder.WebHost.UseKestrelCore();
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.AddServerHeader = false;
            k.Listen(endpoint, l => l.Protocols = HttpProtocols.Http1);
        });
        builder.Logging.ClearProviders();
        var app = builder.Build();
        app.Run(async context =>
        {
            var path = context.Request.Path.Value;
            if (!HttpMethods.IsGet(context.Request.Method) || path is not ("/metrics" or "/status"))
            {
                context.Response.StatusCode = StatusCodes.Status404NotFound;
                await context.Response.WriteAsync("not found: GET /metrics or /status\n", context.RequestAborted).ConfigureAwait(false);
                return;
            }
            var s = status();
            if (path == "/metrics")
            {
                context.Response.ContentType = MetricsText.ContentType;
                await context.Response.WriteAsync(MetricsText.Render(s), context.RequestAborted).ConfigureAwait(false);
            }
            else
            {
                context.Response.ContentType = "application/json";
                await context.Response.Body.WriteAsync(s.ToJson(), context.RequestAborted).ConfigureAwait(false);
            }
        });
        try
        {
            await app.StartAsync(ct).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or InvalidOperationException)
        {
            await app.DisposeAsync().ConfigureAwait(false);
            throw new IOException($"cannot listen on {listen} for metrics: {e.Message}", e);
        }
        var bound = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()?.Addresses.FirstOrDefault();
        var port = bound is null ? endpoint.Port : new Uri(bound).Port;
        return new StatusServer(app, $"{endpoint.Address}:{port}");
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync(CancellationToken.None).ConfigureAwait(false);
        await _app.DisposeAsync().ConfigureAwait(false);
    }
}
