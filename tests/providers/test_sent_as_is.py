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

import forge
from forge.providers._mapping import sent_as_is
from forge.providers.openai_request import _params as chat_params
from forge.providers.openai_responses_request import responses_params
from forge.types import CacheHints, Message, Request, ResponseFormat, Tool, ToolCall
from tests.hostile import HostileServer, Reply
from tests.test_streams_hostile import PIECES, VENDORS

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


# ----------------------------------------------------------- on the wire, against a raw server

TOOLS = [{"name": "weather", "description": "Weather in a city", "parameters": SCHEMA}]


@pytest.mark.parametrize("api", ["chat", "responses"])
async def test_a_raw_server_receives_the_whole_body_with_stream_set(api: str) -> None:
    # The body goes in extra_body and stream only in the body: the server must still get every
    # field, "stream": true, and a body it can stream back (read as it arrives, not buffered).
    vendor = VENDORS["openai" if api == "chat" else "openai-responses"]
    async with HostileServer() as srv:
        srv.push(vendor.reply())
        async with forge.Registry(config=vendor.config(srv)) as reg:
            text = await reg.stream("openai:gpt-4o-mini", "hi", system="Be brief.", max_tokens=50,
                                    tools=TOOLS, tool_choice="auto").collect()
    assert text.text == "".join(PIECES)
    body = srv.requests[0].json()
    assert isinstance(body, dict)
    assert body["model"] == "gpt-4o-mini" and body["stream"] is True
    assert "NOT_GIVEN" not in srv.requests[0].body.decode()
    if api == "chat":
        assert body["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
        assert body["stream_options"] == {"include_usage": True}
        assert body["max_tokens"] == 50 and body["tool_choice"] == "auto"  # a compatible server's name
        assert body["tools"][0]["function"]["name"] == "weather"
    else:
        assert body["instructions"] == "Be brief." and body["max_output_tokens"] == 50
        assert body["tools"][0]["name"] == "weather" and body["tool_choice"] == "auto"


async def test_a_raw_server_receives_the_whole_body_of_an_invoke() -> None:
    completion = {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
                  "choices": [{"index": 0, "finish_reason": "stop",
                               "message": {"role": "assistant", "content": "hello"}}],
                  "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}
    async with HostileServer() as srv:
        srv.push(Reply.http(200, completion))
        async with forge.Registry(config=VENDORS["openai"].config(srv)) as reg:
            reply = await reg.invoke("openai:gpt-4o-mini", "hi", seed=7, extra={"user": "u1"})
    assert reply.text == "hello"
    body = srv.requests[0].json()
    assert body == {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "seed": 7,
                    "user": "u1"}
