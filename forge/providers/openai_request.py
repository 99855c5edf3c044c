"""OpenAI Chat Completions requests: a forge Request as the body the client sends (docs/providers.md)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from forge.config import ProviderConfig
from forge.errors import (
    BadRequestError,
)
from forge.providers._common import (
    check_schema_name,
    reasoning_effort,
)
from forge.providers._mapping import sampling, tool_specs
from forge.types import Message, Request

# --------------------------------------------------------------------------- request


def _is_openai(config: ProviderConfig) -> bool:
    base_url = config.resolve_base_url()
    host = (urlsplit(base_url).hostname or "") if base_url else "api.openai.com"
    return host == "openai.com" or host.endswith(".openai.com")


def _max_tokens_param(config: ProviderConfig) -> str:
    chosen = config.options.get("max_tokens_param")
    if isinstance(chosen, str):
        return chosen
    return "max_completion_tokens" if _is_openai(config) else "max_tokens"


def _params(
    request: Request, max_tokens_param: str = "max_completion_tokens", max_stop: int | None = None
) -> dict[str, Any]:
    if max_stop is not None and len(request.stop) > max_stop:
        raise BadRequestError(
            f"openai takes at most {max_stop} stop sequences; got {len(request.stop)}.",
            provider="openai",
            model=request.model,
        )
    check_schema_name(request)
    params: dict[str, Any] = {"model": request.model, "messages": _messages(request)}
    params.update(sampling(request, max_tokens=max_tokens_param, stop="stop"))
    fmt = request.response_format
    if fmt is not None and fmt.type != "text":
        if fmt.type == "json_schema" and fmt.schema is not None:
            params["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": fmt.name, "schema": dict(fmt.schema), "strict": fmt.strict},
            }
        else:
            params["response_format"] = {"type": "json_object"}
    if request.tools:
        functions = tool_specs(request, schema="parameters")
        params["tools"] = [{"type": "function", "function": function} for function in functions]
    if request.tool_choice:
        choice = request.tool_choice
        params["tool_choice"] = (
            choice
            if choice in ("auto", "none", "required")
            else {"type": "function", "function": {"name": choice}}
        )
    effort = reasoning_effort(request)
    if effort is not None:
        params["reasoning_effort"] = effort
    if request.extra:
        params["extra_body"] = dict(request.extra)
    if request.cache is not None:
        _add_cache_hints(params, request)
    return params


def _messages(request: Request) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if request.system:
        out.append({"role": "system", "content": request.system})
    for m in request.messages:
        out.append(_message(m))
    return out


def _message(m: Message) -> dict[str, Any]:
    if m.role == "tool":
        return {"role": "tool", "tool_call_id": m.tool_call_id or "", "content": m.content}
    msg: dict[str, Any] = {"role": m.role, "content": m.content}
    if m.name:
        msg["name"] = m.name
    if m.role == "assistant" and m.tool_calls:
        msg["content"] = m.content or None
        msg["tool_calls"] = [
            {
                "id": tc.id,
                "type": "function",
                "function": {"name": tc.name, "arguments": tc.raw_arguments or json.dumps(tc.arguments)},
            }
            for tc in m.tool_calls
        ]
    return msg


def _add_cache_hints(params: dict[str, Any], request: Request) -> None:
    """``cache.key`` -> ``prompt_cache_key``; with ``prompt_cache_options`` in ``extra`` (the explicit
    caching API of gpt-5.6+), ``prompt_cache_breakpoint`` parts after the system prompt (``cache.system``)
    and after each message marked ``cache_breakpoint``."""
    hints = request.cache
    assert hints is not None
    if hints.key:
        params["prompt_cache_key"] = hints.key
    if "prompt_cache_options" not in request.extra:
        return
    marker: dict[str, Any] = {"mode": "explicit"}
    if hints.ttl_seconds is not None:
        marker["ttl"] = "12h" if hints.ttl_seconds >= 43200 else "30m"
    rendered = params["messages"]
    offset = 1 if request.system else 0
    if len(rendered) != offset + len(request.messages):
        return  # not one message per forge message: leave the breakpoints out rather than misplace them
    marked = [i + offset for i, m in enumerate(request.messages) if m.cache_breakpoint]
    if hints.system and offset:
        marked.insert(0, 0)
    for at in marked:
        content = rendered[at].get("content")
        if isinstance(content, str) and content:
            rendered[at] = {**rendered[at], "content": [
                {"type": "text", "text": content, "prompt_cache_breakpoint": marker}]}
