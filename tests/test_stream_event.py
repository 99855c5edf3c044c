"""StreamEvent's faster __init__ and stream_event() keep the dataclass's signature, defaults and frozenness."""

from __future__ import annotations

import copy
import dataclasses
import inspect
import pickle

import pytest

from forge.types import StreamEvent, StreamEventKind, ToolCall, Usage, stream_event


def test_defaults_and_fields_are_the_dataclass_ones() -> None:
    ev = StreamEvent("text", "hi")
    assert [f.name for f in dataclasses.fields(ev)] == list(inspect.signature(StreamEvent).parameters)
    assert tuple(getattr(ev, f.name) for f in dataclasses.fields(ev)) == (
        "text", "hi", 0, None, None, None, None, None, None
    )
    call = ToolCall("c1", "f")
    full = StreamEvent("tool_call_done", "t", 2, call, Usage(1, 2), "stop", {"a": 1}, "sig", None)
    values = tuple(getattr(full, f.name) for f in dataclasses.fields(full))
    assert values == ("tool_call_done", "t", 2, call, Usage(1, 2), "stop", {"a": 1}, "sig", None)
    assert dataclasses.replace(ev, text="x") == StreamEvent("text", "x")


def test_still_frozen_and_raw_not_compared() -> None:
    ev = StreamEvent("text", "hi", raw={"x": 1})
    with pytest.raises(dataclasses.FrozenInstanceError):
        ev.text = "other"  # type: ignore[misc]
    assert ev == StreamEvent("text", "hi") and hash(ev) == hash(StreamEvent("text", "hi"))


@pytest.mark.parametrize("kind", ["text", "reasoning", "tool_call_delta"])
def test_the_fast_constructor_makes_an_ordinary_stream_event(kind: StreamEventKind) -> None:
    raw = {"delta": "hi"}
    fast = stream_event(kind, "hi", raw, 3)
    slow = StreamEvent(kind, "hi", index=3, raw=raw)
    assert type(fast) is StreamEvent
    assert [getattr(fast, f.name) for f in dataclasses.fields(fast)] == [
        getattr(slow, f.name) for f in dataclasses.fields(slow)
    ]
    assert fast == slow and hash(fast) == hash(slow) and repr(fast) == repr(slow)
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.text = "other"  # type: ignore[misc]
    assert dataclasses.replace(fast, text="x") == StreamEvent(kind, "x", index=3)
    assert copy.deepcopy(fast) == slow and pickle.loads(pickle.dumps(fast)) == slow
