"""Stream: the one place where every provider's stream becomes something a service can rely on.

A :class:`Stream` is what ``llm.stream(...)`` and ``reg.stream(...)`` return::

    async with reg.stream("openai:gpt-4o-mini", "Tell me a story") as stream:
        async for text in stream:
            print(text, end="")
    print(stream.response.usage)

It gives text deltas (``async for``), normalized events (:meth:`Stream.events`),
buffering, first-token / idle / total timeouts, chunk and progress callbacks,
reassembly into a :class:`~forge.types.Response`, clean cancellation, and
:func:`stream_to_file`. A stream that breaks after text reached the caller raises
:class:`~forge.errors.StreamInterrupted` with the partial text; one that fails
before any text reached the caller raises the provider error, which the retry
policy may retry transparently.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import tempfile
import time
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from forge.errors import ForgeError, StreamInterrupted, StreamTimeout, ToolCallError
from forge.providers._stream import aclose_events
from forge.tokens import chars_per_token
from forge.types import FinishReason, ReasoningBlock, Response, StreamEvent, ToolCall, Usage

if TYPE_CHECKING:
    from forge.llm import LLM

__all__ = ["Stream", "StreamProgress", "stream", "stream_to_file", "stream_with_callback"]

T = TypeVar("T")
ChunkCallback = Callable[[str], object]
ProgressCallback = Callable[["StreamProgress"], object]
Opened = tuple[AsyncIterator[StreamEvent], Sequence[StreamEvent], int]
Opener = Callable[[], Awaitable[Opened]]
"""Opens the stream (retries included): the events, those already read from them, the attempts made."""
Pricing = Callable[[Usage], "float | None"]


@dataclass(frozen=True, slots=True)
class StreamProgress:
    """Where a stream stands: characters and estimated tokens so far, elapsed time, rate."""

    chars: int
    chunks: int
    estimated_tokens: int
    elapsed_s: float
    tokens_per_s: float
    time_to_first_token_s: float | None


async def _maybe_await(value: object) -> None:
    if inspect.isawaitable(value):
        await value


class _ToolCallBuilder:
    __slots__ = ("args", "id", "name")

    def __init__(self, id: str, name: str) -> None:
        self.id = id
        self.name = name
        self.args: list[str] = []


class Stream:
    """An async stream of text deltas from one model call, reassembled into a Response at the end.

    Iterate it once: ``async for text in stream`` (text only) or
    ``async for event in stream.events()`` (every normalized event). Use it with
    or without ``async with``; leaving the block, breaking out of the loop,
    :meth:`aclose`, or cancelling the task closes the HTTP response.

    Args:
        buffer_size: join text and yield it once this many characters are buffered.
        flush_interval: never hold buffered text longer than this many seconds.
        first_token_timeout: seconds allowed until the first text arrives.
        idle_timeout: seconds allowed between two chunks.
        timeout: seconds allowed for the whole stream.
        on_chunk: called (sync or async) with each text piece as it is delivered.
        on_progress: called (sync or async) with a :class:`StreamProgress` after each piece.
    """

    def __init__(
        self,
        opener: Opener,
        *,
        provider: str,
        model: str,
        classify: Callable[[BaseException], ForgeError],
        buffer_size: int | None = None,
        flush_interval: float | None = None,
        first_token_timeout: float | None = None,
        idle_timeout: float | None = None,
        timeout: float | None = None,
        on_chunk: ChunkCallback | None = None,
        on_progress: ProgressCallback | None = None,
        keep_text: bool = True,
        clock: Callable[[], float] = time.monotonic,
        on_complete: Callable[[Response], object] | None = None,
        on_error: Callable[[BaseException], object] | None = None,
        price: Pricing | None = None,
    ) -> None:
        for name, value in (
            ("first_token_timeout", first_token_timeout),
            ("idle_timeout", idle_timeout),
            ("timeout", timeout),
            ("flush_interval", flush_interval),
        ):
            if value is not None and not (isinstance(value, (int, float)) and value > 0):
                raise ValueError(f"{name} must be a positive number of seconds or None, got {value!r}.")
        if buffer_size is not None and not (isinstance(buffer_size, int) and buffer_size > 0):
            raise ValueError(
                f"buffer_size must be a positive number of characters or None, got {buffer_size!r}."
            )
        self._opener = opener
        self.provider = provider
        self.model = model
        self._classify = classify
        self.buffer_size = buffer_size
        self.flush_interval = flush_interval
        self.first_token_timeout = first_token_timeout
        self.idle_timeout = idle_timeout
        self.timeout = timeout
        self._timed = timeout is not None or first_token_timeout is not None or idle_timeout is not None
        self._on_chunk = on_chunk
        self._on_progress = on_progress
        self._keep_text = keep_text
        self._clock = clock
        self._on_complete = on_complete
        self._on_error = on_error
        self._price = price
        self._on_close: Callable[[], object] | None = None  # called once when iteration stops, however
        self._started = False
        self._done = False
        self._closing = False
        self._opening: asyncio.Future[Opened] | None = None
        self._active: weakref.ref[AsyncGenerator[object, None]] | None = None
        self._source: AsyncIterator[StreamEvent] | None = None
        # Reassembly state.
        self._parts: list[str] = []
        self._reasoning: list[str] = []
        self._signature: str | None = None
        self._blocks: dict[int, ReasoningBlock] = {}
        self._chars = 0
        self._chunks = 0
        self._delivered = 0
        self._usage: Usage | None = None
        self._usage_chars = 0  # characters received when the provider last reported usage
        self._reported_tokens = 0  # estimated_tokens in the last on_progress call
        self._finish: FinishReason | None = None
        self._response_id: str | None = None
        self._tools: dict[int, _ToolCallBuilder] = {}
        self._tool_calls: dict[int, ToolCall] = {}
        self._t0 = 0.0
        self._last = 0.0
        self._ttft: float | None = None
        self._attempts = 1
        self._response: Response | None = None
        self._in_callback = False
        self.cached = False
        """True when the events are replayed from the response cache (the Response says so too)."""

    # ------------------------------------------------------------------ public surface

    def __aiter__(self) -> AsyncIterator[str]:
        gen: AsyncGenerator[str, None]
        if self.buffer_size is None and self.flush_interval is None:
            gen = self._run(texts=True)  # one generator between the provider's reads and the caller
        else:
            gen = self._text_gen()
        self._claim(gen)
        return gen

    def events(self) -> AsyncIterator[StreamEvent]:
        """Every normalized event (text, reasoning, tool calls, usage, finish), unbuffered."""
        gen: AsyncGenerator[StreamEvent, None] = self._run()
        self._claim(gen)
        return gen

    async def collect(self) -> Response:
        """Consume the whole stream and return the reassembled Response."""
        if not self._started:
            async for _ in self:
                pass
        elif not self._done:
            raise RuntimeError("collect() called while the stream is being iterated elsewhere.")
        return self.response

    @property
    def response(self) -> Response:
        """The reassembled Response; available once the stream has ended."""
        if self._response is None:
            raise RuntimeError(
                "stream.response is available only after the stream has been fully consumed; "
                "iterate it to the end or call `await stream.collect()`."
            )
        return self._response

    @property
    def text(self) -> str:
        """Text received so far (empty when ``keep_text=False``)."""
        return "".join(self._parts)

    @property
    def keeps_text(self) -> bool:
        """Whether the reassembled Response holds the text (False once :meth:`to_file` took over)."""
        return self._keep_text

    @property
    def usage(self) -> Usage | None:
        """The latest usage the provider reported, if any."""
        return self._usage

    async def aclose(self) -> None:
        """Stop the stream and close its HTTP response. Safe to call more than once, from any task.

        Called from a task other than the one iterating, it closes the HTTP response
        (or cancels the request still being opened); the iteration there then ends
        quietly, without a Response.
        """
        self._done = True
        self._closing = True
        opening = self._opening
        if opening is not None and not opening.done():
            opening.cancel()
        source = self._source
        if source is not None:
            # The provider stream owns its HTTP response and closes it from any task
            # (forge.providers._stream); a read pending in the iterating task then ends.
            await aclose_events(source)
        gen = self._active() if self._active is not None else None
        if gen is not None:
            await aclose_events(gen)  # left alone while another task is inside it

    async def __aenter__(self) -> Stream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ iteration

    def _claim(self, gen: AsyncGenerator[object, None]) -> None:
        if self._started:
            raise RuntimeError(
                "A Stream can be iterated only once; start a new stream for another call "
                "(the first iteration's result is in stream.response)."
            )
        self._started = True
        # Only a weak reference: breaking out of `async for` drops the last strong one,
        # so the generator is finalized and the HTTP response closed right away.
        self._active = weakref.ref(gen)

    async def _text_gen(self) -> AsyncGenerator[str, None]:
        """Buffered text: ``_buffered`` joins the texts of the raw events and delivers them."""
        run: AsyncGenerator[StreamEvent, None] = self._run(deliver=False)
        try:
            # Closed before ``run``: its finally stops the read it may have pending on ``run``.
            async with contextlib.aclosing(self._buffered(run)) as buffered:
                async for text in buffered:
                    yield text
        finally:
            await run.aclose()

    async def _buffered(  # complexity: per-chunk loop; a helper per branch costs a call per chunk
        self, run: AsyncGenerator[StreamEvent, None]
    ) -> AsyncGenerator[str, None]:
        clock = self._clock
        limit = self.buffer_size
        interval = self.flush_interval
        buf: list[str] = []
        size = 0
        since = 0.0
        pending: asyncio.Future[StreamEvent] | None = None
        try:
            while True:
                if buf and interval is not None:
                    if pending is None:
                        pending = asyncio.ensure_future(run.__anext__())
                    wait = since + interval - clock()
                    done, _ = await asyncio.wait({pending}, timeout=max(0.0, wait))
                    if not done:
                        text = "".join(buf)
                        buf, size = [], 0
                        await self._deliver(text)
                        yield text
                        continue
                    task, pending = pending, None
                    try:
                        ev = task.result()
                    except StopAsyncIteration:
                        break
                else:
                    try:
                        if pending is not None:
                            task, pending = pending, None
                            ev = await task
                        else:
                            ev = await run.__anext__()
                    except StopAsyncIteration:
                        break
                if ev.kind != "text" or not ev.text:
                    continue
                if not buf:
                    since = clock()
                buf.append(ev.text)
                size += len(ev.text)
                if limit is not None and size >= limit:
                    text = "".join(buf)
                    buf, size = [], 0
                    await self._deliver(text)
                    yield text
            if buf and not self._closing:
                text = "".join(buf)
                await self._deliver(text)
                yield text
        finally:
            if pending is not None:
                if not pending.done():
                    pending.cancel()
                await asyncio.wait({pending})
                if not pending.cancelled():
                    pending.exception()  # retrieved: whatever it was, the stream is being left

    async def _deliver(self, text: str) -> None:
        self._delivered += 1
        if self._on_chunk is not None:
            await _maybe_await(self._on_chunk(text))
        if self._on_progress is not None:
            progress = self.progress()
            self._reported_tokens = progress.estimated_tokens
            await _maybe_await(self._on_progress(progress))

    def progress(self) -> StreamProgress:
        """A snapshot of the stream's progress (estimates, corrected by provider usage once reported).

        ``estimated_tokens`` is the provider's latest output count plus an estimate
        for the text received since; so a placeholder count (Anthropic's
        ``message_start`` says 1) or one reported early (Gemini's first chunk)
        never freezes it, and the final usage makes it exact.
        """
        elapsed = max(self._clock() - self._t0, 0.0) if self._started else 0.0
        usage = self._usage
        if usage is not None and usage.output_tokens:
            tokens = usage.output_tokens + round(
                (self._chars - self._usage_chars) / chars_per_token(self.provider)
            )
        else:
            tokens = round(self._chars / chars_per_token(self.provider))
        return StreamProgress(
            chars=self._chars,
            chunks=self._chunks,
            estimated_tokens=tokens,
            elapsed_s=elapsed,
            tokens_per_s=tokens / elapsed if elapsed > 0 else 0.0,
            time_to_first_token_s=self._ttft,
        )

    async def _wait(self, aw: Awaitable[T]) -> T:
        """Await ``aw`` under whichever deadline applies now (first token, idle, total)."""
        deadline, kind = self._deadline()
        if deadline is None:
            return await aw
        delay = deadline - self._clock()
        try:
            async with asyncio.timeout(max(delay, 0.0)):
                return await aw
        except TimeoutError:
            raise self._timeout_error(kind) from None

    def _deadline(self) -> tuple[float | None, str]:
        deadline: float | None = None
        kind = "total"
        if self.timeout is not None:
            deadline = self._t0 + self.timeout
        if self._ttft is None and self.first_token_timeout is not None:
            candidate = self._t0 + self.first_token_timeout
            if deadline is None or candidate < deadline:
                deadline, kind = candidate, "first_token"
        elif self.idle_timeout is not None:
            candidate = self._last + self.idle_timeout
            if deadline is None or candidate < deadline:
                deadline, kind = candidate, "idle"
        return deadline, kind

    def _timeout_error(self, kind: str) -> StreamTimeout:
        limits = {
            "first_token": ("first_token_timeout", self.first_token_timeout, "no text arrived within"),
            "idle": ("idle_timeout", self.idle_timeout, "no chunk arrived for"),
            "total": ("timeout", self.timeout, "the stream did not finish within"),
        }
        option, value, what = limits[kind]
        return StreamTimeout(
            f"{self.provider}:{self.model} stream timed out: {what} {value:g}s ({option}); "
            f"{self._chars} characters received so far are in .partial_text.",
            timeout_kind=kind,
            limit_s=value,
            partial_text=self.text,
            usage=self._usage,
            provider=self.provider,
            model=self.model,
            chunks=self._chunks,
        )

    def _check_late(self) -> None:
        # Deadlines also hold against the injected clock, so a late chunk times out
        # the same way a missing one does (and unit tests need no wall-clock waits).
        deadline, kind = self._deadline()
        if deadline is not None and self._clock() > deadline:
            raise self._timeout_error(kind)

    async def _open(self) -> Opened | None:
        """Open the stream (retries included, in a task aclose() can cancel); None: closed meanwhile."""
        # Opened in a task of its own, so that aclose() from another task can cancel it.
        opening = self._opening = asyncio.ensure_future(self._opener())
        try:
            return await self._wait(opening)
        except StreamTimeout:
            raise
        except asyncio.CancelledError:
            if self._closing and not _cancelling():
                return None  # aclose() from another task stopped the opening
            raise
        except Exception as exc:  # BaseExceptions (cancellation, a replay miss...) pass through
            raise self._fail(exc) from exc
        finally:
            self._opening = None

    async def _run(  # complexity: the per-chunk loop, kept whole: a call per branch costs per chunk
        self, texts: bool = False, deliver: bool = True
    ) -> AsyncGenerator[Any, None]:
        """Open, read, absorb, deliver and yield: the stream's one generator on the unbuffered path.

        Yields the events (``texts``: only the texts of the text events). ``deliver``
        counts each text and calls the callbacks; off for ``_buffered``, which
        delivers the texts it joins. A provider stream that decodes per network read
        (``next_batch``) is read one batch at a time: one await per read, not per event.
        """
        self._t0 = self._last = self._clock()
        source: AsyncIterator[StreamEvent] | None = None
        quiet = self._on_chunk is None and self._on_progress is None
        absorb = self._absorb
        try:
            opened = await self._open()
            if opened is None:
                return
            source, head, self._attempts = opened
            self._source = source
            if self._closing:
                return
            batch: Iterable[StreamEvent] = head
            if head:
                self._check_late()
            nxt = source.__anext__
            # Without timeouts the loop skips deadline bookkeeping: this is the per-chunk hot path.
            timed = self._timed
            next_batch = None if timed else getattr(source, "next_batch", None)
            keep = self._parts.append if self._keep_text else None
            steady = False  # a text event after the first, untimed: absorbed inline, below
            while True:
                for ev in batch:
                    if ev.kind != "text":
                        absorb(ev)
                        if not texts:
                            yield ev
                        continue
                    text = ev.text
                    if steady:  # what _absorb does for such an event, without the call
                        if keep is not None:
                            keep(text)
                        self._chars += len(text)
                        self._chunks += 1
                    else:
                        absorb(ev)
                        steady = not timed and self._ttft is not None
                    if text:
                        if deliver and not quiet:
                            await self._deliver_callbacks(text)
                        yield text if texts else ev
                    elif not texts:
                        yield ev
                try:
                    if next_batch is not None:
                        batch = await next_batch()
                    else:
                        batch = (await (self._wait(nxt()) if timed else nxt()),)
                except StopAsyncIteration:
                    break
                except StreamTimeout:
                    raise
                except Exception as exc:
                    if self._closing:
                        return  # aclose() from another task closed the response under this read
                    self._raise_broken(exc)
                if timed:
                    self._check_late()
            await self._finished()
        except BaseException as exc:
            if not self._in_callback:  # the caller's own callback failing is not the stream failing
                await _maybe_await(self._report_error(exc))  # a fallback chain reports breaks to a breaker
            raise
        finally:
            self._done = True
            self._source = None
            if source is not None:
                await aclose_events(source)
            if self._on_close is not None:
                self._on_close()

    async def _deliver_callbacks(self, text: str) -> None:
        self._in_callback = True
        try:
            await self._deliver(text)
        finally:
            self._in_callback = False

    def _raise_broken(self, exc: Exception) -> NoReturn:
        """Raise for a read that failed: the provider error, or StreamInterrupted once output arrived."""
        error = self._fail(exc)
        # Bad tool-call arguments are the reply's fault, not a broken stream.
        if (self._chars or self._chunks) and not isinstance(error, ToolCallError):
            raise StreamInterrupted(
                f"{self.provider}:{self.model} stream broke after {self._chunks} chunks "
                f"({self._chars} characters, kept in .partial_text): {error}",
                error=error,
                partial_text=self.text,
                usage=self._usage,
                provider=self.provider,
                model=self.model,
                chunks=self._chunks,
            ) from error
        raise error from exc

    def _report_error(self, exc: BaseException) -> object:
        if self._on_error is not None and not isinstance(exc, GeneratorExit):
            return self._on_error(exc)
        return None

    async def _finished(self) -> None:
        """After the last event: the Response, the final progress report, the completion callback."""
        self._complete()
        if self._on_progress is not None and self._delivered:
            progress = self.progress()
            if progress.estimated_tokens != self._reported_tokens:  # the final usage corrects it
                await _maybe_await(self._on_progress(progress))
        if self._on_complete is not None and self._response is not None:
            await _maybe_await(self._on_complete(self._response))

    def _fail(self, exc: BaseException) -> ForgeError:
        if isinstance(exc, ForgeError):
            return exc
        return self._classify(exc)

    def _absorb(self, ev: StreamEvent) -> None:  # complexity: per-event hot path, one if-chain on kind
        kind = ev.kind
        if self._timed:
            self._last = self._clock()
        if kind == "text":
            if self._ttft is None:
                self._ttft = self._clock() - self._t0
            if self._keep_text:
                self._parts.append(ev.text)
            self._chars += len(ev.text)
            self._chunks += 1
        elif kind == "usage":
            self._usage = ev.usage
            self._usage_chars = self._chars
        elif kind == "finish":
            self._finish = ev.finish_reason
            self._response_id = ev.text or self._response_id
        elif kind == "reasoning":
            if ev.text:
                self._reasoning.append(ev.text)
                self._chunks += 1
            if ev.signature is not None:
                self._signature = ev.signature
        elif kind == "reasoning_done" and ev.reasoning is not None:
            self._blocks[ev.index] = ev.reasoning
        elif kind == "tool_call_start":
            call = ev.tool_call
            self._tools[ev.index] = _ToolCallBuilder(call.id if call else "", call.name if call else "")
            self._chunks += 1
        elif kind == "tool_call_delta":
            builder = self._tools.get(ev.index)
            if builder is not None:
                builder.args.append(ev.text)
            self._chunks += 1
        elif kind == "tool_call_done" and ev.tool_call is not None:
            self._tool_calls[ev.index] = ev.tool_call

    def _complete(self) -> None:
        for index, builder in self._tools.items():
            if index not in self._tool_calls:
                self._tool_calls[index] = ToolCall.from_json(
                    builder.id, builder.name, "".join(builder.args), provider=self.provider, model=self.model
                )
        now = self._clock()
        usage = self._usage or Usage()
        if self.cached:
            cost: float | None = 0.0
        else:
            cost = self._price(usage) if self._price is not None else None
        self._response = Response(
            text=self.text,
            provider=self.provider,
            model=self.model,
            finish_reason=self._finish,
            usage=usage,
            tool_calls=tuple(self._tool_calls[i] for i in sorted(self._tool_calls)),
            reasoning="".join(self._reasoning) or None,
            reasoning_signature=self._signature,
            reasoning_blocks=tuple(self._blocks[i] for i in sorted(self._blocks)),
            id=self._response_id,
            attempts=self._attempts,
            latency_s=now - self._t0,
            time_to_first_token_s=self._ttft,
            chunks=self._chunks,
            cached=self.cached,
            cost_usd=cost,
        )

    # ------------------------------------------------------------------ to file

    async def to_file(self, path: str | os.PathLike[str], *, encoding: str = "utf-8") -> Response:
        """Write the stream's text to ``path`` at constant memory and return the Response.

        The text goes to a temporary file beside ``path`` and is renamed into place
        only when the stream completes, so a reader never sees a half-written file.
        If the stream breaks, what arrived is kept in ``<path>.partial`` and the
        error's ``partial_path`` says so. ``response.text`` is empty: the text is in
        the file.
        """
        if self._started:
            raise RuntimeError("to_file() must be called before the stream is iterated.")
        self._keep_text = False
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        tmp = Path(tmp_name)
        ok = False
        try:
            with os.fdopen(fd, "w", encoding=encoding, newline="") as fh:
                try:
                    async for text in self:
                        fh.write(text)
                finally:
                    # fsync can take long on a busy disk: in a worker thread, off the event loop.
                    await asyncio.to_thread(_flush_to_disk, fh.flush, fh.fileno())
            os.replace(tmp, target)
            ok = True
            return self.response
        except BaseException as exc:
            if self._chars:
                partial = target.with_name(target.name + ".partial")
                os.replace(tmp, partial)
                if isinstance(exc, ForgeError):
                    exc.partial_path = str(partial)  # type: ignore[attr-defined]
                    exc.args = (f"{exc.args[0] if exc.args else exc} Partial output kept in {partial}.",)
            raise
        finally:
            if not ok:
                tmp.unlink(missing_ok=True)  # noqa: ASYNC240 - one unlink, no await point worth adding


def _cancelling() -> bool:
    """Whether the current task itself is being cancelled (not just something it awaited)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _flush_to_disk(flush: Callable[[], object], fd: int) -> None:
    flush()
    os.fsync(fd)


# ---------------------------------------------------------------------- module-level forms


def stream(llm: LLM, prompt: object, **params: object) -> Stream:
    """``llm.stream(prompt, **params)``: a :class:`Stream` of text deltas."""
    return llm.stream(prompt, **params)  # type: ignore[arg-type]


async def stream_to_file(
    llm: LLM, prompt: object, path: str | os.PathLike[str], **params: object
) -> Response:
    """Stream ``prompt`` to ``path`` at constant memory; see :meth:`Stream.to_file`."""
    return await llm.stream(prompt, **params).to_file(path)  # type: ignore[arg-type]


async def stream_with_callback(
    llm: LLM, prompt: object, callback: Callable[[str], object], **params: object
) -> Response:
    """Stream ``prompt``, calling ``callback(text)`` (sync or async) per piece; return the Response.

    An exception raised by the callback stops the stream, closes the connection
    and propagates to the caller.
    """
    s = llm.stream(prompt, on_chunk=callback, **params)  # type: ignore[arg-type]
    async with s:
        return await s.collect()

