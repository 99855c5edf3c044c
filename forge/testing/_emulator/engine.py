"""Writing answers: errors, JSON completions and streamed completions.

The stream loop is the emulator's hot path. Events are framed as one HTTP
chunk each (or, with ``coalesce``, every flush is one HTTP chunk), collected
in a list and written with one ``write`` per ~64 KiB (or per event when a
delay is scripted), so a 10,000-chunk stream costs a handful of syscalls.
Chunk texts come from a lazy iterator; nothing proportional to the reply
size is built for a stream.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace

from .base import (
    NO_EXTRAS,
    ChatCall,
    Dialect,
    ErrorKind,
    ErrorSpec,
    JsonResponse,
    ReplyExtras,
    StreamRenderer,
    Usage,
)
from .http import LAST_CHUNK, Connection, HttpRequest, frame, response_head
from .limits import Admission, LimitState, unlimited
from .script import Fault, Plan, RecordedRequest, Reply
from .text import JsonStrCache, chunk_tokens, default_reply, filler_chunks, split_text

_FLUSH_BYTES = 64 * 1024

_STATUS_KINDS: dict[int, ErrorKind] = {
    400: "invalid_request",
    401: "auth",
    403: "permission",
    404: "not_found",
    408: "timeout",
    413: "too_large",
    429: "rate_limit",
    500: "server",
    502: "server",
    503: "unavailable",
    504: "timeout",
    529: "overloaded",
}


@dataclass(frozen=True, slots=True)
class ReplyDefaults:
    chunk_count: int
    chunk_size: int | None


_STREAM_ERROR_KINDS: dict[str, ErrorKind] = {"overloaded": "overloaded", "server_error": "server",
                                              "rate_limit": "rate_limit"}
_FAULT_KINDS: dict[str, tuple[ErrorKind, int]] = {
    "auth": ("invalid_key", 401),
    "rate_limit": ("rate_limit", 429),
    "context_length": ("context_length", 400),
    "not_found": ("not_found", 404),
}


def fault_spec(fault: Fault, provider: str, rate_view: Admission) -> ErrorSpec:
    """The error answer a scripted fault stands for."""
    kind: ErrorKind
    if fault.kind in ("status", "server_error"):
        code = fault.code or 500
        kind = _STATUS_KINDS.get(code, "invalid_request" if code < 500 else "server")
    elif fault.kind in ("overloaded", "stream_error"):
        kind = "overloaded" if fault.kind == "overloaded" else _STREAM_ERROR_KINDS[fault.error]
        code = {"overloaded": 529 if provider == "anthropic" else 503, "rate_limit": 429}.get(kind, 500)
    else:
        kind, code = _FAULT_KINDS[fault.kind]
    admission = None
    if kind == "rate_limit":
        wait = fault.retry_after if fault.retry_after is not None else (
            fault.retry_after_ms / 1000 if fault.retry_after_ms is not None else 1.0)
        admission = Admission(False, LimitState(rate_view.requests.limit, 0, wait), rate_view.tokens,
                              "requests", wait)
    return ErrorSpec(kind, code, fault.message, fault.retry_after, fault.retry_after_ms, admission,
                     fault.headers)


def plan_chunks(
    provider: str, call: ChatCall, reply: Reply, defaults: ReplyDefaults
) -> tuple[Iterable[str], int]:
    """The reply's chunk texts (lazy for filler) and their output tokens."""
    count = reply.chunk_count or defaults.chunk_count
    if reply.chunks is not None:
        chunks: list[str] = list(reply.chunks)
    elif reply.text is not None:
        chunks = split_text(reply.text, count) if reply.text else []
    else:
        size = reply.chunk_size or defaults.chunk_size
        if size is not None:
            return filler_chunks(count, size), count * max(1, (size + 3) // 4)
        chunks = split_text(default_reply(provider, call.model, call.last_user_text), count)
    return chunks, sum(chunk_tokens(c) for c in chunks)


def _call_tokens(extras: ReplyExtras) -> int:
    return sum(chunk_tokens(c.arguments) for c in extras.calls)


async def send_json(conn: Connection, rec: RecordedRequest, resp: JsonResponse, keep_alive: bool) -> None:
    rec.status = resp.status
    head = response_head(resp.status, (("content-type", resp.content_type), *resp.headers),
                         content_length=len(resp.body), keep_alive=keep_alive)
    conn.write(head + resp.body)
    await conn.drain()
    rec.outcome = "complete"


def _limited(chunks: Iterable[str], max_tokens: int | None) -> tuple[list[str], int, bool]:
    """All chunk texts that fit in ``max_tokens``, their tokens, whether cut."""
    texts: list[str] = []
    out = 0
    for text in chunks:
        tokens = chunk_tokens(text)
        if max_tokens is not None and out + tokens > max_tokens:
            left = max_tokens - out
            if left > 0:
                texts.append(text[: left * 4])
                out += left
            return texts, out, True
        texts.append(text)
        out += tokens
    return texts, out, False


async def send_chat(
    conn: Connection,
    req: HttpRequest,
    rec: RecordedRequest,
    dialect: Dialect,
    call: ChatCall,
    plan: Plan,
    reply: Reply,
    chunks: Iterable[str],
    usage: Usage,
    admission: Admission,
    keep_alive: bool,
    coalesce: bool = False,
    extras: ReplyExtras = NO_EXTRAS,
) -> bool:
    """Answer a chat call; returns whether the connection stays usable.

    ``extras`` (reasoning, tool calls) go to the dialect; a reply cut short by
    max tokens makes no tool calls. Tool-call arguments count as output tokens.
    """
    headers = dialect.success_headers(admission)
    if reply.headers:
        headers += [(k.lower(), v) for k, v in reply.headers.items()]
    finish_ok = dialect.vendor_finish(reply.finish_reason or "stop")
    finish_cut = dialect.vendor_finish("length")
    interrupt = plan.interrupt
    if call.stream:
        return await _stream(conn, rec, dialect, call, plan, reply, chunks, usage, headers,
                             finish_ok, finish_cut, keep_alive, coalesce, extras)
    if interrupt is not None and interrupt.kind == "stream_error":
        spec = fault_spec(interrupt, dialect.name, admission)
        await send_json(conn, rec, dialect.error(spec, call.model, req), keep_alive)
        return keep_alive
    texts, out, cut = _limited(chunks, call.max_tokens)
    if cut and extras.calls:
        extras = replace(extras, calls=())
    out += _call_tokens(extras)
    usage = replace(usage, output_tokens=out if reply.output_tokens is None else reply.output_tokens)
    body = dialect.completion(call, "".join(texts), finish_cut if cut else finish_ok, usage, extras)
    resp = JsonResponse(200, body, tuple(headers), "application/json")
    if interrupt is not None:  # drop_after: cut the body half-way
        rec.status = 200
        head = response_head(200, (("content-type", resp.content_type), *resp.headers),
                             content_length=len(body), keep_alive=keep_alive)
        conn.write(head + body[: len(body) // 2])
        await conn.drain()
        conn.abort()
        rec.outcome = "dropped"
        return False
    await send_json(conn, rec, resp, keep_alive)
    return keep_alive


async def _stream(
    conn: Connection,
    rec: RecordedRequest,
    dialect: Dialect,
    call: ChatCall,
    plan: Plan,
    reply: Reply,
    chunks: Iterable[str],
    usage: Usage,
    headers: list[tuple[str, str]],
    finish_ok: str,
    finish_cut: str,
    keep_alive: bool,
    coalesce: bool,
    extras: ReplyExtras,
) -> bool:
    renderer: StreamRenderer = dialect.stream(call, usage, extras)
    rec.status = 200
    writer = _ChunkWriter(conn, response_head(
        200,
        [("content-type", renderer.content_type), ("cache-control", "no-cache"), *headers],
        content_length=None,
        keep_alive=keep_alive,
    ), coalesce)
    for event in renderer.head():
        writer.add(event)
    interrupt = plan.interrupt
    emitted, out, cut = await _send_chunks(writer, rec, renderer, chunks, plan, call.max_tokens,
                                           finish_ok, finish_cut)
    if interrupt is not None:
        if interrupt.kind == "drop_after":
            writer.flush()
            await conn.drain()
            conn.abort()
            rec.outcome = "dropped"
            return False
        writer.add(renderer.error_event(fault_spec(interrupt, dialect.name, unlimited(0))))
    else:
        if not cut:
            out += _call_tokens(extras)
        final = replace(usage, output_tokens=out if reply.output_tokens is None else reply.output_tokens)
        for event in renderer.tail(finish_cut if cut else finish_ok, final, emitted):
            writer.add(event)
    writer.flush(last=True)
    await conn.drain()
    rec.outcome = "complete"
    return keep_alive


class _ChunkWriter:
    """Events waiting to be written: each framed as its own HTTP chunk, or
    (``coalesce``) framed together as one HTTP chunk per flush; the response
    head goes out with the first flush."""

    __slots__ = ("buf", "coalesce", "conn", "pending_head")

    def __init__(self, conn: Connection, head: bytes, coalesce: bool) -> None:
        self.conn = conn
        self.coalesce = coalesce
        self.buf: list[bytes] = []
        self.pending_head = [head]

    def add(self, event: bytes) -> None:
        self.buf.append(event if self.coalesce else frame(event))

    def flush(self, last: bool = False) -> None:
        data = b"".join(self.buf)
        if self.coalesce and data:
            data = frame(data)
        if self.pending_head:
            data = self.pending_head.pop() + data
        self.conn.write(data + LAST_CHUNK if last else data)
        self.buf.clear()


def _first_chunk(it: Iterator[str], max_tokens: int | None) -> tuple[str | None, bool]:
    """The first chunk text, or None and cut=True when ``max_tokens`` leaves room for none."""
    cur = next(it, None)
    if cur is not None and max_tokens is not None and max_tokens <= 0:
        return None, True
    return cur, False


async def _send_chunks(
    writer: _ChunkWriter,
    rec: RecordedRequest,
    renderer: StreamRenderer,
    chunks: Iterable[str],
    plan: Plan,
    max_tokens: int | None,
    finish_ok: str,
    finish_cut: str,
) -> tuple[int, int, bool]:
    """The chunk loop (the hot path): render, frame and write each chunk text.

    Stops at an ``interrupt``'s chunk count and cuts the reply at
    ``max_tokens``; returns the chunks sent, the output tokens and whether
    the reply was cut. ``rec.chunks_sent`` holds the count however it ends.
    """
    conn = writer.conn
    coalesce = writer.coalesce
    append = writer.buf.append
    delay = plan.chunk_delay
    stop_at = plan.interrupt.chunks if plan.interrupt is not None else -1
    encode = JsonStrCache()
    render = renderer.chunk
    emitted = 0
    out = 0
    size = 0
    it: Iterator[str] = iter(chunks)
    cur, cut = _first_chunk(it, max_tokens)
    try:
        if delay:
            writer.flush()
            await conn.drain()
        while cur is not None:
            if emitted == stop_at:
                break
            tokens = (len(cur) + 3) // 4 or 1
            nxt = next(it, None)
            if max_tokens is not None and tokens >= max_tokens - out:
                left = max_tokens - out
                if tokens > left:
                    cur = cur[: left * 4]
                    tokens = left
                if nxt is not None:
                    cut, nxt = True, None
            out += tokens
            event = render(encode(cur), out, None if nxt is not None else (finish_cut if cut else finish_ok))
            append(event if coalesce else b"%x\r\n%b\r\n" % (len(event), event))
            emitted += 1
            size += len(event)
            if delay:
                writer.flush()
                await conn.drain()
                await conn.sleep(delay)
            elif size >= _FLUSH_BYTES:
                writer.flush()
                size = 0
                await conn.drain()
            cur = nxt
        return emitted, out, cut
    finally:
        rec.chunks_sent = emitted
