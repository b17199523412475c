// A loopback TCP forwarder that a test can cut: while down its port refuses connections, as a stopped endpoint does.
using System.Net;
using System.Net.Sockets;

namespace MirrorFS.Mirror.Tests.EndToEnd;

public sealed class TcpProxy : IAsyncDisposable
{
    private readonly IPEndPoint _target;
    private readonly CancellationTokenSource _stop = new();
    private readonly List<(TcpClient A, TcpClient B)> _open = [];
    private readonly Lock _lock = new();
    private TcpListener _listener;
    private Task _accept;

    public TcpProxy(int targetPort)
    {
        _target = new IPEndPoint(IPAddress.Loopback, targetPort);
        _listener = new TcpListener(IPAddress.Loopback, 0);
        _listener.Start();
        Port = ((IPEndPoint)_listener.LocalEndpoint).Port;
        _accept = Task.Run(() => AcceptAsync(_listener));
    }

    public int Port { get; }

    public bool IsDown { get; private set; }

    /// <summary>Closes the port and cuts every open connection: new ones are refused until <see cref="UpAsync"/>.</summary>
    public async Task DownAsync()
    {
        lock (_lock)
        {
            if (IsDown)
            {
                return;
            }
            IsDown = true;
            _listener.Stop();
            foreach (var (a, b) in _open)
            {
                a.Dispose();
                b.Dispose();
            }
            _open.Clear();
        }
        await _accept;
    }

    /// <summary>Listens on the same port again.</summary>
    public void Up()
    {
        lock (_lock)
        {
            if (!IsDown)
            {
                return;
            }
            _listener = new TcpListener(IPAddress.Loopback, Port);
            _listener.Server.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
            _listener.Start();
            IsDown = false;
            var l = _listener;
            _accept = Task.Run(() => AcceptAsync(l));
        }
    }

    private async Task AcceptAsync(TcpListener listener)
    {
        while (!_stop.IsCancellationRequested)
        {
            TcpClient client;
            try
            {
                client = await listener.AcceptTcpClientAsync(_stop.Token);
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException or OperationCanceledException or InvalidOperationException)
            {
                return; // stopped (down or disposed)
            }
            _ = Task.Run(() => PipeAsync(client));
        }
    }

    private async Task PipeAsync(TcpClient a)
    {
        var b = new TcpClient();
        try
        {
            await b.ConnectAsync(_target, _stop.Token);
            lock (_lock)
            {
                if (IsDown)
                {
                    return;
                }
                _open.Add((a, b));
            }
            var sa = a.GetStream();
            var sb = b.GetStream();
            await Task.WhenAny(sa.CopyToAsync(sb, _stop.Token), sb.CopyToAsync(sa, _stop.Token));
        }
        catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException or OperationCanceledException)
        {
        }
        finally
        {
            lock (_lock)
            {
                _open.Remove((a, b));
            }
            a.Dispose();
            b.Dispose();
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        await DownAsync();
        _stop.Dispose();
    }
}
