"""The stream retry window, closing from another task, progress and cost, through the emulator."""

from __future__ import annotations

import asyncio

import pytest

import forge
from forge.pricing import cost_usd
from forge.testing import Emulator, Fault

TARGETS = {
    "openai": ("openai:gpt-4o-mini", {}),
    "openai-responses": ("openai:gpt-4o-mini", {"api": "responses"}),
    "anthropic": ("anthropic:claude-haiku-4-5", {}),
    "google": ("google:gemini-2.5-flash", {}),
    "ollama": ("ollama:llama3.2", {}),
}
NAMES = list(TARGETS)


def _config(emu: Emulator, name: str, max_attempts: int = 1) -> dict[str, object]:
    model, extra = TARGETS[name]
    cfg = emu.config()
    section = cfg["providers"][model.split(":")[0]]  # type: ignore[index]
    section.update(extra)
    section["retry"] = {"max_attempts": max_attempts, "initial_wait": 0.001, "max_wait": 0.01}
    return cfg


@pytest.mark.parametrize("fault", [Fault.stream_error(after=0), Fault.drop_after(0)], ids=["in-band", "drop"])
@pytest.mark.parametrize("name", NAMES)
async def test_fault_right_after_the_first_metadata_is_retried(name: str, fault: Fault) -> None:
    model, _ = TARGETS[name]
    async with Emulator(chunk_count=5) as emu, forge.Registry(config=_config(emu, name, 3)) as reg:
        emu.script(fault, provider=model.split(":")[0], times=2)
        response = await reg.stream(model, "hi").collect()
    assert response.text and response.finish_reason == "stop"
    assert response.attempts == 3


@pytest.mark.parametrize("name", NAMES)
async def test_aclose_from_another_task_stops_the_stream(name: str) -> None:
    model, _ = TARGETS[name]
    async with Emulator(chunk_count=50) as emu, forge.Registry(config=_config(emu, name)) as reg:
        emu.script(Fault.chunk_delay(0.2), provider=model.split(":")[0])
        stream = reg.stream(model, "hi")
        first = asyncio.Event()

        async def produce() -> None:
            async for _ in stream:
                first.set()

        producer = asyncio.create_task(produce())
        async with asyncio.timeout(5):
            await first.wait()
        await stream.aclose()
        async with asyncio.timeout(1):
            await producer
        log = emu.requests
    assert log[-1].chunks_sent < 50


@pytest.mark.parametrize("name", NAMES)
async def test_break_out_of_a_flushed_stream_logs_nothing(name: str) -> None:
    model, _ = TARGETS[name]
    async with Emulator(chunk_count=20) as emu, forge.Registry(config=_config(emu, name)) as reg:
        emu.script(Fault.chunk_delay(0.05), provider=model.split(":")[0])
        async for _ in reg.stream(model, "hi", flush_interval=0.01):
            break
        async with reg.stream(model, "hi") as stream:
            async for _ in stream:
                break


@pytest.mark.parametrize("name", NAMES)
async def test_progress_grows_and_final_usage_corrects_it(name: str) -> None:
    model, _ = TARGETS[name]
    seen: list[forge.StreamProgress] = []
    async with Emulator(chunk_count=12, chunk_size=8) as emu, forge.Registry(config=_config(emu, name)) as reg:
        stream = reg.stream(model, "hi", on_progress=seen.append)
        response = await stream.collect()
    during = [p.estimated_tokens for p in seen[: len(seen) - 1]]
    assert during == sorted(during) and during[-1] > during[0] + 5, during
    assert stream.progress().estimated_tokens == response.usage.output_tokens


@pytest.mark.parametrize("name", NAMES)
async def test_stream_cost_equals_invoke_cost(name: str) -> None:
    model, _ = TARGETS[name]
    async with Emulator(chunk_count=5) as emu, forge.Registry(config=_config(emu, name)) as reg:
        streamed = await reg.stream(model, "hi").collect()
        invoked = await reg.invoke(model, "hi")
    provider = model.split(":")[0]
    assert streamed.cost_usd == pytest.approx(cost_usd(provider, streamed.model, streamed.usage))
    assert invoked.cost_usd is not None and streamed.cost_usd is not None
    if provider != "ollama":
        assert streamed.cost_usd > 0
