"""forge/providers/_stream.py: an adapter's events come out whole and in order, whatever the reads."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from forge._wire import SSEDataDecoder
from forge.errors import ForgeError, ProviderError
from forge.providers._stream import ResponseStream, decoded_events
from forge.types import StreamEvent, stream_event

BODY = b"".join(b"data: %d\n\n" % i for i in range(5))


class _Response:
    def __init__(self, reads: list[bytes]) -> None:
        self.reads = reads
        self.closed = False

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        for read in self.reads:
            yield read

    async def aclose(self) -> None:
        self.closed = True


class _Reader:
    """Two events per payload, so one read's events are more than one."""

    def __init__(self, fail_at: str | None = None) -> None:
        self.fail_at = fail_at

    async def start(self, response: Any) -> SSEDataDecoder:
        return SSEDataDecoder()

    def on_payload(self, data: str) -> list[StreamEvent]:
        if data == self.fail_at:
            raise ValueError(f"bad payload {data}")
        return [stream_event("text", data, None), stream_event("reasoning", data, None)]

    def close(self) -> list[StreamEvent]:
        return [StreamEvent("finish", finish_reason="stop")]


def _stream(reads: list[bytes], reader: _Reader) -> ResponseStream:
    @asynccontextmanager
    async def opened() -> AsyncIterator[_Response]:
        yield _Response(reads)

    def classify(exc: BaseException) -> ForgeError:
        return ProviderError(f"classified: {exc}", provider="test")

    return ResponseStream(lambda owner: decoded_events(owner, opened, reader, classify))


READS = {
    "one read": [BODY],
    "one event per read": [b"data: %d\n\n" % i for i in range(5)],
    "one byte per read": [BODY[i : i + 1] for i in range(len(BODY))],
}
EXPECTED = [(k, str(i)) for i in range(5) for k in ("text", "reasoning")] + [("finish", "")]


@pytest.mark.parametrize("how", list(READS))
async def test_anext_gives_every_event_once_in_order(how: str) -> None:
    events: list[tuple[str, str]] = []
    async for ev in _stream(READS[how], _Reader()):
        events.append((ev.kind, ev.text))
        if len(events) > len(EXPECTED):
            break  # an event given twice: fail, never loop
    assert events == EXPECTED


@pytest.mark.parametrize("how", list(READS))
async def test_next_batch_gives_every_event_once_in_order(how: str) -> None:
    stream = _stream(READS[how], _Reader())
    events: list[tuple[str, str]] = []
    while True:
        try:
            batch = await stream.next_batch()
        except StopAsyncIteration:
            break
        events += [(ev.kind, ev.text) for ev in batch]
    assert events == EXPECTED


@pytest.mark.parametrize("how", list(READS))
async def test_a_payload_that_fails_ends_the_stream_classified_after_the_events_before_it(how: str) -> None:
    seen: list[str] = []
    with pytest.raises(ProviderError, match="classified: bad payload 2"):
        async for ev in _stream(READS[how], _Reader(fail_at="2")):
            seen.append(ev.text)
    assert seen == ["0", "0", "1", "1"]
