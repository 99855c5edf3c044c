"""Gemini optimizer: explicit context caching, consistent safety settings, thinking knobs.

``context_cache``
    The static part of a request (system instruction, tool definitions and
    the messages up to the last one marked ``cache_breakpoint=True``) is put
    in a ``cachedContents`` object once it reaches the model's minimum size,
    and later calls send only the dynamic messages plus ``cachedContent``.
    Cached tokens are billed at the cached rate (0.1x input on 2.5 and later)
    plus storage for the TTL; creating the cache bills its tokens once at the
    input rate. Caches are found again by a hash of their content, recreated
    when their TTL (``cache_ttl``, default 300 s) is about to run out, created
    once even when many calls need one at the same time, and deleted when the
    Registry closes. If Gemini refuses the cache (too small for the model) or
    no longer knows it, the call goes out as written.
``safety_settings``
    The configured ``{category = threshold}`` table is sent with every request
    that does not set its own.
``thinking``
    ``thinking_budget`` / ``include_thoughts`` become ``thinking_config`` on
    requests that set neither it nor ``reasoning_effort`` / ``reasoning_budget``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from forge.errors import BadRequestError, ForgeError, ProviderError
from forge.optimize.base import (
    NotApplicable,
    ProviderOptimizer,
    Step,
    StepObserver,
    count_tokens,
    digest,
    stable_json,
    static_prefix_end,
    tools_text,
)
from forge.types import Message, Request

log = logging.getLogger("forge.optimize")

__all__ = ["GoogleOptimizer", "min_cacheable_tokens"]

DEFAULT_CACHE_TTL = 300

# Minimum explicit-cache size per model family (Gemini context-caching docs); others 4,096.
_MINIMUMS = (
    ("gemini-2.5-flash", 1024),
    ("gemini-3-flash", 1024),
    ("gemini-2.5-pro", 4096),
    ("gemini-3-pro", 4096),
)
_DEFAULT_MINIMUM = 4096


def min_cacheable_tokens(model: str) -> int:
    """The smallest context ``model`` accepts in a cached content (unknown models: 4,096)."""
    name = model.removeprefix("models/")
    for family, minimum in _MINIMUMS:
        if name.startswith(family):
            return minimum
    return _DEFAULT_MINIMUM


@dataclass(frozen=True, slots=True)
class _CacheEntry:
    name: str
    tokens: int
    expires_at: float  # on the optimizer's clock, with a safety margin before the server's expiry
    model: str = ""


class GoogleOptimizer(ProviderOptimizer):
    """Context caching, safety settings and thinking config for Gemini."""

    provider = "google"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._entries: dict[str, _CacheEntry] = {}
        self._pending: dict[str, asyncio.Future[_CacheEntry]] = {}
        self._refused: dict[str, str] = {}

    def steps(self) -> Sequence[tuple[str, Step]]:
        out: list[tuple[str, Step]] = []
        if "safety_settings" in self.settings:
            out.append(("safety_settings", self.safety_settings))
        if "thinking_budget" in self.settings or "include_thoughts" in self.settings:
            out.append(("thinking", self.thinking))
        return out

    async def aoptimize_request(self, request: Request, *, on_step: StepObserver | None = None) -> Request:
        request = self.optimize_request(request, on_step=on_step)
        if self.switch("context_cache"):
            request = await self.run_async_step("context_cache", self.context_cache, request, on_step)
        return request

    async def run_async_step(
        self,
        name: str,
        step: Callable[[Request], Awaitable[Request]],
        request: Request,
        on_step: StepObserver | None = None,
    ) -> Request:
        """:meth:`run_step` for a step that awaits."""
        try:
            result = await step(request)
        except NotApplicable as skip:
            self.skip(name, skip.reason, on_step)
            return request
        except Exception as exc:
            self.fail(name, exc, on_step)
            return request
        self.applied(name, on_step)
        return result

    @property
    def ttl(self) -> int:
        value = self.settings.get("cache_ttl", DEFAULT_CACHE_TTL)
        return value if isinstance(value, int) else DEFAULT_CACHE_TTL

    def minimum(self, model: str) -> int:
        configured = self.settings.get("min_cache_tokens")
        return configured if isinstance(configured, int) else min_cacheable_tokens(model)

    # ------------------------------------------------------------------ sync steps

    def safety_settings(self, request: Request) -> Request:
        if "safety_settings" in request.extra:
            raise NotApplicable("the caller set safety_settings")
        return replace(request, extra={**request.extra, "safety_settings": self.settings["safety_settings"]})

    def thinking(self, request: Request) -> Request:
        if "thinking_config" in request.extra:
            raise NotApplicable("the caller set thinking_config")
        if getattr(request, "reasoning_effort", None) is not None or getattr(
            request, "reasoning_budget", None
        ) is not None:
            raise NotApplicable("the caller set reasoning_effort / reasoning_budget")
        config: dict[str, object] = {}
        if "thinking_budget" in self.settings:
            config["thinking_budget"] = self.settings["thinking_budget"]
        if "include_thoughts" in self.settings:
            config["include_thoughts"] = self.settings["include_thoughts"]
        return replace(request, extra={**request.extra, "thinking_config": config})

    # ------------------------------------------------------------------ context cache

    async def context_cache(self, request: Request) -> Request:
        if "cached_content" in request.extra or "cachedContent" in request.extra:
            raise NotApplicable("the caller set cached_content")
        client = getattr(self.bound_provider, "client", None)
        if client is None:
            raise NotApplicable("no Gemini client bound (the optimizer was not created by a Registry)")
        end = min(static_prefix_end(request.messages), len(request.messages) - 1)
        static = request.messages[:end]
        if not (request.system or request.tools or static):
            raise NotApplicable("no static content (system, tools or marked messages)")
        key = self.cache_key(request, static)
        refused = self._refused.get(key)
        if refused is not None:
            raise NotApplicable(f"Gemini refused to cache this prefix before: {refused}")
        tokens = count_tokens(
            "\n".join((request.system or "", tools_text(request.tools), *(m.content for m in static))),
            request,
            self.provider,
        )
        minimum = self.minimum(request.model)
        if tokens < minimum:
            raise NotApplicable(f"static content of ~{tokens} tokens is below {request.model}'s minimum "
                                f"of {minimum}")
        entry = await self._entry(key, request, static, client)
        return replace(
            request,
            system=None,
            tools=(),
            tool_choice=None,
            messages=request.messages[end:],
            extra={**request.extra, "cached_content": entry.name},
        )

    @staticmethod
    def cache_key(request: Request, static: Sequence[Message]) -> str:
        """Content hash naming a cache: model, system, tools, tool choice, static messages."""
        return digest(
            request.model,
            request.system or "",
            tools_text(request.tools),
            request.tool_choice or "",
            stable_json([
                (m.role, m.content, m.name, m.tool_call_id,
                 [(c.id, c.name, dict(c.arguments)) for c in m.tool_calls])
                for m in static
            ]),
        )

    async def _entry(self, key: str, request: Request, static: Sequence[Message], client: Any) -> _CacheEntry:
        entry = self._entries.get(key)
        if entry is not None and self._clock() < entry.expires_at:
            self.stats.counters["cache_hits"] += 1
            return entry
        pending = self._pending.get(key)
        if pending is not None:
            try:
                return await asyncio.shield(pending)
            except asyncio.CancelledError:
                if pending.cancelled():  # the creating call was cancelled, not this one
                    raise NotApplicable("the concurrent cache creation was cancelled") from None
                raise
        future: asyncio.Future[_CacheEntry] = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        try:
            entry = await self._create(key, request, static, client)
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it, nobody else needs to
            raise
        except BaseException:
            future.cancel()
            raise
        finally:
            self._pending.pop(key, None)
        future.set_result(entry)
        self._entries[key] = entry
        return entry

    async def _create(
        self, key: str, request: Request, static: Sequence[Message], client: Any
    ) -> _CacheEntry:
        from google.genai import types as gt

        from forge.providers.google import gemini_call_args

        ttl = self.ttl
        bare = Request(
            model=request.model,
            messages=tuple(static),
            system=request.system,
            tools=request.tools,
            tool_choice=request.tool_choice,
        )
        _, contents, config = gemini_call_args(bare)
        started = self._clock()
        try:
            cached = await client.aio.caches.create(
                model=request.model,
                config=gt.CreateCachedContentConfig(
                    contents=contents or None,
                    system_instruction=config.system_instruction,
                    tools=config.tools,  # type: ignore[arg-type]  # built as gt.Tool by the adapter
                    tool_config=config.tool_config,
                    ttl=f"{ttl}s",
                    display_name=f"forge-{key[:16]}",
                ),
            )
        except Exception as exc:
            classify = getattr(self.bound_provider, "classify", None)
            error = classify(exc) if classify is not None else exc
            if isinstance(error, BadRequestError):
                self._refused[key] = str(error)  # the same content would be refused again
            raise error from exc
        meta = getattr(cached, "usage_metadata", None)
        tokens = getattr(meta, "total_token_count", None) or 0
        self.stats.counters["cache_created"] += 1
        self.stats.counters["cache_write_tokens"] += tokens
        margin = min(30.0, ttl / 10)
        self.note("context_cache", f"created {cached.name} ({tokens} tokens, ttl {ttl}s)")
        return _CacheEntry(str(cached.name), int(tokens), started + ttl - margin, request.model)

    def should_fall_back(self, sent: Request, error: ForgeError) -> bool:
        name = sent.extra.get("cached_content")
        if isinstance(name, str) and isinstance(error, ProviderError):
            text = str(error).lower()
            if "cachedcontent" in text.replace(" ", "") or "cached_content" in text:
                self._forget(name)
                return True
        return super().should_fall_back(sent, error)

    def _forget(self, name: str) -> None:
        for key, entry in list(self._entries.items()):
            if entry.name == name:
                del self._entries[key]

    @property
    def live_caches(self) -> list[str]:
        """Names of the cached contents this optimizer created and still uses."""
        return [e.name for e in self._entries.values()]

    async def aclose(self) -> None:
        """Delete the caches this optimizer created, so their storage stops being billed."""
        client = getattr(self.bound_provider, "client", None)
        entries, self._entries = list(self._entries.values()), {}
        if client is None:
            return
        for entry in entries:
            try:
                await client.aio.caches.delete(name=entry.name)
            except Exception as exc:
                self._warn_undeleted(entry, exc)

    def _warn_undeleted(self, entry: _CacheEntry, exc: Exception) -> None:
        """A cache that could not be deleted is billed for storage until its TTL runs out: say how much."""
        from forge.pricing import cache_storage_usd

        # expires_at is the refresh point, min(30, ttl/10) s before Gemini's own expiry.
        left = max(0.0, entry.expires_at - self._clock()) + min(30.0, self.ttl / 10)
        cost = cache_storage_usd("google", entry.model, entry.tokens, left) if entry.model else None
        priced = f"about ${cost:.6f} of storage" if cost is not None else "storage at the model's rate"
        log.warning(
            "google optimizer: could not delete context cache %s (%s); its %d tokens stay stored, and "
            "billed (%s), for up to %.0f s more, until its TTL expires",
            entry.name, exc, entry.tokens, priced, left,
        )
