"""The owner of a provider stream's HTTP response: closing it works from any task.

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
from typing import Protocol

from forge.types import StreamEvent

__all__ = ["ResponseOwner", "ResponseStream", "aclose_events"]


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
    """An adapter's event generator plus the HTTP response it reads, which :meth:`aclose` closes."""

    __slots__ = ("_gen", "_owner")

    def __init__(self, events: Callable[[ResponseOwner], AsyncGenerator[StreamEvent, None]]) -> None:
        self._owner = ResponseOwner()
        self._gen = events(self._owner)

    def __aiter__(self) -> ResponseStream:
        return self

    def __anext__(self) -> Awaitable[StreamEvent]:
        return self._gen.__anext__()

    async def aclose(self) -> None:
        """Close the HTTP response, then the generator unless another task is inside it.

        Safe from any task and more than once. When another task is iterating (or
        already closing) the generator, the closed response ends that task's read
        and it finishes the generator itself.
        """
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
