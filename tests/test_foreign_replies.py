"""A reply that is not the provider's API is an error that says what came back and from where.

Played by the hostile raw-bytes server (tests/hostile.py), not the emulator: a proxy's
HTML page, plain text, JSON of another shape, or a stream in the wrong format, each on
a 200, must never become an empty success or read as "the connection was cut".
"""

from __future__ import annotations

import pytest

import forge
from tests.hostile import BASE_PATHS, HostileServer, Reply, provider_config

# (forge provider, extra config, model ref); openai twice: Chat Completions and the Responses API.
APIS: dict[str, tuple[str, dict[str, object], str]] = {
    "openai": ("openai", {}, "openai:gpt-4o-mini"),
    "responses": ("openai", {"api": "responses"}, "openai:gpt-4o-mini"),
    "anthropic": ("anthropic", {}, "anthropic:claude-haiku-4-5"),
    "google": ("google", {}, "google:gemini-2.5-flash"),
    "ollama": ("ollama", {}, "ollama:llama3.2"),
}

HTML = "<!DOCTYPE html><html><head><title>Sign in</title></head><body><h1>Corporate proxy</h1></body></html>"

FOREIGN: dict[str, Reply] = {
    "json-of-another-shape": Reply.http(200, {"unexpected": True}),
    "html": Reply.http(200, HTML, content_type="text/html; charset=utf-8"),
    "plain-text": Reply.http(200, "upstream says hello", content_type="text/plain"),
    "empty-json-object": Reply.http(200, {}),
    "json-array": Reply.http(200, b"[1, 2, 3]"),
}


async def _call(api: str, srv: HostileServer, *, stream: bool) -> forge.Response:
    provider, extra, model = APIS[api]
    cfg = provider_config(provider, srv.url(BASE_PATHS[provider]), **extra)
    async with forge.Registry(config=cfg) as reg:
        if stream:
            return await reg.stream(model, "hi").collect()
        return await reg.invoke(model, "hi")


def _says_what_came_back(error: forge.ProviderError, srv: HostileServer, snippet: str) -> None:
    text = str(error)
    assert type(error) is forge.ProviderError
    assert error.status == 200
    assert error.code == "unexpected_response"
    assert not error.retryable
    assert snippet in text
    assert srv.url() in text  # which server answered
    assert error.base_url is not None and error.base_url.startswith(srv.url())


@pytest.mark.parametrize("api", list(APIS))
@pytest.mark.parametrize("label", list(FOREIGN))
async def test_foreign_reply_to_invoke_is_an_error_not_an_empty_response(api: str, label: str) -> None:
    async with HostileServer() as srv:
        srv.push(FOREIGN[label])
        with pytest.raises(forge.ProviderError) as info:
            await _call(api, srv, stream=False)
    reply = FOREIGN[label].steps[0]
    assert isinstance(reply, bytes)
    content_type = "text/html" if label == "html" else "text/plain" if label == "plain-text" else "application/json"
    _says_what_came_back(info.value, srv, content_type)
    body = reply.split(b"\r\n\r\n", 1)[1].decode()
    assert " ".join(body.split())[:60] in str(info.value)


STREAM_FOREIGN: dict[str, Reply] = {
    "html": Reply.stream([HTML[:40], HTML[40:]], content_type="text/html"),
    "plain-text": Reply.stream(["not an event stream\n", "at all\n"], content_type="text/plain"),
    "xml": Reply.http(200, "<error><code>Denied</code></error>", content_type="application/xml"),
}


@pytest.mark.parametrize("api", list(APIS))
@pytest.mark.parametrize("label", list(STREAM_FOREIGN))
async def test_foreign_reply_to_a_stream_says_what_came_back(api: str, label: str) -> None:
    async with HostileServer() as srv:
        srv.push(STREAM_FOREIGN[label])
        with pytest.raises(forge.ProviderError) as info:
            await _call(api, srv, stream=True)
    error = info.value
    assert "connection was cut" not in str(error) and "closed early" not in str(error)
    snippet = {"html": "Corporate proxy", "plain-text": "not an event stream", "xml": "Denied"}[label]
    _says_what_came_back(error, srv, snippet)


@pytest.mark.parametrize("api", ["openai", "responses", "anthropic", "google"])
async def test_sse_answered_as_ndjson_is_refused(api: str) -> None:
    async with HostileServer() as srv:
        srv.push(Reply.stream(['{"a": 1}\n', '{"b": 2}\n'], content_type="application/x-ndjson"))
        with pytest.raises(forge.ProviderError) as info:
            await _call(api, srv, stream=True)
    _says_what_came_back(info.value, srv, "application/x-ndjson")


async def test_ndjson_answered_as_sse_is_refused() -> None:
    async with HostileServer() as srv:
        srv.push(Reply.stream(['data: {"choices": []}\n\n'], content_type="text/event-stream"))
        with pytest.raises(forge.ProviderError) as info:
            await _call("ollama", srv, stream=True)
    _says_what_came_back(info.value, srv, "text/event-stream")


async def test_openai_stream_answered_with_a_json_error_raises_that_error() -> None:
    # Some OpenAI-compatible servers answer a stream request with one JSON error body.
    async with HostileServer() as srv:
        body = {"error": {"message": "slow down", "type": "rate_limit_exceeded"}}
        srv.push(Reply.http(200, body))
        with pytest.raises(forge.RateLimitError, match="slow down"):
            await _call("openai", srv, stream=True)


async def test_anthropic_error_body_on_a_200_is_raised() -> None:
    async with HostileServer() as srv:
        srv.push(Reply.http(200, {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}))
        with pytest.raises(forge.OverloadedError, match="busy"):
            await _call("anthropic", srv, stream=False)


# ----------------------------------------------------------------- legitimate shapes still pass


async def test_ollama_stream_without_a_content_type_is_decoded() -> None:
    # Real Ollama recordings carry no response headers at all.
    lines = [
        b'{"model":"llama3.2","message":{"role":"assistant","content":"Hel"},"done":false}\n',
        b'{"model":"llama3.2","message":{"role":"assistant","content":"lo"},"done":false}\n',
        b'{"model":"llama3.2","message":{"role":"assistant","content":""},"done":true,'
        b'"done_reason":"stop","prompt_eval_count":3,"eval_count":2}\n',
    ]
    async with HostileServer() as srv:
        srv.push(Reply.stream(lines, content_type=None))
        reply = await _call("ollama", srv, stream=True)
    assert reply.text == "Hello" and reply.usage.output_tokens == 2


async def test_gemini_blocked_prompt_is_a_reply_not_an_error() -> None:
    # ai.google.dev/api/generate-content: a blocked prompt has promptFeedback and no candidates.
    body = {"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 4}}
    async with HostileServer() as srv:
        srv.push(Reply.http(200, body))
        reply = await _call("google", srv, stream=False)
    assert reply.text == "" and reply.finish_reason == "content_filter"


async def test_compatible_server_json_with_an_odd_content_type_is_accepted() -> None:
    # The shape decides, not the header: a compatible server may label JSON as text/plain.
    body = {
        "id": "x", "object": "chat.completion", "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
    }
    async with HostileServer() as srv:
        srv.push(Reply.http(200, body, content_type="text/plain"))
        reply = await _call("openai", srv, stream=False)
    assert reply.text == "ok"


# ----------------------------------------------------------------- errors name the base URL


@pytest.mark.parametrize("api", list(APIS))
async def test_a_5xx_html_page_names_the_base_url_and_keeps_the_body(api: str) -> None:
    async with HostileServer() as srv:
        srv.push(Reply.http(502, "<html><body>502 Bad Gateway (nginx)</body></html>", content_type="text/html"))
        with pytest.raises(forge.ServerError) as info:
            await _call(api, srv, stream=False)
    text = str(info.value)
    assert srv.url() in text
    assert "502 Bad Gateway (nginx)" in text


@pytest.mark.parametrize("api", list(APIS))
@pytest.mark.parametrize("stream", [False, True], ids=["invoke", "stream"])
async def test_connection_failure_names_the_base_url(api: str, stream: bool) -> None:
    async with HostileServer() as srv:
        url = srv.url()
    # The server is closed: nothing listens on its port any more.
    provider, extra, model = APIS[api]
    cfg = provider_config(provider, url + BASE_PATHS[provider], **extra)
    async with forge.Registry(config=cfg) as reg:
        with pytest.raises(forge.ProviderConnectionError) as info:
            if stream:
                await reg.stream(model, "hi").collect()
            else:
                await reg.invoke(model, "hi")
    assert url in str(info.value)
    assert info.value.base_url is not None and info.value.base_url.startswith(url)


async def test_base_url_in_errors_never_shows_credentials_or_query() -> None:
    from forge.providers._common import public_url

    assert public_url("https://user:secret@proxy.example:8443/v1?key=abc") == "https://proxy.example:8443/v1"
