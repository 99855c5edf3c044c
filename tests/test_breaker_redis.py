"""Circuit breaker state shared through Redis: across clients and across real processes."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator

import pytest

from forge.breaker import CircuitBreakers, RedisBreakerStore
from forge.config import BreakerConfig
from forge.testing import Emulator, Fault

URL = os.environ.get("FORGE_TEST_REDIS_URL")
if not URL:
    if os.environ.get("CI"):
        raise RuntimeError("FORGE_TEST_REDIS_URL is not set in CI: scripts/services must start Redis.")
    pytest.skip("no Redis: run the suite with `bash scripts/test`, which starts one", allow_module_level=True)


@pytest.fixture
async def client() -> AsyncIterator[object]:
    import redis.asyncio as redis_asyncio

    c = redis_asyncio.Redis.from_url(URL)
    yield c
    await c.aclose()


async def test_two_registries_share_one_breaker_through_redis(client: object) -> None:
    config = BreakerConfig(failures=2, cooldown=30, backend="redis")
    key = f"openai|http://test-{uuid.uuid4()}|gpt-4o-mini"
    a = CircuitBreakers(config, RedisBreakerStore(client)).get(key)
    b = CircuitBreakers(config, RedisBreakerStore(client)).get(key)
    await a.failure()
    await b.failure()  # the second consecutive failure, seen through another store
    assert b.state == "open"
    assert await a.admit() == "reject"
    assert 29 < a.retry_in <= 30  # timed by Redis's clock


async def test_only_one_process_gets_the_probe(client: object) -> None:
    config = BreakerConfig(failures=1, cooldown=30, backend="redis")
    key = f"openai|http://test-{uuid.uuid4()}|gpt-4o-mini"
    now = [1000.0]
    stores = [RedisBreakerStore(client, clock=lambda: now[0]) for _ in range(3)]
    breakers = [CircuitBreakers(config, s).get(key) for s in stores]
    await breakers[0].failure()
    now[0] += 30
    admissions = await asyncio.gather(*(b.admit() for b in breakers))
    assert sorted(admissions) == ["probe", "reject", "reject"]


_CHILD = """
import asyncio, json, sys
import forge

async def main() -> None:
    cfg = json.loads(sys.argv[1])
    async with forge.Registry(config=cfg) as reg:
        out = []
        for _ in range(int(sys.argv[2])):
            r = await reg.invoke("openai:gpt-4o-mini", "hi", fallbacks=["anthropic:claude-haiku-4-5"])
            out.append([r.provider, [a.skipped for a in r.fallback_attempts]])
    print(json.dumps(out))

asyncio.run(main())
"""


async def _child(cfg: dict[str, object], calls: int) -> list[list[object]]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _CHILD, json.dumps(cfg), str(calls),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, err.decode()
    result: list[list[object]] = json.loads(out.decode().strip().splitlines()[-1])
    return result


async def test_a_breaker_opened_in_one_process_keeps_another_away_from_the_primary(client: object) -> None:
    async with Emulator(chunk_count=2) as emu:
        emu.script(Fault.server_error(503), provider="openai", times=None)
        cfg: dict[str, object] = dict(emu.config())
        providers = cfg["providers"]
        assert isinstance(providers, dict)
        providers["openai"] = {**providers["openai"], "retry": {"max_attempts": 1}}
        # No state left by an earlier run on the same port.
        await client.delete(f"forge:breaker:openai|{emu.base_urls['openai']}|gpt-4o-mini")  # type: ignore[attr-defined]
        cfg["breaker"] = {"failures": 1, "cooldown": 60, "backend": "redis", "redis_url": URL}
        first = await _child(cfg, 1)
        second = await _child(cfg, 3)
        primary_requests = sum(1 for r in emu.requests if r.provider == "openai")
    assert first == [["anthropic", [None]]]  # the primary failed and opened the shared breaker
    assert second == [["anthropic", ["breaker_open"]]] * 3
    assert primary_requests == 1
