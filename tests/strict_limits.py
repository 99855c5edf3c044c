"""A raw HTTP server that enforces per-minute limits the strict way providers document.

OpenAI: "Rate limits can be quantized, meaning they are enforced over shorter
periods of time (e.g. 60,000 requests/minute may be enforced as 1,000
requests/second)", and a request counts its prompt plus ``max_tokens``. This
server counts arrivals in a sliding one-second window ``(now - 1, now]``: a
request is admitted only if the second's requests stay within ``rpm / 60`` and
its tokens within ``tpm / 60``; otherwise it answers 429 with ``retry-after``.
It sends no rate-limit headers, so a client cannot lean on them. Admitted
requests get a valid OpenAI chat completion. It shares no code with forge or
its emulator (only the request parser of ``tests/hostile.py``).

It runs on its own event loop in its own thread, as a provider's front end runs
on its own machine: a client task hogging the test's loop does not delay when
the server reads (and stamps) a request.

``tolerance`` (seconds, default 0: the strict rule) shortens the counted window
to ``1 - tolerance``. forge promises that requests *leave* (headers written) at
most the slice per sliding ``1 + margin`` seconds (``forge.ratelimit.DEFAULT_MARGIN``),
so arrivals hold the slice while the time from writing to the server stamping the
arrival varies by less than the margin. On one busy machine (2 cores, load above
8) the server's thread can be scheduled tens of milliseconds late, which a real
network path to a provider does not add on top; the integration tests give the
server a tolerance equal to the margin (what they check is then: arrival jitter up
to twice the margin is absorbed), while the benchmark keeps the strict rule and
reports every 429.

    async with StrictLimitServer(requests_per_minute=3000) as srv:
        cfg = provider_config("openai", srv.url("/v1"), rate_limit={"requests_per_minute": 3000})
        ...
        assert srv.statuses.count(429) == 0
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import threading
import time
from collections import deque
from types import TracebackType

from tests.hostile import _read_request

__all__ = ["StrictLimitServer"]

REPLY_TOKENS = 5  # output tokens of every reply (the count when no max_tokens is sent)


class StrictLimitServer:
    """Sliding one-second windows at ``rpm / 60`` requests and ``tpm / 60`` tokens."""

    def __init__(
        self,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        *,
        tolerance: float = 0.0,
    ) -> None:
        if not 0.0 <= tolerance < 1.0:
            raise ValueError(f"tolerance must be in [0, 1) seconds, got {tolerance!r}.")
        self.window = 1.0 - tolerance
        self.request_slice = requests_per_minute / 60 if requests_per_minute else math.inf
        self.token_slice = tokens_per_minute / 60 if tokens_per_minute else math.inf
        self.statuses: list[int] = []
        self.admitted: list[tuple[float, int]] = []  # (arrival, tokens)
        self.arrivals: list[tuple[float, str, int]] = []  # (arrival, prompt text, status), every request
        self._window: deque[tuple[float, int]] = deque()
        self._tokens = 0
        self._now = 0.0
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def __aenter__(self) -> StrictLimitServer:
        loop = self._loop = asyncio.new_event_loop()
        started = threading.Event()

        def serve() -> None:
            asyncio.set_event_loop(loop)
            loop.run_until_complete(self._start())
            started.set()
            loop.run_forever()

        self._thread = threading.Thread(target=serve, name="strict-limit-server", daemon=True)
        self._thread.start()
        await asyncio.to_thread(started.wait)
        return self

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._loop is not None and self._thread is not None
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self._stop(), self._loop))
        self._loop.call_soon_threadsafe(self._loop.stop)
        await asyncio.to_thread(self._thread.join)
        self._loop.close()

    async def _stop(self) -> None:
        assert self._server is not None
        self._server.close()
        if self._tasks:  # the clients have gone: let the handlers see EOF, then stop stragglers
            await asyncio.wait(set(self._tasks), timeout=2.0)
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        await self._server.wait_closed()

    def busiest_second(self, window: float = 1.0) -> tuple[int, int]:
        """The most requests and the most tokens admitted in any sliding ``window`` seconds."""
        most_requests = most_tokens = 0
        lo, tokens = 0, 0
        for hi, (at, cost) in enumerate(self.admitted):
            tokens += cost
            while self.admitted[lo][0] <= at - window:
                tokens -= self.admitted[lo][1]
                lo += 1
            most_requests = max(most_requests, hi - lo + 1)
            most_tokens = max(most_tokens, tokens)
        return most_requests, most_tokens

    def _admit(self, cost: int) -> float:
        """0 when admitted; else the seconds until it would be."""
        now = self._now = time.monotonic()
        while self._window and self._window[0][0] <= now - self.window:
            self._tokens -= self._window.popleft()[1]
        fits_tokens = self._tokens + cost <= self.token_slice or (cost > self.token_slice and not self._window)
        if len(self._window) + 1 <= self.request_slice and fits_tokens:
            self._window.append((now, cost))
            self._tokens += cost
            self.admitted.append((now, cost))
            return 0.0
        return max(0.001, self._window[0][0] + self.window - now) if self._window else 0.001

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            while (received := await _read_request(reader)) is not None:
                body = json.loads(received.body or b"{}")
                text = "".join(str(m.get("content", "")) for m in body.get("messages", []))
                prompt = math.ceil(len(text) / 4)
                max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
                cost = prompt + (max_tokens or REPLY_TOKENS)
                wait = self._admit(cost)
                self.arrivals.append((self._now, text, 429 if wait else 200))
                if wait:
                    self.statuses.append(429)
                    payload = {"error": {"message": "Rate limit reached (strict one-second window)",
                                         "type": "requests", "code": "rate_limit_exceeded"}}
                    headers = {"retry-after": f"{wait:.3f}"}
                    writer.write(_response(429, payload, headers))
                else:
                    self.statuses.append(200)
                    writer.write(_response(200, _completion(body.get("model", "m"), prompt, max_tokens), {}))
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._tasks.discard(task)
            with contextlib.suppress(Exception):
                writer.close()


def _completion(model: str, prompt: int, max_tokens: int | None) -> dict[str, object]:
    output = min(REPLY_TOKENS, max_tokens or REPLY_TOKENS)
    return {
        "id": "chatcmpl-strict", "object": "chat.completion", "created": 0, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok ok ok ok ok"},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": output, "total_tokens": prompt + output},
    }


def _response(status: int, payload: dict[str, object], headers: dict[str, str]) -> bytes:
    data = json.dumps(payload).encode()
    reason = "OK" if status == 200 else "Too Many Requests"
    lines = [f"HTTP/1.1 {status} {reason}", "content-type: application/json", f"content-length: {len(data)}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + data
