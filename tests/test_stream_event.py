"""StreamEvent's faster __init__ keeps the dataclass's signature, defaults and frozenness."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from forge.types import StreamEvent, ToolCall, Usage


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
