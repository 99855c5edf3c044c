"""Gemini optimizer: context caches (create, reuse, recreate, refuse, fall back), safety, thinking."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest

from forge.errors import AuthenticationError, BadRequestError, ForgeError
from forge.optimize.google import GoogleOptimizer, min_cacheable_tokens
from forge.types import Message, Request, Tool
from tests.conftest import FakeClock

SYSTEM = "You answer questions about the handbook. " * 600  # ~5,000 tokens


@dataclass
class FakeCaches:
    created: list[dict[str, Any]] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    fail_with: BaseException | None = None
    delay: float = 0.0

    async def create(self, *, model: str, config: Any) -> Any:
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail_with is not None:
            raise self.fail_with
        self.created.append({"model": model, "config": config})
        return SimpleNamespace(name=f"cachedContents/c{len(self.created)}",
                               usage_metadata=SimpleNamespace(total_token_count=5000))

    async def delete(self, *, name: str) -> None:
        self.deleted.append(name)


class FakeGemini:
    name = "google"

    def __init__(self) -> None:
        self.caches = FakeCaches()
        self.client = SimpleNamespace(aio=SimpleNamespace(caches=self.caches))

    def classify(self, exc: BaseException) -> ForgeError:
        return exc if isinstance(exc, ForgeError) else ForgeError(str(exc))


def make(clock: FakeClock, **settings: object) -> tuple[GoogleOptimizer, FakeGemini]:
    o = GoogleOptimizer(settings, clock=clock)
    fake = FakeGemini()
    o.bind(fake)  # type: ignore[arg-type]
    return o, fake


def req(question: str = "What is the leave policy?", **kw: object) -> Request:
    return Request(model="gemini-2.5-flash", messages=(Message("user", question),), system=SYSTEM, **kw)  # type: ignore[arg-type]


def test_minimums_per_model() -> None:
    assert min_cacheable_tokens("gemini-2.5-flash") == 1024
    assert min_cacheable_tokens("models/gemini-2.5-pro") == 4096
    assert min_cacheable_tokens("gemini-x") == 4096


async def test_static_part_moves_into_a_cache_and_the_request_names_it(clock: FakeClock) -> None:
    o, fake = make(clock)
    out = await o.aoptimize_request(req())
    assert out == Request(model="gemini-2.5-flash", messages=(Message("user", "What is the leave policy?"),),
                          extra={"cached_content": "cachedContents/c1"})
    [created] = fake.caches.created
    assert created["model"] == "gemini-2.5-flash"
    assert created["config"].ttl == "300s"
    assert created["config"].system_instruction == SYSTEM
    assert created["config"].contents is None
    assert o.stats.counters["cache_write_tokens"] == 5000


async def test_a_second_call_reuses_the_cache(clock: FakeClock) -> None:
    o, fake = make(clock)
    first = await o.aoptimize_request(req("one"))
    second = await o.aoptimize_request(req("two"))
    assert first.extra == second.extra == {"cached_content": "cachedContents/c1"}
    assert len(fake.caches.created) == 1 and o.stats.counters["cache_hits"] == 1


async def test_the_cache_is_recreated_before_it_expires(clock: FakeClock) -> None:
    o, fake = make(clock, cache_ttl=600)
    await o.aoptimize_request(req())
    clock.advance(569)  # the margin is min(30 s, ttl / 10)
    assert (await o.aoptimize_request(req())).extra["cached_content"] == "cachedContents/c1"
    clock.advance(2)
    assert (await o.aoptimize_request(req())).extra["cached_content"] == "cachedContents/c2"
    assert fake.caches.created[1]["config"].ttl == "600s"


async def test_concurrent_calls_create_one_cache(clock: FakeClock) -> None:
    o, fake = make(clock)
    fake.caches.delay = 0.01
    outs = await asyncio.gather(*(o.aoptimize_request(req(f"q{i}")) for i in range(5)))
    assert len(fake.caches.created) == 1
    assert {r.extra["cached_content"] for r in outs} == {"cachedContents/c1"}


async def test_marked_messages_and_tools_go_into_the_cache(clock: FakeClock) -> None:
    o, fake = make(clock)
    r = Request(model="gemini-2.5-flash", system=SYSTEM, tools=(Tool("lookup"),), tool_choice="auto",
                messages=(Message("user", "the handbook", cache_breakpoint=True), Message("user", "q")))
    out = await o.aoptimize_request(r)
    assert out.messages == (Message("user", "q"),) and out.tools == () and out.tool_choice is None
    config = fake.caches.created[0]["config"]
    assert [c.parts[0].text for c in config.contents] == ["the handbook"]
    assert config.tools[0].function_declarations[0].name == "lookup"
    assert config.tool_config.function_calling_config.mode == "AUTO"


async def test_below_the_minimum_nothing_is_cached(clock: FakeClock) -> None:
    o, fake = make(clock)
    r = Request(model="gemini-2.5-flash", system="Be brief.", messages=(Message("user", "q"),))
    assert await o.aoptimize_request(r) is r
    assert fake.caches.created == []
    assert "below gemini-2.5-flash's minimum of 1024" in o.stats.last_reason["context_cache"]


async def test_a_refused_cache_falls_back_and_is_not_retried(clock: FakeClock) -> None:
    o, fake = make(clock)
    fake.caches.fail_with = BadRequestError("Cached content is too small.", provider="google")
    r = req()
    assert await o.aoptimize_request(r) is r
    assert o.stats.errors["context_cache"] == 1
    assert await o.aoptimize_request(r) is r
    assert o.stats.skipped["context_cache"] == 1  # remembered: no second create call
    assert "refused" in o.stats.last_reason["context_cache"]


async def test_an_unknown_cache_at_call_time_means_resend_plain_and_forget_it(clock: FakeClock) -> None:
    o, fake = make(clock)
    sent = await o.aoptimize_request(req())
    error = AuthenticationError("google said: CachedContent not found (or permission denied)",
                                provider="google", status=403)
    assert o.should_fall_back(sent, error)
    assert o.live_caches == []
    await o.aoptimize_request(req())
    assert len(fake.caches.created) == 2


async def test_other_errors_do_not_fall_back(clock: FakeClock) -> None:
    o, _ = make(clock)
    sent = await o.aoptimize_request(req())
    assert not o.should_fall_back(sent, AuthenticationError("bad key", provider="google", status=401))


async def test_no_bound_client_means_no_cache(clock: FakeClock) -> None:
    o = GoogleOptimizer(clock=clock)
    r = req()
    assert await o.aoptimize_request(r) is r


async def test_aclose_deletes_the_caches(clock: FakeClock) -> None:
    o, fake = make(clock)
    await o.aoptimize_request(req())
    await o.aclose()
    assert fake.caches.deleted == ["cachedContents/c1"]


async def test_caller_cached_content_is_left_alone(clock: FakeClock) -> None:
    o, fake = make(clock)
    r = req(extra={"cached_content": "cachedContents/mine"})
    assert await o.aoptimize_request(r) is r and fake.caches.created == []


def test_safety_settings_from_config_on_every_request() -> None:
    safety = [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}]
    o = GoogleOptimizer({"safety_settings": safety, "context_cache": False})
    assert o.optimize_request(req()).extra == {"safety_settings": safety}
    own = req(extra={"safety_settings": []})
    assert o.optimize_request(own) is own


def test_thinking_budget_unless_the_caller_chose_thinking() -> None:
    o = GoogleOptimizer({"thinking_budget": 0, "include_thoughts": False})
    assert o.optimize_request(req()).extra == {
        "thinking_config": {"thinking_budget": 0, "include_thoughts": False}}
    chosen = req(extra={"thinking_config": {"thinking_budget": 512}})
    assert o.optimize_request(chosen) is chosen


@pytest.mark.parametrize("settings", [{}, {"context_cache": False}])
def test_no_sync_steps_without_settings(settings: dict[str, object]) -> None:
    r = req()
    assert GoogleOptimizer(settings).optimize_request(r) is r
