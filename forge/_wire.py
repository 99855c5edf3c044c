"""Incremental decoders for the two streaming wire formats: SSE and NDJSON.

Written once and shared by every adapter. Both accept arbitrary chunk
boundaries (a line, an event or a UTF-8 character may be split across network
reads) and keep per-chunk work to a few string operations.

The SSE decoder follows the WHATWG ``text/event-stream`` rules: lines end in
CRLF, LF or CR; ``data:`` lines of one event are joined with ``\\n``; a single
space after the colon is dropped; lines starting with ``:`` are comments;
``event:``, ``id:`` and ``retry:`` fields are kept; an event is dispatched on a
blank line, and one with no ``data`` field is dropped.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass

__all__ = ["LineSplitter", "NDJSONDecoder", "SSEDecoder", "SSEEvent", "aiter_ndjson", "aiter_sse"]


@dataclass(slots=True)
class SSEEvent:
    """One server-sent event. ``event`` is ``""`` when the server named none."""

    event: str
    data: str
    id: str | None = None
    retry: int | None = None

    def json(self) -> object:
        return json.loads(self.data)


class _LineSplitter:
    """Turns chunks (bytes or str) into complete lines, handling CR, LF and CRLF."""

    __slots__ = ("_decoder", "_pending", "_skip_lf")

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""
        self._skip_lf = False

    def split(self, chunk: bytes | str) -> list[str]:
        text = self._decoder.decode(chunk) if isinstance(chunk, bytes) else chunk
        if self._skip_lf and text:
            # The previous chunk ended in CR; a LF starting this one completes that CRLF.
            self._skip_lf = False
            if text[0] == "\n":
                text = text[1:]
        if self._pending:
            text = self._pending + text
        if "\r" in text:
            if text.endswith("\r"):
                self._skip_lf = True
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        lines = text.split("\n")
        self._pending = lines.pop()
        return lines

    def flush(self) -> list[str]:
        rest = self._pending + self._decoder.decode(b"", final=True)
        self._pending = ""
        return [rest] if rest else []


# Public name for adapters that need lines before SSE decoding (Gemini also accepts
# un-framed JSON lines in an SSE body, as its SDK does).
LineSplitter = _LineSplitter


class SSEDecoder:
    """Incremental SSE decoder: feed chunks or lines, get complete events."""

    __slots__ = ("_data", "_event", "_id", "_lines", "_retry")

    def __init__(self) -> None:
        self._lines = _LineSplitter()
        self._data: list[str] = []
        self._event = ""
        self._id: str | None = None
        self._retry: int | None = None

    def feed(self, chunk: bytes | str) -> list[SSEEvent]:
        """Decode a network chunk; return the events it completed."""
        events: list[SSEEvent] = []
        for line in self._lines.split(chunk):
            ev = self.decode_line(line)
            if ev is not None:
                events.append(ev)
        return events

    def flush(self) -> list[SSEEvent]:
        """End of stream: dispatch a final event that had no trailing blank line."""
        events = self.feed(b"") + [e for e in (self.decode_line(x) for x in self._lines.flush()) if e]
        last = self.decode_line("")
        if last is not None:
            events.append(last)
        return events

    def decode_line(self, line: str) -> SSEEvent | None:
        """Decode one line (without its line ending); return an event on a blank line."""
        if not line:
            if not self._data:
                self._event = ""
                return None
            ev = SSEEvent(
                self._event,
                self._data[0] if len(self._data) == 1 else "\n".join(self._data),
                self._id,
                self._retry,
            )
            self._data = []
            self._event = ""
            return ev
        if line[0] == "d" and line.startswith("data:"):
            value = line[5:]
        elif line[0] == ":":
            return None
        else:
            name, sep, value = line.partition(":")
            if not sep:
                value = ""
            if value.startswith(" "):
                value = value[1:]
            if name == "event":
                self._event = value
            elif name == "id":
                if "\x00" not in value:
                    self._id = value
            elif name == "retry":
                if value.isdigit():
                    self._retry = int(value)
            elif name == "data":
                self._data.append(value)
            return None
        if value and value[0] == " ":
            value = value[1:]
        self._data.append(value)
        return None


class NDJSONDecoder:
    """Incremental newline-delimited JSON decoder."""

    __slots__ = ("_lines",)

    def __init__(self) -> None:
        self._lines = _LineSplitter()

    def feed(self, chunk: bytes | str) -> list[object]:
        return [json.loads(line) for line in self._lines.split(chunk) if line.strip()]

    def flush(self) -> list[object]:
        return [json.loads(line) for line in self._lines.flush() if line.strip()]


async def aiter_sse(chunks: AsyncIterable[bytes | str]) -> AsyncIterator[SSEEvent]:
    """Decode an async byte or text stream into SSE events."""
    decoder = SSEDecoder()
    async for chunk in chunks:
        for ev in decoder.feed(chunk):
            yield ev
    for ev in decoder.flush():
        yield ev


async def aiter_ndjson(chunks: AsyncIterable[bytes | str]) -> AsyncIterator[object]:
    """Decode an async byte or text stream into JSON values, one per line."""
    decoder = NDJSONDecoder()
    async for chunk in chunks:
        for obj in decoder.feed(chunk):
            yield obj
    for obj in decoder.flush():
        yield obj
