"""Reply text, chunking and token accounting (deterministic, no tokenizer).

* input tokens  = ceil(chars / 4) over all input text (system + messages)
* output tokens = sum over emitted chunks of max(1, ceil(len(chunk) / 4))
"""

from __future__ import annotations

import json.encoder
from collections.abc import Iterable, Iterator

encode_json_str = json.encoder.encode_basestring_ascii

_FILLER = (
    "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima "
    "mike november oscar papa quebec romeo sierra tango uniform victor whiskey "
    "xray yankee zulu "
)
_FILLER_CACHE_CHARS = 4 * 1024 * 1024
_ECHO_LIMIT = 60


def tokens_for_chars(chars: int) -> int:
    """ceil(chars / 4)."""
    return (chars + 3) // 4


def chunk_tokens(chunk: str) -> int:
    """max(1, ceil(len(chunk) / 4))."""
    return max(1, (len(chunk) + 3) // 4)


def default_reply(provider: str, model: str, last_user_text: str) -> str:
    """``Hello from the emulator (openai, gpt-x). You said: <first 60 chars>``."""
    said = " ".join(last_user_text.split())
    if len(said) > _ECHO_LIMIT:
        said = said[: _ECHO_LIMIT - 3] + "..."
    tail = f"You said: {said}" if said else "You said nothing."
    return f"Hello from the emulator ({provider}, {model}). {tail}"


def split_text(text: str, count: int) -> list[str]:
    """``text`` in ``count`` nearly equal pieces (fewer if it is shorter than that)."""
    count = max(1, min(count, len(text)))
    n = len(text)
    return [text[i * n // count : (i + 1) * n // count] for i in range(count)]


def filler_chunks(count: int, size: int) -> Iterator[str]:
    """``count`` chunks of exactly ``size`` chars of words, generated lazily.

    The text cycles through a fixed word list, so there are at most
    ``len(_FILLER)`` distinct chunks; they are built once and reused (which
    also lets the stream encoder cache their JSON form).
    """
    if size <= 0 or count <= 0:
        return
    period = len(_FILLER)
    reps = _FILLER * (size // period + 2)
    if period * size <= _FILLER_CACHE_CHARS:
        cycle = [reps[(i * size) % period : (i * size) % period + size] for i in range(period)]
        for i in range(count):
            yield cycle[i % period]
    else:
        for i in range(count):
            offset = (i * size) % period
            yield reps[offset : offset + size]


def content_text(content: object) -> str:
    """The text in a message ``content``: a string or a list of text parts/blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(content_text(part) for part in content)
    if isinstance(content, dict):
        text = content.get("text")
        if isinstance(text, str):
            return text
        inner = content.get("content")  # e.g. Anthropic tool_result blocks
        if inner is not None:
            return content_text(inner)
    return ""


def total_chars(texts: Iterable[str]) -> int:
    return sum(len(t) for t in texts)


class JsonStrCache:
    """JSON string literals for chunk texts, cached while the cache is small."""

    __slots__ = ("_cache",)
    _LIMIT = 4096

    def __init__(self) -> None:
        self._cache: dict[str, bytes] = {}

    def __call__(self, text: str) -> bytes:
        encoded = self._cache.get(text)
        if encoded is None:
            encoded = encode_json_str(text).encode("ascii")
            if len(self._cache) < self._LIMIT:
                self._cache[text] = encoded
        return encoded
