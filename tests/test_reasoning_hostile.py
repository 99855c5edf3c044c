"""Reasoning round trips against raw vendor bytes (tests/hostile.py), not the emulator.

Each test plays a first reply as the vendor documents it, then checks the body
of the follow-up request forge builds from ``reply.to_message()``: the
reasoning goes back unchanged, in its place.
"""

from __future__ import annotations

import json
from typing import Any

import forge
from forge.types import Message
from tests.hostile import HostileServer, Reply, provider_config, sse

TOOL = forge.Tool("lookup", "Look something up.",
                  {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]})

THINKING_A = {"type": "thinking", "thinking": "First, the plan.", "signature": "EqQBCkgIARAB+sigA/=="}
THINKING_B = {"type": "thinking", "thinking": "Then, a check.", "signature": "EpwBCkYIARAB+sigB/=="}
REDACTED = {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpP"}
TOOL_USE = {"type": "tool_use", "id": "toolu_01A", "name": "lookup", "input": {"q": "x"}}

ANTHROPIC_DONE = {"id": "msg_2", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
                  "content": [{"type": "text", "text": "Done."}], "stop_reason": "end_turn",
                  "stop_sequence": None, "usage": {"input_tokens": 10, "output_tokens": 2}}


def _anthropic_stream(blocks: list[dict[str, Any]]) -> list[bytes]:
    """The SSE events of a message with ``blocks``, as Anthropic streams them."""
    start = {**ANTHROPIC_DONE, "id": "msg_1", "content": [], "stop_reason": None}
    events: list[tuple[str, object]] = [("message_start", {"type": "message_start", "message": start})]
    for i, block in enumerate(blocks):
        kind = block["type"]
        empty = {"thinking": {"type": "thinking", "thinking": "", "signature": ""},
                 "tool_use": {**block, "input": {}}, "text": {"type": "text", "text": ""}}.get(kind, block)
        events.append(("content_block_start", {"type": "content_block_start", "index": i, "content_block": empty}))
        deltas: list[dict[str, Any]] = []
        if kind == "thinking":
            text = block["thinking"]
            deltas = [{"type": "thinking_delta", "thinking": text[:5]},
                      {"type": "thinking_delta", "thinking": text[5:]},
                      {"type": "signature_delta", "signature": block["signature"]}]
        elif kind == "tool_use":
            deltas = [{"type": "input_json_delta", "partial_json": json.dumps(block["input"])}]
        elif kind == "text":
            deltas = [{"type": "text_delta", "text": block["text"]}]
        for delta in deltas:
            events.append(("content_block_delta", {"type": "content_block_delta", "index": i, "delta": delta}))
        events.append(("content_block_stop", {"type": "content_block_stop", "index": i}))
    events.append(("message_delta", {"type": "message_delta", "delta": {"stop_reason": "tool_use"},
                                     "usage": {"output_tokens": 30}}))
    events.append(("message_stop", {"type": "message_stop"}))
    return sse(*events)


async def _anthropic_follow_up(first: Reply, stream: bool) -> tuple[forge.Response, dict[str, Any]]:
    async with HostileServer() as srv:
        srv.push(first, Reply.http(200, ANTHROPIC_DONE))
        prompt = [Message("user", "Look up x.")]
        params: dict[str, Any] = {"tools": [TOOL], "reasoning_budget": 2048, "max_tokens": 4096}
        async with forge.Registry(config=provider_config("anthropic", srv.url())) as registry:
            if stream:
                async with registry.stream("anthropic:claude-sonnet-4-5", prompt, **params) as s:
                    reply = await s.collect()
            else:
                reply = await registry.invoke("anthropic:claude-sonnet-4-5", prompt, **params)
            call = reply.tool_calls[0]
            follow = [*prompt, reply.to_message(), Message("tool", "found", tool_call_id=call.id)]
            await registry.invoke("anthropic:claude-sonnet-4-5", follow, **params)
        body = srv.requests[1].json()
    assert isinstance(body, dict)
    return reply, body


async def test_anthropic_streamed_thinking_redacted_and_tool_use_go_back_in_order_unchanged() -> None:
    blocks = [THINKING_A, THINKING_B, REDACTED, TOOL_USE]
    reply, body = await _anthropic_follow_up(Reply.stream(_anthropic_stream(blocks)), stream=True)
    assert body["messages"][1] == {"role": "assistant", "content": blocks}
    assert REDACTED["data"] not in (reply.reasoning or "")


async def test_anthropic_thinking_between_text_blocks_goes_back_between_them() -> None:
    blocks = [THINKING_A, {"type": "text", "text": "Let me look. "}, THINKING_B,
              {"type": "text", "text": "Looking now."}, TOOL_USE]
    first = {**ANTHROPIC_DONE, "id": "msg_1", "content": blocks, "stop_reason": "tool_use"}
    _reply, body = await _anthropic_follow_up(Reply.http(200, first), stream=False)
    assert body["messages"][1] == {"role": "assistant", "content": blocks}


async def test_anthropic_streamed_thinking_between_text_blocks_goes_back_between_them() -> None:
    blocks = [THINKING_A, {"type": "text", "text": "Let me look. "}, REDACTED,
              {"type": "text", "text": "Looking now."}, TOOL_USE]
    _reply, body = await _anthropic_follow_up(Reply.stream(_anthropic_stream(blocks)), stream=True)
    assert body["messages"][1] == {"role": "assistant", "content": blocks}


def _gemini_chunk(parts: list[dict[str, Any]], finish: str | None = None) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    return {"candidates": [candidate], "modelVersion": "gemini-3-flash-preview", "responseId": "r1",
            "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 3, "totalTokenCount": 8}}


GEMINI_DONE = _gemini_chunk([{"text": "Done."}], "STOP")


async def _gemini_follow_up(chunks: list[dict[str, Any]]) -> tuple[forge.Response, dict[str, Any]]:
    async with HostileServer() as srv:
        srv.push(Reply.stream(sse(*chunks, crlf=True)), Reply.stream(sse(GEMINI_DONE, crlf=True)))
        prompt = [Message("user", "Look up x.")]
        config = provider_config("google", srv.url(), api_version="v1beta")
        async with forge.Registry(config=config) as registry:
            async with registry.stream("google:gemini-3-flash-preview", prompt, tools=[TOOL]) as s:
                reply = await s.collect()
            results = [Message("tool", "found", tool_call_id=c.id) for c in reply.tool_calls]
            async with registry.stream("google:gemini-3-flash-preview",
                                       [*prompt, reply.to_message(), *results], tools=[TOOL]) as s:
                await s.collect()
        body = srv.requests[1].json()
    assert isinstance(body, dict)
    return reply, body


async def test_gemini_signature_arriving_on_a_later_function_call_part_goes_back_on_it() -> None:
    chunks = [
        _gemini_chunk([{"text": "Planning the lookup.", "thought": True}]),
        _gemini_chunk([{"functionCall": {"name": "lookup", "args": {"q": "x"}}}]),
        _gemini_chunk([{"functionCall": {"name": "lookup", "args": {"q": "y"}}, "thoughtSignature": "c2lnLTI="},
                       {"functionCall": {"name": "lookup", "args": {"q": "z"}}}], "STOP"),
    ]
    reply, body = await _gemini_follow_up(chunks)
    assert [c.signature for c in reply.tool_calls] == [None, "c2lnLTI=", None]
    parts = body["contents"][1]["parts"]
    calls = [(p["functionCall"]["args"]["q"], p.get("thoughtSignature")) for p in parts if "functionCall" in p]
    assert [(q, sig is not None) for q, sig in calls] == [("x", False), ("y", True), ("z", False)]
    assert calls[1][1].replace("-", "+").replace("_", "/").rstrip("=") == "c2lnLTI"


async def test_gemini_text_signature_arriving_in_a_last_empty_part_goes_back_on_the_text() -> None:
    chunks = [
        _gemini_chunk([{"text": "Hel"}]),
        _gemini_chunk([{"text": "lo."}]),
        _gemini_chunk([{"text": "", "thoughtSignature": "dGV4dC1zaWc="}], "STOP"),
    ]
    reply, body = await _gemini_follow_up(chunks)
    assert reply.text == "Hello."
    [part] = [p for p in body["contents"][1]["parts"] if not p.get("thought")]
    assert part["text"] == "Hello."
    assert part["thoughtSignature"].replace("-", "+").replace("_", "/").rstrip("=") == "dGV4dC1zaWc"


RS_ITEM = {"id": "rs_0abc", "type": "reasoning", "encrypted_content": "gAAAAABo-opaque+/==",
           "summary": [{"type": "summary_text", "text": "Need to look it up."}]}
FC_ITEM = {"id": "fc_0abc", "type": "function_call", "status": "completed", "call_id": "call_1",
           "name": "lookup", "arguments": '{"q":"x"}'}


def _responses_stream() -> list[bytes]:
    base = {"id": "resp_1", "object": "response", "status": "in_progress", "model": "gpt-5-mini", "output": []}
    done = {**base, "status": "completed", "output": [RS_ITEM, FC_ITEM],
            "usage": {"input_tokens": 9, "output_tokens": 20, "total_tokens": 29,
                      "output_tokens_details": {"reasoning_tokens": 16},
                      "input_tokens_details": {"cached_tokens": 0}}}
    events: list[tuple[str, object]] = [
        ("response.created", {"type": "response.created", "response": base, "sequence_number": 0}),
        ("response.output_item.added", {"type": "response.output_item.added", "output_index": 0,
                                        "item": {**RS_ITEM, "summary": []}, "sequence_number": 1}),
        ("response.output_item.done", {"type": "response.output_item.done", "output_index": 0, "item": RS_ITEM,
                                       "sequence_number": 2}),
        ("response.output_item.added", {"type": "response.output_item.added", "output_index": 1,
                                        "item": {**FC_ITEM, "arguments": "", "status": "in_progress"},
                                        "sequence_number": 3}),
        ("response.function_call_arguments.delta", {"type": "response.function_call_arguments.delta",
                                                    "item_id": "fc_0abc", "output_index": 1,
                                                    "delta": '{"q":"x"}', "sequence_number": 4}),
        ("response.output_item.done", {"type": "response.output_item.done", "output_index": 1, "item": FC_ITEM,
                                       "sequence_number": 5}),
        ("response.completed", {"type": "response.completed", "response": done, "sequence_number": 6}),
    ]
    return sse(*events)


async def test_responses_streamed_encrypted_reasoning_item_goes_back_before_its_call() -> None:
    done = {"id": "resp_2", "object": "response", "status": "completed", "model": "gpt-5-mini",
            "output": [{"id": "msg_1", "type": "message", "role": "assistant", "status": "completed",
                        "content": [{"type": "output_text", "text": "Done.", "annotations": []}]}],
            "usage": {"input_tokens": 9, "output_tokens": 2, "total_tokens": 11}}
    extra = {"include": ["reasoning.encrypted_content"], "store": False}
    async with HostileServer() as srv:
        srv.push(Reply.stream(_responses_stream()), Reply.http(200, done))
        config = provider_config("openai", srv.url("/v1"), api="responses")
        prompt = [Message("user", "Look up x.")]
        async with forge.Registry(config=config) as registry:
            async with registry.stream("openai:gpt-5-mini", prompt, tools=[TOOL], extra=extra,
                                       reasoning_effort="low") as s:
                reply = await s.collect()
            follow = [*prompt, reply.to_message(), Message("tool", "found", tool_call_id="call_1")]
            await registry.invoke("openai:gpt-5-mini", follow, tools=[TOOL], extra=extra, reasoning_effort="low")
        body = srv.requests[1].json()
    assert isinstance(body, dict)
    items = body["input"]
    assert [i.get("type") for i in items] == [None, "reasoning", "function_call", "function_call_output"] or \
        [i.get("type", "message") for i in items] == ["message", "reasoning", "function_call", "function_call_output"]
    assert {k: items[1].get(k) for k in RS_ITEM} == RS_ITEM
    assert {k: items[2][k] for k in ("id", "call_id", "name", "arguments")} == \
        {k: FC_ITEM[k] for k in ("id", "call_id", "name", "arguments")}
