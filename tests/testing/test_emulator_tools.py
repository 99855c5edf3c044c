"""The emulator's tool calls, reasoning and Responses API, read by the official clients' own parsers."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import anthropic
import httpx2
import ollama
import openai
import pytest
from google import genai
from google.genai import types as gt

from forge.testing import Emulator, Reply

CALLS = [("get_weather", {"city": "Paris"}), ("get_weather", {"city": "Rome"})]
WEATHER_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
OPENAI_TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": WEATHER_SCHEMA}}


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator() as emulator:
        yield emulator


async def test_openai_stream_helper_accumulates_parallel_calls(emu: Emulator) -> None:
    emu.script(Reply(text="", tool_calls=CALLS))
    client = openai.AsyncOpenAI(api_key="k", base_url=emu.url + "/v1", max_retries=0)
    async with client, client.chat.completions.stream(
        model="gpt-x", messages=[{"role": "user", "content": "weather?"}], tools=[OPENAI_TOOL]  # type: ignore[list-item]
    ) as stream:
        final = await stream.get_final_completion()
    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    calls = choice.message.tool_calls or []
    assert [(c.function.name, json.loads(c.function.arguments)) for c in calls] == CALLS  # type: ignore[union-attr]
    assert len({c.id for c in calls}) == 2


async def test_openai_default_rule_calls_the_first_tool(emu: Emulator) -> None:
    async with openai.AsyncOpenAI(api_key="k", base_url=emu.url + "/v1", max_retries=0) as client:
        first = await client.chat.completions.create(
            model="gpt-x", messages=[{"role": "user", "content": "weather?"}], tools=[OPENAI_TOOL]  # type: ignore[list-item]
        )
        [call] = first.choices[0].message.tool_calls or []
        assert json.loads(call.function.arguments) == {"city": "example"}  # type: ignore[union-attr]
        after = await client.chat.completions.create(
            model="gpt-x",
            messages=[
                {"role": "user", "content": "weather?"},
                first.choices[0].message.model_dump(exclude_none=True),  # type: ignore[list-item]
                {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
            ],
            tools=[OPENAI_TOOL],  # type: ignore[list-item]
        )
    assert after.choices[0].finish_reason == "stop"
    assert after.choices[0].message.content == "Hello from the emulator (openai, gpt-x). The tool said: sunny"


async def test_responses_stream_helper_gets_the_final_response(emu: Emulator) -> None:
    emu.script(Reply(text="Sunny.", reasoning="Check.", tool_calls=CALLS[:1]))
    client = openai.AsyncOpenAI(api_key="k", base_url=emu.url + "/v1", max_retries=0)
    async with client, client.responses.stream(
        model="gpt-x", input="weather?", reasoning={"effort": "low", "summary": "auto"}
    ) as stream:
        final = await stream.get_final_response()
    assert [item.type for item in final.output] == ["reasoning", "message", "function_call"]
    assert final.output_text == "Sunny."
    assert final.output[0].summary[0].text == "Check."  # type: ignore[union-attr]
    assert json.loads(final.output[2].arguments) == {"city": "Paris"}  # type: ignore[union-attr]
    assert final.usage is not None and final.usage.output_tokens_details.reasoning_tokens > 0


async def test_anthropic_stream_helper_builds_thinking_and_tool_use(emu: Emulator) -> None:
    emu.script(Reply(text="Checking.", reasoning="Two cities.", tool_calls=CALLS))
    client = anthropic.AsyncAnthropic(api_key="k", base_url=emu.url, max_retries=0)
    try:
        async with client.messages.stream(
            model="claude-x", max_tokens=4096, messages=[{"role": "user", "content": "weather?"}],
            thinking={"type": "enabled", "budget_tokens": 1024},
        ) as stream:
            final = await stream.get_final_message()
    finally:
        await client.close()
    kinds = [block.type for block in final.content]
    assert kinds == ["thinking", "text", "tool_use", "tool_use"]
    assert final.content[0].thinking == "Two cities." and final.content[0].signature  # type: ignore[union-attr]
    assert [b.input for b in final.content[2:]] == [c[1] for c in CALLS]  # type: ignore[union-attr]
    assert final.stop_reason == "tool_use"


async def test_gemini_typed_stream_has_thoughts_and_whole_calls(emu: Emulator) -> None:
    emu.script(Reply(text="", reasoning="Two cities.", tool_calls=CALLS))
    http = httpx2.AsyncClient()
    client = genai.Client(api_key="k", http_options=gt.HttpOptions(base_url=emu.url, httpx_async_client=http))
    try:
        stream = await client.aio.models.generate_content_stream(
            model="gemini-x", contents="weather?",
            config=gt.GenerateContentConfig(thinking_config=gt.ThinkingConfig(include_thoughts=True)),
        )
        chunks = [chunk async for chunk in stream]
    finally:
        await client.aio.aclose()
        await http.aclose()
    parts = [p for c in chunks for p in (c.candidates[0].content.parts or [])]  # type: ignore[index, union-attr]
    thoughts = "".join(p.text or "" for p in parts if p.thought)
    calls = [p.function_call for p in parts if p.function_call]
    assert thoughts == "Two cities."
    assert [(c.name, c.args) for c in calls] == CALLS  # type: ignore[union-attr]
    assert next(p for p in parts if p.function_call).thought_signature  # on the first call
    assert chunks[-1].candidates[0].finish_reason == gt.FinishReason.STOP  # type: ignore[index]
    assert chunks[-1].usage_metadata.thoughts_token_count > 0  # type: ignore[union-attr, operator]


async def test_ollama_client_reads_thinking_and_tool_calls(emu: Emulator) -> None:
    emu.script(Reply(text="", reasoning="Two cities.", tool_calls=CALLS), times=2)
    client = ollama.AsyncClient(host=emu.url)
    try:
        whole = await client.chat(model="llama-x", messages=[{"role": "user", "content": "weather?"}], think=True)
        parts = [p async for p in await client.chat(
            model="llama-x", messages=[{"role": "user", "content": "weather?"}], think=True, stream=True
        )]
    finally:
        await client.close()  # type: ignore[no-untyped-call]
    for message_calls, thinking in (
        (whole.message.tool_calls, whole.message.thinking),
        ([c for p in parts for c in p.message.tool_calls or []], "".join(p.message.thinking or "" for p in parts)),
    ):
        assert [(c.function.name, dict(c.function.arguments)) for c in message_calls or []] == CALLS
        assert thinking == "Two cities."
    assert parts[-1].done and parts[-1].eval_count and parts[-1].eval_count > 0
