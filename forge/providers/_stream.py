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

from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Protocol, TypeVar

from forge.errors import ForgeError
from forge.types import StreamEvent

__all__ = [
    "EventReader",
    "HTTPResponse",
    "ResponseOwner",
    "ResponseStream",
    "WireDecoder",
    "aclose_events",
    "classified",
    "decoded_events",
    "http_response_of",
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


class ResponseStream(AsyncIterator[StreamEvent]):
    """An adapter's event generator plus the HTTP response it reads, which :meth:`aclose` closes.

    The generator yields the events of one network read together (a batch, see
    :func:`decoded_events`); this iterator hands them out one at a time, and
    :meth:`next_batch` the rest of a read at once (the Stream's per-chunk path).
    """

    __slots__ = ("_batch", "_gen", "_i", "_owner")

    def __init__(self, events: Callable[[ResponseOwner], AsyncGenerator[list[StreamEvent], None]]) -> None:
        self._owner = ResponseOwner()
        self._gen = events(self._owner)
        self._batch: list[StreamEvent] = []
        self._i = 0

    def __aiter__(self) -> ResponseStream:
        return self

    async def __anext__(self) -> StreamEvent:
        batch, i = self._batch, self._i
        while i >= len(batch):
            batch = self._batch = await self._gen.__anext__()
            i = 0
        self._i = i + 1
        return batch[i]

    async def next_batch(self) -> list[StreamEvent]:
        """The events of the next network read (or what is left of the current one); never empty."""
        batch, i = self._batch, self._i
        if i < len(batch):
            self._batch, self._i = [], 0
            return batch[i:] if i else batch
        return await self._gen.__anext__()

    async def aclose(self) -> None:
        """Close the HTTP response, then the generator unless another task is inside it.

        Safe from any task and more than once. When another task is iterating (or
        already closing) the generator, the closed response ends that task's read
        and it finishes the generator itself.
        """
        self._batch, self._i = [], 0
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


class _VendorStreamed(Protocol):
    """A vendor client's ``with_streaming_response`` result: it holds the HTTP response."""

    @property
    def http_response(self) -> Any: ...


@asynccontextmanager
async def http_response_of(opened: AbstractAsyncContextManager[_VendorStreamed]) -> AsyncIterator[Any]:
    """The HTTP response inside a vendor client's streamed response (sent and closed by the client)."""
    async with opened as vendor:
        yield vendor.http_response


async def decoded_events(  # complexity: the per-read loop, kept whole
    owner: ResponseOwner,
    open_response: Callable[[], AbstractAsyncContextManager[HTTPResponse]],
    reader: EventReader,
    classify: Callable[[BaseException], ForgeError],
) -> AsyncGenerator[list[StreamEvent], None]:
    """Every adapter's stream: open the response, check it, decode its body, classify what fails.

    Yields the events of each network read as one non-empty list (for
    :class:`ResponseStream`): one generator step per read, not per event. When a
    payload fails to decode, the events of the payloads before it in the same
    read are yielded first, then the error is raised, as if one at a time.
    ``open_response()`` (called on the first ``__anext__``) sends the request;
    leaving it closes the response. An exception that is not forge's yet is
    classified here, once (``classify`` names the model and the base URL); forge
    errors pass as they are.
    """
    try:
        async with open_response() as response:
            owner.response = response
            decoder = await reader.start(response)
            on_payload = reader.on_payload
            chunks = response.aiter_bytes()
            events: list[StreamEvent] = []
            try:
                async for chunk in chunks:
                    for payload in decoder.feed(chunk):
                        events += on_payload(payload)
                    if events:
                        yield events
                        events = []  # a new list: the one yielded is the caller's now
                for payload in decoder.flush():
                    events += on_payload(payload)
            except Exception:
                if events:
                    yield events  # what decoded before the failure, as one event at a time would
                raise
            finally:
                await aclose_events(chunks)
            if events:
                yield events
        events = reader.close()
        if events:
            yield events
    except ForgeError:
        raise
    except Exception as exc:
        raise classify(exc) from exc


async def classified(call: Awaitable[T], classify: Callable[[BaseException], ForgeError]) -> T:
    """Await a non-streamed call; an exception that is not forge's yet is classified, once."""
    try:
        return await call
    except ForgeError:
        raise
    except Exception as exc:
        raise classify(exc) from exc
