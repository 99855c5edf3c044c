"""Stream behaviour on a scripted provider with a fake clock: no sockets, no wall-clock waits."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from forge.errors import (
    ProviderConnectionError,
    RateLimitError,
    StreamInterrupted,
    StreamTimeout,
)
from forge.llm import LLM
from forge.streaming import StreamProgress
from forge.types import StreamEvent, ToolCall, Usage
from tests.conftest import FakeClock, FakeProvider, Step, text_steps


async def test_text_deltas_reassemble_into_response(fake: FakeProvider, make_llm: Callable[..., LLM]) -> None:
    fake.streams.append(text_steps("Hel", "lo", " world", usage=Usage(5, 3)))
    stream = make_llm().stream("hi")
    pieces = [t async for t in stream]
    assert pieces == ["Hel", "lo", " world"]
    assert stream.response.text == "".join(pieces)
    assert stream.response.usage == Usage(5, 3)
    assert stream.response.finish_reason == "stop"
    assert stream.response.chunks == 3
    assert fake.closed_streams == 1


async def test_reassembled_text_is_exactly_what_arrived(fake: FakeProvider, make_llm: Callable[..., LLM]) -> None:
    # Line ends, a lone CR, NUL and text beyond Latin-1 pass into the Response untranslated.
    pieces = ["a\r\n", "b\rc", "\n\x00", "é漢😀", "\r"]
    fake.streams.append(text_steps(*pieces))
    stream = make_llm().stream("hi")
    seen = []
    async for text in stream:
        seen.append(text)
        assert stream.text == "".join(seen)  # the text so far, at every step
    assert stream.response.text == "".join(pieces)


async def test_collect_returns_response(fake: FakeProvider, make_llm: Callable[..., LLM]) -> None:
    fake.streams.append(text_steps("a", "b"))
    response = await make_llm().stream("hi").collect()
    assert response.text == "ab"


async def test_response_before_end_says_how_to_get_it(fake: FakeProvider, make_llm: Callable[..., LLM]) -> None:
    stream = make_llm().stream("hi")
    with pytest.raises(RuntimeError, match="collect"):
        _ = stream.response


async def test_second_iteration_is_refused(fake: FakeProvider, make_llm: Callable[..., LLM]) -> None:
    fake.streams.append(text_steps("a"))
    stream = make_llm().stream("hi")
    await stream.collect()
    with pytest.raises(RuntimeError, match="only once"):
        stream.__aiter__()


async def test_events_expose_usage_and_finish(fake: FakeProvider, make_llm: Callable[..., LLM]) -> None:
    fake.streams.append(text_steps("x", usage=Usage(1, 1)))
    kinds = [e.kind async for e in make_llm().stream("hi").events()]
    assert kinds == ["text", "usage", "finish"]


async def test_buffer_size_joins_small_deltas(fake: FakeProvider, make_llm: Callable[..., LLM]) -> None:
    fake.streams.append(text_steps("ab", "cd", "ef", "g"))
    pieces = [t async for t in make_llm().stream("hi", buffer_size=4)]
    assert pieces == ["abcd", "efg"]


async def test_flush_interval_releases_held_text_without_new_chunks(
    fake: FakeProvider, make_llm: Callable[..., LLM]
) -> None:
    gate = asyncio.Event()

    async def slow_tail() -> None:
        await gate.wait()

    class Gated(FakeProvider):
        async def stream(self, request):  # type: ignore[no-untyped-def]
            yield StreamEvent("text", "early")
            await slow_tail()
            yield StreamEvent("text", "late")

    gated = Gated()
    llm = LLM(gated, "m")
    got: list[str] = []
    stream = llm.stream("hi", buffer_size=1000, flush_interval=0.01)
    async for piece in stream:
        got.append(piece)
        if piece == "early":
            gate.set()
    assert got == ["early", "late"]


async def test_on_chunk_and_on_progress_sync_and_async(fake: FakeProvider, make_llm: Callable[..., LLM]) -> None:
    fake.streams.append(text_steps("abcd", "efgh"))
    chunks: list[str] = []
    progress: list[StreamProgress] = []

    async def on_progress(p: StreamProgress) -> None:
        progress.append(p)

    await make_llm().stream("hi", on_chunk=chunks.append, on_progress=on_progress).collect()
    assert chunks == ["abcd", "efgh"]
    assert [p.chars for p in progress] == [4, 8]
    assert progress[-1].estimated_tokens == 2


async def test_raising_callback_stops_stream_and_closes_source(
    fake: FakeProvider, make_llm: Callable[..., LLM]
) -> None:
    fake.streams.append(text_steps("a", "b", "c"))

    def boom(text: str) -> None:
        raise ValueError("callback failed")

    with pytest.raises(ValueError, match="callback failed"):
        await make_llm().stream("hi", on_chunk=boom).collect()
    assert fake.closed_streams == 1


async def test_break_closes_provider_stream(fake: FakeProvider, make_llm: Callable[..., LLM]) -> None:
    fake.streams.append(text_steps("a", "b", "c"))
    stream = make_llm().stream("hi")
    async for _ in stream:
        break
    await asyncio.sleep(0)  # the finalizer runs on the next loop turn
    await asyncio.sleep(0)
    assert fake.closed_streams == 1


async def test_async_with_closes_on_exit(fake: FakeProvider, make_llm: Callable[..., LLM]) -> None:
    fake.streams.append(text_steps("a", "b", "c"))
    async with make_llm().stream("hi") as stream:
        async for _ in stream:
            break
    assert fake.closed_streams == 1


async def test_error_after_first_chunk_raises_interrupted_with_partial_text(
    fake: FakeProvider, make_llm: Callable[..., LLM]
) -> None:
    fake.streams.append(
        [Step(StreamEvent("text", "par")), Step(StreamEvent("text", "tial")), Step(error=OSError("reset"))]
    )
    with pytest.raises(StreamInterrupted) as info:
        await make_llm().stream("hi").collect()
    assert info.value.partial_text == "partial"
    assert info.value.chunks == 2
    assert fake.closed_streams == 1


async def test_error_before_first_chunk_is_retried(fake: FakeProvider, make_llm: Callable[..., LLM]) -> None:
    fake.streams.append([Step(error=RateLimitError("slow down", provider="fake", retry_after=2.0))])
    fake.streams.append(text_steps("ok"))
    stream = make_llm().stream("hi")
    assert await stream.collect() == stream.response
    assert stream.response.text == "ok"
    assert stream.response.attempts == 2


async def test_non_retryable_error_before_first_chunk_surfaces_as_is(
    fake: FakeProvider, make_llm: Callable[..., LLM]
) -> None:
    fake.streams.append([Step(error=ProviderConnectionError("down", provider="fake"))])
    with pytest.raises(ProviderConnectionError):
        await make_llm(retry=__import__("forge").RetryPolicy(max_attempts=1)).stream("hi").collect()


async def test_total_timeout_on_late_chunk(fake: FakeProvider, clock: FakeClock, make_llm: Callable[..., LLM]) -> None:
    fake.streams.append([Step(StreamEvent("text", "a")), Step(StreamEvent("text", "b"), advance=11.0)])
    with pytest.raises(StreamTimeout) as info:
        await make_llm().stream("hi", timeout=10.0).collect()
    assert info.value.timeout_kind == "total"
    assert info.value.partial_text == "a"


async def test_idle_timeout_on_gap(fake: FakeProvider, make_llm: Callable[..., LLM]) -> None:
    fake.streams.append([Step(StreamEvent("text", "a")), Step(StreamEvent("text", "b"), advance=3.0)])
    with pytest.raises(StreamTimeout) as info:
        await make_llm().stream("hi", idle_timeout=2.0).collect()
    assert info.value.timeout_kind == "idle"


async def test_first_token_timeout(fake: FakeProvider, make_llm: Callable[..., LLM]) -> None:
    fake.streams.append([Step(StreamEvent("text", "a"), advance=5.0)])
    with pytest.raises(StreamTimeout) as info:
        await make_llm().stream("hi", first_token_timeout=1.0).collect()
    assert info.value.timeout_kind == "first_token"


async def test_timeout_when_nothing_arrives_uses_event_loop_timer(make_llm: Callable[..., LLM]) -> None:
    class Hanging(FakeProvider):
        async def stream(self, request):  # type: ignore[no-untyped-def]
            yield StreamEvent("text", "a")
            await asyncio.Event().wait()
            yield StreamEvent("text", "never")

    hanging = Hanging()
    with pytest.raises(StreamTimeout) as info:
        await LLM(hanging, "m").stream("hi", idle_timeout=0.02).collect()
    assert info.value.partial_text == "a"


async def test_cancelling_consumer_closes_source(fake: FakeProvider) -> None:
    closed = asyncio.Event()

    class Endless(FakeProvider):
        async def stream(self, request):  # type: ignore[no-untyped-def]
            try:
                while True:
                    yield StreamEvent("text", "x")
                    await asyncio.sleep(0)
            finally:
                closed.set()

    llm = LLM(Endless(), "m")

    async def consume() -> None:
        async for _ in llm.stream("hi"):
            pass

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert closed.is_set()


async def test_tool_calls_reassembled_from_deltas(fake: FakeProvider, make_llm: Callable[..., LLM]) -> None:
    fake.streams.append(
        [
            Step(StreamEvent("tool_call_start", index=0, tool_call=ToolCall("c1", "get_weather"))),
            Step(StreamEvent("tool_call_delta", '{"city": ', index=0)),
            Step(StreamEvent("tool_call_delta", '"Paris"}', index=0)),
            Step(StreamEvent("finish", finish_reason="tool_calls")),
        ]
    )
    stream = make_llm().stream("hi")
    assert [t async for t in stream] == []
    call = stream.response.tool_calls[0]
    assert (call.id, call.name, dict(call.arguments)) == ("c1", "get_weather", {"city": "Paris"})
    assert stream.response.finish_reason == "tool_calls"


async def test_to_file_writes_atomically(fake: FakeProvider, make_llm: Callable[..., LLM], tmp_path) -> None:  # type: ignore[no-untyped-def]
    fake.streams.append(text_steps("one ", "two"))
    target = tmp_path / "out.txt"
    response = await make_llm().stream("hi").to_file(target)
    assert target.read_text() == "one two"
    assert response.text == ""
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


async def test_to_file_keeps_partial_on_interruption(fake: FakeProvider, make_llm: Callable[..., LLM], tmp_path) -> None:  # type: ignore[no-untyped-def]
    fake.streams.append([Step(StreamEvent("text", "half")), Step(error=OSError("dropped"))])
    target = tmp_path / "out.txt"
    with pytest.raises(StreamInterrupted) as info:
        await make_llm().stream("hi").to_file(target)
    partial = tmp_path / "out.txt.partial"
    assert partial.read_text() == "half"
    assert not target.exists()
    assert str(partial) in str(info.value)
