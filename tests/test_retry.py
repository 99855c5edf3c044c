"""Backoff schedule and the retry loop, checked against a fake clock (nothing sleeps)."""

from __future__ import annotations

import pytest

from forge.errors import (
    AuthenticationError,
    RateLimitError,
    ServerError,
)
from forge.retry import RetryPolicy, backoff_wait, call_with_retry
from tests.conftest import FakeClock


def test_exponential_growth_capped_without_jitter() -> None:
    p = RetryPolicy(initial_wait=0.5, backoff_factor=2, max_wait=3, jitter=False)
    assert [backoff_wait(p, n, None, 0.0) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_full_jitter_bounds() -> None:
    p = RetryPolicy(initial_wait=1, backoff_factor=2, max_wait=100)
    assert backoff_wait(p, 3, None, 0.0) == 0.0
    assert backoff_wait(p, 3, None, 0.999) == pytest.approx(3.996)


def test_retry_after_is_never_undercut() -> None:
    p = RetryPolicy(initial_wait=0.5, max_wait=30)
    err = RateLimitError("x", retry_after=7.0)
    assert backoff_wait(p, 1, err, 0.1) == 7.0


def test_retry_after_ignored_when_disabled() -> None:
    p = RetryPolicy(initial_wait=0.5, respect_retry_after=False, jitter=False)
    assert backoff_wait(p, 1, RateLimitError("x", retry_after=7.0), 0.1) == 0.5


async def test_retries_then_succeeds(clock: FakeClock) -> None:
    calls = iter([ServerError("boom"), RateLimitError("slow", retry_after=2.0), "ok"])

    async def fn() -> str:
        item = next(calls)
        if isinstance(item, BaseException):
            raise item
        return item

    result, attempts = await call_with_retry(
        fn, policy=RetryPolicy(max_attempts=3, jitter=False), classify=lambda e: ServerError(str(e)),
        sleep=clock.sleep,
    )
    assert (result, attempts) == ("ok", 3)
    assert clock.sleeps == [0.5, 2.0]


async def test_non_retryable_passes_through_at_once(clock: FakeClock) -> None:
    async def fn() -> str:
        raise AuthenticationError("bad key")

    with pytest.raises(AuthenticationError):
        await call_with_retry(fn, policy=RetryPolicy(), classify=lambda e: ServerError(str(e)), sleep=clock.sleep)
    assert clock.sleeps == []


async def test_exhaustion_keeps_history(clock: FakeClock) -> None:
    async def fn() -> str:
        raise ServerError("still down")

    with pytest.raises(ServerError) as info:
        await call_with_retry(
            fn, policy=RetryPolicy(max_attempts=3, jitter=False), classify=lambda e: ServerError(str(e)),
            sleep=clock.sleep,
        )
    assert [a.attempt for a in info.value.attempts] == [1, 2, 3]
    assert [a.wait for a in info.value.attempts] == [0.5, 1.0, 0.0]
    assert info.value.attempt_count == 3
    assert info.value.attempts[-1].error is info.value


async def test_hint_longer_than_max_wait_fails_fast(clock: FakeClock) -> None:
    async def fn() -> str:
        raise RateLimitError("quota", retry_after=3600.0)

    with pytest.raises(RateLimitError, match="longer than max_wait") as info:
        await call_with_retry(fn, policy=RetryPolicy(max_wait=30), classify=lambda e: ServerError(str(e)),
                              sleep=clock.sleep)
    assert info.value.retry_after == 3600.0
    assert clock.sleeps == []


async def test_raw_exceptions_are_classified(clock: FakeClock) -> None:
    async def fn() -> str:
        raise OSError("reset")

    with pytest.raises(AuthenticationError):
        await call_with_retry(fn, policy=RetryPolicy(), classify=lambda e: AuthenticationError(str(e)),
                              sleep=clock.sleep)
