"""Replay the real provider recordings (vcrpy v1 cassettes) without vcrpy.

The recordings live outside the repository, in ``../shared/cassettes-real``
(override with ``FORGE_REAL_CASSETTES``); they are read at test time and never
copied in. Tests that need one skip when it is not there.

What this handles (see the recordings' INDEX.md): ``body.string`` as text or
as ``!!binary`` gzip bytes (served with their ``Content-Encoding`` so the HTTP
client inflates them), pydantic-ai's ``parsed_body``, header values as lists or
scalars, header-name case. ``content-length`` and ``transfer-encoding`` are
dropped; the body is served in chunks so stream decoders see real boundaries.

Typical use::

    interaction = load_cassette("openai/chat-stream-usage.yaml")[0]
    transport = ReplayTransport([interaction])
    client = httpx2.AsyncClient(transport=transport)
"""

from __future__ import annotations

import functools
import gzip
import json
import re
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
import yaml

from tests._services import REAL_RECORDINGS, require_real_recordings

__all__ = [
    "CASSETTES",
    "ClosingStream",
    "HttpxClosingStream",
    "HttpxReplayTransport",
    "Interaction",
    "ReplayTransport",
    "cassette_path",
    "event_chunks",
    "httpx2_response",
    "load_cassette",
    "recorded_interactions",
]

CASSETTES = REAL_RECORDINGS

_DROP_HEADERS = frozenset({"content-length", "transfer-encoding"})


@dataclass
class Interaction:
    """One recorded request/response pair."""

    method: str
    uri: str
    request_body: str | None
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    """The body exactly as it went over the wire (still gzip when ``content-encoding: gzip``)."""

    @property
    def path(self) -> str:
        return httpx2.URL(self.uri).path

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        return next((v for k, v in self.headers if k.lower() == lowered), None)

    @property
    def gzipped(self) -> bool:
        return (self.header("content-encoding") or "").lower() == "gzip"

    def decoded_body(self) -> bytes:
        """The body as the client sees it after content decoding."""
        return gzip.decompress(self.body) if self.gzipped else self.body

    def text(self) -> str:
        return self.decoded_body().decode("utf-8")

    def json(self) -> Any:
        return json.loads(self.decoded_body())

    def request_json(self) -> Any:
        return json.loads(self.request_body) if self.request_body else None


def cassette_path(name: str) -> Path:
    """Absolute path of a recording (``"openai/chat-stream-usage.yaml"``); skip the test if missing."""
    path = CASSETTES / name
    require_real_recordings()
    if not path.is_file():
        pytest.skip(f"real recording {name} not available under {CASSETTES}")
    return path


def load_cassette(name: str) -> list[Interaction]:
    """All interactions of one recording, in order (parsed once per test session)."""
    return list(_load(cassette_path(name)))


@functools.cache
def _load(path: Path) -> tuple[Interaction, ...]:
    with path.open("rb") as fh:
        data = yaml.safe_load(fh)
    return tuple(_interaction(item) for item in data["interactions"])


def _interaction(item: dict[str, Any]) -> Interaction:
    req, resp = item["request"], item["response"]
    if "parsed_body" in req:
        request_body: str | None = json.dumps(req["parsed_body"])
    else:
        raw_req = req.get("body")
        request_body = raw_req.get("string") if isinstance(raw_req, dict) else raw_req
        if isinstance(request_body, bytes):
            request_body = request_body.decode("utf-8", "replace")
    if "parsed_body" in resp:
        body = json.dumps(resp["parsed_body"]).encode()
    else:
        raw = (resp.get("body") or {}).get("string", b"")
        body = raw if isinstance(raw, bytes) else str(raw).encode("utf-8")
    headers: list[tuple[str, str]] = []
    for name, value in (resp.get("headers") or {}).items():
        if name.lower() in _DROP_HEADERS:
            continue
        for v in value if isinstance(value, list) else [value]:
            headers.append((name, str(v)))
    # Every recorded gzip body carries the header (INDEX.md); be safe if one does not.
    has_encoding = any(k.lower() == "content-encoding" for k, _ in headers)
    if body[:2] == b"\x1f\x8b" and not has_encoding:
        headers.append(("content-encoding", "gzip"))
    return Interaction(
        method=req["method"],
        uri=req["uri"],
        request_body=request_body,
        status=int(resp["status"]["code"]),
        headers=headers,
        body=body,
    )


_EVENT_BOUNDARY = re.compile(rb"(?<=\r\n\r\n)|(?<=\n\n)|(?<=\r\r)")


def event_chunks(interaction: Interaction, *, split: int | None = None) -> list[bytes]:
    """The wire body cut where a network read might end.

    Plain bodies are cut at blank lines (SSE event boundaries), each piece
    optionally cut again every ``split`` bytes (to exercise decoders on
    partial lines and UTF-8 sequences). Gzip bodies are cut every ``split``
    (default 64) compressed bytes.
    """
    body = interaction.body
    if interaction.gzipped:
        step = split or 64
        return [body[i : i + step] for i in range(0, len(body), step)] or [b""]
    pieces = [p for p in _EVENT_BOUNDARY.split(body) if p]
    if split:
        pieces = [p[i : i + split] for p in pieces for i in range(0, len(p), split)]
    return pieces or [b""]


class ClosingStream(httpx2.AsyncByteStream):
    """A response body from chunks (or raising mid-way) that records whether it was closed."""

    def __init__(
        self,
        chunks: Iterable[bytes],
        *,
        error: BaseException | None = None,
        hang: bool = False,
    ) -> None:
        self.chunks = list(chunks)
        self.error = error
        self.hang = hang
        self.sent = 0
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            self.sent += 1
            yield chunk
        if self.error is not None:
            raise self.error
        if self.hang:
            import asyncio

            await asyncio.Event().wait()  # until cancelled

    async def aclose(self) -> None:
        self.closed = True


def httpx2_response(
    interaction: Interaction,
    *,
    split: int | None = None,
    default_content_type: str | None = None,
) -> tuple[int, list[tuple[str, str]], ClosingStream]:
    """Status, headers and a chunked body stream for an ``httpx2.Response``."""
    headers = list(interaction.headers)
    if default_content_type and interaction.header("content-type") is None:
        headers.append(("content-type", default_content_type))
    return interaction.status, headers, ClosingStream(event_chunks(interaction, split=split))


@dataclass(eq=False)
class ReplayTransport(httpx2.MockTransport):
    """An ``httpx2.MockTransport`` that answers requests with recorded interactions, in order.

    ``requests`` keeps what the client sent; ``streams`` the body of every
    response served (to check it was closed). ``match`` may pick an
    interaction per request instead of taking them in order.
    """

    interactions: Sequence[Interaction]
    split: int | None = None
    match: Callable[[httpx2.Request, Sequence[Interaction]], Interaction] | None = None
    requests: list[httpx2.Request] = field(default_factory=list)
    streams: list[ClosingStream] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(self._handle)

    def _handle(self, request: httpx2.Request) -> httpx2.Response:
        index = len(self.requests)
        self.requests.append(request)
        if self.match is not None:
            interaction = self.match(request, self.interactions)
        else:
            if index >= len(self.interactions):
                raise AssertionError(f"unexpected request #{index + 1}: {request.method} {request.url}")
            interaction = self.interactions[index]
        status, headers, stream = httpx2_response(interaction, split=self.split)
        self.streams.append(stream)
        return httpx2.Response(status, headers=headers, stream=stream)

    def sent_json(self, index: int = -1) -> Any:
        """The JSON body of a request the client sent."""
        return json.loads(self.requests[index].content)


# --------------------------------------------------------------------------- legacy httpx (Ollama)


def recorded_interactions(provider: str) -> list[tuple[str, int, Interaction]]:
    """Every interaction of every recording of one provider: ``(file name, index, interaction)``.

    Walks the directory rather than a fixed list, so recordings added later are
    checked too. Empty when the recordings are not available.
    """
    folder = CASSETTES / provider
    if not folder.is_dir():
        return []
    out: list[tuple[str, int, Interaction]] = []
    for path in sorted(folder.glob("*.yaml")):
        for index, interaction in enumerate(load_cassette(f"{provider}/{path.name}")):
            out.append((path.name, index, interaction))
    return out


class HttpxClosingStream(httpx.AsyncByteStream):
    """``ClosingStream`` for the legacy ``httpx`` package (which the ollama client uses)."""

    def __init__(
        self, chunks: Iterable[bytes], *, error: BaseException | None = None, hang: bool = False
    ) -> None:
        self.chunks = list(chunks)
        self.error = error
        self.hang = hang
        self.sent = 0
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            self.sent += 1
            yield chunk
        if self.error is not None:
            raise self.error
        if self.hang:
            import asyncio

            await asyncio.Event().wait()  # until cancelled

    async def aclose(self) -> None:
        self.closed = True


@dataclass(eq=False)
class HttpxReplayTransport(httpx.MockTransport):
    """``ReplayTransport`` for the legacy ``httpx`` package, with a default content type.

    Some recordings (openinference's Ollama files) carry no response headers at
    all; ``default_content_type`` (or NDJSON for ``"stream": true`` requests,
    JSON otherwise) fills in what a real server sends.
    """

    interactions: Sequence[Interaction]
    split: int | None = None
    default_content_type: str | None = None
    requests: list[httpx.Request] = field(default_factory=list)
    streams: list[HttpxClosingStream] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(self._handle)

    def _handle(self, request: httpx.Request) -> httpx.Response:
        index = len(self.requests)
        self.requests.append(request)
        if index >= len(self.interactions):
            raise AssertionError(f"unexpected request #{index + 1}: {request.method} {request.url}")
        interaction = self.interactions[index]
        headers = list(interaction.headers)
        if interaction.header("content-type") is None:
            streaming = (interaction.request_json() or {}).get("stream") if interaction.request_body else None
            ctype = self.default_content_type or (
                "application/x-ndjson" if streaming else "application/json; charset=utf-8"
            )
            headers.append(("content-type", ctype))
        stream = HttpxClosingStream(event_chunks(interaction, split=self.split))
        self.streams.append(stream)
        return httpx.Response(interaction.status, headers=headers, stream=stream)

    def sent_json(self, index: int = -1) -> Any:
        return json.loads(self.requests[index].content)
