"""Stream behaviour for all four providers through the real vendor clients and the emulator."""

from __future__ import annotations

import asyncio
import gc
import warnings
from pathlib import Path

import pytest

import forge
from forge.testing import Emulator, Fault, Reply

MODELS = {
    "openai": "openai:gpt-4o-mini",
    "anthropic": "anthropic:claude-haiku-4-5",
    "google": "google:gemini-2.5-flash",
    "ollama": "ollama:llama3.2",
}
PROVIDERS = list(MODELS)


def _no_retry(emu: Emulator) -> dict[str, object]:
    cfg = emu.config()
    for section in cfg["providers"].values():  # type: ignore[union-attr]
        section["retry"] = {"max_attempts": 1}
    return cfg


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_reassembly_equals_concatenation_with_usage(provider: str) -> None:
    async with Emulator(chunk_count=20) as emu, forge.Registry(config=emu.config()) as reg:
        stream = reg.stream(MODELS[provider], "tell me something", max_tokens=500)
        pieces = [p async for p in stream]
    assert len(pieces) >= 10
    r = stream.response
    assert r.text == "".join(pieces)
    assert r.finish_reason == "stop"
    assert r.usage.input_tokens > 0 and r.usage.output_tokens > 0
    assert r.time_to_first_token_s is not None and r.latency_s is not None
    assert r.chunks == len(pieces)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_max_tokens_gives_length(provider: str) -> None:
    async with Emulator(chunk_count=10, chunk_size=40) as emu, forge.Registry(config=emu.config()) as reg:
        response = await reg.stream(MODELS[provider], "long please", max_tokens=15).collect()
    assert response.finish_reason == "length"
    assert response.usage.output_tokens == 15


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_buffering_joins_chunks(provider: str) -> None:
    async with Emulator(chunk_count=30, chunk_size=5) as emu, forge.Registry(config=emu.config()) as reg:
        stream = reg.stream(MODELS[provider], "hi", buffer_size=40)
        pieces = [p async for p in stream]
    assert all(len(p) >= 40 for p in pieces[:-1])
    assert "".join(pieces) == stream.response.text


async def test_flush_interval_releases_text_between_slow_chunks() -> None:
    async with Emulator(chunk_count=4) as emu, forge.Registry(config=emu.config()) as reg:
        emu.script(Fault.chunk_delay(0.15), provider="openai")
        stream = reg.stream(MODELS["openai"], "hi", buffer_size=10_000, flush_interval=0.03)
        pieces = [p async for p in stream]
    assert len(pieces) >= 3  # not held back until the end despite the huge buffer


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_interruption_after_n_chunks_keeps_partial_text(provider: str) -> None:
    async with Emulator(chunk_count=10) as emu, forge.Registry(config=_no_retry(emu)) as reg:
        emu.script(Fault.drop_after(4), provider=provider)
        stream = reg.stream(MODELS[provider], "hi")
        received: list[str] = []
        with pytest.raises(forge.StreamInterrupted) as info:
            async for piece in stream:
                received.append(piece)
    assert info.value.partial_text == "".join(received)
    assert len(received) == 4
    assert isinstance(info.value.error, forge.ProviderConnectionError)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_in_band_error_mid_stream_is_an_interruption(provider: str) -> None:
    async with Emulator(chunk_count=10) as emu, forge.Registry(config=_no_retry(emu)) as reg:
        emu.script(Fault.stream_error(after=3), provider=provider)
        with pytest.raises(forge.StreamInterrupted) as info:
            await reg.stream(MODELS[provider], "hi").collect()
    assert info.value.partial_text
    assert isinstance(info.value.error, forge.ProviderError)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_first_token_timeout(provider: str) -> None:
    async with Emulator() as emu, forge.Registry(config=_no_retry(emu)) as reg:
        emu.script(Fault.slow_first_byte(1.0), provider=provider)
        with pytest.raises(forge.StreamTimeout) as info:
            await reg.stream(MODELS[provider], "hi", first_token_timeout=0.1).collect()
    assert info.value.timeout_kind == "first_token"


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_idle_timeout_keeps_partial(provider: str) -> None:
    async with Emulator(chunk_count=5) as emu, forge.Registry(config=_no_retry(emu)) as reg:
        emu.script(Fault.chunk_delay(0.5), provider=provider)
        with pytest.raises(forge.StreamTimeout) as info:
            await reg.stream(MODELS[provider], "hi", idle_timeout=0.1).collect()
    assert info.value.timeout_kind == "idle"
    assert info.value.partial_text


async def test_total_timeout() -> None:
    async with Emulator(chunk_count=50) as emu, forge.Registry(config=_no_retry(emu)) as reg:
        emu.script(Fault.chunk_delay(0.02), provider="anthropic")
        with pytest.raises(forge.StreamTimeout) as info:
            await reg.stream(MODELS["anthropic"], "hi", timeout=0.2, idle_timeout=5).collect()
    assert info.value.timeout_kind == "total"


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_callbacks_sync_and_async(provider: str) -> None:
    seen: list[str] = []
    progress: list[forge.StreamProgress] = []

    async def on_progress(p: forge.StreamProgress) -> None:
        progress.append(p)

    async with Emulator(chunk_count=8) as emu, forge.Registry(config=emu.config()) as reg:
        response = await reg.stream(
            MODELS[provider], "hi", on_chunk=seen.append, on_progress=on_progress
        ).collect()
    assert "".join(seen) == response.text
    assert progress[-1].chars == len(response.text)
    assert progress[-1].estimated_tokens > 0


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_raising_callback_stops_and_closes_connection(provider: str) -> None:
    async with Emulator(chunk_count=200) as emu, forge.Registry(config=emu.config()) as reg:
        emu.script(Fault.chunk_delay(0.005), provider=provider)

        async def boom(text: str) -> None:
            raise RuntimeError("callback says stop")

        with pytest.raises(RuntimeError, match="callback says stop"):
            await reg.stream_with_callback(MODELS[provider], "hi", boom)
        await emu.wait_connections(0, timeout=2)
    assert emu.requests[-1].outcome == "disconnected"


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_break_closes_the_http_response_promptly(provider: str) -> None:
    async with Emulator(chunk_count=500) as emu, forge.Registry(config=emu.config()) as reg:
        emu.script(Fault.chunk_delay(0.005), provider=provider)
        stream = reg.stream(MODELS[provider], "hi")
        async for _ in stream:
            break
        await emu.wait_connections(0, timeout=2)
    assert emu.requests[-1].outcome == "disconnected"
    assert emu.requests[-1].chunks_sent < 500


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_cancelling_the_task_closes_the_http_response(provider: str) -> None:
    async with Emulator(chunk_count=500) as emu, forge.Registry(config=emu.config()) as reg:
        emu.script(Fault.chunk_delay(0.005), provider=provider)
        started = asyncio.Event()

        async def consume() -> None:
            async for _ in reg.stream(MODELS[provider], "hi"):
                started.set()

        task = asyncio.create_task(consume())
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await emu.wait_connections(0, timeout=2)
    assert emu.requests[-1].outcome == "disconnected"


async def test_no_unclosed_or_destroyed_task_warnings() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        async with Emulator(chunk_count=100) as emu, forge.Registry(config=emu.config()) as reg:
            for provider in PROVIDERS:
                async for _ in reg.stream(MODELS[provider], "hi"):
                    break
            await asyncio.sleep(0.05)
        gc.collect()
    messages = [str(w.message) for w in caught]
    assert not [m for m in messages if "Unclosed" in m or "destroyed" in m or "never awaited" in m]


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_stream_to_file_writes_atomically(provider: str, tmp_path: Path) -> None:
    target = tmp_path / "reply.txt"
    async with Emulator(chunk_count=50, chunk_size=20) as emu, forge.Registry(config=emu.config()) as reg:
        response = await reg.stream_to_file(MODELS[provider], "hi", target)
    assert len(target.read_text()) == 50 * 20
    assert response.usage.output_tokens > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reply.txt"]


async def test_stream_to_file_keeps_partial_on_drop(tmp_path: Path) -> None:
    target = tmp_path / "reply.txt"
    async with Emulator(chunk_count=50, chunk_size=20) as emu, forge.Registry(config=_no_retry(emu)) as reg:
        emu.script(Fault.drop_after(10), provider="openai")
        with pytest.raises(forge.StreamInterrupted, match="reply.txt.partial"):
            await reg.stream_to_file(MODELS["openai"], "hi", target)
    assert not target.exists()
    assert len((tmp_path / "reply.txt.partial").read_text()) == 10 * 20


async def test_module_level_forms() -> None:
    async with Emulator(chunk_count=4) as emu, forge.Registry(config=emu.config()) as reg:
        llm = reg.get_llm(MODELS["ollama"])
        text = "".join([t async for t in forge.stream(llm, "hi")])
        got: list[str] = []
        response = await forge.stream_with_callback(llm, "hi", got.append)
    assert text and "".join(got) == response.text


async def test_scripted_reply_text_round_trips() -> None:
    async with Emulator() as emu, forge.Registry(config=emu.config()) as reg:
        emu.script(Reply(text="exactly this", chunk_count=3), provider="google")
        assert (await reg.stream(MODELS["google"], "hi").collect()).text == "exactly this"
