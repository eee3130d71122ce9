"""Fast, upper-leaning estimates of how many tokens a request will use — never a real tokenizer.

``estimate_input_tokens`` reads the prompt of any endpoint body the gateway accepts (OpenAI chat, completions,
embeddings and Responses; Anthropic messages) and counts it without tokenising:

- **Text** is weighed by character class: every UTF-8 byte has a weight (a consonant, a vowel, a digit, a space, a
  newline, punctuation, or the lead byte of a character of some script), fitted against ``cl100k_base`` and biased
  upwards. Each string is rounded up on its own.
- **Structure** adds fixed overheads: per message, per tool call, reply priming, Anthropic's tool-use system prompt.
- **Tool and schema definitions** are counted on their compact JSON form.
- **Images, audio and files** are fixed figures (never their base64 text): see ``docs/estimation.md``.

The measured error against the real tokenizer is in ``docs/estimation.md`` (``bench/token_estimate_error.py``);
the cost (a few microseconds for a 2 KB prompt) is measured by ``bench/token_estimate_speed.py``.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from typing import Any, Final

import orjson

# --- text ----------------------------------------------------------------------------------------------------------
#
# A text's estimate is a weighted count of its UTF-8 bytes: one ``bytes.translate`` maps every byte to its weight and
# ``zlib.adler32`` adds them up in C (the low half of an Adler-32 checksum is 1 + the byte sum modulo 65,521, exact
# as long as a chunk's sum stays below the modulus). Weights are in 1/40 of a token, fitted against cl100k_base on
# prose, code, JSON and 40 languages and biased upwards; a string is rounded up on its own.

_UNITS_PER_TOKEN: Final = 40
_VOWELS: Final = b"aeiouAEIOU"
_CONSONANTS: Final = bytes(c for c in range(0x41, 0x7B) if chr(c).isalpha() and c not in _VOWELS)


def _span(first: int, last: int) -> bytes:
    return bytes(range(first, last + 1))


# ASCII classes (units per byte). Words cost by their consonants: text short of vowels (identifiers, hashes,
# base64-like runs) splits into more tokens than prose. Every ASCII byte not listed (punctuation, symbols, control
# characters) costs _PUNCT_UNITS in text and _JSON_PUNCT_UNITS in compact JSON, which packs '":"', '","' or
# '":{"' into one token.
_ASCII_UNITS: Final = (
    (_VOWELS, 1),
    (_CONSONANTS, 17),
    (b"0123456789", 41),  # numbers split into groups of up to three digits; short numbers are a token each
    (b" \t\x0b\x0c", 3),  # a space usually merges with the next word
    (b"\r\n", 17),
)
_PUNCT_UNITS: Final = 23
_JSON_PUNCT_UNITS: Final = 8

# Non-ASCII characters are weighed once, by their UTF-8 lead byte (continuation bytes weigh nothing), so these are
# units per character of the script.
_NON_ASCII_UNITS: Final = (
    (_span(0xC2, 0xCB), 127),  # Latin-1 supplement, Latin Extended, IPA: an accent breaks the surrounding word
    (_span(0xCC, 0xCF), 45),  # combining marks, Greek, Coptic
    (_span(0xD0, 0xD4), 25),  # Cyrillic
    (_span(0xD5, 0xDF), 48),  # Armenian, Hebrew, Arabic, Syriac, Thaana, NKo
    (_span(0xE0, 0xE0), 52),  # Samaritan .. Devanagari and the other Indic scripts, Thai
    (_span(0xE1, 0xE2), 48),  # Georgian .. general punctuation (“ ” — …), arrows, maths, dingbats
    (_span(0xE3, 0xE3), 44),  # CJK punctuation, kana
    (_span(0xE4, 0xE9), 68),  # CJK ideographs (Traditional Chinese needs ~1.6 tokens a character, Simplified ~1.2)
    (_span(0xEA, 0xED), 52),  # Hangul syllables
    (_span(0xEE, 0xEF), 44),  # private use, CJK compatibility, full-width forms (，。！)
    (_span(0xF0, 0xF4), 120),  # emoji (2-3 tokens each) and the other supplementary-plane characters
)


def _weight_table(punct_units: int) -> bytes:
    table = bytearray(256)  # UTF-8 continuation bytes and invalid bytes weigh nothing
    for byte in range(0x80):
        table[byte] = punct_units
    for members, units in _ASCII_UNITS + _NON_ASCII_UNITS:
        for byte in members:
            table[byte] = units
    return bytes(table)


_TEXT_WEIGHTS: Final = _weight_table(_PUNCT_UNITS)
_JSON_WEIGHTS: Final = _weight_table(_JSON_PUNCT_UNITS)
_ADLER_MAX_SUM: Final = 65_519  # 1 + sum must stay below the Adler-32 modulus, 65,521
_ASCII_CHUNK: Final = _ADLER_MAX_SUM // max(_TEXT_WEIGHTS[:0x80])
_CHUNK: Final = _ADLER_MAX_SUM // max(_TEXT_WEIGHTS)


def _units(data: bytes, weights: bytes) -> int:
    """Sum of the weights of the bytes of ``data``."""
    weighted = data.translate(weights)
    chunk = _ASCII_CHUNK if data.isascii() else _CHUNK
    if len(weighted) <= chunk:
        return (zlib.adler32(weighted) & 0xFFFF) - 1
    view = memoryview(weighted)
    return sum((zlib.adler32(view[i : i + chunk]) & 0xFFFF) - 1 for i in range(0, len(weighted), chunk))


def estimate_text_tokens(text: str) -> int:
    """Estimated tokens of one string (rounded up; an empty string is 0)."""
    if not text:
        return 0
    return -(-_units(text.encode("utf-8", "surrogatepass"), _TEXT_WEIGHTS) // _UNITS_PER_TOKEN)


def _json_tokens(value: Any) -> int:
    """Estimated tokens of a JSON value as its compact serialisation (tool definitions, schemas, tool inputs)."""
    try:
        data = orjson.dumps(value)
    except TypeError:  # orjson.JSONEncodeError: e.g. an integer beyond 64 bits from a lenient parser
        data = str(value).encode("utf-8", "surrogatepass")
    return -(-_units(data, _JSON_WEIGHTS) // _UNITS_PER_TOKEN)


# --- fixed figures ---------------------------------------------------------------------------------------------------

MESSAGE_OVERHEAD: Final = 4  # role and message delimiters (OpenAI's published rule: 3 + the role's token)
NAME_OVERHEAD: Final = 1
REPLY_PRIMING: Final = 3  # every reply is primed with <|start|>assistant<|message|>
TOOL_CALL_OVERHEAD: Final = 4  # per tool call / tool use / function call item in the history
TOOL_DEFINITION_OVERHEAD: Final = 8  # per tool definition, on top of its JSON
ANTHROPIC_TOOL_SYSTEM_PROMPT: Final = 346  # tokens Anthropic adds when tools are present (Claude 4.x, auto/none)
BUILTIN_TOOL: Final = 750  # a provider-defined tool (web search, bash, computer use...): its hidden prompt

IMAGE_LOW_DETAIL: Final = 85  # OpenAI, detail=low
IMAGE_OPENAI: Final = 1536  # OpenAI, detail=high/auto: ≥ the 1,445 of an 8-tile image and the 1,536-patch cap
IMAGE_ANTHROPIC: Final = 1600  # Anthropic: ~1.15 megapixels / 750 after the API's resizing
DOCUMENT_PER_CHUNK: Final = 4600  # a PDF page (text + page image) per started 50 KB of file data
DOCUMENT_CHUNK_BYTES: Final = 50_000
AUDIO_BYTES_PER_TOKEN: Final = 1000  # input audio: one token per started kilobyte of audio data

# Keys whose string values never reach the model as text (binary payloads, opaque state, settings).
_OPAQUE_KEYS: Final = frozenset(
    {
        "type",
        "cache_control",
        "signature",
        "encrypted_content",
        "encrypted_index",
        "data",
        "file_data",
        "media_type",
        "detail",
        "status",
        "citations",
    }
)


def _base64_bytes(value: Any) -> int:
    """Decoded size of a base64 string or data URL (0 when it is not a string)."""
    if not isinstance(value, str):
        return 0
    comma = value.find(",", 0, 100) if value.startswith("data:") else -1
    return (len(value) - comma - 1) * 3 // 4


def _document(part: Mapping[str, Any]) -> int:
    """A file attachment: inline text is counted as text, anything else by size (or one chunk when unknown)."""
    tokens = _generic(part.get("title")) + _generic(part.get("context"))
    source = part.get("source")
    if isinstance(source, Mapping):  # Anthropic
        kind = source.get("type")
        if kind == "text":
            return tokens + _generic(source.get("data"))
        if kind == "content":
            return tokens + _content(source.get("content"))
        size = _base64_bytes(source.get("data"))
    else:  # OpenAI: {"type": "file", "file": {"file_data": ...}} or Responses {"type": "input_file", "file_data": ...}
        inner = part.get("file")
        holder = inner if isinstance(inner, Mapping) else part
        tokens += _generic(holder.get("filename"))
        size = _base64_bytes(holder.get("file_data"))
    return tokens + DOCUMENT_PER_CHUNK * max(1, -(-size // DOCUMENT_CHUNK_BYTES))


def _openai_image(detail: Any) -> int:
    return IMAGE_LOW_DETAIL if detail == "low" else IMAGE_OPENAI


def _part(part: Any) -> int:
    """One content part / block / Responses input item."""
    if not isinstance(part, Mapping):
        return _content(part)
    match part.get("type"):
        case "text" | "input_text" | "output_text" | "summary_text" | "reasoning_text":
            return _generic(part.get("text"))
        case "refusal":
            return _generic(part.get("refusal"))
        case "image_url":
            image = part.get("image_url")
            return _openai_image(image.get("detail") if isinstance(image, Mapping) else None)
        case "input_image":
            return _openai_image(part.get("detail"))
        case "image":
            return IMAGE_ANTHROPIC
        case "document" | "file" | "input_file":
            return _document(part)
        case "input_audio":
            audio = part.get("input_audio")
            size = _base64_bytes(audio.get("data")) if isinstance(audio, Mapping) else 0
            return -(-size // AUDIO_BYTES_PER_TOKEN)
        case "thinking":
            return _generic(part.get("thinking"))
        case "redacted_thinking":
            return 0
        case "tool_use" | "server_tool_use":
            return TOOL_CALL_OVERHEAD + _generic(part.get("name")) + _json_tokens(part.get("input"))
        case "tool_result":
            return TOOL_CALL_OVERHEAD + _content(part.get("content"))
        case "function_call" | "custom_tool_call":
            arguments = part.get("arguments", part.get("input"))
            return TOOL_CALL_OVERHEAD + _generic(part.get("name")) + _generic(arguments)
        case "function_call_output" | "custom_tool_call_output":
            return TOOL_CALL_OVERHEAD + _content(part.get("output"))
        case "message":
            return _message(part)
        case None if "role" in part:
            return _message(part)
        case _:
            return _generic(part)


def _content(value: Any) -> int:
    """Message content: a string, a list of parts, or a single part."""
    if isinstance(value, str):
        return estimate_text_tokens(value)
    if isinstance(value, list):
        return sum(_part(item) for item in value)
    if isinstance(value, Mapping):
        return _part(value)
    return 0


def _generic(value: Any) -> int:
    """Any other JSON value: its strings as text (opaque keys skipped), other scalars as one token each."""
    if isinstance(value, str):
        return estimate_text_tokens(value)
    if isinstance(value, Mapping):
        return sum(_generic(item) for key, item in value.items() if key not in _OPAQUE_KEYS)
    if isinstance(value, list):
        return sum(_generic(item) for item in value)
    if value is None:
        return 0
    return 1


def _message(message: Mapping[str, Any]) -> int:
    """A chat / Anthropic / Responses message, with its tool calls."""
    tokens = MESSAGE_OVERHEAD + _content(message.get("content"))
    name = message.get("name")
    if isinstance(name, str):
        tokens += NAME_OVERHEAD + estimate_text_tokens(name)
    calls = message.get("tool_calls")
    if isinstance(calls, list):
        for call in calls:
            function = call.get("function") if isinstance(call, Mapping) else None
            tokens += TOOL_CALL_OVERHEAD + (_generic(function) if isinstance(function, Mapping) else 0)
    function_call = message.get("function_call")
    if isinstance(function_call, Mapping):
        tokens += TOOL_CALL_OVERHEAD + _generic(function_call)
    return tokens


def _tools(tools: Any) -> tuple[int, bool]:
    """Tool definitions, and whether any of them is Anthropic-shaped."""
    if not isinstance(tools, list):
        return 0, False
    tokens = 0
    anthropic = False
    for tool in tools:
        if not isinstance(tool, Mapping):
            continue
        kind = tool.get("type")
        if "input_schema" in tool:
            anthropic = True
        elif kind not in (None, "function", "custom"):
            anthropic = anthropic or "name" in tool  # Anthropic's versioned tools (bash_20250124, ...) carry a name
            tokens += BUILTIN_TOOL
            continue
        definition = tool.get("function", tool)
        tokens += TOOL_DEFINITION_OVERHEAD + _json_tokens(definition)
    return tokens, anthropic


def _prompt(value: Any) -> int:
    """Completions ``prompt`` / embeddings ``input``: text, a list of texts, token ids or lists of token ids."""
    if isinstance(value, str):
        return estimate_text_tokens(value)
    if isinstance(value, list):
        tokens = 0
        for item in value:
            if isinstance(item, str):
                tokens += estimate_text_tokens(item)
            elif isinstance(item, list):
                tokens += len(item)
            elif isinstance(item, int):
                tokens += 1
            elif isinstance(item, Mapping):  # a Responses input item
                tokens += _part(item)
        return tokens
    return 0


def estimate_input_tokens(body: Mapping[str, Any]) -> int:
    """Approximate, upper-leaning prompt tokens of any endpoint body (chat, completions, embeddings, Responses,
    Anthropic messages). Pure and fast: no tokenizer, no I/O. Unknown shapes count what text they carry."""
    try:
        return _estimate(body)
    except RecursionError:  # a body nested hundreds of levels deep: count everything in it, without recursion
        return _flat_estimate(body)


def _flat_estimate(value: Any) -> int:
    """Every string (as text) and other scalar (one token) anywhere in ``value``, walked with an explicit stack."""
    tokens = REPLY_PRIMING
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            tokens += estimate_text_tokens(item)
        elif isinstance(item, Mapping):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif item is not None:
            tokens += 1
    return tokens


def _estimate(body: Mapping[str, Any]) -> int:
    get = body.get
    tokens = 0
    chat = False  # a conversation: the reply is primed
    messages = get("messages")
    if isinstance(messages, list):
        chat = True
        for message in messages:
            tokens += _message(message) if isinstance(message, Mapping) else _content(message)
    system = get("system")
    if system is not None:
        chat = True
        tokens += MESSAGE_OVERHEAD + _content(system)
    instructions = get("instructions")
    if isinstance(instructions, str):
        chat = True
        tokens += MESSAGE_OVERHEAD + estimate_text_tokens(instructions)
    value = get("input")
    if value is not None:
        model = get("model")
        if isinstance(model, str) and "embed" in model:
            tokens += _prompt(value)
        else:  # Responses: a string is one user message, a list holds input items
            chat = True
            tokens += _prompt(value) + (MESSAGE_OVERHEAD if isinstance(value, str) else 0)
    value = get("prompt")
    if value is not None:
        tokens += _prompt(value)
    value = get("suffix")
    if value is not None:
        tokens += _generic(value)
    value = get("tools")
    if value is not None:
        tool_tokens, anthropic_tools = _tools(value)
        tokens += tool_tokens + (ANTHROPIC_TOOL_SYSTEM_PROMPT if anthropic_tools else 0)
    value = get("functions")
    if value is not None:
        tokens += _tools(value)[0]
    value = get("response_format")
    if value is not None:
        tokens += _schema(value)
    value = get("text")
    if isinstance(value, Mapping):
        tokens += _schema(value.get("format"))
    return tokens + (REPLY_PRIMING if chat else 0)


def _schema(response_format: Any) -> int:
    """A structured-output schema (chat ``response_format`` / Responses ``text.format``)."""
    if not isinstance(response_format, Mapping) or response_format.get("type") != "json_schema":
        return 0
    return TOOL_DEFINITION_OVERHEAD + _json_tokens(response_format)


# --- output ----------------------------------------------------------------------------------------------------------

_OUTPUT_LIMIT_KEYS: Final = ("max_completion_tokens", "max_tokens", "max_output_tokens")


def output_bound(body: Mapping[str, Any], default_cap: int) -> int:
    """The most output tokens the request may produce: the first of ``max_completion_tokens``, ``max_tokens``,
    ``max_output_tokens`` that is present (not null), else ``default_cap``. A value that is not a non-negative
    integer also gives ``default_cap`` (rejecting it is request validation's job, not this function's)."""
    for key in _OUTPUT_LIMIT_KEYS:
        value = body.get(key)
        if value is None:
            continue
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
        return default_cap
    return default_cap


CHARS_PER_OUTPUT_TOKEN: Final = 3  # English prose runs ~4 characters a token and code ~3: lean towards charging more


def tokens_for_text_chars(chars: int) -> int:
    """Output tokens to charge for ``chars`` characters of generated text when a stream ended before the provider
    reported usage: ``ceil(chars / 3)`` (0 for no text)."""
    if chars <= 0:
        return 0
    return -(-chars // CHARS_PER_OUTPUT_TOKEN)
