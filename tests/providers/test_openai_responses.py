"""OpenAIProvider with ``api = "responses"``: the real recordings, the official typed stream as oracle,
the emulator's Responses route, and the request mapping."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx2
import openai
import pytest

from forge.config import ProviderConfig
from forge.errors import BadRequestError, ConfigError, ProviderConnectionError, ServerError, ToolCallError
from forge.providers.openai import OpenAIProvider
from forge.providers.openai_responses import responses_params
from forge.testing import Emulator, Reply
from forge.types import Message, ReasoningBlock, Request, ResponseFormat, StreamEvent, Tool, ToolCall, Usage
from tests.cassette_replay import ClosingStream, Interaction, ReplayTransport, load_cassette

MakeProvider = Callable[[httpx2.AsyncBaseTransport], OpenAIProvider]
WEATHER = Tool(
    "get_weather",
    "Weather by city",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
PONG = Request(
    model="gpt-5.5",
    messages=(Message("user", "Reply with exactly: pong"),),
    reasoning_effort="low",
    extra={"include": ["reasoning.encrypted_content"], "store": False},
)


def _config() -> ProviderConfig:
    return ProviderConfig(name="openai", api_key="sk-test", options={"api": "responses"})


@pytest.fixture
async def make_provider() -> AsyncIterator[MakeProvider]:
    made: list[OpenAIProvider] = []

    def build(transport: httpx2.AsyncBaseTransport) -> OpenAIProvider:
        provider = OpenAIProvider(_config(), http_client=httpx2.AsyncClient(transport=transport))
        made.append(provider)
        return provider

    yield build
    for provider in made:
        await provider.aclose()


async def collect(events: AsyncIterator[StreamEvent]) -> list[StreamEvent]:
    return [ev async for ev in events]


def as_tuples(events: list[StreamEvent]) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    for ev in events:
        if ev.kind == "reasoning":  # a signature holds the reasoning items as JSON: compare them parsed
            out.append((ev.kind, ev.text, json.loads(ev.signature) if ev.signature else None))
        elif ev.kind in ("text", "tool_call_delta"):
            out.append((ev.kind, ev.index, ev.text))
        elif ev.kind in ("tool_call_start", "tool_call_done"):
            out.append((ev.kind, ev.index, ev.tool_call))
        elif ev.kind == "reasoning_done":
            out.append((ev.kind, ev.index, ev.reasoning))
        elif ev.kind == "usage":
            out.append((ev.kind, ev.usage))
        else:
            out.append((ev.kind, ev.text, ev.finish_reason))
    return out


async def typed_events(interaction: Interaction) -> list[tuple[Any, ...]]:
    """Expected events, built from the official client's typed ``ResponseStreamEvent`` objects."""
    client = openai.AsyncOpenAI(
        api_key="sk-test", max_retries=0, http_client=httpx2.AsyncClient(transport=ReplayTransport([interaction]))
    )
    out: list[tuple[Any, ...]] = []
    calls: dict[str, tuple[int, str, str]] = {}
    items: list[dict[str, Any]] = []
    reasoned = refused = text_seen = False
    finish: str | None = None
    response_id = ""
    try:
        stream = await client.responses.create(model="m", input="x", stream=True)
        async with stream:
            async for ev in stream:
                if ev.type in ("response.created", "response.in_progress"):
                    response_id = ev.response.id
                elif ev.type == "response.output_text.delta" and ev.delta:
                    text_seen = True
                    out.append(("text", 0, ev.delta))
                elif ev.type == "response.refusal.delta" and ev.delta:
                    refused = True
                    out.append(("text", 0, ev.delta))
                elif ev.type == "response.output_item.added" and ev.item.type == "function_call":
                    calls[ev.item.id or ""] = (len(calls), ev.item.call_id, ev.item.name)
                    out.append(("tool_call_start", len(calls) - 1, ToolCall(ev.item.call_id, ev.item.name)))
                elif ev.type == "response.function_call_arguments.delta" and ev.delta:
                    out.append(("tool_call_delta", calls[ev.item_id][0], ev.delta))
                elif ev.type in ("response.reasoning_summary_text.delta", "response.reasoning_text.delta"):
                    reasoned = True
                    out.append(("reasoning", ev.delta, None))
                elif ev.type == "response.reasoning_summary_part.added" and reasoned:
                    out.append(("reasoning", "\n\n", None))
                elif ev.type == "response.output_item.done" and ev.item.type == "function_call":
                    index = calls[ev.item.id or ""][0]
                    done = ToolCall(ev.item.call_id, ev.item.name, json.loads(ev.item.arguments), ev.item.arguments,
                                    item_id=ev.item.id)
                    out.append(("tool_call_done", index, done))
                elif ev.type == "response.output_item.done" and ev.item.type == "reasoning":
                    item: dict[str, Any] = {
                        "type": "reasoning",
                        "id": ev.item.id,
                        "summary": [s.model_dump() for s in ev.item.summary],
                    }
                    if ev.item.encrypted_content:
                        item["encrypted_content"] = ev.item.encrypted_content
                    items.append(item)
                    summary = tuple(s.text for s in ev.item.summary)
                    block = ReasoningBlock("openai", "encrypted", "\n\n".join(summary),
                                           data=ev.item.encrypted_content or None, id=ev.item.id,
                                           parts=summary, position=ev.output_index)
                    out.append(("reasoning_done", len(items) - 1, block))
                elif ev.type in ("response.completed", "response.incomplete"):
                    response = ev.response
                    if items:
                        out.append(("reasoning", "", items))
                    if response.usage is not None:
                        u = response.usage
                        out.append((
                            "usage",
                            Usage(
                                u.input_tokens,
                                u.output_tokens,
                                u.input_tokens_details.cached_tokens or 0,
                                getattr(u.input_tokens_details, "cache_write_tokens", 0) or 0,
                                u.output_tokens_details.reasoning_tokens or 0,
                            ),
                        ))
                    if response.status == "incomplete":
                        details = response.incomplete_details
                        finish = "content_filter" if details and details.reason == "content_filter" else "length"
                    elif refused and not text_seen:
                        finish = "content_filter"
                    else:
                        finish = "tool_calls" if calls else "stop"
    finally:
        await client.close()
    out.append(("finish", response_id, finish))
    return out


# --------------------------------------------------------------------------- the real recordings


@pytest.mark.asyncio
@pytest.mark.parametrize("split", [None, 7])
async def test_recorded_stream_equals_typed_stream_and_recording(make_provider: MakeProvider, split: int | None) -> None:
    interaction = load_cassette("openai/responses-stream-basic.yaml")[0]
    transport = ReplayTransport([interaction], split=split)
    events = await collect(make_provider(transport).stream(PONG))
    assert as_tuples(events) == await typed_events(interaction)
    completed = json.loads(interaction.text().split("event: response.completed\ndata: ")[1])["response"]
    assert "".join(e.text for e in events if e.kind == "text") == completed["output"][0]["content"][0]["text"]
    assert [e.usage for e in events if e.kind == "usage"] == [Usage(11, 5, 0, 0, 0)]
    assert events[-1] == StreamEvent("finish", completed["id"], finish_reason="stop")
    assert all(stream.closed for stream in transport.streams)


@pytest.mark.asyncio
async def test_recorded_nonstream_equals_recording(make_provider: MakeProvider) -> None:
    interaction = load_cassette("openai/responses-nonstream-basic-gzip.yaml")[0]
    response = await make_provider(ReplayTransport([interaction])).complete(PONG)
    data = interaction.json()
    assert response.text == data["output"][0]["content"][0]["text"] == "pong"
    assert (response.finish_reason, response.id) == ("stop", data["id"])
    assert response.usage == Usage(input_tokens=11, output_tokens=5, cached_input_tokens=0, reasoning_tokens=0)
    assert response.tool_calls == () and response.reasoning is None
    assert response.raw == data


@pytest.mark.asyncio
@pytest.mark.parametrize("name", ["openai/responses-nonstream-basic-gzip.yaml", "openai/responses-stream-basic.yaml"])
async def test_request_body_matches_recording(make_provider: MakeProvider, name: str) -> None:
    interaction = load_cassette(name)[0]
    transport = ReplayTransport([interaction])
    provider = make_provider(transport)
    recorded = interaction.request_json()
    if recorded["stream"]:
        await collect(provider.stream(PONG))
    else:
        await provider.complete(PONG)
    expected = {k: v for k, v in recorded.items() if not (k == "stream" and v is False)}
    assert transport.sent_json() == expected
    assert transport.requests[0].url.path == "/v1/responses"


# --------------------------------------------------------------------------- emulator wire, both paths


async def _emulator_interaction(reply: Reply, body: dict[str, Any]) -> Interaction:
    """One real Responses exchange with the emulator, kept as an Interaction to replay to both paths."""
    async with Emulator() as emu:
        emu.script(reply)
        async with httpx2.AsyncClient() as http:
            resp = await http.post(emu.url + "/v1/responses", json=body, headers={"authorization": "Bearer k"})
    return Interaction(
        "POST", emu.url + "/v1/responses", json.dumps(body), resp.status_code, list(resp.headers.items()), resp.content
    )


EMULATED = [
    pytest.param(Reply(text="Hello there", chunk_count=3), id="text"),
    pytest.param(
        Reply(text="", tool_calls=[("get_weather", {"city": "Paris"}), ("get_weather", {"city": "Rome"})]),
        id="parallel-tool-calls",
    ),
    pytest.param(Reply(text="It is sunny.", reasoning="Look it up. Then answer.", reasoning_tokens=7), id="reasoning"),
    pytest.param(Reply(text="Hello there", chunk_count=4, input_tokens=20, cached_tokens=8), id="cached"),
]


@pytest.mark.asyncio
@pytest.mark.parametrize("reply", EMULATED)
async def test_emulated_stream_equals_typed_stream(make_provider: MakeProvider, reply: Reply) -> None:
    body = {"model": "gpt-x", "input": "weather?", "stream": True, "reasoning": {"effort": "low", "summary": "auto"}}
    interaction = await _emulator_interaction(reply, body)
    for split in (None, 5):
        events = await collect(make_provider(ReplayTransport([interaction], split=split)).stream(PONG))
        assert as_tuples(events) == await typed_events(interaction)


@pytest.mark.asyncio
async def test_emulated_stream_and_complete_give_the_same_response() -> None:
    reply = Reply(text="Sunny.", reasoning="Check the sky.", tool_calls=[("get_weather", {"city": "Paris"})])
    async with Emulator() as emu:
        emu.script(reply, times=2)
        provider = OpenAIProvider(
            ProviderConfig(name="openai", api_key="k", base_url=emu.url + "/v1", options={"api": "responses"})
        )
        try:
            request = Request(model="gpt-x", messages=(Message("user", "weather?"),), tools=(WEATHER,))
            whole = await provider.complete(request)
            events = await collect(provider.stream(request))
        finally:
            await provider.aclose()
    assert whole.text == "".join(e.text for e in events if e.kind == "text") == "Sunny."
    assert whole.reasoning == "".join(e.text for e in events if e.kind == "reasoning") == "Check the sky."
    streamed = [e.tool_call for e in events if e.kind == "tool_call_done"]
    assert [(c.name, c.arguments) for c in whole.tool_calls] == [(c.name, c.arguments) for c in streamed if c]
    assert whole.tool_calls[0].arguments == {"city": "Paris"}
    assert whole.finish_reason == events[-1].finish_reason == "tool_calls"
    assert whole.usage.reasoning_tokens == next(e.usage for e in events if e.usage).reasoning_tokens > 0
    assert whole.reasoning_signature is not None and json.loads(whole.reasoning_signature)[0]["type"] == "reasoning"


# --------------------------------------------------------------------------- request mapping


def test_request_mapping() -> None:
    request = Request(
        model="gpt-x",
        system="Be brief.",
        messages=(
            Message("user", "weather?"),
            Message(
                "assistant",
                "Checking.",
                tool_calls=(ToolCall("call_1", "get_weather", {"city": "Paris"}, '{"city": "Paris"}'),),
                reasoning_signature=json.dumps([{"type": "reasoning", "id": "rs_1", "summary": []}]),
            ),
            Message("tool", "sunny", tool_call_id="call_1"),
        ),
        max_tokens=50,
        temperature=0.2,
        top_p=0.9,
        seed=7,
        response_format=ResponseFormat("json_schema", {"type": "object"}, "answer"),
        tools=(WEATHER,),
        tool_choice="get_weather",
        reasoning_effort="high",
        extra={"previous_response_id": "resp_0", "reasoning": {"summary": "auto"}},
    )
    params = responses_params(request)
    assert params == {
        "model": "gpt-x",
        "instructions": "Be brief.",
        "input": [
            {"role": "user", "content": "weather?"},
            # previous_response_id: the server has the reasoning item; sending it would duplicate it
            {"role": "assistant", "content": "Checking."},
            {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": '{"city": "Paris"}'},
            {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
        ],
        "max_output_tokens": 50,
        "temperature": 0.2,
        "top_p": 0.9,
        "text": {"format": {"type": "json_schema", "name": "answer", "schema": {"type": "object"}, "strict": True}},
        "tools": [
            {
                "type": "function",
                "name": "get_weather",
                "description": "Weather by city",
                "parameters": dict(WEATHER.parameters),
                "strict": False,
            }
        ],
        "tool_choice": {"type": "function", "name": "get_weather"},
        "reasoning": {"effort": "high", "summary": "auto"},
        "extra_body": {"previous_response_id": "resp_0"},
    }


def test_reasoning_budget_maps_to_an_effort_tier() -> None:
    base = Request(model="m", messages=(Message("user", "x"),))
    efforts = [
        responses_params(Request(model="m", messages=base.messages, reasoning_budget=b))["reasoning"]["effort"]
        for b in (0, 1024, 8192, 30000)
    ]
    assert efforts == ["none", "low", "medium", "high"]
    assert "reasoning" not in responses_params(base)


def test_stop_cannot_be_expressed() -> None:
    with pytest.raises(BadRequestError, match=r"no stop sequences.*stop=\['END'\]"):
        responses_params(Request(model="m", messages=(Message("user", "x"),), stop=("END",)))


def test_other_providers_signatures_are_not_sent_as_reasoning_items() -> None:
    call = ToolCall("c1", "f", {})
    message = Message("assistant", "", tool_calls=(call,), reasoning_signature="EqQBCkgIARABGAIiQ...")
    params = responses_params(Request(model="m", messages=(Message("user", "x"), message)))
    assert [item.get("type") for item in params["input"]] == [None, "function_call"]


def test_unknown_api_is_config_error() -> None:
    with pytest.raises(ConfigError, match="'chat'.*'responses'"):
        OpenAIProvider(ProviderConfig(name="openai", api_key="k", options={"api": "assistants"}))


# --------------------------------------------------------------------------- results and errors


def _sse(*events: dict[str, Any]) -> bytes:
    return b"".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events)


def _transport(body: bytes) -> httpx2.MockTransport:
    return httpx2.MockTransport(
        lambda request: httpx2.Response(200, headers={"content-type": "text/event-stream"}, stream=ClosingStream([body]))
    )


CREATED = {"type": "response.created", "response": {"id": "resp_1", "status": "in_progress"}}


@pytest.mark.asyncio
async def test_failed_response_raises_classified_error(make_provider: MakeProvider) -> None:
    failed = {"type": "response.failed", "response": {"id": "resp_1", "status": "failed",
                                                      "error": {"code": "server_error", "message": "boom"}}}
    with pytest.raises(ServerError, match="openai said: boom"):
        await collect(make_provider(_transport(_sse(CREATED, failed))).stream(PONG))


@pytest.mark.asyncio
async def test_error_event_raises_classified_error(make_provider: MakeProvider) -> None:
    error = {"type": "error", "code": "rate_limit_exceeded", "message": "slow down", "param": None}
    with pytest.raises(Exception, match="slow down") as info:
        await collect(make_provider(_transport(_sse(CREATED, error))).stream(PONG))
    assert type(info.value).__name__ == "RateLimitError"


@pytest.mark.asyncio
async def test_stream_without_terminal_event_is_connection_error(make_provider: MakeProvider) -> None:
    delta = {"type": "response.output_text.delta", "delta": "po", "item_id": "msg_1"}
    with pytest.raises(ProviderConnectionError):
        await collect(make_provider(_transport(_sse(CREATED, delta))).stream(PONG))


@pytest.mark.asyncio
async def test_incomplete_response_is_length(make_provider: MakeProvider) -> None:
    done = {"type": "response.incomplete", "response": {
        "id": "resp_1", "status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"},
        "usage": {"input_tokens": 3, "output_tokens": 2, "output_tokens_details": {"reasoning_tokens": 1}}}}
    delta = {"type": "response.output_text.delta", "delta": "po", "item_id": "msg_1"}
    events = await collect(make_provider(_transport(_sse(CREATED, delta, done))).stream(PONG))
    assert events[-2].usage == Usage(3, 2, reasoning_tokens=1)
    assert events[-1] == StreamEvent("finish", "resp_1", finish_reason="length")


@pytest.mark.asyncio
async def test_invalid_tool_arguments_raise_tool_call_error_with_the_raw_text() -> None:
    async with Emulator() as emu:
        emu.script(Reply(text="", tool_calls=[{"name": "get_weather", "arguments": '{"city": "Par'}]), times=2)
        provider = OpenAIProvider(ProviderConfig(name="openai", api_key="k", base_url=emu.url + "/v1",
                                                 options={"api": "responses"}))
        try:
            request = Request(model="gpt-x", messages=(Message("user", "x"),), tools=(WEATHER,))
            with pytest.raises(ToolCallError) as whole:
                await provider.complete(request)
            with pytest.raises(ToolCallError) as streamed:
                await collect(provider.stream(request))
        finally:
            await provider.aclose()
    for info in (whole, streamed):
        assert info.value.raw_arguments == '{"city": "Par'
        assert info.value.tool_name == "get_weather"
        assert not info.value.retryable
