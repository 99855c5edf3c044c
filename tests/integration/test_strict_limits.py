"""Zero 429s from a server that enforces limits the strict way providers document
(a raw server in tests/strict_limits.py, not the emulator), and from the emulator's
default (strict) limits too.

The raw server counts arrivals with a tolerance equal to forge's margin (its window is
``1 - DEFAULT_MARGIN`` s, see tests/strict_limits.py for why): forge guarantees when
requests leave, and on a busy test machine the server is sometimes scheduled late.
`python -m benchmarks ratelimit` runs the same load against the strict rule."""

from __future__ import annotations

import asyncio

import forge
from forge.ratelimit import DEFAULT_MARGIN
from forge.testing import Emulator
from tests.hostile import provider_config
from tests.strict_limits import StrictLimitServer


async def _fire(llm: forge.LLM, n: int, tasks: int = 50) -> None:
    queue = list(range(n))

    async def worker() -> None:
        while queue:
            i = queue.pop()
            await llm.invoke(f"request {i:03d}", max_tokens=16)

    await asyncio.gather(*(worker() for _ in range(tasks)))


async def test_200_requests_from_50_tasks_within_a_strict_requests_slice() -> None:
    async with StrictLimitServer(requests_per_minute=3000, tolerance=DEFAULT_MARGIN) as srv:
        cfg = provider_config("openai", srv.url("/v1"), rate_limit={"requests_per_minute": 3000})
        async with forge.Registry(config=cfg) as reg:
            await _fire(reg.get_llm("openai:gpt-4o-mini"), 200)
    assert srv.statuses.count(429) == 0
    assert len(srv.statuses) == 200
    assert srv.busiest_second(srv.window)[0] <= 50


async def test_200_requests_from_50_tasks_within_a_strict_tokens_slice() -> None:
    tpm = 120_000  # 2,000 tokens a second; each request counts 3 + 16 tokens: ~105 requests a second
    async with StrictLimitServer(tokens_per_minute=tpm, tolerance=DEFAULT_MARGIN) as srv:
        cfg = provider_config("openai", srv.url("/v1"), rate_limit={"tokens_per_minute": tpm})
        async with forge.Registry(config=cfg) as reg:
            await _fire(reg.get_llm("openai:gpt-4o-mini"), 200)
    assert srv.statuses.count(429) == 0
    assert len(srv.statuses) == 200
    assert srv.busiest_second(srv.window)[1] <= 2000


async def test_the_emulator_enforces_the_same_strict_slice() -> None:
    async with Emulator(chunk_count=2) as emu:
        emu.set_limits("openai", requests_per_minute=3000)  # the default: strict sliding seconds
        cfg = emu.config()
        providers = cfg["providers"]
        assert isinstance(providers, dict)
        providers["openai"] = {**providers["openai"], "retry": {"max_attempts": 1},
                               "rate_limit": {"requests_per_minute": 3000}}
        async with forge.Registry(config=cfg) as reg:
            await _fire(reg.get_llm("openai:gpt-4o-mini"), 200)
        statuses = [r.status for r in emu.requests]
    assert statuses.count(429) == 0
    assert len(statuses) == 200
