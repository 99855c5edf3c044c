"""Response caching: an identical request is answered from a cache instead of the provider.

::

    llm = reg.get_llm("openai:gpt-4o-mini", enable_cache=True, cache_ttl=300)
    first = await llm.invoke("Capital of France?")   # calls OpenAI
    again = await llm.invoke("Capital of France?")   # from the cache: again.cached, cost_usd == 0

The key is the sha256 of who is asked (provider, base URL and a one-way
fingerprint of the API key, organization and project; see ``cache_scope`` in
docs/configuration.md) and the normalized request (model, messages
and every parameter; not stream options such as timeouts or buffering, and
not prompt-cache hints), so a stream and a plain call of the same request
share an entry, and a cached reply replays as a stream (text in pieces, tool
calls, usage, finish). The cache is in-process by default
(:class:`MemoryResponseCache`, LRU with a TTL); :class:`RedisResponseCache`
shares it between processes. Only complete replies are stored (finish reason
stop, length or tool_calls); a cache that fails (Redis down) is logged and
skipped, never failing the call.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from forge.types import Request, Response, StreamEvent, ToolCall, Usage

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from forge.config import ProviderConfig

__all__ = [
    "MemoryResponseCache",
    "RedisResponseCache",
    "ResponseCache",
    "cache_scope_of",
    "is_cacheable",
    "replay_events",
    "request_key",
]

log = logging.getLogger("forge.cache")

_CACHEABLE_FINISH = frozenset({"stop", "length", "tool_calls"})
_REPLAY_CHUNK = 64


@runtime_checkable
class ResponseCache(Protocol):
    """Where cached replies live: ``get`` / ``set`` by key, with a TTL in seconds."""

    async def get(self, key: str) -> Response | None:
        """The reply stored under ``key``, or None (missing or expired)."""
        ...

    async def set(self, key: str, response: Response, ttl: float) -> None:
        """Store ``response`` under ``key`` for ``ttl`` seconds."""
        ...

    async def aclose(self) -> None:
        """Release connections (no-op for in-process caches)."""
        ...


def request_key(provider: str, request: Request, scope: str = "") -> str:
    """sha256 of the normalized request: what decides the reply, nothing else.

    ``scope`` says who is asked: the base URL and a one-way fingerprint of the
    credentials (:meth:`forge.config.ProviderConfig.account`), or the base URL
    alone when the provider's ``cache_scope`` is ``shared``. Two tenants with
    different keys therefore never read each other's replies.

    Prompt-cache hints (``Request.cache``, ``Message.cache_breakpoint``) change
    what the call costs, not what it answers, so they are left out.
    """
    data = dataclasses.asdict(request)
    data.pop("cache", None)
    for message in data["messages"]:
        message.pop("cache_breakpoint", None)
    text = json.dumps([provider, scope, data], sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def cache_scope_of(config: ProviderConfig | None) -> str:
    """The ``scope`` of :func:`request_key` for a provider's config ("" without one)."""
    if config is None:
        return ""
    account = config.account()
    if config.cache_scope == "shared":  # opt-in: every key on this base URL shares replies
        return account.partition("#")[0]
    return account


def is_cacheable(response: Response) -> bool:
    """Whether a reply is complete enough to serve again (not filtered, not an error)."""
    return response.finish_reason in _CACHEABLE_FINISH and not response.cached


def as_cached(response: Response, latency_s: float | None = None) -> Response:
    """``response`` as served from the cache: ``cached=True``, no cost, no attempts."""
    return dataclasses.replace(response, cached=True, cost_usd=0.0, attempts=0, latency_s=latency_s,
                               time_to_first_token_s=None)


async def replay_events(response: Response) -> AsyncIterator[StreamEvent]:
    """A cached reply as stream events: reasoning, text in pieces, tool calls, usage, finish."""
    if response.reasoning or response.reasoning_signature:
        yield StreamEvent("reasoning", response.reasoning or "", signature=response.reasoning_signature)
    text = response.text
    for start in range(0, len(text), _REPLAY_CHUNK):
        yield StreamEvent("text", text[start : start + _REPLAY_CHUNK])
    for index, call in enumerate(response.tool_calls):
        yield StreamEvent("tool_call_start", index=index, tool_call=ToolCall(call.id, call.name))
        yield StreamEvent("tool_call_delta", call.raw_arguments, index=index)
        yield StreamEvent("tool_call_done", index=index, tool_call=call)
    yield StreamEvent("usage", usage=response.usage)
    yield StreamEvent("finish", response.id or "", finish_reason=response.finish_reason)


class MemoryResponseCache:
    """An in-process LRU cache with per-entry TTL.

    Args:
        max_entries: the least recently used entry is dropped beyond this.
        clock: time source for expiry (tests inject a fake one).
    """

    def __init__(self, max_entries: int = 1024, *, clock: Callable[[], float] = time.monotonic) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be >= 1, got {max_entries}")
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, Response]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, key: str) -> Response | None:
        item = self._entries.get(key)
        if item is None:
            return None
        expires, response = item
        if self._clock() >= expires:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return response

    async def set(self, key: str, response: Response, ttl: float) -> None:
        if ttl <= 0:
            return
        self._entries[key] = (self._clock() + ttl, dataclasses.replace(response, raw=None))
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()

    async def aclose(self) -> None:
        self._entries.clear()


class RedisResponseCache:
    """Cached replies in Redis, shared by every process that uses the same ``prefix``.

    Args:
        url: ``redis://host:port/db`` (or pass ``client``, an ``redis.asyncio.Redis``).
        prefix: key prefix, so several services can share one Redis.

    Replies are stored as JSON (``raw`` is not kept) with Redis's own expiry.
    """

    def __init__(
        self, url: str | None = None, *, client: Redis | None = None, prefix: str = "forge:response:"
    ) -> None:
        if client is None:
            if url is None:
                raise ValueError("RedisResponseCache needs a url (redis://...) or a client.")
            import redis.asyncio

            client = redis.asyncio.Redis.from_url(url)
            self._owns = True
        else:
            self._owns = False
        self._redis = client
        self.prefix = prefix

    async def get(self, key: str) -> Response | None:
        data = await self._redis.get(self.prefix + key)
        if data is None:
            return None
        return _response_from_json(json.loads(data))

    async def set(self, key: str, response: Response, ttl: float) -> None:
        if ttl <= 0:
            return
        await self._redis.set(self.prefix + key, json.dumps(_response_to_json(response)),
                              px=max(1, int(ttl * 1000)))

    async def aclose(self) -> None:
        if self._owns:
            await self._redis.aclose()


def _response_to_json(r: Response) -> dict[str, Any]:
    return {
        "text": r.text,
        "provider": r.provider,
        "model": r.model,
        "finish_reason": r.finish_reason,
        "usage": dataclasses.asdict(r.usage),
        "tool_calls": [dataclasses.asdict(c) for c in r.tool_calls],
        "reasoning": r.reasoning,
        "reasoning_signature": r.reasoning_signature,
        "id": r.id,
        "chunks": r.chunks,
    }


def _response_from_json(d: dict[str, Any]) -> Response:
    return Response(
        text=d["text"],
        provider=d["provider"],
        model=d["model"],
        finish_reason=d.get("finish_reason"),
        usage=Usage(**d.get("usage", {})),
        tool_calls=tuple(ToolCall(**c) for c in d.get("tool_calls", ())),
        reasoning=d.get("reasoning"),
        reasoning_signature=d.get("reasoning_signature"),
        id=d.get("id"),
        chunks=d.get("chunks", 0),
    )
