// Renders tables with Spectre.Console into the command's writer (no colours, no ANSI codes).
using Spectre.Console;
using Spectre.Console.Rendering;

namespace MirrorFS.Client.Cli;

internal static class Tables
{
    private const int RedirectedWidth = 200;

    public static void Write(CliContext ctx, string? title, IReadOnlyList<string> headers, IEnumerable<IReadOnlyList<string>> rows,
        IReadOnlySet<int>? rightAligned = null)
    {
        var console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Ansi = AnsiSupport.No,
            ColorSystem = ColorSystemSupport.NoColors,
            Interactive = InteractionSupport.No,
            Out = new AnsiConsoleOutput(ctx.Out),
        });
        console.Profile.Width = ReferenceEquals(ctx.Out, Console.Out) && !Console.IsOutputRedirected
            ? Math.Max(80, Console.WindowWidth)
            : RedirectedWidth;
        var table = new Table { Border = TableBorder.Rounded };
        if (title is not null)
        {
            table.Title = new TableTitle(Markup.Escape(title));
        }
        for (var i = 0; i < headers.Count; i++)
        {
            var col = new TableColumn(new Text(headers[i]));
            if (rightAligned?.Contains(i) == true)
            {
                col.RightAligned();
            }
            table.AddColumn(col);
        }
        foreach (var row in rows)
        {
            table.AddRow(row.Select(c => (IRenderable)new Text(c)).ToArray());
        }
        console.Write(table);
    }
}
