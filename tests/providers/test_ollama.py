"""OllamaProvider: real recordings, the typed client as oracle, byte-identical requests, errors, closing."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import ollama
import pytest

from forge.config import ProviderConfig
from forge.errors import (
    AuthenticationError,
    BadRequestError,
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
from forge.providers.ollama import OllamaProvider, build_ollama_chat_payload, ollama_chat_args
from forge.types import Message, Request, Response, ResponseFormat, StreamEvent, Tool, ToolCall, Usage
from tests._services import require_real_recordings
from tests.cassette_replay import (
    HttpxClosingStream,
    HttpxReplayTransport,
    Interaction,
    load_cassette,
    recorded_interactions,
)

HOST = "http://127.0.0.1:11434"

# Headers allowed to differ between the ollama client's request and forge's. Both go out
# through the ollama client's own httpx client, so none does.
VOLATILE_HEADERS: frozenset[str] = frozenset()

# Endpoints of the recordings this adapter does not call, and why.
GAP_ENDPOINTS = {
    "POST /api/generate": "raw completion API: forge speaks chat (/api/chat) only",
    "POST /v1/chat/completions": "Ollama's OpenAI-compatible API: use the openai provider with base_url",
    "POST /v1/completions": "Ollama's OpenAI-compatible API: not used",
    "POST /v1/embeddings": "embeddings: not in the Provider protocol",
    "POST /v1/responses": "Ollama's OpenAI-compatible Responses API: not used",
    "POST /api/embed": "embeddings: not in the Provider protocol",
    "POST /api/embeddings": "embeddings (legacy endpoint): not in the Provider protocol",
    "GET /api/tags": "model listing: not in the Provider protocol",
    "GET /v1/models": "model listing: not in the Provider protocol",
    "POST /api/show": "model metadata: not in the Provider protocol",
    "POST /api/pull": "model management: not in the Provider protocol",
    "GET /api/ps": "model management: not in the Provider protocol",
    "GET /api/version": "server version: not in the Provider protocol",
}
COVERED = ("POST /api/chat",)


def endpoint(interaction: Interaction) -> str:
    return f"{interaction.method} {interaction.path}"


ALL = recorded_interactions("ollama")
REPLAYED = [(f, i, x) for f, i, x in ALL if endpoint(x) in COVERED]


def _ids(cases: list[tuple[str, int, Interaction]]) -> list[str]:
    return [f"{f}[{i}]" for f, i, _ in cases]


def _config(**kw: Any) -> ProviderConfig:
    base: dict[str, Any] = {"base_url": HOST}
    base.update(kw)
    return ProviderConfig(name="ollama", **base)


def _request(text: str = "hi", model: str = "llama3", **kw: Any) -> Request:
    return Request(model=model, messages=(Message("user", text),), **kw)


def _is_stream(interaction: Interaction) -> bool:
    return bool((interaction.request_json() or {}).get("stream", True))


class Harness:
    """An OllamaProvider and an official ollama client, each on its own replay transport."""

    def __init__(self, interactions: list[Interaction], *, split: int | None = 45) -> None:
        self.forge_transport = HttpxReplayTransport(interactions, split=split)
        self.sdk_transport = HttpxReplayTransport(interactions, split=split)
        self.provider = OllamaProvider(_config(), transport=self.forge_transport)
        self.sdk = ollama.AsyncClient(host=HOST, transport=self.sdk_transport)

    async def aclose(self) -> None:
        await self.provider.aclose()
        await self.sdk.close()  # type: ignore[no-untyped-call]


@pytest.fixture
async def harness_factory() -> AsyncIterator[Callable[..., Harness]]:
    made: list[Harness] = []

    def make(interactions: list[Interaction], **kw: Any) -> Harness:
        h = Harness(interactions, **kw)
        made.append(h)
        return h

    yield make
    for h in made:
        await h.aclose()


async def _events(provider: OllamaProvider, request: Request) -> list[StreamEvent]:
    return [ev async for ev in provider.stream(request)]


# ---------------------------------------------------------------------- the typed path, as oracle


def typed_events(parts: list[ollama.ChatResponse]) -> list[StreamEvent]:
    """The events the typed ChatResponse parts imply (pydantic objects only).

    The typed ``Message.ToolCall`` has no ``id`` field, so calls get ``call_<n>``
    here; compare ids separately (forge keeps Ollama's id when it sends one).
    """
    events: list[StreamEvent] = []
    calls = 0
    last: ollama.ChatResponse | None = None
    for part in parts:
        msg = part.message
        if msg.thinking:
            events.append(StreamEvent("reasoning", msg.thinking))
        if msg.content:
            events.append(StreamEvent("text", msg.content))
        for call in msg.tool_calls or []:
            args = dict(call.function.arguments)
            raw = json.dumps(args, ensure_ascii=False, separators=(",", ":"))
            call_id = f"call_{calls}"
            events.append(
                StreamEvent("tool_call_start", index=calls, tool_call=ToolCall(call_id, call.function.name))
            )
            events.append(StreamEvent("tool_call_delta", raw, index=calls))
            events.append(
                StreamEvent(
                    "tool_call_done", index=calls, tool_call=ToolCall(call_id, call.function.name, args, raw)
                )
            )
            calls += 1
        if part.done:
            last = part
            usage = Usage(input_tokens=part.prompt_eval_count or 0, output_tokens=part.eval_count or 0)
            events.append(StreamEvent("usage", usage=usage))
    if last is None:
        reason = None
    elif last.done_reason == "length":
        reason = "length"
    else:
        reason = "tool_calls" if calls else "stop"
    events.append(StreamEvent("finish", finish_reason=reason))  # type: ignore[arg-type]
    return events


def _normalize_ids(events: list[StreamEvent]) -> list[StreamEvent]:
    out = []
    for ev in events:
        if ev.tool_call is not None:
            tc = ev.tool_call
            ev = StreamEvent(
                ev.kind, ev.text, ev.index, ToolCall(f"#{ev.index}", tc.name, tc.arguments, tc.raw_arguments)
            )
        out.append(ev)
    return out


def _response_events(response: Response) -> list[StreamEvent]:
    events: list[StreamEvent] = []
    if response.reasoning:
        events.append(StreamEvent("reasoning", response.reasoning))
    if response.text:
        events.append(StreamEvent("text", response.text))
    for i, call in enumerate(response.tool_calls):
        events.append(StreamEvent("tool_call_start", index=i, tool_call=ToolCall(call.id, call.name)))
        events.append(StreamEvent("tool_call_delta", call.raw_arguments, index=i))
        events.append(StreamEvent("tool_call_done", index=i, tool_call=call))
    events.append(StreamEvent("usage", usage=response.usage))
    events.append(StreamEvent("finish", finish_reason=response.finish_reason))
    return events


def _request_for(interaction: Interaction) -> Request:
    """A forge Request equivalent to what the recorded client sent (messages, tools, options)."""
    body = interaction.request_json() or {}
    messages = tuple(Message(m["role"], m.get("content") or "") for m in body.get("messages", []))
    tools = tuple(
        Tool(t["function"]["name"], t["function"].get("description", ""), t["function"].get("parameters", {}))
        for t in body.get("tools") or []
    )
    options = dict(body.get("options") or {})
    return Request(
        model=body.get("model", "llama3"),
        messages=messages,
        temperature=options.pop("temperature", None),
        seed=options.pop("seed", None),
        tools=tools,
        extra={"options": options} if options else {},
    )


# ---------------------------------------------------------------------- recordings: coverage


def test_every_recorded_ollama_endpoint_is_replayed_or_a_declared_gap() -> None:
    require_real_recordings()
    assert ALL, "the real Ollama recordings are missing (../shared/cassettes-real/ollama)"
    seen = {endpoint(x) for _, _, x in ALL}
    unknown = seen - set(COVERED) - set(GAP_ENDPOINTS)
    assert not unknown, f"recorded endpoints neither replayed nor declared as gaps: {unknown}"
    gaps = {(f, endpoint(x)) for f, _, x in ALL if endpoint(x) in GAP_ENDPOINTS}
    assert ("generate-stream-ndjson.yaml", "POST /api/generate") in gaps
    assert ("openai-compat-basic.yaml", "POST /v1/chat/completions") in gaps
    assert len(REPLAYED) >= 3


# ---------------------------------------------------------------------- recordings: fast path == typed path


@pytest.mark.asyncio
@pytest.mark.parametrize(("name", "index", "interaction"), REPLAYED, ids=_ids(REPLAYED))
async def test_recording_fast_path_equals_typed_path(
    harness_factory: Callable[..., Harness], name: str, index: int, interaction: Interaction
) -> None:
    h = harness_factory([interaction])
    request = _request_for(interaction)
    model, kwargs = ollama_chat_args(request)
    streaming = _is_stream(interaction)
    typed: list[ollama.ChatResponse] = []
    typed_error: BaseException | None = None
    try:
        if streaming:
            typed = [part async for part in await h.sdk.chat(model=model, **kwargs, stream=True)]
        else:
            typed = [await h.sdk.chat(model=model, **kwargs, stream=False)]
    except (ollama.ResponseError, ConnectionError, httpx.HTTPError) as exc:
        typed_error = exc

    if typed_error is not None:
        with pytest.raises(ForgeError) as info:
            if streaming:
                await _events(h.provider, request)
            else:
                await h.provider.complete(request)
        assert type(info.value) is type(h.provider.classify(typed_error))
        cause = info.value.__cause__
        assert isinstance(cause, ollama.ResponseError) and isinstance(typed_error, ollama.ResponseError)
        assert (cause.error, cause.status_code) == (typed_error.error, typed_error.status_code)
        return

    expected = typed_events(typed)
    if streaming:
        got = await _events(h.provider, request)
    else:
        got = _response_events(await h.provider.complete(request))
    assert _normalize_ids(got) == _normalize_ids(expected)
    ids = [ev.tool_call.id for ev in got if ev.kind == "tool_call_done" and ev.tool_call]
    assert len(set(ids)) == len(ids) and all(ids)
    # forge sent what the recorded client sent (the same JSON; the recordings' clients differ in version).
    assert h.forge_transport.sent_json() == h.sdk_transport.sent_json()
    assert all(s.closed for s in h.forge_transport.streams)


# ---------------------------------------------------------------------- recordings: exact values


@pytest.mark.asyncio
async def test_chat_stream_ndjson_text_usage_finish(harness_factory: Callable[..., Harness]) -> None:
    [interaction] = load_cassette("ollama/chat-stream-ndjson.yaml")
    h = harness_factory([interaction], split=13)
    events = await _events(h.provider, _request("Tell me a joke about OpenTelemetry"))
    text = "".join(ev.text for ev in events if ev.kind == "text")
    assert text.startswith(
        "Why did the OpenTelemetry agent go to therapy?\n\nBecause it was feeling traced out"
    )
    lines = [json.loads(line) for line in interaction.text().splitlines() if line.strip()]
    assert text == "".join(line["message"]["content"] for line in lines)
    done = lines[-1]
    assert events[-2] == StreamEvent(
        "usage", usage=Usage(input_tokens=done["prompt_eval_count"], output_tokens=done["eval_count"])
    )
    assert events[-2].usage == Usage(input_tokens=17, output_tokens=50)
    assert events[-1] == StreamEvent("finish", finish_reason="stop")
    assert [ev.kind for ev in events].count("finish") == 1
    sent = h.forge_transport.sent_json()
    assert sent["stream"] is True and sent["messages"] == interaction.request_json()["messages"]


@pytest.mark.asyncio
async def test_chat_nonstream_tools(harness_factory: Callable[..., Harness]) -> None:
    [interaction] = load_cassette("ollama/chat-nonstream-tools.yaml")
    h = harness_factory([interaction])
    tool = Tool(
        "get_current_weather",
        "Get the current weather in a city.",
        {
            "type": "object",
            "required": ["city"],
            "properties": {"city": {"type": "string", "description": "The city name."}},
        },
    )
    request = Request(
        model="qwen3.6:latest",
        messages=(Message("user", "What is the weather in Paris? Use the get_current_weather tool."),),
        temperature=0,
        seed=42,
        tools=(tool,),
    )
    response = await h.provider.complete(request)
    assert response.tool_calls == (
        ToolCall("call_gsiiy8py", "get_current_weather", {"city": "Paris"}, '{"city":"Paris"}'),
    )
    assert response.finish_reason == "tool_calls"
    assert response.text == ""
    assert response.reasoning is not None and response.reasoning.startswith("Thinking Process:")
    assert response.usage == Usage(input_tokens=292, output_tokens=143)
    assert response.model == "qwen3.6:latest" and response.provider == "ollama"
    assert response.raw == interaction.json()
    # The body forge sends is the recorded one, field for field.
    assert h.forge_transport.sent_json() == interaction.request_json()


@pytest.mark.asyncio
async def test_chat_error_404_model_is_not_found(harness_factory: Callable[..., Harness]) -> None:
    [interaction] = load_cassette("ollama/chat-error-404-model.yaml")
    h = harness_factory([interaction, interaction])
    request = _request("Why is the sky blue?", model="nonexistent-model:latest")
    with pytest.raises(NotFoundError) as info:
        await h.provider.complete(request)
    assert info.value.status == 404 and not info.value.retryable
    assert "model 'nonexistent-model:latest' not found" in str(info.value)
    with pytest.raises(NotFoundError):
        await _events(h.provider, request)
    assert h.forge_transport.streams[1].closed
    assert h.forge_transport.sent_json(0) == interaction.request_json()


# ---------------------------------------------------------------------- the request: byte for byte


FULL_REQUEST = Request(
    model="qwen3:8b",
    messages=(
        Message("system", "Be brief."),
        Message("user", "Weather in Paris? é 🌧"),
        Message(
            "assistant",
            "",
            tool_calls=(ToolCall("c1", "weather", {"city": "Paris"}),),
            reasoning="look it up",
        ),
        Message("tool", '{"temp": 21}', tool_call_id="c1"),
        Message("assistant", "21 degrees."),
        Message("user", "And tomorrow?"),
    ),
    system="You are a weather bot.",
    max_tokens=256,
    temperature=0.2,
    top_p=0.9,
    seed=7,
    stop=("END",),
    response_format=ResponseFormat(
        "json_schema", {"type": "object", "properties": {"t": {"type": "number"}}}
    ),
    tools=(
        Tool("weather", "Look up weather", {"type": "object", "properties": {"city": {"type": "string"}}}),
    ),
    extra={"think": True, "num_ctx": 8192, "options": {"top_k": 20}, "keep_alive": "10m"},
)
BYTE_CASES = {
    "plain": _request(),
    "full": FULL_REQUEST,
    "json-mode": _request(
        response_format=ResponseFormat("json"), tools=FULL_REQUEST.tools, tool_choice="none"
    ),
}


def _ok(request: httpx.Request) -> httpx.Response:
    done = {
        "model": "m",
        "message": {"role": "assistant", "content": "ok"},
        "done": True,
        "done_reason": "stop",
    }
    if json.loads(request.content).get("stream"):
        return httpx.Response(
            200, headers={"content-type": "application/x-ndjson"}, content=json.dumps(done) + "\n"
        )
    return httpx.Response(200, json=done)


def _recorder(seen: list[httpx.Request]) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return _ok(request)

    return httpx.MockTransport(handle)


def _stable_headers(request: httpx.Request) -> list[tuple[str, str]]:
    return [(k, v) for k, v in request.headers.multi_items() if k not in VOLATILE_HEADERS]


@pytest.mark.asyncio
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "nonstream"])
@pytest.mark.parametrize("case", list(BYTE_CASES))
async def test_request_is_byte_for_byte_what_the_client_sends(case: str, stream: bool) -> None:
    request = BYTE_CASES[case]
    sdk_seen: list[httpx.Request] = []
    forge_seen: list[httpx.Request] = []

    config = _config(api_key="secret", options={"keep_alive": "5m"})
    sdk = ollama.AsyncClient(
        host=HOST, headers={"authorization": "Bearer secret"}, transport=_recorder(sdk_seen)
    )
    provider = OllamaProvider(config, transport=_recorder(forge_seen))
    model, kwargs = ollama_chat_args(request, keep_alive="5m")
    if stream:
        async for _ in await sdk.chat(model=model, **kwargs, stream=True):
            pass
        await _events(provider, request)
    else:
        await sdk.chat(model=model, **kwargs, stream=False)
        await provider.complete(request)
    await sdk.close()  # type: ignore[no-untyped-call]
    await provider.aclose()

    [theirs], [ours] = sdk_seen, forge_seen
    assert ours.method == theirs.method == "POST"
    assert str(ours.url) == str(theirs.url) == f"{HOST}/api/chat"
    assert ours.content == theirs.content
    assert _stable_headers(ours) == _stable_headers(theirs)
    assert ours.headers["authorization"] == "Bearer secret"


def test_translation_of_the_full_request() -> None:
    model, kwargs = ollama_chat_args(FULL_REQUEST, keep_alive="5m")
    body = build_ollama_chat_payload(model, kwargs, stream=True)
    assert body["model"] == "qwen3:8b" and body["stream"] is True
    assert body["messages"] == [
        {"role": "system", "content": "You are a weather bot."},
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris? é 🌧"},
        {
            "role": "assistant",
            "thinking": "look it up",
            "tool_calls": [{"function": {"name": "weather", "arguments": {"city": "Paris"}}}],
        },
        {"role": "tool", "content": '{"temp": 21}', "tool_name": "weather"},
        {"role": "assistant", "content": "21 degrees."},
        {"role": "user", "content": "And tomorrow?"},
    ]
    assert body["options"] == {
        "num_predict": 256,
        "temperature": 0.2,
        "top_p": 0.9,
        "seed": 7,
        "stop": ["END"],
        "num_ctx": 8192,
        "top_k": 20,
    }
    assert body["format"] == {"type": "object", "properties": {"t": {"type": "number"}}}
    assert body["keep_alive"] == "10m"  # extra wins over the provider option
    assert body["think"] is True
    assert body["tools"][0]["function"]["name"] == "weather"


def test_json_mode_and_tool_choice_none() -> None:
    model, kwargs = ollama_chat_args(BYTE_CASES["json-mode"])
    body = build_ollama_chat_payload(model, kwargs, stream=False)
    assert body["format"] == "json"
    assert body["tools"] == []  # the client always sends the key; tool_choice="none" leaves it empty


@pytest.mark.asyncio
async def test_unknown_extra_is_a_bad_request_error_before_any_request() -> None:
    seen: list[httpx.Request] = []
    provider = OllamaProvider(_config(), transport=_recorder(seen))
    with pytest.raises(BadRequestError, match="frobnicate"):
        await provider.complete(_request(extra={"frobnicate": 1}))
    with pytest.raises(BadRequestError, match="frobnicate"):
        await _events(provider, _request(extra={"frobnicate": 1}))
    assert seen == []
    await provider.aclose()


@pytest.mark.asyncio
async def test_no_authorization_header_without_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OLLAMA_API_KEY", raising=False)
    provider = OllamaProvider(_config(), transport=httpx.MockTransport(_ok))
    assert "authorization" not in provider._http().headers
    assert str(provider._http().base_url) == HOST
    await provider.aclose()


@pytest.mark.asyncio
async def test_host_from_ollama_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_HOST", "10.0.0.5:9999")
    provider = OllamaProvider(ProviderConfig(name="ollama"), transport=httpx.MockTransport(_ok))
    assert str(provider._http().base_url) == "http://10.0.0.5:9999"
    await provider.aclose()


@pytest.mark.asyncio
@pytest.mark.parametrize("body", [b"[1, 2]", b"not json", b'{"message": "x", "done": true}'])
async def test_malformed_bodies_are_provider_errors_not_raw_exceptions(body: bytes) -> None:
    provider = OllamaProvider(
        _config(), transport=httpx.MockTransport(lambda r: httpx.Response(200, content=body))
    )
    with pytest.raises(ProviderError):
        await provider.complete(_request())
    stream_provider, _ = _provider([body + b"\n"])
    with pytest.raises(ProviderError):
        await _events(stream_provider, _request())
    await provider.aclose()
    await stream_provider.aclose()


# ---------------------------------------------------------------------- stream decoding details


def _lines(*objs: dict[str, Any]) -> bytes:
    return b"".join(json.dumps(o).encode() + b"\n" for o in objs)


def _provider(
    chunks: list[bytes], *, status: int = 200, error: BaseException | None = None, hang: bool = False
) -> tuple[OllamaProvider, HttpxClosingStream]:
    stream = HttpxClosingStream(chunks, error=error, hang=hang)
    transport = httpx.MockTransport(
        lambda r: httpx.Response(status, headers={"content-type": "application/x-ndjson"}, stream=stream)
    )
    return OllamaProvider(_config(), transport=transport), stream


@pytest.mark.asyncio
async def test_thinking_tool_calls_and_length() -> None:
    body = _lines(
        {"message": {"role": "assistant", "content": "", "thinking": "hmm"}, "done": False},
        {
            "message": {
                "role": "assistant",
                "content": "",
                "tool_calls": [{"function": {"name": "f", "arguments": {"a": 1}}}],
            },
            "done": False,
        },
        {
            "message": {"role": "assistant", "content": "x"},
            "done": True,
            "done_reason": "length",
            "prompt_eval_count": 4,
            "eval_count": 9,
        },
    )
    provider, _ = _provider([body[:17], body[17:]])
    events = await _events(provider, _request())
    assert [(e.kind, e.text) for e in events] == [
        ("reasoning", "hmm"),
        ("tool_call_start", ""),
        ("tool_call_delta", '{"a":1}'),
        ("tool_call_done", ""),
        ("text", "x"),
        ("usage", ""),
        ("finish", ""),
    ]
    assert events[3].tool_call == ToolCall("call_0", "f", {"a": 1}, '{"a":1}')
    assert events[5].usage == Usage(input_tokens=4, output_tokens=9)
    assert events[6].finish_reason == "length"
    await provider.aclose()


@pytest.mark.asyncio
async def test_stream_with_tool_calls_finishes_with_tool_calls() -> None:
    body = _lines(
        {
            "message": {
                "role": "assistant",
                "content": "",
                "tool_calls": [{"id": "call_x", "function": {"index": 0, "name": "f", "arguments": {}}}],
            },
            "done": False,
        },
        {"message": {"role": "assistant", "content": ""}, "done": True, "done_reason": "stop"},
    )
    provider, _ = _provider([body])
    events = await _events(provider, _request())
    assert events[2].tool_call == ToolCall("call_x", "f", {}, "{}")
    assert events[-1].finish_reason == "tool_calls"
    await provider.aclose()


@pytest.mark.asyncio
async def test_in_band_error_line_raises_server_error_after_text() -> None:
    body = _lines(
        {"message": {"role": "assistant", "content": "par"}, "done": False},
        {"error": "an error was encountered while running the model: unexpected EOF"},
    )
    provider, stream = _provider([body])
    got = []
    with pytest.raises(ServerError) as info:
        async for ev in provider.stream(_request()):
            got.append(ev)
    assert [e.text for e in got] == ["par"]
    assert info.value.status is None and info.value.retryable
    assert isinstance(info.value.__cause__, ollama.ResponseError) and info.value.__cause__.status_code == -1
    assert stream.closed
    await provider.aclose()


@pytest.mark.asyncio
async def test_mid_stream_disconnect_is_connection_error_and_closes() -> None:
    provider, stream = _provider(
        [_lines({"message": {"role": "assistant", "content": "a"}, "done": False})],
        error=httpx.RemoteProtocolError("peer closed connection"),
    )
    got = []
    with pytest.raises(ProviderConnectionError) as info:
        async for ev in provider.stream(_request()):
            got.append(ev)
    assert [e.text for e in got] == ["a"]
    assert isinstance(info.value.__cause__, httpx.RemoteProtocolError)
    assert stream.closed
    await provider.aclose()


@pytest.mark.asyncio
async def test_stream_without_done_line_is_a_connection_error() -> None:
    provider, _ = _provider([_lines({"message": {"role": "assistant", "content": "a"}, "done": False})])
    got: list[StreamEvent] = []
    with pytest.raises(ProviderConnectionError, match="done line"):
        async for ev in provider.stream(_request()):
            got.append(ev)
    assert [e.text for e in got] == ["a"]
    await provider.aclose()


@pytest.mark.asyncio
async def test_connect_error_stream_and_complete() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    provider = OllamaProvider(_config(), transport=httpx.MockTransport(refuse))
    gen = provider.stream(_request())
    with pytest.raises(ProviderConnectionError):
        await gen.__anext__()
    with pytest.raises(ProviderConnectionError):
        await provider.complete(_request())
    await provider.aclose()


@pytest.mark.asyncio
async def test_request_is_sent_on_first_anext_not_before() -> None:
    seen: list[httpx.Request] = []
    provider = OllamaProvider(_config(), transport=_recorder(seen))
    gen = provider.stream(_request())
    assert seen == []
    assert (await gen.__anext__()).text == "ok"
    assert len(seen) == 1
    await gen.aclose()  # type: ignore[attr-defined]
    await provider.aclose()


# ---------------------------------------------------------------------- closing


@pytest.mark.asyncio
async def test_aclose_after_first_event_closes_the_http_response() -> None:
    chunks = [_lines({"message": {"role": "assistant", "content": str(i)}, "done": False}) for i in range(50)]
    provider, stream = _provider(chunks)
    gen = provider.stream(_request())
    assert (await gen.__anext__()).text == "0"
    await gen.aclose()  # type: ignore[attr-defined]
    assert stream.closed and stream.sent < 50
    await provider.aclose()


@pytest.mark.asyncio
async def test_cancelling_the_consumer_closes_the_http_response() -> None:
    provider, stream = _provider(
        [_lines({"message": {"role": "assistant", "content": "a"}, "done": False})], hang=True
    )
    first = asyncio.Event()

    async def consume() -> None:
        async for _ in provider.stream(_request()):
            first.set()

    task = asyncio.create_task(consume())
    await first.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert stream.closed
    await provider.aclose()


# ---------------------------------------------------------------------- classify


@pytest.fixture(scope="module")
def classifier() -> OllamaProvider:
    return OllamaProvider(_config(), transport=httpx.MockTransport(_ok))


@pytest.mark.parametrize(
    ("exc", "cls"),
    [
        (ollama.ResponseError('{"error":"model \'x\' not found"}', 404), NotFoundError),
        (ollama.ResponseError("unauthorized", 401), AuthenticationError),
        (ollama.ResponseError("too many requests", 429), RateLimitError),
        (ollama.ResponseError("server busy", 503), OverloadedError),
        (ollama.ResponseError("internal", 500), ServerError),
        (ollama.ResponseError("invalid format", 400), BadRequestError),
        (ollama.ResponseError("the input length exceeds the context length", 400), ContextLengthError),
        (ollama.ResponseError("model runner has unexpectedly stopped"), ServerError),
        (ollama.RequestError("must provide a model"), BadRequestError),
        (ConnectionError("Failed to connect to Ollama."), ProviderConnectionError),
        (httpx.ConnectError("refused"), ProviderConnectionError),
        (httpx.RemoteProtocolError("peer closed"), ProviderConnectionError),
        (httpx.ReadTimeout("read"), ProviderTimeout),
        (RuntimeError("boom"), ProviderError),
    ],
)
def test_classify(classifier: OllamaProvider, exc: BaseException, cls: type[ForgeError]) -> None:
    err = classifier.classify(exc)
    assert type(err) is cls
    if isinstance(exc, ollama.ResponseError) and exc.status_code != -1:
        assert isinstance(err, ProviderError) and err.status == exc.status_code


def test_classify_404_message_is_the_error_text(classifier: OllamaProvider) -> None:
    err = classifier.classify(ollama.ResponseError('{"error":"model \'x\' not found"}', 404))
    assert "model 'x' not found" in str(err) and "{" not in str(err)


def test_classify_passes_forge_errors_through(classifier: OllamaProvider) -> None:
    err = RateLimitError("slow down", provider="ollama")
    assert classifier.classify(err) is err


# ---------------------------------------------------------------------- the emulator (real sockets)


@pytest.fixture
async def emulated() -> AsyncIterator[tuple[Any, OllamaProvider]]:
    from forge.testing.emulator import Emulator

    async with Emulator() as emu:
        provider = OllamaProvider(ProviderConfig(name="ollama", base_url=emu.url))
        yield emu, provider
        await provider.aclose()


@pytest.mark.asyncio
async def test_emulator_complete_and_stream(emulated: tuple[Any, OllamaProvider]) -> None:
    emu, provider = emulated
    request = _request("hello there")
    response = await provider.complete(request)
    assert response.text == "Hello from the emulator (ollama, llama3). You said: hello there"
    assert response.finish_reason == "stop" and response.usage.output_tokens > 0
    events = await _events(provider, request)
    assert "".join(e.text for e in events if e.kind == "text") == response.text
    assert events[-1] == StreamEvent("finish", finish_reason="stop")
    assert [e.usage for e in events if e.kind == "usage"] == [response.usage]
    assert [(r.path, r.stream) for r in emu.requests] == [("/api/chat", False), ("/api/chat", True)]


@pytest.mark.asyncio
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "nonstream"])
async def test_emulator_request_log_shows_identical_requests(
    emulated: tuple[Any, OllamaProvider], stream: bool
) -> None:
    emu, provider = emulated
    sdk = ollama.AsyncClient(host=emu.url)
    model, kwargs = ollama_chat_args(FULL_REQUEST)
    if stream:
        async for _ in await sdk.chat(model=model, **kwargs, stream=True):
            pass
        await _events(provider, FULL_REQUEST)
    else:
        await sdk.chat(model=model, **kwargs, stream=False)
        await provider.complete(FULL_REQUEST)
    await sdk.close()  # type: ignore[no-untyped-call]
    theirs, ours = emu.requests
    assert (ours.method, ours.path, ours.query) == (theirs.method, theirs.path, theirs.query)
    assert ours.raw_body == theirs.raw_body
    assert {k: v for k, v in ours.headers.items() if k not in VOLATILE_HEADERS} == {
        k: v for k, v in theirs.headers.items() if k not in VOLATILE_HEADERS
    }


@pytest.mark.asyncio
async def test_emulator_faults_map_to_forge_errors(emulated: tuple[Any, OllamaProvider]) -> None:
    from forge.testing.emulator import Fault

    emu, provider = emulated
    emu.script(Fault.rate_limit(retry_after=2.0), provider="ollama")
    with pytest.raises(RateLimitError):
        await provider.complete(_request())
    emu.script(Fault.drop_after(2), provider="ollama")
    got: list[StreamEvent] = []
    with pytest.raises(ProviderConnectionError):
        async for ev in provider.stream(_request()):
            got.append(ev)
    assert any(e.kind == "text" for e in got)
    emu.script(Fault.stream_error(), provider="ollama")
    with pytest.raises(ServerError):
        await _events(provider, _request())


@pytest.mark.asyncio
async def test_emulator_early_aclose_closes_the_connection(emulated: tuple[Any, OllamaProvider]) -> None:
    from forge.testing.emulator import Fault

    emu, provider = emulated
    emu.script(Fault.chunk_delay(0.05), provider="ollama")
    gen = provider.stream(_request())
    assert (await gen.__anext__()).kind == "text"
    await gen.aclose()  # type: ignore[attr-defined]
    await emu.wait_connections(0, timeout=2.0)
    assert emu.open_connections == 0
