"""OpenAIProvider against the real OpenAI recordings, the official client's typed stream, and faults."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx2
import openai
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
from forge.providers.openai import OpenAIProvider
from forge.types import Message, Request, ResponseFormat, StreamEvent, Tool, ToolCall, Usage
from tests.cassette_replay import (
    ClosingStream,
    Interaction,
    ReplayTransport,
    load_cassette,
    recorded_interactions,
)

MakeProvider = Callable[[httpx2.AsyncBaseTransport], OpenAIProvider]
REQUEST = Request(model="gpt-4o", messages=(Message("user", "x"),))

_FINISH = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
}


@pytest.fixture
async def make_provider() -> AsyncIterator[MakeProvider]:
    made: list[OpenAIProvider] = []

    def build(transport: httpx2.AsyncBaseTransport) -> OpenAIProvider:
        provider = OpenAIProvider(
            ProviderConfig(name="openai", api_key="sk-test"),
            http_client=httpx2.AsyncClient(transport=transport),
        )
        made.append(provider)
        return provider

    yield build
    for provider in made:
        await provider.aclose()


def request_from_body(body: dict[str, Any]) -> Request:
    """The forge Request that should produce a recorded Chat Completions body."""
    messages = list(body["messages"])
    system = None
    if messages and messages[0]["role"] == "system":
        system = messages.pop(0)["content"]
    fmt = None
    if rf := body.get("response_format"):
        if rf["type"] == "json_object":
            fmt = ResponseFormat("json")
        else:
            spec = rf["json_schema"]
            fmt = ResponseFormat("json_schema", spec["schema"], spec["name"], spec.get("strict", True))
    tools = tuple(
        Tool(t["function"]["name"], t["function"].get("description", ""), t["function"]["parameters"])
        for t in body.get("tools", ())
    )
    return Request(
        model=body["model"],
        messages=tuple(Message(m["role"], m["content"]) for m in messages),
        system=system,
        max_tokens=body.get("max_tokens"),
        temperature=body.get("temperature"),
        top_p=body.get("top_p"),
        seed=body.get("seed"),
        response_format=fmt,
        stop=tuple(body.get("stop", ())),
        tools=tools,
    )


def expected_wire_body(body: dict[str, Any], *, stream: bool) -> dict[str, Any]:
    """The recorded body as forge sends it: max_completion_tokens, usage always requested on streams."""
    expected = dict(body)
    if expected.get("stream") is False:
        del expected["stream"]
    if "max_tokens" in expected:
        expected["max_completion_tokens"] = expected.pop("max_tokens")
    if stream:
        expected["stream_options"] = {"include_usage": True}
    rf = expected.get("response_format")
    if rf and rf["type"] == "json_schema":  # ResponseFormat has no description
        spec = {k: v for k, v in rf["json_schema"].items() if k != "description"}
        expected["response_format"] = {"type": "json_schema", "json_schema": spec}
    return expected


def expected_usage(u: dict[str, Any]) -> Usage:
    return Usage(
        input_tokens=u["prompt_tokens"],
        output_tokens=u["completion_tokens"],
        cached_input_tokens=(u.get("prompt_tokens_details") or {}).get("cached_tokens") or 0,
        reasoning_tokens=(u.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0,
    )


async def collect(events: AsyncIterator[StreamEvent]) -> list[StreamEvent]:
    return [ev async for ev in events]


def as_tuples(events: list[StreamEvent]) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    for ev in events:
        if ev.kind in ("text", "reasoning"):
            out.append((ev.kind, ev.text))
        elif ev.kind == "tool_call_delta":
            out.append((ev.kind, ev.index, ev.text))
        elif ev.kind in ("tool_call_start", "tool_call_done"):
            out.append((ev.kind, ev.index, ev.tool_call))
        elif ev.kind == "usage":
            out.append((ev.kind, ev.usage))
        else:
            out.append((ev.kind, ev.text, ev.finish_reason))
    return out


async def typed_events(interaction: Interaction) -> list[tuple[Any, ...]]:
    """Expected events, built from the official client's typed ChatCompletionChunk stream."""
    transport = ReplayTransport([interaction])
    client = openai.AsyncOpenAI(
        api_key="sk-test", max_retries=0, http_client=httpx2.AsyncClient(transport=transport)
    )
    out: list[tuple[Any, ...]] = []
    calls: dict[int, list[str]] = {}
    finish = None
    response_id = ""
    text_seen = refused = False
    try:
        stream = await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "x"}], stream=True
        )
        async with stream:
            async for chunk in stream:
                response_id = response_id or chunk.id
                for choice in chunk.choices:
                    if choice.index != 0:
                        continue
                    delta = choice.delta
                    if delta.content:
                        text_seen = True
                        out.append(("text", delta.content))
                    if delta.refusal:
                        refused = True
                        out.append(("text", delta.refusal))
                    for tc in delta.tool_calls or ():
                        fn = tc.function
                        if tc.index not in calls:
                            calls[tc.index] = [tc.id or "", (fn and fn.name) or "", ""]
                            start = ToolCall(calls[tc.index][0], calls[tc.index][1])
                            out.append(("tool_call_start", tc.index, start))
                        if fn and fn.arguments:
                            calls[tc.index][2] += fn.arguments
                            out.append(("tool_call_delta", tc.index, fn.arguments))
                    if choice.finish_reason:
                        finish = _FINISH.get(choice.finish_reason, "stop")
                        for index in sorted(calls):
                            call_id, name, raw = calls[index]
                            call = ToolCall(call_id, name, _loads(raw), raw)
                            out.append(("tool_call_done", index, call))
                        calls.clear()
                if chunk.usage:
                    u = chunk.usage
                    pd, cd = u.prompt_tokens_details, u.completion_tokens_details
                    usage = Usage(
                        u.prompt_tokens,
                        u.completion_tokens,
                        (pd.cached_tokens or 0) if pd else 0,
                        (pd.cache_write_tokens or 0) if pd else 0,
                        (cd.reasoning_tokens or 0) if cd else 0,
                    )
                    out.append(("usage", usage))
    finally:
        await client.close()
    if refused and not text_seen:
        finish = "content_filter"
    out.append(("finish", response_id, finish or "stop"))
    return out


def _loads(raw: str) -> Any:
    try:
        value = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


# --------------------------------------------------------------------------- every recording


def _chat_recordings() -> list[Any]:
    """Every recorded Chat Completions call (recordings added later are picked up too)."""
    return [
        pytest.param(it, id=f"{name}[{i}]")
        for name, i, it in recorded_interactions("openai")
        if it.method == "POST" and it.path.endswith("/chat/completions")
    ]


def _is_stream(interaction: Interaction) -> bool:
    body = interaction.request_json()
    return bool(isinstance(body, dict) and body.get("stream"))


def expected_response(data: dict[str, Any]) -> tuple[Any, ...]:
    """(text, finish, usage, tool calls, id) read straight off a recorded chat.completion."""
    choice = data["choices"][0]
    message = choice["message"]
    finish = _FINISH.get(choice["finish_reason"], "stop") if choice.get("finish_reason") else None
    if message.get("refusal") and not message.get("content"):
        finish = "content_filter"
    calls = []
    for tc in message.get("tool_calls") or ():
        raw = tc["function"]["arguments"]
        try:
            args = json.loads(raw)
        except ValueError:
            args = {}
        calls.append(ToolCall(tc["id"], tc["function"]["name"], args, raw))
    usage = expected_usage(data["usage"]) if data.get("usage") else Usage()
    text = message.get("content") or message.get("refusal") or ""
    return text, finish, usage, tuple(calls), data.get("id")


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
@pytest.mark.parametrize("interaction", _chat_recordings())
@pytest.mark.parametrize("split", [None, 7])
async def test_every_chat_recording_replays(
    make_provider: MakeProvider, interaction: Interaction, split: int | None
) -> None:
    """Text, finish reason, usage, tool calls and errors equal what the recording holds.

    Streams are checked against the official client's typed stream over the same bytes.
    """
    transport = ReplayTransport([interaction], split=split)
    provider = make_provider(transport)
    request = Request(model="gpt-x", messages=(Message("user", "x"),))
    if interaction.status >= 400:
        with pytest.raises(_status_class(interaction.status)) as info:
            if _is_stream(interaction):
                await collect(provider.stream(request))
            else:
                await provider.complete(request)
        err = info.value
        assert err.status == interaction.status
        assert err.request_id == interaction.header("x-request-id")
        assert err.message == f"openai said: {interaction.json()['error']['message']}"
    elif _is_stream(interaction):
        events = await collect(provider.stream(request))
        assert as_tuples(events) == await typed_events(interaction)
        assert [e.kind for e in events].count("finish") == 1 and events[-1].kind == "finish"
    else:
        response = await provider.complete(request)
        got = (response.text, response.finish_reason, response.usage, response.tool_calls, response.id)
        assert got == expected_response(interaction.json())
        assert response.raw == interaction.json()
    assert all(stream.closed for stream in transport.streams)


WIRE = [
    ("openai/chat-nonstream-basic.yaml", 0),
    ("openai/chat-nonstream-json-mode.yaml", 0),
    ("openai/chat-nonstream-seed-params-gzip.yaml", 0),
    *[("openai/chat-nonstream-cached-tokens-gzip.yaml", i) for i in range(4)],
    ("openai/chat-stream-usage.yaml", 0),
    ("openai/chat-stream-structured-json-schema.yaml", 0),
    ("openai/chat-stream-tools-parallel.yaml", 0),
    ("openai/chat-stream-tools-parallel.yaml", 1),
]


@pytest.mark.asyncio
@pytest.mark.parametrize(("name", "index"), WIRE)
async def test_request_body_matches_recording(make_provider: MakeProvider, name: str, index: int) -> None:
    """The forge Request equivalent to a recorded call puts the recorded JSON on the wire."""
    interaction = load_cassette(name)[index]
    transport = ReplayTransport([interaction])
    provider = make_provider(transport)
    recorded = interaction.request_json()
    request = request_from_body(recorded)
    if _is_stream(interaction):
        await collect(provider.stream(request))
    else:
        await provider.complete(request)
    assert transport.sent_json() == expected_wire_body(recorded, stream=_is_stream(interaction))


# --------------------------------------------------------------------------- specific recordings


@pytest.mark.asyncio
async def test_complete_basic_text_and_usage(make_provider: MakeProvider) -> None:
    transport = ReplayTransport(load_cassette("openai/chat-nonstream-basic.yaml"))
    response = await make_provider(transport).complete(
        Request(model="gpt-4o-mini", messages=(Message("user", "Say this is a test"),))
    )
    assert (response.text, response.finish_reason) == ("This is a test.", "stop")
    assert response.usage == Usage(input_tokens=12, output_tokens=5)
    assert response.provider == "openai"


@pytest.mark.asyncio
async def test_complete_reports_cached_tokens(make_provider: MakeProvider) -> None:
    interactions = load_cassette("openai/chat-nonstream-cached-tokens-gzip.yaml")
    provider = make_provider(ReplayTransport(interactions))
    cached = []
    for interaction in interactions:
        response = await provider.complete(request_from_body(interaction.request_json()))
        cached.append(response.usage.cached_input_tokens)
    assert cached == [0, 1024, 0, 0]


@pytest.mark.asyncio
async def test_complete_json_mode_returns_json(make_provider: MakeProvider) -> None:
    transport = ReplayTransport(load_cassette("openai/chat-nonstream-json-mode.yaml"))
    response = await make_provider(transport).complete(
        Request(
            model="gpt-4o", messages=(Message("user", "status?"),), response_format=ResponseFormat("json")
        )
    )
    assert transport.sent_json()["response_format"] == {"type": "json_object"}
    assert json.loads(response.text) == {"status": "success"}


@pytest.mark.asyncio
async def test_complete_sends_seed_and_sampling_params(make_provider: MakeProvider) -> None:
    transport = ReplayTransport(load_cassette("openai/chat-nonstream-seed-params-gzip.yaml"))
    await make_provider(transport).complete(
        Request(
            model="gpt-4o",
            messages=(Message("user", "What is 4200 + 42?"),),
            max_tokens=500,
            seed=42,
            stop=("4242",),
            temperature=0.7,
            top_p=0.3,
        )
    )
    sent = transport.sent_json()
    assert (sent["seed"], sent["stop"], sent["temperature"], sent["top_p"]) == (42, ["4242"], 0.7, 0.3)
    assert sent["max_completion_tokens"] == 500


@pytest.mark.asyncio
async def test_stream_usage_text_and_finish(make_provider: MakeProvider) -> None:
    transport = ReplayTransport(load_cassette("openai/chat-stream-usage.yaml"))
    events = await collect(
        make_provider(transport).stream(
            Request(model="gpt-4", messages=(Message("user", "Say this is a test"),))
        )
    )
    assert "".join(e.text for e in events if e.kind == "text") == '"This is a test."'
    assert [e.usage for e in events if e.kind == "usage"] == [Usage(12, 5)]
    assert events[-1] == StreamEvent("finish", "chatcmpl-ASYMZ4oSykiIFK4lXLReDiKyAjsQl", finish_reason="stop")


@pytest.mark.asyncio
async def test_stream_parallel_tool_calls(make_provider: MakeProvider) -> None:
    interaction = load_cassette("openai/chat-stream-tools-parallel.yaml")[0]
    events = await collect(
        make_provider(ReplayTransport([interaction])).stream(request_from_body(interaction.request_json()))
    )
    done = [e.tool_call for e in events if e.kind == "tool_call_done"]
    assert done == [
        ToolCall(
            "call_cCPjAyfwTzboEKjVlqFrArNF",
            "get_current_weather",
            {"location": "San Francisco"},
            '{"location": "San Francisco"}',
        ),
        ToolCall(
            "call_Zi4He1Ns0mozwT6f85nW1BOW",
            "get_current_weather",
            {"location": "Boston"},
            '{"location": "Boston"}',
        ),
    ]
    assert [e.index for e in events if e.kind == "tool_call_start"] == [0, 1]
    assert events[-1].finish_reason == "tool_calls"


@pytest.mark.asyncio
async def test_stream_structured_output_is_valid_json(make_provider: MakeProvider) -> None:
    interaction = load_cassette("openai/chat-stream-structured-json-schema.yaml")[0]
    events = await collect(
        make_provider(ReplayTransport([interaction])).stream(request_from_body(interaction.request_json()))
    )
    book = json.loads("".join(e.text for e in events if e.kind == "text"))
    assert book["author"] == {"first_name": "Patrick", "last_name": "Rothfuss"}
    assert [e.usage for e in events if e.kind == "usage"] == [Usage(172, 29)]


# --------------------------------------------------------------------------- recorded errors


@pytest.mark.asyncio
async def test_recorded_401_on_stream_is_authentication_error(make_provider: MakeProvider) -> None:
    transport = ReplayTransport(load_cassette("openai/chat-error-401-stream.yaml"))
    stream = make_provider(transport).stream(REQUEST)
    assert transport.requests == []  # nothing is sent before the first __anext__
    with pytest.raises(AuthenticationError) as info:
        await anext(stream)
    err = info.value
    assert err.status == 401 and err.code == "invalid_api_key"
    assert err.request_id == "req_e110441cdd4d4b489d1e949075fa96bc"
    assert err.message.startswith("openai said: Incorrect API key provided")
    assert err.model == "gpt-4o" and err.provider == "openai"
    assert isinstance(err.__cause__, openai.AuthenticationError)


@pytest.mark.asyncio
async def test_recorded_404_model_is_not_found(make_provider: MakeProvider) -> None:
    transport = ReplayTransport(load_cassette("openai/chat-error-404-model.yaml"))
    with pytest.raises(NotFoundError) as info:
        await make_provider(transport).complete(
            Request(model="this-model-does-not-exist", messages=(Message("user", "x"),))
        )
    assert info.value.code == "model_not_found"
    assert "does not exist" in str(info.value)
    assert info.value.request_id == "req_c3e0f92d7b5426d1a4a17bb3d39953ea"


# --------------------------------------------------------------------------- classify


def status_transport(
    status: int, headers: dict[str, str] | None = None, body: dict[str, Any] | None = None
) -> httpx2.MockTransport:
    payload = body or {"error": {"message": f"boom {status}", "type": "some_error", "code": None}}
    return httpx2.MockTransport(lambda request: httpx2.Response(status, headers=headers or {}, json=payload))


STATUS_CLASSES: list[tuple[int, type[ProviderError]]] = [
    (400, BadRequestError),
    (401, AuthenticationError),
    (403, AuthenticationError),
    (404, NotFoundError),
    (408, ProviderTimeout),
    (409, ServerError),
    (413, ContextLengthError),
    (422, BadRequestError),
    (429, RateLimitError),
    (500, ServerError),
    (503, OverloadedError),
    (529, OverloadedError),
]


@pytest.mark.asyncio
@pytest.mark.parametrize(("status", "cls"), STATUS_CLASSES)
async def test_status_maps_to_forge_error(
    make_provider: MakeProvider, status: int, cls: type[ProviderError]
) -> None:
    provider = make_provider(status_transport(status, {"x-request-id": f"req_{status}"}))
    request = REQUEST
    with pytest.raises(cls) as info:
        await provider.complete(request)
    assert type(info.value) is cls
    assert (info.value.status, info.value.request_id) == (status, f"req_{status}")
    # A 5xx also names the server that failed (a gateway, a proxy...).
    suffix = " (from https://api.openai.com/v1/)" if status >= 500 else ""
    assert info.value.message == f"openai said: boom {status}" + suffix
    with pytest.raises(cls):
        await anext(provider.stream(request))
    # classify() on the vendor exception itself gives the same answer
    assert type(provider.classify(info.value.__cause__)) is cls  # type: ignore[arg-type]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "7"}, 7.0),
        ({"retry-after-ms": "250"}, 0.25),
        ({"retry-after-ms": "1500", "retry-after": "9"}, 1.5),
    ],
)
async def test_retry_after_headers_propagate(
    make_provider: MakeProvider, headers: dict[str, str], expected: float
) -> None:
    provider = make_provider(status_transport(429, headers))
    with pytest.raises(RateLimitError) as info:
        await provider.complete(REQUEST)
    assert info.value.retry_after == expected
    assert info.value.headers["retry-after" if "retry-after" in headers else "retry-after-ms"]


@pytest.mark.asyncio
async def test_context_length_error(make_provider: MakeProvider) -> None:
    body = {
        "error": {
            "message": "This model's maximum context length is 128000 tokens.",
            "type": "invalid_request_error",
            "code": "context_length_exceeded",
        }
    }
    provider = make_provider(status_transport(400, body=body))
    with pytest.raises(ContextLengthError) as info:
        await provider.complete(REQUEST)
    assert info.value.code == "context_length_exceeded"


def test_classify_passes_forge_errors_and_maps_the_rest() -> None:
    provider = OpenAIProvider(
        ProviderConfig(name="openai", api_key="sk-test"), http_client=httpx2.AsyncClient()
    )
    own = RateLimitError("slow down", provider="openai")
    assert provider.classify(own) is own
    request = httpx2.Request("POST", "https://api.openai.com/v1/chat/completions")
    assert isinstance(provider.classify(openai.APITimeoutError(request=request)), ProviderTimeout)
    assert isinstance(provider.classify(openai.APIConnectionError(request=request)), ProviderConnectionError)
    inband = openai.APIError("rate limited", request, body={"message": "slow", "code": "rate_limit_exceeded"})
    assert isinstance(provider.classify(inband), RateLimitError)
    assert isinstance(provider.classify(httpx2.RemoteProtocolError("peer closed")), ProviderConnectionError)
    assert isinstance(provider.classify(httpx2.ReadTimeout("slow")), ProviderTimeout)
    other = provider.classify(ValueError("odd"))
    assert type(other) is ProviderError and "odd" in str(other)
    asyncio.run(provider.aclose())


# --------------------------------------------------------------------------- stream faults and cleanup

_CHUNK = (
    b'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","choices":[{"index":0,'
    b'"delta":{"content":"Hel"},"finish_reason":null}]}\n\n'
)


def stream_transport(stream: ClosingStream) -> httpx2.MockTransport:
    return httpx2.MockTransport(
        lambda request: httpx2.Response(200, headers={"content-type": "text/event-stream"}, stream=stream)
    )


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
    body = ClosingStream([_CHUNK], error=error)
    stream = make_provider(stream_transport(body)).stream(REQUEST)
    first = await anext(stream)
    assert first.text == "Hel"
    with pytest.raises(cls) as info:
        await anext(stream)
    assert info.value.__cause__ is error
    assert body.closed


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("error", "cls"),
    [
        ({"message": "The server had an error", "type": "server_error", "code": None}, ServerError),
        (
            {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"},
            RateLimitError,
        ),
    ],
)
async def test_in_band_stream_error(
    make_provider: MakeProvider, error: dict[str, Any], cls: type[ProviderError]
) -> None:
    body = ClosingStream([_CHUNK, f"data: {json.dumps({'error': error})}\n\n".encode()])
    stream = make_provider(stream_transport(body)).stream(REQUEST)
    assert (await anext(stream)).text == "Hel"
    with pytest.raises(cls) as info:
        await anext(stream)
    assert info.value.message == f"openai said: {error['message']}"
    assert info.value.model == "gpt-4o"
    assert body.closed


@pytest.mark.asyncio
async def test_stream_cut_before_finish_is_connection_error(make_provider: MakeProvider) -> None:
    body = ClosingStream([_CHUNK])  # clean EOF, but no finish_reason and no [DONE]
    stream = make_provider(stream_transport(body)).stream(REQUEST)
    with pytest.raises(ProviderConnectionError):
        await collect(stream)


@pytest.mark.asyncio
async def test_aclose_closes_the_response(make_provider: MakeProvider) -> None:
    body = ClosingStream([_CHUNK, _CHUNK, _CHUNK], hang=True)
    stream = make_provider(stream_transport(body)).stream(REQUEST)
    await anext(stream)
    assert not body.closed
    await stream.aclose()  # type: ignore[attr-defined]
    assert body.closed


@pytest.mark.asyncio
async def test_break_closes_the_response_within_a_few_loop_turns(make_provider: MakeProvider) -> None:
    body = ClosingStream([_CHUNK, _CHUNK], hang=True)
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
    body = ClosingStream([_CHUNK], hang=True)
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


# --------------------------------------------------------------------------- construction


def test_missing_key_is_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        OpenAIProvider(ProviderConfig(name="openai"))


def test_api_option_selects_chat_or_responses() -> None:
    """The Responses API itself is tested in test_openai_responses.py."""
    chat = OpenAIProvider(ProviderConfig(name="openai", api_key="k"), http_client=httpx2.AsyncClient())
    responses = OpenAIProvider(
        ProviderConfig(name="openai", api_key="k", options={"api": "responses"}), http_client=httpx2.AsyncClient()
    )
    assert (chat.api, responses.api) == ("chat", "responses")
    with pytest.raises(ConfigError, match="api"):
        OpenAIProvider(ProviderConfig(name="openai", api_key="k", options={"api": "assistants"}))
    asyncio.run(chat.aclose())
    asyncio.run(responses.aclose())


@pytest.mark.asyncio
async def test_client_is_built_with_forge_settings() -> None:
    config = ProviderConfig(
        name="openai",
        api_key="sk-test",
        base_url="http://127.0.0.1:9/v1",
        timeout=42.0,
        connect_timeout=3.0,
        options={"organization": "org-1", "project": "proj-1"},
    )
    seen: list[httpx2.Request] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return httpx2.Response(500, json={"error": {"message": "x"}})

    provider = OpenAIProvider(config, http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(handler)))
    try:
        with pytest.raises(ServerError):
            await provider.complete(Request(model="m", messages=(Message("user", "x"),), system="be brief"))
    finally:
        await provider.aclose()
    assert len(seen) == 1  # max_retries=0: one attempt, forge retries above
    sent = seen[0]
    assert str(sent.url) == "http://127.0.0.1:9/v1/chat/completions"
    assert sent.headers["authorization"] == "Bearer sk-test"
    assert sent.headers["openai-organization"] == "org-1"
    assert sent.headers["openai-project"] == "proj-1"
    assert sent.headers["x-stainless-read-timeout"] == "42.0"
    assert json.loads(sent.content)["messages"][0] == {"role": "system", "content": "be brief"}


@pytest.mark.asyncio
async def test_tool_round_trip_and_extra_are_sent(make_provider: MakeProvider) -> None:
    transport = ReplayTransport(load_cassette("openai/chat-nonstream-basic.yaml"))
    call = ToolCall("call_1", "get_weather", {"city": "Paris"}, '{"city": "Paris"}')
    await make_provider(transport).complete(
        Request(
            model="gpt-4o",
            messages=(
                Message("user", "weather?"),
                Message("assistant", "", tool_calls=(call,)),
                Message("tool", "sunny", tool_call_id="call_1"),
            ),
            tools=(Tool("get_weather", "Weather by city", {"type": "object"}),),
            tool_choice="get_weather",
            extra={"prompt_cache_key": "tenant-1", "temperature": 0.1},
        )
    )
    sent = transport.sent_json()
    assert sent["messages"][1] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
            }
        ],
    }
    assert sent["messages"][2] == {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}
    assert sent["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather by city",
                "parameters": {"type": "object"},
            },
        }
    ]
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert sent["prompt_cache_key"] == "tenant-1" and sent["temperature"] == 0.1


# --------------------------------------------------------------------------- emulator (real sockets)


@pytest.mark.asyncio
async def test_emulator_complete_and_stream() -> None:
    from forge.testing import Emulator, Reply

    async with Emulator() as emu:
        config = ProviderConfig(name="openai", api_key="emulator-key", base_url=emu.url + "/v1")
        provider = OpenAIProvider(config)
        try:
            emu.script(Reply(chunks=["Hel", "lo"], input_tokens=10, cached_tokens=4), times=2)
            response = await provider.complete(REQUEST)
            events = await collect(provider.stream(REQUEST))
        finally:
            await provider.aclose()
        sent = [r.body for r in emu.requests]
    assert (response.text, response.finish_reason, response.usage) == ("Hello", "stop", Usage(10, 2, 4))
    assert [(e.kind, e.text) for e in events[:2]] == [("text", "Hel"), ("text", "lo")]
    assert events[2].usage == Usage(10, 2, 4)
    assert (events[3].kind, events[3].finish_reason) == ("finish", "stop")
    assert sent[1] is not None and sent[1]["stream_options"] == {"include_usage": True}


@pytest.mark.asyncio
async def test_emulator_stream_faults() -> None:
    from forge.testing import Emulator, Fault

    async with Emulator() as emu:
        config = ProviderConfig(name="openai", api_key="emulator-key", base_url=emu.url + "/v1")
        provider = OpenAIProvider(config)
        try:
            emu.script(Fault.drop_after(1))
            stream = provider.stream(REQUEST)
            assert (await anext(stream)).kind == "text"
            with pytest.raises(ProviderConnectionError):
                await anext(stream)
            emu.script(Fault.rate_limit(retry_after=2.5))
            with pytest.raises(RateLimitError) as info:
                await anext(provider.stream(REQUEST))
            assert info.value.retry_after == 2.5
        finally:
            await provider.aclose()


# --------------------------------------------------------------------------- shapes no recording has


def _sse(*chunks: dict[str, Any]) -> bytes:
    return b"".join(f"data: {json.dumps(c)}\n\n".encode() for c in chunks) + b"data: [DONE]\n\n"


@pytest.mark.asyncio
async def test_reasoning_content_and_refusal_stream(make_provider: MakeProvider) -> None:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {"id": "c1", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    wire = _sse(
        chunk({"reasoning_content": "thinking..."}),
        chunk({"refusal": "I can't help with that."}),
        chunk({}, "stop"),
    )
    events = await collect(make_provider(stream_transport(ClosingStream([wire]))).stream(REQUEST))
    assert [(e.kind, e.text) for e in events[:2]] == [
        ("reasoning", "thinking..."),
        ("text", "I can't help with that."),
    ]
    assert events[-1].finish_reason == "content_filter"


@pytest.mark.asyncio
async def test_error_body_with_status_200_raises(make_provider: MakeProvider) -> None:
    body = {"error": {"message": "upstream overloaded", "type": "server_error", "code": None}}
    provider = make_provider(httpx2.MockTransport(lambda request: httpx2.Response(200, json=body)))
    with pytest.raises(ServerError, match="openai said: upstream overloaded"):
        await provider.complete(REQUEST)


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ({}, "max_completion_tokens"),
        ({"base_url": "https://api.openai.com/v1"}, "max_completion_tokens"),
        ({"base_url": "http://127.0.0.1:8000/v1"}, "max_tokens"),
        ({"base_url": "http://vllm.internal/v1", "max_tokens_param": "max_completion_tokens"}, "max_completion_tokens"),
    ],
)
def test_max_tokens_name_follows_the_server(section: dict[str, str], expected: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from forge.config import load_config
    from forge.providers.openai import _max_tokens_param

    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    cfg = load_config({"providers": {"openai": section}}).provider("openai")
    assert _max_tokens_param(cfg) == expected


def test_bad_max_tokens_param_is_named() -> None:
    from forge.config import load_config
    from forge.errors import ConfigError

    with pytest.raises(ConfigError, match="max_tokens_param: expected 'max_tokens' or 'max_completion_tokens'"):
        load_config({"providers": {"openai": {"max_tokens_param": "limit"}}})


@pytest.mark.asyncio
async def test_more_than_four_stops_refused_for_openai_only() -> None:
    # Chat Completions takes "up to 4 sequences" in stop and answers 400 for more; say so before
    # sending. OpenAI-compatible servers (vLLM, llama.cpp...) may take more, so they get them all.
    bodies: list[dict[str, Any]] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        bodies.append(json.loads(request.content))
        return httpx2.Response(200, json={"id": "c", "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}]})

    request = Request(model="gpt-x", messages=(Message("user", "x"),), stop=("a", "b", "c", "d", "e"))
    openai_ = OpenAIProvider(ProviderConfig(name="openai", api_key="k"),
                             http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(handler)))
    with pytest.raises(BadRequestError, match="at most 4 stop sequences"):
        await openai_.complete(request)
    with pytest.raises(BadRequestError, match="at most 4 stop sequences"):
        async for _ in openai_.stream(request):
            pass
    assert bodies == []
    local = OpenAIProvider(ProviderConfig(name="openai", api_key="k", base_url="http://127.0.0.1:8000/v1"),
                           http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(handler)))
    await local.complete(request)
    assert bodies[-1]["stop"] == ["a", "b", "c", "d", "e"]
    await openai_.aclose()
    await local.aclose()
