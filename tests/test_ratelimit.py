"""Token bucket and request counter maths on a fake clock: refill, FIFO fairness, settle."""

from __future__ import annotations

import asyncio

import pytest

from forge.ratelimit import COLD_START, DEFAULT_MARGIN, RequestCounter, TokenBucket
from tests.conftest import FakeClock


def test_refill_is_continuous_and_capped(clock: FakeClock) -> None:
    b = TokenBucket(10, 2, clock=clock)
    assert b.try_acquire(10)
    assert not b.try_acquire(1)
    clock.advance(1.5)
    assert b.level == pytest.approx(3.0)
    clock.advance(100)
    assert b.level == 10


def test_wait_time_reports_without_taking(clock: FakeClock) -> None:
    b = TokenBucket(10, 2, clock=clock, initial=0)
    assert b.wait_time_now(4) == pytest.approx(2.0)
    assert b.level == 0


async def test_acquire_waits_exactly_the_deficit(clock: FakeClock) -> None:
    b = TokenBucket(10, 2, clock=clock, sleep=clock.sleep, initial=1)
    waited = await b.acquire(5)
    assert waited == pytest.approx(2.0)
    assert clock.sleeps == [pytest.approx(2.0)]


async def test_fifo_fairness_large_request_not_overtaken(clock: FakeClock) -> None:
    b = TokenBucket(10, 1, clock=clock, sleep=clock.sleep, initial=0)
    order: list[str] = []

    async def take(name: str, amount: float) -> None:
        await b.acquire(amount)
        order.append(name)

    big = asyncio.create_task(take("big", 8))
    await asyncio.sleep(0)
    small = asyncio.create_task(take("small", 1))
    await asyncio.gather(big, small)
    assert order == ["big", "small"]


async def test_oversized_request_waits_for_full_bucket_then_goes_negative(clock: FakeClock) -> None:
    b = TokenBucket(10, 1, clock=clock, sleep=clock.sleep, initial=10)
    assert await b.acquire(25) == 0.0
    assert b.level == -15


async def test_cancelled_waiter_is_skipped(clock: FakeClock) -> None:
    b = TokenBucket(5, 1, clock=clock, sleep=clock.sleep, initial=0)
    first = asyncio.create_task(b.acquire(3))
    await asyncio.sleep(0)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert await b.acquire(1) >= 0


def test_counter_limits_default_to_the_one_second_slice(clock: FakeClock) -> None:
    c = RequestCounter(requests_per_minute=600, tokens_per_minute=60_000, clock=clock)
    assert c.requests is not None and c.requests.capacity == 10
    assert c.tokens is not None and c.tokens.capacity == 1000


async def test_counter_settles_with_real_usage(clock: FakeClock) -> None:
    c = RequestCounter(tokens_per_minute=60_000, clock=clock, sleep=clock.sleep)
    res = await c.acquire(800)
    assert c.tokens is not None
    await c.settle(res, 300)
    assert await c.tokens.wait_time(700) == 0.0
    await c.settle(res, 0)  # settling twice changes nothing
    assert await c.tokens.wait_time(700) == 0.0


async def test_counter_tightens_to_server_remaining(clock: FakeClock) -> None:
    c = RequestCounter(requests_per_minute=600, clock=clock, sleep=clock.sleep)
    await c.observe({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "100ms"})
    assert await c.wait_time() == pytest.approx(0.1)


async def test_rate_achieved_matches_configuration(clock: FakeClock) -> None:
    c = RequestCounter(requests_per_minute=120, clock=clock, sleep=clock.sleep)
    start = clock()
    for _ in range(62):
        await c.acquire()
    # 2 in any 1 + DEFAULT_MARGIN s (the window plus its jitter margin): 31 windows' worth,
    # plus the cold-start allowance held by the very first take.
    assert clock() - start == pytest.approx(30 * (1 + DEFAULT_MARGIN) + 0.5 + COLD_START, abs=0.02)


async def test_burst_mode_bucket_starts_half_full(clock: FakeClock) -> None:
    c = RequestCounter(requests_per_minute=600, burst_seconds=1.0, clock=clock, sleep=clock.sleep)
    assert c.requests is not None
    assert await c.requests.wait_time(5) == 0.0
    assert await c.requests.wait_time(6) == pytest.approx(0.1)
