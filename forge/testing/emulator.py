"""A local emulator of the OpenAI, Anthropic, Gemini and Ollama HTTP APIs.

A real HTTP/1.1 server on 127.0.0.1 (stdlib asyncio only: it imports no
vendor SDK, no aiohttp) that speaks each vendor's wire protocol closely
enough for the official async clients, with scriptable faults::

    from forge.testing import Emulator, Fault, Reply

    async with Emulator() as emu:
        client = openai.AsyncOpenAI(api_key="k", base_url=emu.url + "/v1", max_retries=0)
        emu.script(Fault.rate_limit(retry_after=2.0), provider="openai")  # next request: 429
        emu.script(Reply(text="abc", chunk_count=3), model="gpt-small")
        emu.set_limits("anthropic", requests_per_minute=60, tokens_per_minute=10_000)
        ...
        assert emu.requests[-1].body["model"] == "gpt-small"

Endpoints
    OpenAI     ``POST /v1/chat/completions`` (JSON, SSE), ``POST /v1/responses`` (the
               Responses API: JSON, and SSE with its full typed event sequence), ``GET /v1/models``
    Anthropic  ``POST /v1/messages`` (JSON, SSE), ``POST /v1/messages/count_tokens``
    Gemini     ``POST /{v1,v1beta}/models/{m}:generateContent``, ``:streamGenerateContent``
               (``?alt=sse``; a streamed JSON array without it), ``:countTokens``
    Ollama     ``POST /api/chat`` (JSON, NDJSON), ``GET /api/tags``, ``GET /api/version``
    Batches    OpenAI ``POST /v1/files`` (multipart), ``GET /v1/files/{id}[/content]``,
               ``POST|GET /v1/batches``, ``GET /v1/batches/{id}``, ``POST .../cancel``;
               Anthropic ``POST|GET /v1/messages/batches``, ``GET .../{id}``, ``.../{id}/results``
               (JSONL), ``POST .../{id}/cancel``; Gemini ``POST /v1/models/{m}:batchGenerateContent``
               (inlined requests), ``GET /v1/batches[/{id}]``, ``POST /v1/batches/{id}:cancel``.
               A batch ends :meth:`Emulator.set_batch_delay` seconds (on ``clock``) after it was
               created; each item is answered like a chat call and can be failed on its own
               with a rule on the path ``batch:<custom_id>`` (see ``_emulator/batch.py``).
    anything else: 404 JSON.

Replies are deterministic functions of the request. By default the text is
``"Hello from the emulator (<provider>, <model>). You said: <last user text,
first 60 chars>"`` split into ``chunk_count`` nearly equal chunks; with
``chunk_size`` it is ``chunk_count`` chunks of exactly ``chunk_size``
characters of filler words, generated lazily (10 MB+ streams are cheap).
:class:`Reply` overrides either per rule.

Tool calls and reasoning, by a rule on the request when no :class:`Reply`
is scripted (``_emulator/tools.py``): a request that offers tools gets a call
to the first tool (or the one ``tool_choice`` names; ``required`` forces a
call, ``none`` forbids one) unless its last input is a tool result, which
gets the text ``"Hello from the emulator (<provider>, <model>). The tool
said: <result>"``. Arguments fill every required parameter from its schema
(default, first enum value, ``"example"``, ``1``, ``true``...). A request
that asks to see reasoning (Anthropic ``thinking``, Gemini
``includeThoughts``, Ollama ``think``, a Responses ``reasoning.summary``)
gets ``"Thinking about: <last user text>"`` first, with a signature; one
that only turns reasoning on reports its tokens. ``Reply(tool_calls=...,
reasoning=...)`` scripts both, invalid argument JSON included. Each vendor
gets its own shapes: OpenAI ``delta.tool_calls`` fragments by index,
Anthropic ``thinking`` / ``signature_delta`` / ``tool_use`` +
``input_json_delta`` blocks, Gemini ``thought`` parts, ``thoughtSignature``
and whole ``functionCall`` parts, Ollama ``message.thinking`` and
``message.tool_calls``, Responses ``reasoning`` / ``function_call`` items.
Tool-call arguments count as output tokens; reasoning tokens are output
too (Gemini reports them apart, as ``thoughtsTokenCount``).

Token accounting (no tokenizer):
    input tokens  = ceil(chars / 4) of all input text (system + messages;
                    tools and images are not counted)
    output tokens = sum over chunks of max(1, ceil(len(chunk) / 4))
A max-tokens setting (OpenAI ``max_completion_tokens``/``max_tokens``,
Anthropic ``max_tokens``, Gemini ``generationConfig.maxOutputTokens``,
Ollama ``options.num_predict``) stops the reply when the budget is used up:
the chunk that crosses it is cut to ``4 * remaining`` characters, output
tokens equal the budget, and the finish reason is ``length`` /
``max_tokens`` / ``MAX_TOKENS`` / ``"length"``.

Enforced limits (:meth:`Emulator.set_limits`) are strict sliding windows by
default (the arrivals of any one second total at most ``limit / 60``, as
OpenAI documents per-minute limits enforced in slices), or token buckets
holding ``limit / 60 * burst_seconds`` refilled at ``limit / 60`` per second
when ``burst_seconds`` is given, on the injectable ``clock``; a request costs 1 request and ``input tokens +
max tokens`` (the planned output when no maximum is given). Success
responses report the buckets in the vendor's headers (``x-ratelimit-*``,
``anthropic-ratelimit-*``); generous defaults when no limit is set.

Rules (:meth:`Emulator.script`) match on provider, model, path (exact or
shell patterns) and fire ``times`` times in FIFO order; see
:func:`forge.testing._emulator.script.resolve` for how rules combine.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import math
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TextIO, TypeVar

from ._emulator.anthropic import AnthropicDialect
from ._emulator.base import ApiError, Dialect, ErrorSpec, IdSource, JsonBody, JsonResponse, Route, Usage
from ._emulator.batch import BatchQueue
from ._emulator.caching import CacheUse
from ._emulator.engine import ReplyDefaults, fault_spec, plan_chunks, send_chat, send_json
from ._emulator.google import GoogleDialect
from ._emulator.http import BadRequest, ClientGone, Connection, HttpRequest, response_head
from ._emulator.limits import Admission, ProviderLimits, SlidingWindow, TokenBucket, unlimited
from ._emulator.ollama import OllamaDialect
from ._emulator.openai import OpenAIDialect
from ._emulator.script import (
    Fault,
    Plan,
    RecordedRequest,
    Reply,
    Rule,
    canonical_provider,
    resolve,
)
from ._emulator.signatures import Signatures
from ._emulator.text import tokens_for_chars
from ._emulator.tools import plan_extras

__all__ = ["Emulator", "EmulatorThread", "Fault", "RecordedRequest", "Reply", "Rule", "serve"]

log = logging.getLogger(__name__)

T = TypeVar("T")

API_KEY = "emulator-key"
_DEFAULT_REPLY = Reply()
_DIALECTS: tuple[type[Dialect], ...] = (OpenAIDialect, AnthropicDialect, GoogleDialect, OllamaDialect)


def _parse_json(raw: bytes) -> tuple[JsonBody | None, bool]:
    """``(body, ok)``: an empty body is fine, anything but a JSON object is not."""
    if not raw.strip():
        return None, True
    try:
        value = json.loads(raw.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError):
        return None, False
    return (value, True) if isinstance(value, dict) else (None, False)


class Emulator:
    """The emulator server. Use ``async with Emulator() as emu:`` or start()/stop().

    Args:
        host, port: where to listen (port 0: any free port, see ``emu.port``).
        chunk_count: default number of chunks per reply.
        chunk_size: if set, replies are ``chunk_count`` x ``chunk_size``
            characters of filler words instead of the echo text.
        clock: time source for rate limits and the request log (inject a
            fake one in tests).
        models: if given, other model names get the vendor's 404.
        record_requests: keep :attr:`requests` (turn off for long benchmarks).
        coalesce: frame the stream events that are ready together as one
            HTTP chunk, instead of one HTTP chunk per event (which is what
            a real server generating tokens sends). Removes the client's
            per-event HTTP framing cost from benchmarks; delays and drops
            still apply per event.
        prefill_rate: seconds of (real) delay before the answer per 1,000
            input tokens the model has to process; tokens read from a prompt
            cache count a tenth. 0 (the default) answers at once; benchmarks
            set it to show what caching does to latency.
        verify_signatures: refuse, with the vendor's 400, a follow-up whose
            reasoning (Anthropic thinking / redacted_thinking blocks, Gemini
            thought signatures, Responses encrypted reasoning items) was changed,
            merged, reordered or dropped (``_emulator/signatures.py``). On by
            default; ``False`` still issues signatures but checks none.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        chunk_count: int = 8,
        chunk_size: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        models: Iterable[str] | None = None,
        record_requests: bool = True,
        coalesce: bool = False,
        prefill_rate: float = 0.0,
        verify_signatures: bool = True,
    ) -> None:
        if chunk_count < 1:
            raise ValueError(f"chunk_count must be >= 1, got {chunk_count}")
        if chunk_size is not None and chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1 or None, got {chunk_size}")
        self._host = host
        self._port = port
        self._defaults = ReplyDefaults(chunk_count, chunk_size)
        self._clock = clock
        self._models = frozenset(models) if models is not None else None
        self._record = record_requests
        self._coalesce = coalesce
        self._ids = IdSource()
        self._dialects: dict[str, Dialect] = {cls.name: cls(self._ids) for cls in _DIALECTS}
        self.signatures = Signatures(enabled=verify_signatures)
        for dialect in self._dialects.values():
            dialect.clock = clock
            dialect.signatures = self.signatures
        if prefill_rate < 0:
            raise ValueError(f"prefill_rate must be >= 0, got {prefill_rate}")
        self._prefill_rate = prefill_rate
        self._routes: list[tuple[Route, Dialect]] = [
            (route, dialect) for dialect in self._dialects.values() for route in dialect.routes()
        ]
        self._rules: list[Rule] = []
        self._batches = BatchQueue(clock=clock, rules=self._rules, defaults=self._defaults,
                                   models=self._models, routes=self._routes)
        for dialect in self._dialects.values():
            dialect.batches = self._batches
        self._limits: dict[str, ProviderLimits] = {}
        self._keys: dict[str, str] = {}
        self._requests: list[RecordedRequest] = []
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._open = 0
        self._accepted = 0
        self._closed = 0
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> Emulator:
        """Start listening; returns self."""
        if self._server is not None:
            raise RuntimeError("the emulator is already running")
        self._server = await asyncio.start_server(
            self._on_connect, self._host, self._port, reuse_address=True, backlog=1024
        )
        self._port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        """Stop listening and close every open connection."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()

    async def __aenter__(self) -> Emulator:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def run_forever(self) -> None:
        """Serve in a new event loop until interrupted (blocking)."""

        async def main() -> None:
            async with self:
                await asyncio.Event().wait()

        asyncio.run(main())

    # -- addresses ---------------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound port (the requested one before :meth:`start`)."""
        return self._port

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        if self._server is None and self._port == 0:
            raise RuntimeError("start the emulator before asking for its URL")
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self._port}"

    @property
    def base_urls(self) -> dict[str, str]:
        """Per provider, the base URL its official client expects."""
        url = self.url
        return {"openai": url + "/v1", "anthropic": url, "google": url, "ollama": url}

    def config(self) -> dict[str, dict[str, dict[str, object]]]:
        """A forge config dict pointing every provider at this emulator.

        Its sections are plain dicts, so a test can add settings before use::

            config = emu.config()
            config["providers"]["openai"]["retry"] = {"max_attempts": 1}
        """
        urls = self.base_urls
        return {
            "providers": {
                "openai": {"base_url": urls["openai"], "api_key": API_KEY},
                "anthropic": {"base_url": urls["anthropic"], "api_key": API_KEY},
                "google": {"base_url": urls["google"], "api_key": API_KEY},
                "ollama": {"base_url": urls["ollama"]},
            }
        }

    # -- scripting ---------------------------------------------------------------

    def script(
        self,
        action: Fault | Reply,
        *more: Fault | Reply,
        provider: str | None = None,
        model: str | None = None,
        path: str | None = None,
        times: int | None = 1,
        when: Callable[[RecordedRequest], bool] | None = None,
    ) -> Rule:
        """Add a rule: the next ``times`` matching requests (None: all) get ``action``.

        Several actions of different kinds can share a rule (e.g.
        ``Fault.chunk_delay(0.01), Fault.drop_after(3)``). Rules apply in
        FIFO order; per kind the oldest matching rule wins and an error
        response ends the search, so ``script(Fault.rate_limit(), times=2)``
        then ``script(Fault.status(500))`` gives 429, 429, 500.
        """
        actions = (action, *more)
        for item in actions:
            if not isinstance(item, Fault | Reply):
                raise TypeError(f"script() takes Fault and Reply values, got {item!r}")
        if times is not None and times < 1:
            raise ValueError(f"times must be >= 1 or None (forever), got {times}")
        rule = Rule(actions, canonical_provider(provider) if provider else None, model, path, times, when)
        self._rules.append(rule)
        return rule

    @property
    def rules(self) -> list[Rule]:
        """Rules that can still fire, oldest first."""
        return list(self._rules)

    def set_limits(
        self,
        provider: str,
        *,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        burst_seconds: float | None = None,
    ) -> None:
        """Enforce requests/min and/or tokens/min for ``provider`` (both None: no limits).

        By default each limit is enforced the strict way providers document: the
        arrivals of any sliding one second may total at most ``limit / 60``. With
        ``burst_seconds`` set, each limit is instead a bucket of ``limit / 60 *
        burst_seconds`` refilled at ``limit / 60`` per second. Either runs on the
        emulator's clock; requests over it get the vendor's 429 with its headers and body.
        """
        name = canonical_provider(provider)
        if requests_per_minute is None and tokens_per_minute is None:
            self._limits.pop(name, None)
            return
        now = self._clock()

        def limit(per_minute: float | None) -> TokenBucket | SlidingWindow | None:
            if per_minute is None:
                return None
            if burst_seconds is None:
                return SlidingWindow(per_minute, now)
            return TokenBucket(per_minute, burst_seconds, now)

        self._limits[name] = ProviderLimits(limit(requests_per_minute), limit(tokens_per_minute))

    def require_api_key(self, provider: str, key: str | None) -> None:
        """Reject requests to ``provider`` without this key, as the vendor would (None: accept any)."""
        name = canonical_provider(provider)
        if key is None:
            self._keys.pop(name, None)
        else:
            self._keys[name] = key

    @property
    def requests(self) -> list[RecordedRequest]:
        """A copy of the request log, oldest first."""
        return list(self._requests)

    def reset(self) -> None:
        """Forget rules, limits, required keys and the request log."""
        self._rules.clear()
        self._limits.clear()
        self._keys.clear()
        self._requests.clear()
        for dialect in self._dialects.values():
            dialect.reset()
            dialect.caches.clear()
        self._batches.reset()
        self.signatures.reset()

    def set_batch_delay(self, seconds: float) -> None:
        """Batches created from now on end ``seconds`` after creation, on the emulator's clock (default 0)."""
        if seconds < 0:
            raise ValueError(f"seconds must be >= 0, got {seconds}")
        self._batches.delay = seconds

    # -- connections -------------------------------------------------------------

    @property
    def open_connections(self) -> int:
        """Client connections currently open."""
        return self._open

    @property
    def connections_accepted(self) -> int:
        return self._accepted

    @property
    def connections_closed(self) -> int:
        return self._closed

    async def wait_connections(self, count: int = 0, timeout: float | None = 5.0) -> None:  # noqa: ASYNC109
        """Wait until exactly ``count`` connections are open; TimeoutError after ``timeout``."""
        if self._open == count:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiter = (count, future)
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise TimeoutError(
                f"{self._open} connection(s) still open after {timeout}s, expected {count}"
            ) from None
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def _notify(self) -> None:
        for count, future in self._waiters:
            if count == self._open and not future.done():
                future.set_result(None)

    def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.get_running_loop().create_task(self._serve_connection(Connection(reader, writer)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve_connection(self, conn: Connection) -> None:
        self._open += 1
        self._accepted += 1
        self._notify()
        try:
            while True:
                try:
                    req = await conn.read_request()
                except BadRequest as exc:
                    error = {"error": {"message": exc.message, "type": "invalid_request_error"}}
                    body = json.dumps(error).encode()
                    conn.write(response_head(exc.status, [("content-type", "application/json")],
                                             content_length=len(body), keep_alive=False) + body)
                    await conn.drain()
                    break
                if req is None:
                    break
                keep_alive = await self._serve_request(conn, req)
                await conn.end_response()
                if not keep_alive or conn.closed:
                    break
        except (ClientGone, asyncio.CancelledError):
            pass  # the client hung up, or the emulator is stopping
        except Exception:  # a bug here must not kill the server or leak a task error
            log.exception("forge emulator: unexpected error on a connection")
        finally:
            await conn.close()
            self._open -= 1
            self._closed += 1
            self._notify()

    # -- requests ----------------------------------------------------------------

    def _route(self, req: HttpRequest) -> tuple[Route, re.Match[str], Dialect] | None:
        for route, dialect in self._routes:
            if route.method == req.method and (match := route.pattern.fullmatch(req.path)) and (
                route.accepts is None or route.accepts(req)
            ):
                return route, match, dialect
        return None

    async def _serve_request(self, conn: Connection, req: HttpRequest) -> bool:
        body, body_ok = _parse_json(req.body)
        found = self._route(req)
        if found is None:
            rec = RecordedRequest(
                None, req.method, req.path, req.query, req.headers, body, req.body, self._clock()
            )
            self._log(rec)
            await send_json(conn, rec, self._unrouted(req), req.keep_alive)
            return req.keep_alive
        route, match, dialect = found
        model, stream = dialect.describe(req, match, body)
        rec = RecordedRequest(dialect.name, req.method, req.path, req.query, req.headers, body, req.body,
                              self._clock(), model, stream)
        self._log(rec)
        try:
            plan = resolve(self._rules, rec, generation=route.handler is None)
            if plan.first_byte is not None:
                await conn.sleep(plan.first_byte.seconds)
            try:
                return await self._answer(conn, req, rec, route, match, dialect, body, body_ok, plan)
            except ApiError as exc:
                await send_json(conn, rec, dialect.error(exc.spec, rec.model, req), req.keep_alive)
                return req.keep_alive
        except ClientGone:
            if rec.outcome == "pending":
                rec.outcome = "disconnected"
            raise
        except Exception as exc:  # a bug (or a failing `when=` predicate): answer 500, keep serving
            log.exception("forge emulator: error while answering %s %s", req.method, req.path)
            if rec.status is not None:
                raise ClientGone from exc  # part of an answer went out: all we can do is hang up
            spec = ErrorSpec("server", 500, f"forge emulator error: {exc!r}")
            await send_json(conn, rec, dialect.error(spec, rec.model, req), False)
            return False

    def _log(self, rec: RecordedRequest) -> None:
        if self._record:
            self._requests.append(rec)

    @staticmethod
    def _unrouted(req: HttpRequest) -> JsonResponse:
        if req.method == "GET" and req.path == "/":
            return JsonResponse(200, b"forge emulator is running", (), "text/plain; charset=utf-8")
        message = f"Invalid URL ({req.method} {req.path})"
        body = {"error": {"message": message, "type": "invalid_request_error", "param": None,
                          "code": "unknown_url", "status": "NOT_FOUND"}}
        return JsonResponse(404, json.dumps(body).encode())

    async def _answer(
        self,
        conn: Connection,
        req: HttpRequest,
        rec: RecordedRequest,
        route: Route,
        match: re.Match[str],
        dialect: Dialect,
        body: JsonBody | None,
        body_ok: bool,
        plan: Plan,
    ) -> bool:
        limits = self._limits.get(dialect.name)
        if plan.error is not None:
            view = limits.peek(self._clock()) if limits is not None else unlimited(0)
            raise ApiError(fault_spec(plan.error, dialect.name, view))
        self._check_key(req, dialect)
        if not body_ok and not route.raw_body:
            raise ApiError(ErrorSpec("invalid_json", 400))
        if route.handler is not None:
            await send_json(conn, rec, route.handler(req, match, body), req.keep_alive)
            return req.keep_alive
        call = dialect.parse_chat(req, match, body)
        if self._models is not None and call.model not in self._models:
            raise ApiError(ErrorSpec("not_found", 404))
        extras, reply, reasoning_tokens = plan_extras(
            dialect.name, call, plan.reply, call_prefix=dialect.call_id_prefix, next_id=self._ids.next
        )
        chunks, planned = plan_chunks(dialect.name, call, reply, self._defaults)
        input_tokens = reply.input_tokens
        if input_tokens is None:
            input_tokens = tokens_for_chars(call.input_chars)
        cost = input_tokens + (call.max_tokens if call.max_tokens is not None else planned)
        admission = self._admit(limits, cost)
        cache = dialect.cache_usage(call, body, input_tokens)
        usage = _usage(reply, cache, input_tokens, planned, reasoning_tokens)
        if self._prefill_rate:
            await conn.sleep(self._prefill_rate * (input_tokens - 0.9 * usage.cached_tokens) / 1000)
        return await send_chat(conn, req, rec, dialect, call, plan, reply, chunks, usage, admission,
                               req.keep_alive, self._coalesce, extras)

    def _check_key(self, req: HttpRequest, dialect: Dialect) -> None:
        """401 for a wrong key when one is set (Gemini: 403 when none is sent), as the vendor answers."""
        expected = self._keys.get(dialect.name)
        if expected is None:
            return
        sent = dialect.api_key(req)
        if sent != expected:
            missing_google = sent is None and dialect.name == "google"
            spec = ErrorSpec("permission", 403) if missing_google else ErrorSpec("invalid_key", 401)
            raise ApiError(spec)

    def _admit(self, limits: ProviderLimits | None, cost: int) -> Admission:
        """Charge ``cost`` tokens and one request to the provider's limits; 429 when they refuse."""
        admission = limits.admit(cost, self._clock()) if limits is not None else unlimited(cost)
        if not admission.allowed:
            wait = None if admission.too_large else float(max(1, math.ceil(admission.retry_after)))
            raise ApiError(ErrorSpec("rate_limit", 429, retry_after=wait, admission=admission))
        return admission


def _usage(reply: Reply, cache: CacheUse, input_tokens: int, planned: int, reasoning_tokens: int) -> Usage:
    """The reply's usage: scripted cache counts win over the dialect's cache model."""
    if reply.cached_tokens or reply.cache_write_tokens:
        return Usage(input_tokens, planned, reply.cached_tokens, reply.cache_write_tokens, reasoning_tokens)
    return Usage(input_tokens, planned, min(cache.read, input_tokens),
                 min(cache.write, max(0, input_tokens - cache.read)), reasoning_tokens, cache.write_1h)


class EmulatorThread:
    """An :class:`Emulator` on its own event loop in a daemon thread, for sync code.

    ``with EmulatorThread() as emu: ...`` or start()/stop(). Scripting calls
    are forwarded to the emulator's loop thread.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        chunk_count: int = 8,
        chunk_size: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        models: Iterable[str] | None = None,
        record_requests: bool = True,
        coalesce: bool = False,
        prefill_rate: float = 0.0,
        verify_signatures: bool = True,
    ) -> None:
        self.emulator = Emulator(host, port, chunk_count=chunk_count, chunk_size=chunk_size, clock=clock,
                                 models=models, record_requests=record_requests, coalesce=coalesce,
                                 prefill_rate=prefill_rate, verify_signatures=verify_signatures)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def start(self) -> EmulatorThread:
        """Start the thread and wait until the server listens."""
        if self._thread is not None:
            raise RuntimeError("the emulator thread is already running")
        self._ready.clear()
        self._error = None
        self._thread = threading.Thread(target=self._run, name="forge-emulator", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            self._thread = None
            raise self._error
        return self

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self.emulator.start())
        except BaseException as exc:  # reported to start()'s caller
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
            loop.run_until_complete(self.emulator.stop())
        finally:
            loop.close()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the server and join the thread."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        self._thread = None
        self._loop = None

    def __enter__(self) -> EmulatorThread:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def call(self, fn: Callable[[Emulator], T], timeout: float = 5.0) -> T:
        """Run ``fn(emulator)`` on the emulator's loop thread and return its result."""
        loop = self._loop
        if loop is None:
            raise RuntimeError("start the emulator thread first")
        result: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                result.set_result(fn(self.emulator))
            except BaseException as exc:
                result.set_exception(exc)

        loop.call_soon_threadsafe(run)
        return result.result(timeout)

    @property
    def port(self) -> int:
        return self.emulator.port

    @property
    def url(self) -> str:
        return self.emulator.url

    @property
    def base_urls(self) -> dict[str, str]:
        return self.emulator.base_urls

    def config(self) -> dict[str, dict[str, dict[str, object]]]:
        return self.emulator.config()

    @property
    def requests(self) -> list[RecordedRequest]:
        return self.call(lambda emu: emu.requests)

    @property
    def open_connections(self) -> int:
        return self.emulator.open_connections

    def script(
        self,
        action: Fault | Reply,
        *more: Fault | Reply,
        provider: str | None = None,
        model: str | None = None,
        path: str | None = None,
        times: int | None = 1,
        when: Callable[[RecordedRequest], bool] | None = None,
    ) -> Rule:
        """:meth:`Emulator.script`, on the loop thread."""
        return self.call(lambda emu: emu.script(
            action, *more, provider=provider, model=model, path=path, times=times, when=when))

    def set_limits(
        self,
        provider: str,
        *,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        burst_seconds: float | None = None,
    ) -> None:
        """:meth:`Emulator.set_limits`, on the loop thread."""
        self.call(lambda emu: emu.set_limits(
            provider, requests_per_minute=requests_per_minute, tokens_per_minute=tokens_per_minute,
            burst_seconds=burst_seconds))

    def require_api_key(self, provider: str, key: str | None) -> None:
        """:meth:`Emulator.require_api_key`, on the loop thread."""
        self.call(lambda emu: emu.require_api_key(provider, key))

    def reset(self) -> None:
        self.call(lambda emu: emu.reset())

    def set_batch_delay(self, seconds: float) -> None:
        """:meth:`Emulator.set_batch_delay`, on the loop thread."""
        self.call(lambda emu: emu.set_batch_delay(seconds))


def config_toml(config: Mapping[str, Mapping[str, Mapping[str, object]]]) -> str:
    """:meth:`Emulator.config` as ``forge.toml`` text a user can paste."""
    lines: list[str] = []
    for provider, section in config["providers"].items():
        lines.append(f"[providers.{provider}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in section.items()]
        lines.append("")
    return "\n".join(lines)


def serve(
    host: str = "127.0.0.1",
    port: int = 8765,
    *,
    chunk_count: int = 8,
    chunk_size: int | None = None,
    coalesce: bool = False,
    out: TextIO | None = None,
) -> None:
    """Run the emulator in the foreground until Ctrl-C, printing its URLs (``forge emulator``).

    The first line printed is ``forge emulator listening on <url>``.
    """
    stream = out if out is not None else sys.stdout
    emulator = Emulator(host, port, chunk_count=chunk_count, chunk_size=chunk_size, coalesce=coalesce,
                        record_requests=False)

    async def main() -> None:
        async with emulator:
            print(f"forge emulator listening on {emulator.url}", file=stream)
            print("Paste this into forge.toml (or the file $FORGE_CONFIG names); the emulator accepts "
                  "any api_key:\n", file=stream)
            print(config_toml(emulator.config()), file=stream)
            print("Press Ctrl-C to stop.", file=stream, flush=True)
            await asyncio.Event().wait()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        print("forge emulator stopped", file=stream, flush=True)
