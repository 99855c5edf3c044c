"""A provider stream's HTTP response and read loop: closing works from any task, errors classified once.

An adapter's events come from an async generator that reads one HTTP response.
Closing that generator from a task other than the one iterating it is refused
("aclose(): asynchronous generator is already running"), so a service that
stops a producer from a request handler would close nothing. openai-python's
``AsyncStream.close()`` shows the way: close the response itself. The pending
read in the iterating task then fails, and that task finishes the generator.

    def stream(self, request: Request) -> AsyncIterator[StreamEvent]:
        return ResponseStream(lambda owner: self._events(request, owner))

    async def _events(self, request, owner):
        response = await http.send(..., stream=True)
        owner.response = response          # from here on, aclose() closes it
        ...
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from typing import Any, ClassVar, Protocol, TypeVar

from forge.errors import ForgeError, ProviderConnectionError
from forge.types import StreamEvent

__all__ = [
    "EventBatches",
    "EventReader",
    "HTTPResponse",
    "ResponseOwner",
    "ResponseStream",
    "StreamReader",
    "WireDecoder",
    "aclose_events",
    "classified",
    "classifying",
    "client_stream",
    "decoded_events",
    "http_response_of",
    "sent_stream",
    "stream_cut",
]

T = TypeVar("T")


class _ClosableResponse(Protocol):
    async def aclose(self) -> None: ...


class ResponseOwner:
    """Where an adapter's generator puts its HTTP response, for :class:`ResponseStream` to close.

    A separate object, so the generator does not refer back to the stream: no
    reference cycle, and a stream dropped after ``break`` is finalized at once.
    """

    __slots__ = ("response",)

    def __init__(self) -> None:
        self.response: _ClosableResponse | None = None


EventBatches = AsyncGenerator[Iterator[StreamEvent], None]
"""What an adapter's stream generator yields: per network read, an iterator over its events."""

_NOTHING: Iterator[StreamEvent] = iter(())


class ResponseStream(AsyncIterator[StreamEvent]):
    """An adapter's event generator plus the HTTP response it reads, which :meth:`aclose` closes.

    The generator yields, per network read, an iterator over that read's events
    (see :func:`decoded_events`); this iterator hands them out one at a time, and
    :meth:`next_batch` a read's iterator whole (the Stream's per-chunk path).
    """

    __slots__ = ("_batch", "_gen", "_owner")

    def __init__(
        self, events: Callable[[ResponseOwner], AsyncGenerator[Iterator[StreamEvent], None]]
    ) -> None:
        self._owner = ResponseOwner()
        self._gen = events(self._owner)
        self._batch = _NOTHING

    def __aiter__(self) -> ResponseStream:
        return self

    async def __anext__(self) -> StreamEvent:
        for event in self._batch:
            return event
        while True:
            self._batch = batch = await self._gen.__anext__()
            for event in batch:
                return event

    async def next_batch(self) -> Iterator[StreamEvent]:
        """The events of the next network read (or what is left of the current one); may be empty.

        Iterate it to its end before asking for the next: a payload that fails to
        decode ends it, and the next call raises the error.
        """
        batch = self._batch
        if batch is not _NOTHING:
            self._batch = _NOTHING
            return batch
        return await self._gen.__anext__()

    async def aclose(self) -> None:
        """Close the HTTP response, then the generator unless another task is inside it.

        Safe from any task and more than once. When another task is iterating (or
        already closing) the generator, the closed response ends that task's read
        and it finishes the generator itself.
        """
        self._batch = _NOTHING
        response = self._owner.response
        if response is not None:
            await response.aclose()
        await aclose_events(self._gen)


async def aclose_events(events: AsyncIterator[object]) -> None:
    """Close an event iterator, leaving alone a generator another task is running or closing."""
    if getattr(events, "ag_running", False):
        return
    aclose = getattr(events, "aclose", None)
    if aclose is not None:
        await aclose()


# ------------------------------------------------------------------ the read loop, written once


class HTTPResponse(Protocol):
    """What the read loop needs of a streamed httpx2 / httpx response."""

    def aiter_bytes(self) -> AsyncIterator[bytes]: ...

    async def aclose(self) -> None: ...


class WireDecoder(Protocol):
    """An incremental decoder of :mod:`forge._wire`: chunks in, payloads out."""

    def feed(self, chunk: bytes) -> list[Any]: ...

    def flush(self) -> list[Any]: ...


class EventReader(Protocol):
    """An adapter's stream state: checks the reply, turns payloads into events, ends the stream."""

    async def start(self, response: Any) -> WireDecoder:
        """Check the streamed reply before decoding (raise when it is not the stream asked
        for); return the decoder for its body."""
        ...

    def on_payload(self, payload: Any) -> list[StreamEvent]:
        """The events of one decoded payload (an SSE event, a JSON object)."""
        ...

    def close(self) -> list[StreamEvent]:
        """End of body: the final events, or an error when the stream was cut short."""
        ...


def stream_cut(
    stream: str, before: str, *, provider: str, model: str, request_id: str | None = None
) -> ProviderConnectionError:
    """The error for a body that ended before the event that ends the stream (``before``): the
    connection was cut. ``stream`` names the stream in the message (``"openai Responses"``)."""
    return ProviderConnectionError(
        f"{stream} stream ended before {before}; the connection was cut",
        provider=provider,
        model=model,
        request_id=request_id,
    )


class StreamReader:
    """What an official client's SSE reader keeps besides its own state (an :class:`EventReader`
    base: OpenAI Chat Completions and Responses, Anthropic Messages).

    The model and the public base URL, for the errors and the reply check in ``start``; the
    reply's id, for the ``finish`` event; the request id, where ``start`` finds one in the headers.
    """

    __slots__ = ("_base_url", "_id", "_model", "request_id")

    _PROVIDER: ClassVar[str]
    _STREAM: ClassVar[str]
    """How a cut-short error names the stream: the provider, or ``"openai Responses"``."""

    def __init__(self, model: str, base_url: str = "") -> None:
        self._model = model
        self._base_url = base_url
        self._id = ""
        self.request_id: str | None = None

    def _cut(self, before: str) -> ProviderConnectionError:
        """The error for a body that ended before ``before``, the event that ends this stream."""
        return stream_cut(self._STREAM, before, provider=self._PROVIDER, model=self._model,
                          request_id=self.request_id)


class _VendorStreamed(Protocol):
    """A vendor client's ``with_streaming_response`` result: it holds the HTTP response."""

    @property
    def http_response(self) -> Any: ...


@asynccontextmanager
async def http_response_of(opened: AbstractAsyncContextManager[_VendorStreamed]) -> AsyncIterator[Any]:
    """The HTTP response inside a vendor client's streamed response (sent and closed by the client)."""
    async with opened as vendor:
        yield vendor.http_response


async def decoded_events(
    owner: ResponseOwner,
    open_response: Callable[[], AbstractAsyncContextManager[HTTPResponse]],
    reader: EventReader,
    classify: Callable[[BaseException], ForgeError],
) -> AsyncGenerator[Iterator[StreamEvent], None]:
    """Every adapter's stream: open the response, check it, decode its body, classify what fails.

    Yields, per network read, an iterator over that read's events (for
    :class:`ResponseStream`): one generator step per read, not per event. The
    iterator turns each payload into events as it is iterated, so that only one
    payload's objects are alive at a time (a read's worth of decoded JSON held at
    once made the garbage collector run far more often). A payload that fails
    ends the iterator; the error is raised here on the next step, classified as
    before. ``open_response()`` (called on the first ``__anext__``) sends the
    request; leaving it closes the response. An exception that is not forge's
    yet is classified here, once (``classify`` names the model and the base URL);
    forge errors pass as they are.
    """
    failed: list[Exception] = []
    try:
        async with open_response() as response:
            owner.response = response
            decoder = await reader.start(response)
            on_payload = reader.on_payload
            chunks = response.aiter_bytes()
            try:
                async for chunk in chunks:
                    payloads = decoder.feed(chunk)
                    if len(payloads) == 1:  # one event per read: its events as they are
                        yield iter(on_payload(payloads[0]))
                    elif payloads:
                        yield _events_of(payloads, on_payload, failed)
                        if failed:
                            raise failed[0]
                payloads = decoder.flush()
                if payloads:
                    yield _events_of(payloads, on_payload, failed)
                    if failed:
                        raise failed[0]
            finally:
                await aclose_events(chunks)
        yield iter(reader.close())
    except ForgeError:
        raise
    except Exception as exc:
        raise classify(exc) from exc


def _events_of(
    payloads: list[Any], on_payload: Callable[[Any], list[StreamEvent]], failed: list[Exception]
) -> Iterator[StreamEvent]:
    """The events of one read's payloads, decoded as they are iterated; a failure is put in ``failed``."""
    try:
        for payload in payloads:
            yield from on_payload(payload)
    except Exception as exc:
        failed.append(exc)


@contextmanager
def classifying(classify: Callable[[Exception], ForgeError]) -> Iterator[None]:
    """Classify, once, an exception raised in the block that is not forge's yet (batch calls)."""
    try:
        yield
    except ForgeError:
        raise
    except Exception as exc:
        raise classify(exc) from exc


def client_stream(
    open_vendor: Callable[[], AbstractAsyncContextManager[_VendorStreamed]],
    reader: EventReader,
    classify: Callable[[BaseException], ForgeError],
) -> ResponseStream:
    """The stream of a request an official client sends (``with_streaming_response``, OpenAI and
    Anthropic): the client sends it and raises for a non-2xx status; forge reads the body."""
    return ResponseStream(
        lambda owner: decoded_events(owner, lambda: http_response_of(open_vendor()), reader, classify)
    )


def sent_stream(
    send: Callable[[], Awaitable[Any]],
    reader: EventReader,
    classify: Callable[[BaseException], ForgeError],
) -> ResponseStream:
    """The stream of a request forge sends itself on its pooled client (Gemini, Ollama).

    ``send()`` (called on the first ``__anext__``) sends it with ``stream=True``; the
    response is closed when the stream ends, however it ends.
    """

    @asynccontextmanager
    async def opened() -> AsyncIterator[Any]:
        response = await send()
        try:
            yield response
        finally:
            await response.aclose()

    return ResponseStream(lambda owner: decoded_events(owner, opened, reader, classify))


async def classified(call: Awaitable[T], classify: Callable[[BaseException], ForgeError]) -> T:
    """Await a non-streamed call; an exception that is not forge's yet is classified, once."""
    try:
        return await call
    except ForgeError:
        raise
    except Exception as exc:
        raise classify(exc) from exc
