// Progress bars for long commands (gc, fsck): drawn with Spectre.Console on a terminal, silent otherwise.
using Spectre.Console;

namespace MirrorFS.Client.Cli;

/// <summary>One line of progress: a count towards a known maximum, or a running count when the maximum is unknown.</summary>
internal sealed class ProgressLine
{
    private readonly ProgressTask? _task;
    private readonly string _name;
    private long _value;

    public ProgressLine(ProgressTask? task, string name)
    {
        _task = task;
        _name = name;
    }

    public long Value => Interlocked.Read(ref _value);

    public void SetMax(long max)
    {
        if (_task is not null)
        {
            _task.IsIndeterminate = false;
            _task.MaxValue = Math.Max(1, max);
        }
    }

    public void Add(long n = 1)
    {
        var v = Interlocked.Add(ref _value, n);
        if (_task is not null)
        {
            if (_task.IsIndeterminate)
            {
                _task.Description = $"{Markup.Escape(_name)} ({v})";
            }
            else
            {
                _task.Increment(n);
            }
        }
    }

    public void Done()
    {
        if (_task is not null)
        {
            _task.IsIndeterminate = false;
            _task.MaxValue = Math.Max(1, _task.Value);
            _task.Value = _task.MaxValue;
            _task.StopTask();
        }
    }
}

/// <summary>Where a command adds its progress lines.</summary>
internal sealed class ProgressView
{
    private readonly ProgressContext? _context;

    private ProgressView(ProgressContext? context) => _context = context;

    /// <summary>A new line; <paramref name="max"/> null = count without a bar end.</summary>
    public ProgressLine Add(string name, long? max = null)
    {
        if (_context is null)
        {
            return new ProgressLine(null, name);
        }
        var task = _context.AddTask(Markup.Escape(name), autoStart: true, maxValue: Math.Max(1, max ?? 1));
        task.IsIndeterminate = max is null;
        return new ProgressLine(task, name);
    }

    /// <summary>Whether progress is drawn: only when the command writes to a terminal.</summary>
    public static bool Interactive(CliContext ctx) => ReferenceEquals(ctx.Out, Console.Out) && !Console.IsOutputRedirected;

    /// <summary>Runs <paramref name="body"/> with progress bars on a terminal; the bars stay on screen afterwards.</summary>
    public static async Task<T> RunAsync<T>(CliContext ctx, Func<ProgressView, Task<T>> body)
    {
        if (!Interactive(ctx))
        {
            return await body(new ProgressView(null)).ConfigureAwait(false);
        }
        var progress = AnsiConsole.Progress()
            .AutoClear(false)
            .HideCompleted(false)
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn(), new SpinnerColumn());
        return await progress.StartAsync(c => body(new ProgressView(c))).ConfigureAwait(false);
    }
}
