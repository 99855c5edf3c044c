"""Circuit breakers: a dead model costs one probe per cooldown, not every request.

One breaker guards one provider, base URL and model (a *link* of a fallback
chain, see :mod:`forge.fallback`). It counts the requests that failed the way an
outage fails (overloaded, rate limited past ``max_wait``, 5xx, timeouts,
connection errors, replies that are not the provider's API) and:

- **closed**: requests pass. After ``failures`` consecutive failed requests, or
  when at least ``min_calls`` requests in the last ``window`` seconds failed at a
  rate of ``failure_rate`` or more, it opens.
- **open**: requests are refused at once (a chain goes straight to its next
  link) for ``cooldown`` seconds, never less than a Retry-After the server gave.
- **half_open**: when the cooldown is over, one request at a time is let through
  as a probe. Its success closes the breaker; its failure opens it again for a
  cooldown ``backoff_factor`` times longer (up to ``max_cooldown``).

A primary that hangs fails nobody quickly, so with ``slow_call`` set a call
still out after that many seconds counts as a failure at once (:meth:`CircuitBreaker.slow`),
and while such a call is out the breaker admits nothing else in this process
(it is *in doubt*): one hanging call, not every call in the detection window,
pays for finding the outage.

The transitions are one pure function over a small record, applied under a
lock in memory (:class:`MemoryBreakerStore`) or in a Redis transaction on
Redis's clock (:class:`RedisBreakerStore`), so processes sharing a Redis share
breaker state. The clock is injected; tests drive state changes on a fake clock.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol, TypeVar

from forge.errors import ConfigError, ProviderError

if TYPE_CHECKING:
    from forge.config import BreakerConfig

__all__ = [
    "BreakerChange",
    "BreakerState",
    "BreakerStore",
    "CircuitBreaker",
    "CircuitBreakers",
    "CircuitOpen",
    "MemoryBreakerStore",
    "RedisBreakerStore",
]

BreakerState = Literal["closed", "open", "half_open"]
Admission = Literal["allow", "probe", "reject"]
T = TypeVar("T")

# The failure-rate window is kept as this many equal slices (bounded state, also in Redis).
_SLICES = 10


class CircuitOpen(ProviderError):
    """Every link of a fallback chain was skipped because its circuit breaker is open.

    Retryable: ``retry_after`` says when the first breaker lets a probe through.
    """

    retryable = True


@dataclass(frozen=True, slots=True)
class BreakerChange:
    """A breaker changed state (also sent to metrics subscribers as a ``breaker`` event).

    Attributes:
        key: what the breaker guards, ``provider|base_url|model``.
        old_state, new_state: ``closed``, ``open`` or ``half_open``.
        cooldown_s: how long it stays open (0 unless ``new_state`` is ``open``).
        error: class name of the failure that opened it, if any.
        shared: the change was made by another process (shared Redis state) and
            seen here when this process next read the breaker.
    """

    key: str
    old_state: BreakerState
    new_state: BreakerState
    cooldown_s: float = 0.0
    error: str | None = None
    shared: bool = False


@dataclass(slots=True)
class _Record:
    """Breaker state as stored (JSON in Redis). Times are the store's clock, in seconds."""

    state: BreakerState = "closed"
    consecutive: int = 0
    opened_at: float = 0.0
    cooldown: float = 0.0
    level: int = 0
    probe_until: float = 0.0
    # window slice start -> [requests, failures]
    slices: dict[str, list[int]] = field(default_factory=dict)

    @classmethod
    def load(cls, raw: bytes | str | None) -> _Record:
        if not raw:
            return cls()
        data = json.loads(raw)
        return cls(**data)

    def dump(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))


def _count(rec: _Record, cfg: BreakerConfig, now: float, requests: int, failures: int) -> tuple[int, int]:
    """Add to the current window slice, drop expired ones; return the window's totals."""
    width = cfg.window / _SLICES
    current = math.floor(now / width) * width
    horizon = now - cfg.window
    rec.slices = {k: v for k, v in rec.slices.items() if float(k) + width > horizon}
    slot = rec.slices.setdefault(repr(current), [0, 0])
    slot[0] += requests
    slot[1] += failures
    return sum(v[0] for v in rec.slices.values()), sum(v[1] for v in rec.slices.values())


def _open(
    rec: _Record, cfg: BreakerConfig, now: float, retry_after: float | None, since: float = 0.0
) -> None:
    # ``since``: the verdict came this long after the request that found the fault was
    # sent (a slow call); the cooldown runs from that request, as it would for a fast failure.
    cooldown = min(cfg.max_cooldown, cfg.cooldown * cfg.backoff_factor**rec.level)
    if retry_after is not None:
        cooldown = max(cooldown, retry_after + since)  # never probe before the server said it would be back
    rec.state, rec.opened_at, rec.cooldown, rec.probe_until = "open", now - since, cooldown, 0.0


def _admit(rec: _Record, cfg: BreakerConfig, now: float) -> Admission:
    if rec.state == "closed":
        return "allow"
    if rec.state == "open":
        if now < rec.opened_at + rec.cooldown:
            return "reject"
        rec.state = "half_open"
    if now < rec.probe_until:
        return "reject"  # a probe is out; everyone else goes to the next link
    rec.probe_until = now + cfg.probe_timeout
    return "probe"


def _succeeded(rec: _Record, cfg: BreakerConfig, now: float, probe: bool) -> None:
    _count(rec, cfg, now, 1, 0)
    if rec.state == "closed":
        rec.consecutive = 0
    elif probe:
        rec.state, rec.consecutive, rec.level, rec.cooldown, rec.probe_until = "closed", 0, 0, 0.0, 0.0
        rec.slices = {}


def _failed(
    rec: _Record, cfg: BreakerConfig, now: float, weight: int, retry_after: float | None, probe: bool,
    since: float = 0.0,
) -> None:
    requests, failures = _count(rec, cfg, now, weight, weight)
    if rec.state == "closed":
        rec.consecutive += weight
        rate_tripped = requests >= cfg.min_calls and failures >= cfg.failure_rate * requests
        if rec.consecutive >= cfg.failures or rate_tripped:
            rec.level = 0
            _open(rec, cfg, now, retry_after, since)
    elif probe:
        rec.level += 1
        _open(rec, cfg, now, retry_after, since)
    # A straggler admitted before the breaker opened changes nothing: only probes decide.


def _released(rec: _Record, probe: bool) -> None:
    if probe and rec.state == "half_open":
        rec.probe_until = 0.0  # the probe ended without a verdict: let the next request probe


class BreakerStore(Protocol):
    """Where breaker records live: ``update`` applies ``fn`` atomically and returns its result."""

    async def update(self, key: str, fn: Callable[[_Record, float], T]) -> T: ...

    async def aclose(self) -> None: ...


class MemoryBreakerStore:
    """Breaker records in this process (the default)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._records: dict[str, _Record] = {}

    async def update(self, key: str, fn: Callable[[_Record, float], T]) -> T:
        rec = self._records.get(key)
        if rec is None:
            rec = self._records[key] = _Record()
        return fn(rec, self._clock())  # no await between read and write: atomic on the event loop

    async def aclose(self) -> None:
        return None


class RedisBreakerStore:
    """Breaker records in Redis, shared by every process and host using the same Redis.

    Each update is a WATCH/MULTI transaction (retried on a concurrent write) on
    the record's key, timed by Redis's own clock unless ``clock`` is given, so
    processes with different clocks agree on cooldowns.
    """

    def __init__(
        self,
        client: object,
        *,
        prefix: str = "forge:breaker:",
        ttl: float = 3600.0,
        clock: Callable[[], float] | None = None,
        owns_client: bool = False,
    ) -> None:
        self._client = client
        self.prefix = prefix
        self._ttl_ms = max(1000, int(ttl * 1000))
        self._clock = clock
        self._owns = owns_client

    async def update(self, key: str, fn: Callable[[_Record, float], T]) -> T:
        from redis.exceptions import WatchError

        name = self.prefix + key
        async with self._client.pipeline(transaction=True) as pipe:  # type: ignore[attr-defined]
            while True:
                try:
                    await pipe.watch(name)
                    rec = _Record.load(await pipe.get(name))
                    if self._clock is not None:
                        now = self._clock()
                    else:
                        seconds, micros = await pipe.time()
                        now = seconds + micros / 1_000_000
                    result = fn(rec, now)
                    pipe.multi()
                    pipe.set(name, rec.dump(), px=self._ttl_ms)
                    await pipe.execute()
                    return result
                except WatchError:
                    continue

    async def aclose(self) -> None:
        if self._owns:
            await self._client.aclose()  # type: ignore[attr-defined]


class CircuitBreaker:
    """The breaker of one provider, base URL (and account) and model; see :class:`CircuitBreakers`.

    ``await admit()`` before a request says ``allow``, ``probe`` (the one request
    let through after a cooldown) or ``reject``; after it, report the outcome with
    :meth:`success`, :meth:`failure` (``attempts`` failed requests) or :meth:`release`
    (no verdict: a bad request, a cancelled call). A call still out after
    ``config.slow_call`` is reported with :meth:`slow` (its verdict, given early)
    and :meth:`slow_ended` once it is over.
    """

    def __init__(
        self,
        key: str,
        config: BreakerConfig,
        store: BreakerStore,
        *,
        on_change: Callable[[BreakerChange], object] | None = None,
    ) -> None:
        self.key = key
        self.config = config
        self._store = store
        self._on_change = on_change
        self.state: BreakerState = "closed"
        """The state as this process last saw it (the store is the truth when shared)."""
        self.cooldown_s = 0.0
        self.retry_in = 0.0
        """Seconds until a probe may pass, as of the last rejected admission."""
        self.slow_calls = 0
        """Calls of this process out longer than ``slow_call``: while any is, the breaker is in doubt."""

    async def _apply(self, fn: Callable[[_Record, float], T], error: str | None = None) -> T:
        seen: list[BreakerState] = []

        def step(rec: _Record, now: float) -> T:
            before = rec.state
            result = fn(rec, now)
            seen[:] = [before, rec.state]
            self.cooldown_s = rec.cooldown if rec.state == "open" else 0.0
            self.retry_in = max(0.0, rec.opened_at + rec.cooldown - now) if rec.state == "open" else 0.0
            return result

        result = await self._store.update(self.key, step)
        old, new = seen
        last_seen, self.state = self.state, new
        if self._on_change is not None:
            if old != last_seen:
                # Another process (shared Redis state) moved the breaker since this one last looked.
                self._on_change(BreakerChange(self.key, last_seen, old, self.cooldown_s, shared=True))
            if old != new:
                self._on_change(BreakerChange(self.key, old, new, self.cooldown_s, error))
        return result

    async def admit(self, *, last_resort: bool = False) -> Admission:
        """Whether a request may go to this link now (``probe``: it is the one trial request).

        ``reject`` also while a call of this process is out past ``slow_call``: the
        link is in doubt, and one hanging call is enough, unless ``last_resort`` (the
        caller has no other link to go to: a link in doubt beats no answer).
        """
        if self.slow_calls and not last_resort:
            self.retry_in = self.config.slow_call or 0.0
            return "reject"
        if self.state == "closed" and isinstance(self._store, MemoryBreakerStore):
            # Fast path: a closed in-process breaker admits without touching its record.
            return "allow"
        return await self._apply(lambda rec, now: _admit(rec, self.config, now))

    async def slow(self, *, elapsed: float, attempts: int = 1, probe: bool = False) -> None:
        """A call has been out ``elapsed`` seconds, past ``slow_call``: count it as failed now.

        ``attempts``: the requests the call may make (its retry policy's), the weight it
        would carry had it failed after all of them. Until :meth:`slow_ended`, the breaker
        admits no other call of this process. A cooldown it opens runs from when the call
        was sent.
        """
        self.slow_calls += 1
        weight = max(1, attempts)
        await self._apply(
            lambda rec, now: _failed(rec, self.config, now, weight, None, probe, since=elapsed), "SlowCall"
        )

    def slow_ended(self) -> None:
        """A call reported with :meth:`slow` is over (its outcome no longer matters to the breaker)."""
        self.slow_calls = max(0, self.slow_calls - 1)

    async def refresh(self) -> BreakerState:
        """Read the stored state (shared: what other processes made it) without changing it."""
        return await self._apply(lambda rec, now: rec.state)

    async def success(self, *, probe: bool = False) -> None:
        """The link answered."""
        await self._apply(lambda rec, now: _succeeded(rec, self.config, now, probe))

    async def failure(
        self, *, attempts: int = 1, retry_after: float | None = None, probe: bool = False,
        error: str | None = None,
    ) -> None:
        """The link failed as an outage fails, after ``attempts`` requests."""
        weight = max(1, attempts)
        await self._apply(lambda rec, now: _failed(rec, self.config, now, weight, retry_after, probe), error)

    async def release(self, *, probe: bool = False) -> None:
        """The request ended without saying whether the link is healthy."""
        if probe:
            await self._apply(lambda rec, now: _released(rec, probe))


class CircuitBreakers:
    """Every breaker of one registry, by key, on one store (``reg.breakers``)."""

    def __init__(
        self,
        config: BreakerConfig,
        store: BreakerStore | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[BreakerChange], object] | None = None,
    ) -> None:
        self.config = config
        self.store: BreakerStore = store if store is not None else MemoryBreakerStore(clock)
        self._on_change = on_change
        self._breakers: dict[str, CircuitBreaker] = {}

    def get(self, key: str) -> CircuitBreaker:
        """The breaker for ``key`` (``provider|base_url|model``), created closed on first use."""
        breaker = self._breakers.get(key)
        if breaker is None:
            breaker = self._breakers[key] = CircuitBreaker(
                key, self.config, self.store, on_change=self._on_change
            )
        return breaker

    def states(self) -> dict[str, BreakerState]:
        """Each breaker's last seen state, by key (see :meth:`refresh` for shared state)."""
        return {key: b.state for key, b in sorted(self._breakers.items())}

    async def refresh(self) -> dict[str, BreakerState]:
        """Read every breaker of this registry from its store, and return the states by key.

        With the Redis backend this is how changes made by other processes become
        visible here: each one seen is sent to ``on_change`` (a ``breaker`` metrics
        event with ``shared=True``), so ``metrics.snapshot()["breakers"]`` shows them.
        """
        for breaker in list(self._breakers.values()):
            await breaker.refresh()
        return self.states()

    async def aclose(self) -> None:
        await self.store.aclose()

    @classmethod
    def from_config(
        cls,
        config: BreakerConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[BreakerChange], object] | None = None,
        redis_client: object | None = None,
    ) -> CircuitBreakers:
        """Breakers on the store ``config.backend`` names (``memory`` or ``redis``)."""
        store: BreakerStore | None = None
        if config.backend == "redis":
            client = redis_client
            owns = client is None
            if client is None:
                try:
                    import redis.asyncio as redis_asyncio
                except ImportError as exc:
                    raise ConfigError(
                        "breaker.backend is 'redis' but the redis package is not installed: "
                        "pip install 'forge-llm[redis]'.",
                        key="breaker.backend",
                    ) from exc
                client = redis_asyncio.Redis.from_url(config.redis_url or "redis://localhost:6379/0")
            ttl = 2 * max(config.window, config.max_cooldown, config.probe_timeout) + 60
            store = RedisBreakerStore(client, ttl=ttl, owns_client=owns)
        return cls(config, store, clock=clock, on_change=on_change)

