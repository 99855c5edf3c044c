"""The emulator checks reasoning signatures the way the vendors do.

forge's own round trip (reply.to_message() sent back) passes; the same
follow-up with its reasoning changed, merged, reordered or dropped is refused
with the vendor's 400. The refused bodies are posted raw (not through forge,
which would not send them).
"""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx2
import pytest

import forge
from forge.testing import Emulator, Reply
from forge.testing._emulator.tools import REDACTED_TRIGGER
from forge.types import Message

TOOL = forge.Tool("lookup", "Look something up.",
                  {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]})
Body = dict[str, Any]


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator() as emulator:
        yield emulator


def _config(emu: Emulator, **openai: object) -> dict[str, Any]:
    config: dict[str, Any] = copy.deepcopy(emu.config())
    for section in config["providers"].values():
        section["retry"] = {"max_attempts": 1}
    config["providers"]["openai"].update(openai)
    return config


async def _loop(emu: Emulator, model: str, prompt: str, stream: bool, config: dict[str, Any] | None = None,
                **params: Any) -> Body:
    """Ask, answer the tool call, ask again; returns the follow-up body the emulator accepted."""
    messages = [Message("user", prompt)]
    async with forge.Registry(config=config or _config(emu)) as registry:
        for _ in range(2):
            if stream:
                async with registry.stream(model, messages, tools=[TOOL], **params) as s:
                    reply = await s.collect()
            else:
                reply = await registry.invoke(model, messages, tools=[TOOL], **params)
            if not reply.tool_calls:
                break
            messages += [reply.to_message(), *(Message("tool", "found", tool_call_id=c.id)
                                               for c in reply.tool_calls)]
    assert reply.finish_reason == "stop" and "The tool said:" in reply.text and "found" in reply.text
    last = emu.requests[-1]
    assert last.status == 200 and last.body is not None
    return last.body


async def _post(emu: Emulator, path: str, body: Body) -> tuple[int, str]:
    headers = {"x-api-key": "emulator-key", "anthropic-version": "2023-06-01",
               "x-goog-api-key": "emulator-key", "authorization": "Bearer emulator-key"}
    async with httpx2.AsyncClient() as http:
        resp = await http.post(emu.url + path, json={**body, "stream": False} if "messages" in body else body,
                               headers=headers)
    return resp.status_code, json.dumps(resp.json())


# -- Anthropic ----------------------------------------------------------------------------


async def _anthropic_follow_up(emu: Emulator, stream: bool) -> Body:
    emu.script(Reply(text="", reasoning=("First, the plan. ", "Then, a check."), tool_calls=[("lookup", {"q": "x"})]),
               provider="anthropic")
    return await _loop(emu, "anthropic:claude-sonnet-4-5", f"Look up x. {REDACTED_TRIGGER}", stream,
                       reasoning_budget=2048)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_anthropic_round_trip_of_two_thinking_blocks_and_a_redacted_one_passes(
    emu: Emulator, stream: bool
) -> None:
    body = await _anthropic_follow_up(emu, stream)
    kinds = [b["type"] for b in body["messages"][1]["content"]]
    assert kinds == ["thinking", "thinking", "redacted_thinking", "tool_use"]


def _changed(content: list[Body]) -> None:
    content[0]["thinking"] += " (edited)"


def _merged(content: list[Body]) -> None:
    content[0]["thinking"] += content.pop(1)["thinking"]


def _reordered(content: list[Body]) -> None:
    content[0], content[1] = content[1], content[0]


def _dropped(content: list[Body]) -> None:
    del content[1]


def _redacted_dropped(content: list[Body]) -> None:
    del content[2]


def _redacted_changed(content: list[Body]) -> None:
    content[2]["data"] = content[2]["data"][::-1]


def _all_dropped(content: list[Body]) -> None:
    del content[:3]


ANTHROPIC_REFUSALS: list[tuple[Callable[[list[Body]], None], str]] = [
    (_changed, "messages.1.content.0: Invalid `signature` in `thinking` block"),
    (_merged, "messages.1.content.0: Invalid `signature` in `thinking` block"),
    (_reordered, "messages.1.content.0: Invalid `signature` in `thinking` block"),
    (_dropped, "messages.1.content.0: Invalid `signature` in `thinking` block"),
    (_redacted_dropped, "messages.1.content.0: Invalid `signature` in `thinking` block"),
    (_redacted_changed, "messages.1.content.2: Invalid `data` in `redacted_thinking` block"),
    (_all_dropped, "messages.1.content.0.type: Expected `thinking` or `redacted_thinking`, but found `tool_use`"),
]


@pytest.mark.parametrize(("mutate", "message"), ANTHROPIC_REFUSALS, ids=lambda v: getattr(v, "__name__", ""))
async def test_anthropic_refuses_thinking_changed_merged_reordered_or_dropped(
    emu: Emulator, mutate: Callable[[list[Body]], None], message: str
) -> None:
    body = copy.deepcopy(await _anthropic_follow_up(emu, stream=False))
    mutate(body["messages"][1]["content"])
    status, answer = await _post(emu, "/v1/messages", body)
    assert status == 400 and "invalid_request_error" in answer and message in answer


async def test_anthropic_accepts_a_changed_block_when_checking_is_off(emu: Emulator) -> None:
    body = copy.deepcopy(await _anthropic_follow_up(emu, stream=False))
    _changed(body["messages"][1]["content"])
    emu.signatures.enabled = False
    status, _ = await _post(emu, "/v1/messages", body)
    assert status == 200


async def test_anthropic_refuses_a_signature_from_another_emulator(emu: Emulator) -> None:
    body = await _anthropic_follow_up(emu, stream=False)
    async with Emulator() as other:
        status, answer = await _post(other, "/v1/messages", body)
    assert status == 400 and "Invalid `signature` in `thinking` block" in answer


# -- Gemini 3 -----------------------------------------------------------------------------


def _gemini_call_part(body: Body) -> Body:
    return next(p for p in body["contents"][1]["parts"] if "functionCall" in p)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_gemini_3_round_trip_of_a_signed_function_call_passes(emu: Emulator, stream: bool) -> None:
    body = await _loop(emu, "google:gemini-3-flash-preview", "Look up x.", stream)
    assert _gemini_call_part(body)["thoughtSignature"]


def _unsigned(body: Body) -> None:
    del _gemini_call_part(body)["thoughtSignature"]


def _args_changed(body: Body) -> None:
    _gemini_call_part(body)["functionCall"]["args"] = {"q": "something else"}


def _corrupted(body: Body) -> None:
    _gemini_call_part(body)["thoughtSignature"] = "bm90LWEtc2lnbmF0dXJl"


GEMINI_REFUSALS: list[tuple[Callable[[Body], None], str]] = [
    (_unsigned, "Function call is missing a thought_signature in functionCall parts"),
    (_args_changed, "Invalid thought signature."),
    (_corrupted, "Corrupted thought signature."),
]


@pytest.mark.parametrize(("mutate", "message"), GEMINI_REFUSALS, ids=lambda v: getattr(v, "__name__", ""))
async def test_gemini_3_refuses_a_function_call_whose_signature_was_dropped_or_does_not_match(
    emu: Emulator, mutate: Callable[[Body], None], message: str
) -> None:
    body = copy.deepcopy(await _loop(emu, "google:gemini-3-flash-preview", "Look up x.", stream=False))
    mutate(body)
    status, answer = await _post(emu, emu.requests[-1].path, body)
    assert status == 400 and "INVALID_ARGUMENT" in answer and message in answer


async def test_gemini_3_takes_googles_stand_in_for_an_unsigned_call(emu: Emulator) -> None:
    body = copy.deepcopy(await _loop(emu, "google:gemini-3-flash-preview", "Look up x.", stream=False))
    _gemini_call_part(body)["thoughtSignature"] = "skip_thought_signature_validator"
    status, _ = await _post(emu, emu.requests[-1].path, body)
    assert status == 200


async def test_gemini_2_5_does_not_require_signatures(emu: Emulator) -> None:
    body = copy.deepcopy(await _loop(emu, "google:gemini-2.5-flash", "Look up x.", stream=False))
    assert "thoughtSignature" not in _gemini_call_part(body)
    status, _ = await _post(emu, emu.requests[-1].path, body)
    assert status == 200


# -- OpenAI Responses ---------------------------------------------------------------------

STATELESS = {"include": ["reasoning.encrypted_content"], "store": False, "reasoning": {"summary": "auto"}}


async def _responses_follow_up(emu: Emulator, stream: bool) -> Body:
    return await _loop(emu, "openai:gpt-5-mini", "Look up x.", stream, _config(emu, api="responses"),
                       reasoning_effort="low", extra=STATELESS)


def _items(body: Body, kind: str) -> list[Body]:
    return [i for i in body["input"] if i.get("type") == kind]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_responses_stateless_round_trip_of_encrypted_reasoning_passes(emu: Emulator, stream: bool) -> None:
    body = await _responses_follow_up(emu, stream)
    [reasoning] = _items(body, "reasoning")
    [call] = _items(body, "function_call")
    assert reasoning["encrypted_content"] and call["id"].startswith("fc_")
    assert body["input"].index(reasoning) + 1 == body["input"].index(call)


def _tampered(body: Body) -> None:
    item = _items(body, "reasoning")[0]
    item["encrypted_content"] = item["encrypted_content"][:-8] + "AAAAAAA="


def _summary_changed(body: Body) -> None:
    _items(body, "reasoning")[0]["summary"] = [{"type": "summary_text", "text": "Something else."}]


def _reasoning_dropped(body: Body) -> None:
    body["input"].remove(_items(body, "reasoning")[0])


def _reasoning_after_call(body: Body) -> None:
    item = _items(body, "reasoning")[0]
    body["input"].remove(item)
    body["input"].insert(body["input"].index(_items(body, "function_call")[0]) + 1, item)


def _encrypted_dropped(body: Body) -> None:
    del _items(body, "reasoning")[0]["encrypted_content"]


RESPONSES_REFUSALS: list[tuple[Callable[[Body], None], int, str]] = [
    (_tampered, 400, "The encrypted content for item rs_"),
    (_summary_changed, 400, "The encrypted content for item rs_"),
    (_reasoning_dropped, 400, "of type 'function_call' was provided without its required 'reasoning' item: 'rs_"),
    (_reasoning_after_call, 400, "of type 'function_call' was provided without its required 'reasoning' item"),
    (_encrypted_dropped, 404, "Items are not persisted when `store` is set to false"),
]


@pytest.mark.parametrize(("mutate", "status", "message"), RESPONSES_REFUSALS,
                         ids=lambda v: getattr(v, "__name__", ""))
async def test_responses_refuses_reasoning_items_changed_moved_or_dropped(
    emu: Emulator, mutate: Callable[[Body], None], status: int, message: str
) -> None:
    body = copy.deepcopy(await _responses_follow_up(emu, stream=False))
    mutate(body)
    got, answer = await _post(emu, "/v1/responses", body)
    assert got == status and message in answer
