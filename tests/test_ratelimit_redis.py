"""The Redis bucket against a real redis-server (started by scripts/services; never skipped in CI)."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import pytest

from forge.config import RateLimitConfig
from forge.ratelimit import RedisBucket, RedisWindow, counter_from_config
from tests._services import no_redis_reason

URL = os.environ.get("FORGE_TEST_REDIS_URL")
if not URL:
    if os.environ.get("CI"):
        raise RuntimeError("FORGE_TEST_REDIS_URL is not set in CI: scripts/services must start Redis.")
    pytest.skip(no_redis_reason(), allow_module_level=True)


@pytest.fixture
async def client() -> AsyncIterator[object]:
    import redis.asyncio as redis_asyncio

    c = redis_asyncio.Redis.from_url(URL)
    yield c
    await c.aclose()


async def test_two_buckets_on_one_key_share_the_budget(client: object) -> None:
    key = f"forge:test:{uuid.uuid4()}"
    a = RedisBucket(client, key, capacity=5, rate=0.001)
    b = RedisBucket(client, key, capacity=5, rate=0.001)
    assert await a.acquire(3) == 0.0
    assert await b.wait_time(3) > 0  # only 2 left for everyone
    assert await b.wait_time(2) == 0.0


async def test_refund_and_tighten(client: object) -> None:
    key = f"forge:test:{uuid.uuid4()}"
    bucket = RedisBucket(client, key, capacity=10, rate=0.001)
    await bucket.acquire(10)
    await bucket.refund(4)
    assert await bucket.wait_time(4) == 0.0
    await bucket.tighten(1)
    assert await bucket.wait_time(2) > 0


async def test_acquire_sleeps_for_the_deficit(client: object) -> None:
    key = f"forge:test:{uuid.uuid4()}"
    sleeps: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)
        await bucket.refund(seconds * bucket.rate)  # time "passes" for Redis too

    bucket = RedisBucket(client, key, capacity=2, rate=10, sleep=fake_sleep)
    await bucket.acquire(2)
    await bucket.acquire(1)
    assert sleeps and 0.0 < sleeps[0] <= 0.1


async def test_counter_from_config_uses_redis(client: object) -> None:
    cfg = RateLimitConfig(requests_per_minute=60, backend="redis", redis_url=URL)
    counter = counter_from_config(f"test-{uuid.uuid4()}", cfg, redis_client=client)
    assert counter is not None and isinstance(counter.requests, RedisWindow)
    await counter.acquire()
    assert await counter.wait_time() > 0


async def test_redis_window_admits_the_slice_and_no_more(client: object) -> None:
    key = f"forge:test:{uuid.uuid4()}"
    a = RedisWindow(client, key, limit=100, window=60)
    b = RedisWindow(client, key, limit=100, window=60)
    assert await a.acquire(60) == 0.0
    assert await b.wait_time(41) > 50  # only 40 left in the window for everyone
    await a.refund(30, age=10.0)  # taken 10 s ago: nothing that old, so nothing comes back
    assert await b.wait_time(41) > 50
    await a.refund(30, age=0.0)  # what left up to now: 30 of the 60 come back, pacing resets
    assert await b.wait_time(70) == 0.0
    assert await b.wait_time(71) > 50
    await b.tighten(0, reset_in=5.0)  # the server says: nothing left until 5 s from now
    assert 4.0 < await b.wait_time(1) <= 5.0


async def test_redis_window_refund_wakes_a_waiter_of_this_process(client: object) -> None:
    import asyncio

    key = f"forge:test:{uuid.uuid4()}"
    w = RedisWindow(client, key, limit=10, window=30)
    await w.acquire(10)
    waiter = asyncio.ensure_future(w.acquire(5))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    await w.refund(10)
    await asyncio.wait_for(waiter, 2.0)  # not the 30 s window


async def test_redis_window_holds_the_first_takes_after_idle_like_the_in_process_window(client: object) -> None:
    from forge.ratelimit import COLD_START

    key = f"forge:test:{uuid.uuid4()}"
    w = RedisWindow(client, key, limit=2, window=1.0)
    await w.acquire(2)  # the first take after an idle window
    # Counted from COLD_START later, like SlidingWindow: free again after span + COLD_START.
    assert w.span + COLD_START - 0.05 < await w.wait_time(1) <= w.span + COLD_START



async def test_redis_window_reads_entries_an_older_forge_wrote(client: object) -> None:
    # A rolling deploy: entries of the older "seq:amount" form share the log with new ones.
    key = f"forge:test:{uuid.uuid4()}"
    seconds, micros = await client.time()  # type: ignore[attr-defined]
    await client.zadd(f"{key}:log", {"7:5": seconds + micros / 1e6})  # type: ignore[attr-defined]
    await client.hset(key, mapping={"sum": "5", "next": "0", "seq": "7"})  # type: ignore[attr-defined]
    w = RedisWindow(client, key, limit=10, window=60)
    assert await w.wait_time(6) > 50  # the old entry's 5 count
    await w.refund(5, age=0.0)  # and it can be given back
    assert await w.wait_time(10) == 0.0
