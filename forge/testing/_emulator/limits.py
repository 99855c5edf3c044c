"""Enforced requests/min and tokens/min, the way the providers enforce them.

A per-minute limit is not a fixed one-minute window: providers enforce it
in shorter slices (OpenAI: "60,000 requests/minute may be enforced as 1,000
requests/second"). By default each limit is a strict sliding window: the
arrivals of any one second (``(now - 1, now]``) may total at most ``limit / 60``;
a single request larger than that is admitted only into an empty second.
With ``burst_seconds`` set, a limit is instead a token bucket holding
``limit / 60 * burst_seconds`` that refills continuously at ``limit / 60`` per
second (``burst_seconds=60`` gives the classic per-minute bucket).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime


class TokenBucket:
    """A continuously refilled bucket; the clock is passed in on each call."""

    __slots__ = ("capacity", "level", "per_minute", "rate", "updated")

    def __init__(self, per_minute: float, burst_seconds: float, now: float) -> None:
        if per_minute <= 0:
            raise ValueError(f"a per-minute limit must be positive, got {per_minute}")
        if burst_seconds <= 0:
            raise ValueError(f"burst_seconds must be positive, got {burst_seconds}")
        self.per_minute = per_minute
        self.rate = per_minute / 60.0
        self.capacity = self.rate * burst_seconds
        self.level = self.capacity
        self.updated = now

    def refill(self, now: float) -> None:
        if now > self.updated:
            self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
        self.updated = max(self.updated, now)

    def admits(self, cost: float) -> bool:
        # A request bigger than the whole bucket is let through when the bucket
        # is full (and drives it negative); otherwise it could never succeed.
        return self.level >= min(cost, self.capacity)

    def take(self, cost: float) -> None:
        self.level -= cost

    def wait_for(self, cost: float) -> float:
        """Seconds until a request costing ``cost`` would be admitted."""
        missing = min(cost, self.capacity) - self.level
        return max(0.0, missing / self.rate)

    def until_full(self) -> float:
        return max(0.0, (self.capacity - self.level) / self.rate)

    def remaining(self) -> int:
        return max(0, math.floor(self.level))


class SlidingWindow:
    """At most ``per_minute / 60`` in any sliding one-second window of arrivals."""

    __slots__ = ("arrivals", "capacity", "level", "per_minute", "rate", "total", "updated")

    def __init__(self, per_minute: float, now: float) -> None:
        if per_minute <= 0:
            raise ValueError(f"a per-minute limit must be positive, got {per_minute}")
        self.per_minute = per_minute
        self.rate = per_minute / 60.0
        self.capacity = self.rate
        self.arrivals: deque[tuple[float, float]] = deque()
        self.total = 0.0
        self.level = self.capacity
        self.updated = now

    def refill(self, now: float) -> None:
        now = max(self.updated, now)
        while self.arrivals and self.arrivals[0][0] <= now - 1.0:
            self.total -= self.arrivals.popleft()[1]
        if not self.arrivals:
            self.total = 0.0
        self.level = self.capacity - self.total
        self.updated = now

    def admits(self, cost: float) -> bool:
        if cost > self.capacity:
            return not self.arrivals
        return self.total + cost <= self.capacity

    def take(self, cost: float) -> None:
        self.arrivals.append((self.updated, cost))
        self.total += cost
        self.level = self.capacity - self.total

    def wait_for(self, cost: float) -> float:
        """Seconds until a request costing ``cost`` would be admitted."""
        freed = 0.0
        for at, amount in self.arrivals:
            freed += amount
            if (cost <= self.capacity and self.total - freed + cost <= self.capacity) or freed >= self.total:
                return max(0.0, at + 1.0 - self.updated)
        return 0.0

    def until_full(self) -> float:
        return max(0.0, self.arrivals[-1][0] + 1.0 - self.updated) if self.arrivals else 0.0

    def remaining(self) -> int:
        return max(0, math.floor(self.level))


@dataclass(frozen=True, slots=True)
class LimitState:
    """What the rate-limit response headers report for one dimension."""

    limit: int
    remaining: int
    reset: float  # seconds until the bucket is full again


@dataclass(frozen=True, slots=True)
class Admission:
    """The outcome of asking the limiter about one request."""

    allowed: bool
    requests: LimitState
    tokens: LimitState
    exceeded: str | None = None  # "requests" | "tokens"
    retry_after: float = 0.0
    too_large: bool = False  # cost is above the per-minute token limit itself
    cost: int = 0


# Reported when no limit was set: generous, and consistent with a 1-unit request.
_DEFAULT_RPM = 10_000
_DEFAULT_TPM = 2_000_000


class ProviderLimits:
    """The request and token buckets of one provider."""

    __slots__ = ("requests", "tokens")

    def __init__(
        self, requests: TokenBucket | SlidingWindow | None, tokens: TokenBucket | SlidingWindow | None
    ) -> None:
        self.requests = requests
        self.tokens = tokens

    @staticmethod
    def _state(bucket: TokenBucket | SlidingWindow | None, default: int, used: int) -> LimitState:
        if bucket is None:
            return LimitState(default, max(0, default - used), used * 60.0 / default)
        return LimitState(math.ceil(bucket.per_minute), bucket.remaining(), bucket.until_full())

    def peek(self, now: float) -> Admission:
        """The current state, taking nothing."""
        for bucket in (self.requests, self.tokens):
            if bucket is not None:
                bucket.refill(now)
        return Admission(
            True, self._state(self.requests, _DEFAULT_RPM, 0), self._state(self.tokens, _DEFAULT_TPM, 0)
        )

    def admit(self, cost: int, now: float) -> Admission:
        """Take one request costing ``cost`` tokens, or say why not and for how long."""
        req, tok = self.requests, self.tokens
        for bucket in (req, tok):
            if bucket is not None:
                bucket.refill(now)
        if tok is not None and cost > tok.per_minute:
            return Admission(
                False, self._state(req, _DEFAULT_RPM, 0), self._state(tok, _DEFAULT_TPM, 0),
                "tokens", 0.0, too_large=True, cost=cost,
            )
        for name, bucket, amount in (("requests", req, 1), ("tokens", tok, cost)):
            if bucket is not None and not bucket.admits(amount):
                return Admission(
                    False, self._state(req, _DEFAULT_RPM, 0), self._state(tok, _DEFAULT_TPM, 0),
                    name, bucket.wait_for(amount), cost=cost,
                )
        if req is not None:
            req.take(1)
        if tok is not None:
            tok.take(cost)
        return Admission(
            True, self._state(req, _DEFAULT_RPM, 1), self._state(tok, _DEFAULT_TPM, cost), cost=cost
        )


def unlimited(cost: int) -> Admission:
    """The headers' view when no limit is set for the provider."""
    return ProviderLimits(None, None).admit(cost, 0.0)


def go_duration(seconds: float) -> str:
    """OpenAI's reset format: ``"6ms"``, ``"8.64s"``, ``"6m0s"``, ``"1h2m3s"``."""
    if seconds <= 0:
        return "0s"
    if seconds < 1:
        return f"{max(1, math.ceil(seconds * 1000))}ms"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{secs:.3f}".rstrip("0").rstrip(".")
    if hours:
        return f"{int(hours)}h{int(minutes)}m{text}s"
    if minutes:
        return f"{int(minutes)}m{text}s"
    return f"{text}s"


def rfc3339_in(seconds: float, wall: Callable[[], float]) -> str:
    """Anthropic's reset format: the UTC instant ``seconds`` from now, to the second."""
    instant = datetime.fromtimestamp(math.ceil(wall() + max(0.0, seconds)), tz=UTC)
    return instant.strftime("%Y-%m-%dT%H:%M:%SZ")


def seconds_header(seconds: float) -> str:
    """A ``retry-after`` value: whole seconds when whole, else up to 3 decimals."""
    if seconds == int(seconds):
        return str(int(seconds))
    return f"{seconds:.3f}".rstrip("0").rstrip(".")
