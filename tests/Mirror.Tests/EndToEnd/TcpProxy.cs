// A loopback TCP forwarder that a test can cut: while down it drops every connection, as an unreachable endpoint does.
using System.Net;
using System.Net.Sockets;

namespace MirrorFS.Mirror.Tests.EndToEnd;

public sealed class TcpProxy : IAsyncDisposable
{
    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly IPEndPoint _target;
    private readonly CancellationTokenSource _stop = new();
    private readonly List<(TcpClient A, TcpClient B)> _open = [];
    private readonly Lock _lock = new();
    private readonly Task _accept;
    private volatile bool _down;

    public TcpProxy(int targetPort)
    {
        _target = new IPEndPoint(IPAddress.Loopback, targetPort);
        _listener.Start();
        _accept = Task.Run(AcceptAsync);
    }

    public int Port => ((IPEndPoint)_listener.LocalEndpoint).Port;

    /// <summary>Connections refused (accepted and closed at once) while down.</summary>
    public long Refused => Interlocked.Read(ref _refused);

    private long _refused;

    /// <summary>Cuts every open connection and refuses new ones until <see cref="Up"/>.</summary>
    public void Down()
    {
        _down = true;
        lock (_lock)
        {
            foreach (var (a, b) in _open)
            {
                a.Dispose();
                b.Dispose();
            }
            _open.Clear();
        }
    }

    public void Up() => _down = false;

    private async Task AcceptAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            TcpClient client;
            try
            {
                client = await _listener.AcceptTcpClientAsync(_stop.Token);
            }
            catch (Exception) when (_stop.IsCancellationRequested)
            {
                return;
            }
            if (_down)
            {
                Interlocked.Increment(ref _refused);
                client.Client.LingerState = new LingerOption(true, 0); // a reset, like a closed port
                client.Dispose();
                continue;
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
        _listener.Stop();
        Down();
        await _accept;
        _stop.Dispose();
    }
}
