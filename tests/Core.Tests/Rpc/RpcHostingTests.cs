// The router mounted in an existing WebApplication, and RpcChannel against servers that break the protocol.
using System.Buffers.Binary;
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
using MirrorFS.Core.Tests.Protos;

namespace MirrorFS.Core.Tests.Rpc;

public sealed class RpcHostingTests
{
    [Fact]
    public async Task Router_InExistingWebApplication_ServesGrpcAndPassesOtherRequestsOn()
    {
        var router = new RpcRouter(new RpcServerOptions { BearerToken = "hosted" });
        var probe = new EchoProbe();
        EchoServer.Map(router, probe);
        await using var app = await StartAppAsync(app =>
        {
            app.UseRpc(router);
            app.Run(context => context.Response.WriteAsync("not grpc"));
        });
        var address = Address(app);
        using var channel = new RpcChannel(new RpcChannelOptions { Address = address, BearerToken = "hosted" });

        var reply = await channel.UnaryAsync(EchoServer.Service, "Unary", new EchoRequest { Text = "hosted" }, EchoReply.Parser);
        var count = 0;
        await foreach (var unused in channel.ServerStreamingAsync(EchoServer.Service, "Stream",
            new StreamRequest { Count = 10 }, EchoReply.Parser))
        {
            count++;
        }

        using var http = new HttpClient(new SocketsHttpHandler { UseProxy = false })
        {
            DefaultRequestVersion = HttpVersion.Version20,
            DefaultVersionPolicy = HttpVersionPolicy.RequestVersionExact,
        };
        var other = await http.GetStringAsync(new Uri($"http://{address}/health"));

        Assert.Equal("hosted", reply.Text);
        Assert.Equal(10, count);
        Assert.Equal("not grpc", other);
    }

    [Fact]
    public async Task Client_MissingTrailers_Internal()
    {
        await using var app = await StartAppAsync(app => app.Run(async context =>
        {
            context.Response.ContentType = "application/grpc";
            await context.Response.Body.WriteAsync(new byte[] { 0, 0, 0, 0, 0 });
        }));
        using var channel = new RpcChannel(new RpcChannelOptions { Address = Address(app) });

        var ex = await Assert.ThrowsAsync<RpcException>(() =>
            channel.UnaryAsync("x.Y", "Z", new EchoRequest(), EchoReply.Parser));

        Assert.Equal(StatusCode.Internal, ex.Status);
        Assert.Contains("without a grpc-status trailer", ex.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(503, StatusCode.Unavailable)]
    [InlineData(404, StatusCode.Unimplemented)]
    [InlineData(401, StatusCode.Unauthenticated)]
    [InlineData(500, StatusCode.Unknown)]
    public async Task Client_HttpErrorWithoutGrpcStatus_MapsTheHttpStatus(int httpStatus, StatusCode expected)
    {
        await using var app = await StartAppAsync(app => app.Run(context =>
        {
            context.Response.StatusCode = httpStatus;
            return Task.CompletedTask;
        }));
        using var channel = new RpcChannel(new RpcChannelOptions { Address = Address(app) });

        var ex = await Assert.ThrowsAsync<RpcException>(() =>
            channel.UnaryAsync("x.Y", "Z", new EchoRequest(), EchoReply.Parser));

        Assert.Equal(expected, ex.Status);
        Assert.Contains($"HTTP {httpStatus}", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Client_NonGrpcContentType_Unknown()
    {
        await using var app = await StartAppAsync(app => app.Run(context => context.Response.WriteAsync("<html/>")));
        using var channel = new RpcChannel(new RpcChannelOptions { Address = Address(app) });

        var ex = await Assert.ThrowsAsync<RpcException>(() =>
            channel.UnaryAsync("x.Y", "Z", new EchoRequest(), EchoReply.Parser));

        Assert.Equal(StatusCode.Unknown, ex.Status);
    }

    [Fact]
    public async Task Client_TruncatedResponseMessage_Internal()
    {
        await using var app = await StartAppAsync(app => app.Run(async context =>
        {
            context.Response.ContentType = "application/grpc";
            var frame = new byte[5 + 3];
            BinaryPrimitives.WriteUInt32BigEndian(frame.AsSpan(1), 100);
            await context.Response.Body.WriteAsync(frame);
            context.Response.AppendTrailer("grpc-status", "0");
        }));
        using var channel = new RpcChannel(new RpcChannelOptions { Address = Address(app) });

        var ex = await Assert.ThrowsAsync<RpcException>(() =>
            channel.UnaryAsync("x.Y", "Z", new EchoRequest(), EchoReply.Parser));

        Assert.Equal(StatusCode.Internal, ex.Status);
        Assert.Contains("ended inside a message", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Client_OkWithoutMessage_Internal()
    {
        await using var app = await StartAppAsync(app => app.Run(context =>
        {
            context.Response.ContentType = "application/grpc";
            context.Response.Headers["grpc-status"] = "0";
            return Task.CompletedTask;
        }));
        using var channel = new RpcChannel(new RpcChannelOptions { Address = Address(app) });

        var ex = await Assert.ThrowsAsync<RpcException>(() =>
            channel.UnaryAsync("x.Y", "Z", new EchoRequest(), EchoReply.Parser));

        Assert.Equal(StatusCode.Internal, ex.Status);
        Assert.Contains("no response message", ex.Message, StringComparison.Ordinal);
    }

    private static async Task<WebApplication> StartAppAsync(Action<WebApplication> configure)
    {
        var builder = WebApplication.CreateEmptyBuilder(new WebApplicationOptions());
        builder.WebHost.UseKestrelCore();
        builder.WebHost.ConfigureKestrel(kestrel =>
            kestrel.Listen(IPAddress.Loopback, 0, listen => listen.Protocols = HttpProtocols.Http2));
        builder.Logging.ClearProviders();
        var app = builder.Build();
        configure(app);
        await app.StartAsync();
        return app;
    }

    private static string Address(WebApplication app)
    {
        var bound = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        return new Uri(bound).Authority;
    }
}
