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
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from forge.errors import ConfigError

if TYPE_CHECKING:
    from forge.config import RateLimitConfig

__all__ = [
    "Bucket",
    "response_observer",
    "RedisBucket",
    "RequestCounter",
    "Reservation",
    "TokenBucket",
    "budget_key",
    "counter_from_config",
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

    async def refund(self, amount: float) -> None:
        """Give back ``amount`` (negative: take more, the level may go below zero)."""
        ...

    async def tighten(self, remaining: float, reset_in: float | None = None) -> None:
        """Lower the level to what the server says is left."""
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

    async def refund(self, amount: float) -> None:
        """Return ``amount`` tokens (capped at capacity); a negative amount takes more."""
        self._refill()
        self._level = min(self.capacity, self._level + amount)

    async def tighten(self, remaining: float, reset_in: float | None = None) -> None:
        """Never hold more than the server says remains."""
        self._refill()
        if remaining < self._level:
            self._level = float(remaining)


@dataclass(slots=True)
class Reservation:
    """What :meth:`RequestCounter.acquire` took, for :meth:`RequestCounter.settle`."""

    tokens: float
    waited: float
    settled: bool = False


class RequestCounter:
    """A requests/min and a tokens/min bucket for one provider (either may be unlimited).

    Before a call: ``res = await counter.acquire(estimated_tokens)`` waits for both
    budgets. After it: ``await counter.settle(res, actual_tokens)`` corrects the
    tokens bucket with what the provider really counted. ``observe(headers)``
    tightens the buckets to the provider's own remaining counts.

    The buckets start ``initial_fill`` full (half, by default), not full: the first
    requests of a process open new connections and reach the provider late and
    unevenly, so a full first burst arrives compressed behind the ones that follow
    it; and the provider may still be counting a previous process's calls.
    """

    def __init__(
        self,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        *,
        burst_seconds: float = 1.0,
        initial_fill: float = 0.5,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        bucket_factory: Callable[[str, float, float, float], Bucket] | None = None,
    ) -> None:
        if not 0.0 <= initial_fill <= 1.0:
            raise ValueError(f"initial_fill must be between 0 and 1, got {initial_fill!r}.")
        if burst_seconds <= 0:
            raise ValueError(f"burst_seconds must be > 0, got {burst_seconds!r}.")
        self.requests_per_minute = requests_per_minute
        self.tokens_per_minute = tokens_per_minute
        self.burst_seconds = burst_seconds

        def make(kind: str, per_minute: float) -> Bucket:
            rate = per_minute / 60.0
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
        """Wait for one request and ``tokens`` tokens of budget; return the reservation."""
        waited = 0.0
        if self.requests is not None:
            waited += await self.requests.acquire(1)
        if self.tokens is not None and tokens > 0:
            waited += await self.tokens.acquire(tokens)
        return Reservation(tokens if self.tokens is not None else 0.0, waited)

    async def settle(self, reservation: Reservation, actual_tokens: float) -> None:
        """Correct the tokens bucket by the difference between estimate and actual count."""
        if reservation.settled or self.tokens is None:
            reservation.settled = True
            return
        reservation.settled = True
        diff = reservation.tokens - actual_tokens
        if diff:
            await self.tokens.refund(diff)

    async def observe(self, headers: Mapping[str, str]) -> None:
        """Tighten to remaining counts the provider reported (OpenAI / Anthropic header names)."""
        for bucket, names in (
            (
                self.requests,
                ("x-ratelimit-remaining-requests", "anthropic-ratelimit-requests-remaining"),
            ),
            (
                self.tokens,
                ("x-ratelimit-remaining-tokens", "anthropic-ratelimit-tokens-remaining"),
            ),
        ):
            if bucket is None:
                continue
            for name in names:
                value = headers.get(name)
                if value is None:
                    continue
                try:
                    remaining = float(value)
                except ValueError:
                    continue
                await bucket.tighten(remaining)
                break

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

    async def refund(self, amount: float) -> None:
        await self._run(amount, "add")

    async def tighten(self, remaining: float, reset_in: float | None = None) -> None:
        await self._run(remaining, "tighten")


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

    counter = RequestCounter(
        config.requests_per_minute,
        config.tokens_per_minute,
        burst_seconds=config.burst_seconds,
        clock=clock,
        sleep=sleep,
        bucket_factory=factory,
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
