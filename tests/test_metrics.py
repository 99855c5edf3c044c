"""Metrics: what each call records, percentiles, cost, the event hook, and the table."""

from __future__ import annotations

import json

import pytest

from forge.errors import RateLimitError, ServerError
from forge.llm import LLM
from forge.metrics import MetricEvent, Metrics, format_snapshot
from forge.retry import RetryPolicy
from forge.types import Response, Usage
from tests.conftest import FakeClock, FakeProvider, text_steps


def _response(latency: float, **usage: int) -> Response:
    return Response("hi", "openai", "gpt-4o-mini", "stop", Usage(**usage), latency_s=latency, cost_usd=0.001)


def test_percentiles_and_totals(clock: FakeClock) -> None:
    m = Metrics(clock)
    for i in range(1, 101):
        m.record_success(_response(i / 100, input_tokens=10, output_tokens=5))
    snap = m.snapshot()
    row = snap["models"]["openai:gpt-4o-mini"]  # type: ignore[index]
    assert row["requests"] == 100 and row["input_tokens"] == 1000
    assert row["latency_s"] == {"p50": 0.5, "p95": 0.95, "p99": 0.99}
    assert row["cost_usd"] == pytest.approx(0.1)


def test_cache_savings_use_the_price_difference(clock: FakeClock) -> None:
    m = Metrics(clock)
    m.record_success(_response(0.1, input_tokens=1_000_000, cached_input_tokens=1_000_000))
    row = m.snapshot()["models"]["openai:gpt-4o-mini"]  # type: ignore[index]
    assert row["cache_savings_usd"] == pytest.approx(0.15 - 0.075)


def test_failures_by_class_and_retry_success_rate(clock: FakeClock) -> None:
    m = Metrics(clock)
    m.record_failure("anthropic", "claude-haiku-4-5", ServerError("x"), attempts=3)
    m.record_success(Response("ok", "anthropic", "claude-haiku-4-5", attempts=2))
    row = m.snapshot()["models"]["anthropic:claude-haiku-4-5"]  # type: ignore[index]
    assert row["failures_by_error"] == {"ServerError": 1}
    assert row["retry_success_rate"] == 0.5


def test_subscriber_sees_events_and_a_broken_one_is_contained(clock: FakeClock) -> None:
    m = Metrics(clock)
    seen: list[MetricEvent] = []
    m.subscribe(seen.append)
    m.subscribe(lambda e: 1 / 0)
    m.record_retry("openai", "gpt-4o", RateLimitError("slow", status=429), 1.5)
    assert [(e.kind, e.fields["wait_s"]) for e in seen] == [("retry", 1.5)]
    assert m.snapshot()["models"]["openai:gpt-4o"]["rate_limited"] == 1  # type: ignore[index]


async def test_llm_records_invoke_retries_and_stream(fake: FakeProvider, clock: FakeClock) -> None:
    m = Metrics(clock)
    fake.name = "openai"
    llm = LLM(fake, "gpt-4o-mini", clock=clock, sleep=clock.sleep, rng=lambda: 0.5,
              retry=RetryPolicy(max_attempts=3), metrics=m)
    fake.completes += [ServerError("boom"), Response("x", "openai", "gpt-4o-mini", usage=Usage(100, 10))]
    await llm.invoke("hi")
    fake.streams.append(text_steps("a", "b", usage=Usage(5, 2)))
    await llm.stream("hi").collect()
    row = m.snapshot()["models"]["openai:gpt-4o-mini"]  # type: ignore[index]
    assert (row["requests"], row["successes"], row["retries"], row["streams"]) == (2, 2, 1, 1)
    assert row["cost_usd"] > 0


def test_table_renders_a_json_round_trip(clock: FakeClock) -> None:
    m = Metrics(clock)
    m.record_success(_response(0.2, input_tokens=3, output_tokens=4))
    table = format_snapshot(json.loads(json.dumps(m.snapshot())))
    assert "openai:gpt-4o-mini" in table and "total: 1 requests" in table


async def test_configured_prices_reach_response_cost(fake: FakeProvider, clock: FakeClock) -> None:
    from forge.config import load_config

    cfg = load_config({"providers": {"openai": {"pricing": {"acme-1": {"input": 1.0, "output": 2.0}}}}})
    fake.name = "openai"
    llm = LLM(fake, "acme-1", config=cfg.provider("openai"), clock=clock, sleep=clock.sleep, metrics=Metrics(clock))
    fake.completes.append(Response("x", "openai", "acme-1", usage=Usage(1_000_000, 1_000_000)))
    assert (await llm.invoke("hi")).cost_usd == pytest.approx(3.0)
    fake.completes.append(Response("x", "openai", "unpriced-model", usage=Usage(10, 10)))
    assert (await LLM(fake, "unpriced-model", clock=clock).invoke("hi")).cost_usd is None
