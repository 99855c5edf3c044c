"""Circuit breaker state shared through Redis: across clients and across real processes."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator

import pytest

import forge
from forge.breaker import CircuitBreakers, RedisBreakerStore
from forge.config import BreakerConfig
from forge.testing import Emulator, Fault

PRIMARY = "openai:gpt-4o-mini"
BACKUP = "anthropic:claude-haiku-4-5"
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


def _tenant(emu: Emulator, api_key: str) -> dict[str, object]:
    cfg: dict[str, object] = dict(emu.config())
    providers = cfg["providers"]
    assert isinstance(providers, dict)
    providers["openai"] = {**providers["openai"], "api_key": api_key, "retry": {"max_attempts": 1, "max_wait": 1}}
    cfg["breaker"] = {"failures": 1, "cooldown": 60, "backend": "redis", "redis_url": URL}
    return cfg


async def _forget(client: object, base_url: str) -> None:
    """No state left by an earlier run on the same port."""
    async for name in client.scan_iter(match=f"forge:breaker:openai|{base_url}*"):  # type: ignore[attr-defined]
        await client.delete(name)  # type: ignore[attr-defined]


async def test_one_tenants_rate_limit_keeps_only_that_tenant_away_but_an_outage_keeps_everyone(
    client: object,
) -> None:
    async with Emulator(chunk_count=2) as emu:
        await _forget(client, emu.base_urls["openai"])
        emu.script(Fault.rate_limit(retry_after=120), provider="openai", times=1,
                   when=lambda rec: rec.headers.get("authorization") == "Bearer sk-tenant-a-0000")
        async with forge.Registry(config=_tenant(emu, "sk-tenant-a-0000")) as a, \
                forge.Registry(config=_tenant(emu, "sk-tenant-b-0000")) as b, \
                forge.Registry(config=_tenant(emu, "sk-tenant-c-0000")) as c:
            limited = await a.invoke(PRIMARY, "hi", fallbacks=[BACKUP])
            again = await a.invoke(PRIMARY, "hi", fallbacks=[BACKUP])
            other = await b.invoke(PRIMARY, "hi", fallbacks=[BACKUP])
            emu.script(Fault.server_error(503), provider="openai", times=1)
            down = await b.invoke(PRIMARY, "hi", fallbacks=[BACKUP])  # an outage: the endpoint's breaker
            before = sum(1 for r in emu.requests if r.provider == "openai")
            third = await c.invoke(PRIMARY, "hi", fallbacks=[BACKUP])
            after = sum(1 for r in emu.requests if r.provider == "openai")
    assert limited.fallback_attempts[0].error == "RateLimitError"
    assert again.fallback_attempts[0].skipped == "breaker_open"  # tenant A's account breaker
    assert other.provider == "openai" and not other.fallback_attempts  # tenant B was not kept away
    assert down.fallback_attempts[0].error == "OverloadedError"
    assert third.fallback_attempts[0].skipped == "breaker_open" and after == before  # nor is tenant C


async def test_refresh_shows_a_breaker_another_process_opened_in_the_snapshot(client: object) -> None:
    async with Emulator(chunk_count=2) as emu:
        await _forget(client, emu.base_urls["openai"])
        emu.script(Fault.server_error(503), provider="openai", times=1)
        async with forge.Registry(config=_tenant(emu, "sk-one-key-0000")) as here, \
                forge.Registry(config=_tenant(emu, "sk-one-key-0000")) as there:
            here.fallback_llm(PRIMARY, [BACKUP])  # this process knows the chain, has not called it
            events: list[dict[str, object]] = []
            here.metrics.subscribe(lambda e: events.append(e.fields) if e.kind == "breaker" else None)
            await there.invoke(PRIMARY, "hi", fallbacks=[BACKUP])
            key = here.breaker_key(here.get_llm(PRIMARY))
            assert key not in here.metrics.snapshot()["breakers"]  # type: ignore[operator]
            states = await here.breakers.refresh()
            snapshot = here.metrics.snapshot()["breakers"]
    assert states[key] == "open"
    assert isinstance(snapshot, dict) and snapshot[key]["state"] == "open" and snapshot[key]["shared"] is True
    assert [(e["old_state"], e["new_state"], e["shared"]) for e in events] == [("closed", "open", True)]
