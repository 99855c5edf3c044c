"""The default limiter against the rule providers enforce: every sliding second within
the per-minute slice; refunds that wake waiters; reservations that come back (fake clock)."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime

import pytest

from forge.errors import RateLimitError
from forge.ratelimit import COLD_START, DEFAULT_MARGIN, RequestCounter, SlidingWindow, parse_reset
from forge.retry import RetryPolicy, RetryWrapper
from tests.conftest import FakeClock


class YieldingClock(FakeClock):
    """A fake clock whose sleep lets the tasks just served run before time moves on,
    so each records the moment it was let through."""

    async def sleep(self, seconds: float) -> None:
        for _ in range(3):
            await asyncio.sleep(0)
        await super().sleep(seconds)


@pytest.fixture
def yclock() -> YieldingClock:
    return YieldingClock()


def _busiest_second(stamps: list[tuple[float, float]]) -> float:
    """The largest total of amounts inside any half-open window (t - 1, t]."""
    stamps = sorted(stamps)
    best, lo, total = 0.0, 0, 0.0
    for at, amount in stamps:
        total += amount
        while stamps[lo][0] <= at - 1.0:
            total -= stamps[lo][1]
            lo += 1
        best = max(best, total)
    return best


async def _run(counter: RequestCounter, clock: FakeClock, sizes: list[int]) -> list[tuple[float, float]]:
    queue = list(sizes)
    taken: list[tuple[float, float]] = []

    async def worker() -> None:
        while queue:
            n = queue.pop()
            await counter.acquire(n)
            taken.append((clock(), n))

    await asyncio.gather(*(worker() for _ in range(50)))
    return taken


async def test_no_sliding_second_holds_more_than_rpm_over_60(yclock: YieldingClock) -> None:
    clock = yclock
    counter = RequestCounter(requests_per_minute=3000, clock=clock, sleep=clock.sleep)
    start = clock()
    taken = await _run(counter, clock, [0] * 200)
    assert _busiest_second([(at, 1.0) for at, _ in taken]) <= 50
    assert 200 / (clock() - start) >= 0.9 * 50  # the rate itself is measured in benchmarks/


async def test_no_sliding_second_holds_more_than_tpm_over_60(yclock: YieldingClock) -> None:
    clock = yclock
    rng = random.Random(7)
    counter = RequestCounter(tokens_per_minute=600_000, clock=clock, sleep=clock.sleep)  # 10,000 a second
    sizes = [rng.randint(50, 400) for _ in range(200)]
    start = clock()
    taken = await _run(counter, clock, sizes)
    assert _busiest_second(taken) <= 10_000
    assert sum(sizes) / (clock() - start) >= 0.9 * 10_000


async def test_a_take_larger_than_the_slice_goes_alone(clock: FakeClock) -> None:
    w = SlidingWindow(100, clock=clock, sleep=clock.sleep)
    assert await w.acquire(10) == 0.0
    waited = await w.acquire(250)  # waits for the second holding the 10 to pass
    assert waited == pytest.approx(1 + DEFAULT_MARGIN + COLD_START)  # the first take after idle is held longer
    assert await w.acquire(1) == pytest.approx(2.5, abs=0.02)  # and then paced by its own size


async def test_refund_wakes_a_queued_waiter_at_once(clock: FakeClock) -> None:
    counter = RequestCounter(tokens_per_minute=120_000, clock=clock, sleep=clock.sleep)  # 2,000 a second
    start = clock()

    async def call() -> None:
        res = await counter.acquire(1024)  # the reservation ...
        await counter.settle(res, 24)  # ... and the 24 tokens the call really cost

    await asyncio.gather(*(call() for _ in range(6)))
    assert clock() - start < 0.1  # without the wake-up: one window (~1 s) per two calls


async def test_settled_refunds_leave_what_was_really_used(clock: FakeClock) -> None:
    counter = RequestCounter(tokens_per_minute=60_000, clock=clock, sleep=clock.sleep)
    res = await counter.acquire(800)
    await counter.settle(res, 300)
    assert counter.tokens is not None
    assert await counter.tokens.wait_time(700) == 0.0
    assert await counter.tokens.wait_time(701) > 0.0


async def test_cancelled_token_wait_returns_the_request_slot(clock: FakeClock) -> None:
    counter = RequestCounter(requests_per_minute=600, tokens_per_minute=600, clock=clock, sleep=clock.sleep)
    await counter.acquire(10)  # the tokens window (10 a second) is now full
    assert counter.requests is not None and counter.tokens is not None
    blocked = asyncio.ensure_future(counter.acquire(10))
    for _ in range(3):
        await asyncio.sleep(0)
    assert not blocked.done()
    blocked.cancel()
    with pytest.raises(asyncio.CancelledError):
        await blocked
    assert isinstance(counter.requests, SlidingWindow)
    assert counter.requests.level == 9  # only the first call's slot is held


async def test_a_failed_attempt_gives_its_reservation_back(clock: FakeClock) -> None:
    counter = RequestCounter(requests_per_minute=60, tokens_per_minute=6000, clock=clock, sleep=clock.sleep)
    wrapper = RetryWrapper(RetryPolicy(max_attempts=2), limiter=counter, sleep=clock.sleep, rng=lambda: 0.0)
    calls = 0

    async def fn() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RateLimitError("slow down", provider="fake")
        return "ok"

    result, attempts = await wrapper.call(fn, classify=lambda e: RateLimitError(str(e), provider="fake"),
                                          estimated_tokens=100)
    assert (result, attempts) == ("ok", 2)
    assert clock.sleeps == [0.0]  # the retry did not wait a second for the refused request's slot
    assert isinstance(counter.tokens, SlidingWindow) and counter.tokens.level == 0  # 100 held, not 200


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("1s", 1.0), ("6m0s", 360.0), ("20ms", 0.02), ("1h2m3.5s", 3723.5), ("0.5", 0.5)],
)
def test_openai_reset_durations(value: str, seconds: float) -> None:
    assert parse_reset(value) == pytest.approx(seconds)


def test_anthropic_reset_instants() -> None:
    wall = datetime(2025, 8, 21, 12, 40, 57, tzinfo=UTC).timestamp()
    assert parse_reset("2025-08-21T12:40:59Z", wall=lambda: wall) == pytest.approx(2.0)
    assert parse_reset("soon") is None


async def test_reset_header_holds_the_budget_until_the_reset(clock: FakeClock) -> None:
    counter = RequestCounter(requests_per_minute=600, clock=clock, sleep=clock.sleep)
    await counter.observe({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "250ms"})
    assert await counter.wait_time() == pytest.approx(0.25)
    later = datetime.now(UTC).timestamp() + 30
    stamp = datetime.fromtimestamp(later, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    await counter.observe({"anthropic-ratelimit-requests-remaining": "0", "anthropic-ratelimit-requests-reset": stamp})
    assert 28 < await counter.wait_time() <= 30


def test_anthropic_reservation_counts_the_default_max_tokens_it_sends() -> None:
    from forge.config import ProviderConfig
    from forge.llm import LLM
    from forge.providers.anthropic import DEFAULT_MAX_TOKENS, AnthropicProvider

    provider = AnthropicProvider(ProviderConfig(name="anthropic", api_key="test-key"))
    llm = LLM(provider, "claude-haiku-4-5")
    request = llm.request("hello")
    assert llm.estimate_tokens(request) >= DEFAULT_MAX_TOKENS
    assert llm.estimate_tokens(llm.request("hello", max_tokens=10)) < 100


async def test_a_request_that_leaves_late_counts_from_when_it_left(clock: FakeClock) -> None:
    from forge.ratelimit import request_leaving

    counter = RequestCounter(requests_per_minute=60, clock=clock, sleep=clock.sleep)  # one a second
    window = counter.requests
    assert isinstance(window, SlidingWindow)
    await counter.acquire()
    clock.advance(0.3)  # granted, then held on the client (a busy loop, a new connection)
    assert await counter.wait_time() == pytest.approx(COLD_START + window.span - 0.3)  # from the grant
    await request_leaving()  # the HTTP layer: its headers are being written now
    assert await counter.wait_time() == pytest.approx(window.span)  # from when it left
    await request_leaving()  # once per call: a second notice moves nothing
    clock.advance(0.1)
    assert await counter.wait_time() == pytest.approx(window.span - 0.1)


async def test_a_request_that_leaves_at_once_is_not_held_for_a_cold_start(clock: FakeClock) -> None:
    from forge.ratelimit import request_leaving

    counter = RequestCounter(requests_per_minute=60, clock=clock, sleep=clock.sleep)
    await counter.acquire()
    await request_leaving()  # left at its grant: the guessed cold-start hold gives way to the fact
    assert await counter.wait_time() == pytest.approx(1 + DEFAULT_MARGIN)


async def test_the_margin_grows_to_the_lateness_the_loop_shows(clock: FakeClock) -> None:
    late = [0.08]

    async def late_sleep(seconds: float) -> None:  # an event loop busy elsewhere: wakes late
        await clock.sleep(seconds + late[0])

    window = SlidingWindow(2, clock=clock, sleep=late_sleep)
    await window.acquire(1)
    await window.acquire(1)  # paced: the waker sleeps and wakes 80 ms late
    assert window.span == pytest.approx(1 + 0.08)
    late[0] = 0.0
    clock.advance(2.5)  # more than a window later, the loop is on time again
    await window.acquire(1)
    await window.acquire(1)
    assert window.span == pytest.approx(1 + DEFAULT_MARGIN)
