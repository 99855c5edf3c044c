"""What forge sends through the official openai client is sent as it is.

forge passes lists and dicts to ``create()`` in ``extra_body``, skipping the clients'
walk of each argument against its TypedDict (``sent_as_is`` in
forge/providers/_mapping.py; about 235 us a call). That is only right while the
walk would leave what forge builds unchanged: these tests run the installed
clients' own transform over forge's parameters for many kinds of request, so a
client release that starts rewriting a field forge sends fails here, by name.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from openai import NOT_GIVEN
from openai._utils import async_maybe_transform as openai_transform
from openai.types.chat import completion_create_params
from openai.types.responses import response_create_params

from forge.providers._mapping import sent_as_is
from forge.providers.openai_request import _params as chat_params
from forge.providers.openai_responses_request import responses_params
from forge.types import CacheHints, Message, Request, ResponseFormat, Tool, ToolCall

SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
TOOL = Tool("weather", "Weather in a city", SCHEMA)
CALL = ToolCall("call_1", "weather", {"city": "Paris"}, '{"city": "Paris"}')
TURNS = (
    Message("user", "Weather in Paris?"),
    Message("assistant", "", tool_calls=(CALL,)),
    Message("tool", '{"temp": 21}', tool_call_id="call_1", name="weather"),
    Message("assistant", "21 degrees."),
    Message("user", "And tomorrow?", cache_breakpoint=True),
)

REQUESTS: dict[str, Request] = {
    "plain": Request(model="m", messages=(Message("user", "hi"),)),
    "sampling": Request(model="m", messages=(Message("user", "hi"),), system="Be brief.", max_tokens=50,
                        temperature=0.2, top_p=0.9, seed=7, stop=("END", "STOP")),
    "tools": Request(model="m", messages=TURNS, system="s", tools=(TOOL,), tool_choice="auto"),
    "named tool": Request(model="m", messages=TURNS, tools=(TOOL,), tool_choice="weather"),
    "json": Request(model="m", messages=(Message("user", "hi"),), response_format=ResponseFormat("json")),
    "json schema": Request(model="m", messages=(Message("user", "hi"),),
                           response_format=ResponseFormat("json_schema", SCHEMA, "city")),
    "reasoning": Request(model="m", messages=(Message("user", "hi"),), max_tokens=4000, reasoning_budget=2048),
    "cache": Request(model="m", messages=TURNS, system="s" * 50, tools=(TOOL,),
                     cache=CacheHints(system=True, tools=True, ttl_seconds=300, key="k")),
    "extra": Request(model="m", messages=(Message("user", "hi"),), extra={"metadata": {"user_id": "u"}}),
}
_CLIENT_OPTIONS = ("extra_headers", "extra_query", "extra_body", "timeout")


def _body(params: dict[str, Any]) -> dict[str, Any]:
    """The JSON body a client sends for ``params``: its fields, then ``extra_body`` over them."""
    body = {k: v for k, v in params.items() if k not in _CLIENT_OPTIONS}
    return {**body, **params.get("extra_body", {})}


async def _check(params: dict[str, Any], transform: Any, typed: type, required: tuple[str, ...]) -> None:
    fields = {k: v for k, v in params.items() if k not in _CLIENT_OPTIONS}
    assert await transform(fields, typed) == fields, "the client's transform changes what forge sends"
    lean = sent_as_is(params, required=required, omitted=NOT_GIVEN)
    sent = {k: v for k, v in _body(lean).items() if v is not NOT_GIVEN}  # the client drops NOT_GIVEN
    assert sent == _body(params)
    assert {k for k in lean if k not in _CLIENT_OPTIONS} == set(required)
    assert all(lean[k] is NOT_GIVEN for k in required)


@pytest.mark.parametrize("name", list(REQUESTS))
async def test_openai_chat_params_are_what_the_client_would_send(name: str) -> None:
    params = chat_params(REQUESTS[name])
    params["stream"] = True
    params["stream_options"] = {"include_usage": True}
    await _check(params, openai_transform, completion_create_params.CompletionCreateParamsStreaming,
                 ("messages", "model"))


@pytest.mark.parametrize("name", list(REQUESTS))
async def test_openai_responses_params_are_what_the_client_would_send(name: str) -> None:
    params = responses_params(dataclasses.replace(REQUESTS[name], stop=()))  # the Responses API takes none
    params["stream"] = True
    await _check(params, openai_transform, response_create_params.ResponseCreateParamsStreaming, ())


def test_a_callers_extra_body_wins_and_required_arguments_are_passed_as_omitted() -> None:
    omitted = object()
    lean = sent_as_is(
        {"model": "m", "messages": [{"role": "user"}], "tools": [1], "stream": True,
         "extra_body": {"tools": [2]}, "timeout": 5},
        required=("messages", "model"), omitted=omitted,
    )
    assert lean == {"model": omitted, "messages": omitted, "timeout": 5,
                    "extra_body": {"model": "m", "messages": [{"role": "user"}], "tools": [2], "stream": True}}
