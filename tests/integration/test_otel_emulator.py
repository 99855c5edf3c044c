"""OpenTelemetry spans and metrics in the GenAI conventions, through the real vendor clients and the emulator.

The SDK's in-memory span exporter and metric reader are passed to the Registry
(``forge.Telemetry``), so no global provider is set and tests stay independent.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import forge
from forge.testing import Emulator, Fault
from tests.conftest import FakeClock

TARGETS = {
    "openai": ("openai:gpt-4o-mini", {}),
    "openai-responses": ("openai:gpt-4o-mini", {"api": "responses"}),
    "anthropic": ("anthropic:claude-haiku-4-5", {}),
    "google": ("google:gemini-2.5-flash", {}),
    "ollama": ("ollama:llama3.2", {}),
}
NAMES = list(TARGETS)
# What the conventions call each provider and its operation (gen-ai registry, well-known values).
CONVENTION = {
    "openai": ("openai", "chat"),
    "openai-responses": ("openai", "chat"),
    "anthropic": ("anthropic", "chat"),
    "google": ("gcp.gemini", "generate_content"),
    "ollama": ("ollama", "chat"),
}
TOKEN_BOUNDARIES = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)
SECONDS_BOUNDARIES = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)


class Otel:
    """An SDK TracerProvider and MeterProvider writing to memory."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def telemetry(self, **kw: Any) -> forge.Telemetry:
        return forge.Telemetry(tracer_provider=self.tracer_provider, meter_provider=self.meter_provider, **kw)

    def spans(self) -> list[ReadableSpan]:
        return [s for s in self.exporter.get_finished_spans() if s.instrumentation_scope.name == "forge"]

    def points(self) -> dict[str, list[tuple[dict[str, Any], HistogramDataPoint, Any]]]:
        data = self.reader.get_metrics_data()
        out: dict[str, list[tuple[dict[str, Any], HistogramDataPoint, Any]]] = {}
        if data is None:
            return out
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    for point in metric.data.data_points:
                        assert isinstance(point, HistogramDataPoint)
                        out.setdefault(metric.name, []).append((dict(point.attributes or {}), point, metric))
        return out


@pytest.fixture
def otel() -> Iterator[Otel]:
    o = Otel()
    yield o
    o.tracer_provider.shutdown()
    o.meter_provider.shutdown()


def _config(emu: Emulator, name: str, max_attempts: int = 1, **section_extra: object) -> dict[str, Any]:
    model, extra = TARGETS[name]
    cfg: dict[str, Any] = emu.config()
    section = cfg["providers"][model.split(":")[0]]
    section.update(extra)
    section.update(section_extra)
    section["retry"] = {"max_attempts": max_attempts, "initial_wait": 0.001, "max_wait": 0.01}
    return cfg


def _registry(emu: Emulator, name: str, otel: Otel, max_attempts: int = 1, **kw: Any) -> forge.Registry:
    clock = FakeClock()
    return forge.Registry(
        config=_config(emu, name, max_attempts), telemetry=otel.telemetry(**kw), sleep=clock.sleep
    )


def _check_request_attributes(span: ReadableSpan, name: str, emu: Emulator, *, stream: bool) -> dict[str, Any]:
    model = TARGETS[name][0].split(":")[1]
    provider, operation = CONVENTION[name]
    attrs = dict(span.attributes or {})
    assert span.name == f"{operation} {model}"
    assert span.kind is SpanKind.CLIENT
    assert attrs["gen_ai.operation.name"] == operation
    assert attrs["gen_ai.provider.name"] == provider
    assert attrs["gen_ai.request.model"] == model
    assert attrs["server.address"] == "127.0.0.1"
    assert attrs["server.port"] == emu.port
    assert attrs.get("gen_ai.request.stream", False) is stream
    if name.startswith("openai"):
        assert attrs["openai.api.type"] == ("responses" if name == "openai-responses" else "chat_completions")
    return attrs


@pytest.mark.parametrize("name", NAMES)
async def test_invoke_emits_one_client_span_in_the_conventions(name: str, otel: Otel) -> None:
    async with Emulator() as emu, _registry(emu, name, otel) as reg:
        reply = await reg.invoke(TARGETS[name][0], "hi", max_tokens=50, temperature=0.5, top_p=0.9)
    [span] = otel.spans()
    attrs = _check_request_attributes(span, name, emu, stream=False)
    assert attrs["gen_ai.request.max_tokens"] == 50
    assert attrs["gen_ai.request.temperature"] == 0.5
    assert attrs["gen_ai.request.top_p"] == 0.9
    if name == "ollama":  # Ollama's /api/chat reply has no id
        assert "gen_ai.response.id" not in attrs and reply.id is None
    else:
        assert attrs["gen_ai.response.id"] == reply.id and reply.id
    assert attrs["gen_ai.response.model"]
    assert attrs["gen_ai.response.finish_reasons"] == ("stop",)
    assert attrs["gen_ai.usage.input_tokens"] == reply.usage.input_tokens > 0
    assert attrs["gen_ai.usage.output_tokens"] == reply.usage.output_tokens > 0
    assert span.status.status_code is StatusCode.UNSET
    assert "error.type" not in attrs


@pytest.mark.parametrize("name", NAMES)
async def test_a_stream_span_lasts_until_the_end_and_carries_usage(name: str, otel: Otel) -> None:
    async with Emulator(chunk_count=6) as emu, _registry(emu, name, otel) as reg:
        stream = reg.stream(TARGETS[name][0], "tell me", max_tokens=300)
        pieces = []
        async for piece in stream:
            pieces.append(piece)
            assert not otel.spans()  # still open while the stream is read
        reply = stream.response
    [span] = otel.spans()
    attrs = _check_request_attributes(span, name, emu, stream=True)
    assert attrs["gen_ai.usage.input_tokens"] == reply.usage.input_tokens > 0
    assert attrs["gen_ai.usage.output_tokens"] == reply.usage.output_tokens > 0
    assert attrs["gen_ai.response.finish_reasons"] == ("stop",)
    assert attrs["gen_ai.response.time_to_first_chunk"] == reply.time_to_first_token_s
    assert span.status.status_code is StatusCode.UNSET
    assert not span.events  # nothing per chunk


@pytest.mark.parametrize("name", NAMES)
async def test_a_stream_closed_early_ends_its_span(name: str, otel: Otel) -> None:
    async with Emulator(chunk_count=20) as emu, _registry(emu, name, otel) as reg:
        stream = reg.stream(TARGETS[name][0], "tell me")
        async with stream:
            async for _ in stream:
                break
    [span] = otel.spans()
    assert span.end_time is not None
    assert (span.attributes or {})["forge.stream.closed_early"] is True
    assert "error.type" not in (span.attributes or {})


async def test_a_stream_closed_from_another_task_ends_its_span(otel: Otel) -> None:
    async with Emulator(chunk_count=50) as emu, _registry(emu, "openai", otel) as reg:
        emu.script(Fault.chunk_delay(0.05), provider="openai")
        stream = reg.stream(TARGETS["openai"][0], "tell me")
        got = asyncio.Event()

        async def read() -> None:
            async for _ in stream:
                got.set()

        task = asyncio.ensure_future(read())
        await got.wait()
        await stream.aclose()
        await task
    [span] = otel.spans()
    assert (span.attributes or {})["forge.stream.closed_early"] is True


@pytest.mark.parametrize("name", NAMES)
async def test_an_interrupted_stream_ends_its_span_with_the_error(name: str, otel: Otel) -> None:
    async with Emulator(chunk_count=10) as emu, _registry(emu, name, otel) as reg:
        emu.script(Fault.drop_after(3), provider=TARGETS[name][0].split(":")[0])
        with pytest.raises(forge.StreamInterrupted):
            await reg.stream(TARGETS[name][0], "tell me").collect()
    [span] = otel.spans()
    assert (span.attributes or {})["error.type"] == "StreamInterrupted"
    assert span.status.status_code is StatusCode.ERROR


@pytest.mark.parametrize("name", NAMES)
async def test_a_failed_call_sets_error_type(name: str, otel: Otel) -> None:
    async with Emulator() as emu, _registry(emu, name, otel) as reg:
        emu.script(Fault.auth(), provider=TARGETS[name][0].split(":")[0])
        with pytest.raises(forge.AuthenticationError):
            await reg.invoke(TARGETS[name][0], "hi")
    [span] = otel.spans()
    assert (span.attributes or {})["error.type"] == "AuthenticationError"
    assert span.status.status_code is StatusCode.ERROR
    [(attrs, point, _)] = otel.points()["gen_ai.client.operation.duration"]
    assert attrs["error.type"] == "AuthenticationError" and point.count == 1


@pytest.mark.parametrize("name", NAMES)
async def test_retries_are_span_events_of_one_span(name: str, otel: Otel) -> None:
    async with Emulator() as emu, _registry(emu, name, otel, max_attempts=3) as reg:
        emu.script(Fault.server_error(500), provider=TARGETS[name][0].split(":")[0], times=2)
        reply = await reg.invoke(TARGETS[name][0], "hi")
    assert reply.attempts == 3
    [span] = otel.spans()
    retries = [e for e in span.events if e.name == "forge.retry"]
    assert len(retries) == 2
    assert all((e.attributes or {})["forge.error"] == "ServerError" for e in retries)
    assert (span.attributes or {})["forge.attempts"] == 3


async def test_stream_retries_are_span_events(otel: Otel) -> None:
    async with Emulator(chunk_count=5) as emu, _registry(emu, "anthropic", otel, max_attempts=2) as reg:
        emu.script(Fault.overloaded(), provider="anthropic")
        await reg.stream(TARGETS["anthropic"][0], "hi").collect()
    [span] = otel.spans()
    assert [e.name for e in span.events] == ["forge.retry"]
    assert (span.attributes or {})["forge.attempts"] == 2


async def test_a_cache_hit_is_a_span_event(otel: Otel) -> None:
    async with Emulator() as emu, _registry(emu, "openai", otel) as reg:
        llm = reg.get_llm(TARGETS["openai"][0], enable_cache=True)
        await llm.invoke("same", temperature=0)
        await llm.invoke("same", temperature=0)
    first, second = otel.spans()
    assert not [e for e in first.events if e.name == "forge.cache_hit"]
    assert [e.name for e in second.events] == ["forge.cache_hit"]
    assert (second.attributes or {})["forge.cached"] is True
    # a reply from the cache is no provider call: no duration or token metrics for it
    [(_, point, _)] = otel.points()["gen_ai.client.operation.duration"]
    assert point.count == 1


async def test_fallbacks_are_events_and_each_link_has_its_span(otel: Otel) -> None:
    app = otel.tracer_provider.get_tracer("app")
    async with Emulator() as emu:
        cfg = _config(emu, "openai")
        clock = FakeClock()
        async with forge.Registry(config=cfg, telemetry=otel.telemetry(), sleep=clock.sleep) as reg:
            emu.script(Fault.overloaded(), provider="openai", times=None)
            with app.start_as_current_span("handler"):
                reply = await reg.invoke("openai:gpt-4o-mini", "hi", fallbacks=["anthropic:claude-haiku-4-5"])
    assert reply.provider == "anthropic"
    handler = next(s for s in otel.exporter.get_finished_spans() if s.name == "handler")
    failed, answered = otel.spans()
    assert (failed.attributes or {})["error.type"] == "OverloadedError"
    assert (answered.attributes or {})["gen_ai.provider.name"] == "anthropic"
    assert failed.parent is not None and failed.parent.span_id == handler.context.span_id
    assert answered.parent is not None and answered.parent.span_id == handler.context.span_id
    [event] = [e for e in handler.events if e.name == "forge.fallback"]
    assert (event.attributes or {})["forge.to"] == "anthropic:claude-haiku-4-5"
    assert (event.attributes or {})["forge.reason"] == "error"


async def test_fallback_streams_end_every_link_span(otel: Otel) -> None:
    async with (
        Emulator(chunk_count=4) as emu,
        forge.Registry(config=_config(emu, "openai"), telemetry=otel.telemetry()) as reg,
    ):
        emu.script(Fault.overloaded(), provider="openai", times=None)
        stream = reg.stream("openai:gpt-4o-mini", "hi", fallbacks=["anthropic:claude-haiku-4-5"])
        async with stream:
            async for _ in stream:
                break
    failed, answered = otel.spans()
    assert (failed.attributes or {})["error.type"] == "OverloadedError"
    assert (answered.attributes or {})["forge.stream.closed_early"] is True


async def test_concurrent_batch_items_each_get_a_span(otel: Otel) -> None:
    async with Emulator() as emu, _registry(emu, "openai", otel) as reg:
        results = await reg.batch_invoke(TARGETS["openai"][0], ["a", "b", "c"], mode="concurrent")
    assert all(isinstance(r, forge.Response) for r in results)
    spans = otel.spans()
    assert len(spans) == 3
    assert {(s.attributes or {})["forge.operation"] for s in spans} == {"batch"}
    assert len({s.context.trace_id for s in spans}) == 3


@pytest.mark.parametrize("name", NAMES)
async def test_metrics_use_the_conventions_names_units_and_buckets(name: str, otel: Otel) -> None:
    async with Emulator(chunk_count=8) as emu, _registry(emu, name, otel) as reg:
        await reg.invoke(TARGETS[name][0], "hi")
        streamed = await reg.stream(TARGETS[name][0], "hi").collect()
    points = otel.points()
    provider, operation = CONVENTION[name]
    model = TARGETS[name][0].split(":")[1]
    tokens = points["gen_ai.client.token.usage"]
    assert {a["gen_ai.token.type"] for a, _, _ in tokens} == {"input", "output"}
    for attrs, point, metric in tokens:
        assert metric.unit == "{token}"
        assert tuple(point.explicit_bounds) == TOKEN_BOUNDARIES
        assert attrs["gen_ai.provider.name"] == provider and attrs["gen_ai.operation.name"] == operation
        assert attrs["gen_ai.request.model"] == model
        assert attrs["server.address"] == "127.0.0.1" and attrs["server.port"] == emu.port
        assert point.count == 2  # the invoke and the stream
    [(_, duration, metric)] = points["gen_ai.client.operation.duration"]
    assert metric.unit == "s" and tuple(duration.explicit_bounds) == SECONDS_BOUNDARIES
    assert duration.count == 2
    [(_, ttft, metric)] = points["gen_ai.client.operation.time_to_first_chunk"]
    assert metric.unit == "s" and tuple(ttft.explicit_bounds) == SECONDS_BOUNDARIES
    assert ttft.count == 1 and ttft.sum == pytest.approx(streamed.time_to_first_token_s)
    [(_, per_chunk, metric)] = points["gen_ai.client.operation.time_per_output_chunk"]
    assert metric.unit == "s" and tuple(per_chunk.explicit_bounds) == SECONDS_BOUNDARIES
    assert per_chunk.count == 1


@pytest.mark.parametrize("name", ["openai", "anthropic"])
async def test_no_content_by_default_and_content_on_opt_in(
    name: str, otel: Otel, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", raising=False)
    async with Emulator() as emu, _registry(emu, name, otel) as reg:
        reply = await reg.invoke(TARGETS[name][0], "the secret plan", system="be terse")
        dumped = json.dumps([dict(s.attributes or {}) for s in otel.spans()], default=str)
        assert "secret plan" not in dumped and reply.text not in dumped and "terse" not in dumped
        monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
        reply = await reg.invoke(TARGETS[name][0], "the secret plan", system="be terse")
    attrs = dict(otel.spans()[-1].attributes or {})
    assert json.loads(str(attrs["gen_ai.input.messages"])) == [
        {"role": "user", "parts": [{"type": "text", "content": "the secret plan"}]}
    ]
    assert json.loads(str(attrs["gen_ai.system_instructions"])) == [{"type": "text", "content": "be terse"}]
    [output] = json.loads(str(attrs["gen_ai.output.messages"]))
    assert output["parts"] == [{"type": "text", "content": reply.text}] and output["finish_reason"] == "stop"


async def test_capture_content_false_wins_over_the_environment(otel: Otel, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "SPAN_ONLY")
    async with Emulator() as emu, _registry(emu, "openai", otel, capture_content=False) as reg:
        await reg.invoke(TARGETS["openai"][0], "the secret plan")
    assert "gen_ai.input.messages" not in (otel.spans()[0].attributes or {})


@pytest.mark.parametrize("name", NAMES)
async def test_secrets_never_reach_spans_or_metrics(name: str, otel: Otel, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    key = "sk-THIS-KEY-MUST-NOT-LEAK-123"
    async with Emulator(chunk_count=3) as emu:
        cfg = _config(emu, name, max_attempts=2)
        section = cfg["providers"][TARGETS[name][0].split(":")[0]]
        section["api_key"] = key
        section["base_url"] = section["base_url"].replace("http://", "http://user:pw-secret@")
        async with forge.Registry(config=cfg, telemetry=otel.telemetry(), sleep=FakeClock().sleep) as reg:
            emu.script(Fault.server_error(500), provider=TARGETS[name][0].split(":")[0])
            await reg.invoke(TARGETS[name][0], "hi")
            await reg.stream(TARGETS[name][0], "hi").collect()
            emu.script(Fault.auth(), provider=TARGETS[name][0].split(":")[0])
            with pytest.raises(forge.AuthenticationError):
                await reg.invoke(TARGETS[name][0], "hi")
    spans = otel.spans()
    assert len(spans) == 3
    dumped = "\n".join(s.to_json() for s in spans) + json.dumps(
        {n: [a for a, _, _ in p] for n, p in otel.points().items()}, default=str
    )
    assert key not in dumped and "pw-secret" not in dumped and "user:" not in dumped


async def test_the_span_is_current_while_the_vendor_client_sends(otel: Otel) -> None:
    # The anthropic client propagates the current trace context on its requests
    # (its own tracing finds no global provider here, so it adds no span of its own).
    async with Emulator(chunk_count=3) as emu, _registry(emu, "anthropic", otel) as reg:
        await reg.invoke(TARGETS["anthropic"][0], "hi")
        await reg.stream(TARGETS["anthropic"][0], "hi").collect()
        sent = [(r.headers.get("traceparent") or "")[:52] for r in emu.requests]
    if not any(sent):
        # Whether the vendor client propagates trace context is its own business (some
        # versions propagate only under their own span); forge's part, its span being
        # current while the adapter sends, is checked for every provider below.
        pytest.skip("this anthropic client version propagates no trace context here")
    invoke_span, stream_span = otel.spans()
    assert sent == [f"00-{s.context.trace_id:032x}-{s.context.span_id:016x}" for s in (invoke_span, stream_span)]


async def test_the_span_is_current_inside_every_adapter(otel: Otel) -> None:
    from opentelemetry import trace

    seen: list[int] = []
    async with Emulator(chunk_count=3) as emu:
        cfg = emu.config()
        async with forge.Registry(config=cfg, telemetry=otel.telemetry()) as reg:
            for name in ("openai", "anthropic", "google", "ollama"):
                llm = reg.get_llm(TARGETS[name][0])
                provider = llm.provider
                complete, stream = provider.complete, provider.stream

                async def probe_complete(request: Any, complete: Any = complete) -> Any:
                    seen.append(trace.get_current_span().get_span_context().span_id)
                    return await complete(request)

                def probe_stream(request: Any, stream: Any = stream) -> Any:
                    seen.append(trace.get_current_span().get_span_context().span_id)
                    return stream(request)

                provider.complete = probe_complete  # type: ignore[method-assign]
                provider.stream = probe_stream  # type: ignore[method-assign]
                await llm.invoke("hi")
                await llm.stream("hi").collect()
    assert seen == [s.context.span_id for s in otel.spans()]


async def test_telemetry_false_emits_nothing(otel: Otel) -> None:
    async with Emulator() as emu, forge.Registry(config=emu.config(), telemetry=False) as reg:
        await reg.invoke(TARGETS["openai"][0], "hi")
        assert reg.get_llm(TARGETS["openai"][0]).telemetry is None
    assert not otel.spans()


async def test_the_environment_switch_turns_it_off(otel: Otel, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", "redis,forge")
    async with Emulator() as emu, forge.Registry(config=emu.config(), telemetry=otel.telemetry()) as reg:
        await reg.invoke(TARGETS["openai"][0], "hi")
    assert not otel.spans() and not otel.points()


def test_a_bad_telemetry_value_says_what_is_allowed() -> None:
    with pytest.raises(TypeError, match="telemetry must be None"):
        forge.Registry(config={}, telemetry="yes")  # type: ignore[arg-type]
