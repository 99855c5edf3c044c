"""Anthropic Messages requests: a forge Request as the body the client sends (thinking, tools, caching)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from forge.errors import BadRequestError
from forge.providers._common import (
    reasoning_budget,
)
from forge.providers._mapping import sampling, tool_specs
from forge.types import (
    Message,
    ReasoningBlock,
    Request,
    own_blocks,
)

DEFAULT_MAX_TOKENS = 4096
"""``max_tokens`` sent when the request sets none (Anthropic requires one); with thinking
on, the thinking budget is added to it."""

MIN_THINKING_BUDGET = 1024
"""The smallest ``budget_tokens`` Anthropic accepts."""


# --------------------------------------------------------------------------- request


_JSON_INSTRUCTION = (
    "Respond with a single valid JSON object and nothing else: no prose, no code fences."
)


def _closed(schema: object) -> Any:
    """``schema`` with ``additionalProperties: false`` on every object that does not set it."""
    if isinstance(schema, Mapping):
        out = {k: _closed(v) for k, v in schema.items()}
        if out.get("type") == "object" and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_closed(v) for v in schema]
    return schema


def _system(request: Request) -> str:
    """The system prompt: ``system``, the system messages, the JSON instruction of ``json`` output."""
    system_parts = [request.system] if request.system else []
    system_parts.extend(m.content for m in request.messages if m.role == "system" and m.content)
    fmt = request.response_format
    if fmt is not None and fmt.type == "json":
        system_parts.append(_JSON_INSTRUCTION)
    return "\n\n".join(system_parts)


def _params(request: Request) -> dict[str, Any]:
    params: dict[str, Any] = {
        "model": request.model,
        "max_tokens": request.max_tokens if request.max_tokens is not None else DEFAULT_MAX_TOKENS,
        "messages": _messages(request.messages),
    }
    _add_thinking(params, request)
    if _thinking_on(request.extra.get("thinking", params.get("thinking"))):
        _check_tool_turn_thinking(request)
    system = _system(request)
    if system:
        params["system"] = system
    fmt = request.response_format
    if request.stop:
        params["stop_sequences"] = list(request.stop)
    if fmt is not None and fmt.type == "json_schema" and fmt.schema is not None:
        params["output_config"] = {"format": {"type": "json_schema", "schema": _closed(fmt.schema)}}
    if request.tools:
        params["tools"] = tool_specs(request, schema="input_schema")
    if request.tool_choice:
        params["tool_choice"] = _tool_choice(request.tool_choice)
    # anthropic 2.x dropped the sampling keywords from ``create``; the API still takes them.
    body = sampling(request, max_tokens=None, stop=None, seed=False)
    body.update(request.extra)
    if body:
        params["extra_body"] = body
    if request.cache is not None or any(m.cache_breakpoint for m in request.messages):
        _add_cache_control(params, request)
    return params


def _add_thinking(params: dict[str, Any], request: Request) -> None:
    budget = reasoning_budget(request)
    if budget == 0:
        params["thinking"] = {"type": "disabled"}
    elif budget is not None:
        params["thinking"] = _thinking(request, budget)
        if request.max_tokens is None:
            params["max_tokens"] = budget + DEFAULT_MAX_TOKENS  # thinking counts toward max_tokens


def _tool_choice(choice: str) -> dict[str, Any]:
    if choice in ("auto", "none"):
        return {"type": choice}
    if choice in ("required", "any"):
        return {"type": "any"}
    return {"type": "tool", "name": choice}


def _thinking(request: Request, budget: int) -> dict[str, Any]:
    if budget < MIN_THINKING_BUDGET:
        raise BadRequestError(
            f"anthropic needs a thinking budget of at least {MIN_THINKING_BUDGET} tokens; "
            f"reasoning_budget={budget} (use 0 to turn thinking off).",
            provider="anthropic",
            model=request.model,
        )
    if request.max_tokens is not None and request.max_tokens <= budget:
        raise BadRequestError(
            f"anthropic counts thinking toward max_tokens, so max_tokens ({request.max_tokens}) must be "
            f"larger than the thinking budget ({budget}, from reasoning_budget / reasoning_effort).",
            provider="anthropic",
            model=request.model,
        )
    # Anthropic rejects thinking with a changed temperature, a top_p below 0.95, or a forced tool.
    if request.temperature is not None and request.temperature != 1:
        raise BadRequestError(
            f"anthropic does not allow temperature={request.temperature} with thinking on (only 1); "
            "drop temperature or turn thinking off (reasoning_budget=0).",
            provider="anthropic",
            model=request.model,
        )
    if request.top_p is not None and not 0.95 <= request.top_p <= 1:
        raise BadRequestError(
            f"anthropic allows top_p only between 0.95 and 1 with thinking on; got top_p={request.top_p}.",
            provider="anthropic",
            model=request.model,
        )
    if request.tools and request.tool_choice not in (None, "auto", "none"):
        raise BadRequestError(
            f"anthropic cannot force tool use (tool_choice={request.tool_choice!r}) with thinking on; "
            "use tool_choice='auto' or turn thinking off (reasoning_budget=0).",
            provider="anthropic",
            model=request.model,
        )
    return {"type": "enabled", "budget_tokens": budget}


def _thinking_on(value: object) -> bool:
    return isinstance(value, Mapping) and value.get("type") in ("enabled", "adaptive")


def _check_tool_turn_thinking(request: Request) -> None:
    """With thinking on, the assistant turn of an unfinished tool loop must start with its thinking.

    Anthropic refuses it otherwise ("Expected `thinking` or `redacted_thinking`, but
    found `tool_use`"); this happens when the turn came from another provider (whose
    signatures cannot be sent) or was built by hand without ``reasoning_blocks``.
    """
    messages = [m for m in request.messages if m.role != "system"]
    end = len(messages)
    while end and messages[end - 1].role == "tool":
        end -= 1
    if end == len(messages) or not end or messages[end - 1].role != "assistant":
        return
    turn = messages[end - 1]
    if not turn.tool_calls or own_blocks(turn.reasoning_blocks, "anthropic") or (
        not turn.reasoning_blocks and turn.reasoning_signature
    ):
        return
    came_from = sorted({b.provider for b in turn.reasoning_blocks})
    why = f" (its reasoning came from {', '.join(came_from)}, whose signatures anthropic cannot take)" \
        if came_from else ""
    raise BadRequestError(
        "anthropic refuses thinking on a tool loop whose last assistant turn has no anthropic thinking "
        f"block{why}; send that turn as reply.to_message() from an anthropic reply, or turn thinking off "
        "for this call (reasoning_budget=0) and on again after the tool loop.",
        provider="anthropic",
        model=request.model,
    )


def _assistant_blocks(m: Message) -> list[dict[str, Any]]:
    """An assistant turn's content blocks, in the reply's order: its own reasoning blocks go back
    at their positions, the answer text split where they stood (``text_offset``), text before the
    tool calls of the same gap, tool calls in order."""
    reasoning = own_blocks(m.reasoning_blocks, "anthropic")
    if not m.reasoning_blocks and m.reasoning_signature:  # a hand-built turn: one thinking block
        reasoning = [ReasoningBlock("anthropic", "thinking", m.reasoning or "", m.reasoning_signature)]
    text, calls = m.content or "", list(m.tool_calls)
    blocks: list[dict[str, Any]] = []
    cursor = 0

    def fill(upto: int | None, end: int) -> None:  # text up to char ``end``, calls up to block ``upto``
        nonlocal cursor
        if end > cursor:
            blocks.append({"type": "text", "text": text[cursor:end]})
            cursor = end
        while calls and (upto is None or len(blocks) < upto):
            tc = calls.pop(0)
            blocks.append({"type": "tool_use", "id": tc.id, "name": tc.name, "input": dict(tc.arguments)})

    for block in reasoning:
        fill(block.position, min(max(block.text_offset, cursor), len(text)))
        if block.kind == "redacted":
            blocks.append({"type": "redacted_thinking", "data": block.data or ""})
        else:
            blocks.append({"type": "thinking", "thinking": block.text, "signature": block.signature or ""})
    fill(None, len(text))
    return blocks


def _add_tool_result(out: list[dict[str, Any]], m: Message) -> None:
    """A tool result joins the user turn of the results before it, as Anthropic wants them."""
    block = {"type": "tool_result", "tool_use_id": m.tool_call_id or "", "content": m.content}
    last = out[-1] if out else None
    if (
        last is not None
        and last["role"] == "user"
        and isinstance(last["content"], list)
        and (last["content"] and last["content"][-1].get("type") == "tool_result")
    ):
        last["content"].append(block)
    else:
        out.append({"role": "user", "content": [block]})


def _messages(messages: tuple[Message, ...]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for m in messages:
        if m.role == "system":
            continue  # folded into ``system``
        if m.role == "tool":
            _add_tool_result(out, m)
        elif m.role == "assistant" and (
            m.tool_calls or own_blocks(m.reasoning_blocks, "anthropic")
            or (m.reasoning_signature and not m.reasoning_blocks)
        ):
            out.append({"role": "assistant", "content": _assistant_blocks(m)})
        else:
            out.append({"role": m.role, "content": m.content})
    return out


def _add_cache_control(params: dict[str, Any], request: Request) -> None:
    """Render ``request.cache`` and ``Message.cache_breakpoint`` as ``cache_control`` breakpoints.

    The system prompt becomes one text block; the last tool and the last block of
    each marked message carry ``{"type": "ephemeral"}`` (``"ttl": "1h"`` for an hour).
    """
    hints = request.cache
    control: dict[str, Any] = {"type": "ephemeral"}
    if hints is not None and hints.ttl_seconds is not None and hints.ttl_seconds >= 3600:
        control["ttl"] = "1h"
    if hints is not None and hints.system and isinstance(params.get("system"), str):
        params["system"] = [{"type": "text", "text": params["system"], "cache_control": control}]
    if hints is not None and hints.tools and params.get("tools"):
        params["tools"][-1] = {**params["tools"][-1], "cache_control": control}
    rendered = params["messages"]
    for i, m in enumerate(request.messages):
        if not m.cache_breakpoint:
            continue
        # Where forge message i ended up (tool results merge, system messages fold away).
        at = len(_messages(request.messages[: i + 1])) - 1
        if at >= 0:
            rendered[at] = _marked(rendered[at], control)


def _marked(message: dict[str, Any], control: dict[str, Any]) -> dict[str, Any]:
    """The rendered message with ``cache_control`` on its last block (a text becomes one block)."""
    content = message["content"]
    if isinstance(content, str) and content:
        return {**message, "content": [{"type": "text", "text": content, "cache_control": control}]}
    if isinstance(content, list) and content:
        return {**message, "content": [*content[:-1], {**content[-1], "cache_control": control}]}
    return message
