"""Real reasoning round trips replayed through forge: the second call is built by forge.

Each recording in ../shared/cassettes-real with a thinking / thought-signature /
encrypted-reasoning round trip holds two calls. The first is replayed through
forge; its Response, turned into the assistant turn with ``reply.to_message()``,
plus the recorded tool result (or user turn), makes forge's second request. That
request must carry the reasoning back exactly as the vendor's own client did in
the recording: every thinking / redacted_thinking block with its signature or
data, in place (Anthropic); the thoughtSignature on each function-call part, the
same bytes (Gemini); each reasoning item with its id, summary and encrypted
content (OpenAI Responses).
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

import forge
from forge.testing._cassette_files import load_interactions
from forge.testing.cassettes import replay_config, use_cassette
from forge.types import Message
from tests._services import require_real_recordings
from tests.test_real_cassettes import REAL

pytestmark = pytest.mark.filterwarnings("ignore:The model .* is deprecated:DeprecationWarning")


@pytest.fixture(autouse=True)
def _recordings() -> None:
    """Skip locally (fail in CI) when ../shared/cassettes-real is not beside the clone."""
    require_real_recordings()


def _body(item: dict[str, Any]) -> dict[str, Any]:
    body = item["request"]["body"]
    return json.loads(body if isinstance(body, (str, bytes)) else json.dumps(body))


async def _round_trip(name: str, provider: str, model: str, first: dict[str, Any], stream: bool,
                      after: list[Message], **params: Any) -> tuple[forge.Response, dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    def capture(new: Any, recorded: Any) -> None:  # a vcrpy matcher that only looks
        sent.append(json.loads(new.body) if new.body else {})

    section: dict[str, object] = {"retry": {"max_attempts": 1}}
    if provider == "openai":
        section["api"] = "responses"
    if provider == "google":
        section["api_version"] = "v1beta"
    config = replay_config({"providers": {provider: section}})
    prompt = [Message("user", _user_text(provider, first))]
    async with forge.Registry(config=config) as registry:
        with use_cassette(REAL / name, match_on=("method", "path", capture)) as cassette:
            if stream:
                async with registry.stream(f"{provider}:{model}", prompt, **params) as s:
                    reply = await s.collect()
            else:
                reply = await registry.invoke(f"{provider}:{model}", prompt, **params)
            messages = [*prompt, reply.to_message(), *after]
            if stream:
                async with registry.stream(f"{provider}:{model}", messages, **params) as s:
                    await s.collect()
            else:
                await registry.invoke(f"{provider}:{model}", messages, **params)
            assert cassette.play_count == 2
    return reply, sent[-1]


def _user_text(provider: str, body: dict[str, Any]) -> str:
    if provider == "google":
        return body["contents"][0]["parts"][0]["text"]
    if provider == "openai":
        return body["input"][0]["content"]
    content = body["messages"][0]["content"]
    return content if isinstance(content, str) else content[0]["text"]


def _tools(body: dict[str, Any], provider: str) -> list[forge.Tool]:
    if provider == "google":
        decls = [d for t in body.get("tools") or () for d in t.get("functionDeclarations") or ()]
        return [forge.Tool(d["name"], d.get("description") or "",
                           d.get("parameters") or d.get("parameters_json_schema") or {}) for d in decls]
    key = "parameters" if provider == "openai" else "input_schema"
    return [forge.Tool(t["name"], t.get("description") or "", t[key]) for t in body.get("tools") or ()]


def _thinking(content: list[dict[str, Any]]) -> list[tuple[int, dict[str, Any]]]:
    return [(i, b) for i, b in enumerate(content) if b.get("type") in ("thinking", "redacted_thinking")]


ANTHROPIC = ["anthropic/nonstream-thinking-tool-roundtrip.yaml", "anthropic/stream-thinking-tool-roundtrip.yaml",
             "anthropic/nonstream-redacted-thinking-roundtrip.yaml"]


@pytest.mark.parametrize("name", ANTHROPIC)
async def test_anthropic_thinking_goes_back_exactly(name: str) -> None:
    first, second = (_body(i) for i in load_interactions(REAL / name))
    after: list[Message] = []
    for block in second["messages"][2]["content"]:
        if block["type"] == "tool_result":
            after.append(Message("tool", block["content"], tool_call_id=block["tool_use_id"]))
        else:
            after.append(Message("user", block["text"]))
    params: dict[str, Any] = {"max_tokens": first["max_tokens"],
                              "reasoning_budget": first["thinking"]["budget_tokens"]}
    if first.get("tools"):
        params["tools"] = _tools(first, "anthropic")
    reply, sent = await _round_trip(name, "anthropic", first["model"], first, bool(first.get("stream")),
                                    after, **params)
    recorded = _thinking(second["messages"][1]["content"])
    assert recorded, name
    assert _thinking(sent["messages"][1]["content"]) == recorded
    assert reply.reasoning_blocks and all(b.provider == "anthropic" for b in reply.reasoning_blocks)
    redacted = [b.data for b in reply.reasoning_blocks if b.kind == "redacted"]
    assert not any(d and d in (reply.reasoning or "") for d in redacted)  # never shown as text


GEMINI = ["gemini/stream-sse-thought-signature-tool-roundtrip.yaml",
          "gemini/stream-jsonarray-thought-signature-tool-roundtrip-gzip.yaml"]


def _call_signatures(turn: dict[str, Any]) -> list[tuple[str, bytes]]:
    out = []
    for part in turn["parts"]:
        call = part.get("functionCall") or part.get("function_call")
        if call is not None:
            sig = part.get("thoughtSignature") or part.get("thought_signature") or ""
            out.append((call["name"], base64.urlsafe_b64decode(sig.replace("+", "-").replace("/", "_"))))
    return out


@pytest.mark.parametrize("name", GEMINI)
async def test_gemini_thought_signatures_go_back_on_their_parts(name: str) -> None:
    items = load_interactions(REAL / name)
    first, second = _body(items[0]), _body(items[1])
    model = items[0]["request"]["uri"].split("/models/")[1].split(":")[0]
    after = []
    for part in second["contents"][2]["parts"]:
        response = part.get("functionResponse") or part["function_response"]
        value = response["response"]
        after.append(Message("tool", json.dumps(value), name=response["name"]))
    _reply, sent = await _round_trip(name, "google", model, first, True, after, tools=_tools(first, "google"))
    recorded = _call_signatures(second["contents"][1])
    assert recorded and all(sig for _, sig in recorded)
    assert _call_signatures(sent["contents"][1]) == recorded


async def test_responses_reasoning_items_go_back_as_input_items() -> None:
    name = "openai/responses-nonstream-reasoning-tool-roundtrip.yaml"
    first, second = (_body(i) for i in load_interactions(REAL / name))
    after = [Message("tool", i["output"], tool_call_id=i["call_id"])
             for i in second["input"] if i.get("type") == "function_call_output"]
    extra = {"include": first["include"], "reasoning": first["reasoning"]}
    reply, sent = await _round_trip(name, "openai", first["model"], first, False, after,
                                    tools=_tools(first, "openai"), extra=extra)

    def reasoning(items: list[dict[str, Any]]) -> list[tuple[int, dict[str, Any]]]:
        return [(i, {k: item.get(k) for k in ("type", "id", "encrypted_content", "summary")})
                for i, item in enumerate(items) if item.get("type") == "reasoning"]

    recorded = reasoning(second["input"])
    assert recorded and recorded[0][1]["encrypted_content"]
    assert reasoning(sent["input"]) == recorded
    assert reply.reasoning_blocks[0].kind == "encrypted"

    def calls(items: list[dict[str, Any]]) -> list[tuple[int, dict[str, Any]]]:  # with the item id
        return [(i, {k: item.get(k) for k in ("type", "id", "call_id", "name", "arguments")})
                for i, item in enumerate(items) if item.get("type") == "function_call"]

    assert calls(second["input"]) and all(c["id"] for _, c in calls(second["input"]))
    assert calls(sent["input"]) == calls(second["input"])
