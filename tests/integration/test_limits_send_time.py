"""The limiter counts a call from when its request left (headers written), not from when
it was granted: a request held on the client between the two (a busy event loop, a lazily
built client, a new connection) reaches the server later than its grant, and the server
counts arrivals. Checked against the raw strict server (tests/strict_limits.py)."""

from __future__ import annotations

import asyncio
import os
import time
import uuid

import pytest

import forge
from forge.ratelimit import COLD_START, DEFAULT_MARGIN, RedisWindow, SlidingWindow
from tests.hostile import BASE_PATHS, PROVIDERS, HostileServer, Reply, provider_config
from tests.strict_limits import StrictLimitServer

HELD = 0.3  # longer than the cold-start hold: only the moment of sending explains the count

REDIS_URL = os.environ.get("FORGE_TEST_REDIS_URL")


@pytest.mark.parametrize("backend", ["memory", "redis"])
async def test_a_request_held_after_its_grant_counts_from_when_it_left(backend: str) -> None:
    if backend == "redis" and not REDIS_URL:
        pytest.skip("no Redis: run the suite with `bash scripts/test`, which starts one")
    limits: dict[str, object] = {"requests_per_minute": 60}  # one a second
    if backend == "redis":
        limits.update(backend="redis", redis_url=REDIS_URL, budget=f"t{uuid.uuid4().hex[:12]}")
    async with StrictLimitServer(requests_per_minute=60) as srv:
        cfg = provider_config("openai", srv.url("/v1"), rate_limit=limits)
        async with forge.Registry(config=cfg) as reg:
            llm = reg.get_llm("openai:gpt-4o-mini")
            complete = llm.provider.complete

            async def held(request: object) -> forge.Response:
                await asyncio.sleep(HELD)  # granted, then held on the client before it leaves
                return await complete(request)  # type: ignore[arg-type]

            llm.provider.complete = held  # type: ignore[method-assign]
            granted = time.monotonic()
            await llm.invoke("hi", max_tokens=4)
            limiter = reg.limiter("openai")
            assert limiter is not None
            window = limiter.requests
            assert isinstance(window, (SlidingWindow, RedisWindow))
            wait = await limiter.wait_time()
            elapsed = time.monotonic() - granted
    arrived = srv.arrivals[0][0]
    assert arrived - granted >= HELD
    # Counted from the grant (plus the cold hold) the next request could go at
    # granted + COLD_START + span; counted from when it left, not before it arrived + span.
    assert wait >= (arrived - granted) + window.span - elapsed - 0.02
    assert wait > COLD_START + 1 + DEFAULT_MARGIN - elapsed + 0.1


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_every_providers_pooled_client_tells_the_limiter_when_a_request_leaves(provider: str) -> None:
    async with HostileServer() as srv:
        srv.push(Reply.http(500, {"error": {"message": "counted, then failed"}}))  # the slot stays taken
        cfg = provider_config(provider, srv.url(BASE_PATHS[provider]), rate_limit={"requests_per_minute": 60})
        async with forge.Registry(config=cfg) as reg:
            llm = reg.get_llm(f"{provider}:some-model")
            complete = llm.provider.complete

            async def held(request: object) -> forge.Response:
                await asyncio.sleep(HELD)
                return await complete(request)  # type: ignore[arg-type]

            llm.provider.complete = held  # type: ignore[method-assign]
            granted = time.monotonic()
            with pytest.raises(forge.ProviderError):
                await llm.invoke("hi", max_tokens=4)
            limiter = reg.limiter(provider)
            assert limiter is not None and isinstance(limiter.requests, SlidingWindow)
            wait = await limiter.wait_time()
            elapsed = time.monotonic() - granted
    # From the grant it would be free at granted + COLD_START + span; it left HELD later.
    assert wait > COLD_START + limiter.requests.span - elapsed + (HELD - COLD_START) / 2
