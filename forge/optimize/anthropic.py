"""Anthropic optimizer: cache-aware prompt structure with ``cache_control`` breakpoints.

Anthropic caches a prompt prefix only where the request marks it, reads it at
0.1x the input price within its TTL and bills the first write at 1.25x
(5 minutes) or 2x (1 hour). The prefix is tools, then system, then messages,
so the static parts already come first; the optimizer decides where the
breakpoints go:

- after the tool definitions (``cache_tools``),
- after the system prompt,
- after each message the caller marked ``cache_breakpoint=True`` (documents
  sent with every call),
- in a multi-turn conversation without marks, after the history that precedes
  the last user turn (``cache_history``),

keeping only breakpoints whose prefix reaches the model's minimum cacheable
length (a shorter one is silently not cached by Anthropic, so it is not
sent), at most four (the first and the last three). ``cache_ttl`` picks 5
minutes or 1 hour.

JSON mode needs no step: the adapter maps ``response_format`` json / schema to
``output_config.format`` for every request.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from forge.optimize.base import NotApplicable, ProviderOptimizer, Step, count_tokens, tools_text
from forge.types import CacheHints, Request

__all__ = ["MAX_BREAKPOINTS", "AnthropicOptimizer", "min_cacheable_tokens"]

MAX_BREAKPOINTS = 4
"""Anthropic rejects a request with more ``cache_control`` blocks than this."""

# Minimum cacheable prompt length per model family (Anthropic's prompt-caching docs); default 1,024.
_MINIMUMS = (
    ("claude-opus-5", 512),
    ("claude-fable-5", 512),
    ("claude-mythos-5", 512),
    ("claude-opus-4-5", 4096),
    ("claude-opus-4-6", 4096),
    ("claude-haiku-4-5", 4096),
    ("claude-sonnet-4-6", 2048),
    ("claude-3-5-haiku", 2048),
    ("claude-3-haiku", 2048),
)
_DEFAULT_MINIMUM = 1024


def min_cacheable_tokens(model: str) -> int:
    """The shortest prefix ``model`` caches, in tokens.

    512 for Opus/Fable/Mythos 5; 1,024 for Sonnet 4/4.5/5 and Opus 4/4.1; 2,048 for
    Haiku 3.x and Sonnet 4.6; 4,096 for Haiku 4.5 and Opus 4.5/4.6. Anthropic's
    documented values change with new models: override with ``min_cache_tokens``.
    """
    for family, minimum in _MINIMUMS:
        if model.startswith(family):
            return minimum
    return _DEFAULT_MINIMUM


class AnthropicOptimizer(ProviderOptimizer):
    """Places ``cache_control`` breakpoints on the static prefix of each request."""

    provider = "anthropic"

    def steps(self) -> Sequence[tuple[str, Step]]:
        return [("prompt_cache", self.prompt_cache)] if self.switch("prompt_cache") else []

    def minimum(self, model: str) -> int:
        configured = self.settings.get("min_cache_tokens")
        return configured if isinstance(configured, int) else min_cacheable_tokens(model)

    def prompt_cache(self, request: Request) -> Request:
        if request.cache is not None:
            raise NotApplicable("the caller set cache hints")
        if "cache_control" in request.extra:
            raise NotApplicable("the caller set a top-level cache_control")
        minimum = self.minimum(request.model)
        candidates, marked = self._candidates(request)
        kept = [c for c in candidates if c[2] >= minimum]
        if not kept:
            longest = max((tokens for _, _, tokens in candidates), default=0)
            return self._below_minimum(request, marked, longest, minimum)
        if len(kept) > MAX_BREAKPOINTS:
            kept = [kept[0], *kept[-(MAX_BREAKPOINTS - 1):]]
        chosen = {i for kind, i, _ in kept if kind == "message"}
        messages = tuple(
            m if m.cache_breakpoint == (i in chosen) else replace(m, cache_breakpoint=i in chosen)
            for i, m in enumerate(request.messages)
        )
        ttl = self.settings.get("cache_ttl", 300)
        cache = CacheHints(
            system=any(kind == "system" for kind, _, _ in kept),
            tools=any(kind == "tools" for kind, _, _ in kept),
            ttl_seconds=ttl if isinstance(ttl, int) else 300,
        )
        self.note("prompt_cache", f"{len(kept)} breakpoint(s), longest prefix ~{kept[-1][2]} tokens")
        return replace(request, messages=messages, cache=cache)

    def _candidates(self, request: Request) -> tuple[list[tuple[str, int, int]], set[int]]:
        """Where a breakpoint could go: (kind, message index or -1, tokens of the prefix ending there),
        and the indexes of the messages marked for one."""
        candidates: list[tuple[str, int, int]] = []
        position = count_tokens(tools_text(request.tools), request, self.provider)
        if request.tools and self.switch("cache_tools"):
            candidates.append(("tools", -1, position))
        if request.system:
            position += count_tokens(request.system, request, self.provider)
            candidates.append(("system", -1, position))
        marked = {i for i, m in enumerate(request.messages) if m.cache_breakpoint}
        if not marked and self.switch("cache_history"):
            marked = _history_end(request)
        for i, m in enumerate(request.messages):
            position += count_tokens(m.content, request, self.provider)
            if i in marked:
                candidates.append(("message", i, position))
        return candidates, marked

    def _below_minimum(self, request: Request, marked: set[int], longest: int, minimum: int) -> Request:
        """No prefix reaches the model's minimum: not applicable, or the caller's marks cleared."""
        reason = f"static prefix of ~{longest} tokens is below {request.model}'s minimum of {minimum}"
        if not marked or not any(m.cache_breakpoint for m in request.messages):
            raise NotApplicable(reason)
        self.note("prompt_cache", reason + "; marks cleared")  # never send a breakpoint below it
        return replace(request, messages=tuple(replace(m, cache_breakpoint=False) if m.cache_breakpoint
                                               else m for m in request.messages))


def _history_end(request: Request) -> set[int]:
    """The message before the last user turn of a conversation of three or more messages."""
    if len(request.messages) < 3:
        return set()
    last_user = max((i for i, m in enumerate(request.messages) if m.role == "user"), default=-1)
    return {last_user - 1} if last_user >= 1 else set()
