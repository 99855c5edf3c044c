"""Where optimizers hook into LLM: what is sent, the plain-request fallback, metrics, Registry wiring."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest

from forge.errors import BadRequestError, ContextLengthError
from forge.llm import LLM
from forge.metrics import Metrics
from forge.optimize import ProviderOptimizer, optimizations_enabled
from forge.optimize.anthropic import AnthropicOptimizer
from forge.optimize.base import NotApplicable, Step
from forge.optimize.openai import OpenAIOptimizer
from forge.registry import Registry
from forge.types import Request, Response
from tests.conftest import FakeProvider, text_steps


class Upper(ProviderOptimizer):
    """Uppercases the system prompt; skips requests without one."""

    provider = "fake"

    def steps(self) -> Sequence[tuple[str, Step]]:
        return [("upper", self.upper)]

    def upper(self, request: Request) -> Request:
        if not request.system:
            raise NotApplicable("no system prompt")
        from dataclasses import replace

        return replace(request, system=request.system.upper())


def ok(text: str = "ok") -> Response:
    return Response(text=text, provider="fake", model="fake-model", finish_reason="stop")


async def test_the_provider_receives_the_optimized_request(
    fake: FakeProvider, make_llm: Callable[..., LLM]
) -> None:
    fake.completes.append(ok())
    llm = make_llm(optimizer=Upper())
    await llm.invoke("hi", system="be terse")
    assert fake.requests[0].system == "BE TERSE"


async def test_a_broken_optimizer_never_fails_the_call(fake: FakeProvider, make_llm: Callable[..., LLM]) -> None:
    class Broken(Upper):
        async def aoptimize_request(self, request: Request, **kw: object) -> Request:  # type: ignore[override]
            raise RuntimeError("bug")

    fake.completes.append(ok())
    optimizer = Broken()
    reply = await make_llm(optimizer=optimizer).invoke("hi", system="be terse")
    assert reply.text == "ok" and fake.requests[0].system == "be terse"
    assert optimizer.stats.errors["optimizer"] == 1


async def test_a_refused_optimized_request_is_resent_as_written(
    fake: FakeProvider, make_llm: Callable[..., LLM]
) -> None:
    fake.completes += [BadRequestError("unknown field", provider="fake", status=400), ok()]
    optimizer = Upper()
    reply = await make_llm(optimizer=optimizer).invoke("hi", system="be terse")
    assert reply.text == "ok"
    assert [r.system for r in fake.requests] == ["BE TERSE", "be terse"]
    assert optimizer.stats.fallbacks == 1
    assert reply.attempts == 2  # the refused request was an attempt too


async def test_context_length_errors_are_not_resent(fake: FakeProvider, make_llm: Callable[..., LLM]) -> None:
    fake.completes.append(ContextLengthError("too long", provider="fake", status=400))
    with pytest.raises(ContextLengthError):
        await make_llm(optimizer=Upper()).invoke("hi", system="be terse")
    assert len(fake.requests) == 1


async def test_an_unoptimized_request_that_fails_is_not_resent(
    fake: FakeProvider, make_llm: Callable[..., LLM]
) -> None:
    fake.completes.append(BadRequestError("bad", provider="fake", status=400))
    with pytest.raises(BadRequestError):
        await make_llm(optimizer=Upper()).invoke("hi")  # no system: nothing changed
    assert len(fake.requests) == 1


async def test_streams_fall_back_too(fake: FakeProvider, make_llm: Callable[..., LLM]) -> None:
    from tests.conftest import Step as FakeStep

    fake.streams += [[FakeStep(error=BadRequestError("unknown field", provider="fake", status=400))],
                     text_steps("o", "k")]
    s = make_llm(optimizer=Upper()).stream("hi", system="be terse")
    assert (await s.collect()).text == "ok"
    assert [r.system for r in fake.requests] == ["BE TERSE", "be terse"]
    assert s.response.attempts == 2


async def test_metrics_record_each_step(fake: FakeProvider, make_llm: Callable[..., LLM]) -> None:
    fake.completes += [ok(), ok()]
    metrics = Metrics()
    llm = make_llm(optimizer=Upper(), metrics=metrics)
    await llm.invoke("hi", system="x")
    await llm.invoke("hi")
    stats = metrics.stats("fake", "fake-model")
    assert stats.optimizations_applied == {"upper": 1}
    assert stats.optimizations_skipped == {"upper": 1}


# ---------------------------------------------------------------------- Registry wiring


def test_optimizations_enabled_rules() -> None:
    assert optimizations_enabled({}, False) is False
    assert optimizations_enabled({}, True) is True
    assert optimizations_enabled({"cache_ttl": 3600}, False) is True
    assert optimizations_enabled({"enabled": False}, True) is False
    assert optimizations_enabled({"enabled": True}, False) is True


CONFIG = {"providers": {"openai": {"api_key": "k"}, "anthropic": {"api_key": "k"}}}


async def test_registry_off_by_default() -> None:
    async with Registry(CONFIG) as reg:
        assert reg.get_llm("openai:gpt-4o").optimizer is None


async def test_registry_switch_turns_every_provider_on_and_llms_share_it() -> None:
    async with Registry(CONFIG, enable_optimizations=True) as reg:
        a, b = reg.get_llm("openai:gpt-4o"), reg.get_llm("openai:gpt-4o-mini")
        assert isinstance(a.optimizer, OpenAIOptimizer) and a.optimizer is b.optimizer
        assert isinstance(reg.get_llm("anthropic:claude-sonnet-4-5").optimizer, AnthropicOptimizer)


async def test_a_provider_section_turns_it_on_alone() -> None:
    config = {"providers": {"openai": {"api_key": "k"},
                            "anthropic": {"api_key": "k", "optimizations": {"cache_ttl": "1h"}}}}
    async with Registry(config) as reg:
        assert reg.get_llm("openai:gpt-4o").optimizer is None
        optimizer = reg.get_llm("anthropic:claude-sonnet-4-5").optimizer
        assert isinstance(optimizer, AnthropicOptimizer) and optimizer.settings == {"cache_ttl": 3600}


async def test_a_section_can_opt_out_and_the_registry_can_force_all_off() -> None:
    config = {"enable_optimizations": True,
              "providers": {"openai": {"api_key": "k", "optimizations": {"enabled": False}},
                            "anthropic": {"api_key": "k", "optimizations": {"enabled": True}}}}
    async with Registry(config) as reg:
        assert reg.get_llm("openai:gpt-4o").optimizer is None
        assert reg.get_llm("anthropic:claude-sonnet-4-5").optimizer is not None
    async with Registry(config, enable_optimizations=False) as reg:
        assert reg.get_llm("anthropic:claude-sonnet-4-5").optimizer is None


def test_invalid_optimization_keys_are_config_errors() -> None:
    from forge.errors import ConfigError

    with pytest.raises(ConfigError, match=r"providers\.openai\.optimizations\.sed: unknown optimization "
                                          r"for openai.*Did you mean 'seed'"):
        Registry({"providers": {"openai": {"optimizations": {"sed": 1}}}})
    with pytest.raises(ConfigError, match=r"cache_ttl: expected '5m', '1h', 300 or 3600"):
        Registry({"providers": {"anthropic": {"optimizations": {"cache_ttl": "10m"}}}})
