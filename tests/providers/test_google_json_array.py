"""Gemini streams without ``alt=sse`` arrive as one JSON array; forge decodes them like SSE.

forge always asks for SSE, but a server or proxy that ignores ``alt=sse``
answers with ``application/json`` and a streamed array (``[{...}\\n,\\r\\n{...}]``).
Each real SSE recording is re-served in that shape, split at every few bytes,
and must give exactly the events the SSE body gives.
"""

from __future__ import annotations

import gzip
import json

import httpx2
import pytest

from forge._wire import SSEDecoder
from forge.config import ProviderConfig
from forge.providers.google import GoogleProvider
from forge.types import Message, Request, StreamEvent
from tests.cassette_replay import load_cassette

RECORDINGS = ["gemini/stream-sse-basic.yaml", "gemini/stream-sse-structured.yaml", "gemini/stream-sse-tools.yaml"]


def _config() -> ProviderConfig:
    return ProviderConfig(
        name="google", api_key="k", base_url="http://gemini.test", options={"api_version": "v1beta"}
    )


async def _events(body: bytes, content_type: str, step: int) -> list[StreamEvent]:
    async def stream_body() -> object:
        for i in range(0, len(body), step):
            yield body[i : i + step]

    def handle(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": content_type}, content=stream_body())  # type: ignore[arg-type]

    provider = GoogleProvider(_config(), http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(handle)))
    try:
        request = Request(model="gemini-2.5-flash", messages=(Message("user", "hi"),))
        return [ev async for ev in provider.stream(request)]
    finally:
        await provider.aclose()


def _as_json_array(sse_body: bytes) -> bytes:
    decoder = SSEDecoder()
    chunks = [json.loads(ev.data) for ev in decoder.feed(sse_body) + decoder.flush()]
    return ("[" + "\n,\r\n".join(json.dumps(c) for c in chunks) + "]").encode()


@pytest.mark.parametrize("name", RECORDINGS)
@pytest.mark.parametrize("step", [7, 4096])
async def test_json_array_stream_equals_sse_stream(name: str, step: int) -> None:
    for interaction in load_cassette(name):
        if interaction.status != 200 or ":streamGenerateContent" not in interaction.uri:
            continue
        sse = interaction.decoded_body()
        expected = await _events(sse, "text/event-stream", 4096)
        got = await _events(_as_json_array(sse), "application/json; charset=UTF-8", step)
        assert [(e.kind, e.text, e.usage, e.finish_reason, e.tool_call) for e in got] == [
            (e.kind, e.text, e.usage, e.finish_reason, e.tool_call) for e in expected
        ]
        assert any(e.kind == "finish" for e in got)


async def test_gzip_json_array_stream() -> None:
    body = _as_json_array(load_cassette(RECORDINGS[0])[0].decoded_body())

    def handle(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(
            200, headers={"content-type": "application/json", "content-encoding": "gzip"}, content=gzip.compress(body)
        )

    provider = GoogleProvider(_config(), http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(handle)))
    request = Request(model="gemini-2.5-flash", messages=(Message("user", "hi"),))
    events = [ev async for ev in provider.stream(request)]
    await provider.aclose()
    assert "".join(e.text for e in events if e.kind == "text")
    assert events[-1].kind == "finish"
