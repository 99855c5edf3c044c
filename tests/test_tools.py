"""Tool definitions, tool calls, reasoning options and their reassembly in Stream (no network)."""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Annotated, Literal

import pytest

import forge
from forge.errors import StreamInterrupted, ToolCallError
from forge.llm import LLM, build_request, tool_from_function
from forge.types import Message, Response, StreamEvent, Tool, ToolCall, Usage
from tests.conftest import FakeProvider, Step


class Unit(enum.Enum):
    CELSIUS = "C"
    FAHRENHEIT = "F"


def get_weather(
    city: str,
    unit: Unit = Unit.CELSIUS,
    days: list[int] | None = None,
    detail: Literal["short", "long"] = "short",
    note: Annotated[str, "free text for the forecaster"] = "",
    limits: dict[str, float] | None = None,
    *args: object,
    **kwargs: object,
) -> str:
    """Current weather for a city.

    Reads the forecast service.

    Args:
        city: the city name,
            e.g. "Paris".
        days (list[int]): which days ahead.

    Returns:
        A sentence.
    """
    return "sunny"


# --------------------------------------------------------------------------- definitions


def test_tool_from_function_reads_signature_and_docstring() -> None:
    tool = tool_from_function(get_weather)
    assert tool.name == "get_weather"
    assert tool.description == "Current weather for a city."
    assert tool.parameters == {
        "type": "object",
        "properties": {
            "city": {"type": "string", "description": 'the city name, e.g. "Paris".'},
            "unit": {"enum": ["C", "F"], "type": "string"},
            "days": {"type": "array", "items": {"type": "integer"}, "description": "which days ahead."},
            "detail": {"enum": ["short", "long"], "type": "string"},
            "note": {"type": "string", "description": "free text for the forecaster"},
            "limits": {"type": "object", "additionalProperties": {"type": "number"}},
        },
        "required": ["city"],
    }


def test_tools_accept_four_forms() -> None:
    plain = {"name": "get_weather", "description": "Weather", "parameters": {"type": "object"}}
    openai_form = {"type": "function", "function": plain}
    tool = Tool("get_weather", "Weather", {"type": "object"})
    request = build_request("m", "hi", tools=[plain, openai_form, tool, get_weather])
    assert request.tools[:3] == (tool, tool, tool)
    assert request.tools[3] == tool_from_function(get_weather)


def test_tool_choice_forms_and_errors() -> None:
    tools = [get_weather]
    assert build_request("m", "hi", tools=tools, tool_choice="required").tool_choice == "required"
    named = {"type": "function", "function": {"name": "get_weather"}}
    assert build_request("m", "hi", tools=tools, tool_choice=named).tool_choice == "get_weather"
    with pytest.raises(ValueError, match="tool_choice 'lookup' is not"):
        build_request("m", "hi", tools=tools, tool_choice="lookup")


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"reasoning_effort": "max"}, "reasoning_effort must be one of"),
        ({"reasoning_budget": -1}, "reasoning_budget must be a number of tokens >= 0"),
        ({"reasoning_budget": True}, "reasoning_budget must be"),
        ({"reasoning": "high"}, "Unknown request parameter"),
    ],
)
def test_bad_reasoning_options_are_rejected(params: dict[str, object], message: str) -> None:
    with pytest.raises((TypeError, ValueError), match=message):
        build_request("m", "hi", **params)


def test_reasoning_options_reach_the_request() -> None:
    request = build_request("m", "hi", reasoning_effort="high", reasoning_budget=2048)
    assert (request.reasoning_effort, request.reasoning_budget) == ("high", 2048)


# --------------------------------------------------------------------------- calls and conversations


def test_tool_call_from_json() -> None:
    assert ToolCall.from_json("c1", "f", '{"a": 1}') == ToolCall("c1", "f", {"a": 1}, '{"a": 1}')
    assert ToolCall.from_json("c1", "f", "") == ToolCall("c1", "f", {}, "")


@pytest.mark.parametrize("raw", ['{"city": "Par', "[1, 2]", '"Paris"'])
def test_arguments_that_are_not_an_object_raise_with_the_raw_text(raw: str) -> None:
    with pytest.raises(ToolCallError) as info:
        ToolCall.from_json("c1", "get_weather", raw, provider="openai", model="gpt-x")
    err = info.value
    assert (err.raw_arguments, err.tool_name, err.tool_call_id) == (raw, "get_weather", "c1")
    assert (err.provider, err.model, err.retryable) == ("openai", "gpt-x", False)
    assert "get_weather" in str(err) and ".raw_arguments" in str(err)
    assert isinstance(err, forge.ProviderError) and forge.ToolCallError is ToolCallError


def test_response_to_message_carries_calls_and_reasoning() -> None:
    call = ToolCall("c1", "get_weather", {"city": "Paris"}, '{"city": "Paris"}')
    response = Response(
        "", "anthropic", "m", "tool_calls", tool_calls=(call,), reasoning="hmm", reasoning_signature="sig"
    )
    assert response.to_message() == Message(
        "assistant", "", tool_calls=(call,), reasoning="hmm", reasoning_signature="sig"
    )


def test_openai_style_dict_conversation_is_accepted() -> None:
    request = build_request(
        "m",
        [
            {"role": "user", "content": "weather?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}},
                    {"id": "c2", "name": "f", "arguments": {"x": 2}},
                ],
            },
            {"role": "tool", "content": "ok", "tool_call_id": "c1", "name": "f"},
        ],
    )
    assistant, tool = request.messages[1], request.messages[2]
    assert assistant.tool_calls == (ToolCall("c1", "f", {"x": 1}, '{"x": 1}'), ToolCall("c2", "f", {"x": 2}))
    assert (tool.role, tool.tool_call_id, tool.name) == ("tool", "c1", "f")
    with pytest.raises(ValueError, match="not valid JSON"):
        build_request("m", [{"role": "assistant", "tool_calls": [{"id": "c", "name": "f", "arguments": "{"}]}])


# --------------------------------------------------------------------------- Stream reassembly


def _tool_and_reasoning_steps(raw_args: str) -> list[Step]:
    return [
        Step(StreamEvent("reasoning", "Let me ")),
        Step(StreamEvent("reasoning", "check.")),
        Step(StreamEvent("reasoning", "", signature="sig-1")),
        Step(StreamEvent("text", "Checking.")),
        Step(StreamEvent("tool_call_start", index=0, tool_call=ToolCall("c1", "get_weather"))),
        Step(StreamEvent("tool_call_delta", raw_args[:5], index=0)),
        Step(StreamEvent("tool_call_delta", raw_args[5:], index=0)),
        Step(StreamEvent("tool_call_start", index=1, tool_call=ToolCall("c2", "get_time"))),
        Step(StreamEvent("tool_call_done", index=1, tool_call=ToolCall("c2", "get_time", {}, ""))),
        Step(StreamEvent("usage", usage=Usage(10, 20, reasoning_tokens=5))),
        Step(StreamEvent("finish", "resp-1", finish_reason="tool_calls")),
    ]


async def test_stream_reassembles_reasoning_signature_and_calls(
    fake: FakeProvider, make_llm: Callable[..., LLM]
) -> None:
    fake.streams.append(_tool_and_reasoning_steps('{"city": "Paris"}'))
    stream = make_llm().stream("weather?")
    texts = [t async for t in stream]
    assert texts == ["Checking."]  # text-only consumers see only the answer text
    response = stream.response
    assert response.text == "Checking."
    assert (response.reasoning, response.reasoning_signature) == ("Let me check.", "sig-1")
    assert response.tool_calls == (
        ToolCall("c1", "get_weather", {"city": "Paris"}, '{"city": "Paris"}'),
        ToolCall("c2", "get_time", {}, ""),
    )
    assert (response.finish_reason, response.usage.reasoning_tokens) == ("tool_calls", 5)


async def test_events_show_every_kind(fake: FakeProvider, make_llm: Callable[..., LLM]) -> None:
    fake.streams.append(_tool_and_reasoning_steps('{"city": "Paris"}'))
    stream = make_llm().stream("weather?")
    kinds = [ev.kind async for ev in stream.events()]
    assert kinds == [
        "reasoning", "reasoning", "reasoning", "text", "tool_call_start", "tool_call_delta",
        "tool_call_delta", "tool_call_start", "tool_call_done", "usage", "finish",
    ]


async def test_invalid_streamed_arguments_raise_tool_call_error_not_interrupted(
    fake: FakeProvider, make_llm: Callable[..., LLM]
) -> None:
    fake.streams.append(_tool_and_reasoning_steps('{"city": "Par'))
    stream = make_llm().stream("weather?")
    with pytest.raises(ToolCallError) as info:
        async for _ in stream:
            pass
    assert info.value.raw_arguments == '{"city": "Par'
    assert not isinstance(info.value, StreamInterrupted)


async def test_adapter_tool_call_error_after_text_is_not_a_broken_stream(
    fake: FakeProvider, make_llm: Callable[..., LLM]
) -> None:
    error = ToolCallError("bad arguments", raw_arguments="{", tool_name="f", provider="fake")
    fake.streams.append([Step(StreamEvent("text", "Hi")), Step(error=error)])
    stream = make_llm().stream("x")
    with pytest.raises(ToolCallError) as info:
        async for _ in stream:
            pass
    assert info.value is error
