// An OSS error answer: status code plus the <Error> XML body's Code, Message and extra elements.
namespace MirrorFS.Testing.Oss;

internal sealed record OssError(int Status, string Code, string Message)
{
    public IReadOnlyList<KeyValuePair<string, string>> Extra { get; init; } = [];

    public static OssError Forbidden(string code, string message) => new(403, code, message);

    public OssError With(string element, string value) => this with { Extra = [.. Extra, new(element, value)] };
}
