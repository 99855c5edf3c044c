"""One tool loop with reasoning on, written once, on every provider (the emulator checks signatures).

``tool_loop`` asks, runs the tool the model calls, sends the result and reads
the final answer, sending every reply back with ``reply.to_message()``. It runs
unchanged on OpenAI (Responses API and Chat Completions), Anthropic, Gemini 3
and Ollama against the emulator, which refuses a follow-up whose reasoning was
not sent back exactly. A conversation started on one provider and continued on
another keeps its text, tool calls and results, and never sends the second
provider a signature the first issued.
"""

from __future__ import annotations

import base64
import copy
import itertools
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

import forge
from forge.testing import Emulator
from forge.types import Message

TOOL = forge.Tool("lookup", "Look something up.",
                  {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]})

# name -> (model, extra provider config): the two OpenAI APIs are two registries.
TARGETS: dict[str, tuple[str, dict[str, object]]] = {
    "openai-responses": ("openai:gpt-5-mini", {"api": "responses"}),
    "openai-chat": ("openai:gpt-5-mini", {"api": "chat"}),
    "anthropic": ("anthropic:claude-sonnet-4-5", {}),
    "google": ("google:gemini-3-flash-preview", {}),
    "ollama": ("ollama:qwen3", {}),
}


async def tool_loop(registry: forge.Registry, model: str, messages: list[Message],
                    stream: bool = False) -> forge.Response:
    """Call, run the tools the model asks for, call again until it answers: the loop under test."""
    while True:
        if stream:
            async with registry.stream(model, messages, tools=[TOOL], reasoning_effort="low") as s:
                reply = await s.collect()
        else:
            reply = await registry.invoke(model, messages, tools=[TOOL], reasoning_effort="low")
        messages.append(reply.to_message())
        if not reply.tool_calls:
            return reply
        for call in reply.tool_calls:
            messages.append(Message("tool", f"found {call.arguments.get('q')}", tool_call_id=call.id,
                                    name=call.name))


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator() as emulator:  # signature checking is on by default
        yield emulator


def _registry(emu: Emulator, target: str) -> forge.Registry:
    config: dict[str, Any] = copy.deepcopy(emu.config())
    for section in config["providers"].values():
        section["retry"] = {"max_attempts": 1}
    config["providers"]["openai"].update(TARGETS[target][1])
    return forge.Registry(config=config)


def _signatures(messages: list[Message]) -> set[str]:
    """Every opaque token in the conversation: thinking signatures, redacted / encrypted data, call signatures."""
    found: set[str] = set()
    for m in messages:
        for block in m.reasoning_blocks:
            found.update(t for t in (block.signature, block.data) if t)
        found.update(c.signature for c in m.tool_calls if c.signature)
    return found


def _wire_forms(token: str) -> set[str]:
    forms = {token}
    try:  # Gemini's SDK re-encodes signatures as URL-safe base64
        raw = base64.b64decode(token.replace("-", "+").replace("_", "/") + "=" * (-len(token) % 4))
        forms |= {base64.urlsafe_b64encode(raw).decode().rstrip("="), base64.b64encode(raw).decode().rstrip("=")}
    except ValueError:
        pass
    return {f for f in forms if len(f) >= 8}


def _reasoning_sent_back(target: str, body: dict[str, Any]) -> bool:
    """Whether the follow-up carried the provider's own reasoning for the tool-call turn."""
    if target == "anthropic":
        return body["messages"][1]["content"][0]["type"] == "thinking"
    if target == "google":
        return any("thoughtSignature" in p for p in body["contents"][1]["parts"] if "functionCall" in p)
    if target == "openai-responses":
        return any(i.get("type") == "reasoning" for i in body["input"])
    return True  # Chat Completions and Ollama take no reasoning back


@pytest.mark.parametrize("stream", [False, True], ids=["invoke", "stream"])
@pytest.mark.parametrize("target", list(TARGETS))
async def test_the_same_tool_loop_with_reasoning_runs_on_every_provider(
    emu: Emulator, target: str, stream: bool
) -> None:
    messages = [Message("user", "Look up x, please.")]
    async with _registry(emu, target) as registry:
        final = await tool_loop(registry, TARGETS[target][0], messages, stream)
    assert final.finish_reason == "stop" and "found example" in final.text
    assert [m.role for m in messages] == ["user", "assistant", "tool", "assistant"]
    assert messages[1].tool_calls and (messages[1].reasoning_blocks or target in ("openai-chat", "ollama"))
    requests = [r for r in emu.requests if r.body is not None]
    assert [r.status for r in requests] == [200, 200]
    assert _reasoning_sent_back(target, requests[1].body or {})


PAIRS = [(a, b) for a, b in itertools.permutations(TARGETS, 2)]


@pytest.mark.parametrize(("first", "second"), PAIRS)
async def test_a_conversation_continued_on_another_provider_sends_it_no_foreign_signature(
    emu: Emulator, first: str, second: str
) -> None:
    messages = [Message("user", "Look up x, please.")]
    async with _registry(emu, first) as registry:
        answer = await tool_loop(registry, TARGETS[first][0], messages)
    foreign = _signatures(messages)
    sent_before = len(emu.requests)
    messages.append(Message("user", "Now look up y."))
    async with _registry(emu, second) as registry:
        final = await tool_loop(registry, TARGETS[second][0], messages)
    assert final.finish_reason == "stop" and "found example" in final.text
    later = emu.requests[sent_before:]
    assert [r.status for r in later] == [200, 200]
    for rec in later:
        wire = rec.raw_body.decode()
        # the first provider's turns went along (its answer as the JSON string literal holds it)
        assert json.dumps(answer.text)[1:-1] in wire and "found example" in wire
        leaked = [t for t in foreign for form in _wire_forms(t) if form in wire]
        assert not leaked, f"{second} was sent {first}'s reasoning tokens: {leaked}"
