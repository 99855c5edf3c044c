"""Ollama /api/chat requests: a forge Request as the body the ollama client sends (options, think, tools)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ollama._types import ChatRequest, Options

from forge.providers import _ollama_private as ollama_private
from forge.providers._common import (
    reasoning_effort,
)
from forge.providers._mapping import sampling
from forge.types import Message, Request

_PROVIDER = "ollama"
_TOP_LEVEL = frozenset(ChatRequest.model_fields) - {"model", "messages", "stream"}
_OPTION_FIELDS = frozenset(Options.model_fields)
_ANNOTATIONS = frozenset({"title", "$schema", "$comment", "examples"})
_LEVELLED_THINKING = re.compile(r"gpt-oss")  # models that take think="low"/"medium"/"high"


# ---------------------------------------------------------------------- request


def build_ollama_chat_payload(model: str, kwargs: Mapping[str, Any], *, stream: bool) -> dict[str, Any]:
    """The JSON body ``ollama.AsyncClient.chat(model, **kwargs, stream=...)`` sends.

    Mirrors ``AsyncClient.chat`` (ollama 0.6.3, ``_client.py:1040``) with the
    client's own pieces: ``_types.ChatRequest`` and the private helpers
    ``_client._copy_messages`` / ``_client._copy_tools``, dumped with
    ``model_dump(exclude_none=True)``; the caller hands the dict to the
    client's httpx client as ``json=`` exactly as ``AsyncClient._request`` does.
    """
    return ChatRequest(
        model=model,
        messages=list(ollama_private.copy_messages(kwargs.get("messages"))),
        tools=list(ollama_private.copy_tools(kwargs.get("tools"))),
        stream=stream,
        think=kwargs.get("think"),
        logprobs=kwargs.get("logprobs"),
        top_logprobs=kwargs.get("top_logprobs"),
        format=kwargs.get("format"),
        options=kwargs.get("options"),
        keep_alive=kwargs.get("keep_alive"),
    ).model_dump(exclude_none=True)


def _check_tool_choice(request: Request) -> None:
    choice = request.tool_choice
    if request.tools and choice not in (None, "auto", "none"):
        forced = "a call to some tool" if choice == "required" else f"a call to {choice!r}"
        raise ValueError(
            f"tool_choice={choice!r}: Ollama has no tool_choice, so it cannot force {forced}; "
            "use 'auto' (or leave it unset) and check response.tool_calls, or 'none' to send no tools"
        )


def _merge_extra(extra: Mapping[str, Any], kwargs: dict[str, Any], options: dict[str, Any]) -> None:
    """``extra``: chat fields at the top level, model options (also under ``options``) in ``options``."""
    for key, value in extra.items():
        if key == "options":
            if not isinstance(value, Mapping):
                raise TypeError(f"extra['options'] must be a mapping, got {type(value).__name__}")
            options.update(value)
        elif key in _TOP_LEVEL:
            kwargs[key] = value
        elif key in _OPTION_FIELDS:
            options[key] = value
        else:
            raise ValueError(
                f"extra[{key!r}] is not an Ollama chat field or model option; "
                f"top-level fields: {', '.join(sorted(_TOP_LEVEL))}; put other model options "
                "under extra['options']"
            )


def ollama_chat_args(request: Request, *, keep_alive: object = None) -> tuple[str, dict[str, Any]]:
    """Translate a forge Request into ``AsyncClient.chat(model, **kwargs)`` arguments."""
    options = sampling(request, max_tokens="num_predict", stop="stop")
    kwargs: dict[str, Any] = {"messages": _messages(request)}
    _check_tool_choice(request)
    think = _think(request)
    if think is not None:
        kwargs["think"] = think
    if request.tools and request.tool_choice != "none":
        kwargs["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": t.name,
                    "description": t.description,
                    "parameters": dict(t.parameters),
                },
            }
            for t in request.tools
        ]
    fmt = request.response_format
    if fmt is not None and fmt.type == "json":
        kwargs["format"] = "json"
    elif fmt is not None and fmt.type == "json_schema" and fmt.schema is not None:
        kwargs["format"] = dict(fmt.schema)
    if keep_alive is not None:
        kwargs["keep_alive"] = keep_alive
    _merge_extra(request.extra, kwargs, options)
    if options:
        kwargs["options"] = options
    return request.model, kwargs


def _think(request: Request) -> bool | str | None:
    """``think``: on or off, or the effort string for the models that take one (gpt-oss)."""
    effort = reasoning_effort(request)
    if effort is None:
        return None
    if effort == "none":
        return False
    return effort if _LEVELLED_THINKING.search(request.model) else True


def check_tools_survive(request: Request, payload: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` naming the first tool-schema field the ollama client dropped.

    Ollama's ``Tool`` model keeps only ``type``, ``items``, ``description`` and
    ``enum`` per property (no nested ``properties``, ``anyOf``, ``minimum``...);
    what it drops would silently stop constraining the model. Pure annotations
    (``title``, ``$schema``, ``$comment``, ``examples``) and
    ``additionalProperties: false`` may go.
    """
    sent = payload.get("tools") or []
    for i, (tool, wire) in enumerate(zip(request.tools, sent, strict=False)):
        kept = (wire.get("function") or {}).get("parameters") or {}
        lost = _first_dropped(tool.parameters, kept, f"tools[{i}].parameters")
        if lost is not None:
            raise ValueError(
                f"{lost} (tool {tool.name!r}) cannot be expressed in an Ollama tool schema, which keeps "
                "only type, items, description and enum per property; flatten the parameters or "
                "describe the constraint in a description"
            )


def _first_dropped(original: object, kept: object, path: str) -> str | None:
    if isinstance(original, Mapping):
        if not isinstance(kept, Mapping):
            return path
        for key, value in original.items():
            if key in _ANNOTATIONS or (key == "additionalProperties" and value is False):
                continue
            if key not in kept:
                return f"{path}.{key}"
            lost = _first_dropped(value, kept[key], f"{path}.{key}")
            if lost is not None:
                return lost
        return None
    if isinstance(original, list) and isinstance(kept, list) and len(original) == len(kept):
        for j, (a, b) in enumerate(zip(original, kept, strict=True)):
            lost = _first_dropped(a, b, f"{path}[{j}]")
            if lost is not None:
                return lost
        return None
    return None if original == kept else path


def _messages(request: Request) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if request.system:
        out.append({"role": "system", "content": request.system})
    call_names: dict[str, str] = {}
    for m in request.messages:
        out.append(_message(m, call_names))
    return out


def _message(m: Message, call_names: dict[str, str]) -> dict[str, Any]:
    msg: dict[str, Any] = {"role": m.role, "content": m.content}
    if m.role == "assistant":
        if m.reasoning:
            msg["thinking"] = m.reasoning
        if m.tool_calls:
            msg["tool_calls"] = [
                {"function": {"name": c.name, "arguments": dict(c.arguments)}} for c in m.tool_calls
            ]
            call_names.update((c.id, c.name) for c in m.tool_calls)
    elif m.role == "tool":
        name = m.name or call_names.get(m.tool_call_id or "")
        if name:
            msg["tool_name"] = name
    return msg
