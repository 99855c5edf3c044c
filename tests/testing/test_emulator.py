"""The provider emulator, driven by the real vendor clients over real sockets."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import math
import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import ollama
import openai
import pytest
import pytest_asyncio
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as genai_types

from forge import Registry
from forge.errors import ProviderConnectionError
from forge.testing import Emulator, EmulatorThread, Fault, RecordedRequest, Reply
from forge.testing.emulator import Rule

PROVIDERS = ("openai", "anthropic", "google", "ollama")
MODELS = {"openai": "gpt-x", "anthropic": "claude-x", "google": "gemini-x", "ollama": "llama-x"}
PROMPT = "Tell me something nice"
# One shared default context: building one per client costs ~40 ms of certificate loading.
SSL_CONTEXT = ssl.create_default_context()
SYSTEM = "You are terse."


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Clients:
    """The four official async clients pointed at one emulator, retries off."""

    def __init__(self, emu: Emulator) -> None:
        self.emu = emu
        self._made: dict[str, Any] = {}

    # Built on first use: each client costs tens of milliseconds to construct.
    @functools.cached_property
    def openai(self) -> openai.AsyncOpenAI:
        client = openai.AsyncOpenAI(api_key="k", base_url=self.emu.url + "/v1", max_retries=0)
        self._made["openai"] = client.close
        return client

    @functools.cached_property
    def anthropic(self) -> anthropic.AsyncAnthropic:
        client = anthropic.AsyncAnthropic(api_key="k", base_url=self.emu.url, max_retries=0)
        self._made["anthropic"] = client.close
        return client

    @functools.cached_property
    def gemini(self) -> Any:
        http = httpx2.AsyncClient(verify=SSL_CONTEXT)
        self._made["google"] = http.aclose
        return genai.Client(
            api_key="k",
            http_options=genai_types.HttpOptions(
                base_url=self.emu.url,
                httpx_async_client=http,
                retry_options=genai_types.HttpRetryOptions(attempts=1),
            ),
        ).aio

    @functools.cached_property
    def ollama(self) -> ollama.AsyncClient:
        client = ollama.AsyncClient(host=self.emu.url)
        self._made["ollama"] = client.close
        return client

    async def aclose(self) -> None:
        for close in self._made.values():
            await close()

    async def complete(
        self, provider: str, *, max_tokens: int | None = None, model: str | None = None
    ) -> Any:
        model = model or MODELS[provider]
        if provider == "openai":
            extra = {} if max_tokens is None else {"max_completion_tokens": max_tokens}
            return await self.openai.chat.completions.create(
                model=model,
                messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": PROMPT}],
                **extra,
            )
        if provider == "anthropic":
            return await self.anthropic.messages.create(
                model=model, max_tokens=max_tokens or 1024, system=SYSTEM,
                messages=[{"role": "user", "content": PROMPT}],
            )
        if provider == "google":
            return await self.gemini.models.generate_content(
                model=model, contents=PROMPT,
                config=genai_types.GenerateContentConfig(
                    system_instruction=SYSTEM, max_output_tokens=max_tokens
                ),
            )
        options = {} if max_tokens is None else {"num_predict": max_tokens}
        return await self.ollama.chat(
            model=model,
            messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": PROMPT}],
            options=options,
        )

    async def stream(self, provider: str, *, max_tokens: int | None = None) -> list[Any]:
        """All stream items (chunks / events / responses) the client yields."""
        model = MODELS[provider]
        items: list[Any] = []
        if provider == "openai":
            extra = {} if max_tokens is None else {"max_tokens": max_tokens}
            stream = await self.openai.chat.completions.create(
                model=model, messages=[{"role": "user", "content": PROMPT}], stream=True,
                stream_options={"include_usage": True}, **extra,
            )
            async with stream:
                async for chunk in stream:
                    items.append(chunk)
        elif provider == "anthropic":
            events = await self.anthropic.messages.create(
                model=model, max_tokens=max_tokens or 1024, messages=[{"role": "user", "content": PROMPT}],
                stream=True,
            )
            async with events:
                async for event in events:
                    items.append(event)
        elif provider == "google":
            chunks = await self.gemini.models.generate_content_stream(
                model=model, contents=PROMPT,
                config=genai_types.GenerateContentConfig(max_output_tokens=max_tokens),
            )
            async for chunk in chunks:
                items.append(chunk)
        else:
            options = {} if max_tokens is None else {"num_predict": max_tokens}
            parts = await self.ollama.chat(
                model=model, messages=[{"role": "user", "content": PROMPT}], stream=True, options=options
            )
            async for part in parts:
                items.append(part)
        return items


def stream_text(provider: str, items: list[Any]) -> str:
    if provider == "openai":
        return "".join(c.choices[0].delta.content or "" for c in items if c.choices)
    if provider == "anthropic":
        return "".join(e.delta.text for e in items if e.type == "content_block_delta")
    if provider == "google":
        return "".join(c.text or "" for c in items)
    return "".join(p.message.content or "" for p in items)


def expected_text(provider: str) -> str:
    return f"Hello from the emulator ({provider}, {MODELS[provider]}). You said: {PROMPT}"


def tokens(text: str) -> int:
    return math.ceil(len(text) / 4)


@pytest_asyncio.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator() as emulator:
        yield emulator


@pytest_asyncio.fixture
async def clients(emu: Emulator) -> AsyncIterator[Clients]:
    c = Clients(emu)
    try:
        yield c
    finally:
        await c.aclose()


# -- successful replies -----------------------------------------------------------


async def test_openai_completion_has_text_usage_finish_and_headers(clients: Clients) -> None:
    raw = await clients.openai.chat.completions.with_raw_response.create(
        model="gpt-x", messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": PROMPT}]
    )
    r = raw.parse()
    text = expected_text("openai")
    assert r.object == "chat.completion"
    assert r.choices[0].message.content == text
    assert r.choices[0].finish_reason == "stop"
    assert r.usage is not None
    assert r.usage.prompt_tokens == tokens(SYSTEM + PROMPT)
    assert r.usage.completion_tokens == sum(tokens(c) for c in _split(text, 8))
    assert r.usage.prompt_tokens_details is not None and r.usage.prompt_tokens_details.cached_tokens == 0
    assert r.usage.completion_tokens_details is not None
    assert r.usage.completion_tokens_details.reasoning_tokens == 0
    assert raw.headers["x-request-id"].startswith("req_")
    assert raw.headers["x-ratelimit-limit-requests"] == "10000"
    assert raw.headers["x-ratelimit-remaining-requests"] == "9999"
    assert raw.headers["x-ratelimit-reset-requests"] == "6ms"


def _split(text: str, n: int) -> list[str]:
    return [text[i * len(text) // n : (i + 1) * len(text) // n] for i in range(n)]


async def test_openai_stream_has_role_first_finish_last_and_a_usage_chunk(clients: Clients) -> None:
    chunks = await clients.stream("openai")
    assert chunks[0].choices[0].delta.role == "assistant"
    assert stream_text("openai", chunks) == expected_text("openai")
    content = [c for c in chunks if c.choices]
    assert [c.choices[0].finish_reason for c in content].count("stop") == 1
    assert content[-1].choices[0].finish_reason == "stop"
    assert all(c.usage is None for c in content)
    final = chunks[-1]
    assert final.choices == [] and final.usage is not None
    assert final.usage.prompt_tokens == tokens(PROMPT)
    assert final.usage.completion_tokens == sum(tokens(c) for c in _split(expected_text("openai"), 8))


async def test_openai_stream_without_include_usage_sends_no_usage_chunk(clients: Clients) -> None:
    stream = await clients.openai.chat.completions.create(
        model="gpt-x", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    async with stream:
        chunks = [c async for c in stream]
    assert all(c.choices for c in chunks)


async def test_anthropic_message_has_text_usage_and_stop_reason(clients: Clients) -> None:
    raw = await clients.anthropic.messages.with_raw_response.create(
        model="claude-x", max_tokens=1024, system=SYSTEM, messages=[{"role": "user", "content": PROMPT}]
    )
    m = await raw.parse()
    assert m.type == "message" and m.role == "assistant"
    assert m.content[0].type == "text" and m.content[0].text == expected_text("anthropic")
    assert m.stop_reason == "end_turn"
    assert m.usage.input_tokens == tokens(SYSTEM + PROMPT)
    assert m.usage.output_tokens == sum(tokens(c) for c in _split(expected_text("anthropic"), 8))
    assert m.usage.cache_read_input_tokens == 0 and m.usage.cache_creation_input_tokens == 0
    assert raw.headers["request-id"].startswith("req_")
    for name in ("requests", "tokens", "input-tokens", "output-tokens"):
        assert raw.headers[f"anthropic-ratelimit-{name}-limit"]
        assert raw.headers[f"anthropic-ratelimit-{name}-reset"].endswith("Z")


async def test_anthropic_stream_sends_the_full_event_sequence(clients: Clients) -> None:
    events = await clients.stream("anthropic")
    kinds = [e.type for e in events]
    assert kinds[:2] == ["message_start", "content_block_start"]
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(kinds[2:-3]) == {"content_block_delta"}
    assert stream_text("anthropic", events) == expected_text("anthropic")
    assert events[0].message.usage.input_tokens == tokens(PROMPT)
    delta = events[-2]
    assert delta.delta.stop_reason == "end_turn"
    assert delta.usage.output_tokens == sum(tokens(c) for c in _split(expected_text("anthropic"), 8))


async def test_anthropic_stream_wire_has_event_lines_and_a_ping(emu: Emulator) -> None:
    async with httpx2.AsyncClient(verify=SSL_CONTEXT) as http:
        r = await http.post(emu.url + "/v1/messages", json={
            "model": "claude-x", "max_tokens": 64, "stream": True,
            "messages": [{"role": "user", "content": "hi"}],
        })
    names = [line[len("event: "):] for line in r.text.split("\n") if line.startswith("event: ")]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert r.headers["content-type"].startswith("text/event-stream")


async def test_anthropic_accepts_x_api_key_and_bearer(emu: Emulator) -> None:
    emu.require_api_key("anthropic", "secret")
    body = {"model": "claude-x", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
    async with httpx2.AsyncClient(base_url=emu.url, verify=SSL_CONTEXT) as http:
        by_header = await http.post("/v1/messages", json=body, headers={"x-api-key": "secret"})
        assert by_header.status_code == 200
        ok = await http.post("/v1/messages", json=body, headers={"authorization": "Bearer secret"})
        assert ok.status_code == 200
        bad = await http.post("/v1/messages", json=body, headers={"x-api-key": "nope"})
    assert bad.status_code == 401
    assert bad.json()["error"]["type"] == "authentication_error"


async def test_gemini_generate_content_has_text_usage_and_finish(clients: Clients) -> None:
    r = await clients.complete("google")
    assert r.text == expected_text("google")
    assert r.candidates[0].finish_reason == genai_types.FinishReason.STOP
    usage = r.usage_metadata
    assert usage.prompt_token_count == tokens(SYSTEM + PROMPT)
    assert usage.candidates_token_count == sum(tokens(c) for c in _split(expected_text("google"), 8))
    assert usage.total_token_count == usage.prompt_token_count + usage.candidates_token_count
    assert usage.cached_content_token_count is None
    assert r.model_version == "gemini-x"
    assert r.response_id


async def test_gemini_stream_has_running_usage_and_finish_on_the_last_chunk(clients: Clients) -> None:
    chunks = await clients.stream("google")
    assert stream_text("google", chunks) == expected_text("google")
    finishes = [c.candidates[0].finish_reason for c in chunks]
    assert finishes[-1] == genai_types.FinishReason.STOP and set(finishes[:-1]) == {None}
    counts = [c.usage_metadata.candidates_token_count for c in chunks]
    assert counts == sorted(counts)
    assert counts[-1] == sum(tokens(c) for c in _split(expected_text("google"), 8))
    assert {c.usage_metadata.prompt_token_count for c in chunks} == {tokens(PROMPT)}


async def test_gemini_sse_uses_crlf_and_v1beta_works(emu: Emulator) -> None:
    body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    async with httpx2.AsyncClient(verify=SSL_CONTEXT) as http:
        r = await http.post(emu.url + "/v1beta/models/gemini-x:streamGenerateContent?alt=sse", json=body)
        arr = await http.post(emu.url + "/v1beta/models/gemini-x:streamGenerateContent", json=body)
    assert r.text.startswith("data: {") and r.text.endswith("}\r\n\r\n")
    assert len(r.text.split("\r\n\r\n")) == 9
    parsed = json.loads(arr.text)  # without alt=sse: one streamed JSON array
    assert len(parsed) == 8 and parsed[-1]["candidates"][0]["finishReason"] == "STOP"


async def test_gemini_cached_tokens_are_reported_only_when_positive(clients: Clients, emu: Emulator) -> None:
    emu.script(Reply(text="ok", cached_tokens=3, reasoning_tokens=2), provider="google")
    r = await clients.complete("google")
    assert r.usage_metadata.cached_content_token_count == 3
    assert r.usage_metadata.thoughts_token_count == 2


async def test_ollama_chat_has_text_counts_and_done_reason(clients: Clients) -> None:
    r = await clients.complete("ollama")
    assert r.message.role == "assistant" and r.message.content == expected_text("ollama")
    assert r.done and r.done_reason == "stop"
    assert r.prompt_eval_count == tokens(SYSTEM + PROMPT)
    assert r.eval_count == sum(tokens(c) for c in _split(expected_text("ollama"), 8))
    assert r.total_duration and r.total_duration > 0


async def test_ollama_stream_ends_with_a_done_line(clients: Clients) -> None:
    parts = await clients.stream("ollama")
    assert stream_text("ollama", parts) == expected_text("ollama")
    assert [p.done for p in parts] == [False] * 8 + [True]
    assert parts[-1].done_reason == "stop" and parts[-1].eval_count == sum(
        tokens(c) for c in _split(expected_text("ollama"), 8))


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_max_tokens_cuts_the_reply_and_reports_length(clients: Clients, provider: str) -> None:
    r = await clients.complete(provider, max_tokens=5)
    if provider == "openai":
        text, out = r.choices[0].message.content, r.usage.completion_tokens
        assert r.choices[0].finish_reason == "length"
    elif provider == "anthropic":
        text, out = r.content[0].text, r.usage.output_tokens
        assert r.stop_reason == "max_tokens"
    elif provider == "google":
        text, out = r.text, r.usage_metadata.candidates_token_count
        assert r.candidates[0].finish_reason == genai_types.FinishReason.MAX_TOKENS
    else:
        text, out = r.message.content, r.eval_count
        assert r.done_reason == "length"
    assert out == 5
    assert expected_text(provider).startswith(text)
    assert len(text) < len(expected_text(provider))


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_max_tokens_cuts_streams_too(clients: Clients, provider: str) -> None:
    items = await clients.stream(provider, max_tokens=3)
    text = stream_text(provider, items)
    assert expected_text(provider).startswith(text) and tokens(text) <= 3
    if provider == "openai":
        assert items[-1].usage.completion_tokens == 3
        assert items[-2].choices[0].finish_reason == "length"
    elif provider == "anthropic":
        assert items[-2].delta.stop_reason == "max_tokens" and items[-2].usage.output_tokens == 3
    elif provider == "google":
        assert items[-1].candidates[0].finish_reason == genai_types.FinishReason.MAX_TOKENS
        assert items[-1].usage_metadata.candidates_token_count == 3
    else:
        assert items[-1].done_reason == "length" and items[-1].eval_count == 3


async def test_reply_override_with_explicit_chunks_and_filler(clients: Clients, emu: Emulator) -> None:
    emu.script(Reply(chunks=["a", "bc", "def"]), provider="openai")
    items = await clients.stream("openai")
    assert [c.choices[0].delta.content for c in items[1:4]] == ["a", "bc", "def"]
    emu.script(Reply(chunk_count=4, chunk_size=6), provider="openai")
    items = await clients.stream("openai")
    pieces = [c.choices[0].delta.content for c in items if c.choices and c.choices[0].delta.content]
    assert len(pieces) == 4 and all(len(p) == 6 for p in pieces)
    assert set("".join(pieces)) <= set("abcdefghijklmnopqrstuvwxyz ")
    assert items[-1].usage.completion_tokens == 4 * 2


async def test_default_chunking_follows_the_constructor() -> None:
    async with Emulator(chunk_count=3, chunk_size=10) as emu, httpx2.AsyncClient(verify=SSL_CONTEXT) as http:
        r = await http.post(emu.url + "/api/chat", json={"model": "m", "messages": []})
    lines = [json.loads(line) for line in r.text.splitlines()]
    assert [len(line["message"]["content"]) for line in lines] == [10, 10, 10, 0]
    assert lines[-1]["eval_count"] == 3 * 3


# -- faults: each vendor's typed exception -------------------------------------------

FAULT_CASES: list[tuple[str, Callable[[], Fault], type[BaseException], int]] = [
    ("openai", lambda: Fault.rate_limit(retry_after=2.0), openai.RateLimitError, 429),
    ("openai", Fault.overloaded, openai.InternalServerError, 503),
    ("openai", lambda: Fault.server_error(500), openai.InternalServerError, 500),
    ("openai", lambda: Fault.status(503), openai.InternalServerError, 503),
    ("openai", Fault.auth, openai.AuthenticationError, 401),
    ("openai", Fault.context_length, openai.BadRequestError, 400),
    ("openai", Fault.not_found, openai.NotFoundError, 404),
    ("anthropic", lambda: Fault.rate_limit(retry_after=2.0), anthropic.RateLimitError, 429),
    ("anthropic", Fault.overloaded, anthropic.OverloadedError, 529),
    ("anthropic", lambda: Fault.status(529), anthropic.OverloadedError, 529),
    ("anthropic", lambda: Fault.server_error(500), anthropic.InternalServerError, 500),
    ("anthropic", lambda: Fault.status(503), anthropic.InternalServerError, 503),
    ("anthropic", Fault.auth, anthropic.AuthenticationError, 401),
    ("anthropic", Fault.context_length, anthropic.BadRequestError, 400),
    ("anthropic", Fault.not_found, anthropic.NotFoundError, 404),
    ("google", lambda: Fault.rate_limit(retry_after=7.0), genai_errors.ClientError, 429),
    ("google", Fault.overloaded, genai_errors.ServerError, 503),
    ("google", lambda: Fault.server_error(500), genai_errors.ServerError, 500),
    ("google", Fault.auth, genai_errors.ClientError, 400),
    ("google", lambda: Fault.status(401), genai_errors.ClientError, 401),
    ("google", lambda: Fault.status(403), genai_errors.ClientError, 403),
    ("google", Fault.context_length, genai_errors.ClientError, 400),
    ("google", Fault.not_found, genai_errors.ClientError, 404),
    ("ollama", lambda: Fault.rate_limit(retry_after=1.0), ollama.ResponseError, 429),
    ("ollama", Fault.overloaded, ollama.ResponseError, 503),
    ("ollama", lambda: Fault.server_error(500), ollama.ResponseError, 500),
    ("ollama", Fault.auth, ollama.ResponseError, 401),
    ("ollama", Fault.context_length, ollama.ResponseError, 400),
    ("ollama", Fault.not_found, ollama.ResponseError, 404),
]


def _status_of(exc: BaseException) -> int:
    if isinstance(exc, openai.APIStatusError | anthropic.APIStatusError):
        return exc.status_code
    if isinstance(exc, genai_errors.APIError):
        return exc.code
    assert isinstance(exc, ollama.ResponseError)
    return exc.status_code


@pytest.mark.parametrize(
    ("provider", "make_fault", "exc_type", "status"),
    FAULT_CASES,
    ids=[f"{p}-{s}-{e.__name__}-{i}" for i, (p, _, e, s) in enumerate(FAULT_CASES)],
)
async def test_fault_surfaces_as_the_vendor_exception(
    clients: Clients, emu: Emulator, provider: str, make_fault: Callable[[], Fault],
    exc_type: type[BaseException], status: int,
) -> None:
    emu.script(make_fault(), provider=provider)
    with pytest.raises(exc_type) as info:
        await clients.complete(provider)
    assert _status_of(info.value) == status
    assert emu.requests[-1].status == status
    await clients.complete(provider)  # times=1: the next request succeeds


@pytest.mark.parametrize("provider", ["openai", "anthropic", "google", "ollama"])
async def test_faults_hit_streaming_requests_before_the_first_byte(
    clients: Clients, emu: Emulator, provider: str
) -> None:
    emu.script(Fault.rate_limit(), provider=provider)
    with pytest.raises(Exception) as info:
        await clients.stream(provider)
    assert _status_of(info.value) == 429


async def test_openai_rate_limit_carries_retry_headers_and_body(clients: Clients, emu: Emulator) -> None:
    emu.script(Fault.rate_limit(retry_after=2.0, retry_after_ms=1500), provider="openai")
    with pytest.raises(openai.RateLimitError) as info:
        await clients.complete("openai")
    e = info.value
    assert e.code == "rate_limit_exceeded" and e.type == "requests"
    assert "Rate limit reached for gpt-x" in e.message
    assert e.response.headers["retry-after"] == "2"
    assert e.response.headers["retry-after-ms"] == "1500"
    assert e.response.headers["x-ratelimit-remaining-requests"] == "0"
    assert e.response.headers["x-ratelimit-reset-requests"] == "2s"
    assert e.request_id and e.request_id.startswith("req_")


async def test_openai_error_codes_match_the_real_api(clients: Clients, emu: Emulator) -> None:
    emu.script(Fault.context_length(), provider="openai")
    emu.script(Fault.not_found(), provider="openai")
    emu.script(Fault.auth(), provider="openai")
    codes = []
    for _ in range(3):
        with pytest.raises(openai.APIStatusError) as info:
            await clients.complete("openai")
        codes.append(info.value.code)
    assert codes == ["context_length_exceeded", "model_not_found", "invalid_api_key"]


async def test_anthropic_errors_have_the_vendor_body(clients: Clients, emu: Emulator) -> None:
    emu.script(Fault.rate_limit(retry_after=3), provider="anthropic")
    with pytest.raises(anthropic.RateLimitError) as info:
        await clients.complete("anthropic")
    body = info.value.body
    assert isinstance(body, dict) and body["type"] == "error"
    assert body["error"]["type"] == "rate_limit_error" and body["request_id"] == info.value.request_id
    headers = info.value.response.headers
    assert headers["retry-after"] == "3" and headers["anthropic-ratelimit-requests-remaining"] == "0"
    emu.script(Fault.context_length(), provider="anthropic")
    with pytest.raises(anthropic.BadRequestError) as bad:
        await clients.complete("anthropic")
    assert bad.value.message.find("prompt is too long") >= 0
    assert bad.value.response.headers["x-should-retry"] == "false"


async def test_gemini_rate_limit_has_retry_info(clients: Clients, emu: Emulator) -> None:
    emu.script(Fault.rate_limit(retry_after=7), provider="gemini")
    with pytest.raises(genai_errors.ClientError) as info:
        await clients.complete("google")
    e = info.value
    assert e.code == 429 and e.status == "RESOURCE_EXHAUSTED"
    details = e.details["error"]["details"]
    retry = [d for d in details if d["@type"] == "type.googleapis.com/google.rpc.RetryInfo"]
    assert retry == [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s"}]
    emu.script(Fault.context_length(), provider="google")
    with pytest.raises(genai_errors.ClientError) as ctx:
        await clients.complete("google")
    assert ctx.value.status == "INVALID_ARGUMENT" and "input token count" in (ctx.value.message or "")
    emu.script(Fault.auth(), provider="google")
    with pytest.raises(genai_errors.ClientError) as key:
        await clients.complete("google")
    assert key.value.details["error"]["details"][0]["reason"] == "API_KEY_INVALID"


async def test_ollama_unknown_model_message(emu: Emulator, clients: Clients) -> None:
    emu.script(Fault.not_found(), provider="ollama")
    with pytest.raises(ollama.ResponseError) as info:
        await clients.complete("ollama", model="nope:latest")
    assert info.value.error == "model 'nope:latest' not found" and info.value.status_code == 404


async def test_models_list_makes_unknown_models_404() -> None:
    async with Emulator(models=["gpt-x"]) as emu:
        c = Clients(emu)
        try:
            await c.complete("openai")
            with pytest.raises(openai.NotFoundError, match="does not exist"):
                await c.complete("openai", model="gpt-unknown")
        finally:
            await c.aclose()


# -- in-band stream errors and dropped connections ------------------------------------


async def test_anthropic_in_band_overloaded_error_after_chunks(clients: Clients, emu: Emulator) -> None:
    emu.script(Fault.stream_error(after=2), provider="anthropic")
    seen: list[str] = []
    with pytest.raises(anthropic.APIStatusError) as info:
        async with await clients.anthropic.messages.create(
            model="claude-x", max_tokens=100, messages=[{"role": "user", "content": "hi"}], stream=True
        ) as events:
            async for event in events:
                if event.type == "content_block_delta":
                    seen.append(event.delta.text)
    assert len(seen) == 2
    assert info.value.status_code == 200 and info.value.type == "overloaded_error"


@pytest.mark.parametrize("provider", ["openai", "google", "ollama"])
async def test_in_band_stream_errors_raise_in_each_client(
    clients: Clients, emu: Emulator, provider: str
) -> None:
    emu.script(Fault.stream_error(after=2), provider=provider)
    expected: dict[str, type[BaseException]] = {
        "openai": openai.APIError, "google": genai_errors.ServerError, "ollama": ollama.ResponseError,
    }
    with pytest.raises(expected[provider]) as info:
        await clients.stream(provider)
    if provider == "google":
        assert isinstance(info.value, genai_errors.APIError) and info.value.code == 503
    if provider == "ollama":
        assert isinstance(info.value, ollama.ResponseError) and info.value.status_code == -1
    assert emu.requests[-1].chunks_sent == 2


async def test_stream_error_on_a_non_streamed_request_is_an_http_error(
    clients: Clients, emu: Emulator
) -> None:
    emu.script(Fault.stream_error(), provider="anthropic")
    with pytest.raises(anthropic.OverloadedError):
        await clients.complete("anthropic")




@pytest.mark.parametrize("provider", PROVIDERS)
async def test_drop_after_n_chunks_aborts_the_stream(clients: Clients, emu: Emulator, provider: str) -> None:
    emu.script(Fault.drop_after(chunks=3), provider=provider)
    received: list[str] = []

    async def consume() -> None:
        if provider == "openai":
            stream = await clients.openai.chat.completions.create(
                model="gpt-x", messages=[{"role": "user", "content": "hi"}], stream=True)
            async with stream:
                async for c in stream:
                    if c.choices and c.choices[0].delta.content:
                        received.append(c.choices[0].delta.content)
        elif provider == "anthropic":
            async with await clients.anthropic.messages.create(
                model="claude-x", max_tokens=99, messages=[{"role": "user", "content": "hi"}], stream=True
            ) as events:
                async for e in events:
                    if e.type == "content_block_delta":
                        received.append(e.delta.text)
        elif provider == "google":
            chunks = await clients.gemini.models.generate_content_stream(model="gemini-x", contents="hi")
            async for c in chunks:
                received.append(c.text or "")
        else:
            async for p in await clients.ollama.chat(model="llama-x", messages=[], stream=True):
                received.append(p.message.content or "")

    # Which exception the vendor client raises for a cut body is its own business (anthropic 2.17
    # started wrapping httpx2's RemoteProtocolError in APIConnectionError); what matters is that
    # forge's adapter classifies it as a dropped connection, which forge retries or reports.
    with pytest.raises(Exception) as info:
        await consume()
    async with Registry(config=emu.config()) as reg:
        classified = reg._provider(provider).classify(info.value)
    assert isinstance(classified, ProviderConnectionError), (type(info.value), classified)
    assert len(received) == 3
    rec = emu.requests[-1]
    assert rec.outcome == "dropped" and rec.chunks_sent == 3


async def test_drop_after_cuts_a_json_body(clients: Clients, emu: Emulator) -> None:
    emu.script(Fault.drop_after(), provider="openai")
    with pytest.raises(openai.APIConnectionError):
        await clients.complete("openai")


# -- timing -----------------------------------------------------------------------------


async def test_slow_first_byte_delays_the_status_line(clients: Clients, emu: Emulator) -> None:
    emu.script(Fault.slow_first_byte(0.15), provider="openai")
    start = time.perf_counter()
    await clients.complete("openai")
    assert time.perf_counter() - start >= 0.14


async def test_chunk_delay_spaces_the_chunks(clients: Clients, emu: Emulator) -> None:
    emu.script(Fault.chunk_delay(0.02), Reply(text="abcdef", chunk_count=6), provider="anthropic")
    start = time.perf_counter()
    events = await clients.stream("anthropic")
    assert time.perf_counter() - start >= 0.1
    assert stream_text("anthropic", events) == "abcdef"


async def test_hang_lets_the_client_time_out_and_the_server_notices(emu: Emulator) -> None:
    emu.script(Fault.hang(), provider="openai")
    client = openai.AsyncOpenAI(api_key="k", base_url=emu.url + "/v1", max_retries=0, timeout=0.1)
    try:
        with pytest.raises(openai.APITimeoutError):
            await client.chat.completions.create(model="gpt-x", messages=[{"role": "user", "content": "hi"}])
        await emu.wait_connections(0, timeout=1.0)
    finally:
        await client.close()
    assert emu.requests[-1].outcome == "disconnected"


# -- connection tracking ------------------------------------------------------------------


async def test_closing_a_stream_early_closes_its_connection_promptly(clients: Clients, emu: Emulator) -> None:
    emu.script(Fault.chunk_delay(0.05), Reply(chunk_count=200, chunk_size=8), provider="openai")
    stream = await clients.openai.chat.completions.create(
        model="gpt-x", messages=[{"role": "user", "content": "hi"}], stream=True)
    got = 0
    async for _ in stream:
        got += 1
        if got == 3:
            break
    assert emu.open_connections == 1
    start = time.perf_counter()
    await stream.close()
    await emu.wait_connections(0, timeout=1.0)
    assert time.perf_counter() - start < 0.5
    rec = emu.requests[-1]
    assert rec.outcome == "disconnected" and rec.chunks_sent < 200
    assert emu.connections_closed == emu.connections_accepted


async def test_keep_alive_reuses_one_connection(clients: Clients, emu: Emulator) -> None:
    for _ in range(3):
        await clients.complete("anthropic")
    assert emu.connections_accepted == 1 and emu.open_connections == 1


async def test_wait_connections_times_out_with_a_clear_error(emu: Emulator) -> None:
    async with httpx2.AsyncClient(verify=SSL_CONTEXT) as http:
        await http.get(emu.url + "/api/version")
        with pytest.raises(TimeoutError, match="still open"):
            await emu.wait_connections(0, timeout=0.05)
    await emu.wait_connections(0, timeout=1.0)


async def test_client_disconnects_log_nothing(
    clients: Clients, emu: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    emu.script(Fault.chunk_delay(0.01), Reply(chunk_count=100, chunk_size=4), provider="anthropic", times=3)
    for _ in range(3):
        async with await clients.anthropic.messages.create(
            model="claude-x", max_tokens=99, messages=[{"role": "user", "content": "hi"}], stream=True
        ) as events:
            async for _event in events:
                break
    await emu.wait_connections(0, timeout=1.0)
    await asyncio.sleep(0.05)
    noisy = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert noisy == []


# -- enforced limits -------------------------------------------------------------------------


async def test_requests_per_minute_are_enforced_per_second() -> None:
    clock = FakeClock()
    async with Emulator(clock=clock) as emu:
        emu.set_limits("openai", requests_per_minute=120)  # 2 in any sliding second
        c = Clients(emu)
        try:
            ok = await c.openai.chat.completions.with_raw_response.create(
                model="gpt-x", messages=[{"role": "user", "content": "hi"}])
            assert ok.headers["x-ratelimit-limit-requests"] == "120"
            assert ok.headers["x-ratelimit-remaining-requests"] == "1"
            await c.complete("openai")
            with pytest.raises(openai.RateLimitError) as info:
                await c.complete("openai")
            headers = info.value.response.headers
            assert headers["retry-after"] == "1"
            assert headers["x-ratelimit-remaining-requests"] == "0"
            assert headers["x-ratelimit-reset-requests"] == "1s"
            assert "(RPM): Limit 120" in info.value.message
            clock.advance(0.5)  # both are still inside the last second: no refill
            with pytest.raises(openai.RateLimitError):
                await c.complete("openai")
            clock.advance(0.5)
            await c.complete("openai")
            await c.complete("openai")
            with pytest.raises(openai.RateLimitError):
                await c.complete("openai")
        finally:
            await c.aclose()
    assert [r.status for r in emu.requests] == [200, 200, 429, 429, 200, 200, 429]


async def test_tokens_per_minute_count_input_plus_max_tokens() -> None:
    clock = FakeClock()
    async with Emulator(clock=clock) as emu:
        emu.set_limits("openai", tokens_per_minute=6000)  # 100 tokens per second
        c = Clients(emu)
        try:
            await c.complete("openai", max_tokens=60)  # ~10 input + 60
            with pytest.raises(openai.RateLimitError) as info:
                await c.complete("openai", max_tokens=60)
            assert info.value.type == "tokens" and "(TPM): Limit 6000" in info.value.message
            clock.advance(1.0)
            await c.complete("openai", max_tokens=60)
            with pytest.raises(openai.RateLimitError, match="Request too large"):
                await c.complete("openai", max_tokens=7000)
        finally:
            await c.aclose()


async def test_burst_seconds_sets_the_bucket_size() -> None:
    clock = FakeClock()
    async with Emulator(clock=clock) as emu:
        emu.set_limits("ollama", requests_per_minute=60, burst_seconds=5)
        async with httpx2.AsyncClient(base_url=emu.url, verify=SSL_CONTEXT) as http:
            body = {"model": "m", "messages": [], "stream": False}
            statuses = [(await http.post("/api/chat", json=body)).status_code for _ in range(6)]
    assert statuses == [200] * 5 + [429]


@pytest.mark.parametrize("provider", ["anthropic", "google", "ollama"])
async def test_enforced_limits_answer_with_the_vendor_429(provider: str) -> None:
    clock = FakeClock()
    async with Emulator(clock=clock) as emu:
        emu.set_limits(provider, requests_per_minute=60)
        c = Clients(emu)
        try:
            await c.complete(provider)
            with pytest.raises(Exception) as info:
                await c.complete(provider)
        finally:
            await c.aclose()
    exc = info.value
    assert _status_of(exc) == 429
    if provider == "anthropic":
        assert isinstance(exc, anthropic.RateLimitError)
        assert exc.response.headers["anthropic-ratelimit-requests-limit"] == "60"
        assert exc.response.headers["anthropic-ratelimit-requests-remaining"] == "0"
        assert exc.response.headers["retry-after"] == "1"
    if provider == "google":
        assert isinstance(exc, genai_errors.ClientError) and exc.status == "RESOURCE_EXHAUSTED"
        assert {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1s"} in (
            exc.details["error"]["details"])


# -- rules -----------------------------------------------------------------------------------


async def test_rules_fire_in_fifo_order_and_count_down(clients: Clients, emu: Emulator) -> None:
    first = emu.script(Fault.rate_limit(), provider="openai", times=2)
    second = emu.script(Fault.server_error(500), provider="openai")
    statuses = []
    for _ in range(4):
        try:
            await clients.complete("openai")
            statuses.append(200)
        except openai.APIStatusError as e:
            statuses.append(e.status_code)
    assert statuses == [429, 429, 500, 200]
    assert isinstance(first, Rule) and first.fired == 2 and second.fired == 1
    assert emu.rules == []


async def test_rules_match_provider_model_and_path(clients: Clients, emu: Emulator) -> None:
    emu.script(Reply(text="small"), model="gpt-small", times=None)
    emu.script(Fault.status(500), provider="anthropic", times=None)
    emu.script(Fault.status(404), path="/v1/models/gemini-*", times=None)
    r = await clients.complete("openai", model="gpt-small")
    assert r.choices[0].message.content == "small"
    r = await clients.complete("openai", model="gpt-big")
    assert r.choices[0].message.content != "small"
    with pytest.raises(anthropic.InternalServerError):
        await clients.complete("anthropic")
    with pytest.raises(genai_errors.ClientError):
        await clients.complete("google")
    await clients.complete("ollama")
    assert len(emu.rules) == 3


async def test_a_reply_rule_is_not_used_up_by_other_endpoints(emu: Emulator) -> None:
    rule = emu.script(Reply(text="x"), provider="anthropic")
    async with httpx2.AsyncClient(base_url=emu.url, verify=SSL_CONTEXT) as http:
        body = {"messages": [{"role": "user", "content": "abcd"}]}
        r = await http.post("/v1/messages/count_tokens", json=body)
        assert r.json() == {"input_tokens": 1}
    assert rule.fired == 0


async def test_when_predicate_and_reset(clients: Clients, emu: Emulator) -> None:
    emu.script(Fault.status(400), when=lambda rec: rec.stream, times=None)
    await clients.complete("ollama")
    with pytest.raises(ollama.ResponseError):
        await clients.stream("ollama")
    emu.set_limits("openai", requests_per_minute=1)
    emu.reset()
    assert emu.requests == [] and emu.rules == []
    await clients.stream("ollama")
    for _ in range(3):
        await clients.complete("openai")


def test_fault_and_reply_validate_their_arguments() -> None:
    with pytest.raises(ValueError):
        Fault.status(200)
    with pytest.raises(ValueError):
        Fault.drop_after(-1)
    with pytest.raises(ValueError):
        Reply(chunk_count=0)
    with pytest.raises(ValueError):
        Emulator().script(Fault.chunk_delay(0.1), Fault.chunk_delay(0.2))
    with pytest.raises(ValueError):
        Emulator().script(Reply(), provider="mistral")


# -- request log, routing, robustness -------------------------------------------------------------


async def test_request_log_records_what_the_client_sent(clients: Clients, emu: Emulator) -> None:
    await clients.stream("google")
    rec = emu.requests[-1]
    assert isinstance(rec, RecordedRequest)
    assert (rec.provider, rec.method, rec.model, rec.stream) == ("google", "POST", "gemini-x", True)
    assert rec.path == "/v1/models/gemini-x:streamGenerateContent" and rec.query == "alt=sse"
    assert rec.headers["x-goog-api-key"] == "k"
    assert rec.body is not None and rec.body["contents"][0]["parts"][0]["text"] == PROMPT
    assert json.loads(rec.raw_body) == rec.body
    assert rec.outcome == "complete" and rec.status == 200 and rec.chunks_sent == 8


async def test_unknown_paths_get_a_json_404(emu: Emulator) -> None:
    async with httpx2.AsyncClient(base_url=emu.url, verify=SSL_CONTEXT) as http:
        r = await http.post("/v1/nothing-here", json={})
        root = await http.get("/")
    assert r.status_code == 404 and "Invalid URL" in r.json()["error"]["message"]
    assert root.status_code == 200
    assert emu.requests[0].provider is None


async def test_invalid_json_gets_the_vendor_400(emu: Emulator) -> None:
    async with httpx2.AsyncClient(base_url=emu.url, verify=SSL_CONTEXT) as http:
        json_type = {"content-type": "application/json"}
        oai = await http.post("/v1/chat/completions", content=b"{nope", headers=json_type)
        gem = await http.post("/v1beta/models/g:generateContent", content=b"[1]")
        ant = await http.post("/v1/messages", json={"model": "c", "messages": []})
    assert oai.status_code == 400 and "could not parse the JSON body" in oai.json()["error"]["message"]
    assert gem.status_code == 400 and gem.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert ant.status_code == 400 and ant.json()["error"]["message"] == "max_tokens: Field required"


async def test_chunked_request_bodies_and_pipelined_garbage(emu: Emulator) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"model":"m","stream":false,'
        yield b'"messages":[{"role":"user","content":"chunked"}]}'

    async with httpx2.AsyncClient(base_url=emu.url, verify=SSL_CONTEXT) as http:
        r = await http.post("/api/chat", content=chunks())
    assert r.status_code == 200 and r.json()["message"]["content"].endswith("You said: chunked")
    reader, writer = await asyncio.open_connection("127.0.0.1", emu.port)
    writer.write(b"NOT HTTP AT ALL\r\n\r\n")
    data = await reader.read()
    writer.close()
    await writer.wait_closed()
    assert data.startswith(b"HTTP/1.1 400 ")


async def test_large_reply_streams_lazily(emu: Emulator) -> None:
    emu.script(Reply(chunk_count=10_000, chunk_size=1_000), provider="openai")
    total = 0
    events = 0
    body = {"model": "gpt-x", "stream": True, "messages": [{"role": "user", "content": "big"}]}
    url = emu.url + "/v1/chat/completions"
    async with httpx2.AsyncClient(verify=SSL_CONTEXT) as http, http.stream("POST", url, json=body) as r:
        async for line in r.aiter_lines():
            if line.startswith("data: {"):
                total += len(json.loads(line[6:])["choices"][0]["delta"].get("content") or "")
                events += 1
    assert total == 10_000_000
    assert events == 10_000 + 2  # role chunk + content + finish chunk


async def test_base_urls_and_config(emu: Emulator) -> None:
    assert emu.url == f"http://127.0.0.1:{emu.port}"
    cfg = emu.config()["providers"]
    assert cfg["openai"] == {"base_url": emu.url + "/v1", "api_key": "emulator-key"}
    assert cfg["anthropic"]["base_url"] == cfg["google"]["base_url"] == cfg["ollama"]["base_url"] == emu.url
    assert emu.base_urls["openai"].endswith("/v1")


def test_emulator_thread_serves_sync_code() -> None:
    with EmulatorThread() as thread:
        thread.script(Fault.status(503), provider="ollama")
        with httpx2.Client(base_url=thread.url) as http:
            first = http.post("/api/chat", json={"model": "m", "messages": [], "stream": False})
            second = http.post("/api/chat", json={"model": "m", "messages": [], "stream": False})
        assert (first.status_code, second.status_code) == (503, 200)
        assert [r.status for r in thread.requests] == [503, 200]


def test_serve_prints_its_urls_and_stops_on_ctrl_c() -> None:
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    code = "from forge.testing.emulator import serve; serve(port=0)"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("forge emulator listening on http://127.0.0.1:")
        url = first.split()[-1]
        assert httpx2.get(url + "/").status_code == 200
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=5)
        assert "stopped" in out and proc.returncode == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
