"""Request shapes the vendors refuse, refused by forge before anything is sent (emulator request log)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

import forge
from forge.errors import BadRequestError
from forge.testing import Emulator
from forge.types import Message, ReasoningBlock, ToolCall


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator() as emulator:
        yield emulator


async def test_openai_json_schema_name_is_checked_before_sending(emu: Emulator) -> None:
    async with forge.Registry(emu.config()) as reg:
        fmt = forge.ResponseFormat("json_schema", {"type": "object"}, name="my answer!")
        with pytest.raises(BadRequestError, match="json_schema name"):
            await reg.invoke("openai:gpt-x", "x", response_format=fmt)
    assert emu.requests == []


@pytest.mark.parametrize(("model", "effort"), [("gemini-3-pro-preview", "medium"),
                                               ("gemini-3-pro-preview", "none"),
                                               ("gemini-3.1-pro-preview", "none")])
async def test_gemini_pro_refuses_levels_it_does_not_take(emu: Emulator, model: str, effort: str) -> None:
    async with forge.Registry(emu.config()) as reg:
        with pytest.raises(BadRequestError, match="refuses thinkingLevel"):
            await reg.invoke(f"google:{model}", "x", reasoning_effort=effort)
    assert emu.requests == []


async def test_anthropic_thinking_never_gets_a_foreign_signature(emu: Emulator) -> None:
    call = ToolCall("call_1", "lookup", {"q": "x"}, '{"q": "x"}', signature="Z2VtaW5p")
    foreign = Message("assistant", "", tool_calls=(call,),
                      reasoning_blocks=(ReasoningBlock("google", "thinking", "hm", "Z2VtaW5p"),))
    messages = [Message("user", "x"), foreign, Message("tool", "42", tool_call_id="call_1")]
    tools = [forge.Tool("lookup", "", {"type": "object", "properties": {"q": {"type": "string"}}})]
    async with forge.Registry(emu.config()) as reg:
        with pytest.raises(BadRequestError, match="came from google"):
            await reg.invoke("anthropic:claude-x", messages, tools=tools, reasoning_budget=2048)
        assert emu.requests == []
        await reg.invoke("anthropic:claude-x", messages, tools=tools)  # thinking off: the call goes out
    sent = emu.requests[-1].body
    assert sent is not None
    assert [b["type"] for b in sent["messages"][1]["content"]] == ["tool_use"]
