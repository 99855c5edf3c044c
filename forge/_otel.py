"""OpenTelemetry spans and metrics in the GenAI semantic conventions (the ``otel`` extra).

Nothing here imports ``opentelemetry`` until a call finds it already imported
by the application (configuring a provider imports it), so ``import forge``
and every call made while OpenTelemetry is off stay as they were: one check
per call, never per chunk. docs/observability.md says what is emitted.

Conventions followed: the OpenTelemetry GenAI semantic conventions as of
semantic-conventions 1.41 and their last revision in that repository
(docs/gen-ai/gen-ai-spans.md, gen-ai-metrics.md, registry/attributes/gen-ai.md,
May 2026, before they moved to open-telemetry/semantic-conventions-genai).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from forge.llm import LLM
    from forge.metrics import MetricEvent, Metrics
    from forge.streaming import Stream
    from forge.types import Request, Response

__all__ = ["Telemetry"]

# gen_ai.provider.name: the conventions' well-known values; Ollama has none, so its own name.
PROVIDER_NAMES = {"openai": "openai", "anthropic": "anthropic", "google": "gcp.gemini", "ollama": "ollama"}
# gen_ai.operation.name: Gemini's generateContent has its own well-known value.
OPERATIONS = {"google": "generate_content"}
TOKEN_BOUNDARIES = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216,
                    67108864)
SECONDS_BOUNDARIES = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96,
                      81.92)
CAPTURE_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
_SCOPE = "forge"
_UNCONFIGURED = frozenset({"ProxyTracerProvider", "NoOpTracerProvider", "_ProxyMeterProvider",
                           "NoOpMeterProvider"})
# Metric events that become span events on the span current when they happen.
_SPAN_EVENTS = frozenset({"retry", "limiter_wait", "cache_hit", "optimization", "fallback", "breaker",
                          "rate_limited"})


def provider_name(provider: str) -> str:
    """``gen_ai.provider.name`` for a forge provider name."""
    return PROVIDER_NAMES.get(provider, provider)


def operation_name(provider: str) -> str:
    """``gen_ai.operation.name`` for a forge provider name."""
    return OPERATIONS.get(provider, "chat")


def server_of(base_url: object) -> tuple[str, int] | None:
    """``(server.address, server.port)`` of a base URL: host and port only, never credentials."""
    if not isinstance(base_url, str) or not base_url:
        return None
    try:
        parts = urlsplit(base_url)
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if not host:
        return None
    return host, port if port is not None else (443 if parts.scheme == "https" else 80)


def _disabled_by_env() -> bool:
    if os.environ.get("FORGE_TELEMETRY", "").strip().lower() in ("0", "false", "off", "no"):
        return True
    names = os.environ.get("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", "")
    return "forge" in (n.strip() for n in names.split(","))


def capture_content_from_env() -> bool:
    """Whether ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`` asks for content on spans.

    ``true`` (the instrumentations' boolean form) and ``SPAN_ONLY`` / ``SPAN_AND_EVENT``
    (opentelemetry-util-genai's form) do; anything else, unset included, does not.
    """
    value = os.environ.get(CAPTURE_ENV, "").strip().lower()
    return value in ("true", "1", "span_only", "span_and_event")


class Telemetry:
    """Where forge sends OpenTelemetry spans and metrics; pass one as ``Registry(telemetry=...)``.

    By default (``telemetry=None``) forge uses the global TracerProvider and
    MeterProvider, and does nothing until the application configures them.
    ``Registry(telemetry=False)``, ``FORGE_TELEMETRY=off`` or
    ``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=forge`` turn it off.

    Args:
        tracer_provider: spans go here instead of the global provider.
        meter_provider: metrics go here instead of the global provider.
        capture_content: record prompts and replies on spans (default: from
            ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT``; off when unset).
    """

    def __init__(
        self,
        *,
        tracer_provider: object | None = None,
        meter_provider: object | None = None,
        capture_content: bool | None = None,
    ) -> None:
        self.tracer_provider = tracer_provider
        self.meter_provider = meter_provider
        self.capture_content = capture_content
        self._tracer: tuple[object, Any] | None = None
        self._instruments: tuple[object, _Instruments] | None = None

    def __repr__(self) -> str:
        return (f"Telemetry(tracer_provider={self.tracer_provider!r}, "
                f"meter_provider={self.meter_provider!r}, capture_content={self.capture_content!r})")

    # ------------------------------------------------------------------ providers (checked once per call)

    def tracer(self) -> Any | None:
        """The tracer to use now, or None when no TracerProvider is configured (or OTel is absent)."""
        provider: Any = self.tracer_provider
        if provider is None:
            trace = sys.modules.get("opentelemetry.trace")
            if trace is None:  # nobody imported OpenTelemetry, so nobody configured it
                return None
            provider = trace.get_tracer_provider()
        cached = self._tracer
        if cached is not None and cached[0] is provider:
            return cached[1]
        if type(provider).__name__ in _UNCONFIGURED:
            return None
        from forge import __version__

        tracer = provider.get_tracer(_SCOPE, __version__)
        self._tracer = (provider, tracer)
        return tracer

    def instruments(self) -> _Instruments | None:
        """The GenAI metric instruments, or None when no MeterProvider is configured."""
        provider: Any = self.meter_provider
        if provider is None:
            metrics = sys.modules.get("opentelemetry.metrics")
            if metrics is None:
                return None
            provider = metrics.get_meter_provider()
        cached = self._instruments
        if cached is not None and cached[0] is provider:
            return cached[1]
        if type(provider).__name__ in _UNCONFIGURED:
            return None
        instruments = _Instruments(provider)
        self._instruments = (provider, instruments)
        return instruments

    def captures_content(self) -> bool:
        return capture_content_from_env() if self.capture_content is None else self.capture_content

    # ------------------------------------------------------------------ metric events

    def subscribe(self, metrics: Metrics, server: Callable[[str], tuple[str, int] | None]) -> None:
        """Turn ``metrics``' events into GenAI metrics and span events.

        ``server(provider)`` gives the host and port a provider's calls go to.
        """
        bridge = _Bridge(self, server)
        metrics.subscribe(bridge)


def resolve(telemetry: Telemetry | bool | None) -> Telemetry | None:
    """The Telemetry a Registry or LLM uses: None when turned off."""
    if telemetry is False or _disabled_by_env():
        return None
    if telemetry is None or telemetry is True:
        return Telemetry()
    if not isinstance(telemetry, Telemetry):
        raise TypeError(
            f"telemetry must be None (the global OpenTelemetry providers), False (off) or a "
            f"forge.Telemetry; got {type(telemetry).__name__}."
        )
    return telemetry


def opentelemetry_installed() -> bool:
    """Whether the ``opentelemetry`` package can be imported (without importing it)."""
    if "opentelemetry" in sys.modules:
        return True
    import importlib.util

    return importlib.util.find_spec("opentelemetry") is not None


class _Instruments:
    """The four client instruments of the GenAI metrics conventions, on one MeterProvider."""

    def __init__(self, provider: Any) -> None:
        from forge import __version__

        meter = provider.get_meter(_SCOPE, __version__)
        self.token_usage = meter.create_histogram(
            "gen_ai.client.token.usage", unit="{token}",
            description="Number of input and output tokens used.",
            explicit_bucket_boundaries_advisory=list(TOKEN_BOUNDARIES),
        )
        self.duration = meter.create_histogram(
            "gen_ai.client.operation.duration", unit="s", description="GenAI operation duration.",
            explicit_bucket_boundaries_advisory=list(SECONDS_BOUNDARIES),
        )
        self.time_to_first_chunk = meter.create_histogram(
            "gen_ai.client.operation.time_to_first_chunk", unit="s",
            description="Time to receive the first chunk of a streamed response.",
            explicit_bucket_boundaries_advisory=list(SECONDS_BOUNDARIES),
        )
        self.time_per_output_chunk = meter.create_histogram(
            "gen_ai.client.operation.time_per_output_chunk", unit="s",
            description="Time per output chunk after the first one (mean of one stream).",
            explicit_bucket_boundaries_advisory=list(SECONDS_BOUNDARIES),
        )


class _Bridge:
    """A :meth:`forge.Metrics.subscribe` callback: request events -> metrics, the others -> span events."""

    def __init__(self, telemetry: Telemetry, server: Callable[[str], tuple[str, int] | None]) -> None:
        self.telemetry = telemetry
        self.server = server

    def __call__(self, event: MetricEvent) -> None:
        kind = event.kind
        if kind == "request":
            instruments = self.telemetry.instruments()
            if instruments is not None:
                self._record(instruments, event)
        elif kind in _SPAN_EVENTS:
            trace = sys.modules.get("opentelemetry.trace")
            if trace is None:
                return
            span = trace.get_current_span()
            if span.is_recording():
                span.add_event(f"forge.{kind}", _event_attributes(event))

    def _record(self, instruments: _Instruments, event: MetricEvent) -> None:
        fields = event.fields
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": operation_name(event.provider),
            "gen_ai.provider.name": provider_name(event.provider),
            "gen_ai.request.model": event.model,
        }
        server = self.server(event.provider)
        if server is not None:
            attrs["server.address"], attrs["server.port"] = server
        if not fields.get("ok"):
            attrs["error.type"] = str(fields.get("error") or "_OTHER")
            elapsed = fields.get("elapsed_s")
            if isinstance(elapsed, (int, float)):
                instruments.duration.record(elapsed, attrs)
            return
        latency = fields.get("latency_s")
        if isinstance(latency, (int, float)) and not fields.get("batch"):
            instruments.duration.record(latency, attrs)
        inputs, outputs = fields.get("input_tokens"), fields.get("output_tokens")
        if isinstance(inputs, int) and isinstance(outputs, int) and (inputs or outputs):
            instruments.token_usage.record(inputs, {**attrs, "gen_ai.token.type": "input"})
            instruments.token_usage.record(outputs, {**attrs, "gen_ai.token.type": "output"})
        if fields.get("stream"):
            self._record_stream_timing(instruments, fields, attrs)

    @staticmethod
    def _record_stream_timing(
        instruments: _Instruments, fields: Mapping[str, object], attrs: dict[str, Any]
    ) -> None:
        ttft = fields.get("ttft_s")
        if not isinstance(ttft, (int, float)):
            return
        instruments.time_to_first_chunk.record(ttft, attrs)
        chunks, latency = fields.get("chunks"), fields.get("latency_s")
        if isinstance(chunks, int) and chunks > 1 and isinstance(latency, (int, float)):
            # Recorded once per stream (the mean gap), so that nothing is done per chunk.
            instruments.time_per_output_chunk.record(max(latency - ttft, 0.0) / (chunks - 1), attrs)


def _event_attributes(event: MetricEvent) -> dict[str, Any]:
    attrs: dict[str, Any] = {"gen_ai.provider.name": provider_name(event.provider),
                             "gen_ai.request.model": event.model}
    for key, value in event.fields.items():
        if isinstance(value, (str, bool, int, float)):
            attrs[f"forge.{key}"] = value
    return attrs


# ---------------------------------------------------------------------- spans


def _request_attributes(llm: LLM, request: Request, *, stream: bool, operation: str) -> dict[str, Any]:
    provider = llm.provider_name
    attrs: dict[str, Any] = {
        "gen_ai.operation.name": operation_name(provider),
        "gen_ai.provider.name": provider_name(provider),
        "gen_ai.request.model": request.model,
    }
    server = server_of(getattr(llm.provider, "base_url", None))
    if server is not None:
        attrs["server.address"], attrs["server.port"] = server
    if stream:
        attrs["gen_ai.request.stream"] = True
    if request.max_tokens is not None:
        attrs["gen_ai.request.max_tokens"] = request.max_tokens
    if request.temperature is not None:
        attrs["gen_ai.request.temperature"] = request.temperature
    if request.top_p is not None:
        attrs["gen_ai.request.top_p"] = request.top_p
    if request.seed is not None:
        attrs["gen_ai.request.seed"] = request.seed
    if request.stop:
        attrs["gen_ai.request.stop_sequences"] = list(request.stop)
    if request.response_format is not None:
        attrs["gen_ai.output.type"] = "text" if request.response_format.type == "text" else "json"
    if provider == "openai":
        api = getattr(llm.provider, "api", "chat")
        attrs["openai.api.type"] = "responses" if api == "responses" else "chat_completions"
    if operation != "invoke":
        attrs["forge.operation"] = operation
    return attrs


def _response_model(response: Response) -> str:
    raw = response.raw
    if isinstance(raw, Mapping):
        for key in ("model", "modelVersion"):
            value = raw.get(key)
            if isinstance(value, str) and value:
                return value
    return response.model


def _content_attributes(request: Request) -> dict[str, str]:
    attrs: dict[str, str] = {}
    if request.system:
        attrs["gen_ai.system_instructions"] = json.dumps([{"type": "text", "content": request.system}])
    messages = []
    for m in request.messages:
        parts: list[dict[str, object]] = []
        if m.content:
            parts.append({"type": "text", "content": m.content})
        for call in m.tool_calls:
            parts.append({"type": "tool_call", "id": call.id, "name": call.name, "arguments": call.arguments})
        if m.role == "tool":
            parts = [{"type": "tool_call_response", "id": m.tool_call_id, "response": m.content}]
        messages.append({"role": m.role, "parts": parts})
    attrs["gen_ai.input.messages"] = json.dumps(messages)
    return attrs


def _output_messages(response: Response) -> str:
    parts: list[dict[str, object]] = []
    if response.text:
        parts.append({"type": "text", "content": response.text})
    for call in response.tool_calls:
        parts.append({"type": "tool_call", "id": call.id, "name": call.name, "arguments": call.arguments})
    return json.dumps([{"role": "assistant", "parts": parts,
                        "finish_reason": response.finish_reason or "error"}])


class Call:
    """One model call's CLIENT span: started before the request is sent, ended once, whatever happens."""

    __slots__ = ("_content", "_ended", "_token", "span")

    def __init__(self, tracer: Any, llm: LLM, request: Request, *, stream: bool, operation: str,
                 content: bool) -> None:
        from opentelemetry.trace import SpanKind

        attrs = _request_attributes(llm, request, stream=stream, operation=operation)
        if content:
            attrs.update(_content_attributes(request))
        self.span = tracer.start_span(
            f"{attrs['gen_ai.operation.name']} {request.model}", kind=SpanKind.CLIENT, attributes=attrs
        )
        self._content = content
        self._ended = False
        self._token: object | None = None

    def enter(self) -> None:
        """Make the span current (the vendor client's HTTP request then carries its context)."""
        from opentelemetry import context, trace

        self._token = context.attach(trace.set_span_in_context(self.span))

    def exit(self) -> None:
        token, self._token = self._token, None
        if token is not None:
            from opentelemetry import context

            context.detach(token)  # type: ignore[arg-type]

    def succeed(self, response: Response) -> None:
        if self._ended:
            return
        span = self.span
        u = response.usage
        attrs: dict[str, Any] = {"gen_ai.response.model": _response_model(response)}
        if response.id:
            attrs["gen_ai.response.id"] = response.id
        if response.finish_reason:
            attrs["gen_ai.response.finish_reasons"] = [response.finish_reason]
        if u.input_tokens or u.output_tokens:
            attrs["gen_ai.usage.input_tokens"] = u.input_tokens
            attrs["gen_ai.usage.output_tokens"] = u.output_tokens
        if u.cached_input_tokens:
            attrs["gen_ai.usage.cache_read.input_tokens"] = u.cached_input_tokens
        if u.cache_write_tokens:
            attrs["gen_ai.usage.cache_creation.input_tokens"] = u.cache_write_tokens
        if u.reasoning_tokens:
            attrs["gen_ai.usage.reasoning.output_tokens"] = u.reasoning_tokens
        if response.time_to_first_token_s is not None:
            attrs["gen_ai.response.time_to_first_chunk"] = response.time_to_first_token_s
        if response.attempts > 1:
            attrs["forge.attempts"] = response.attempts
        if response.cached:
            attrs["forge.cached"] = True
        if self._content:
            attrs["gen_ai.output.messages"] = _output_messages(response)
        span.set_attributes(attrs)
        self._end()

    def fail(self, error: BaseException) -> None:
        if self._ended:
            return
        from opentelemetry.trace import Status, StatusCode

        name = type(error).__name__
        self.span.set_attribute("error.type", name)
        attempts = getattr(error, "attempt_count", None)
        if isinstance(attempts, int) and attempts > 1:
            self.span.set_attribute("forge.attempts", attempts)
        self.span.set_status(Status(StatusCode.ERROR, f"{name}: {error}"))
        self._end()

    def close(self, stream: Stream | None = None) -> None:
        """End the span of a stream the caller closed (or abandoned) before its end."""
        if self._ended:
            return
        if stream is not None:
            self.span.set_attribute("forge.stream.closed_early", True)
            progress = stream.progress()
            if progress.time_to_first_token_s is not None:
                self.span.set_attribute("gen_ai.response.time_to_first_chunk", progress.time_to_first_token_s)
        self._end()

    def _end(self) -> None:
        self._ended = True
        self.exit()
        self.span.end()


def start_call(llm: LLM, request: Request, *, stream: bool, operation: str) -> Call | None:
    """A started span for one call, or None when spans are off (the one check per call)."""
    telemetry = llm.telemetry
    if telemetry is None:
        return None
    tracer = telemetry.tracer()
    if tracer is None:
        return None
    return Call(tracer, llm, request, stream=stream, operation=operation,
                content=telemetry.captures_content())


async def traced_complete(
    llm: LLM, request: Request, operation: str, send: Callable[[], Awaitable[Response]]
) -> Response:
    """Run ``send()`` (one whole call, retries included) inside its span."""
    call = start_call(llm, request, stream=False, operation=operation)
    if call is None:
        return await send()
    call.enter()
    try:
        response = await send()
    except BaseException as exc:
        call.fail(exc)
        raise
    finally:
        call.exit()
    call.succeed(response)
    return response


def trace_stream(stream: Stream, llm: LLM, request: Request) -> None:
    """Give ``stream`` a span from its opening to its end, its failure or its closing.

    Only the opener and the end hooks are wrapped: the chunk loop is not touched.
    """
    telemetry = llm.telemetry
    if telemetry is None or telemetry.tracer() is None:
        return
    opener, on_complete, on_error = stream._opener, stream._on_complete, stream._on_error
    state: list[Call | None] = [None]

    async def traced_opener() -> Any:
        call = state[0] = start_call(llm, request, stream=True, operation="stream")
        if call is None:
            return await opener()
        call.enter()  # the opening runs in a task of its own: its context, reset below
        try:
            return await opener()
        finally:
            call.exit()

    def completed(response: Response) -> object:
        call = state[0]
        if call is not None:
            call.succeed(response)
        return on_complete(response) if on_complete is not None else None

    def failed(exc: BaseException) -> object:
        call = state[0]
        if call is not None:
            call.fail(exc)
        return on_error(exc) if on_error is not None else None

    def closed() -> None:
        call = state[0]
        if call is not None:
            call.close(stream)

    stream._opener = traced_opener
    stream._on_complete = completed
    stream._on_error = failed
    stream._on_close = closed
