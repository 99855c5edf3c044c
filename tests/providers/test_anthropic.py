"""AnthropicProvider against the real Anthropic recordings, the official client's typed stream, and faults."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import anthropic
import httpx2
import pytest

from forge.config import ProviderConfig
from forge.errors import (
    AuthenticationError,
    BadRequestError,
    ConfigError,
    ContextLengthError,
    ForgeError,
    NotFoundError,
    OverloadedError,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeout,
    RateLimitError,
    ServerError,
)
from forge.providers.anthropic import DEFAULT_MAX_TOKENS, AnthropicProvider
from forge.types import Message, Request, ResponseFormat, StreamEvent, Tool, ToolCall, Usage
from tests.cassette_replay import (
    ClosingStream,
    Interaction,
    ReplayTransport,
    load_cassette,
    recorded_interactions,
)

MakeProvider = Callable[[httpx2.AsyncBaseTransport], AnthropicProvider]
REQUEST = Request(model="claude-x", messages=(Message("user", "x"),))

_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

pytestmark = pytest.mark.filterwarnings("ignore:The model .* is deprecated:DeprecationWarning")


@pytest.fixture
async def make_provider() -> AsyncIterator[MakeProvider]:
    made: list[AnthropicProvider] = []

    def build(transport: httpx2.AsyncBaseTransport) -> AnthropicProvider:
        provider = AnthropicProvider(
            ProviderConfig(name="anthropic", api_key="sk-ant-test"),
            http_client=httpx2.AsyncClient(transport=transport),
        )
        made.append(provider)
        return provider

    yield build
    for provider in made:
        await provider.aclose()


def _text(content: str | list[dict[str, Any]]) -> str:
    if isinstance(content, str):
        return content
    return "".join(block["text"] for block in content if block["type"] == "text")


def request_from_body(body: dict[str, Any]) -> Request:
    """The forge Request that should produce a recorded Messages body."""
    fmt = None
    if config := body.get("output_config"):
        fmt = ResponseFormat("json_schema", config["format"]["schema"])
    return Request(
        model=body["model"],
        messages=tuple(Message(m["role"], _text(m["content"])) for m in body["messages"]),
        system=_text(body["system"]) if "system" in body else None,
        max_tokens=body["max_tokens"],
        temperature=body.get("temperature"),
        response_format=fmt,
        tools=tuple(
            Tool(t["name"], t.get("description", ""), t["input_schema"]) for t in body.get("tools", ())
        ),
    )


def expected_wire_body(body: dict[str, Any]) -> dict[str, Any]:
    """The recorded body as forge sends it: plain-string contents (no per-block cache_control)."""
    expected = dict(body)
    if expected.get("stream") is False:
        del expected["stream"]
    expected["messages"] = [{"role": m["role"], "content": _text(m["content"])} for m in body["messages"]]
    if "system" in expected:
        expected["system"] = _text(expected["system"])
    if "tools" in expected:
        expected["tools"] = [
            {k: v for k, v in t.items() if not (k == "description" and not v)} for t in expected["tools"]
        ]
    return expected


def expected_usage(u: dict[str, Any]) -> Usage:
    written = u.get("cache_creation_input_tokens") or 0
    read = u.get("cache_read_input_tokens") or 0
    return Usage(u["input_tokens"] + written + read, u["output_tokens"], read, written)


async def collect(events: AsyncIterator[StreamEvent]) -> list[StreamEvent]:
    return [ev async for ev in events]


def as_tuples(events: list[StreamEvent]) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    for ev in events:
        if ev.kind in ("text", "reasoning", "tool_call_delta"):
            out.append((ev.kind, ev.index, ev.text))
        elif ev.kind in ("tool_call_start", "tool_call_done"):
            out.append((ev.kind, ev.index, ev.tool_call))
        elif ev.kind == "usage":
            out.append((ev.kind, ev.usage))
        else:
            out.append((ev.kind, ev.text, ev.finish_reason))
    return out


def typed_client(interaction: Interaction) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(
        api_key="sk-ant-test",
        max_retries=0,
        http_client=httpx2.AsyncClient(transport=ReplayTransport([interaction])),
    )


async def typed_events(interaction: Interaction) -> list[tuple[Any, ...]]:
    """Expected events, built from the official client's typed RawMessageStreamEvent stream."""
    client = typed_client(interaction)
    out: list[tuple[Any, ...]] = []
    tools: dict[int, list[Any]] = {}  # block index -> [ordinal, id, name, input, json]
    start_usage: Any = None
    message_id, finish = "", None
    try:
        stream = await client.messages.create(
            model="m", max_tokens=1, messages=[{"role": "user", "content": "x"}], stream=True
        )
        async with stream:
            async for ev in stream:
                if ev.type == "message_start":
                    message_id, start_usage = ev.message.id, ev.message.usage
                    out.append(("usage", _typed_usage(start_usage, start_usage)))
                elif ev.type == "content_block_start" and ev.content_block.type == "tool_use":
                    block = ev.content_block
                    tools[ev.index] = [
                        len([t for t in out if t[0] == "tool_call_start"]),
                        block.id,
                        block.name,
                        block.input,
                        "",
                    ]
                    out.append(("tool_call_start", tools[ev.index][0], ToolCall(block.id, block.name)))
                elif ev.type == "content_block_start" and ev.content_block.type == "text":
                    if ev.content_block.text:
                        out.append(("text", 0, ev.content_block.text))
                elif ev.type == "content_block_start" and ev.content_block.type == "thinking":
                    if ev.content_block.thinking:
                        out.append(("reasoning", 0, ev.content_block.thinking))
                elif ev.type == "content_block_delta":
                    delta = ev.delta
                    if delta.type == "text_delta" and delta.text:
                        out.append(("text", 0, delta.text))
                    elif delta.type == "thinking_delta" and delta.thinking:
                        out.append(("reasoning", 0, delta.thinking))
                    elif delta.type == "signature_delta":
                        out.append(("reasoning", 0, ""))
                    elif delta.type == "input_json_delta" and delta.partial_json:
                        tools[ev.index][4] += delta.partial_json
                        out.append(("tool_call_delta", tools[ev.index][0], delta.partial_json))
                elif ev.type == "content_block_stop" and ev.index in tools:
                    ordinal, call_id, name, start_input, raw = tools.pop(ev.index)
                    raw = raw or json.dumps(start_input)
                    out.append(("tool_call_done", ordinal, ToolCall(call_id, name, _loads(raw), raw)))
                elif ev.type == "message_delta":
                    reason = ev.delta.stop_reason
                    finish = _FINISH.get(reason, "stop") if reason else finish
                    out.append(("usage", _typed_usage(start_usage, ev.usage)))
    finally:
        await client.close()
    out.append(("finish", message_id, finish or "stop"))
    return out


def _loads(raw: str) -> Any:
    try:
        value = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _typed_usage(start: Any, latest: Any) -> Usage:
    def pick(name: str) -> int:
        value = getattr(latest, name, None)
        return int(value if value is not None else getattr(start, name, None) or 0)

    read, written = pick("cache_read_input_tokens"), pick("cache_creation_input_tokens")
    return Usage(pick("input_tokens") + read + written, pick("output_tokens"), read, written)


# --------------------------------------------------------------------------- every recording


def _message_recordings(*, stream: bool | None = None) -> list[Any]:
    """Every recorded Messages call (recordings added later are picked up too)."""
    return [
        pytest.param(it, id=f"{name}[{i}]")
        for name, i, it in recorded_interactions("anthropic")
        if it.method == "POST"
        and it.path == "/v1/messages"
        and (stream is None or (_is_stream(it) and it.status == 200) == stream)
    ]


def _is_stream(interaction: Interaction) -> bool:
    body = interaction.request_json()
    return bool(isinstance(body, dict) and body.get("stream"))


def expected_response(data: dict[str, Any]) -> tuple[Any, ...]:
    """(text, finish, usage, tool calls, reasoning, id) read straight off a recorded message."""
    blocks = data.get("content") or []
    text = "".join(b["text"] for b in blocks if b["type"] == "text")
    calls = tuple(
        ToolCall(b["id"], b["name"], b["input"], json.dumps(b["input"]))
        for b in blocks
        if b["type"] == "tool_use"
    )
    thinking = [b["thinking"] for b in blocks if b["type"] == "thinking"]
    finish = _FINISH.get(data["stop_reason"], "stop") if data.get("stop_reason") else None
    usage = expected_usage(data["usage"]) if data.get("usage") else Usage()
    return text, finish, usage, calls, ("".join(thinking) if thinking else None), data.get("id")


def _status_class(status: int) -> type[ProviderError]:
    return {
        401: AuthenticationError,
        403: AuthenticationError,
        404: NotFoundError,
        408: ProviderTimeout,
        409: ServerError,
        413: ContextLengthError,
        429: RateLimitError,
        503: OverloadedError,
        529: OverloadedError,
    }.get(status, ServerError if status >= 500 else BadRequestError)


@pytest.mark.asyncio
@pytest.mark.parametrize("interaction", _message_recordings())
@pytest.mark.parametrize("split", [None, 5])
async def test_every_messages_recording_replays(
    make_provider: MakeProvider, interaction: Interaction, split: int | None
) -> None:
    """Text, finish reason, usage, tool calls and errors equal what the recording holds.

    Streams are checked against the official client's typed stream over the same bytes.
    """
    transport = ReplayTransport([interaction], split=split)
    provider = make_provider(transport)
    if interaction.status >= 400:
        with pytest.raises(_status_class(interaction.status)) as info:
            if _is_stream(interaction):
                await collect(provider.stream(REQUEST))
            else:
                await provider.complete(REQUEST)
        err = info.value
        body = interaction.json()
        assert (err.status, err.code) == (interaction.status, body["error"]["type"])
        assert err.request_id == (interaction.header("request-id") or body.get("request_id"))
        assert err.message == f"anthropic said: {body['error']['message']}"
    elif _is_stream(interaction):
        events = await collect(provider.stream(REQUEST))
        assert as_tuples(events) == await typed_events(interaction)
        assert [e.kind for e in events].count("finish") == 1 and events[-1].kind == "finish"
    else:
        response = await provider.complete(REQUEST)
        got = (
            response.text,
            response.finish_reason,
            response.usage,
            response.tool_calls,
            response.reasoning,
            response.id,
        )
        assert got == expected_response(interaction.json())
        assert response.raw == interaction.json()
    assert all(stream.closed for stream in transport.streams)


WIRE = [
    ("anthropic/nonstream-basic-gzip.yaml", 0),
    ("anthropic/nonstream-structured-output-config.yaml", 0),
    ("anthropic/stream-basic.yaml", 0),
    ("anthropic/stream-cache-create-then-read.yaml", 0),
    ("anthropic/stream-cache-create-then-read.yaml", 1),
    ("anthropic/stream-tools-gzip.yaml", 0),
]


@pytest.mark.asyncio
@pytest.mark.parametrize(("name", "index"), WIRE)
async def test_request_body_matches_recording(make_provider: MakeProvider, name: str, index: int) -> None:
    """The forge Request equivalent to a recorded call puts the recorded JSON on the wire."""
    interaction = load_cassette(name)[index]
    transport = ReplayTransport([interaction])
    provider = make_provider(transport)
    recorded = interaction.request_json()
    if _is_stream(interaction):
        await collect(provider.stream(request_from_body(recorded)))
    else:
        await provider.complete(request_from_body(recorded))
    assert transport.sent_json() == expected_wire_body(recorded)


# --------------------------------------------------------------------------- specific recordings


@pytest.mark.asyncio
async def test_complete_basic(make_provider: MakeProvider) -> None:
    transport = ReplayTransport(load_cassette("anthropic/nonstream-basic-gzip.yaml"))
    response = await make_provider(transport).complete(
        Request(model="claude-sonnet-4-0", messages=(Message("user", "What is 4200 + 42?"),))
    )
    assert (response.text, response.finish_reason) == ("4200 + 42 = 4242", "stop")
    assert response.usage == Usage(input_tokens=17, output_tokens=15)
    assert transport.sent_json()["max_tokens"] == DEFAULT_MAX_TOKENS
    assert transport.requests[0].url.path == "/v1/messages"
    assert transport.requests[0].headers["authorization"] == "Bearer sk-ant-test"


@pytest.mark.asyncio
async def test_complete_structured_output(make_provider: MakeProvider) -> None:
    transport = ReplayTransport(load_cassette("anthropic/nonstream-structured-output-config.yaml"))
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    response = await make_provider(transport).complete(
        Request(
            model="claude-sonnet-4-5",
            messages=(Message("user", "London?"),),
            response_format=ResponseFormat("json_schema", schema),
        )
    )
    # Anthropic requires every object schema to be closed; forge closes the ones that do not say.
    closed = {**schema, "additionalProperties": False}
    assert transport.sent_json()["output_config"] == {"format": {"type": "json_schema", "schema": closed}}
    assert json.loads(response.text)["city"] == "London"


@pytest.mark.asyncio
async def test_plain_json_is_an_instruction_not_an_open_schema(make_provider: MakeProvider) -> None:
    # Structured outputs refuse an open {"type": "object"}; plain JSON mode has no schema to give.
    transport = ReplayTransport(load_cassette("anthropic/nonstream-structured-output-config.yaml"))
    await make_provider(transport).complete(
        Request(
            model="claude-sonnet-4-5",
            messages=(Message("user", "x"),),
            system="Be brief.",
            response_format=ResponseFormat("json"),
        )
    )
    sent = transport.sent_json()
    assert "output_config" not in sent
    assert sent["system"].startswith("Be brief.\n\n")
    assert "single valid JSON object" in sent["system"]


def test_nested_object_schemas_are_closed_but_explicit_choices_kept() -> None:
    from forge.providers.anthropic import _closed

    schema = {
        "type": "object",
        "properties": {
            "items": {"type": "array", "items": {"type": "object", "properties": {"a": {"type": "string"}}}},
            "meta": {"type": "object", "additionalProperties": True},
        },
    }
    out = _closed(schema)
    assert out["additionalProperties"] is False
    assert out["properties"]["items"]["items"]["additionalProperties"] is False
    assert out["properties"]["meta"]["additionalProperties"] is True
    assert "additionalProperties" not in schema  # the caller's schema is not mutated


@pytest.mark.asyncio
@pytest.mark.parametrize("interaction", _message_recordings(stream=True))
async def test_stream_reassembles_to_the_official_final_message(
    make_provider: MakeProvider, interaction: Interaction
) -> None:
    events = await collect(make_provider(ReplayTransport([interaction])).stream(REQUEST))

    client = typed_client(interaction)
    try:
        async with client.messages.stream(
            model="m", max_tokens=1, messages=[{"role": "user", "content": "x"}]
        ) as s:
            final = await s.get_final_message()
    finally:
        await client.close()
    assert "".join(e.text for e in events if e.kind == "text") == "".join(
        b.text for b in final.content if b.type == "text"
    )
    assert [
        (c.id, c.name, c.arguments) for e in events if e.kind == "tool_call_done" and (c := e.tool_call)
    ] == [(b.id, b.name, b.input) for b in final.content if b.type == "tool_use"]
    assert [e.usage for e in events if e.kind == "usage"][-1] == expected_usage(final.usage.model_dump())
    assert (events[-1].kind, events[-1].text) == ("finish", final.id)
    assert events[-1].finish_reason == _FINISH[final.stop_reason or ""]


@pytest.mark.asyncio
async def test_stream_cache_write_then_read(make_provider: MakeProvider) -> None:
    interactions = load_cassette("anthropic/stream-cache-create-then-read.yaml")
    provider = make_provider(ReplayTransport(interactions))
    finals = []
    for interaction in interactions:
        events = await collect(provider.stream(request_from_body(interaction.request_json())))
        finals.append([e.usage for e in events if e.kind == "usage"][-1])
    assert finals[0] is not None and finals[1] is not None
    assert (finals[0].cache_write_tokens, finals[0].cached_input_tokens) == (1165, 0)
    assert (finals[1].cache_write_tokens, finals[1].cached_input_tokens) == (0, 1165)
    assert finals[1].input_tokens == 4 + 1165


@pytest.mark.asyncio
async def test_stream_tool_call(make_provider: MakeProvider) -> None:
    interaction = load_cassette("anthropic/stream-tools-gzip.yaml")[0]
    events = await collect(
        make_provider(ReplayTransport([interaction])).stream(request_from_body(interaction.request_json()))
    )
    assert [e.kind for e in events] == ["usage", "tool_call_start", "tool_call_done", "usage", "finish"]
    assert events[2].tool_call == ToolCall(
        "toolu_01CzN6riCPqw4pVSuTd9Dwn7", "pelican_name_generator", {}, "{}"
    )
    assert events[-1].finish_reason == "tool_calls"
    assert events[-2].usage == Usage(543, 40)


# --------------------------------------------------------------------------- recorded errors


@pytest.mark.asyncio
async def test_recorded_401_on_stream_is_authentication_error(make_provider: MakeProvider) -> None:
    transport = ReplayTransport(load_cassette("anthropic/error-401-stream.yaml"))
    stream = make_provider(transport).stream(
        Request(model="claude-sonnet-4-0", messages=(Message("user", "x"),))
    )
    assert transport.requests == []  # nothing is sent before the first __anext__
    with pytest.raises(AuthenticationError) as info:
        await anext(stream)
    err = info.value
    assert (err.status, err.code) == (401, "authentication_error")
    assert err.request_id == "req_011CWdMFGmmtqDd5uETFt98k"
    assert err.message == "anthropic said: invalid x-api-key"
    assert isinstance(err.__cause__, anthropic.AuthenticationError)


@pytest.mark.asyncio
async def test_recorded_400_is_bad_request(make_provider: MakeProvider) -> None:
    transport = ReplayTransport(load_cassette("anthropic/error-400-invalid-request.yaml"))
    with pytest.raises(BadRequestError) as info:
        await make_provider(transport).complete(
            Request(model="claude-3-opus-20240229", messages=(Message("user", "x"),))
        )
    assert type(info.value) is BadRequestError
    assert info.value.message == "anthropic said: messages.0: Input does not match the expected shape."
    assert info.value.request_id == "req_01BjwuzUpsYgKjQJguJyvKb3"


# --------------------------------------------------------------------------- classify

STATUS_CLASSES: list[tuple[int, str, type[ProviderError]]] = [
    (400, "invalid_request_error", BadRequestError),
    (401, "authentication_error", AuthenticationError),
    (403, "permission_error", AuthenticationError),
    (404, "not_found_error", NotFoundError),
    (408, "timeout_error", ProviderTimeout),
    (409, "conflict_error", ServerError),
    (413, "request_too_large", ContextLengthError),
    (422, "invalid_request_error", BadRequestError),
    (429, "rate_limit_error", RateLimitError),
    (500, "api_error", ServerError),
    (503, "api_error", OverloadedError),
    (529, "overloaded_error", OverloadedError),
]


def status_transport(
    status: int, error_type: str, message: str = "boom", headers: dict[str, str] | None = None
) -> httpx2.MockTransport:
    body = {"type": "error", "error": {"type": error_type, "message": message}}
    return httpx2.MockTransport(lambda request: httpx2.Response(status, headers=headers or {}, json=body))


@pytest.mark.asyncio
@pytest.mark.parametrize(("status", "error_type", "cls"), STATUS_CLASSES)
async def test_status_maps_to_forge_error(
    make_provider: MakeProvider, status: int, error_type: str, cls: type[ProviderError]
) -> None:
    provider = make_provider(status_transport(status, error_type, headers={"request-id": f"req_{status}"}))
    request = REQUEST
    with pytest.raises(cls) as info:
        await provider.complete(request)
    err = info.value
    assert type(err) is cls
    assert (err.status, err.code, err.request_id, err.model) == (
        status,
        error_type,
        f"req_{status}",
        "claude-x",
    )
    # A 5xx also names the server that failed (a gateway, a proxy...).
    suffix = " (from https://api.anthropic.com)" if status >= 500 else ""
    assert err.message == "anthropic said: boom" + suffix
    with pytest.raises(cls):
        await anext(provider.stream(request))
    assert type(provider.classify(err.__cause__)) is cls  # type: ignore[arg-type]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("headers", "expected"),
    [({"retry-after": "12"}, 12.0), ({"retry-after-ms": "750"}, 0.75)],
)
async def test_retry_after_headers_propagate(
    make_provider: MakeProvider, headers: dict[str, str], expected: float
) -> None:
    provider = make_provider(status_transport(429, "rate_limit_error", headers=headers))
    with pytest.raises(RateLimitError) as info:
        await provider.complete(REQUEST)
    assert info.value.retry_after == expected


@pytest.mark.asyncio
async def test_prompt_too_long_is_context_length_error(make_provider: MakeProvider) -> None:
    provider = make_provider(
        status_transport(400, "invalid_request_error", "prompt is too long: 212345 tokens > 200000 maximum")
    )
    with pytest.raises(ContextLengthError):
        await provider.complete(REQUEST)


_IN_BAND = (
    b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1","type":"message",'
    b'"role":"assistant","content":[],"model":"claude-x","stop_reason":null,"stop_sequence":null,'
    b'"usage":{"input_tokens":5,"output_tokens":1}}}\n\n'
    b'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
    b'"content_block":{"type":"text","text":""}}\n\n'
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
    b'"delta":{"type":"text_delta","text":"Hel"}}\n\n'
)


def _error_event(error_type: str, message: str) -> bytes:
    data = {"type": "error", "error": {"type": error_type, "message": message}}
    return f"event: error\ndata: {json.dumps(data)}\n\n".encode()


def stream_transport(stream: ClosingStream) -> httpx2.MockTransport:
    return httpx2.MockTransport(
        lambda request: httpx2.Response(
            200, headers={"content-type": "text/event-stream", "request-id": "req_stream"}, stream=stream
        )
    )


def test_classify_in_band_status_200_by_error_type() -> None:
    provider = AnthropicProvider(
        ProviderConfig(name="anthropic", api_key="k"), http_client=httpx2.AsyncClient()
    )
    response = httpx2.Response(200, request=httpx2.Request("POST", "https://api.anthropic.com/v1/messages"))
    body = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    err = provider.classify(anthropic.APIStatusError("x", response=response, body=body))
    assert isinstance(err, OverloadedError) and err.status is None
    own = ServerError("x")
    assert provider.classify(own) is own
    request = response.request
    assert isinstance(provider.classify(anthropic.APITimeoutError(request=request)), ProviderTimeout)
    assert isinstance(
        provider.classify(anthropic.APIConnectionError(request=request)), ProviderConnectionError
    )
    assert type(provider.classify(RuntimeError("odd"))) is ProviderError
    asyncio.run(provider.aclose())


@pytest.mark.asyncio
async def test_typed_path_in_band_error_classifies_the_same() -> None:
    """The official client raises APIStatusError(200); classify() maps it like the fast path does."""
    transport = stream_transport(ClosingStream([_IN_BAND, _error_event("overloaded_error", "Overloaded")]))
    client = anthropic.AsyncAnthropic(
        api_key="k", max_retries=0, http_client=httpx2.AsyncClient(transport=transport)
    )
    provider = AnthropicProvider(
        ProviderConfig(name="anthropic", api_key="k"), http_client=httpx2.AsyncClient()
    )
    try:
        stream = await client.messages.create(model="m", max_tokens=1, messages=[], stream=True)
        with pytest.raises(anthropic.APIStatusError) as info:
            async for _ in stream:
                pass
        assert info.value.status_code == 200
        assert type(provider.classify(info.value)) is OverloadedError
    finally:
        await client.close()
        await provider.aclose()


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("error_type", "cls"),
    [("overloaded_error", OverloadedError), ("api_error", ServerError), ("rate_limit_error", RateLimitError)],
)
async def test_in_band_stream_error(
    make_provider: MakeProvider, error_type: str, cls: type[ProviderError]
) -> None:
    body = ClosingStream([_IN_BAND, b"event: ping\ndata: {}\n\n", _error_event(error_type, "Overloaded")])
    stream = make_provider(stream_transport(body)).stream(REQUEST)
    kinds = [(await anext(stream)).kind, (await anext(stream)).kind]
    assert kinds == ["usage", "text"]
    with pytest.raises(cls) as info:
        await anext(stream)
    err = info.value
    assert type(err) is cls
    assert (err.status, err.code, err.request_id, err.model) == (None, error_type, "req_stream", "claude-x")
    assert err.message == "anthropic said: Overloaded"
    assert body.closed


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("error", "cls"),
    [
        (httpx2.RemoteProtocolError("peer closed connection"), ProviderConnectionError),
        (httpx2.ReadTimeout("timed out"), ProviderTimeout),
    ],
)
async def test_mid_stream_transport_error(
    make_provider: MakeProvider, error: Exception, cls: type[ForgeError]
) -> None:
    body = ClosingStream([_IN_BAND], error=error)
    stream = make_provider(stream_transport(body)).stream(REQUEST)
    assert [(await anext(stream)).kind, (await anext(stream)).text] == ["usage", "Hel"]
    with pytest.raises(cls) as info:
        await anext(stream)
    assert info.value.__cause__ is error
    assert body.closed


@pytest.mark.asyncio
async def test_stream_cut_before_message_stop_is_connection_error(make_provider: MakeProvider) -> None:
    body = ClosingStream([_IN_BAND])
    stream = make_provider(stream_transport(body)).stream(REQUEST)
    with pytest.raises(ProviderConnectionError):
        await collect(stream)


@pytest.mark.asyncio
async def test_aclose_closes_the_response(make_provider: MakeProvider) -> None:
    body = ClosingStream([_IN_BAND], hang=True)
    stream = make_provider(stream_transport(body)).stream(REQUEST)
    await anext(stream)
    assert not body.closed
    await stream.aclose()  # type: ignore[attr-defined]
    assert body.closed


@pytest.mark.asyncio
async def test_break_closes_the_response_within_a_few_loop_turns(make_provider: MakeProvider) -> None:
    body = ClosingStream([_IN_BAND], hang=True)
    provider = make_provider(stream_transport(body))
    async for _ in provider.stream(REQUEST):
        break  # no aclose(): the event loop's async-generator finalizer closes it
    for _ in range(10):
        if body.closed:
            break
        await asyncio.sleep(0)
    assert body.closed


@pytest.mark.asyncio
async def test_cancelling_the_consumer_closes_the_response(make_provider: MakeProvider) -> None:
    body = ClosingStream([_IN_BAND], hang=True)
    provider = make_provider(stream_transport(body))
    got_first = asyncio.Event()

    async def consume() -> None:
        async for _ in provider.stream(REQUEST):
            got_first.set()

    task = asyncio.create_task(consume())
    await got_first.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert body.closed


@pytest.mark.asyncio
async def test_thinking_and_signature_stream(make_provider: MakeProvider) -> None:
    events_wire = (
        b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_t","usage":'
        b'{"input_tokens":3,"output_tokens":1}}}\n\n'
        b'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
        b'"content_block":{"type":"thinking","thinking":"","signature":""}}\n\n'
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
        b'"delta":{"type":"thinking_delta","thinking":"Let me think."}}\n\n'
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
        b'"delta":{"type":"signature_delta","signature":"sig=="}}\n\n'
        b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n'
        b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn"},'
        b'"usage":{"output_tokens":9}}\n\n'
        b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
    )
    events = await collect(make_provider(stream_transport(ClosingStream([events_wire]))).stream(REQUEST))
    reasoning = [e for e in events if e.kind == "reasoning"]
    assert [e.text for e in reasoning] == ["Let me think.", ""]
    assert reasoning[1].raw["delta"]["signature"] == "sig=="  # type: ignore[index]
    assert events[-2].usage == Usage(3, 9)


# --------------------------------------------------------------------------- construction and request mapping


def test_missing_key_is_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="ANTHROPIC_API_KEY"):
        AnthropicProvider(ProviderConfig(name="anthropic"))


@pytest.mark.asyncio
async def test_one_attempt_base_url_and_no_nonstreaming_guard() -> None:
    seen: list[httpx2.Request] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return httpx2.Response(
            529, json={"type": "error", "error": {"type": "overloaded_error", "message": "o"}}
        )

    config = ProviderConfig(name="anthropic", api_key="k", base_url="http://127.0.0.1:9")
    provider = AnthropicProvider(
        config, http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(handler))
    )
    try:
        with pytest.raises(OverloadedError):  # max_tokens=64000 would trip the client's ValueError guard
            await provider.complete(
                Request(model="claude-sonnet-4-5", messages=(Message("user", "x"),), max_tokens=64000)
            )
    finally:
        await provider.aclose()
    assert len(seen) == 1
    assert str(seen[0].url) == "http://127.0.0.1:9/v1/messages"


@pytest.mark.asyncio
async def test_request_mapping(make_provider: MakeProvider) -> None:
    transport = ReplayTransport(load_cassette("anthropic/nonstream-basic-gzip.yaml"))
    call = ToolCall("toolu_1", "get_weather", {"city": "Paris"}, '{"city":"Paris"}')
    call2 = ToolCall("toolu_2", "get_weather", {"city": "Rome"}, '{"city":"Rome"}')
    await make_provider(transport).complete(
        Request(
            model="claude-x",
            system="be brief",
            messages=(
                Message("system", "and kind"),
                Message("user", "weather?"),
                Message(
                    "assistant",
                    "Checking.",
                    tool_calls=(call, call2),
                    reasoning="thought",
                    reasoning_signature="sig",
                ),
                Message("tool", "sunny", tool_call_id="toolu_1"),
                Message("tool", "rainy", tool_call_id="toolu_2"),
            ),
            stop=("END",),
            seed=7,
            top_p=0.5,
            tools=(Tool("get_weather", "", {"type": "object"}),),
            tool_choice="required",
            extra={"thinking": {"type": "enabled", "budget_tokens": 1024}},
        )
    )
    sent = transport.sent_json()
    assert sent["system"] == "be brief\n\nand kind"
    assert sent["messages"] == [
        {"role": "user", "content": "weather?"},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "thought", "signature": "sig"},
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {"city": "Rome"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
                {"type": "tool_result", "tool_use_id": "toolu_2", "content": "rainy"},
            ],
        },
    ]
    assert sent["stop_sequences"] == ["END"] and "seed" not in sent and sent["top_p"] == 0.5
    assert sent["tools"] == [{"name": "get_weather", "input_schema": {"type": "object"}}]
    assert sent["tool_choice"] == {"type": "any"}
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 1024}


# --------------------------------------------------------------------------- emulator (real sockets)


@pytest.mark.asyncio
async def test_emulator_complete_and_stream() -> None:
    from forge.testing import Emulator, Reply

    async with Emulator() as emu:
        provider = AnthropicProvider(
            ProviderConfig(name="anthropic", api_key="emulator-key", base_url=emu.url)
        )
        try:
            emu.script(Reply(chunks=["Hel", "lo"], input_tokens=10, cached_tokens=4), times=2)
            response = await provider.complete(REQUEST)
            events = await collect(provider.stream(REQUEST))
        finally:
            await provider.aclose()
    assert (response.text, response.finish_reason, response.usage) == ("Hello", "stop", Usage(10, 2, 4))
    assert [(e.kind, e.text) for e in events if e.kind == "text"] == [("text", "Hel"), ("text", "lo")]
    assert [e.usage for e in events if e.kind == "usage"][-1] == Usage(10, 2, 4)
    assert (events[-1].kind, events[-1].finish_reason) == ("finish", "stop")


@pytest.mark.asyncio
async def test_emulator_in_band_overloaded_and_drop() -> None:
    from forge.testing import Emulator, Fault

    async with Emulator() as emu:
        provider = AnthropicProvider(
            ProviderConfig(name="anthropic", api_key="emulator-key", base_url=emu.url)
        )
        try:
            emu.script(Fault.stream_error(after=1, error="overloaded"))
            with pytest.raises(OverloadedError) as info:
                await collect(provider.stream(REQUEST))
            assert info.value.status is None
            emu.script(Fault.drop_after(1))
            with pytest.raises(ProviderConnectionError):
                await collect(provider.stream(REQUEST))
        finally:
            await provider.aclose()


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        ({"temperature": 0.2}, "temperature=0.2"),
        ({"top_p": 0.5}, "top_p"),
        ({"tool_choice": "required"}, "cannot force tool use"),
        ({"tool_choice": "lookup"}, "cannot force tool use"),
    ],
)
def test_thinking_refuses_what_the_api_rejects(extra: dict[str, Any], match: str) -> None:
    # The Messages API answers 400 for thinking with a changed temperature, top_p < 0.95 or a
    # forced tool_choice (extended-thinking "Feature compatibility"); say so before sending.
    from forge.providers.anthropic import _params

    tool = Tool("lookup", "", {"type": "object", "properties": {}})
    request = Request(model="claude-x", messages=(Message("user", "x"),), tools=(tool,),
                      reasoning_budget=2048, **extra)
    with pytest.raises(BadRequestError, match=match):
        _params(request)
    ok = Request(model="claude-x", messages=(Message("user", "x"),), tools=(tool,), reasoning_budget=2048,
                 temperature=1.0, top_p=0.95, tool_choice="auto")
    assert _params(ok)["thinking"] == {"type": "enabled", "budget_tokens": 2048}
