"""Tools, tool calls and reasoning on every provider, through forge and the official clients,
against the emulator over real sockets."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

import forge
from forge.errors import BadRequestError, ToolCallError
from forge.testing import Emulator, Reply
from forge.types import Message, ToolCall

MODELS = {
    "openai": "openai:gpt-x",
    "responses": "openai:gpt-x",
    "anthropic": "anthropic:claude-x",
    "google": "google:gemini-x",
    "ollama": "ollama:llama-x",
}
PROVIDERS = list(MODELS)


def get_weather(city: str, unit: str = "C") -> str:
    """Current weather for a city.

    Args:
        city: the city name.
    """
    return f"sunny in {city}"


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator() as emulator:
        yield emulator


@pytest.fixture
async def registries(emu: Emulator) -> AsyncIterator[dict[str, forge.Registry]]:
    """One registry per API: chat completions and, for "responses", the OpenAI Responses API."""
    chat = forge.Registry(emu.config())
    config: dict[str, Any] = emu.config()
    config["providers"]["openai"]["api"] = "responses"
    responses = forge.Registry(config)
    yield {p: responses if p == "responses" else chat for p in PROVIDERS}
    await chat.aclose()
    await responses.aclose()


def _bodies(emu: Emulator) -> list[dict[str, Any]]:
    return [r.body for r in emu.requests if r.body is not None]


# --------------------------------------------------------------------------- the tool-calling loop


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("streamed", [False, True], ids=["invoke", "stream"])
async def test_full_tool_loop(
    registries: dict[str, forge.Registry], emu: Emulator, provider: str, streamed: bool
) -> None:
    reg, model = registries[provider], MODELS[provider]
    messages: list[Message] = [Message("user", "What is the weather in Paris?")]
    for _ in range(3):
        if streamed:
            stream = reg.stream(model, messages, tools=[get_weather])
            texts = [t async for t in stream]
            reply = stream.response
            assert "".join(texts) == reply.text
        else:
            reply = await reg.invoke(model, messages, tools=[get_weather])
        if not reply.tool_calls:
            break
        assert reply.finish_reason == "tool_calls"
        messages.append(reply.to_message())
        for call in reply.tool_calls:
            messages.append(Message("tool", get_weather(**call.arguments), tool_call_id=call.id))
    assert [m.role for m in messages] == ["user", "assistant", "tool"]
    assert messages[1].tool_calls[0].name == "get_weather"
    assert messages[1].tool_calls[0].arguments == {"city": "example"}  # the emulator fills required params
    assert reply.finish_reason == "stop"
    assert reply.text.endswith("The tool said: sunny in example") or "sunny in example" in reply.text


CALL = ToolCall("call_1", "get_weather", {"city": "Paris"}, '{"city": "Paris"}')
CONVERSATION = [
    Message("user", "What is the weather in Paris?"),
    Message("assistant", "", tool_calls=(CALL,)),
    Message("tool", "sunny", tool_call_id="call_1"),
]


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_one_conversation_runs_unchanged_everywhere(
    registries: dict[str, forge.Registry], emu: Emulator, provider: str
) -> None:
    reply = await registries[provider].invoke(MODELS[provider], CONVERSATION, tools=[get_weather])
    assert (reply.finish_reason, reply.tool_calls) == ("stop", ())
    assert reply.text.endswith("The tool said: sunny") or "sunny" in reply.text
    body = _bodies(emu)[-1]
    if provider == "openai":
        assert body["messages"][1]["tool_calls"] == [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
        ]
        assert body["messages"][2] == {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}
    elif provider == "responses":
        assert body["input"][1:] == [
            {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": '{"city": "Paris"}'},
            {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
        ]
    elif provider == "anthropic":
        assert body["messages"][1] == {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}}],
        }
        assert body["messages"][2] == {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "call_1", "content": "sunny"}],
        }
    elif provider == "google":
        # ids shaped like forge's own (call_<n>) are not sent: Gemini pairs calls and results by order
        assert body["contents"][1] == {
            "parts": [{"functionCall": {"args": {"city": "Paris"}, "name": "get_weather"}}],
            "role": "model",
        }
        assert body["contents"][2] == {
            "parts": [{"functionResponse": {"name": "get_weather", "response": {"output": "sunny"}}}],
            "role": "user",
        }
    else:
        assert body["messages"][1]["tool_calls"] == [
            {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
        ]
        assert body["messages"][2] == {"role": "tool", "content": "sunny", "tool_name": "get_weather"}


# --------------------------------------------------------------------------- streamed calls


PARALLEL = Reply(
    text="Checking both.",
    chunk_count=2,
    tool_calls=[("get_weather", {"city": "Paris"}), ("get_weather", {"city": "Rome", "unit": "F"})],
)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_parallel_calls_stream_in_order(
    registries: dict[str, forge.Registry], emu: Emulator, provider: str
) -> None:
    emu.script(PARALLEL)
    stream = registries[provider].stream(MODELS[provider], "weather in Paris and Rome?", tools=[get_weather])
    events = [ev async for ev in stream.events()]
    starts = [(e.index, e.tool_call.name) for e in events if e.kind == "tool_call_start" and e.tool_call]
    assert starts == [(0, "get_weather"), (1, "get_weather")]
    deltas: dict[int, str] = {}
    for e in events:
        if e.kind == "tool_call_delta":
            deltas[e.index] = deltas.get(e.index, "") + e.text
    done = [e.tool_call for e in events if e.kind == "tool_call_done"]
    response = stream.response
    assert response.tool_calls == tuple(c for c in done if c)
    assert [(c.name, dict(c.arguments)) for c in response.tool_calls] == [
        ("get_weather", {"city": "Paris"}),
        ("get_weather", {"city": "Rome", "unit": "F"}),
    ]
    assert [json.loads(deltas[i]) for i in (0, 1)] == [dict(c.arguments) for c in response.tool_calls]
    assert all(c.id for c in response.tool_calls) and len({c.id for c in response.tool_calls}) == 2
    assert (response.text, response.finish_reason) == ("Checking both.", "tool_calls")
    assert response.usage.output_tokens > 0


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_streamed_and_whole_replies_agree(
    registries: dict[str, forge.Registry], emu: Emulator, provider: str
) -> None:
    emu.script(PARALLEL, times=2)
    reg, model = registries[provider], MODELS[provider]
    whole = await reg.invoke(model, "weather?", tools=[get_weather])
    streamed = await reg.stream(model, "weather?", tools=[get_weather]).collect()
    for r in (whole, streamed):
        assert [(c.name, dict(c.arguments), c.raw_arguments) for c in r.tool_calls] == [
            (c.name, dict(c.arguments), c.raw_arguments) for c in whole.tool_calls
        ]
    assert (whole.text, whole.finish_reason, whole.usage) == (streamed.text, streamed.finish_reason, streamed.usage)


@pytest.mark.parametrize("provider", ["openai", "responses", "anthropic", "google", "ollama"])
async def test_invalid_arguments_raise_tool_call_error(
    registries: dict[str, forge.Registry], emu: Emulator, provider: str
) -> None:
    raw = '{"city": "Par'
    emu.script(Reply(text="", tool_calls=[{"name": "get_weather", "arguments": raw}]), times=2)
    reg, model = registries[provider], MODELS[provider]
    stream = reg.stream(model, "weather?", tools=[get_weather])
    with pytest.raises(ToolCallError) as info:
        await stream.collect()
    assert info.value.raw_arguments == raw and info.value.tool_name == "get_weather"
    if provider != "anthropic":  # Anthropic's whole replies carry parsed objects only
        with pytest.raises(ToolCallError):
            await reg.invoke(model, "weather?", tools=[get_weather])


# --------------------------------------------------------------------------- tool_choice


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_tool_choice_none_answers_with_text(
    registries: dict[str, forge.Registry], provider: str
) -> None:
    reply = await registries[provider].invoke(MODELS[provider], "weather?", tools=[get_weather], tool_choice="none")
    assert (reply.tool_calls, reply.finish_reason) == ((), "stop")


def lookup(query: str) -> str:
    """Search the web."""
    return query


@pytest.mark.parametrize("provider", ["openai", "responses", "anthropic", "google"])
async def test_named_tool_choice_is_sent_and_obeyed(
    registries: dict[str, forge.Registry], emu: Emulator, provider: str
) -> None:
    reply = await registries[provider].invoke(
        MODELS[provider], CONVERSATION, tools=[get_weather, lookup], tool_choice="lookup"
    )
    assert [c.name for c in reply.tool_calls] == ["lookup"]  # forced, even after a tool result
    body = _bodies(emu)[-1]
    expected = {
        "openai": ("tool_choice", {"type": "function", "function": {"name": "lookup"}}),
        "responses": ("tool_choice", {"type": "function", "name": "lookup"}),
        "anthropic": ("tool_choice", {"type": "tool", "name": "lookup"}),
        "google": ("toolConfig", {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["lookup"]}}),
    }[provider]
    assert body[expected[0]] == expected[1]


@pytest.mark.parametrize("choice", ["required", "lookup"])
async def test_ollama_cannot_force_a_tool(registries: dict[str, forge.Registry], emu: Emulator, choice: str) -> None:
    with pytest.raises(BadRequestError, match=rf"tool_choice='{choice}': Ollama has no tool_choice"):
        await registries["ollama"].invoke(MODELS["ollama"], "x", tools=[get_weather, lookup], tool_choice=choice)
    assert emu.requests == []  # refused before anything was sent


async def test_ollama_refuses_a_schema_its_client_would_cut(registries: dict[str, forge.Registry]) -> None:
    nested = {
        "name": "book",
        "parameters": {
            "type": "object",
            "properties": {"when": {"type": "object", "properties": {"date": {"type": "string"}}}},
        },
    }
    with pytest.raises(BadRequestError, match=r"tools\[0\]\.parameters\.properties\.when\.properties"):
        await registries["ollama"].invoke(MODELS["ollama"], "x", tools=[nested])
    titled = {"name": "book", "parameters": {"type": "object", "title": "Book", "additionalProperties": False,
                                              "properties": {"day": {"type": "string", "title": "Day"}}}}
    reply = await registries["ollama"].invoke(MODELS["ollama"], "x", tools=[titled])  # annotations may go
    assert reply.tool_calls[0].name == "book"


# --------------------------------------------------------------------------- reasoning


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("streamed", [False, True], ids=["invoke", "stream"])
async def test_reasoning_is_kept_apart_from_the_answer(
    registries: dict[str, forge.Registry], emu: Emulator, provider: str, streamed: bool
) -> None:
    emu.script(Reply(text="It is sunny.", reasoning="Look outside. Then answer.", reasoning_tokens=6))
    reg, model = registries[provider], MODELS[provider]
    if streamed:
        stream = reg.stream(model, "weather?", reasoning_effort="medium")
        assert "".join([t async for t in stream]) == "It is sunny."
        reply = stream.response
    else:
        reply = await reg.invoke(model, "weather?", reasoning_effort="medium")
    assert reply.text == "It is sunny."
    if provider == "openai":  # Chat Completions shows no reasoning, only counts it
        assert reply.reasoning is None
    else:
        assert reply.reasoning == "Look outside. Then answer."
    if provider in ("openai", "responses", "google"):
        assert reply.usage.reasoning_tokens == 6
    if provider == "anthropic":  # the signature a follow-up turn sends back
        assert reply.reasoning_signature
        await reg.invoke(model, [Message("user", "weather?"), reply.to_message(), Message("user", "sure?")])
        sent = _bodies(emu)[-1]["messages"][1]["content"][0]
        assert sent == {"type": "thinking", "thinking": reply.reasoning, "signature": reply.reasoning_signature}
    if provider == "google":  # Gemini puts the signature on the first answer part
        assert reply.reasoning_signature


EFFORT_HIGH = {
    "openai": {"reasoning_effort": "high"},
    "responses": {"reasoning": {"effort": "high"}},
    "anthropic": {"thinking": {"type": "enabled", "budget_tokens": 24576}, "max_tokens": 24576 + 4096},
    # google-genai writes ThinkingConfig's fields in snake_case; the API reads both spellings.
    "google": {"generationConfig": {"thinkingConfig": {"include_thoughts": True, "thinking_level": "HIGH"}}},
    "ollama": {"think": True},
}
BUDGET_ZERO = {
    "openai": {"reasoning_effort": "none"},
    "responses": {"reasoning": {"effort": "none"}},
    "anthropic": {"thinking": {"type": "disabled"}},
    "google": {"generationConfig": {"thinkingConfig": {"thinking_budget": 0}}},
    "ollama": {"think": False},
}


def _subset(body: dict[str, Any], expected: dict[str, Any]) -> dict[str, Any]:
    return {k: (_subset(body[k], v) if isinstance(v, dict) and isinstance(body.get(k), dict) else body.get(k))
            for k, v in expected.items()}


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize(("params", "table"), [({"reasoning_effort": "high"}, EFFORT_HIGH),
                                               ({"reasoning_budget": 0}, BUDGET_ZERO)], ids=["effort", "off"])
async def test_reasoning_options_map_per_provider(
    registries: dict[str, forge.Registry], emu: Emulator, provider: str, params: dict[str, Any],
    table: dict[str, dict[str, Any]],
) -> None:
    await registries[provider].invoke(MODELS[provider], "think hard", **params)
    body = _bodies(emu)[-1]
    assert _subset(body, table[provider]) == table[provider]


async def test_budget_models_and_levelled_think(registries: dict[str, forge.Registry], emu: Emulator) -> None:
    await registries["google"].invoke("google:gemini-2.5-flash", "x", reasoning_effort="low")
    await registries["google"].invoke("google:gemini-x", "x", reasoning_budget=5000)
    await registries["ollama"].invoke("ollama:gpt-oss:20b", "x", reasoning_effort="low")
    await registries["openai"].invoke("openai:gpt-x", "x", reasoning_budget=5000)
    flash, budget, oss, openai_body = _bodies(emu)
    assert flash["generationConfig"]["thinkingConfig"] == {"include_thoughts": True, "thinking_budget": 1024}
    assert budget["generationConfig"]["thinkingConfig"] == {"include_thoughts": True, "thinking_budget": 5000}
    assert oss["think"] == "low"
    assert openai_body["reasoning_effort"] == "medium"


async def test_anthropic_budget_limits(registries: dict[str, forge.Registry], emu: Emulator) -> None:
    reg = registries["anthropic"]
    with pytest.raises(BadRequestError, match="at least 1024"):
        await reg.invoke(MODELS["anthropic"], "x", reasoning_budget=500)
    with pytest.raises(BadRequestError, match=r"max_tokens \(2000\) must be larger than the thinking budget"):
        await reg.invoke(MODELS["anthropic"], "x", reasoning_budget=4000, max_tokens=2000)
    await reg.invoke(MODELS["anthropic"], "x", reasoning_budget=2000, max_tokens=3000)
    assert _bodies(emu)[-1]["thinking"] == {"type": "enabled", "budget_tokens": 2000}
    assert _bodies(emu)[-1]["max_tokens"] == 3000
