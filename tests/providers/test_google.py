"""GoogleProvider: real recordings, the typed SDK path as oracle, byte-identical requests, errors, closing."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx2
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as gt

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
from forge.providers.google import GoogleProvider, build_gemini_http_request, gemini_call_args
from forge.types import (
    Message,
    ReasoningBlock,
    Request,
    Response,
    ResponseFormat,
    StreamEvent,
    Tool,
    ToolCall,
    Usage,
)
from tests._services import require_real_recordings
from tests.cassette_replay import (
    ClosingStream,
    Interaction,
    ReplayTransport,
    load_cassette,
    recorded_interactions,
)

BASE_URL = "https://generativelanguage.googleapis.com/"
MODEL = "gemini-2.5-flash"

# Headers allowed to differ between the SDK's request and forge's. Both go out through the
# same httpx2 client built from the same HttpOptions, so none does; a non-empty set here
# would have to say why.
VOLATILE_HEADERS: frozenset[str] = frozenset()

# Endpoints of the recordings this adapter does not call, and why. Any other endpoint
# found in the recordings must be covered by the replay tests below.
GAP_ENDPOINTS = {
    ":batchGenerateContent": "batch API: forge.batch, not the Provider adapter",
    "batches": "batch polling / results: forge.batch, not the Provider adapter",
    "cachedContents": "explicit cache create/get/delete: not in the Provider protocol yet",
    ":streamGenerateContent (JSON array)": (
        "forge requests alt=sse; an array answer is decoded too (test_google_json_array.py, "
        "test_real_cassettes.py)"
    ),
    ":countTokens": "token counting: forge.tokens estimates locally",
    ":embedContent": "embeddings: not in the Provider protocol",
    ":batchEmbedContents": "embeddings: not in the Provider protocol",
    "files": "file uploads: not in the Provider protocol",
    "models (list/get)": "model metadata: not in the Provider protocol",
}


def _config(**kw: Any) -> ProviderConfig:
    base: dict[str, Any] = {"api_key": "test-key", "base_url": BASE_URL, "options": {"api_version": "v1beta"}}
    base.update(kw)
    return ProviderConfig(name="google", **base)


def _request(text: str = "hi", **kw: Any) -> Request:
    return Request(model=MODEL, messages=(Message("user", text),), **kw)


def endpoint(interaction: Interaction) -> str:
    """What a recorded Gemini request called, in the words of GAP_ENDPOINTS."""
    url = httpx2.URL(interaction.uri)
    path = url.path
    if path.endswith(":streamGenerateContent"):
        return (
            ":streamGenerateContent"
            if url.params.get("alt") == "sse"
            else (":streamGenerateContent (JSON array)")
        )
    if ":" in path.rsplit("/", 1)[-1]:
        return ":" + path.rsplit(":", 1)[-1]
    for name in ("cachedContents", "files", "batches"):
        if f"/{name}" in path:
            return name
    if interaction.method == "GET" and "/models" in path:
        return "models (list/get)"
    return f"{interaction.method} {path}"


_MODEL_PATH = re.compile(r"/(v1[a-z0-9]*)/models/([^/:]+):")


def _recorded_target(interaction: Interaction) -> tuple[str, str]:
    """(api_version, model) of a recorded Gemini Developer API call, else the defaults."""
    match = _MODEL_PATH.search(httpx2.URL(interaction.uri).path)
    return (match.group(1), match.group(2)) if match else ("v1beta", MODEL)


COVERED = (":generateContent", ":streamGenerateContent")
ALL = recorded_interactions("gemini")
REPLAYED = [(f, i, x) for f, i, x in ALL if endpoint(x) in COVERED]


def _ids(cases: list[tuple[str, int, Interaction]]) -> list[str]:
    return [f"{f}[{i}]" for f, i, _ in cases]


class Harness:
    """A GoogleProvider and an official SDK client, each on its own ReplayTransport."""

    def __init__(
        self, interactions: list[Interaction], *, split: int | None = 48, api_version: str = "v1beta"
    ) -> None:
        config = _config(options={"api_version": api_version})
        self.forge_transport = ReplayTransport(interactions, split=split)
        self.sdk_transport = ReplayTransport(interactions, split=split)
        self.forge_http = httpx2.AsyncClient(transport=self.forge_transport)
        self.sdk_http = httpx2.AsyncClient(transport=self.sdk_transport)
        self.provider = GoogleProvider(config, http_client=self.forge_http)
        self.sdk = _sdk_client(self.sdk_http, config)

    async def aclose(self) -> None:
        await self.provider.aclose()
        self.sdk.close()
        await self.sdk.aio.aclose()
        await self.forge_http.aclose()
        await self.sdk_http.aclose()


def _sdk_client(http: httpx2.AsyncClient, config: ProviderConfig | None = None) -> genai.Client:
    """The official client configured exactly as GoogleProvider configures its own."""
    cfg = config or _config()
    return genai.Client(
        api_key=cfg.api_key,
        vertexai=False,
        http_options=gt.HttpOptions(
            base_url=cfg.base_url,
            api_version=str(cfg.options["api_version"]),
            timeout=int(cfg.timeout * 1000),
            retry_options=gt.HttpRetryOptions(attempts=1),
            httpx_async_client=http,
            httpx_client=_NO_SYNC,  # spares an SSL context per client; the tests are async only
        ),
    )


_NO_SYNC = httpx2.Client(transport=httpx2.MockTransport(lambda r: httpx2.Response(599)))


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


async def _events(provider: GoogleProvider, request: Request) -> list[StreamEvent]:
    return [ev async for ev in provider.stream(request)]


# ---------------------------------------------------------------------- the typed path, as oracle

_FINISH = {"STOP": "stop", "MAX_TOKENS": "length", "SAFETY": "content_filter", "RECITATION": "content_filter"}


def typed_events(chunks: list[gt.GenerateContentResponse]) -> list[StreamEvent]:
    """The events the typed SDK chunks imply, built from pydantic objects only."""
    events: list[StreamEvent] = []
    calls = 0
    last_usage: Usage | None = None
    emitted: Usage | None = None
    finish: str | None = None
    response_id = None
    text_signed = False
    for chunk in chunks:
        cand = chunk.candidates[0] if chunk.candidates else None
        for part in (cand.content.parts or []) if cand and cand.content else []:
            if part.text is not None:
                if part.text:
                    events.append(StreamEvent("reasoning" if part.thought else "text", part.text))
                if part.thought_signature and not text_signed:  # the first text signature, for the next turn
                    text_signed = True
                    sig = base64.b64encode(part.thought_signature).decode()
                    events.append(StreamEvent("reasoning", "", signature=sig))
            elif part.function_call is not None:
                fc = part.function_call
                call_id = fc.id or f"call_{calls}"
                args = fc.args or {}
                raw = json.dumps(args, ensure_ascii=False, separators=(",", ":"))
                sig = base64.b64encode(part.thought_signature).decode() if part.thought_signature else None
                events.append(
                    StreamEvent("tool_call_start", index=calls, tool_call=ToolCall(call_id, fc.name or ""))
                )
                events.append(StreamEvent("tool_call_delta", raw, index=calls))
                events.append(
                    StreamEvent(
                        "tool_call_done",
                        index=calls,
                        tool_call=ToolCall(call_id, fc.name or "", args, raw, signature=sig),
                    )
                )
                calls += 1
        if cand is not None and cand.finish_reason is not None:
            finish = cand.finish_reason.value
        meta = chunk.usage_metadata
        if meta is not None:
            thoughts = meta.thoughts_token_count or 0
            usage = Usage(
                input_tokens=(meta.prompt_token_count or 0) + (meta.tool_use_prompt_token_count or 0),
                output_tokens=(meta.candidates_token_count or 0) + thoughts,
                cached_input_tokens=meta.cached_content_token_count or 0,
                reasoning_tokens=thoughts,
            )
            if emitted is None:  # usage is reported at the first chunk that has it ...
                events.append(StreamEvent("usage", usage=usage))
                emitted = usage
            last_usage = usage
        response_id = response_id or chunk.response_id
    if last_usage is not None and last_usage != emitted:  # ... and with the final totals
        events.append(StreamEvent("usage", usage=last_usage))
    reason = _FINISH.get(finish or "", "error" if finish else None)
    if reason == "stop" and calls:
        reason = "tool_calls"
    events.append(StreamEvent("finish", response_id or "", finish_reason=reason))  # type: ignore[arg-type]
    return events


async def _typed_stream(sdk: genai.Client, request: Request) -> list[gt.GenerateContentResponse]:
    model, contents, config = gemini_call_args(request)
    stream = await sdk.aio.models.generate_content_stream(model=model, contents=contents, config=config)
    return [chunk async for chunk in stream]


def _signature_bytes(events: list[StreamEvent]) -> list[bytes | None]:
    out: list[bytes | None] = []
    for ev in events:
        if ev.kind == "tool_call_done" and ev.tool_call is not None:
            sig = ev.tool_call.signature
            out.append(base64.b64decode(sig + "=" * (-len(sig) % 4)) if sig else None)
    return out


def _without_signatures(events: list[StreamEvent]) -> list[StreamEvent]:
    out = []
    for ev in events:
        if ev.tool_call is not None and ev.tool_call.signature:
            tc = ev.tool_call
            ev = StreamEvent(
                ev.kind, ev.text, ev.index, ToolCall(tc.id, tc.name, tc.arguments, tc.raw_arguments)
            )
        elif ev.signature is not None:
            ev = StreamEvent(ev.kind, ev.text, ev.index, signature="<signature>")
        out.append(ev)
    return out


# ---------------------------------------------------------------------- recordings: coverage


def test_every_recorded_gemini_endpoint_is_replayed_or_a_declared_gap() -> None:
    require_real_recordings()
    assert ALL, "the real Gemini recordings are missing (../shared/cassettes-real/gemini)"
    seen = {endpoint(x) for _, _, x in ALL}
    unknown = seen - set(COVERED) - set(GAP_ENDPOINTS)
    assert not unknown, f"recorded endpoints neither replayed nor declared as gaps: {unknown}"
    gaps = sorted({(f, endpoint(x)) for f, _, x in ALL if endpoint(x) in GAP_ENDPOINTS})
    # Today's gaps, stated explicitly: batch creation and the cachedContents CRUD calls.
    assert ("batch-submit.yaml", ":batchGenerateContent") in gaps
    assert ("cached-content-create-use-delete.yaml", "cachedContents") in gaps
    assert len(REPLAYED) >= 7


# ---------------------------------------------------------------------- recordings: fast path == typed path


@pytest.mark.asyncio
@pytest.mark.parametrize(("name", "index", "interaction"), REPLAYED, ids=_ids(REPLAYED))
async def test_recording_fast_path_equals_typed_path(
    harness_factory: Callable[..., Harness], name: str, index: int, interaction: Interaction
) -> None:
    api_version, model = _recorded_target(interaction)
    h = harness_factory([interaction], api_version=api_version)
    request = Request(model=model, messages=(Message("user", "hi"),))
    streaming = endpoint(interaction) == ":streamGenerateContent"
    typed_error: BaseException | None = None
    typed: list[gt.GenerateContentResponse] = []
    try:
        if streaming:
            typed = await _typed_stream(h.sdk, request)
        else:
            model, contents, config = gemini_call_args(request)
            typed = [await h.sdk.aio.models.generate_content(model=model, contents=contents, config=config)]
    except genai_errors.APIError as exc:
        typed_error = exc

    if typed_error is not None:
        with pytest.raises(ForgeError) as info:
            if streaming:
                await _events(h.provider, request)
            else:
                await h.provider.complete(request)
        assert type(info.value) is type(h.provider.classify(typed_error))
        cause = info.value.__cause__
        assert isinstance(cause, genai_errors.APIError)
        assert (cause.code, cause.status, cause.message) == (
            typed_error.code,  # type: ignore[attr-defined]
            typed_error.status,  # type: ignore[attr-defined]
            typed_error.message,  # type: ignore[attr-defined]
        )
        return

    expected = typed_events(typed)
    if streaming:
        got = await _events(h.provider, request)
    else:
        response = await h.provider.complete(request)
        got = _response_events(response)
        expected = [ev for ev in expected if ev.kind != "tool_call_start" and ev.kind != "tool_call_delta"]
    assert _without_signatures(got) == _without_signatures(expected)
    assert _signature_bytes(got) == _signature_bytes(expected)
    if _MODEL_PATH.search(httpx2.URL(interaction.uri).path):  # a Gemini Developer API recording
        assert h.forge_transport.requests[0].url.path == httpx2.URL(interaction.uri).path
    assert all(s.closed for s in h.forge_transport.streams)


def _response_events(response: Response) -> list[StreamEvent]:
    """A complete() Response in the shape typed_events gives for one chunk."""
    events: list[StreamEvent] = []
    if response.reasoning:
        events.append(StreamEvent("reasoning", response.reasoning))
    if response.text:
        events.append(StreamEvent("text", response.text))
    events.extend(
        StreamEvent("tool_call_done", index=i, tool_call=call) for i, call in enumerate(response.tool_calls)
    )
    if response.usage != Usage():
        events.append(StreamEvent("usage", usage=response.usage))
    events.append(StreamEvent("finish", response.id or "", finish_reason=response.finish_reason))
    return events


# ---------------------------------------------------------------------- recordings: exact values


@pytest.mark.asyncio
async def test_stream_sse_basic_text_usage_finish(harness_factory: Callable[..., Harness]) -> None:
    h = harness_factory(load_cassette("gemini/stream-sse-basic.yaml"), split=7)
    events = await _events(h.provider, _request("What is 4200 + 42?"))
    text = "".join(ev.text for ev in events if ev.kind == "text")
    assert text.startswith("To find the sum of 4200 + 42") and text.endswith("4200 + 42 = **4242**.")
    usages = [ev.usage for ev in events if ev.kind == "usage"]
    assert usages == [
        Usage(input_tokens=13, output_tokens=50 + 75, reasoning_tokens=75),
        Usage(input_tokens=13, output_tokens=63 + 75, reasoning_tokens=75),
    ]
    assert usages[-1] is not None and usages[-1].total_tokens == 151  # the recorded totalTokenCount
    assert events[-1] == StreamEvent("finish", "VJfyaP7eE_6zmtkP4qLV6Ao", finish_reason="stop")
    assert [ev.kind for ev in events].count("finish") == 1


@pytest.mark.asyncio
async def test_stream_sse_structured_json_text(harness_factory: Callable[..., Harness]) -> None:
    h = harness_factory(load_cassette("gemini/stream-sse-structured.yaml"))
    request = _request(response_format=ResponseFormat("json_schema", {"type": "object"}))
    events = await _events(h.provider, request)
    text = "".join(ev.text for ev in events if ev.kind == "text")
    assert json.loads(text) == {
        "title": "THE NAME OF THE WIND",
        "author": {"first_name": "Patrick", "last_name": "Rothfuss"},
        "rating": 7,
    }
    assert events[-2].usage == Usage(input_tokens=11, output_tokens=29 + 264, reasoning_tokens=264)
    assert events[-1].finish_reason == "stop"
    sent = h.forge_transport.sent_json()
    assert sent["generationConfig"] == {
        "responseMimeType": "application/json",
        "responseJsonSchema": {"type": "object"},
    }


SECRET_TOOL = Tool(
    "secret_retrieval_tool",
    "A tool that requires a password to retrieve a secret.",
    {"type": "object", "properties": {"password": {"type": "string"}}, "required": ["password"]},
)


@pytest.mark.asyncio
async def test_stream_sse_tools_round_trip_matches_recorded_follow_up(
    harness_factory: Callable[..., Harness],
) -> None:
    turns = load_cassette("gemini/stream-sse-tools.yaml")
    h = harness_factory(turns)
    prompt = "Please retrieve the secrets associated with each of these passwords: mellon,radiance"
    first = Request(
        model=MODEL,
        messages=(Message("user", prompt),),
        system="Use parallel tool calling.",
        tools=(SECRET_TOOL,),
    )
    events = await _events(h.provider, first)
    calls = [ev.tool_call for ev in events if ev.kind == "tool_call_done"]
    assert [(c.id, c.name, dict(c.arguments)) for c in calls if c] == [
        ("call_0", "secret_retrieval_tool", {"password": "mellon"}),
        ("call_1", "secret_retrieval_tool", {"password": "radiance"}),
    ]
    assert [ev.text for ev in events if ev.kind == "tool_call_delta"] == [
        '{"password":"mellon"}',
        '{"password":"radiance"}',
    ]
    assert calls[0] is not None and calls[0].signature and calls[0].signature.startswith("CikB0e2Kbw5t")
    assert events[-2].usage == Usage(input_tokens=70, output_tokens=40 + 61, reasoning_tokens=61)
    assert events[-1] == StreamEvent("finish", "G5nyaJuGE-yrqtsPmJHUoAs", finish_reason="tool_calls")

    second = Request(
        model=MODEL,
        messages=(
            Message("user", prompt),
            Message("assistant", "", tool_calls=tuple(c for c in calls if c)),
            Message("tool", "Welcome to Moria!", tool_call_id="call_0"),
            Message("tool", "Life before Death", tool_call_id="call_1"),
        ),
        system="Use parallel tool calling.",
        tools=(SECRET_TOOL,),
    )
    events = await _events(h.provider, second)
    assert "".join(ev.text for ev in events if ev.kind == "text") == (
        'The secrets associated with the passwords "mellon" and "radiance" are '
        '"Welcome to Moria!" and "Life before Death" respectively.'
    )
    assert events[-1].finish_reason == "stop"
    # The history forge sends is the history the recorded client sent (signature included).
    sent, recorded = h.forge_transport.sent_json(), turns[1].request_json()
    assert sent["contents"] == recorded["contents"]
    assert sent["systemInstruction"] == recorded["systemInstruction"]


@pytest.mark.asyncio
async def test_nonstream_gzip_complete(harness_factory: Callable[..., Harness]) -> None:
    [interaction] = load_cassette("gemini/nonstream-basic-gzip.yaml")
    h = harness_factory([interaction])
    response = await h.provider.complete(_request("What is 4200 + 42?"))
    body = interaction.json()
    assert response.text == body["candidates"][0]["content"]["parts"][0]["text"]
    assert "4242" in response.text
    meta = body["usageMetadata"]
    assert response.usage == Usage(
        input_tokens=meta["promptTokenCount"],
        output_tokens=meta["candidatesTokenCount"] + meta.get("thoughtsTokenCount", 0),
        reasoning_tokens=meta.get("thoughtsTokenCount", 0),
    )
    assert response.finish_reason == "stop"
    assert response.id == body["responseId"]
    assert response.raw == body
    assert response.provider == "google" and response.model == "gemini-2.5-flash"
    assert str(h.forge_transport.requests[0].url).endswith("/v1beta/models/gemini-2.5-flash:generateContent")
    assert h.forge_transport.sent_json()["contents"] == interaction.request_json()["contents"]


@pytest.mark.asyncio
async def test_cached_content_usage(harness_factory: Callable[..., Harness]) -> None:
    recorded = load_cassette("gemini/cached-content-create-use-delete.yaml")
    uses = [x for x in recorded if endpoint(x) == ":generateContent"]
    h = harness_factory(uses)
    cache = "cachedContents/7lf5him5ev4iemi1yjv2gwli5bhpz3yidzejwllo"
    extra = {"cached_content": cache, "response_modalities": ["TEXT"]}
    first = await h.provider.complete(_request("What is the capital of France?", extra=extra))
    second = await h.provider.complete(_request("Say the capital one more time.", extra=extra))
    assert first.text == second.text == "Paris."
    assert first.usage == Usage(
        input_tokens=3520, output_tokens=2 + 42, cached_input_tokens=3512, reasoning_tokens=42
    )
    assert second.usage.cached_input_tokens == 3512
    assert second.usage.output_tokens == 2 + 51
    for sent, interaction in zip(h.forge_transport.requests, uses, strict=True):
        body = json.loads(sent.content)
        assert body == interaction.request_json()  # cachedContent + generationConfig as recorded


@pytest.mark.asyncio
async def test_error_400_api_key_stream_is_authentication_error(
    harness_factory: Callable[..., Harness],
) -> None:
    h = harness_factory(load_cassette("gemini/error-400-api-key-stream.yaml"))
    with pytest.raises(AuthenticationError) as info:
        await _events(h.provider, _request())
    err = info.value
    assert err.status == 400 and err.code == "API_KEY_INVALID" and not err.retryable
    assert "API key not valid" in str(err)
    assert isinstance(err.__cause__, genai_errors.ClientError)
    assert h.forge_transport.streams[0].closed


# ---------------------------------------------------------------------- the request: byte for byte


_OK = b'{"candidates": [{"content": {"parts": [{"text": "ok"}], "role": "model"}, "finishReason": "STOP"}]}'


def _sse_ok(request: httpx2.Request) -> httpx2.Response:
    if request.url.params.get("alt") == "sse":
        body = b"data: " + _OK + b"\r\n\r\n"
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=body)
    return httpx2.Response(200, headers={"content-type": "application/json"}, content=_OK)


def _recorder(seen: list[httpx2.Request]) -> httpx2.MockTransport:
    def handle(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return _sse_ok(request)

    return httpx2.MockTransport(handle)


FULL_REQUEST = Request(
    model="gemini-2.5-pro",
    messages=(
        Message("system", "Be brief."),
        Message("user", "Weather in Paris? é ü 🌧"),
        Message(
            "assistant",
            "",
            tool_calls=(ToolCall("call_0", "weather", {"city": "Paris"}, signature="YWJjZA=="),),
        ),
        Message("tool", '{"temp": 21}', tool_call_id="call_0"),
        Message("assistant", "21 degrees.", reasoning_signature="c2ln"),
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
    tool_choice="weather",
    extra={
        "thinking_config": {"include_thoughts": True, "thinking_budget": 128},
        "safety_settings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
        "labels": {"team": "a"},
        "cachedContent": "cachedContents/abc",  # not a config field: merged into the body as is
    },
)
BYTE_CASES = {
    "plain": _request(),
    "full": FULL_REQUEST,
    "json-mode": _request(response_format=ResponseFormat("json"), tool_choice="none"),
}


def _stable_headers(request: httpx2.Request) -> list[tuple[str, str]]:
    return [(k, v) for k, v in request.headers.multi_items() if k not in VOLATILE_HEADERS]


@pytest.mark.asyncio
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "nonstream"])
@pytest.mark.parametrize("case", list(BYTE_CASES))
async def test_request_is_byte_for_byte_what_the_sdk_sends(case: str, stream: bool) -> None:
    request = BYTE_CASES[case]
    sdk_seen: list[httpx2.Request] = []
    forge_seen: list[httpx2.Request] = []

    config = _config(timeout=30.0)
    async with (
        httpx2.AsyncClient(transport=_recorder(sdk_seen)) as sdk_http,
        httpx2.AsyncClient(transport=_recorder(forge_seen)) as forge_http,
    ):
        sdk = _sdk_client(sdk_http, config)
        provider = GoogleProvider(config, http_client=forge_http)
        model, contents, cfg = gemini_call_args(request)
        if stream:
            async for _ in await sdk.aio.models.generate_content_stream(
                model=model, contents=contents, config=cfg
            ):
                pass
            await _events(provider, request)
        else:
            await sdk.aio.models.generate_content(model=model, contents=contents, config=cfg)
            await provider.complete(request)
        sdk.close()
        await sdk.aio.aclose()
        await provider.aclose()

    [theirs], [ours] = sdk_seen, forge_seen
    assert ours.method == theirs.method == "POST"
    assert str(ours.url) == str(theirs.url)
    assert ours.content == theirs.content
    assert _stable_headers(ours) == _stable_headers(theirs)
    assert ours.headers["x-goog-api-key"] == "test-key"
    assert ours.headers["x-server-timeout"] == "30"


def test_translation_of_the_full_request() -> None:
    client = genai.Client(api_key="k", vertexai=False, http_options=gt.HttpOptions(base_url=BASE_URL))
    try:
        _, url, _, body = build_gemini_http_request(client, *gemini_call_args(FULL_REQUEST), stream=True)
    finally:
        client.close()
    sent = json.loads(body)
    assert url == f"{BASE_URL}v1/models/gemini-2.5-pro:streamGenerateContent?alt=sse"
    assert sent["systemInstruction"] == {
        "parts": [{"text": "You are a weather bot.\n\nBe brief."}],
        "role": "user",
    }
    assert sent["contents"] == [
        {"parts": [{"text": "Weather in Paris? é ü 🌧"}], "role": "user"},
        {
            "parts": [
                {
                    "functionCall": {"args": {"city": "Paris"}, "name": "weather"},
                    "thoughtSignature": "YWJjZA==",
                }
            ],
            "role": "model",
        },
        {"parts": [{"functionResponse": {"name": "weather", "response": {"temp": 21}}}], "role": "user"},
        {"parts": [{"text": "21 degrees.", "thoughtSignature": "c2ln"}], "role": "model"},
        {"parts": [{"text": "And tomorrow?"}], "role": "user"},
    ]
    gen = sent["generationConfig"]
    assert gen["maxOutputTokens"] == 256 and gen["temperature"] == 0.2 and gen["topP"] == 0.9
    assert gen["seed"] == 7 and gen["stopSequences"] == ["END"]
    assert gen["responseMimeType"] == "application/json"
    assert gen["responseJsonSchema"] == {"type": "object", "properties": {"t": {"type": "number"}}}
    assert gen["thinkingConfig"] == {"include_thoughts": True, "thinking_budget": 128}
    assert sent["toolConfig"] == {
        "functionCallingConfig": {"allowedFunctionNames": ["weather"], "mode": "ANY"}
    }
    assert sent["tools"][0]["functionDeclarations"][0]["name"] == "weather"
    assert sent["safetySettings"] == [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}]
    assert sent["cachedContent"] == "cachedContents/abc"
    assert sent["labels"] == {"team": "a"}


def test_vendor_function_call_ids_are_sent_back_forge_ids_are_not() -> None:
    request = Request(
        model=MODEL,
        messages=(
            Message("user", "x"),
            Message("assistant", tool_calls=(ToolCall("fc-9", "f", {}), ToolCall("call_3", "g", {}))),
            Message("tool", "1", tool_call_id="fc-9"),
            Message("tool", "[1, 2]", tool_call_id="call_3"),
        ),
    )
    _, contents, _ = gemini_call_args(request)
    model_parts, response_parts = contents[1].parts or [], contents[2].parts or []
    assert [p.function_call.id for p in model_parts if p.function_call] == ["fc-9", None]
    assert [
        (p.function_response.id, p.function_response.name, p.function_response.response)
        for p in response_parts
        if p.function_response
    ] == [
        ("fc-9", "f", {"output": 1}),
        (None, "g", {"output": [1, 2]}),
    ]


@pytest.mark.asyncio
async def test_invalid_extra_is_a_bad_request_error_before_any_request() -> None:
    seen: list[httpx2.Request] = []
    transport = _recorder(seen)
    provider = GoogleProvider(_config(), http_client=httpx2.AsyncClient(transport=transport))
    with pytest.raises(BadRequestError, match="temperature"):
        await _events(provider, _request(extra={"temperature": "hot"}))
    with pytest.raises(BadRequestError, match="temperature"):
        await provider.complete(_request(extra={"temperature": "hot"}))
    assert seen == []
    await _close(provider)


def test_missing_api_key_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from forge.errors import ConfigError

    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="GEMINI_API_KEY"):
        GoogleProvider(ProviderConfig(name="google"))


# ---------------------------------------------------------------------- stream decoding details


def _sse(*chunks: dict[str, Any]) -> bytes:
    return b"".join(b"data: " + json.dumps(c).encode() + b"\r\n\r\n" for c in chunks)


async def _run(
    body_chunks: list[bytes],
    *,
    status: int = 200,
    error: BaseException | None = None,
    headers: dict[str, str] | None = None,
    hang: bool = False,
) -> tuple[GoogleProvider, ClosingStream]:
    stream = ClosingStream(body_chunks, error=error, hang=hang)
    transport = httpx2.MockTransport(
        lambda r: httpx2.Response(
            status, headers=headers or {"content-type": "text/event-stream"}, stream=stream
        )
    )
    provider = GoogleProvider(_config(), http_client=httpx2.AsyncClient(transport=transport))
    return provider, stream


async def _close(provider: GoogleProvider) -> None:
    await provider.aclose()
    await provider._http.aclose()


@pytest.mark.asyncio
async def test_thoughts_are_reasoning_and_finish_reasons_map() -> None:
    body = _sse(
        {"candidates": [{"content": {"parts": [{"text": "hmm", "thought": True}], "role": "model"}}]},
        {
            "candidates": [
                {
                    "content": {"parts": [{"text": "Hi", "thoughtSignature": "c2ln"}]},
                    "finishReason": "MAX_TOKENS",
                }
            ],
            "usageMetadata": {
                "promptTokenCount": 5,
                "candidatesTokenCount": 1,
                "thoughtsTokenCount": 2,
                "toolUsePromptTokenCount": 3,
                "cachedContentTokenCount": 4,
            },
        },
    )
    provider, _ = await _run([body])
    events = await _events(provider, _request())
    assert [(e.kind, e.text, e.signature) for e in events[:3]] == [
        ("reasoning", "hmm", None),
        ("text", "Hi", None),
        ("reasoning", "", "c2ln"),  # the text part's thoughtSignature, for the next turn
    ]
    assert events[3].usage == Usage(
        input_tokens=8, output_tokens=3, cached_input_tokens=4, reasoning_tokens=2
    )
    assert [e.reasoning for e in events[4:6]] == [
        ReasoningBlock("google", "thinking", "hmm", position=0),
        ReasoningBlock("google", "signature", "", "c2ln", position=1),
    ]
    assert events[6].finish_reason == "length"
    await _close(provider)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ("SAFETY", "content_filter"),
        ("RECITATION", "content_filter"),
        ("BLOCKLIST", "content_filter"),
        ("PROHIBITED_CONTENT", "content_filter"),
        ("SPII", "content_filter"),
        ("OTHER", "error"),
        ("MALFORMED_FUNCTION_CALL", "error"),
        ("STOP", "stop"),
        ("MAX_TOKENS", "length"),
    ],
)
async def test_finish_reason_mapping(reason: str, expected: str) -> None:
    provider, _ = await _run(
        [_sse({"candidates": [{"content": {"parts": [{"text": "x"}]}, "finishReason": reason}]})]
    )
    assert (await _events(provider, _request()))[-1].finish_reason == expected
    await _close(provider)


@pytest.mark.asyncio
async def test_stream_without_finish_reason_is_a_connection_error() -> None:
    provider, _ = await _run([_sse({"candidates": [{"content": {"parts": [{"text": "a"}]}}]})])
    got: list[StreamEvent] = []
    with pytest.raises(ProviderConnectionError, match="finish reason"):
        async for ev in provider.stream(_request()):
            got.append(ev)
    assert [e.text for e in got] == ["a"]
    await _close(provider)


@pytest.mark.asyncio
async def test_blocked_prompt_is_content_filter() -> None:
    provider, _ = await _run([_sse({"promptFeedback": {"blockReason": "SAFETY"}})])
    assert (await _events(provider, _request()))[-1].finish_reason == "content_filter"
    await _close(provider)


@pytest.mark.asyncio
async def test_in_band_error_chunk_raises_overloaded_after_text() -> None:
    body = _sse(
        {"candidates": [{"content": {"parts": [{"text": "par"}]}}]},
        {"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}},
    )
    provider, stream = await _run([body])
    got: list[StreamEvent] = []
    with pytest.raises(OverloadedError) as info:
        async for ev in provider.stream(_request()):
            got.append(ev)
    assert [e.text for e in got] == ["par"]
    assert info.value.status == 503 and info.value.retryable
    assert isinstance(info.value.__cause__, genai_errors.ServerError)
    assert stream.closed
    await _close(provider)


@pytest.mark.asyncio
async def test_unframed_json_error_in_a_200_stream_raises_like_the_sdk() -> None:
    error = {"error": {"code": 429, "message": "Quota exceeded", "status": "RESOURCE_EXHAUSTED"}}
    body = json.dumps(error, indent=2).encode() + b"\n"  # pretty-printed over several lines, no data:
    provider, _ = await _run([body[:9], body[9:]])
    with pytest.raises(RateLimitError):
        await _events(provider, _request())
    await _close(provider)


@pytest.mark.asyncio
@pytest.mark.parametrize("body", [b"[1, 2]", b"not json", b'{"candidates": "x"}'])
async def test_malformed_bodies_are_provider_errors_not_raw_exceptions(body: bytes) -> None:
    transport = httpx2.MockTransport(lambda r: httpx2.Response(200, content=body))
    provider = GoogleProvider(_config(), http_client=httpx2.AsyncClient(transport=transport))
    with pytest.raises(ProviderError):
        await provider.complete(_request())
    stream_provider, _ = await _run([b"data: " + body + b"\r\n\r\n"])
    with pytest.raises(ProviderError):
        await _events(stream_provider, _request())
    await _close(provider)
    await _close(stream_provider)


@pytest.mark.asyncio
async def test_mid_stream_disconnect_is_connection_error_and_closes() -> None:
    chunk = _sse({"candidates": [{"content": {"parts": [{"text": "a"}]}}]})
    provider, stream = await _run([chunk], error=httpx2.RemoteProtocolError("peer closed connection"))
    got = []
    with pytest.raises(ProviderConnectionError) as info:
        async for ev in provider.stream(_request()):
            got.append(ev)
    assert [e.text for e in got] == ["a"]
    assert isinstance(info.value.__cause__, httpx2.RemoteProtocolError)
    assert stream.closed
    await _close(provider)


@pytest.mark.asyncio
async def test_mid_stream_read_timeout_is_provider_timeout() -> None:
    chunk = _sse({"candidates": [{"content": {"parts": [{"text": "a"}]}}]})
    provider, _ = await _run([chunk], error=httpx2.ReadTimeout("timed out"))
    with pytest.raises(ProviderTimeout):
        await _events(provider, _request())
    await _close(provider)


@pytest.mark.asyncio
async def test_connect_error_before_first_byte() -> None:
    def refuse(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError("connection refused")

    provider = GoogleProvider(
        _config(), http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(refuse))
    )
    stream = provider.stream(_request())
    with pytest.raises(ProviderConnectionError):
        await stream.__anext__()
    with pytest.raises(ProviderConnectionError):
        await provider.complete(_request())
    await _close(provider)


@pytest.mark.asyncio
async def test_request_is_sent_on_first_anext_not_before() -> None:
    seen: list[httpx2.Request] = []
    transport = _recorder(seen)
    provider = GoogleProvider(_config(), http_client=httpx2.AsyncClient(transport=transport))
    stream = provider.stream(_request())
    assert seen == []
    assert (await stream.__anext__()).text == "ok"
    assert len(seen) == 1
    await stream.aclose()  # type: ignore[attr-defined]
    await _close(provider)


# ---------------------------------------------------------------------- closing


@pytest.mark.asyncio
async def test_aclose_after_first_event_closes_the_http_response() -> None:
    chunks = [_sse({"candidates": [{"content": {"parts": [{"text": str(i)}]}}]}) for i in range(50)]
    provider, stream = await _run(chunks)
    gen = provider.stream(_request())
    assert (await gen.__anext__()).text == "0"
    assert not stream.closed
    await gen.aclose()  # type: ignore[attr-defined]
    assert stream.closed
    assert stream.sent < 50
    await _close(provider)


@pytest.mark.asyncio
async def test_cancelling_the_consumer_closes_the_http_response() -> None:
    provider, stream = await _run(
        [_sse({"candidates": [{"content": {"parts": [{"text": "a"}]}}]})], hang=True
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
    await _close(provider)


# ---------------------------------------------------------------------- classify


def _api_error(
    code: int,
    status: str,
    message: str,
    details: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> genai_errors.APIError:
    body = {"error": {"code": code, "message": message, "status": status, "details": details or []}}
    response = httpx2.Response(code, headers=headers or {}, json=body)
    cls = genai_errors.ClientError if code < 500 else genai_errors.ServerError
    return cls(code, body, response)


@pytest.fixture(scope="module")
def classifier() -> GoogleProvider:
    """classify() needs no network; one provider serves every case."""
    return GoogleProvider(_config(), http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(_sse_ok)))


RETRY_INFO = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s"}


@pytest.mark.parametrize(
    ("exc", "cls", "retry_after"),
    [
        (_api_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded", [RETRY_INFO]), RateLimitError, 7.0),
        (
            _api_error(429, "RESOURCE_EXHAUSTED", "q", [{**RETRY_INFO, "retryDelay": "1.5s"}]),
            RateLimitError,
            1.5,
        ),
        (_api_error(429, "RESOURCE_EXHAUSTED", "q", [RETRY_INFO], {"retry-after": "3"}), RateLimitError, 3.0),
        (_api_error(429, "RESOURCE_EXHAUSTED", "q"), RateLimitError, None),
        (_api_error(503, "UNAVAILABLE", "The model is overloaded."), OverloadedError, None),
        (_api_error(500, "INTERNAL", "An internal error has occurred."), ServerError, None),
        (_api_error(504, "DEADLINE_EXCEEDED", "Deadline expired"), ServerError, None),
        (
            _api_error(
                400,
                "INVALID_ARGUMENT",
                "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).",
            ),
            ContextLengthError,
            None,
        ),
        (_api_error(400, "INVALID_ARGUMENT", "Invalid JSON payload"), BadRequestError, None),
        (_api_error(400, "FAILED_PRECONDITION", "User location is not supported"), BadRequestError, None),
        (
            _api_error(
                400,
                "INVALID_ARGUMENT",
                "API key not valid.",
                [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}],
            ),
            AuthenticationError,
            None,
        ),
        (_api_error(403, "PERMISSION_DENIED", "denied"), AuthenticationError, None),
        (_api_error(404, "NOT_FOUND", "models/nope is not found"), NotFoundError, None),
    ],
    ids=lambda v: v.__name__ if isinstance(v, type) else None,
)
def test_classify_api_errors(
    classifier: GoogleProvider,
    exc: genai_errors.APIError,
    cls: type[ProviderError],
    retry_after: float | None,
) -> None:
    err = classifier.classify(exc)
    assert type(err) is cls
    assert isinstance(err, ProviderError)
    assert err.retry_after == retry_after
    assert err.status == exc.code and err.provider == "google"


@pytest.mark.parametrize(
    ("exc", "cls"),
    [
        (httpx2.RemoteProtocolError("peer closed"), ProviderConnectionError),
        (httpx2.ReadTimeout("read"), ProviderTimeout),
        (httpx2.ConnectTimeout("connect"), ProviderTimeout),
        (httpx2.ConnectError("refused"), ProviderConnectionError),
        (ConnectionResetError("reset"), ProviderConnectionError),
        (genai_errors.UnknownApiResponseError("not json"), ProviderError),
        (RuntimeError("boom"), ProviderError),
    ],
)
def test_classify_transport_and_other_errors(
    classifier: GoogleProvider, exc: BaseException, cls: type[ForgeError]
) -> None:
    assert type(classifier.classify(exc)) is cls


def test_classify_passes_forge_errors_through(classifier: GoogleProvider) -> None:
    err = RateLimitError("slow down", provider="google")
    assert classifier.classify(err) is err


# ---------------------------------------------------------------------- the emulator (real sockets)


@pytest.fixture
async def emulated() -> AsyncIterator[tuple[Any, GoogleProvider]]:
    from forge.testing.emulator import Emulator

    async with Emulator() as emu:
        provider = GoogleProvider(ProviderConfig(name="google", api_key="emulator-key", base_url=emu.url))
        yield emu, provider
        await provider.aclose()


@pytest.mark.asyncio
async def test_emulator_complete_and_stream(emulated: tuple[Any, GoogleProvider]) -> None:
    emu, provider = emulated
    request = _request("hello there", max_tokens=50)
    response = await provider.complete(request)
    assert response.text == "Hello from the emulator (google, gemini-2.5-flash). You said: hello there"
    assert response.finish_reason == "stop" and response.usage.output_tokens > 0
    events = await _events(provider, request)
    assert "".join(e.text for e in events if e.kind == "text") == response.text
    assert events[-1].kind == "finish" and events[-1].finish_reason == "stop"
    assert [e.usage for e in events if e.kind == "usage"][-1] == response.usage
    assert [(r.path, r.query) for r in emu.requests] == [
        ("/v1/models/gemini-2.5-flash:generateContent", ""),
        ("/v1/models/gemini-2.5-flash:streamGenerateContent", "alt=sse"),
    ]


@pytest.mark.asyncio
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "nonstream"])
async def test_emulator_request_log_shows_identical_requests(
    emulated: tuple[Any, GoogleProvider], stream: bool
) -> None:
    emu, provider = emulated
    emu.signatures.enabled = False  # FULL_REQUEST carries made-up signatures: this test is about the bytes
    config = ProviderConfig(name="google", api_key="emulator-key", base_url=emu.url)
    async with httpx2.AsyncClient() as http:
        sdk = genai.Client(
            api_key="emulator-key",
            vertexai=False,
            http_options=gt.HttpOptions(
                base_url=emu.url,
                timeout=int(config.timeout * 1000),
                retry_options=gt.HttpRetryOptions(attempts=1),
                httpx_async_client=http,
            ),
        )
        # The emulator, like Gemini, refuses a cachedContent it does not hold (and one sent
        # beside a system instruction or tools), so this request names none.
        request = dataclasses.replace(
            FULL_REQUEST, extra={k: v for k, v in FULL_REQUEST.extra.items() if k != "cachedContent"}
        )
        model, contents, cfg = gemini_call_args(request)
        if stream:
            async for _ in await sdk.aio.models.generate_content_stream(
                model=model, contents=contents, config=cfg
            ):
                pass
            await _events(provider, request)
        else:
            await sdk.aio.models.generate_content(model=model, contents=contents, config=cfg)
            await provider.complete(request)
        sdk.close()
    theirs, ours = emu.requests
    assert (ours.method, ours.path, ours.query) == (theirs.method, theirs.path, theirs.query)
    assert ours.raw_body == theirs.raw_body
    assert {k: v for k, v in ours.headers.items() if k not in VOLATILE_HEADERS} == {
        k: v for k, v in theirs.headers.items() if k not in VOLATILE_HEADERS
    }


@pytest.mark.asyncio
async def test_emulator_faults_map_to_forge_errors(emulated: tuple[Any, GoogleProvider]) -> None:
    from forge.testing.emulator import Fault

    emu, provider = emulated
    emu.script(Fault.rate_limit(retry_after=2.0), provider="google")
    with pytest.raises(RateLimitError) as info:
        await provider.complete(_request())
    assert info.value.retry_after == 2.0
    emu.script(Fault.stream_error(), provider="google")
    with pytest.raises(OverloadedError):
        await _events(provider, _request())
    emu.script(Fault.drop_after(2), provider="google")
    got: list[StreamEvent] = []
    with pytest.raises(ProviderConnectionError):
        async for ev in provider.stream(_request()):
            got.append(ev)
    assert any(e.kind == "text" for e in got)


@pytest.mark.asyncio
async def test_emulator_early_aclose_closes_the_connection(emulated: tuple[Any, GoogleProvider]) -> None:
    from forge.testing.emulator import Fault

    emu, provider = emulated
    emu.script(Fault.chunk_delay(0.05), provider="google")
    gen = provider.stream(_request())
    assert (await gen.__anext__()).kind == "text"
    await gen.aclose()  # type: ignore[attr-defined]
    await emu.wait_connections(0, timeout=2.0)
    assert emu.open_connections == 0
