// A pull reader of JSON tokens over a stream: Utf8JsonReader on a bounded, refilled buffer.
using System.Buffers.Text;
using System.Text;
using System.Text.Json;

namespace MirrorFS.Client.Dump;

/// <summary>
/// Reads one token at a time from a stream of any size; memory is one buffer that grows only to the largest token
/// (bounded by <see cref="TokenBytesMax"/>). String and property values are unescaped into <see cref="Value"/>.
/// </summary>
public sealed class JsonPullReader
{
    public const int BufferBytes = 64 << 10;
    public const int TokenBytesMax = 1 << 20;

    private readonly Stream _input;
    private byte[] _buf = new byte[BufferBytes];
    private int _pos;
    private int _len;
    private bool _eof;
    private JsonReaderState _state = new(new JsonReaderOptions { CommentHandling = JsonCommentHandling.Disallow, MaxDepth = DumpFormat.JsonDepthMax });
    private byte[] _value = new byte[256];
    private int _valueLength;
    private long _consumed;

    public JsonPullReader(Stream input) => _input = input;

    public JsonTokenType Token { get; private set; } = JsonTokenType.None;

    /// <summary>Unescaped UTF-8 of the current string or property name, or the raw text of a number.</summary>
    public ReadOnlySpan<byte> Value => _value.AsSpan(0, _valueLength);

    /// <summary>Bytes of input consumed so far (for messages).</summary>
    public long Position => _consumed;

    /// <summary>Moves to the next token; false at the end of the input.</summary>
    public async ValueTask<bool> ReadAsync(CancellationToken ct = default)
    {
        while (true)
        {
            if (TryRead())
            {
                return true;
            }
            if (_eof)
            {
                if (_pos < _len)
                {
                    throw Error("the JSON ends in the middle of a value");
                }
                return false;
            }
            await FillAsync(ct).ConfigureAwait(false);
        }
    }

    private bool TryRead()
    {
        var reader = new Utf8JsonReader(_buf.AsSpan(_pos, _len - _pos), _eof, _state);
        bool ok;
        try
        {
            ok = reader.Read();
        }
        catch (JsonException e)
        {
            throw Error($"the file is not valid JSON ({e.Message.Split('.')[0]})");
        }
        if (!ok)
        {
            return false;
        }
        Token = reader.TokenType;
        _valueLength = 0;
        if (Token is JsonTokenType.String or JsonTokenType.PropertyName)
        {
            EnsureValue(reader.ValueSpan.Length);
            _valueLength = reader.CopyString(_value);
        }
        else if (Token == JsonTokenType.Number)
        {
            EnsureValue(reader.ValueSpan.Length);
            reader.ValueSpan.CopyTo(_value);
            _valueLength = reader.ValueSpan.Length;
        }
        _pos += (int)reader.BytesConsumed;
        _consumed += reader.BytesConsumed;
        _state = reader.CurrentState;
        return true;
    }

    private void EnsureValue(int n)
    {
        if (_value.Length < n)
        {
            _value = new byte[Math.Max(n, _value.Length * 2)];
        }
    }

    private async ValueTask FillAsync(CancellationToken ct)
    {
        if (_pos > 0)
        {
            Buffer.BlockCopy(_buf, _pos, _buf, 0, _len - _pos);
            _len -= _pos;
            _pos = 0;
        }
        if (_len == _buf.Length)
        {
            // One token fills the buffer: grow, within the bound.
            if (_buf.Length >= TokenBytesMax)
            {
                throw Error($"a JSON token is longer than {TokenBytesMax} bytes");
            }
            Array.Resize(ref _buf, Math.Min(_buf.Length * 2, TokenBytesMax));
        }
        var n = await _input.ReadAsync(_buf.AsMemory(_len), ct).ConfigureAwait(false);
        if (n == 0)
        {
            _eof = true;
        }
        _len += n;
    }

    public DumpFormatException Error(string what) => new($"dump is malformed near byte {_consumed}: {what}");

    /// <summary>Reads the next token and checks its type.</summary>
    public async ValueTask ExpectAsync(JsonTokenType type, string what, CancellationToken ct = default)
    {
        if (!await ReadAsync(ct).ConfigureAwait(false) || Token != type)
        {
            throw Error($"expected {what}");
        }
    }

    /// <summary>Skips the value whose first token is the current one (after reading past a property name).</summary>
    public async ValueTask SkipValueAsync(CancellationToken ct = default)
    {
        if (Token is not (JsonTokenType.StartObject or JsonTokenType.StartArray))
        {
            return;
        }
        var depth = 1;
        while (depth > 0)
        {
            if (!await ReadAsync(ct).ConfigureAwait(false))
            {
                throw Error("the JSON ends inside an object");
            }
            if (Token is JsonTokenType.StartObject or JsonTokenType.StartArray)
            {
                depth++;
            }
            else if (Token is JsonTokenType.EndObject or JsonTokenType.EndArray)
            {
                depth--;
            }
        }
    }

    /// <summary>Reads the next token as a value: skips it and everything inside when it is an object or array.</summary>
    public async ValueTask SkipNextValueAsync(CancellationToken ct = default)
    {
        if (!await ReadAsync(ct).ConfigureAwait(false))
        {
            throw Error("a property has no value");
        }
        await SkipValueAsync(ct).ConfigureAwait(false);
    }

    public bool Is(ReadOnlySpan<byte> utf8) => Value.SequenceEqual(utf8);

    /// <summary>The current string's unescaped UTF-8 bytes.</summary>
    public byte[] GetStringBytes() => Token == JsonTokenType.String ? Value.ToArray() : throw Error("expected a string");

    public string GetString() => Token == JsonTokenType.String ? Encoding.UTF8.GetString(Value) : throw Error("expected a string");

    public byte[] GetBase64()
    {
        if (Token != JsonTokenType.String)
        {
            throw Error("expected a base64 string");
        }
        var data = new byte[Base64.GetMaxDecodedFromUtf8Length(_valueLength)];
        var status = Base64.DecodeFromUtf8(Value, data, out _, out var written);
        return status == System.Buffers.OperationStatus.Done ? data.AsSpan(0, written).ToArray() : throw Error("invalid base64");
    }

    public ulong GetUInt64() =>
        Token == JsonTokenType.Number && Utf8Parser.TryParse(Value, out ulong v, out var n) && n == _valueLength
            ? v
            : throw Error("expected a non-negative integer");

    public long GetInt64() =>
        Token == JsonTokenType.Number && Utf8Parser.TryParse(Value, out long v, out var n) && n == _valueLength
            ? v
            : throw Error("expected an integer");

    public uint GetUInt32()
    {
        var v = GetUInt64();
        return v <= uint.MaxValue ? (uint)v : throw Error($"{v} is above {uint.MaxValue}");
    }

    public bool GetBoolean() => Token switch
    {
        JsonTokenType.True => true,
        JsonTokenType.False => false,
        _ => throw Error("expected true or false"),
    };

    /// <summary>Copies the value starting at the current token to <paramref name="w"/> (objects and arrays whole).</summary>
    public async ValueTask CopyValueAsync(Utf8JsonWriter w, CancellationToken ct = default)
    {
        var depth = 0;
        do
        {
            switch (Token)
            {
                case JsonTokenType.StartObject:
                    w.WriteStartObject();
                    depth++;
                    break;
                case JsonTokenType.StartArray:
                    w.WriteStartArray();
                    depth++;
                    break;
                case JsonTokenType.EndObject:
                    w.WriteEndObject();
                    depth--;
                    break;
                case JsonTokenType.EndArray:
                    w.WriteEndArray();
                    depth--;
                    break;
                case JsonTokenType.PropertyName:
                    w.WritePropertyName(Value);
                    break;
                case JsonTokenType.String:
                    w.WriteStringValue(Value);
                    break;
                case JsonTokenType.Number:
                    w.WriteRawValue(Value, skipInputValidation: true);
                    break;
                case JsonTokenType.True or JsonTokenType.False:
                    w.WriteBooleanValue(Token == JsonTokenType.True);
                    break;
                case JsonTokenType.Null:
                    w.WriteNullValue();
                    break;
                default:
                    throw Error($"unexpected {Token}");
            }
            if (depth == 0)
            {
                return;
            }
        }
        while (await ReadAsync(ct).ConfigureAwait(false));
        throw Error("the JSON ends inside a value");
    }
}
