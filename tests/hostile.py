"""A small hostile HTTP server that plays scripted raw bytes: not the emulator, not forge's assumptions.

forge's emulator was written with forge's own assumptions, so it agrees with
forge. This server knows nothing about any provider: each request it receives
is answered by the next scripted :class:`Reply`, a list of raw steps (bytes to
write, pauses, a hang, a hard close). Tests build the exact bytes a vendor
documents (or a broken proxy sends) and check what forge does with them.

    async with HostileServer() as srv:
        srv.push(Reply.http(200, b'{"unexpected": true}', content_type="application/json"))
        cfg = {"providers": {"openai": {"api_key": "sk-test", "base_url": srv.url("/v1")}}}
        ...
        assert srv.requests[0].path == "/v1/chat/completions"

When the queue is empty the server answers ``500`` with a note, so a test that
sends more requests than it scripted fails loudly instead of hanging.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType

__all__ = ["Close", "Hang", "HostileServer", "Pause", "Reply", "Received", "sse", "ndjson"]


@dataclass(frozen=True, slots=True)
class Pause:
    """Wait this many seconds before the next step (real time: keep it short)."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Hang:
    """Write nothing more and keep the connection open until the client goes away."""


@dataclass(frozen=True, slots=True)
class Close:
    """Close the connection at once (mid-body if the reply promised more)."""

    reset: bool = False
    """Abort (RST) instead of a clean FIN."""


Step = bytes | Pause | Hang | Close


@dataclass(slots=True)
class Reply:
    """One scripted answer to one request: raw steps played in order."""

    steps: list[Step] = field(default_factory=list)

    @classmethod
    def raw(cls, *steps: Step) -> Reply:
        return cls(list(steps))

    @classmethod
    def http(
        cls,
        status: int,
        body: bytes | str | Mapping[str, object] = b"",
        *,
        content_type: str | None = "application/json",
        headers: Mapping[str, str] | None = None,
        reason: str = "",
    ) -> Reply:
        """A whole response with a Content-Length (a dict body is sent as JSON)."""
        data = _body_bytes(body)
        head = _head(status, reason, content_type, headers, {"content-length": str(len(data))})
        return cls([head + data])

    @classmethod
    def chunked(
        cls,
        status: int,
        pieces: Iterable[bytes | str | Pause | Hang | Close],
        *,
        content_type: str | None = "text/event-stream",
        headers: Mapping[str, str] | None = None,
        finish: bool = True,
    ) -> Reply:
        """A response sent with chunked transfer encoding, one HTTP chunk per piece.

        Pause/Hang/Close among the pieces act between chunks; ``finish=False``
        leaves out the terminating zero-length chunk (a body cut short).
        """
        steps: list[Step] = [_head(status, "", content_type, headers, {"transfer-encoding": "chunked"})]
        for piece in pieces:
            if isinstance(piece, (Pause, Hang, Close)):
                steps.append(piece)
                continue
            data = piece.encode() if isinstance(piece, str) else piece
            if data:
                steps.append(b"%x\r\n%s\r\n" % (len(data), data))
        if finish:
            steps.append(b"0\r\n\r\n")
        return cls(steps)

    @classmethod
    def stream(
        cls,
        pieces: Iterable[bytes | str | Pause | Hang | Close],
        *,
        content_type: str | None = "text/event-stream",
        headers: Mapping[str, str] | None = None,
        finish: bool = True,
    ) -> Reply:
        """A 200 streamed reply (see :meth:`chunked`)."""
        return cls.chunked(200, pieces, content_type=content_type, headers=headers, finish=finish)


def sse(*events: tuple[str | None, object] | object, crlf: bool = False) -> list[bytes]:
    """SSE frames: each item is ``(event_name, data)`` or just ``data`` (dicts become JSON)."""
    nl = "\r\n" if crlf else "\n"
    out: list[bytes] = []
    for item in events:
        name, data = item if isinstance(item, tuple) and len(item) == 2 else (None, item)
        text = data if isinstance(data, str) else json.dumps(data)
        frame = (f"event: {name}{nl}" if name else "") + f"data: {text}{nl}{nl}"
        out.append(frame.encode())
    return out


def ndjson(*objects: Mapping[str, object]) -> list[bytes]:
    """One NDJSON line per object."""
    return [json.dumps(o).encode() + b"\n" for o in objects]


@dataclass(frozen=True, slots=True)
class Received:
    """A request the server read."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> object:
        return json.loads(self.body)


class HostileServer:
    """Answers each request on 127.0.0.1 with the next scripted :class:`Reply`."""

    def __init__(self) -> None:
        self._queue: deque[Reply] = deque()
        self.requests: list[Received] = []
        self.connections = 0
        self.disconnects = 0
        """Connections that ended (client close, server close, or reset)."""
        self.hung = 0
        """Replies that reached a :class:`Hang` and then saw the client go away."""
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Event()
        self.port = 0

    # -------------------------------------------------------------- script

    def push(self, *replies: Reply) -> None:
        """Queue replies for the next requests, in order."""
        self._queue.extend(replies)

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    @property
    def pending(self) -> int:
        """Scripted replies not used yet."""
        return len(self._queue)

    # -------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> HostileServer:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

    async def wait_disconnects(self, n: int, within: float = 5.0) -> None:
        """Wait (at most ``within`` seconds) until ``n`` connections have ended."""
        async with asyncio.timeout(within):
            while self.disconnects < n:
                self._changed.clear()
                await self._changed.wait()

    async def wait_requests(self, n: int, within: float = 5.0) -> None:
        """Wait (at most ``within`` seconds) until ``n`` requests have been read."""
        async with asyncio.timeout(within):
            while len(self.requests) < n:
                self._changed.clear()
                await self._changed.wait()

    # -------------------------------------------------------------- serving

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        try:
            while True:
                received = await _read_request(reader)
                if received is None:
                    return
                self.requests.append(received)
                self._changed.set()
                reply = self._queue.popleft() if self._queue else Reply.http(
                    500, {"error": "hostile server: no reply scripted for this request"}
                )
                if not await self._play(reply, reader, writer):
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        except asyncio.CancelledError:
            # Stopped by aclose(). Ending cancelled would make asyncio 3.11's stream
            # callback call task.exception() and log the CancelledError it raises.
            return
        finally:
            self.disconnects += 1
            self._changed.set()
            self._tasks.discard(task)
            with contextlib.suppress(Exception):
                writer.close()

    async def _play(self, reply: Reply, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Play one reply; False when the connection is finished."""
        for step in reply.steps:
            if isinstance(step, bytes):
                writer.write(step)
                await writer.drain()
            elif isinstance(step, Pause):
                await asyncio.sleep(step.seconds)
            elif isinstance(step, Hang):
                # Wait for the client to go away (EOF or reset), reading whatever it sends.
                with contextlib.suppress(ConnectionError):
                    while await reader.read(65536):
                        pass
                self.hung += 1
                return False
            elif isinstance(step, Close):
                if step.reset:
                    writer.transport.abort()
                else:
                    writer.close()
                return False
        return True


def _body_bytes(body: bytes | str | Mapping[str, object]) -> bytes:
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode()
    return json.dumps(body).encode()


def _head(
    status: int,
    reason: str,
    content_type: str | None,
    headers: Mapping[str, str] | None,
    framing: Mapping[str, str],
) -> bytes:
    lines = [f"HTTP/1.1 {status} {reason or _REASONS.get(status, 'Status')}"]
    if content_type is not None:
        lines.append(f"content-type: {content_type}")
    for name, value in {**framing, **(headers or {})}.items():
        lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


_REASONS = {
    200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 429: "Too Many Requests",
    500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable", 529: "Overloaded",
}


async def _read_request(reader: asyncio.StreamReader) -> Received | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        parts: list[bytes] = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
        body = b"".join(parts)
    else:
        body = await reader.readexactly(int(headers.get("content-length", "0") or 0))
    return Received(method, path, headers, body)


def provider_config(provider: str, base_url: str, **section: object) -> dict[str, object]:
    """A forge config dict pointing one provider at ``base_url`` with a dummy key and no retries."""
    values: dict[str, object] = {"api_key": "test-key", "base_url": base_url, **section}
    values.setdefault("retry", {"max_attempts": 1})
    return {"providers": {provider: values}}


BASE_PATHS: Mapping[str, str] = {"openai": "/v1", "anthropic": "", "google": "", "ollama": ""}
"""What to append to the server URL for each provider's ``base_url``."""

PROVIDERS: Sequence[str] = ("openai", "anthropic", "google", "ollama")
