"""Every streaming wire format forge decodes: SSE, NDJSON, and Gemini's SSE and JSON-array bodies.

Written once and shared by every adapter. All accept arbitrary chunk
boundaries (a line, an event or a UTF-8 character may be split across network
reads) and keep per-chunk work to a few string operations: this is the hot path
of every stream (see ``benchmarks/bench_hotpath.py``).

The SSE decoder follows the WHATWG ``text/event-stream`` rules
(html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation):
a UTF-8 BOM at the start of the stream is dropped; lines end in CRLF, LF or CR;
``data:`` lines of one event are joined with ``\\n``; a single space after the
colon is dropped; lines starting with ``:`` are comments; a line without a colon
is a field with an empty value; ``event:``, ``id:`` (unless it contains NUL)
and ``retry:`` (digits only) are kept, unknown fields ignored; an event is
dispatched on a blank line, and one with no ``data`` field is dropped.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "GeminiSSEDecoder",
    "JSONArrayDecoder",
    "LineSplitter",
    "NDJSONDecoder",
    "SSEDataDecoder",
    "SSEDecoder",
    "SSEEvent",
    "SSEPairDecoder",
    "aiter_ndjson",
    "aiter_sse",
    "loads",
]

_scan_once: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]
# (the C scanner where CPython has it; json.loads itself uses the same one)


def loads(text: str) -> Any:
    """``json.loads`` of one payload, minus its per-call overhead (two regex scans, three calls).

    The same scanner decodes; any text it does not take whole (leading or trailing
    white space, an error) goes through ``json.loads``, so results and errors are
    exactly ``json.loads``'s.
    """
    try:
        value, end = _scan_once(text, 0)
    except StopIteration:
        return json.loads(text)
    if end != len(text):
        return json.loads(text)
    return value


@dataclass(slots=True)
class SSEEvent:
    """One server-sent event. ``event`` is ``""`` when the server named none."""

    event: str
    data: str
    id: str | None = None
    retry: int | None = None

    def json(self) -> object:
        return loads(self.data)


class _LineSplitter:
    """Turns chunks (bytes or str) into complete lines, handling CR, LF and CRLF."""

    __slots__ = ("_bom", "_decoder", "_pending", "_skip_lf")

    def __init__(self, *, strip_bom: bool = False) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""
        self._skip_lf = False
        self._bom = strip_bom  # still to look for a BOM at the start of the stream

    def split(self, chunk: bytes | str) -> list[str]:
        text = self._decoder.decode(chunk) if isinstance(chunk, bytes) else chunk
        if self._bom and text:
            self._bom = False
            if text[0] == "\ufeff":
                text = text[1:]
        if self._skip_lf and text:
            # The previous chunk ended in CR; a LF starting this one completes that CRLF.
            self._skip_lf = False
            if text[0] == "\n":
                text = text[1:]
        if self._pending:
            text = self._pending + text
        lines = text.split("\n")
        if "\r" in text:
            lines = self._split_crs(lines)
        self._pending = lines.pop()
        return lines

    def _split_crs(self, pieces: list[str]) -> list[str]:
        """Pieces of text split at LF, split again at CR: a CR right before the LF is part of
        a CRLF, any other ends a line itself. The last piece (no LF yet) stays last.

        Per line, not two ``str.replace`` over the whole read, which copied a 64 KB read of
        CRLF events (Gemini sends CRLF) twice before splitting it.
        """
        out: list[str] = []
        for piece in pieces[:-1]:
            if piece[-1:] == "\r":
                piece = piece[:-1]
            if "\r" in piece:
                out += piece.split("\r")
            else:
                out.append(piece)
        tail = pieces[-1].split("\r")
        if len(tail) > 1 and not tail[-1]:
            self._skip_lf = True  # the read ended in CR: a LF starting the next completes that CRLF
        out += tail
        return out

    def flush(self) -> list[str]:
        rest = self._pending + self._decoder.decode(b"", final=True)
        self._pending = ""
        return [rest] if rest else []


# Public name for decoders that need lines before SSE decoding.
LineSplitter = _LineSplitter


_EVENTS, _DATA, _PAIRS = 0, 1, 2  # what an SSE decoder gives per event (SSEDecoder._shape)


class SSEDecoder:
    """Incremental SSE decoder: feed chunks or lines, get complete events."""

    __slots__ = ("_data", "_event", "_id", "_lines", "_retry")
    _shape = _EVENTS

    def __init__(self) -> None:
        self._lines = _LineSplitter(strip_bom=True)
        self._data: list[str] = []  # never rebound: _feed() holds it in a local
        self._event = ""
        self._id: str | None = None
        self._retry: int | None = None

    def feed(self, chunk: bytes | str) -> list[SSEEvent]:
        """Decode a network chunk; return the events it completed."""
        return self._feed(chunk)

    def flush(self) -> list[SSEEvent]:
        """End of stream: dispatch a final event that had no trailing blank line."""
        events = [e for e in (self.decode_line(x) for x in self._lines.flush()) if e]
        last = self.decode_line("")
        if last is not None:
            events.append(last)
        return events

    def _feed(self, chunk: bytes | str) -> list[Any]:
        """The one read loop of every SSE decoder; what it gives per event is the class's ``_shape``
        (a comparison per event, where a callback would cost a call)."""
        out: list[Any] = []
        data = self._data
        shape = self._shape
        for line in self._lines.split(chunk):
            # The lines of nearly every event, inline; the rest in decode_line.
            if line[:5] == "data:":
                data.append(line[6:] if line[5:6] == " " else line[5:])
            elif not line:
                if data:
                    text = data[0] if len(data) == 1 else "\n".join(data)
                    data.clear()
                    if shape == _DATA:
                        out.append(text)
                    elif shape == _PAIRS:
                        out.append((self._event, text))
                    else:
                        out.append(SSEEvent(self._event, text, self._id, self._retry))
                self._event = ""
            elif line[:6] == "event:":
                self._event = line[7:] if line[6:7] == " " else line[6:]
            else:
                self.decode_line(line)  # a blank line, the only one that dispatches, is handled above
        return out

    def decode_line(self, line: str) -> SSEEvent | None:
        """Decode one line (without its line ending); return an event on a blank line."""
        if not line:
            if not self._data:
                self._event = ""
                return None
            return self._dispatch()
        if line[0] == ":":
            return None
        name, _, value = line.partition(":")
        if value[:1] == " ":
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\x00" not in value:
                self._id = value
        elif name == "retry" and value.isdigit():
            self._retry = int(value)
        return None

    def _dispatch(self) -> SSEEvent:
        data = self._data
        ev = SSEEvent(self._event, data[0] if len(data) == 1 else "\n".join(data), self._id, self._retry)
        data.clear()
        self._event = ""
        return ev


class SSEDataDecoder(SSEDecoder):
    """An :class:`SSEDecoder` that gives each event's ``data`` alone, for streams whose
    payloads name their own type (OpenAI's) or need no name (Gemini's): no event object
    per chunk. Events with no ``data`` are dropped, as in the full decoder."""

    __slots__ = ()
    _shape = _DATA

    def feed(self, chunk: bytes | str) -> list[str]:  # type: ignore[override]
        return self._feed(chunk)

    def flush(self) -> list[str]:  # type: ignore[override]
        return [ev.data for ev in super().flush()]


class SSEPairDecoder(SSEDecoder):
    """An :class:`SSEDecoder` that gives each event as an ``(event, data)`` pair: for streams
    that dispatch on the event name and need neither ``id`` nor ``retry`` (Anthropic's),
    a tuple per chunk instead of an :class:`SSEEvent`."""

    __slots__ = ()
    _shape = _PAIRS

    def feed(self, chunk: bytes | str) -> list[tuple[str, str]]:  # type: ignore[override]
        return self._feed(chunk)

    def flush(self) -> list[tuple[str, str]]:  # type: ignore[override]
        return [(ev.event, ev.data) for ev in super().flush()]


class GeminiSSEDecoder:
    """Gemini's ``alt=sse`` body: the JSON object of each ``data:`` event.

    Like the SDK's parser (``HttpResponse._aiter_response_stream``), a JSON body
    sent without ``data:`` framing (how an error may arrive) is buffered line by
    line until it parses.
    """

    __slots__ = ("_lines", "_load", "_raw", "_sse", "_texts")

    def __init__(self, *, texts: bool = False) -> None:
        """``texts``: give each object's JSON text, for the caller to ``loads`` when it uses it
        (a read's worth of decoded objects alive at once keeps the garbage collector busy)."""
        self._lines = _LineSplitter()
        self._sse = SSEDecoder()
        self._raw: list[str] = []
        self._texts = texts
        self._load: Callable[[str], Any] = str if texts else loads

    def feed(self, chunk: bytes | str) -> list[Any]:
        out: list[Any] = []
        sse = self._sse
        data = sse._data
        raw = self._raw
        load = self._load
        texts = self._texts
        for line in self._lines.split(chunk):
            if line[:5] == "data:" and not raw:
                data.append(line[6:] if line[5:6] == " " else line[5:])
            elif not line and data and not raw:
                text = data[0] if len(data) == 1 else "\n".join(data)
                out.append(text if texts else load(text))
                data.clear()
                sse._event = ""
            elif raw or line[:1] == "{":
                raw.append(line)
                text = "".join(raw)
                try:
                    value = json.loads(text)
                except ValueError:
                    continue
                out.append(text if load is str else value)
                raw.clear()
            else:
                ev = sse.decode_line(line)
                if ev is not None:
                    out.append(load(ev.data))
        return out

    def flush(self) -> list[Any]:
        out = self.feed(b"")
        for line in self._lines.flush():
            out.extend(self.feed(line + "\n"))
        out.extend(self._load(ev.data) for ev in self._sse.flush())
        if self._raw:
            out.append(json.loads("".join(self._raw)))  # incomplete: raises, as the SDK does
        return out


class JSONArrayDecoder:
    """The body of Gemini's ``:streamGenerateContent`` without ``alt=sse``: one JSON array
    (``[{...}\n,\r\n{...}]``) whose elements arrive incrementally."""

    __slots__ = ("_buf", "_json", "_started", "_text")

    def __init__(self) -> None:
        self._text = codecs.getincrementaldecoder("utf-8")()
        self._json = json.JSONDecoder()
        self._buf = ""
        self._started = False

    def feed(self, chunk: bytes | str) -> list[dict[str, Any]]:
        buf = self._buf + (self._text.decode(chunk) if isinstance(chunk, bytes) else chunk)
        out: list[dict[str, Any]] = []
        i, n = 0, len(buf)
        while True:
            while i < n and buf[i] in " \t\r\n,":
                i += 1
            if i >= n:
                break
            if buf[i] == "[" and not self._started:
                self._started = True
                i += 1
                continue
            if buf[i] == "]":
                i += 1
                continue
            try:
                value, end = self._json.raw_decode(buf, i)
            except ValueError:
                break  # an element split across reads: wait for the rest
            if isinstance(value, dict):
                out.append(value)
            i = end
        self._buf = buf[i:]
        return out

    def flush(self) -> list[dict[str, Any]]:
        out = self.feed(b"")
        rest = self._buf.strip()
        if rest:
            out.append(json.loads(rest))  # incomplete: raises, as the SDK's parser does
        return out


class NDJSONDecoder:
    """Incremental newline-delimited JSON decoder."""

    __slots__ = ("_lines", "_load")

    def __init__(self, *, texts: bool = False) -> None:
        """``texts``: give each line's text, for the caller to ``loads`` when it uses it."""
        self._lines = _LineSplitter()
        self._load: Callable[[str], Any] = str if texts else loads

    def feed(self, chunk: bytes | str) -> list[object]:
        load = self._load
        return [load(line) for line in self._lines.split(chunk) if line.strip()]

    def flush(self) -> list[object]:
        load = self._load
        return [load(line) for line in self._lines.flush() if line.strip()]


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
