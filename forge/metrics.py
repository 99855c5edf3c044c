"""Metrics: counters, timings and cost per provider and model, recorded in microseconds.

Every :class:`~forge.Registry` has one :class:`Metrics` (``reg.metrics``); every
call through it is recorded. ``reg.metrics.snapshot()`` returns plain data
(dicts, numbers) for logging or an HTTP endpoint; ``forge metrics`` prints it.
A service that has its own telemetry subscribes to the events instead::

    reg.metrics.subscribe(lambda event: my_telemetry.emit(event.kind, event.fields))

Recording is an attribute update on a small per-(provider, model) object plus
an append to a bounded sample window: a couple of microseconds, no locks, no
formatting (percentiles are computed only when a snapshot is taken).
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from forge.pricing import price_for

if TYPE_CHECKING:
    from forge.pricing import ModelPrice
    from forge.types import Response

__all__ = ["MetricEvent", "Metrics", "ModelStats", "format_snapshot"]

# Latency samples kept per model for percentiles: enough for stable p99s, bounded memory.
_WINDOW = 4096
_log = logging.getLogger("forge.metrics")


@dataclass(frozen=True, slots=True)
class MetricEvent:
    """One thing that happened: ``kind`` is request / retry / rate_limited / limiter_wait /
    optimization / cache_hit / fallback / breaker; ``fields`` holds its numbers and names.

    ``request`` (a call ended): ``ok``, ``attempts``; on success ``stream``, ``batch``,
    ``latency_s``, ``ttft_s``, ``chunks``, token counts and ``cost_usd``; on failure
    ``error`` (the class name) and ``elapsed_s``.

    ``fallback`` (a chain moved past a link; provider/model are that link's):
    ``from`` and ``to`` (``provider:model``), ``error`` (the error's class name, or
    the skip reason), ``reason`` (``error``, ``breaker_open``, ``limiter_wait``,
    ``context_length``, or ``hedge``: the link was slow and the next one started beside
    it), ``elapsed_s`` (time spent on the link).
    ``breaker`` (a circuit breaker changed state): ``key`` (``provider|base_url|model``,
    or ``provider|base_url#fingerprint|model`` for an account breaker),
    ``old_state`` and ``new_state`` (``closed`` / ``open`` / ``half_open``),
    ``cooldown_s`` (how long it stays open; 0 unless opening), ``error`` (class name
    of the failure that opened it, ``SlowCall``, or None), ``shared`` (True when
    another process made the change and this one saw it later).
    """

    kind: str
    provider: str
    model: str
    fields: dict[str, object]
    time: float


@dataclass(slots=True)
class ModelStats:
    """Running totals for one provider and model."""

    requests: int = 0
    successes: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    retries: int = 0
    retried_calls: int = 0
    retried_successes: int = 0
    rate_limited: int = 0
    limiter_waits: int = 0
    limiter_wait_s: float = 0.0
    streams: int = 0
    stream_chunks: int = 0
    stream_seconds: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: float = 0.0
    unpriced_requests: int = 0
    cache_savings_usd: float = 0.0
    response_cache_hits: int = 0
    optimizations_applied: dict[str, int] = field(default_factory=dict)
    optimizations_skipped: dict[str, int] = field(default_factory=dict)
    fallbacks: int = 0
    latency: deque[float] = field(default_factory=lambda: deque(maxlen=_WINDOW))
    ttft: deque[float] = field(default_factory=lambda: deque(maxlen=_WINDOW))


def _percentiles(samples: deque[float]) -> dict[str, float | None]:
    if not samples:
        return {"p50": None, "p95": None, "p99": None}
    ordered = sorted(samples)
    n = len(ordered)

    def pick(q: float) -> float:
        return ordered[min(n - 1, max(0, math.ceil(q * n) - 1))]

    return {"p50": pick(0.50), "p95": pick(0.95), "p99": pick(0.99)}


class Metrics:
    """Counters and timings for one registry, keyed by ``provider:model``."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._stats: dict[tuple[str, str], ModelStats] = {}
        self._subscribers: list[Callable[[MetricEvent], object]] = []
        self._started = clock()
        self._breakers: dict[str, dict[str, object]] = {}

    # ------------------------------------------------------------------ subscription

    def subscribe(self, callback: Callable[[MetricEvent], object]) -> Callable[[], None]:
        """Call ``callback(event)`` for every recorded event; returns an unsubscribe function."""
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback)

    def _emit(self, kind: str, provider: str, model: str, fields: dict[str, object]) -> None:
        if self._subscribers:
            event = MetricEvent(kind, provider, model, fields, self._clock())
            for callback in list(self._subscribers):
                try:
                    callback(event)
                except Exception:
                    # Telemetry must never break a call, but a broken subscriber is logged.
                    _log.exception("forge metrics subscriber %r failed on a %s event", callback, kind)

    def stats(self, provider: str, model: str) -> ModelStats:
        """The live totals of one provider and model (created on first use)."""
        key = (provider, model)
        stats = self._stats.get(key)
        if stats is None:
            stats = self._stats[key] = ModelStats()
        return stats

    # ------------------------------------------------------------------ recording

    def record_success(
        self,
        response: Response,
        *,
        stream: bool = False,
        batch: bool = False,
        prices: Mapping[str, ModelPrice] | None = None,
    ) -> None:
        """A call that returned ``response`` (its usage, cost, latency, attempts).

        ``prices`` are the provider's configured price overrides (for cache savings).
        """
        s = self.stats(response.provider, response.model)
        s.requests += 1
        s.successes += 1
        if response.attempts > 1:
            s.retried_calls += 1
            s.retried_successes += 1
        u = response.usage
        s.input_tokens += u.input_tokens
        s.output_tokens += u.output_tokens
        s.cached_input_tokens += u.cached_input_tokens
        s.cache_write_tokens += u.cache_write_tokens
        s.reasoning_tokens += u.reasoning_tokens
        if response.cost_usd is None:
            s.unpriced_requests += 1
        else:
            s.cost_usd += response.cost_usd
        if u.cached_input_tokens:
            price = price_for(response.provider, response.model, prices)
            if price is not None and price.cached_input is not None:
                saved = u.cached_input_tokens * (price.input - price.cached_input) / 1_000_000
                s.cache_savings_usd += saved * (price.batch_discount if batch else 1.0)
        if response.latency_s is not None:
            s.latency.append(response.latency_s)
        if stream:
            s.streams += 1
            s.stream_chunks += response.chunks
            if response.latency_s:
                s.stream_seconds += response.latency_s
            if response.time_to_first_token_s is not None:
                s.ttft.append(response.time_to_first_token_s)
        if self._subscribers:
            self._emit(
                "request",
                response.provider,
                response.model,
                {
                    "ok": True,
                    "stream": stream,
                    "latency_s": response.latency_s,
                    "ttft_s": response.time_to_first_token_s,
                    "attempts": response.attempts,
                    "input_tokens": u.input_tokens,
                    "output_tokens": u.output_tokens,
                    "cached_input_tokens": u.cached_input_tokens,
                    "cost_usd": response.cost_usd,
                    "chunks": response.chunks,
                    "batch": batch,
                },
            )

    def record_failure(
        self, provider: str, model: str, error: BaseException, *, attempts: int = 1,
        elapsed_s: float | None = None,
    ) -> None:
        """A call that failed with ``error`` (after ``attempts`` attempts, ``elapsed_s`` seconds)."""
        s = self.stats(provider, model)
        s.requests += 1
        name = type(error).__name__
        s.failures[name] = s.failures.get(name, 0) + 1
        if attempts > 1:
            s.retried_calls += 1
        self._emit(
            "request", provider, model,
            {"ok": False, "error": name, "attempts": attempts, "elapsed_s": elapsed_s},
        )

    def record_retry(self, provider: str, model: str, error: BaseException, wait: float) -> None:
        """One retry of a call, after ``error``, waiting ``wait`` seconds."""
        s = self.stats(provider, model)
        s.retries += 1
        if getattr(error, "status", None) == 429 or type(error).__name__ == "RateLimitError":
            s.rate_limited += 1
        self._emit("retry", provider, model, {"error": type(error).__name__, "wait_s": wait})

    def record_rate_limited(self, provider: str, model: str) -> None:
        """A 429 that was not retried (it surfaced to the caller)."""
        self.stats(provider, model).rate_limited += 1
        self._emit("rate_limited", provider, model, {})

    def record_limiter_wait(self, provider: str, model: str, seconds: float) -> None:
        """The client-side limiter held a call back for ``seconds``."""
        s = self.stats(provider, model)
        s.limiter_waits += 1
        s.limiter_wait_s += seconds
        self._emit("limiter_wait", provider, model, {"wait_s": seconds})

    def record_optimization(
        self, provider: str, model: str, name: str, applied: bool, reason: str = ""
    ) -> None:
        """An optimizer ``name`` applied (or was skipped, with ``reason``)."""
        s = self.stats(provider, model)
        bucket = s.optimizations_applied if applied else s.optimizations_skipped
        bucket[name] = bucket.get(name, 0) + 1
        self._emit("optimization", provider, model, {"name": name, "applied": applied, "reason": reason})

    def record_cache_hit(self, provider: str, model: str, saved_usd: float | None) -> None:
        """A reply served from forge's response cache (no provider call)."""
        s = self.stats(provider, model)
        s.response_cache_hits += 1
        if saved_usd:
            s.cache_savings_usd += saved_usd
        self._emit("cache_hit", provider, model, {"saved_usd": saved_usd})

    def record_fallback(
        self, from_ref: str, to_ref: str, error: str, elapsed_s: float, *, reason: str = "error"
    ) -> None:
        """A fallback chain moved from ``from_ref`` to ``to_ref`` (both ``provider:model``).

        ``error`` is the failure's class name (or the skip reason), ``elapsed_s`` the
        time spent on ``from_ref``, ``reason`` one of error / breaker_open /
        limiter_wait / context_length.
        """
        provider, _, model = from_ref.partition(":")
        self.stats(provider, model).fallbacks += 1
        self._emit(
            "fallback", provider, model,
            {"from": from_ref, "to": to_ref, "error": error, "reason": reason, "elapsed_s": elapsed_s},
        )

    def record_breaker(
        self, key: str, old_state: str, new_state: str, cooldown_s: float, error: str | None = None,
        *, shared: bool = False,
    ) -> None:
        """A circuit breaker (``provider|base_url|model``) went from ``old_state`` to ``new_state``.

        ``shared``: another process made the change (Redis-shared breakers); this one saw it
        when it next read the breaker.
        """
        provider, _, rest = key.partition("|")
        model = rest.rpartition("|")[2]
        entry = self._breakers.setdefault(key, {"opened": 0})
        entry.update(state=new_state, cooldown_s=cooldown_s, since=self._clock(), shared=shared)
        if new_state == "open":
            entry["opened"] = int(str(entry["opened"])) + 1
        self._emit(
            "breaker", provider, model,
            {"key": key, "old_state": old_state, "new_state": new_state, "cooldown_s": cooldown_s,
             "error": error, "shared": shared},
        )

    # ------------------------------------------------------------------ reading

    def snapshot(self) -> dict[str, object]:
        """Plain data: totals per ``provider:model`` and overall."""
        models: dict[str, object] = {}
        totals = {"requests": 0, "successes": 0, "failures": 0, "retries": 0, "rate_limited": 0,
                  "cost_usd": 0.0, "cache_savings_usd": 0.0}
        for (provider, model), s in sorted(self._stats.items()):
            failures = sum(s.failures.values())
            output_rate = s.output_tokens / s.stream_seconds if s.stream_seconds else None
            models[f"{provider}:{model}"] = {
                "provider": provider,
                "model": model,
                "requests": s.requests,
                "successes": s.successes,
                "failures": failures,
                "failures_by_error": dict(s.failures),
                "retries": s.retries,
                "retry_success_rate": (s.retried_successes / s.retried_calls) if s.retried_calls else None,
                "rate_limited": s.rate_limited,
                "limiter_waits": s.limiter_waits,
                "limiter_wait_s": s.limiter_wait_s,
                "streams": s.streams,
                "stream_chunks_per_s": (s.stream_chunks / s.stream_seconds) if s.stream_seconds else None,
                "stream_output_tokens_per_s": output_rate if s.streams else None,
                "latency_s": _percentiles(s.latency),
                "ttft_s": _percentiles(s.ttft),
                "input_tokens": s.input_tokens,
                "output_tokens": s.output_tokens,
                "cached_input_tokens": s.cached_input_tokens,
                "cache_write_tokens": s.cache_write_tokens,
                "reasoning_tokens": s.reasoning_tokens,
                "cost_usd": s.cost_usd,
                "unpriced_requests": s.unpriced_requests,
                "cache_savings_usd": s.cache_savings_usd,
                "response_cache_hits": s.response_cache_hits,
                "optimizations_applied": dict(s.optimizations_applied),
                "optimizations_skipped": dict(s.optimizations_skipped),
                "fallbacks": s.fallbacks,
            }
            totals["requests"] += s.requests
            totals["successes"] += s.successes
            totals["failures"] += failures
            totals["retries"] += s.retries
            totals["rate_limited"] += s.rate_limited
            totals["cost_usd"] += s.cost_usd
            totals["cache_savings_usd"] += s.cache_savings_usd
        breakers = {key: dict(entry) for key, entry in sorted(self._breakers.items())}
        return {"uptime_s": self._clock() - self._started, "totals": totals, "models": models,
                "breakers": breakers}

    def reset(self) -> None:
        """Forget everything recorded so far."""
        self._stats.clear()
        self._breakers.clear()
        self._started = self._clock()

    def format_table(self) -> str:
        """The snapshot as a text table (what ``forge metrics`` prints)."""
        return format_snapshot(self.snapshot())


_MODEL_FIELDS = ("latency_s", "ttft_s", "cost_usd", "requests", "successes", "failures", "retries",
                 "rate_limited", "input_tokens", "output_tokens", "cached_input_tokens", "cache_savings_usd")


def format_snapshot(snap: dict[str, object]) -> str:
    """A :meth:`Metrics.snapshot` (or its JSON) as a text table."""
    rows = [("model", "reqs", "ok", "fail", "retries", "429s", "p50 s", "p95 s", "ttft p50", "in tok",
             "out tok", "cached", "cost $", "saved $")]
    models = snap.get("models") if isinstance(snap, dict) else None  # any JSON may come from a file
    if not isinstance(models, dict):
        raise ValueError("not a forge metrics snapshot: it has no 'models' table.")
    for name, m in models.items():
        if not isinstance(m, dict) or not all(k in m for k in _MODEL_FIELDS):
            raise ValueError(f"not a forge metrics snapshot: models[{name!r}] is not a model's table.")
        lat, ttft = m["latency_s"], m["ttft_s"]
        cost = "-" if m["cost_usd"] is None else f"{m['cost_usd']:.6f}"
        rows.append((
            name, str(m["requests"]), str(m["successes"]), str(m["failures"]), str(m["retries"]),
            str(m["rate_limited"]), _num(lat["p50"]), _num(lat["p95"]), _num(ttft["p50"]),
            str(m["input_tokens"]), str(m["output_tokens"]), str(m["cached_input_tokens"]),
            cost, f"{m['cache_savings_usd']:.6f}",
        ))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    totals = snap.get("totals")
    if isinstance(totals, dict):
        lines.append(
            f"total: {totals['requests']} requests, {totals['failures']} failed, "
            f"{totals['retries']} retries, "
            f"{totals['rate_limited']} rate-limited, ${totals['cost_usd']:.6f} spent, "
            f"${totals['cache_savings_usd']:.6f} saved by caching"
        )
    return "\n".join(lines)


def _num(value: object) -> str:
    return "-" if not isinstance(value, (int, float)) else f"{value:.3f}"
