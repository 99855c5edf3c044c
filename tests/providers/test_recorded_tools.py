"""The real recordings with tool calls, reasoning or the Responses API, through the whole stack:
adapter -> LLM -> Stream / Response. What forge reports must equal what the recording holds."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx2
import pytest

from forge.config import ProviderConfig
from forge.llm import LLM
from forge.providers.anthropic import AnthropicProvider
from forge.providers.google import GoogleProvider
from forge.providers.ollama import OllamaProvider
from forge.providers.openai import OpenAIProvider
from forge.types import Message, Response, ToolCall, Usage
from tests.cassette_replay import HttpxReplayTransport, Interaction, ReplayTransport, load_cassette

MakeLLM = Callable[[str, list[Interaction]], LLM]


@pytest.fixture
async def make_llm() -> AsyncIterator[MakeLLM]:
    closers: list[Any] = []

    def build(provider: str, interactions: list[Interaction], **options: Any) -> LLM:
        if provider == "ollama":
            adapter: Any = OllamaProvider(ProviderConfig(name="ollama"), transport=HttpxReplayTransport(interactions))
        else:
            http = httpx2.AsyncClient(transport=ReplayTransport(interactions, split=16))
            config = ProviderConfig(name=provider, api_key="k", options=options)
            cls = {"openai": OpenAIProvider, "anthropic": AnthropicProvider, "google": GoogleProvider}[provider]
            adapter = cls(config, http_client=http)
            closers.append(http.aclose)
        closers.append(adapter.aclose)
        return LLM(adapter, "recorded-model")

    yield build
    for close in closers:
        await close()


async def _stream(llm: LLM, prompt: Any, **params: Any) -> tuple[list[str], Response]:
    stream = llm.stream(prompt, **params)
    texts = [t async for t in stream]  # a text-only consumer
    return texts, stream.response


def _sse_json(interaction: Interaction) -> list[dict[str, Any]]:
    return [json.loads(line[6:]) for line in interaction.text().splitlines() if line.startswith("data: {")]


def _call(raw: str, call_id: str, name: str, **kw: Any) -> ToolCall:
    return ToolCall(call_id, name, json.loads(raw) if raw else {}, raw, **kw)


# --------------------------------------------------------------------------- OpenAI


@pytest.mark.parametrize("index", [0, 1])
async def test_openai_parallel_tool_calls(make_llm: MakeLLM, index: int) -> None:
    interaction = load_cassette("openai/chat-stream-tools-parallel.yaml")[index]
    chunks = [c for c in _sse_json(interaction) if c.get("choices")]
    calls: dict[int, list[str]] = {}
    for chunk in chunks:
        for tc in chunk["choices"][0]["delta"].get("tool_calls") or ():
            entry = calls.setdefault(tc["index"], [tc.get("id", ""), tc["function"].get("name", ""), ""])
            entry[2] += tc["function"].get("arguments", "")
    expected = tuple(_call(raw, call_id, name) for call_id, name, raw in (calls[i] for i in sorted(calls)))
    texts, response = await _stream(make_llm("openai", [interaction]), "weather?")
    assert texts == []  # tool calls never reach text-only consumers
    assert response.tool_calls == expected and len(expected) == 2
    assert [c.arguments for c in response.tool_calls] == [{"location": "San Francisco"}, {"location": "Boston"}]
    assert (response.text, response.finish_reason, response.id) == ("", "tool_calls", chunks[0]["id"])


@pytest.mark.parametrize("streamed", [False, True])
async def test_openai_responses_api(make_llm: MakeLLM, streamed: bool) -> None:
    name = "openai/responses-stream-basic.yaml" if streamed else "openai/responses-nonstream-basic-gzip.yaml"
    interaction = load_cassette(name)[0]
    llm = make_llm("openai", [interaction], api="responses")
    params: dict[str, Any] = {"reasoning_effort": "low", "extra": {"include": ["reasoning.encrypted_content"],
                                                                   "store": False}}
    if streamed:
        texts, response = await _stream(llm, "Reply with exactly: pong", **params)
        final = next(e for e in _sse_json(interaction) if e["type"] == "response.completed")["response"]
        assert "".join(texts) == response.text
    else:
        response = await llm.invoke("Reply with exactly: pong", **params)
        final = interaction.json()
    usage = final["usage"]
    assert response.text == final["output"][0]["content"][0]["text"]
    assert response.usage == Usage(
        usage["input_tokens"],
        usage["output_tokens"],
        usage["input_tokens_details"]["cached_tokens"],
        0,
        usage["output_tokens_details"]["reasoning_tokens"],
    )
    assert (response.finish_reason, response.id, response.tool_calls, response.reasoning) == (
        "stop", final["id"], (), None
    )


# --------------------------------------------------------------------------- Anthropic


async def test_anthropic_streamed_tool_use(make_llm: MakeLLM) -> None:
    interaction = load_cassette("anthropic/stream-tools-gzip.yaml")[0]
    events = _sse_json(interaction)
    start = next(e for e in events if e["type"] == "content_block_start")["content_block"]
    fragments = "".join(
        e["delta"]["partial_json"] for e in events if e["type"] == "content_block_delta"
    )
    delta = next(e for e in events if e["type"] == "message_delta")
    texts, response = await _stream(make_llm("anthropic", [interaction]), "Generate one name for a pet pelican")
    assert texts == []
    raw = fragments or json.dumps(start["input"])
    assert response.tool_calls == (_call(raw, start["id"], start["name"]),)
    assert response.finish_reason == "tool_calls" and delta["delta"]["stop_reason"] == "tool_use"
    u = delta["usage"]
    assert response.usage == Usage(
        u["input_tokens"] + u["cache_creation_input_tokens"] + u["cache_read_input_tokens"],
        u["output_tokens"],
        u["cache_read_input_tokens"],
        u["cache_creation_input_tokens"],
    )


# --------------------------------------------------------------------------- Gemini


async def test_gemini_parallel_calls_with_signature_then_answer(make_llm: MakeLLM) -> None:
    first, second = load_cassette("gemini/stream-sse-tools.yaml")
    llm = make_llm("google", [first, second], api_version="v1beta")
    prompt = [Message("user", "Please retrieve the secrets associated with each of these passwords: mellon,radiance")]
    tool = {
        "name": "secret_retrieval_tool",
        "description": "A tool that requires a password to retrieve a secret.",
        "parameters": {"type": "object", "properties": {"password": {"type": "string"}}, "required": ["password"]},
    }
    texts, response = await _stream(llm, prompt, system="Use parallel tool calling.", tools=[tool])
    [chunk] = _sse_json(first)
    parts = chunk["candidates"][0]["content"]["parts"]
    assert texts == []
    assert [(c.name, dict(c.arguments), c.signature) for c in response.tool_calls] == [
        (p["functionCall"]["name"], p["functionCall"]["args"], p.get("thoughtSignature")) for p in parts
    ]
    meta = chunk["usageMetadata"]
    assert response.usage == Usage(
        meta["promptTokenCount"],
        meta["candidatesTokenCount"] + meta["thoughtsTokenCount"],
        reasoning_tokens=meta["thoughtsTokenCount"],
    )
    assert (response.finish_reason, response.id) == ("tool_calls", chunk["responseId"])

    history = [*prompt, response.to_message()]
    history += [Message("tool", out, tool_call_id=c.id) for c, out in
                zip(response.tool_calls, ["Welcome to Moria!", "Life before Death"], strict=True)]
    texts, answer = await _stream(llm, history, system="Use parallel tool calling.", tools=[tool])
    chunks = _sse_json(second)
    assert "".join(texts) == answer.text == "".join(c["candidates"][0]["content"]["parts"][0]["text"] for c in chunks)
    assert (answer.finish_reason, answer.tool_calls) == ("stop", ())
    assert answer.usage.input_tokens == chunks[-1]["usageMetadata"]["promptTokenCount"]


# --------------------------------------------------------------------------- Ollama


@pytest.mark.parametrize("streamed", [False, True])
async def test_ollama_thinking_and_tool_call(make_llm: MakeLLM, streamed: bool) -> None:
    interaction = load_cassette("ollama/chat-nonstream-tools.yaml")[0]
    body = interaction.json()
    llm = make_llm("ollama", [interaction])
    prompt = "What is the weather in Paris? Use the get_current_weather tool."
    if streamed:  # the recorded body is one JSON line: forge's NDJSON path must read it the same way
        texts, response = await _stream(llm, prompt)
        assert texts == []
    else:
        response = await llm.invoke(prompt)
    message = body["message"]
    [call] = message["tool_calls"]
    fn = call["function"]
    assert response.tool_calls == (
        ToolCall(call["id"], fn["name"], fn["arguments"], json.dumps(fn["arguments"], separators=(",", ":"))),
    )
    assert response.reasoning == message["thinking"]
    assert response.text == message["content"] == ""
    assert response.usage == Usage(body["prompt_eval_count"], body["eval_count"])
    assert response.finish_reason == "tool_calls"  # done_reason "stop", but the model asked for a tool
