"""OpenAI Responses API requests: a forge Request as the /v1/responses body (input, reasoning, tools)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from forge.errors import BadRequestError
from forge.providers._common import (
    check_schema_name,
    reasoning_effort,
)
from forge.providers._mapping import sampling
from forge.types import (
    Message,
    ReasoningBlock,
    Request,
    own_blocks,
)

if TYPE_CHECKING:
    pass


_PROVIDER = "openai"


# --------------------------------------------------------------------------- request


def responses_params(request: Request) -> dict[str, Any]:
    """The ``client.responses.create(**params)`` arguments for a forge Request."""
    if request.stop:
        raise BadRequestError(
            f"The OpenAI Responses API has no stop sequences, so stop={list(request.stop)!r} cannot be "
            "sent; drop it or use providers.openai.api = 'chat'.",
            provider=_PROVIDER,
            model=request.model,
        )
    check_schema_name(request)
    chained = "previous_response_id" in request.extra
    params: dict[str, Any] = {"model": request.model, "input": _input(request.messages, chained)}
    if request.system:
        params["instructions"] = request.system
    params.update(sampling(request, max_tokens="max_output_tokens", stop=None, seed=False))
    fmt = request.response_format
    if fmt is not None and fmt.type != "text":
        if fmt.type == "json_schema" and fmt.schema is not None:
            schema = dict(fmt.schema)
            params["text"] = {
                "format": {"type": "json_schema", "name": fmt.name, "schema": schema, "strict": fmt.strict}
            }
        else:
            params["text"] = {"format": {"type": "json_object"}}
    if request.tools:
        tools = []
        for tool in request.tools:
            spec: dict[str, Any] = {"type": "function", "name": tool.name}
            if tool.description:
                spec["description"] = tool.description
            spec["parameters"] = dict(tool.parameters)
            spec["strict"] = False
            tools.append(spec)
        params["tools"] = tools
    if request.tool_choice:
        choice = request.tool_choice
        params["tool_choice"] = (
            choice if choice in ("auto", "none", "required") else {"type": "function", "name": choice}
        )
    effort = reasoning_effort(request)
    extra = dict(request.extra)
    if effort is not None:
        reasoning: dict[str, Any] = {"effort": effort}
        more = extra.pop("reasoning", None)
        if isinstance(more, Mapping):
            reasoning.update(more)
        params["reasoning"] = reasoning
    if extra:
        params["extra_body"] = extra
    return params


def _input(messages: tuple[Message, ...], chained: bool = False) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for m in messages:
        if m.role == "tool":
            call_id = m.tool_call_id or ""
            items.append({"type": "function_call_output", "call_id": call_id, "output": m.content})
        elif m.role == "assistant" and (m.tool_calls or own_blocks(m.reasoning_blocks, _PROVIDER)):
            turn: list[dict[str, Any]] = []
            if m.content:
                turn.append({"role": "assistant", "content": m.content})
            for tc in m.tool_calls:
                call: dict[str, Any] = {
                    "type": "function_call",
                    "call_id": tc.id,
                    "name": tc.name,
                    "arguments": tc.raw_arguments or json.dumps(tc.arguments),
                }
                if tc.item_id:  # the API pairs the call with its reasoning item by this id
                    call["id"] = tc.item_id
                turn.append(call)
            if not chained:  # previous_response_id: the server holds these items already
                if m.reasoning_blocks:
                    for block in own_blocks(m.reasoning_blocks, _PROVIDER):
                        if block.kind == "encrypted":
                            turn.insert(min(block.position, len(turn)), _reasoning_input(block))
                else:
                    turn[:0] = _reasoning_items(m.reasoning_signature)
            items.extend(turn)
        else:
            items.append({"role": m.role, "content": m.content})
    return items


def _reasoning_input(block: ReasoningBlock) -> dict[str, Any]:
    """A reasoning item as the reply had it: id, summary parts, encrypted content."""
    item: dict[str, Any] = {
        "type": "reasoning",
        "id": block.id,
        "summary": [{"type": "summary_text", "text": t} for t in block.parts],
    }
    if block.data:
        item["encrypted_content"] = block.data
    return item


def _reasoning_block(item: Mapping[str, Any], position: int) -> ReasoningBlock:
    summary = [s.get("text") or "" for s in item.get("summary") or () if isinstance(s, dict)]
    return ReasoningBlock(
        _PROVIDER,
        "encrypted",
        "\n\n".join(_reasoning_texts(item)),
        data=item.get("encrypted_content") or None,
        id=item.get("id"),
        parts=tuple(summary),
        position=position,
    )


def _reasoning_items(signature: str | None) -> list[dict[str, Any]]:
    """The reasoning items a Responses reply kept in ``reasoning_signature`` (none for other providers')."""
    if not signature or signature[:1] != "[":
        return []
    try:
        items = json.loads(signature)
    except ValueError:
        return []
    if not isinstance(items, list):
        return []
    return [i for i in items if isinstance(i, dict) and i.get("type") == "reasoning" and i.get("id")]


def _reasoning_texts(item: Mapping[str, Any]) -> list[str]:
    texts = [s.get("text") or "" for s in item.get("summary") or () if isinstance(s, dict)]
    texts.extend(c.get("text") or "" for c in item.get("content") or () if isinstance(c, dict))
    return [t for t in texts if t]
