"""Retry and rate limits end to end: forge through the real vendor clients against the emulator.

The emulator enforces the same limits server-side, the way the providers do,
so a 429 here means forge's limiter let through more than the provider would.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import time
from pathlib import Path

import pytest

import forge
import forge.ratelimit
from forge.testing import Emulator, Fault
from tests._services import no_redis_reason

MODELS = {
    "openai": "openai:gpt-4o-mini",
    "anthropic": "anthropic:claude-haiku-4-5",
    "google": "google:gemini-2.5-flash",
    "ollama": "ollama:llama3.2",
}


def _config(emu: Emulator, provider: str, **section: object) -> dict[str, object]:
    cfg = emu.config()
    providers = cfg["providers"]
    assert isinstance(providers, dict)
    providers[provider] = {**providers[provider], **section}
    return cfg


async def test_300_requests_from_50_tasks_see_no_429_and_use_the_whole_limit() -> None:
    rpm, burst = 3000.0, 1.0  # 50/s, bucket of 50
    async with Emulator(chunk_count=2) as emu:
        emu.set_limits("openai", requests_per_minute=rpm, tokens_per_minute=600_000, burst_seconds=burst)
        cfg = _config(
            emu,
            "openai",
            retry={"max_attempts": 1},
            rate_limit={"requests_per_minute": rpm, "tokens_per_minute": 600_000, "burst_seconds": burst},
        )
        async with forge.Registry(config=cfg) as reg:
            llm = reg.get_llm(MODELS["openai"])
            queue = list(range(300))

            async def worker() -> None:
                while queue:
                    i = queue.pop()
                    await llm.invoke(f"request {i}", max_tokens=16)

            start = time.monotonic()
            await asyncio.gather(*(worker() for _ in range(50)))
            elapsed = time.monotonic() - start
        statuses = [r.status for r in emu.requests]
    assert statuses.count(429) == 0
    assert len(statuses) == 300
    allowed = 300 / (rpm / 60)  # 300 requests at 50 per second
    assert elapsed <= allowed * 1.10, f"took {elapsed:.2f}s, the limit allows {allowed:.2f}s"


def _transient(provider: str, rng: random.Random) -> Fault:
    kind = rng.choice(["429", "500", "503", "overloaded", "drop"])
    if kind == "429":
        return Fault.rate_limit(retry_after=None if provider == "google" else 0.01)
    if kind == "500":
        return Fault.server_error(500)
    if kind == "503":
        return Fault.server_error(503)
    if kind == "overloaded":
        return Fault.overloaded()
    return Fault.drop_after(0)


@pytest.mark.parametrize("provider", list(MODELS))
async def test_30_percent_transient_faults_never_reach_the_caller(provider: str) -> None:
    rng = random.Random(42)
    async with Emulator(chunk_count=3) as emu:
        for _ in range(200):
            if rng.random() < 0.3:
                emu.script(_transient(provider, rng), provider=provider, times=1)
            else:
                emu.script(forge.testing.Reply(), provider=provider, times=1)
        retries: list[forge.RetryEvent] = []
        waits: list[float] = []

        async def no_wait(seconds: float) -> None:  # the schedule is recorded, not slept
            waits.append(seconds)

        cfg = _config(emu, provider, retry={"max_attempts": 6, "initial_wait": 0.05, "max_wait": 5})
        async with forge.Registry(config=cfg, on_retry=retries.append, sleep=no_wait) as reg:
            llm = reg.get_llm(MODELS[provider])
            replies = await asyncio.gather(*(llm.invoke(f"hello {i}", max_tokens=20) for i in range(40)))
            streamed = [await llm.stream(f"stream {i}", max_tokens=20).collect() for i in range(10)]
    assert all(r.text for r in replies + streamed)
    assert retries, "the script injected faults, so some calls must have been retried"
    assert sum(r.attempts - 1 for r in replies + streamed) == len(retries) == len(waits)


async def test_non_retryable_error_is_not_retried() -> None:
    async with Emulator() as emu:
        emu.script(Fault.auth(), provider="openai", times=None)
        async with forge.Registry(config=_config(emu, "openai", retry={"max_attempts": 5})) as reg:
            with pytest.raises(forge.AuthenticationError):
                await reg.invoke(MODELS["openai"], "hi")
        assert len(emu.requests) == 1


async def test_retry_after_is_honoured_before_the_next_attempt() -> None:
    async with Emulator() as emu:
        emu.script(Fault.rate_limit(retry_after=0.3), provider="anthropic", times=1)
        sleeps: list[float] = []

        async def record_sleep(seconds: float) -> None:
            sleeps.append(seconds)

        cfg = _config(emu, "anthropic", retry={"max_attempts": 3, "initial_wait": 0.01})
        async with forge.Registry(config=cfg, sleep=record_sleep) as reg:
            reply = await reg.invoke(MODELS["anthropic"], "hi")
    assert reply.attempts == 2
    assert sleeps == [pytest.approx(0.3)]


async def test_exhaustion_lists_every_attempt() -> None:
    async with Emulator() as emu:
        emu.script(Fault.server_error(500), provider="ollama", times=None)
        cfg = _config(emu, "ollama", retry={"max_attempts": 3, "initial_wait": 0.001, "max_wait": 0.01})
        async with forge.Registry(config=cfg) as reg:
            with pytest.raises(forge.ServerError) as info:
                await reg.invoke(MODELS["ollama"], "hi")
    assert [type(a.error) for a in info.value.attempts] == [forge.ServerError] * 3
    assert info.value.attempt_count == 3


async def test_stream_is_retried_before_its_first_chunk_only() -> None:
    async with Emulator(chunk_count=6) as emu:
        emu.script(Fault.server_error(503), provider="openai", times=1)
        emu.script(Fault.drop_after(2), provider="openai", times=1)
        cfg = _config(emu, "openai", retry={"max_attempts": 3, "initial_wait": 0.001})
        async with forge.Registry(config=cfg) as reg:
            stream = reg.stream(MODELS["openai"], "hi")
            with pytest.raises(forge.StreamInterrupted) as info:
                await stream.collect()
    assert info.value.partial_text
    assert [r.status for r in emu.requests] == [503, 200]


WORKER = """
import asyncio, json, sys
import forge
import forge.ratelimit

async def main() -> None:
    cfg = json.loads(sys.argv[1])
    failures = 0
    async with forge.Registry(config=cfg) as reg:
        llm = reg.get_llm("openai:gpt-4o-mini")
        async def one(i: int) -> None:
            nonlocal failures
            try:
                await llm.invoke(f"worker request {i}", max_tokens=8)
            except forge.ForgeError as exc:
                failures += 1
                print("error:", exc, file=sys.stderr)
        await asyncio.gather(*(one(i) for i in range(int(sys.argv[2]))))
    print(failures)

asyncio.run(main())
"""


async def test_four_processes_share_one_redis_budget(tmp_path: Path) -> None:
    url = os.environ.get("FORGE_TEST_REDIS_URL")
    if not url:
        if os.environ.get("CI"):
            raise RuntimeError("FORGE_TEST_REDIS_URL is not set in CI: scripts/services must start Redis.")
        pytest.skip(no_redis_reason())
    import json

    import redis.asyncio as redis_asyncio

    client = redis_asyncio.Redis.from_url(url)
    for key in await client.keys("forge:ratelimit:openai:*"):
        await client.delete(key)
    await client.aclose()
    rpm = 1200.0  # 20/s, bucket of 20: one process alone would take it all
    async with Emulator(chunk_count=2) as emu:
        emu.set_limits("openai", requests_per_minute=rpm)
        cfg = _config(
            emu, "openai", retry={"max_attempts": 1},
            rate_limit={"requests_per_minute": rpm, "backend": "redis", "redis_url": url},
        )
        script = tmp_path / "worker.py"
        script.write_text(WORKER)
        procs = [
            await asyncio.create_subprocess_exec(
                sys.executable, str(script), json.dumps(cfg), "15",
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )
            for _ in range(4)
        ]
        outputs = [await p.communicate() for p in procs]
        statuses = [r.status for r in emu.requests]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], [o[1].decode()[-500:] for o in outputs]
    assert [int(o[0].decode().strip()) for o in outputs] == [0, 0, 0, 0]
    assert len(statuses) == 60
    assert statuses.count(429) == 0


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_success_headers_tighten_the_limiter(provider: str) -> None:
    async with Emulator() as emu:
        emu.set_limits(provider, requests_per_minute=600)  # the server allows 10 per second
        cfg = _config(emu, provider, rate_limit={"requests_per_minute": 6000})  # we were told 100
        async with forge.Registry(config=cfg) as reg:
            await reg.invoke(MODELS[provider], "hi")
            limiter = reg.limiter(provider)
            assert limiter is not None
            assert isinstance(limiter.requests, (forge.ratelimit.TokenBucket, forge.ratelimit.SlidingWindow))
            assert limiter.requests.level <= 9.5  # what the server said remains, not our 49
