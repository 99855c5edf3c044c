"""Rate limiting: a hand-written token bucket and a requests/min + tokens/min counter.

Providers enforce per-minute limits over shorter windows (OpenAI documents that
60,000 requests/min may be enforced as 1,000 per second), so a bucket that
released a whole minute's budget at once would draw 429s. Buckets here hold
``burst_seconds`` worth of budget (one second by default) and refill
continuously.

Waiters queue in FIFO order; one waker task sleeps exactly until the head of
the queue can be served (no polling loop). The clock and the sleep are
injected, so tests run on a fake clock without waiting.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import math
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from forge.errors import ConfigError

if TYPE_CHECKING:
    from forge.config import RateLimitConfig

__all__ = [
    "Bucket",
    "awaiting_send",
    "response_observer",
    "RedisBucket",
    "RedisWindow",
    "RequestCounter",
    "Reservation",
    "SlidingWindow",
    "TokenBucket",
    "budget_key",
    "counter_from_config",
    "parse_reset",
    "request_leaving",
]

_log = logging.getLogger("forge.ratelimit")

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[object]]

# The limiter of the call being sent, if any: the pooled HTTP clients' response hook
# passes every response's headers to it (forge.providers._common), so the buckets
# tighten to the provider's remaining counts on successes too, not just on 429s.
response_observer: ContextVar[Callable[[Mapping[str, str]], Awaitable[None]] | None] = ContextVar(
    "forge_response_observer", default=None
)


def awaiting_send() -> bool:
    """Whether the call this task is about to send has takes to count from its send
    (:func:`request_leaving`); without a windowed limit it has none, and the HTTP layer
    skips the trace that would report it."""
    reservation = _unsent.get()
    return reservation is not None and bool(reservation.marks)


async def request_leaving() -> None:
    """Called by the HTTP layer as a request's headers are written (see forge.providers._common):
    what the limiter took for that call counts from now, not from when it was granted.

    Between the grant and the write a request can wait on the event loop (other tasks'
    work, a lazily built client, a new connection): 50-150 ms for the first requests of a
    burst on a busy machine, against ~1 ms from the write to the server. A server counts
    arrivals, so the window must count this moment.
    """
    reservation = _unsent.get()
    if reservation is not None and reservation.marks:
        marks, reservation.marks = reservation.marks, []
        for window, entry in marks:
            try:
                await window.mark_sent(entry)  # type: ignore[arg-type]
            except Exception as exc:  # never fail the request: the grant-time count stays (safe side)
                _log.warning("forge rate limit: could not count a call from when it left (%s); "
                             "it counts from its grant", type(exc).__name__)


class Bucket(Protocol):
    """What :class:`RequestCounter` needs from a bucket (in-process or shared through Redis)."""

    capacity: float
    rate: float

    async def acquire(self, amount: float = 1.0) -> float:
        """Take ``amount``, waiting as needed; return the seconds waited."""
        ...

    async def wait_time(self, amount: float = 1.0) -> float:
        """Seconds until ``amount`` could be taken, without taking anything."""
        ...

    async def refund(self, amount: float, age: float | None = None) -> None:
        """Give back ``amount`` taken ``age`` seconds ago and wake waiters at once
        (negative: take more, the level may go below zero)."""
        ...

    async def tighten(self, remaining: float, reset_in: float | None = None) -> None:
        """Hold no more than the server says is left, until its reset (``reset_in`` seconds)."""
        ...


class TokenBucket:
    """An in-process token bucket: ``capacity`` tokens, refilled at ``rate`` per second.

    ``acquire`` is FIFO-fair: a large request at the head is not overtaken by
    small ones behind it. A request larger than the capacity waits for a full
    bucket and then drives the level negative (it is never refused).
    """

    def __init__(
        self,
        capacity: float,
        rate: float,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        initial: float | None = None,
    ) -> None:
        if capacity <= 0 or rate <= 0:
            raise ValueError(f"capacity and rate must be > 0, got capacity={capacity!r}, rate={rate!r}.")
        self.capacity = float(capacity)
        self.rate = float(rate)
        self._clock = clock
        self._sleep = sleep
        self._level = self.capacity if initial is None else float(initial)
        self._last = clock()
        self._waiters: deque[tuple[float, asyncio.Future[None]]] = deque()
        self._waker: asyncio.Task[None] | None = None

    @property
    def level(self) -> float:
        """Tokens available now (may be negative after an oversized take or a settle)."""
        self._refill()
        return self._level

    def _refill(self) -> None:
        now = self._clock()
        elapsed = now - self._last
        if elapsed > 0:
            self._level = min(self.capacity, self._level + elapsed * self.rate)
        self._last = now

    def _need(self, amount: float) -> float:
        return min(amount, self.capacity)

    def try_acquire(self, amount: float = 1.0) -> bool:
        """Take ``amount`` if it is available now and nobody is queued; never waits."""
        self._refill()
        if self._waiters or self._level < self._need(amount):
            return False
        self._level -= amount
        return True

    async def wait_time(self, amount: float = 1.0) -> float:
        """Seconds until ``amount`` could be taken, counting everyone already queued."""
        return self.wait_time_now(amount)

    def wait_time_now(self, amount: float = 1.0) -> float:
        """Synchronous :meth:`wait_time` (the in-process bucket needs no I/O)."""
        self._refill()
        queued = sum(a for a, f in self._waiters if not f.done())
        deficit = queued + self._need(amount) - self._level
        return max(0.0, deficit / self.rate)

    async def acquire(self, amount: float = 1.0) -> float:
        """Take ``amount`` tokens, waiting (FIFO) until they are available; return seconds waited."""
        if amount <= 0:
            return 0.0
        if self.try_acquire(amount):
            return 0.0
        start = self._clock()
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((amount, fut))
        if self._waker is None or self._waker.done():
            self._waker = asyncio.ensure_future(self._wake())
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                # Served just as we were cancelled: give the tokens back.
                self._level += amount
            raise
        return self._clock() - start

    async def _wake(self) -> None:
        while self._waiters:
            amount, fut = self._waiters[0]
            if fut.done():
                self._waiters.popleft()
                continue
            self._refill()
            need = self._need(amount)
            if self._level >= need:
                self._level -= amount
                self._waiters.popleft()
                fut.set_result(None)
                continue
            await self._sleep((need - self._level) / self.rate)

    async def refund(self, amount: float, age: float | None = None) -> None:
        """Return ``amount`` tokens (capped at capacity) and wake waiters; negative takes more."""
        self._refill()
        self._level = min(self.capacity, self._level + amount)
        if amount > 0 and self._waiters:
            # The waker may be asleep on the old deficit: restart it on the new level.
            if self._waker is not None and not self._waker.done():
                self._waker.cancel()
            self._waker = asyncio.ensure_future(self._wake())

    async def tighten(self, remaining: float, reset_in: float | None = None) -> None:
        """Never hold more than the server says remains, nor refill faster than its reset."""
        self._refill()
        level = float(remaining)
        if reset_in is not None and reset_in > 0:
            level = min(level, self.capacity - reset_in * self.rate)  # full no sooner than the reset
        if level < self._level:
            self._level = level


# Seconds added to the one-second window on the client side: requests that leave
# evenly can still arrive bunched (scheduling, connection reuse), and a server
# counting arrivals in a strict one-second window must never see more than the
# slice. The margin is the jitter tolerated, and costs its share of the rate
# (`python -m benchmarks ratelimit` measures both; see docs/retry.md).
DEFAULT_MARGIN = 0.02

# The margin grows to the lateness the limiter observes in its own process (a waker
# that wakes later than it asked, a granted waiter that resumes late: an event loop
# busy elsewhere), for one window after it was seen, up to this much. Requests
# granted evenly but run late by different amounts reach the server bunched; 20 ms
# covers a quiet machine (about 10 ms measured), the observed lateness a busy one.
MAX_MARGIN = 0.5


# Takes in the first moments after an idle window are held this much longer: the
# first requests of a burst open connections (and wake lazily built clients), so
# they can reach the server this much later than the ones that follow them.
COLD_START = 0.1


class SlidingWindow:
    """Keeps every sliding ``window``-second span within ``limit`` (the default limiter).

    Providers enforce per-minute limits in slices (OpenAI: "60,000 requests/minute
    may be enforced as 1,000 requests/second"), so a token bucket that holds a
    second of budget *and* refills during that second lets up to twice the slice
    leave in one second. This limiter keeps a log of what left and admits a take
    only if the trailing ``window + margin`` seconds stay within ``limit``; takes
    are also paced (``amount / rate`` apart) so a budget never leaves as one burst
    that the network could deliver compressed. A take larger than ``limit`` goes
    alone into an empty window.

    Waiters queue FIFO; one waker sleeps until the head can go, and any change that
    frees budget (a refund, a cancelled waiter) re-arms it at once.
    """

    def __init__(
        self,
        limit: float,
        *,
        window: float = 1.0,
        margin: float = DEFAULT_MARGIN,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if limit <= 0 or window <= 0 or margin < 0:
            raise ValueError(
                f"limit and window must be > 0 and margin >= 0, got limit={limit!r}, "
                f"window={window!r}, margin={margin!r}."
            )
        self.capacity = float(limit)
        self.rate = float(limit) / window
        self.window = window
        self.margin = margin
        self.span = window + margin
        self._late = 0.0  # the most lateness observed in the last window, and when
        self._late_at = -math.inf
        self._clock = clock
        self._sleep = sleep
        self._log: list[list[float]] = []  # [counted from, amount, taken at], sorted by the first
        self._sum = 0.0
        self._next = -math.inf  # pacing: the earliest time of the next take
        self._cold_until = -math.inf
        self._waiters: deque[tuple[float, asyncio.Future[list[float]]]] = deque()
        self._waker: asyncio.Task[None] | None = None

    @property
    def level(self) -> float:
        """Budget left in the current window (negative after an oversized take)."""
        self._expire(self._clock())
        return self.capacity - self._sum

    def _expire(self, now: float) -> None:
        cut = 0
        for stamp, amount, _ in self._log:
            if stamp > now - self.span:
                break
            self._sum -= amount
            cut += 1
        if cut:
            del self._log[:cut]
            if not self._log:
                self._sum = 0.0  # no float drift once the window is empty

    def _delay(self, amount: float, now: float) -> float:
        """Seconds until ``amount`` may leave (0: now)."""
        self._expire(now)
        wait = max(0.0, self._next - now)
        fits = amount <= self.capacity
        if (fits and self._sum + amount <= self.capacity) or not self._log:
            return wait
        freed = 0.0
        for stamp, taken, _ in self._log:
            freed += taken
            if (fits and self._sum - freed + amount <= self.capacity) or freed >= self._sum:
                return max(wait, stamp + self.span - now)
        return max(wait, self._log[-1][0] + self.span - now)

    def _take(self, amount: float, now: float) -> list[float]:
        if not self._log:
            self._cold_until = now + COLD_START
        entry = self._place(amount, now + COLD_START if now < self._cold_until else now, now)
        # Paced from when this take was due, not from when a late wake-up let it go, so
        # sleep overshoot is caught up (the log still bounds every window).
        self._next = max(self._next, now - 0.01) + amount / self.rate
        return entry

    def _place(self, amount: float, stamp: float, taken: float | None = None) -> list[float]:
        entry = [stamp, amount, stamp if taken is None else taken]
        self._insert(entry)
        self._sum += amount
        return entry

    def _insert(self, entry: list[float]) -> None:
        if self._log and self._log[-1][0] > entry[0]:
            bisect.insort(self._log, entry)
        else:
            self._log.append(entry)

    async def mark_sent(self, entry: list[float]) -> None:
        """The request of a take (``entry``, from :meth:`acquire_entry`) left just now: count
        it from now. This replaces the cold-start hold with the real moment, later or earlier."""
        now = self._clock()
        for i in range(len(self._log) - 1, -1, -1):  # a fresh take sits near the end
            if self._log[i] is entry:
                break
        else:
            return  # expired or given back already
        del self._log[i]
        earlier = now < entry[0]
        entry[0] = entry[2] = now
        self._insert(entry)
        if earlier:
            self._rearm()

    def try_acquire(self, amount: float = 1.0) -> bool:
        """Take ``amount`` if it may leave now and nobody is queued; never waits."""
        now = self._clock()
        if self._waiters or self._delay(amount, now) > 0:
            return False
        self._take(amount, now)
        return True

    def _try_take(self, amount: float) -> list[float] | None:
        now = self._clock()
        if self._waiters or self._delay(amount, now) > 0:
            return None
        return self._take(amount, now)

    async def wait_time(self, amount: float = 1.0) -> float:
        """Seconds until ``amount`` could be taken (an estimate when others are queued)."""
        return self.wait_time_now(amount)

    def wait_time_now(self, amount: float = 1.0) -> float:
        """Synchronous :meth:`wait_time`."""
        now = self._clock()
        queued = sum(a for a, f in self._waiters if not f.done())
        return self._delay(amount, now) + queued / self.rate

    async def acquire(self, amount: float = 1.0) -> float:
        """Take ``amount``, waiting (FIFO) until it may leave; return the seconds waited."""
        return (await self.acquire_entry(amount))[0]

    async def acquire_entry(self, amount: float = 1.0) -> tuple[float, list[float] | None]:
        """:meth:`acquire`, also returning the take's log entry for :meth:`mark_sent`."""
        if amount <= 0:
            return 0.0, None
        entry = self._try_take(amount)
        if entry is not None:
            return 0.0, entry
        start = self._clock()
        fut: asyncio.Future[list[float]] = asyncio.get_running_loop().create_future()
        self._waiters.append((amount, fut))
        self._rearm()
        try:
            entry = await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self._give_back(amount, fut.result()[2])  # served just as we were cancelled
            self._rearm()  # the next waiter may go now
            raise
        taken_at = entry[2]
        resumed = self._clock()
        self._observe_lateness(resumed - taken_at, resumed)
        return taken_at - start, entry

    def _observe_lateness(self, late: float, now: float) -> None:
        # The margin covers what this process is seen to delay: the most lateness of the
        # last window (and of the window before it, until one passes without it).
        if late > self._late or now - self._late_at > self.window:
            self._late, self._late_at = min(max(0.0, late), MAX_MARGIN), now
        self.span = self.window + max(self.margin, self._late)

    def _rearm(self) -> None:
        if self._waker is not None and not self._waker.done():
            self._waker.cancel()
        if self._waiters:
            self._waker = asyncio.ensure_future(self._wake())

    async def _wake(self) -> None:
        while self._waiters:
            amount, fut = self._waiters[0]
            if fut.done():
                self._waiters.popleft()
                continue
            now = self._clock()
            delay = self._delay(amount, now)
            if delay <= 0:
                entry = self._take(amount, now)
                self._waiters.popleft()
                fut.set_result(entry)
                continue
            await self._sleep(delay)
            woke = self._clock()
            self._observe_lateness(woke - now - delay, woke)

    def _give_back(self, amount: float, taken_at: float) -> None:
        # Only what left at or before ``taken_at`` may shrink: the server still counts
        # everything younger, so the log must never undercount it.
        left = amount
        for entry in self._log:
            if left <= 0:
                break
            if entry[2] > taken_at:
                continue
            cut = min(left, entry[1])
            entry[1] -= cut
            self._sum -= cut
            left -= cut

    async def refund(self, amount: float, age: float | None = None) -> None:
        """Give back ``amount`` taken ``age`` seconds ago (None: any time); wakes waiters.

        A negative amount takes more (the call cost more than reserved).
        """
        now = self._clock()
        self._expire(now)
        if amount < 0:
            self._place(-amount, now)  # a correction, not a new request: no pacing
            return
        self._give_back(amount, now - age if age is not None else now)
        self._next = min(self._next, now)
        self._rearm()

    async def tighten(self, remaining: float, reset_in: float | None = None) -> None:
        """Never hold more than the server says remains, until its ``reset_in`` has passed."""
        now = self._clock()
        self._expire(now)
        # The difference is held as if taken now, or until the server's reset. When the
        # server says nothing is left, nothing goes before that reset: only what is still
        # held at that moment counts against the hold.
        until = now + (reset_in if reset_in is not None and reset_in > 0 else self.span)
        held = self._sum
        if remaining < 1:
            held = sum(amount for stamp, amount, _ in self._log if stamp >= until - self.span)
        excess = self.capacity - held - max(0.0, remaining)
        if excess <= 0:
            return
        self._place(excess, until - self.span)
        self._rearm()


@dataclass(slots=True)
class Reservation:
    """What :meth:`RequestCounter.acquire` took, for :meth:`RequestCounter.settle`."""

    tokens: float
    waited: float
    settled: bool = False
    at: float = 0.0  # the counter's clock when the budget was taken
    # The in-process windows' takes of this call, counted again from when it is sent.
    marks: list[tuple[SlidingWindow | RedisWindow, object]] = field(default_factory=list)


# The reservation of the call this task is about to send (see request_leaving).
_unsent: ContextVar[Reservation | None] = ContextVar("forge_unsent", default=None)


# Reset headers: OpenAI sends durations ("1s", "6m0s", "20ms"), Anthropic RFC 3339
# instants ("2025-08-21T12:40:59Z") at which the limit is fully replenished.
_REMAINING_AND_RESET = {
    "requests": (
        ("x-ratelimit-remaining-requests", "x-ratelimit-reset-requests"),
        ("anthropic-ratelimit-requests-remaining", "anthropic-ratelimit-requests-reset"),
    ),
    "tokens": (
        ("x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens"),
        ("anthropic-ratelimit-tokens-remaining", "anthropic-ratelimit-tokens-reset"),
        ("anthropic-ratelimit-input-tokens-remaining", "anthropic-ratelimit-input-tokens-reset"),
        ("anthropic-ratelimit-output-tokens-remaining", "anthropic-ratelimit-output-tokens-reset"),
    ),
}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s|us|µs|ns)")
_DURATION_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


def parse_reset(value: str, *, wall: Callable[[], float] = time.time) -> float | None:
    """Seconds until a reset header's moment: a Go duration or an RFC 3339 instant (None: unreadable)."""
    text = value.strip()
    parts = _DURATION_PART.findall(text)
    if parts and "".join(n + u for n, u in parts) == text:
        return sum(float(n) * _DURATION_UNITS[u] for n, u in parts)
    try:
        return float(text)  # plain seconds
    except ValueError:
        pass
    try:
        instant = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if instant.tzinfo is None:
        return None
    return max(0.0, instant.timestamp() - wall())


class RequestCounter:
    """A requests/min and a tokens/min limit for one provider (either may be unlimited).

    Before a call: ``res = await counter.acquire(estimated_tokens)`` waits for both
    budgets. After it: ``await counter.settle(res, actual_tokens)`` gives back what
    the provider did not count and wakes waiters at once; a failed attempt gives its
    reservation back with :meth:`release`. ``observe(headers)`` tightens the limits
    to the provider's own remaining counts and reset times. The windows count a
    call from when its request is written (:func:`request_leaving`, called by forge's
    pooled HTTP clients), not from its grant.

    By default (``burst_seconds=None``) each limit is a :class:`SlidingWindow`: every
    sliding second stays within ``per_minute / 60``, the slice providers enforce,
    with no extra burst. ``burst_seconds=x`` instead gives a :class:`TokenBucket`
    holding ``x`` seconds of budget, starting ``initial_fill`` full, for servers
    known to allow bursts.
    """

    def __init__(
        self,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        *,
        burst_seconds: float | None = None,
        initial_fill: float = 0.5,
        margin: float = DEFAULT_MARGIN,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        bucket_factory: Callable[[str, float, float, float], Bucket] | None = None,
        window_factory: Callable[[str, float, float], Bucket] | None = None,
    ) -> None:
        if not 0.0 <= initial_fill <= 1.0:
            raise ValueError(f"initial_fill must be between 0 and 1, got {initial_fill!r}.")
        if burst_seconds is not None and burst_seconds <= 0:
            raise ValueError(f"burst_seconds must be > 0 (or None: no burst), got {burst_seconds!r}.")
        self.requests_per_minute = requests_per_minute
        self.tokens_per_minute = tokens_per_minute
        self.burst_seconds = burst_seconds
        self._clock = clock

        def make(kind: str, per_minute: float) -> Bucket:
            rate = per_minute / 60.0
            if burst_seconds is None:
                if window_factory is not None:
                    return window_factory(kind, rate, margin)
                return SlidingWindow(rate, margin=margin, clock=clock, sleep=sleep)
            capacity = max(1.0, rate * burst_seconds)
            initial = capacity * initial_fill
            if bucket_factory is not None:
                return bucket_factory(kind, capacity, rate, initial)
            return TokenBucket(capacity, rate, clock=clock, sleep=sleep, initial=initial)

        self.requests: Bucket | None = make("requests", requests_per_minute) if requests_per_minute else None
        self.tokens: Bucket | None = make("tokens", tokens_per_minute) if tokens_per_minute else None
        self._closers: list[Callable[[], Awaitable[object]]] = []

    @property
    def enabled(self) -> bool:
        return self.requests is not None or self.tokens is not None

    async def wait_time(self, tokens: float = 0.0) -> float:
        """Seconds a call estimated at ``tokens`` would wait now, without taking anything."""
        waits = [0.0]
        if self.requests is not None:
            waits.append(await self.requests.wait_time(1))
        if self.tokens is not None and tokens > 0:
            waits.append(await self.tokens.wait_time(tokens))
        return max(waits)

    async def acquire(self, tokens: float = 0.0) -> Reservation:
        """Wait for one request and ``tokens`` tokens of budget; return the reservation.

        Cancelled while waiting for tokens, it gives the request slot it already took back.
        """
        waited = 0.0
        marks: list[tuple[SlidingWindow | RedisWindow, object]] = []
        if self.requests is not None:
            waited += await self._take(self.requests, 1, marks)
        took_request = self._clock()
        if self.tokens is not None and tokens > 0:
            try:
                waited += await self._take(self.tokens, tokens, marks)
            except BaseException:
                if self.requests is not None:
                    await self.requests.refund(1, self._clock() - took_request)
                raise
        reservation = Reservation(tokens if self.tokens is not None else 0.0, waited, at=self._clock(),
                                  marks=marks)
        _unsent.set(reservation)  # the caller's context: the HTTP layer marks it sent (request_leaving)
        return reservation

    @staticmethod
    async def _take(
        bucket: Bucket, amount: float, marks: list[tuple[SlidingWindow | RedisWindow, object]]
    ) -> float:
        if not isinstance(bucket, (SlidingWindow, RedisWindow)):
            return await bucket.acquire(amount)
        waited, entry = await bucket.acquire_entry(amount)
        if entry is not None:
            marks.append((bucket, entry))
        return waited

    async def settle(self, reservation: Reservation, actual_tokens: float) -> None:
        """Correct the tokens budget by the difference between estimate and actual count."""
        if reservation.settled or self.tokens is None:
            reservation.settled = True
            return
        reservation.settled = True
        diff = reservation.tokens - actual_tokens
        if diff:
            await self.tokens.refund(diff, self._clock() - reservation.at)

    async def release(self, reservation: Reservation, *, request: bool = False) -> None:
        """Give a failed attempt's tokens back (and its request slot with ``request=True``,
        for a request the server refused without counting, such as a 429)."""
        if reservation.settled:
            return
        reservation.settled = True
        reservation.marks = []  # never sent: nothing to count again
        age = self._clock() - reservation.at
        if self.tokens is not None and reservation.tokens:
            await self.tokens.refund(reservation.tokens, age)
        if request and self.requests is not None:
            await self.requests.refund(1, age)

    async def observe(self, headers: Mapping[str, str]) -> None:
        """Tighten to the remaining counts and reset times the provider reported
        (OpenAI ``x-ratelimit-*``, Anthropic ``anthropic-ratelimit-*``)."""
        for bucket, pairs in ((self.requests, _REMAINING_AND_RESET["requests"]),
                              (self.tokens, _REMAINING_AND_RESET["tokens"])):
            if bucket is None:
                continue
            for remaining_name, reset_name in pairs:
                value = headers.get(remaining_name)
                if value is None:
                    continue
                try:
                    remaining = float(value)
                except ValueError:
                    continue
                reset = headers.get(reset_name)
                await bucket.tighten(remaining, parse_reset(reset) if reset is not None else None)

    def close_with(self, closer: Callable[[], Awaitable[object]]) -> None:
        """Have :meth:`aclose` call ``closer`` (e.g. the Redis client the counter opened)."""
        self._closers.append(closer)

    async def aclose(self) -> None:
        """Release what the counter opened (its Redis connection); the first error is raised after all ran."""
        closers, self._closers = self._closers, []
        errors: list[BaseException] = []
        for closer in closers:
            try:
                await closer()
            except Exception as exc:
                errors.append(exc)
        if errors:
            raise errors[0]


# The whole bucket update runs inside Redis, atomically, on Redis's own clock,
# so every process and host sharing the key sees one budget.
_REDIS_BUCKET = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local cap = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local amount = tonumber(ARGV[3])
local mode = ARGV[4]
local fill = tonumber(ARGV[5])
local state = redis.call('HMGET', KEYS[1], 'level', 'ts')
local level = tonumber(state[1])
local ts = tonumber(state[2])
if level == nil or ts == nil then
  level = cap * fill
  ts = now
end
if now > ts then
  level = math.min(cap, level + (now - ts) * rate)
  ts = now
end
local result = 0
local need = math.min(amount, cap)
if mode == 'take' then
  if level >= need then
    level = level - amount
  else
    result = (need - level) / rate
  end
elseif mode == 'peek' then
  if level < need then
    result = (need - level) / rate
  end
elseif mode == 'add' then
  level = math.min(cap, level + amount)
elseif mode == 'tighten' then
  if amount < level then
    level = amount
  end
end
redis.call('HSET', KEYS[1], 'level', tostring(level), 'ts', tostring(ts))
redis.call('PEXPIRE', KEYS[1], math.ceil(cap / rate * 2000) + 60000)
return tostring(result)
"""


# Processes sharing one budget may be configured differently (a rolling deploy, a
# typo). Each announces its capacity and rate under ``<key>:config`` with an expiry;
# the bucket runs at the smallest capacity and the smallest rate announced by any
# process in the last ``announce_ttl`` seconds: the tighter configuration wins, and a
# looser one takes over only after no process has announced the tighter one for that long.
_REDIS_AGREE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local ttl = tonumber(ARGV[2])
redis.call('HSET', KEYS[1], ARGV[1], tostring(now + ttl))
local cap = nil
local rate = nil
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local expires = tonumber(all[i + 1])
  local c, r = string.match(all[i], '^([^/]+)/(.+)$')
  c = tonumber(c)
  r = tonumber(r)
  if expires == nil or c == nil or r == nil or expires < now then
    redis.call('HDEL', KEYS[1], all[i])
  else
    if cap == nil or c < cap then cap = c end
    if rate == nil or r < rate then rate = r end
  end
end
redis.call('PEXPIRE', KEYS[1], math.ceil(ttl * 1000))
return {tostring(cap), tostring(rate)}
"""


class RedisBucket:
    """A token bucket kept in Redis and updated by one atomic server-side script.

    Several processes and hosts using the same ``key`` share one budget.
    Within a process, waiters queue FIFO behind an ``asyncio.Lock``.
    """

    def __init__(
        self,
        client: object,
        key: str,
        capacity: float,
        rate: float,
        *,
        initial: float | None = None,
        sleep: Sleep = asyncio.sleep,
        clock: Clock = time.monotonic,
        announce_ttl: float = 60.0,
    ) -> None:
        if capacity <= 0 or rate <= 0:
            raise ValueError(f"capacity and rate must be > 0, got capacity={capacity!r}, rate={rate!r}.")
        self._clock = clock
        self.announce_ttl = announce_ttl
        self._agreed: tuple[float, float] | None = None
        self._agreed_at = 0.0
        self._agree_script: Callable[..., Awaitable[object]] | None = None
        self._fill = 1.0 if initial is None else max(0.0, min(1.0, initial / capacity))
        self._client = client
        self.key = key
        self.capacity = float(capacity)
        self.rate = float(rate)
        self._sleep = sleep
        self._lock = asyncio.Lock()
        self._script: Callable[..., Awaitable[object]] | None = None

    async def _run(self, amount: float, mode: str) -> float:
        if self._script is None:
            self._script = self._client.register_script(_REDIS_BUCKET)  # type: ignore[attr-defined]
        assert self._script is not None
        capacity, rate = await self.effective()
        args = [capacity, rate, amount, mode, self._fill]
        result = await self._script(keys=[self.key], args=args)
        return float(result.decode() if isinstance(result, bytes) else str(result))

    async def effective(self) -> tuple[float, float]:
        """The ``(capacity, rate)`` the shared budget runs at: the tightest any live process announced.

        Announced again every third of ``announce_ttl`` (one extra round trip then, none between).
        """
        now = self._clock()
        if self._agreed is not None and now - self._agreed_at < self.announce_ttl / 3:
            return self._agreed
        if self._agree_script is None:
            self._agree_script = self._client.register_script(_REDIS_AGREE)  # type: ignore[attr-defined]
        assert self._agree_script is not None
        mine = f"{self.capacity!r}/{self.rate!r}"
        raw = await self._agree_script(keys=[self.key + ":config"], args=[mine, self.announce_ttl])
        assert isinstance(raw, (list, tuple))
        cap, rate = (float(v.decode() if isinstance(v, bytes) else v) for v in raw)
        agreed = (min(cap, self.capacity), min(rate, self.rate))
        if agreed != (self.capacity, self.rate) and agreed != self._agreed:
            _log.warning(
                "forge rate limit: another process configures budget %s tighter (capacity %g, %g/s) than "
                "this one (capacity %g, %g/s); the tighter one applies to every process sharing it",
                self.key, agreed[0], agreed[1], self.capacity, self.rate,
            )
        self._agreed, self._agreed_at = agreed, now
        return agreed

    async def acquire(self, amount: float = 1.0) -> float:
        if amount <= 0:
            return 0.0
        waited = 0.0
        async with self._lock:
            while True:
                wait = await self._run(amount, "take")
                if wait <= 0:
                    return waited
                await self._sleep(wait)
                waited += wait

    async def wait_time(self, amount: float = 1.0) -> float:
        return await self._run(amount, "peek")

    async def refund(self, amount: float, age: float | None = None) -> None:
        await self._run(amount, "add")

    async def tighten(self, remaining: float, reset_in: float | None = None) -> None:
        await self._run(remaining, "tighten")


# The sliding window in Redis: a sorted set of "seq:amount" members scored by the
# time they left (Redis's own clock) plus a hash with the window's sum, the pacing
# time and a sequence. The same rule as SlidingWindow, atomically for every process.
_REDIS_WINDOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local limit = tonumber(ARGV[1])
local span = tonumber(ARGV[2])
local rate = tonumber(ARGV[3])
local amount = tonumber(ARGV[4])
local mode = ARGV[5]
local arg = tonumber(ARGV[6])
local cold = tonumber(ARGV[7])
local st = redis.call('HMGET', KEYS[1], 'sum', 'next', 'seq', 'cold')
local sum = tonumber(st[1]) or 0
local nxt = tonumber(st[2]) or 0
local seq = tonumber(st[3]) or 0
local cold_until = tonumber(st[4]) or 0
-- members are "<taken, microseconds><seq mod 10^6, 6 digits>:amount" (taken: when the take
-- left; its score may be later, see cold), still "digits:amount" as an older forge wrote and
-- reads them; an older forge's "seq:amount" counts as taken long ago
local function size(member) return tonumber(string.match(member, ':(.*)$')) end
local function taken(member)
  return (tonumber(string.sub(string.match(member, '^(%d+):'), 1, -7)) or 0) / 1000000
end
local gone = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now - span)
for _, m in ipairs(gone) do sum = sum - size(m) end
if #gone > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - span) end
local count = redis.call('ZCARD', KEYS[2])
if count == 0 then sum = 0 end
local function add(at, n)
  seq = seq + 1
  local member = string.format('%.0f%06d', math.floor(math.min(at, now) * 1000000), seq % 1000000)
    .. ':' .. n
  redis.call('ZADD', KEYS[2], at, member)
  sum = sum + n
  count = count + 1
  return member
end
local function delay(n)
  local wait = math.max(0, nxt - now)
  local fits = n <= limit
  if (fits and sum + n <= limit) or count == 0 then return wait end
  local freed = 0
  local entries = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
  for i = 1, #entries, 2 do
    freed = freed + size(entries[i])
    if (fits and sum - freed + n <= limit) or freed >= sum then
      return math.max(wait, tonumber(entries[i + 1]) + span - now)
    end
  end
  return math.max(wait, tonumber(entries[#entries]) + span - now)
end
local result = 0
local keep = span
local taken_member = nil
if mode == 'take' then
  result = delay(amount)
  if result <= 0 then
    -- the first takes after an idle window are held longer, as in SlidingWindow (COLD_START)
    if count == 0 then cold_until = now + cold end
    if now < cold_until then
      taken_member = add(now + cold, amount)
    else
      taken_member = add(now, amount)
    end
    nxt = math.max(nxt, now - span + 1) + amount / rate
    result = 0
  end
elseif mode == 'sent' then
  -- the take's request left now (SlidingWindow.mark_sent); gone already if it expired
  redis.call('ZADD', KEYS[2], 'XX', now, ARGV[8])
elseif mode == 'peek' then
  result = delay(amount)
elseif mode == 'refund' then
  if amount < 0 then
    add(now, -amount)
  else
    local cutoff = now
    if arg >= 0 then cutoff = now - arg end
    -- only what left at or before the cutoff may shrink (as SlidingWindow._give_back)
    local entries = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
    for i = 1, #entries, 2 do
      if amount <= 0 then break end
      local m = entries[i]
      if taken(m) <= cutoff then
        local n = size(m)
        local cut = math.min(amount, n)
        redis.call('ZREM', KEYS[2], m)
        redis.call('ZADD', KEYS[2], entries[i + 1], string.match(m, '^(%d+):') .. ':' .. (n - cut))
        sum = sum - cut
        amount = amount - cut
      end
    end
    nxt = math.min(nxt, now)
  end
elseif mode == 'tighten' then
  if arg > 0 then keep = arg end
  local held = sum
  if amount < 1 then
    held = 0
    for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], now + keep - span, '+inf')) do
      held = held + size(m)
    end
  end
  local excess = limit - held - math.max(0, amount)
  if excess > 0 then
    add(now + keep - span, excess)
  end
end
redis.call('HSET', KEYS[1], 'sum', tostring(sum), 'next', tostring(nxt), 'seq', tostring(seq),
           'cold', tostring(cold_until))
local ttl = math.ceil(math.max(keep, span) * 1000) + 60000
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
if taken_member then return '0 ' .. taken_member end
return tostring(result)
"""


class _Agreement:
    """One process's announcement of its configuration for a shared budget (``_REDIS_AGREE``)."""

    def __init__(self, client: object, key: str, capacity: float, rate: float, clock: Clock,
                 ttl: float) -> None:
        self._client = client
        self._key = key
        self._mine = (capacity, rate)
        self._clock = clock
        self._ttl = ttl
        self._agreed: tuple[float, float] | None = None
        self._agreed_at = 0.0
        self._script: Callable[..., Awaitable[object]] | None = None

    async def effective(self) -> tuple[float, float]:
        # Announced again every third of the ttl (one extra round trip then, none between).
        now = self._clock()
        if self._agreed is not None and now - self._agreed_at < self._ttl / 3:
            return self._agreed
        if self._script is None:
            self._script = self._client.register_script(_REDIS_AGREE)  # type: ignore[attr-defined]
        assert self._script is not None
        capacity, rate = self._mine
        raw = await self._script(keys=[self._key + ":config"], args=[f"{capacity!r}/{rate!r}", self._ttl])
        assert isinstance(raw, (list, tuple))
        cap, agreed_rate = (float(v.decode() if isinstance(v, bytes) else v) for v in raw)
        # Lua's tostring keeps 14 digits: a value within that rounding of our own is our own.
        agreed = (cap if cap < capacity * (1 - 1e-9) else capacity,
                  agreed_rate if agreed_rate < rate * (1 - 1e-9) else rate)
        if agreed != self._mine and agreed != self._agreed:
            _log.warning(
                "forge rate limit: another process configures budget %s tighter (limit %g, %g/s) than "
                "this one (limit %g, %g/s); the tighter one applies to every process sharing it",
                self._key, agreed[0], agreed[1], capacity, rate,
            )
        self._agreed, self._agreed_at = agreed, now
        return agreed


class RedisWindow:
    """A :class:`SlidingWindow` kept in Redis and updated by one atomic server-side script.

    Several processes and hosts using the same ``key`` share one window. Within a
    process, waiters queue FIFO behind an ``asyncio.Lock``; a refund or tighten from
    this process wakes the waiter at once (one from another process is seen at the
    waiter's next check). The same rules as the in-process window: the first takes
    after an idle window are held ``COLD_START`` longer, and when processes configure
    the same ``key`` differently the tighter limit and rate apply to all of them (each
    announces its own under ``<key>:config``; a looser one logs a WARNING).
    """

    def __init__(
        self,
        client: object,
        key: str,
        limit: float,
        *,
        window: float = 1.0,
        margin: float = DEFAULT_MARGIN,
        sleep: Sleep = asyncio.sleep,
        clock: Clock = time.monotonic,
        announce_ttl: float = 60.0,
    ) -> None:
        if limit <= 0 or window <= 0 or margin < 0:
            raise ValueError(
                f"limit and window must be > 0 and margin >= 0, got limit={limit!r}, "
                f"window={window!r}, margin={margin!r}."
            )
        self._client = client
        self.key = key
        self.capacity = float(limit)
        self.rate = float(limit) / window
        self.span = window + margin
        self._sleep = sleep
        self._lock = asyncio.Lock()
        self._changed = asyncio.Event()
        self._script: Callable[..., Awaitable[object]] | None = None
        self.window = window
        self._clock = clock
        self._agreement = _Agreement(client, key, self.capacity, self.rate, clock, announce_ttl)

    async def effective(self) -> tuple[float, float]:
        """The ``(limit, rate)`` the shared window runs at: the tightest any live process announced
        (the same rule as :meth:`RedisBucket.effective`)."""
        return await self._agreement.effective()

    async def _run(self, amount: float, mode: str, arg: float = -1.0) -> float:
        return float((await self._call(amount, mode, arg)).split()[0])

    async def _call(self, amount: float, mode: str, arg: float = -1.0, member: str = "") -> str:
        if self._script is None:
            self._script = self._client.register_script(_REDIS_WINDOW)  # type: ignore[attr-defined]
        assert self._script is not None
        limit, rate = await self.effective()
        args = [limit, self.span, rate, amount, mode, arg, COLD_START, member]
        result = await self._script(keys=[self.key, f"{self.key}:log"], args=args)
        return result.decode() if isinstance(result, bytes) else str(result)

    async def acquire(self, amount: float = 1.0) -> float:
        return (await self.acquire_entry(amount))[0]

    async def acquire_entry(self, amount: float = 1.0) -> tuple[float, tuple[str, float] | None]:
        """:meth:`acquire`, also returning the take (its member, when it was granted) for
        :meth:`mark_sent`."""
        if amount <= 0:
            return 0.0, None
        waited = 0.0
        async with self._lock:
            while True:
                self._changed.clear()
                reply = (await self._call(amount, "take")).split()
                if len(reply) == 2:
                    return waited, (reply[1], self._clock())
                waited += await self._nap(float(reply[0]))

    async def mark_sent(self, entry: tuple[str, float]) -> None:
        """As :meth:`SlidingWindow.mark_sent`; a request that leaves within the margin of its
        grant costs no round trip (the margin covers it)."""
        member, granted = entry
        if self._clock() - granted > self.span - self.window:
            await self._call(0, "sent", member=member)

    async def _nap(self, seconds: float) -> float:
        # Sleep ``seconds`` or until this process changes the window, whichever is first.
        nap = asyncio.ensure_future(self._sleep(seconds))
        poke = asyncio.ensure_future(self._changed.wait())
        try:
            await asyncio.wait({nap, poke}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            nap.cancel()
            poke.cancel()
        return seconds if not poke.done() or poke.cancelled() else 0.0

    async def wait_time(self, amount: float = 1.0) -> float:
        return await self._run(amount, "peek")

    async def refund(self, amount: float, age: float | None = None) -> None:
        await self._run(amount, "refund", -1.0 if age is None else max(0.0, age))
        self._changed.set()

    async def tighten(self, remaining: float, reset_in: float | None = None) -> None:
        await self._run(remaining, "tighten", reset_in if reset_in is not None and reset_in > 0 else -1.0)


def counter_from_config(
    provider: str,
    config: RateLimitConfig,
    *,
    clock: Clock = time.monotonic,
    sleep: Sleep = asyncio.sleep,
    redis_client: object | None = None,
    account: str = "",
) -> RequestCounter | None:
    """Build a provider's :class:`RequestCounter` from its ``rate_limit`` config (None if unlimited).

    ``account`` (:meth:`forge.config.ProviderConfig.account`: base URL and credential
    fingerprint) names the Redis budget unless ``config.budget`` names one: see :func:`budget_key`.
    """
    if not config.requests_per_minute and not config.tokens_per_minute:
        return None
    factory: Callable[[str, float, float, float], Bucket] | None = None
    owned: object | None = None
    window: Callable[[str, float, float], Bucket] | None = None
    if config.backend == "redis":
        client = redis_client
        if client is None:
            try:
                import redis.asyncio as redis_asyncio
            except ImportError as exc:
                raise ConfigError(
                    f"providers.{provider}.rate_limit.backend is 'redis' but the redis package is not "
                    "installed: pip install 'forge-llm[redis]'.",
                    key=f"providers.{provider}.rate_limit.backend",
                ) from exc
            from forge._secrets import register_url_password

            url = config.redis_url or "redis://localhost:6379/0"
            register_url_password(url)  # never printed, whatever error quotes it
            client = owned = redis_asyncio.Redis.from_url(url)
        shared = client
        prefix = budget_key(provider, config, account)

        def factory(kind: str, capacity: float, rate: float, initial: float) -> Bucket:
            return RedisBucket(shared, f"{prefix}:{kind}", capacity, rate, initial=initial, sleep=sleep,
                               clock=clock)

        def window(kind: str, limit: float, margin: float) -> Bucket:
            return RedisWindow(shared, f"{prefix}:{kind}", limit, margin=margin, sleep=sleep, clock=clock)

    counter = RequestCounter(
        config.requests_per_minute,
        config.tokens_per_minute,
        burst_seconds=config.burst_seconds,
        clock=clock,
        sleep=sleep,
        bucket_factory=factory,
        window_factory=window,
    )
    if owned is not None:
        counter.close_with(owned.aclose)  # type: ignore[attr-defined]
    return counter


def budget_key(provider: str, config: RateLimitConfig, account: str = "") -> str:
    """The Redis key prefix of a provider's shared budget (``:requests`` / ``:tokens`` follow).

    ``forge:ratelimit:{provider}:budget:{name}`` when ``rate_limit.budget`` names one
    (several keys drawing on one organization's limits), else
    ``forge:ratelimit:{provider}:account:{digest}``, the digest being one-way over the
    base URL and credential fingerprint: providers count limits per organization or key,
    so two keys never share (or drain) one budget unless the config says so.
    """
    if config.budget:
        return f"forge:ratelimit:{provider}:budget:{config.budget}"
    from forge._secrets import fingerprint

    return f"forge:ratelimit:{provider}:account:{fingerprint(account)}"
