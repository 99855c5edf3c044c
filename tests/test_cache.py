"""Response cache: keys, LRU + TTL, serving invoke and stream from it, Redis sharing."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable

import pytest

from forge.cache import MemoryResponseCache, RedisResponseCache, ResponseCache, request_key
from forge.llm import LLM
from forge.metrics import Metrics
from forge.types import CacheHints, Message, Request, Response, ToolCall, Usage
from tests._services import no_redis_reason
from tests.conftest import FakeClock, FakeProvider, text_steps


def reply(text: str = "Paris", finish: str = "stop") -> Response:
    return Response(text=text, provider="fake", model="fake-model", finish_reason=finish,  # type: ignore[arg-type]
                    usage=Usage(10, 2), id="r1")


def req(**kw: object) -> Request:
    return Request(model="m", messages=(Message("user", "Capital of France?"),), **kw)  # type: ignore[arg-type]


def test_key_is_stable_and_covers_every_parameter() -> None:
    assert request_key("openai", req()) == request_key("openai", req())
    assert request_key("openai", req()) != request_key("anthropic", req())
    assert request_key("openai", req()) != request_key("openai", req(temperature=0.5))
    assert request_key("openai", req()) != request_key("openai", req(extra={"top_k": 3}))


def test_key_ignores_prompt_cache_hints() -> None:
    marked = Request(model="m", messages=(Message("user", "Capital of France?", cache_breakpoint=True),),
                     cache=CacheHints(system=True))
    assert request_key("openai", marked) == request_key("openai", req())


async def test_memory_cache_expires_entries(clock: FakeClock) -> None:
    cache = MemoryResponseCache(clock=clock)
    await cache.set("k", reply(), ttl=10)
    assert (await cache.get("k")) == reply()
    clock.advance(10)
    assert await cache.get("k") is None and len(cache) == 0


async def test_memory_cache_evicts_the_least_recently_used(clock: FakeClock) -> None:
    cache = MemoryResponseCache(max_entries=2, clock=clock)
    await cache.set("a", reply("a"), 60)
    await cache.set("b", reply("b"), 60)
    await cache.get("a")
    await cache.set("c", reply("c"), 60)
    assert await cache.get("b") is None
    assert (await cache.get("a")) is not None and (await cache.get("c")) is not None


def test_memory_cache_is_a_response_cache() -> None:
    assert isinstance(MemoryResponseCache(), ResponseCache)


@pytest.fixture
def cached_llm(make_llm: Callable[..., LLM], clock: FakeClock) -> LLM:
    return make_llm(response_cache=MemoryResponseCache(clock=clock), cache_ttl=300, metrics=Metrics(clock))


async def test_identical_invoke_is_served_from_the_cache(fake: FakeProvider, cached_llm: LLM) -> None:
    fake.completes.append(reply())
    first = await cached_llm.invoke("Capital of France?")
    again = await cached_llm.invoke("Capital of France?")
    assert len(fake.requests) == 1
    assert not first.cached and again.cached
    assert again.text == "Paris" and again.cost_usd == 0.0 and again.attempts == 0
    assert cached_llm.metrics is not None
    assert cached_llm.metrics.stats("fake", "fake-model").response_cache_hits == 1


async def test_different_requests_miss(fake: FakeProvider, cached_llm: LLM) -> None:
    fake.completes += [reply(), reply("Berlin")]
    await cached_llm.invoke("Capital of France?")
    other = await cached_llm.invoke("Capital of Germany?")
    assert other.text == "Berlin" and len(fake.requests) == 2


async def test_entries_expire_after_the_ttl(fake: FakeProvider, cached_llm: LLM, clock: FakeClock) -> None:
    fake.completes += [reply(), reply("Paris again")]
    await cached_llm.invoke("Capital of France?")
    clock.advance(301)
    assert (await cached_llm.invoke("Capital of France?")).text == "Paris again"


async def test_incomplete_replies_are_not_cached(fake: FakeProvider, cached_llm: LLM) -> None:
    fake.completes += [reply("[filtered]", finish="content_filter"), reply()]
    await cached_llm.invoke("Capital of France?")
    assert (await cached_llm.invoke("Capital of France?")).text == "Paris"


async def test_a_cached_reply_replays_as_a_stream(fake: FakeProvider, cached_llm: LLM) -> None:
    long = "The capital of France is Paris. " * 5
    fake.completes.append(reply(long))
    await cached_llm.invoke("Capital of France?")
    stream = cached_llm.stream("Capital of France?")
    events = [ev async for ev in stream.events()]
    assert [ev.kind for ev in events] == ["text", "text", "text", "usage", "finish"]
    assert "".join(ev.text for ev in events if ev.kind == "text") == long
    assert stream.response.cached and stream.response.cost_usd == 0.0
    assert stream.response.usage == Usage(10, 2) and stream.response.id == "r1"
    assert fake.opened_streams == 0


async def test_a_stream_fills_the_cache_for_invoke(fake: FakeProvider, cached_llm: LLM) -> None:
    fake.streams.append(text_steps("Par", "is"))
    assert (await cached_llm.stream("Capital of France?").collect()).text == "Paris"
    again = await cached_llm.invoke("Capital of France?")
    assert again.cached and again.text == "Paris" and fake.completes == []


async def test_stream_options_do_not_change_the_key(fake: FakeProvider, cached_llm: LLM) -> None:
    fake.streams.append(text_steps("Par", "is"))
    await cached_llm.stream("Capital of France?", buffer_size=100).collect()
    assert (await cached_llm.stream("Capital of France?", idle_timeout=5).collect()).cached


async def test_reasoning_and_its_signature_replay_from_the_cache(fake: FakeProvider, cached_llm: LLM) -> None:
    fake.completes.append(Response(text="Paris", provider="fake", model="fake-model", finish_reason="stop",
                                   reasoning="France's capital...", reasoning_signature="sig=="))
    await cached_llm.invoke("Capital of France?")
    s = cached_llm.stream("Capital of France?")
    await s.collect()
    assert (s.response.reasoning, s.response.reasoning_signature) == ("France's capital...", "sig==")


async def test_tool_calls_replay_from_the_cache(fake: FakeProvider, cached_llm: LLM) -> None:
    call = ToolCall("c1", "lookup", {"q": "x"}, '{"q": "x"}')
    fake.completes.append(Response(text="", provider="fake", model="fake-model", finish_reason="tool_calls",
                                   tool_calls=(call,)))
    await cached_llm.invoke("Capital of France?")
    s = cached_llm.stream("Capital of France?")
    kinds = [ev.kind async for ev in s.events()]
    assert kinds == ["tool_call_start", "tool_call_delta", "tool_call_done", "usage", "finish"]
    assert s.response.tool_calls == (call,)


async def test_a_failing_cache_never_fails_the_call(fake: FakeProvider, make_llm: Callable[..., LLM]) -> None:
    class Down(MemoryResponseCache):
        async def get(self, key: str) -> Response | None:
            raise ConnectionError("redis is down")

        async def set(self, key: str, response: Response, ttl: float) -> None:
            raise ConnectionError("redis is down")

    fake.completes.append(reply())
    assert (await make_llm(response_cache=Down()).invoke("Capital of France?")).text == "Paris"


async def test_registry_gives_cached_handles_per_options() -> None:
    from forge.registry import Registry

    async with Registry({"providers": {"openai": {"api_key": "k"}}}) as reg:
        plain = reg.get_llm("openai:gpt-4o")
        cached = reg.get_llm("openai:gpt-4o", enable_cache=True, cache_ttl=60)
        assert plain.response_cache is None
        assert cached.response_cache is reg.response_cache and cached.cache_ttl == 60
        assert reg.get_llm("openai:gpt-4o", enable_cache=True, cache_ttl=60) is cached
        assert reg.get_llm("openai:gpt-4o", enable_cache=True) is not cached


# ---------------------------------------------------------------------- Redis

REDIS_URL = os.environ.get("FORGE_TEST_REDIS_URL")
needs_redis = pytest.mark.skipif(not REDIS_URL, reason=no_redis_reason())


@needs_redis
async def test_redis_cache_is_shared_between_instances() -> None:
    prefix = f"forge:test:{uuid.uuid4()}:"
    a, b = RedisResponseCache(REDIS_URL, prefix=prefix), RedisResponseCache(REDIS_URL, prefix=prefix)
    try:
        call = ToolCall("c1", "f", {"a": 1}, '{"a": 1}')
        stored = Response(text="hi", provider="openai", model="m", finish_reason="stop",
                          usage=Usage(5, 1, cached_input_tokens=2), tool_calls=(call,), reasoning="r", id="x")
        await a.set("k", stored, ttl=30)
        assert await b.get("k") == stored
        assert await b.get("missing") is None
    finally:
        await a.aclose()
        await b.aclose()


@needs_redis
async def test_redis_entries_carry_the_ttl_as_redis_expiry() -> None:
    prefix = f"forge:test:{uuid.uuid4()}:"
    cache = RedisResponseCache(REDIS_URL, prefix=prefix)
    try:
        await cache.set("k", reply(), ttl=30)
        ttl_ms = await cache._redis.pttl(prefix + "k")
        assert 29_000 < ttl_ms <= 30_000
    finally:
        await cache.aclose()
