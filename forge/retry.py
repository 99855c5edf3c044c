"""Retry: exponential backoff with full jitter that never undercuts the server's hint.

The wait is a pure function of (attempt, error, policy, random draw), so tests
check the schedule without sleeping; :func:`call_with_retry` is the one loop
that sleeps, through an injected ``sleep``.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from forge.errors import ForgeError, ProviderError, RateLimitError, RetryAttempt
from forge.ratelimit import response_observer

if TYPE_CHECKING:
    from forge.config import RetryConfig
    from forge.ratelimit import RequestCounter, Reservation

__all__ = ["RetryEvent", "RetryPolicy", "RetryWrapper", "backoff_wait", "call_with_retry"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How many times to try and how long to wait between tries.

    ``wait(n) = U(0, min(max_wait, initial_wait * backoff_factor ** (n - 1)))``
    (full jitter; without jitter the upper bound itself), raised to the
    server's Retry-After hint when ``respect_retry_after`` is set. A hint longer
    than ``max_wait`` is not slept: the call fails at once with the hint on the error.
    """

    max_attempts: int = 3
    initial_wait: float = 0.5
    backoff_factor: float = 2.0
    max_wait: float = 30.0
    jitter: bool = True
    respect_retry_after: bool = True

    @classmethod
    def from_config(cls, config: RetryConfig) -> RetryPolicy:
        return cls(
            max_attempts=config.max_attempts,
            initial_wait=config.initial_wait,
            backoff_factor=config.backoff_factor,
            max_wait=config.max_wait,
            jitter=config.jitter,
            respect_retry_after=config.respect_retry_after,
        )


def backoff_wait(policy: RetryPolicy, attempt: int, error: BaseException | None, draw: float) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based), given a draw in [0, 1)."""
    cap = float(min(policy.max_wait, policy.initial_wait * policy.backoff_factor ** max(attempt - 1, 0)))
    wait = cap * draw if policy.jitter else cap
    if policy.respect_retry_after and isinstance(error, ProviderError) and error.retry_after is not None:
        wait = max(wait, error.retry_after)
    return wait


@dataclass(frozen=True, slots=True)
class RetryEvent:
    """Reported to ``on_retry`` before each wait."""

    attempt: int
    error: ForgeError
    wait: float


async def call_with_retry(
    fn: Callable[[], Awaitable[T]],
    *,
    policy: RetryPolicy,
    classify: Callable[[BaseException], ForgeError],
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    rng: Callable[[], float] = random.random,
    on_retry: Callable[[RetryEvent], object] | None = None,
) -> tuple[T, int]:
    """Run ``fn`` until it succeeds, a non-retryable error occurs, or attempts run out.

    Returns ``(result, attempts_used)``. Whatever ends the call, the caller gets the
    last error's own class (classified first when ``fn`` raised a raw exception), with
    the history in ``error.attempts`` (one :class:`~forge.errors.RetryAttempt` per
    request) and ``error.attempt_count``: a 429 is a :class:`RateLimitError` whether
    ``max_attempts`` is 1 or 6. A retryable error whose Retry-After hint is longer than
    ``max_wait`` is raised at once, its message saying so.
    """
    history: list[RetryAttempt] = []
    attempt = 0
    while True:
        attempt += 1
        try:
            return await fn(), attempt
        except Exception as exc:  # cancellation, exit and other BaseExceptions pass through untouched
            error = exc if isinstance(exc, ForgeError) else classify(exc)
            hint = error.retry_after if isinstance(error, ProviderError) else None
            too_long = policy.respect_retry_after and hint is not None and hint > policy.max_wait
            if not error.retryable or attempt >= policy.max_attempts or too_long:
                if too_long and error.retryable and attempt < policy.max_attempts:
                    _say_not_retried(error, hint, policy)
                history.append(RetryAttempt(attempt, error, 0.0))
                error.attempts = tuple(history)
                if error is exc:
                    raise
                raise error from exc
            wait = backoff_wait(policy, attempt, error, rng())
            history.append(RetryAttempt(attempt, error, wait))
            if on_retry is not None:
                on_retry(RetryEvent(attempt, error, wait))
            await sleep(wait)


def _say_not_retried(error: ForgeError, hint: float | None, policy: RetryPolicy) -> None:
    """Add to ``error`` why it was not retried: the server's Retry-After exceeds ``max_wait``."""
    if isinstance(error, ProviderError) and hint is not None:
        error.message = (
            f"{error.message}; the server asked to wait {hint:g}s, longer than "
            f"max_wait={policy.max_wait:g}s, so forge did not retry. Raise retry.max_wait "
            "to wait that long, or try later."
        )
        error.args = (error.message,)


class RetryWrapper:
    """Applies one provider's retry policy and rate limiter to every attempt of a call.

    :class:`~forge.LLM` runs ``invoke``, the opening of a ``stream`` (up to its first
    event) and each batch item through :meth:`call`. Before each attempt the
    limiter (if any) is asked for one request and the estimated tokens; after a
    success the estimate is settled with the provider's count; a failed attempt
    gives its reservation back; a 429 tightens the limiter to the headers it carried.
    """

    def __init__(
        self,
        policy: RetryPolicy | None = None,
        *,
        overrides: Mapping[str, RetryPolicy] | None = None,
        limiter: RequestCounter | None = None,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        rng: Callable[[], float] = random.random,
        on_retry: Callable[[RetryEvent], object] | None = None,
        on_wait: Callable[[float], object] | None = None,
    ) -> None:
        self.policy = policy or RetryPolicy()
        self.overrides = dict(overrides or {})
        self.limiter = limiter
        self._sleep = sleep
        self._rng = rng
        self.on_retry = on_retry
        self.on_wait = on_wait

    def add_observers(
        self,
        *,
        on_retry: Callable[[RetryEvent], object] | None = None,
        on_wait: Callable[[float], object] | None = None,
    ) -> None:
        """Also call these on each retry / limiter wait (metrics), after any existing hooks."""
        for name, extra in (("on_retry", on_retry), ("on_wait", on_wait)):
            if extra is None:
                continue
            first = getattr(self, name)
            if first is None:
                setattr(self, name, extra)
            else:
                setattr(self, name, _chain(first, extra))

    def policy_for(self, operation: str) -> RetryPolicy:
        """The policy for ``invoke``, ``stream`` or ``batch`` (an override, else the default)."""
        return self.overrides.get(operation, self.policy)

    async def call(
        self,
        fn: Callable[[], Awaitable[T]],
        *,
        classify: Callable[[BaseException], ForgeError],
        operation: str = "invoke",
        estimated_tokens: float = 0.0,
        settle: Callable[[T], float | None] | None = None,
        policy: RetryPolicy | None = None,
    ) -> tuple[T, int]:
        """Run ``fn`` under the limiter and the retry policy; return ``(result, attempts)``.

        ``policy`` replaces the operation's policy for this one call (a per-call ``max_attempts``).
        """
        limiter = self.limiter

        async def attempt() -> T:
            reservation = await self._reserve(estimated_tokens)
            token = None
            if limiter is not None and reservation is not None:
                token = response_observer.set(limiter.observe)
            try:
                result = await fn()
            except BaseException as exc:
                await self._failed_attempt(exc, reservation, classify)
                raise
            finally:
                if token is not None:
                    response_observer.reset(token)
            if reservation is not None and settle is not None and limiter is not None:
                actual = settle(result)
                if actual is not None:
                    await limiter.settle(reservation, actual)
            return result

        return await call_with_retry(
            attempt,
            policy=policy or self.policy_for(operation),
            classify=classify,
            sleep=self._sleep,
            rng=self._rng,
            on_retry=self.on_retry,
        )

    async def _failed_attempt(
        self,
        exc: BaseException,
        reservation: Reservation | None,
        classify: Callable[[BaseException], ForgeError],
    ) -> None:
        """Give the limiter back what a failed attempt did not use, and tighten it to a 429's headers."""
        limiter = self.limiter
        if limiter is None:
            return
        if reservation is not None and isinstance(exc, Exception):
            # A failed attempt gives its tokens back; a 429 was not counted at all,
            # so its request slot comes back too (before tightening to the headers).
            error = exc if isinstance(exc, ForgeError) else classify(exc)
            await limiter.release(reservation, request=isinstance(error, RateLimitError))
        if isinstance(exc, ProviderError) and exc.headers:
            await limiter.observe(exc.headers)

    async def _reserve(self, estimated_tokens: float) -> Reservation | None:
        """One request and ``estimated_tokens`` from the limiter (None: no limiter, or it is off)."""
        limiter = self.limiter
        if limiter is None or not limiter.enabled:
            return None
        reservation = await limiter.acquire(estimated_tokens)
        if reservation.waited and self.on_wait is not None:
            self.on_wait(reservation.waited)
        return reservation


def _chain(first: Callable[[Any], object], second: Callable[[Any], object]) -> Callable[[Any], None]:
    def both(value: Any) -> None:
        first(value)
        second(value)

    return both
