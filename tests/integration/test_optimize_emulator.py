"""Optimizations end to end: forge through the real vendor clients against the emulator, in numbers.

The headline check (issue #8): ten calls sharing a 5,000-token system prompt
cost at least 70% less input on Anthropic and Gemini with optimizations on
than off, from the usage the providers report and the price table.
"""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import pytest

import forge
from forge import PollSchedule, SQLiteJobStore
from forge.optimize.google import GoogleOptimizer
from forge.pricing import cache_storage_usd, cost_usd, price_for
from forge.testing import Emulator
from forge.types import Message, Response, Tool, Usage
from tests.conftest import FakeClock

SYSTEM = ("Support policy. Refunds are accepted within 30 days of purchase with a receipt; "
          "store credit is offered after that. Escalate billing disputes to tier two. ") * 129
QUESTIONS = [f"Customer {i}: can I return the blender I bought {i + 3} days ago?" for i in range(10)]


def input_usd(provider: str, model: str, usage: Usage) -> float:
    cost = cost_usd(provider, model, dataclasses.replace(usage, output_tokens=0))
    assert cost is not None
    return cost


async def ten_calls(provider: str, model: str, *, optimize: bool, stream: bool = False
                    ) -> tuple[list[Response], dict[str, int]]:
    async with Emulator(chunk_count=2) as emu, forge.Registry(emu.config(),
                                                              enable_optimizations=optimize) as reg:
        llm = reg.get_llm(f"{provider}:{model}")
        replies = []
        for question in QUESTIONS:
            if stream:
                replies.append(await llm.stream(question, system=SYSTEM, max_tokens=64).collect())
            else:
                replies.append(await llm.invoke(question, system=SYSTEM, max_tokens=64))
        counters = dict(llm.optimizer.stats.counters) if llm.optimizer is not None else {}
    return replies, counters


def test_the_system_prompt_is_about_5000_tokens() -> None:
    assert 4900 <= len(SYSTEM) // 4 <= 5100


@pytest.mark.parametrize("stream", [False, True], ids=["invoke", "stream"])
async def test_anthropic_ten_calls_cost_at_least_70_percent_less_input(stream: bool) -> None:
    model = "claude-sonnet-4-6"
    off, _ = await ten_calls("anthropic", model, optimize=False, stream=stream)
    on, _ = await ten_calls("anthropic", model, optimize=True, stream=stream)
    assert all(r.usage.cached_input_tokens == r.usage.cache_write_tokens == 0 for r in off)
    assert on[0].usage.cache_write_tokens > 4900 and on[0].usage.cached_input_tokens == 0
    assert all(r.usage.cached_input_tokens == on[0].usage.cache_write_tokens for r in on[1:])
    cost_off = sum(input_usd("anthropic", model, r.usage) for r in off)
    cost_on = sum(input_usd("anthropic", model, r.usage) for r in on)
    assert 1 - cost_on / cost_off >= 0.70, (cost_off, cost_on)


@pytest.mark.parametrize("stream", [False, True], ids=["invoke", "stream"])
async def test_gemini_ten_calls_cost_at_least_70_percent_less_input(stream: bool) -> None:
    model = "gemini-2.5-flash"
    off, _ = await ten_calls("google", model, optimize=False, stream=stream)
    on, counters = await ten_calls("google", model, optimize=True, stream=stream)
    assert all(r.usage.cached_input_tokens == 0 for r in off)
    assert counters["cache_created"] == 1
    written = counters["cache_write_tokens"]
    assert all(r.usage.cached_input_tokens == written for r in on)
    price = price_for("google", model)
    assert price is not None
    cost_off = sum(input_usd("google", model, r.usage) for r in off)
    # Creating the cache bills its tokens once at the input rate, plus storage for its TTL.
    creation = written * price.input / 1_000_000
    storage = cache_storage_usd("google", model, written, 300) or 0.0
    cost_on = sum(input_usd("google", model, r.usage) for r in on) + creation + storage
    assert 1 - cost_on / cost_off >= 0.70, (cost_off, cost_on)


async def test_anthropic_wire_request_carries_the_breakpoint() -> None:
    async with Emulator() as emu, forge.Registry(emu.config(), enable_optimizations=True) as reg:
        await reg.invoke("anthropic:claude-sonnet-4-6", "Hi", system=SYSTEM)
        body = emu.requests[-1].body
    assert body is not None
    assert body["system"] == [{"type": "text", "text": SYSTEM, "cache_control": {"type": "ephemeral"}}]


async def test_gemini_wire_request_names_the_cache_and_drops_the_system_instruction() -> None:
    async with Emulator() as emu, forge.Registry(emu.config(), enable_optimizations=True) as reg:
        await reg.invoke("google:gemini-2.5-flash", "Hi", system=SYSTEM)
        create, generate = emu.requests[-2:]
        names_while_open = [c["name"] for c in (await _list_caches(emu))]
    assert create.path == "/v1/cachedContents" and create.body is not None
    assert create.body["systemInstruction"]["parts"][0]["text"] == SYSTEM
    assert generate.body is not None and "systemInstruction" not in generate.body
    assert generate.body["cachedContent"] == names_while_open[0]
    assert emu.requests[-1].method == "DELETE"  # the Registry deleted its cache on close


async def _list_caches(emu: Emulator) -> list[dict[str, object]]:
    import httpx2

    async with httpx2.AsyncClient() as http:
        r = await http.get(emu.url + "/v1/cachedContents", headers={"x-goog-api-key": "k"})
    data = r.json()
    return list(data.get("cachedContents", []))


async def test_gemini_recreates_an_expired_cache_and_survives_a_vanished_one() -> None:
    clock = FakeClock()
    async with Emulator(clock=clock) as emu, forge.Registry(
        emu.config(), enable_optimizations=True, clock=clock
    ) as reg:
        llm = reg.get_llm("google:gemini-2.5-flash")
        assert isinstance(llm.optimizer, GoogleOptimizer)
        await llm.invoke("one", system=SYSTEM)
        clock.advance(290)  # within 30 s of the 300 s TTL: recreated before it runs out
        second = await llm.invoke("two", system=SYSTEM)
        assert llm.optimizer.stats.counters["cache_created"] == 2 and second.usage.cached_input_tokens > 0
        emu.reset()  # the server forgets every cache
        third = await llm.invoke("three", system=SYSTEM)
        assert third.text and third.usage.cached_input_tokens == 0  # re-sent plain after the 403
        assert llm.optimizer.stats.fallbacks == 1
        fourth = await llm.invoke("four", system=SYSTEM)
        assert fourth.usage.cached_input_tokens > 0 and llm.optimizer.stats.counters["cache_created"] == 3


async def test_openai_seed_key_and_json_mode_on_the_wire() -> None:
    async with Emulator() as emu, forge.Registry(emu.config(), enable_optimizations=True) as reg:
        await reg.invoke("openai:gpt-4o-mini", "Return a JSON object with a 'status' field", system=SYSTEM)
        body = emu.requests[-1].body
    assert body is not None
    assert body["seed"] == 42
    assert body["response_format"] == {"type": "json_object"}
    assert isinstance(body["prompt_cache_key"], str) and body["prompt_cache_key"].startswith("forge-")


async def test_openai_stable_tool_order_turns_misses_into_cache_hits() -> None:
    tools = [Tool(f"tool_{i}", f"Tool number {i}", {"type": "object", "properties": {}}) for i in range(6)]
    rng = random.Random(7)

    async def cached_tokens(optimize: bool) -> int:
        async with Emulator() as emu, forge.Registry(emu.config(), enable_optimizations=optimize) as reg:
            total = 0
            for question in QUESTIONS:
                shuffled = tools[:]
                rng.shuffle(shuffled)  # tools built from a dict or a plugin registry: order varies
                r = await reg.invoke("openai:gpt-4o-mini", question, system=SYSTEM, tools=shuffled)
                total += r.usage.cached_input_tokens
            return total

    off, on = await cached_tokens(False), await cached_tokens(True)
    assert on >= 9 * 4900 and off < on / 3, (off, on)


async def test_ollama_keeps_the_model_loaded_and_sizes_the_context() -> None:
    clock = FakeClock()
    long = "Log line with some details. " * 1000  # ~7,000 tokens, longer than Ollama's 4,096 default

    async def run(optimize: bool) -> tuple[list[int], int]:
        async with Emulator(clock=clock) as emu, forge.Registry(emu.config(),
                                                                enable_optimizations=optimize) as reg:
            loads = []
            for _ in range(3):
                r = await reg.invoke("ollama:llama3", "summarize the log", max_tokens=100)
                assert isinstance(r.raw, dict)
                loads.append(r.raw["load_duration"])
                clock.advance(360)  # six minutes between calls: past Ollama's default keep_alive
            big = await reg.invoke("ollama:llama3", long, max_tokens=100)
            return loads, big.usage.input_tokens

    loads_off, seen_off = await run(False)
    loads_on, seen_on = await run(True)
    assert loads_off == [2_500_000_000] * 3  # a cold load every time
    assert loads_on == [2_500_000_000, 1_000_000, 1_000_000]
    assert seen_off == 4096 and seen_on == -(-len(long) // 4)  # truncated vs read whole


async def test_all_ollama_models_share_one_connection() -> None:
    async with Emulator() as emu, forge.Registry(emu.config(), enable_optimizations=True) as reg:
        for model in ("llama3", "qwen3", "llama3", "gemma3"):
            await reg.invoke(f"ollama:{model}", "hi")
        assert emu.connections_accepted == 1


async def test_response_cache_answers_without_calling_the_provider() -> None:
    async with Emulator() as emu, forge.Registry(emu.config()) as reg:
        llm = reg.get_llm("anthropic:claude-sonnet-4-6", enable_cache=True, cache_ttl=60)
        first = await llm.invoke("Capital of France?")
        again = await llm.invoke("Capital of France?")
        streamed = await llm.stream("Capital of France?").collect()
        assert len(emu.requests) == 1
    assert not first.cached and again.cached and streamed.cached
    assert again.text == streamed.text == first.text and again.cost_usd == 0.0
    assert first.cost_usd is not None and first.cost_usd > 0
    assert reg.metrics.stats("anthropic", "claude-sonnet-4-6").response_cache_hits == 2


async def test_optimizations_work_with_a_multi_turn_conversation() -> None:
    doc = Message("user", SYSTEM, cache_breakpoint=True)
    async with Emulator() as emu, forge.Registry(emu.config(), enable_optimizations=True) as reg:
        llm = reg.get_llm("anthropic:claude-sonnet-4-6")
        first = await llm.invoke([doc, Message("user", "What is the refund window?")])
        second = await llm.invoke([doc, Message("user", "Who handles billing disputes?")])
    assert first.usage.cache_write_tokens > 4900 and second.usage.cached_input_tokens == first.usage.cache_write_tokens


async def test_batch_api_requests_are_optimized_too(tmp_path: Path) -> None:
    async with Emulator() as emu, forge.Registry(emu.config(), enable_optimizations=True) as reg:
        reg.job_store = SQLiteJobStore(tmp_path / "jobs.sqlite3")
        await reg.batch_invoke("anthropic:claude-sonnet-4-6", ["q1", "q2"], system=SYSTEM, mode="batch_api",
                               poll=PollSchedule(0.01, 2.0, 0.05))
        create = next(r for r in emu.requests if r.path == "/v1/messages/batches" and r.method == "POST")
        await reg.job_store.aclose()
    assert create.body is not None
    params = [item["params"] for item in create.body["requests"]]
    assert all(p["system"][0]["cache_control"] == {"type": "ephemeral"} for p in params)
