"""Just enough HTTP/1.1 for the emulator, on asyncio streams.

Requests: request line, headers, ``Content-Length`` or chunked bodies,
``Expect: 100-continue``, keep-alive. Responses: ``Content-Length`` bodies or
``Transfer-Encoding: chunked`` streams. One :class:`Connection` per socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import time
from collections.abc import Iterable
from dataclasses import dataclass
from email.utils import formatdate

_READ_SIZE = 65536
_MAX_HEAD = 64 * 1024
_MAX_BODY = 512 * 1024 * 1024

_REASONS: dict[int, str] = {s.value: s.phrase for s in http.HTTPStatus}
_REASONS[529] = "Site Overloaded"


def reason(status: int) -> str:
    """The reason phrase for ``status`` ("Unknown" for codes nobody named)."""
    return _REASONS.get(status, "Unknown")


class BadRequest(Exception):
    """The bytes on the wire are not an HTTP/1.1 request we can serve."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class ClientGone(Exception):
    """The client closed (or reset) the connection."""


@dataclass(slots=True)
class HttpRequest:
    """One parsed request. Header names are lower-cased."""

    method: str
    target: str
    path: str
    query: str
    version: str
    headers: dict[str, str]
    body: bytes
    keep_alive: bool


_date_cache: tuple[int, str] = (0, "")


def http_date() -> str:
    """RFC 7231 ``Date`` value, recomputed at most once a second."""
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, formatdate(now, usegmt=True))
    return _date_cache[1]


def response_head(
    status: int,
    headers: Iterable[tuple[str, str]],
    *,
    content_length: int | None,
    keep_alive: bool,
) -> bytes:
    """Status line and headers; chunked framing when ``content_length`` is None."""
    lines = [f"HTTP/1.1 {status} {reason(status)}\r\ndate: {http_date()}\r\nserver: forge-emulator\r\n"]
    lines.extend(f"{name}: {value}\r\n" for name, value in headers)
    if content_length is None:
        lines.append("transfer-encoding: chunked\r\n")
    else:
        lines.append(f"content-length: {content_length}\r\n")
    if not keep_alive:
        lines.append("connection: close\r\n")
    lines.append("\r\n")
    return "".join(lines).encode("latin-1")


def frame(data: bytes) -> bytes:
    """``data`` as one HTTP chunk."""
    return b"%x\r\n%b\r\n" % (len(data), data)


LAST_CHUNK = b"0\r\n\r\n"


class Connection:
    """A client socket: parses requests, writes responses, notices hang-ups.

    While a response waits (slow first byte, delay between chunks) a read is
    kept pending on the socket, so a client that hangs up is seen at once
    rather than at the next write.
    """

    __slots__ = ("_watcher", "buf", "closed", "reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.buf = bytearray()
        self.closed = False
        self._watcher: asyncio.Task[bytes] | None = None

    # -- reading -----------------------------------------------------------------

    async def _fill(self) -> bool:
        try:
            data = await self.reader.read(_READ_SIZE)
        except OSError:
            data = b""
        if not data:
            return False
        self.buf += data
        return True

    async def _read_line(self) -> bytes:
        while (idx := self.buf.find(b"\r\n")) < 0:
            if len(self.buf) > _MAX_HEAD:
                raise BadRequest(400, "line too long")
            if not await self._fill():
                raise ClientGone
        line = bytes(self.buf[:idx])
        del self.buf[: idx + 2]
        return line

    async def _read_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not await self._fill():
                raise ClientGone
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    async def read_request(self) -> HttpRequest | None:
        """The next request, or None when the client closed an idle connection."""
        while self.buf.startswith(b"\r\n"):  # tolerate stray CRLF between requests
            del self.buf[:2]
        while (idx := self.buf.find(b"\r\n\r\n")) < 0:
            if len(self.buf) > _MAX_HEAD:
                raise BadRequest(431, "request header fields too large")
            if not await self._fill():
                if self.buf.strip():
                    raise ClientGone
                return None
        head = bytes(self.buf[:idx]).decode("latin-1")
        del self.buf[: idx + 4]
        request_line, _, header_block = head.partition("\r\n")
        parts = request_line.split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise BadRequest(400, f"malformed request line {request_line!r}")
        method, target, version = parts
        headers: dict[str, str] = {}
        for line in header_block.split("\r\n"):
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip():
                raise BadRequest(400, f"malformed header line {line!r}")
            key = name.lower()
            value = value.strip()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        path, _, query = target.partition("?")
        connection = headers.get("connection", "").lower()
        keep_alive = "close" not in connection if version == "HTTP/1.1" else "keep-alive" in connection
        if headers.get("expect", "").lower() == "100-continue":
            self.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        body = await self._read_body(headers)
        return HttpRequest(method, target, path, query, version, headers, body, keep_alive)

    async def _read_body(self, headers: dict[str, str]) -> bytes:
        if "chunked" in headers.get("transfer-encoding", "").lower():
            parts: list[bytes] = []
            total = 0
            while True:
                size_line = await self._read_line()
                try:
                    size = int(size_line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise BadRequest(400, "bad chunk size") from None
                if size == 0:
                    while await self._read_line():  # trailers
                        pass
                    return b"".join(parts)
                total += size
                if total > _MAX_BODY:
                    raise BadRequest(413, "request body too large")
                parts.append(await self._read_exact(size))
                await self._read_exact(2)
        length = headers.get("content-length")
        if length is None:
            return b""
        try:
            n = int(length)
        except ValueError:
            raise BadRequest(400, "bad content-length") from None
        if n < 0 or n > _MAX_BODY:
            raise BadRequest(413, "request body too large")
        return await self._read_exact(n)

    # -- writing -----------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Queue ``data``; raises ClientGone once the socket is closing.

        Checking first keeps asyncio from logging "socket.send() raised
        exception" for writes to a dead socket.
        """
        if self.closed or self.writer.transport.is_closing():
            self.closed = True
            raise ClientGone
        self.writer.write(data)

    async def drain(self) -> None:
        """Wait while the socket buffer is above its high-water mark."""
        try:
            await self.writer.drain()
        except (OSError, RuntimeError) as exc:
            self.closed = True
            raise ClientGone from exc

    async def sleep(self, seconds: float | None) -> None:
        """Wait ``seconds`` (None: until the client hangs up); ClientGone if it does."""
        loop = asyncio.get_running_loop()
        deadline = None if seconds is None else loop.time() + seconds
        while True:
            if self.closed:
                raise ClientGone
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                return
            if self._watcher is None:
                self._watcher = asyncio.ensure_future(self.reader.read(_READ_SIZE))
            done, _ = await asyncio.wait((self._watcher,), timeout=remaining)
            if not done:
                return
            self._collect_watcher()

    def _collect_watcher(self) -> None:
        watcher, self._watcher = self._watcher, None
        if watcher is None:
            return
        try:
            data = watcher.result()
        except (OSError, asyncio.CancelledError):
            data = b""
        if data:
            self.buf += data  # a pipelined request: keep it for later
        else:
            self.closed = True

    async def end_response(self) -> None:
        """Stop watching for hang-ups before reading the next request."""
        watcher = self._watcher
        if watcher is None:
            return
        if not watcher.done():
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await watcher
        if watcher.cancelled():
            self._watcher = None
        else:
            self._collect_watcher()

    def abort(self) -> None:
        """Drop the connection without a clean shutdown (RST, no final chunk)."""
        self.closed = True
        self.writer.transport.abort()

    async def close(self) -> None:
        if self._watcher is not None and not self._watcher.done():
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await self._watcher
        self._watcher = None
        self.closed = True
        transport = self.writer.transport
        if not transport.is_closing():
            transport.close()
        with contextlib.suppress(OSError, RuntimeError, asyncio.CancelledError):
            await self.writer.wait_closed()
