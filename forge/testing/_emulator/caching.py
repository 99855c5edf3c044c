"""Prompt caching as the vendors bill it: prefix digests with lifetimes on the emulator's clock.

Token positions use the emulator's accounting (4 characters per token of the
text it counts); what is hashed also includes roles, tool definitions and
other structure, so a change anywhere before a position is a miss, as it is
at the vendor.

* OpenAI: automatic. Prefixes of 1,024+ tokens are cached in 128-token steps
  for 10 minutes after their last use (``prompt_cache_retention: "24h"`` or
  ``prompt_cache_options.ttl`` lengthen that); a request reads the longest
  cached step of its prompt (``cached_tokens``). ``prompt_cache_key`` and the
  model separate caches.
* Anthropic: explicit. A block with ``cache_control`` (or the last block, with
  a top-level ``cache_control``) is a breakpoint; at most 4. The longest
  breakpoint prefix still cached is read (``cache_read_input_tokens``);
  breakpoints after it whose prefix reaches the model's minimum are written
  (``cache_creation_input_tokens``, split by TTL: 5 minutes or 1 hour,
  refreshed on every read). Shorter ones are silently not cached.
* Gemini: explicit ``cachedContents`` objects (see the Gemini dialect).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from .vendor_facts import anthropic_cache_minimum, gemini_cache_minimum

__all__ = [
    "CacheState",
    "CacheUse",
    "PrefixCache",
    "Segment",
    "anthropic_min_tokens",
    "digests_at",
    "gemini_min_tokens",
]

_PRUNE_AT = 100_000


@dataclass(frozen=True, slots=True)
class CacheUse:
    """Cache effect of one request, in tokens (all part of its input tokens)."""

    read: int = 0
    write: int = 0
    write_1h: int = 0  # the part of ``write`` kept for an hour


@dataclass(frozen=True, slots=True)
class Segment:
    """One piece of a prompt: ``marker`` (hashed, not counted) then ``text`` (hashed and counted).

    ``ttl`` marks an Anthropic breakpoint at the segment's end (seconds).
    """

    marker: str
    text: str
    ttl: float | None = None


class PrefixCache:
    """Which prefix digests are cached, until when (one per dialect, cleared by ``reset``)."""

    __slots__ = ("_entries",)

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], float] = {}

    def alive(self, namespace: str, digest: str, now: float) -> bool:
        expires = self._entries.get((namespace, digest))
        return expires is not None and expires > now

    def put(self, namespace: str, digest: str, expires: float) -> None:
        key = (namespace, digest)
        if expires > self._entries.get(key, 0.0):
            self._entries[key] = expires

    def prune(self, now: float) -> None:
        if len(self._entries) > _PRUNE_AT:
            self._entries = {k: v for k, v in self._entries.items() if v > now}

    def clear(self) -> None:
        self._entries.clear()


class CacheState:
    """A dialect's caches: prefix digests and explicit cached objects (Gemini ``cachedContents``)."""

    __slots__ = ("contents", "prefixes")

    def __init__(self) -> None:
        self.prefixes = PrefixCache()
        self.contents: dict[str, Any] = {}

    def clear(self) -> None:
        self.prefixes.clear()
        self.contents.clear()


def digests_at(segments: Iterable[Segment], positions: Iterable[int]) -> Iterator[tuple[int, str]]:
    """``(position, digest of everything before it)`` for each counted-character position, in order."""
    h = hashlib.sha256()
    pos = 0
    it = iter(positions)
    nxt = next(it, None)
    for seg in segments:
        h.update(b"\x1e" + seg.marker.encode("utf-8", "surrogatepass") + b"\x1f")
        text = seg.text
        i = 0
        while nxt is not None and pos + (len(text) - i) >= nxt:
            take = nxt - pos
            h.update(text[i : i + take].encode("utf-8", "surrogatepass"))
            i += take
            pos = nxt
            yield nxt, h.copy().hexdigest()
            nxt = next(it, None)
        h.update(text[i:].encode("utf-8", "surrogatepass"))
        pos += len(text) - i


def breakpoint_digests(segments: Iterable[Segment]) -> list[tuple[int, str, float]]:
    """``(chars before the breakpoint, digest, ttl)`` at the end of each segment with a ``ttl``."""
    h = hashlib.sha256()
    pos = 0
    out: list[tuple[int, str, float]] = []
    for seg in segments:
        h.update(b"\x1e" + seg.marker.encode("utf-8", "surrogatepass") + b"\x1f")
        h.update(seg.text.encode("utf-8", "surrogatepass"))
        pos += len(seg.text)
        if seg.ttl is not None:
            out.append((pos, h.copy().hexdigest(), seg.ttl))
    return out


def anthropic_min_tokens(model: str) -> int:
    """Anthropic's minimum cacheable prompt length for ``model`` (from :mod:`.vendor_facts`)."""
    return anthropic_cache_minimum(model)


def gemini_min_tokens(model: str) -> int:
    """The smallest cached content ``model`` accepts (from :mod:`.vendor_facts`)."""
    return gemini_cache_minimum(model)
