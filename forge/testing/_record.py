"""forge's own cassettes: the flows ``python -m forge.testing record`` records against the emulator.

Each :class:`Flow` is one use of forge's public API (a Registry call), run per
provider against a fresh :class:`~forge.testing.Emulator` (so ids are the same
on every recording) with the flow's scripted replies and faults, and recorded
into ``<out>/<provider>/<flow>.yaml``. What forge reported (text, finish
reason, usage, attempts, or the error class and its fields) is stored in the
cassette's metadata under ``forge``; a replay runs the same flow against the
cassette and must report exactly that (``tests/test_cassettes.py``).

A new flow is one more :class:`Flow` in :data:`FLOWS`; ``run`` may return a
Response, a list of them (a batch), or raise a ForgeError. Stream failures
after the first chunk are recordable only as in-band error events: a dropped
connection cannot be recorded (vcrpy reads the whole body first).
"""

from __future__ import annotations

import tempfile
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from typing_extensions import Unpack

from forge._params import InvokeParams, StreamRequestParams
from forge.config import ForgeConfig, RetryConfig
from forge.errors import ForgeError, ProviderError, StreamError
from forge.jobs import SQLiteJobStore
from forge.registry import Registry
from forge.testing.cassettes import _with_providers, use_cassette
from forge.testing.emulator import Emulator, Fault, Reply
from forge.types import Response

__all__ = ["FLOWS", "METADATA_KEY", "MODELS", "PROVIDERS", "Flow", "outcome", "record", "run_flow"]

PROVIDERS = ("openai", "anthropic", "google", "ollama")
MODELS = {
    "openai": "gpt-4o-mini",
    "anthropic": "claude-haiku-4-5",
    "google": "gemini-2.5-flash",
    "ollama": "llama3.2",
}
METADATA_KEY = "forge"

Run = Callable[[Registry, str], Awaitable[object]]


@dataclass(frozen=True, slots=True)
class Flow:
    """One recorded use of forge, per provider.

    ``run(registry, "provider:model")`` makes the calls; ``script`` is what the
    emulator does (each action fires once, in order); ``max_attempts`` is
    forge's retry setting for the flow (1: an error surfaces as its class);
    ``settings`` go into the provider's config section (e.g. ``{"api":
    "responses"}`` with ``providers=("openai",)`` for the Responses API).
    """

    name: str
    description: str
    run: Run
    script: tuple[Fault | Reply, ...] = ()
    max_attempts: int = 1
    providers: tuple[str, ...] = PROVIDERS
    settings: Mapping[str, object] = field(default_factory=dict)


def invoke(prompt: str, **params: Unpack[InvokeParams]) -> Run:
    """A flow step: ``registry.invoke(model, prompt, **params)``."""

    async def run(registry: Registry, model: str) -> Response:
        return await registry.invoke(model, prompt, **params)

    return run


def batch(*prompts: str, max_tokens: int | None = None) -> Run:
    """A flow step: ``registry.batch_invoke(model, prompts, mode="batch_api")``."""

    async def run(registry: Registry, model: str) -> list[Response | ForgeError]:
        return await registry.batch_invoke(model, list(prompts), mode="batch_api", max_tokens=max_tokens)

    return run


def stream(prompt: str, **params: Unpack[StreamRequestParams]) -> Run:
    """A flow step: stream the reply and reassemble it (``Stream.collect()``)."""

    async def run(registry: Registry, model: str) -> Response:
        async with registry.stream(model, prompt, **params) as s:
            return await s.collect()

    return run


FLOWS: tuple[Flow, ...] = (
    Flow("invoke", "a plain call", invoke("Say hello in five words.", max_tokens=64)),
    Flow("stream", "a streamed reply", stream("Count from one to five.")),
    Flow(
        "stream_usage",
        "a stream whose usage includes cached and reasoning tokens",
        stream("Summarize the cached document.", max_tokens=200),
        script=(
            Reply(
                text="It explains how cassettes replay recorded traffic.",
                input_tokens=1200,
                cached_tokens=1024,
                reasoning_tokens=16,
            ),
        ),
    ),
    Flow(
        "json_mode",
        "tool-free JSON mode (response_format='json')",
        invoke("Reply with a JSON object holding the answer.", response_format="json"),
        script=(Reply(text='{"answer": 42, "unit": "none"}'),),
    ),
    Flow(
        "retry_after_429",
        "a 429 with Retry-After, retried once by forge, then the answer",
        invoke("Answer after one rate limit."),
        script=(Fault.rate_limit(retry_after=1),),
        max_attempts=2,
    ),
    Flow(
        "stream_rate_limit",
        "a 429 when the stream opens (before any chunk): RateLimitError",
        stream("Stream into a rate limit."),
        script=(Fault.rate_limit(retry_after=3),),
    ),
    Flow(
        "stream_interrupted",
        "an in-band error event after two chunks: StreamInterrupted keeps the partial text",
        stream("Stream until the provider fails."),
        script=(Fault.stream_error(after=2, error="overloaded"),),
    ),
    Flow("error_rate_limit", "429 with Retry-After", invoke("Limit me."), (Fault.rate_limit(retry_after=7),)),
    Flow("error_overloaded", "Anthropic 529, 503 elsewhere", invoke("Overload."), (Fault.overloaded(),)),
    Flow("error_server", "500 server error", invoke("Fail on the server."), (Fault.server_error(500),)),
    Flow("error_timeout", "408 request timeout", invoke("Time out."), (Fault.status(408),)),
    Flow("error_auth", "an invalid API key", invoke("Refuse my key."), (Fault.auth(),)),
    Flow(
        "error_bad_request",
        "400 invalid request",
        invoke("Send a bad request."),
        (Fault.status(400, "Invalid value for 'temperature': expected a number."),),
    ),
    Flow(
        "error_context_length",
        "400 context window exceeded",
        invoke("This prompt is too long."),
        (Fault.context_length(),),
    ),
    Flow("error_not_found", "404 unknown model", invoke("Use a missing model."), (Fault.not_found(),)),
    Flow(
        "batch",
        "the provider's batch API: submit, poll until ended, read the results in order",
        batch("What is 2 + 2?", "Name a primary color.", max_tokens=32),
        providers=("openai", "anthropic", "google"),
    ),
)


# --------------------------------------------------------------------------- outcomes


def outcome(result: object) -> dict[str, object]:
    """What forge reported, as plain data for the cassette's metadata (and for comparing replays)."""
    if isinstance(result, Response):
        u = result.usage
        return {
            "text": result.text,
            "finish_reason": result.finish_reason,
            "usage": {
                "input_tokens": u.input_tokens,
                "output_tokens": u.output_tokens,
                "cached_input_tokens": u.cached_input_tokens,
                "cache_write_tokens": u.cache_write_tokens,
                "reasoning_tokens": u.reasoning_tokens,
            },
            "tool_calls": [{"name": c.name, "arguments": dict(c.arguments)} for c in result.tool_calls],
            "attempts": result.attempts,
            "id": result.id,
        }
    if isinstance(result, ForgeError):
        message = str(result)
        where = getattr(result, "base_url", None) or getattr(getattr(result, "error", None), "base_url", None)
        if where:  # the emulator's port changes between recording and replay
            message = message.replace(where, "<base_url>")
        data: dict[str, object] = {"error": type(result).__name__, "message": message}
        if isinstance(result, ProviderError):
            data.update(status=result.status, code=result.code, retry_after=result.retry_after)
        if isinstance(result, StreamError):
            data.update(partial_text=result.partial_text, chunks=result.chunks)
            cause = getattr(result, "error", None)
            if cause is not None:
                data["cause"] = type(cause).__name__
        return data
    if isinstance(result, Sequence) and not isinstance(result, (str, bytes)):
        return {"items": [outcome(item) for item in result]}
    raise TypeError(f"a flow returned {type(result).__name__}; return a Response or a list of them")


async def _no_sleep(seconds: float) -> None:
    """Retry waits take no time: the recording already happened, the schedule is not under test here."""


async def run_flow(
    flow: Flow, provider: str, config: ForgeConfig | Mapping[str, object]
) -> dict[str, object]:
    """Run ``flow`` for ``provider`` through a Registry built from ``config``; return its outcome."""
    attempts: object = {"max_attempts": flow.max_attempts}
    if isinstance(config, ForgeConfig):
        attempts = RetryConfig(max_attempts=flow.max_attempts)
    sections: dict[str, dict[str, object]] = {name: {"retry": attempts} for name in PROVIDERS}
    sections[provider].update(flow.settings)
    with tempfile.TemporaryDirectory(prefix="forge-flow-") as tmp:
        jobs = SQLiteJobStore(Path(tmp) / "jobs.sqlite3")  # batch jobs never touch the user's store
        try:
            async with Registry(config=_with_providers(config, sections), sleep=_no_sleep) as registry:
                registry.job_store = jobs
                try:
                    result = await flow.run(registry, f"{provider}:{MODELS[provider]}")
                except ForgeError as exc:
                    result = exc
        finally:
            await jobs.aclose()
    return outcome(result)


def cassette_path(out: Path, provider: str, flow: Flow) -> Path:
    """Where ``flow``'s cassette for ``provider`` lives under ``out``."""
    return out / provider / f"{flow.name}.yaml"


async def record(
    out: Path,
    *,
    providers: Iterable[str] = PROVIDERS,
    flows: Iterable[Flow] = FLOWS,
    log: Callable[[str], object] = print,
) -> list[Path]:
    """Record every flow for every provider into ``out``, replacing what is there; return the files."""
    written: list[Path] = []
    flows = tuple(flows)
    for provider in providers:
        for flow in flows:
            if provider not in flow.providers:
                continue
            path = cassette_path(out, provider, flow)
            # Start from nothing: an old file's stored outcome would otherwise survive
            # (cassette metadata is get-or-set), and the replay test would check a stale one.
            path.unlink(missing_ok=True)
            async with Emulator() as emulator:
                for action in flow.script:
                    emulator.script(action, provider=provider)
                with use_cassette(path, record_mode="all") as cassette:
                    result = await run_flow(flow, provider, emulator.config())
                    cassette.metadata(
                        METADATA_KEY,
                        {
                            "flow": flow.name,
                            "description": flow.description,
                            "provider": provider,
                            "model": f"{provider}:{MODELS[provider]}",
                            "outcome": result,
                        },
                    )
            summary = _summary(result)
            log(f"recorded {path} ({len(cassette)} interactions, {summary})")
            written.append(path)
    return written


def _summary(result: Mapping[str, object]) -> str:
    items = result.get("items")
    if isinstance(items, list):
        return f"{len(items)} items: " + ", ".join(_summary(item) for item in items)
    return str(result.get("error") or f"finish={result.get('finish_reason')}")
