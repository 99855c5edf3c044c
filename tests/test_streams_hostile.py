"""Streams against the raw-bytes server: the retry window, closing from another task, progress, cost.

Each vendor's stream is scripted byte for byte as its documentation shows it:
Anthropic Messages streaming (``message_start`` with ``output_tokens: 1``,
``ping``, ``content_block_*``, ``message_delta``, ``message_stop``, in-band
``event: error``); OpenAI chat completions chunks (a role-only first chunk,
``stream_options.include_usage`` usage chunk, ``[DONE]``); the OpenAI Responses
API events (``response.created``, ``response.in_progress``, ...,
``response.completed``); Gemini ``streamGenerateContent?alt=sse`` chunks
(``usageMetadata`` on every chunk); Ollama ``/api/chat`` NDJSON lines ending in
a ``done: true`` line.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from dataclasses import dataclass

import pytest

import forge
from forge.pricing import cost_usd
from tests.hostile import BASE_PATHS, Close, Hang, HostileServer, Pause, Reply, ndjson, sse

PIECES = ["Hello", " there,", " how", " are", " you", " doing", " today?"]
TEXT = "".join(PIECES)
OUTPUT_TOKENS = 9


@dataclass(frozen=True)
class Vendor:
    """How one provider's stream looks on the wire."""

    name: str
    provider: str
    model: str
    metadata: Callable[[], list[bytes]]
    """What the vendor sends before any content (held back by forge)."""
    content: Callable[[list[str]], list[bytes]]
    tail: Callable[[], list[bytes]]
    in_band_error: Callable[[], list[bytes]] | None
    content_type: str = "text/event-stream"
    section: tuple[tuple[str, object], ...] = ()

    def body(self, pieces: list[str] = PIECES) -> list[bytes]:
        return [*self.metadata(), *self.content(pieces), *self.tail()]

    def reply(self, pieces: list[str] = PIECES) -> Reply:
        return Reply.stream(self.body(pieces), content_type=self.content_type)

    def config(self, srv: HostileServer, **retry: object) -> dict[str, object]:
        values: dict[str, object] = {
            "api_key": "test-key",
            "base_url": srv.url(BASE_PATHS[self.provider]),
            "retry": {"max_attempts": 1, "initial_wait": 0.001, "max_wait": 0.01, **retry},
            **dict(self.section),
        }
        return {"providers": {self.provider: values}}


# --------------------------------------------------------------------------- Anthropic


def _anthropic_metadata() -> list[bytes]:
    return sse(
        ("message_start", {"type": "message_start", "message": {
            "id": "msg_1", "type": "message", "role": "assistant", "content": [],
            "model": "claude-haiku-4-5", "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": 25, "output_tokens": 1}}}),
        ("ping", {"type": "ping"}),
        ("content_block_start", {"type": "content_block_start", "index": 0,
                                 "content_block": {"type": "text", "text": ""}}),
    )


def _anthropic_content(pieces: list[str]) -> list[bytes]:
    return sse(*[("content_block_delta", {"type": "content_block_delta", "index": 0,
                                          "delta": {"type": "text_delta", "text": p}}) for p in pieces])


def _anthropic_tail() -> list[bytes]:
    return sse(
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                           "usage": {"output_tokens": OUTPUT_TOKENS}}),
        ("message_stop", {"type": "message_stop"}),
    )


def _anthropic_error() -> list[bytes]:
    return sse(("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}))


# --------------------------------------------------------------------------- OpenAI chat


def _chunk(delta: dict[str, object], finish: str | None = None) -> dict[str, object]:
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}


def _openai_metadata() -> list[bytes]:
    return sse(_chunk({"role": "assistant", "content": "", "refusal": None}))


def _openai_content(pieces: list[str]) -> list[bytes]:
    return sse(*[_chunk({"content": p}) for p in pieces])


def _openai_tail() -> list[bytes]:
    usage = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini",
             "choices": [], "usage": {"prompt_tokens": 25, "completion_tokens": OUTPUT_TOKENS,
                                      "total_tokens": 25 + OUTPUT_TOKENS}}
    return sse(_chunk({}, "stop"), usage, "[DONE]")


def _openai_error() -> list[bytes]:
    return sse({"error": {"message": "The server is overloaded", "type": "server_error", "code": None}})


# --------------------------------------------------------------------------- OpenAI Responses


def _responses_metadata() -> list[bytes]:
    pending = {"id": "resp_1", "object": "response", "status": "in_progress", "model": "gpt-4o-mini",
               "output": [], "usage": None}
    return sse(
        ("response.created", {"type": "response.created", "sequence_number": 0, "response": pending}),
        ("response.in_progress", {"type": "response.in_progress", "sequence_number": 1, "response": pending}),
        ("response.output_item.added", {"type": "response.output_item.added", "output_index": 0, "item": {
            "id": "msg_1", "type": "message", "status": "in_progress", "role": "assistant", "content": []}}),
        ("response.content_part.added", {"type": "response.content_part.added", "item_id": "msg_1",
                                         "output_index": 0, "content_index": 0,
                                         "part": {"type": "output_text", "text": "", "annotations": []}}),
    )


def _responses_content(pieces: list[str]) -> list[bytes]:
    return sse(*[("response.output_text.delta", {"type": "response.output_text.delta", "item_id": "msg_1",
                                                 "output_index": 0, "content_index": 0, "delta": p})
                 for p in pieces])


def _responses_tail() -> list[bytes]:
    done = {"id": "resp_1", "object": "response", "status": "completed", "model": "gpt-4o-mini",
            "output": [{"id": "msg_1", "type": "message", "status": "completed", "role": "assistant",
                        "content": [{"type": "output_text", "text": TEXT, "annotations": []}]}],
            "usage": {"input_tokens": 25, "output_tokens": OUTPUT_TOKENS, "total_tokens": 25 + OUTPUT_TOKENS,
                      "input_tokens_details": {"cached_tokens": 0},
                      "output_tokens_details": {"reasoning_tokens": 0}}}
    return sse(("response.completed", {"type": "response.completed", "response": done}))


def _responses_error() -> list[bytes]:
    return sse(("error", {"type": "error", "code": "server_error", "message": "The server had an error"}))


# --------------------------------------------------------------------------- Gemini


def _gemini_usage(out: int) -> dict[str, object]:
    return {"promptTokenCount": 25, "candidatesTokenCount": out, "totalTokenCount": 25 + out}


def _gemini_metadata() -> list[bytes]:
    # A first chunk with usage and no parts, as Gemini sends before thinking output.
    return sse({"candidates": [{"content": {"role": "model"}, "index": 0}], "usageMetadata": {
        "promptTokenCount": 25, "totalTokenCount": 25}, "modelVersion": "gemini-2.5-flash", "responseId": "r1"})


def _gemini_content(pieces: list[str]) -> list[bytes]:
    # Usage on every chunk; the early count is what the first text chunk reports.
    return sse(*[{"candidates": [{"content": {"parts": [{"text": p}], "role": "model"}, "index": 0}],
                  "usageMetadata": _gemini_usage(2), "modelVersion": "gemini-2.5-flash", "responseId": "r1"}
                 for p in pieces])


def _gemini_tail() -> list[bytes]:
    return sse({"candidates": [{"content": {"parts": [{"text": ""}], "role": "model"}, "finishReason": "STOP",
                                "index": 0}],
                "usageMetadata": _gemini_usage(OUTPUT_TOKENS), "modelVersion": "gemini-2.5-flash",
                "responseId": "r1"})


def _gemini_error() -> list[bytes]:
    return sse({"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}})


# --------------------------------------------------------------------------- Ollama


def _ollama_line(content: str, **extra: object) -> dict[str, object]:
    return {"model": "llama3.2", "created_at": "2025-01-01T00:00:00Z",
            "message": {"role": "assistant", "content": content}, "done": False, **extra}


def _ollama_metadata() -> list[bytes]:
    return ndjson(_ollama_line(""))


def _ollama_content(pieces: list[str]) -> list[bytes]:
    return ndjson(*[_ollama_line(p) for p in pieces])


def _ollama_tail() -> list[bytes]:
    return ndjson(_ollama_line("", done=True, done_reason="stop", total_duration=1000, prompt_eval_count=25,
                               eval_count=OUTPUT_TOKENS))


def _ollama_error() -> list[bytes]:
    return ndjson({"error": "server busy, please try again"})


VENDORS = {
    v.name: v
    for v in (
        Vendor("openai", "openai", "openai:gpt-4o-mini", _openai_metadata, _openai_content, _openai_tail,
               _openai_error),
        Vendor("openai-responses", "openai", "openai:gpt-4o-mini", _responses_metadata, _responses_content,
               _responses_tail, _responses_error, section=(("api", "responses"),)),
        Vendor("anthropic", "anthropic", "anthropic:claude-haiku-4-5", _anthropic_metadata, _anthropic_content,
               _anthropic_tail, _anthropic_error),
        Vendor("google", "google", "google:gemini-2.5-flash", _gemini_metadata, _gemini_content, _gemini_tail,
               _gemini_error),
        Vendor("ollama", "ollama", "ollama:llama3.2", _ollama_metadata, _ollama_content, _ollama_tail,
               _ollama_error, content_type="application/x-ndjson"),
    )
}
NAMES = list(VENDORS)


# --------------------------------------------------------------------------- 1. the retry window


@pytest.mark.parametrize("name", NAMES)
async def test_connection_cut_after_metadata_is_retried(name: str) -> None:
    vendor = VENDORS[name]
    async with HostileServer() as srv:
        srv.push(
            Reply.stream([*vendor.metadata(), Close(reset=True)], content_type=vendor.content_type, finish=False),
            Reply.stream([*vendor.metadata(), Close()], content_type=vendor.content_type, finish=False),
            vendor.reply(),
        )
        async with forge.Registry(config=vendor.config(srv, max_attempts=3)) as reg:
            response = await reg.stream(vendor.model, "hi").collect()
    assert response.text == TEXT
    assert response.attempts == 3
    assert len(srv.requests) == 3


@pytest.mark.parametrize("name", NAMES)
async def test_in_band_error_after_metadata_is_retried(name: str) -> None:
    vendor = VENDORS[name]
    assert vendor.in_band_error is not None
    async with HostileServer() as srv:
        srv.push(
            Reply.stream([*vendor.metadata(), *vendor.in_band_error()], content_type=vendor.content_type),
            vendor.reply(),
        )
        async with forge.Registry(config=vendor.config(srv, max_attempts=2)) as reg:
            response = await reg.stream(vendor.model, "hi").collect()
    assert response.text == TEXT
    assert response.attempts == 2
    assert response.usage.output_tokens == OUTPUT_TOKENS


@pytest.mark.parametrize("name", NAMES)
async def test_held_back_metadata_is_replayed_before_the_text(name: str) -> None:
    vendor = VENDORS[name]
    async with HostileServer() as srv:
        srv.push(vendor.reply())
        async with forge.Registry(config=vendor.config(srv)) as reg:
            stream = reg.stream(vendor.model, "hi")
            kinds = [ev.kind async for ev in stream.events()]
    assert kinds[-1] == "finish"
    assert stream.response.text == TEXT
    assert stream.response.usage.input_tokens == 25
    if name == "anthropic":  # message_start's usage reaches the caller first, as the vendor sent it
        assert kinds[0] == "usage"


@pytest.mark.parametrize("name", NAMES)
async def test_cut_after_text_is_not_retried(name: str) -> None:
    vendor = VENDORS[name]
    async with HostileServer() as srv:
        srv.push(Reply.stream([*vendor.metadata(), *vendor.content(PIECES[:2]), Close(reset=True)],
                              content_type=vendor.content_type, finish=False))
        async with forge.Registry(config=vendor.config(srv, max_attempts=3)) as reg:
            with pytest.raises(forge.StreamInterrupted) as info:
                await reg.stream(vendor.model, "hi").collect()
    assert info.value.partial_text == "".join(PIECES[:2])
    assert len(srv.requests) == 1


# --------------------------------------------------------------------------- 2. closing from anywhere


@pytest.mark.parametrize("name", NAMES)
async def test_aclose_from_another_task_closes_the_response(name: str) -> None:
    vendor = VENDORS[name]
    async with HostileServer() as srv:
        srv.push(Reply.stream([*vendor.metadata(), *vendor.content(PIECES[:1]), Hang()],
                              content_type=vendor.content_type, finish=False))
        async with forge.Registry(config=vendor.config(srv)) as reg:
            stream = reg.stream(vendor.model, "hi")
            first = asyncio.Event()
            got: list[str] = []

            async def produce() -> None:
                async for text in stream:
                    got.append(text)
                    first.set()

            producer = asyncio.create_task(produce())
            async with asyncio.timeout(5):
                await first.wait()
            await stream.aclose()  # from this task, while the producer waits for the next chunk
            await srv.wait_disconnects(1, within=2.0)
            async with asyncio.timeout(2):
                await producer  # ends quietly
    assert got == PIECES[:1]
    assert srv.hung == 1


@pytest.mark.parametrize("name", NAMES)
async def test_aclose_from_another_task_while_opening_stops_it(name: str) -> None:
    vendor = VENDORS[name]
    async with HostileServer() as srv:
        srv.push(Reply.stream([*vendor.metadata(), Hang()], content_type=vendor.content_type, finish=False))
        async with forge.Registry(config=vendor.config(srv, max_attempts=3)) as reg:
            stream = reg.stream(vendor.model, "hi")
            producer = asyncio.create_task(stream.collect())
            await srv.wait_requests(1)
            await stream.aclose()
            await srv.wait_disconnects(1, within=2.0)
            async with asyncio.timeout(2):
                with pytest.raises(RuntimeError, match="only after the stream has been fully consumed"):
                    await producer
    assert len(srv.requests) == 1  # a closed stream is not retried


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("options", [{"flush_interval": 0.01}, {"buffer_size": 100, "flush_interval": 0.01}])
async def test_break_out_of_a_buffered_stream_logs_nothing(name: str, options: dict[str, float]) -> None:
    # The autouse fixture in conftest.py fails the test on any error asyncio logs.
    vendor = VENDORS[name]
    async with HostileServer() as srv:
        srv.push(Reply.stream([*vendor.metadata(), *vendor.content(PIECES[:1]), Pause(0.3),
                               *vendor.content(PIECES[1:]), *vendor.tail()], content_type=vendor.content_type))
        async with forge.Registry(config=vendor.config(srv)) as reg:
            async for text in reg.stream(vendor.model, "hi", **options):  # type: ignore[arg-type]
                assert text == PIECES[0]
                break
            await srv.wait_disconnects(1, within=2.0)


@pytest.mark.parametrize("name", NAMES)
async def test_break_inside_async_with_logs_nothing(name: str) -> None:
    vendor = VENDORS[name]
    async with HostileServer() as srv:
        srv.push(Reply.stream([*vendor.metadata(), *vendor.content(PIECES[:1]), Pause(0.3),
                               *vendor.content(PIECES[1:]), *vendor.tail()], content_type=vendor.content_type))
        async with forge.Registry(config=vendor.config(srv)) as reg:
            async with reg.stream(vendor.model, "hi") as stream:
                async for _ in stream:
                    break
            await srv.wait_disconnects(1, within=2.0)


# --------------------------------------------------------------------------- 7. progress


@pytest.mark.parametrize("name", NAMES)
async def test_estimated_tokens_grow_with_the_text_and_end_exact(name: str) -> None:
    vendor = VENDORS[name]
    seen: list[forge.StreamProgress] = []
    async with HostileServer() as srv:
        if name == "google":  # usage (candidatesTokenCount 2) arrives on the first text chunk
            srv.push(Reply.stream([*vendor.content(PIECES), *vendor.tail()]))
        else:
            srv.push(vendor.reply())
        async with forge.Registry(config=vendor.config(srv)) as reg:
            stream = reg.stream(vendor.model, "hi", on_progress=seen.append)
            await stream.collect()
    during = [p.estimated_tokens for p in seen if p.chars < len(TEXT)]
    assert len(during) == len(PIECES) - 1
    assert all(a < b for a, b in itertools.pairwise(during)), during
    assert seen[-1].estimated_tokens == OUTPUT_TOKENS  # the final usage corrects the estimate
    assert stream.progress().estimated_tokens == OUTPUT_TOKENS


# --------------------------------------------------------------------------- 8. cost


@pytest.mark.parametrize("name", NAMES)
async def test_stream_response_carries_cost_like_invoke(name: str) -> None:
    vendor = VENDORS[name]
    async with HostileServer() as srv:
        srv.push(vendor.reply())
        async with forge.Registry(config=vendor.config(srv)) as reg:
            response = await reg.stream(vendor.model, "hi").collect()
    expected = cost_usd(vendor.provider, response.model, response.usage)
    assert expected is not None
    assert response.cost_usd == pytest.approx(expected)
    if vendor.provider != "ollama":
        assert response.cost_usd is not None and response.cost_usd > 0
