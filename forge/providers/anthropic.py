"""Anthropic adapter: the Messages API through the official ``anthropic`` async client.

The client builds, authenticates and sends the request and turns a non-2xx
answer into its typed error; forge reads the body itself. Non-streaming calls
use ``with_raw_response`` and one ``json.loads``; streams use
``with_streaming_response`` and forge's incremental :class:`~forge._wire.SSEDecoder`
(one JSON decode per event, no pydantic).

Request mapping (see docs/providers.md for the full table):

- ``system`` plus any ``system`` messages become the ``system`` string.
- ``max_tokens`` is required by Anthropic: 4096 when the request has none.
- ``stop`` -> ``stop_sequences``; ``seed`` has no Anthropic counterpart and is
  not sent (it is a best-effort knob everywhere).
- ``response_format`` json_schema -> ``output_config.format`` json_schema, with
  ``additionalProperties: false`` added to object schemas that do not say (the API
  requires it). Plain ``json`` has no schema to give, and structured outputs
  refuse an open ``{"type": "object"}``, so it becomes a system instruction.
  (plain json uses the schema ``{"type": "object"}``).
- ``tool`` messages become ``tool_result`` blocks; consecutive ones share one user turn.
- ``temperature`` / ``top_p`` go into the JSON body directly: the installed
  client no longer has keywords for them, the API still accepts them.
- ``extra`` is merged into the JSON body (``extra_body``) and wins over the
  fields forge sets, e.g. ``thinking``, ``cache_control``, ``metadata``.
- The timeout is always passed per call, so the client's "streaming is
  required for large max_tokens" guard never fires: forge's configured
  timeout is the one that applies.

- ``reasoning_budget`` (or the tier of ``reasoning_effort``, see
  ``REASONING_BUDGETS``) -> ``thinking={"type": "enabled", "budget_tokens": N}``
  (0 -> ``{"type": "disabled"}``); without ``max_tokens`` the budget is added
  to the default, since thinking counts toward it.

Reasoning: every ``thinking`` block (text and signature) and every
``redacted_thinking`` block (opaque ``data``, never shown as text) becomes a
:class:`~forge.types.ReasoningBlock` with its index among the content blocks,
in order, on ``Response.reasoning_blocks``; a stream reports thinking deltas and
``signature_delta`` as ``reasoning`` events (``index`` = the block) and each
finished block as a ``reasoning_done`` event. An assistant turn sends its
Anthropic blocks back unchanged in the same place (the API checks every
signature, and requires the thinking of an assistant turn that ended in
``tool_use`` when thinking is on); blocks from other providers are dropped.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

import anthropic
import httpx2

from forge._wire import SSEDecoder, SSEEvent, loads
from forge.config import ProviderConfig
from forge.errors import BadRequestError, ForgeError, ProviderConnectionError, ProviderError
from forge.providers._common import (
    check_stream_reply,
    client_connection_error,
    error_for_status,
    headers_dict,
    json_reply,
    make_httpx2_client,
    public_url,
    reasoning_budget,
    unclassified_error,
)
from forge.providers._stream import (
    EventBatches,
    ResponseOwner,
    ResponseStream,
    classified,
    decoded_events,
    http_response_of,
)
from forge.types import (
    FinishReason,
    Message,
    ReasoningBlock,
    Request,
    Response,
    StreamEvent,
    ToolCall,
    Usage,
    own_blocks,
)

__all__ = ["DEFAULT_MAX_TOKENS", "MIN_THINKING_BUDGET", "AnthropicProvider"]

DEFAULT_MAX_TOKENS = 4096
"""``max_tokens`` sent when the request sets none (Anthropic requires one); with thinking
on, the thinking budget is added to it."""

MIN_THINKING_BUDGET = 1024
"""The smallest ``budget_tokens`` Anthropic accepts."""

_FINISH: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


class AnthropicProvider:
    """:class:`~forge.types.Provider` for the Anthropic Messages API.

    Args:
        config: the ``anthropic`` provider section (key, base_url, timeouts).
        http_client: an ``httpx2.AsyncClient`` to use instead of forge's pooled
            one (tests inject one with a ``MockTransport``); the provider owns
            and closes it.

    Raises:
        ConfigError: no API key.
    """

    name = "anthropic"

    def __init__(self, config: ProviderConfig, *, http_client: httpx2.AsyncClient | None = None) -> None:
        self._timeout = httpx2.Timeout(config.timeout, connect=config.connect_timeout)
        api_key = config.require_api_key()  # always explicit: never fall back to profiles on disk
        self._http = http_client if http_client is not None else make_httpx2_client(config)
        self._client = anthropic.AsyncAnthropic(
            api_key=api_key,
            base_url=config.resolve_base_url(),
            timeout=self._timeout,
            max_retries=0,
            http_client=self._http,
        )
        self.base_url = public_url(self._client.base_url)

    async def complete(self, request: Request) -> Response:
        """Send ``request`` and return the whole reply.

        Raises:
            ProviderError: the call failed (already classified, see :meth:`classify`).
        """
        return await classified(self._complete(request), self._classifier(request.model))

    async def _complete(self, request: Request) -> Response:
        raw = await self._client.messages.with_raw_response.create(**_params(request), timeout=self._timeout)
        data = json_reply(
            raw.http_response, valid=_is_message, expected=_MESSAGE_SHAPE,
            provider=self.name, model=request.model, base_url=self.base_url,
        )
        return _response(data, request.model)

    def stream(self, request: Request) -> AsyncIterator[StreamEvent]:
        """Stream ``request``: text / reasoning / tool-call / usage events, then exactly one ``finish``.

        The request goes out on the first ``__anext__``; ``aclose()`` closes the HTTP
        response, from any task. Errors are raised already classified.
        """
        return ResponseStream(lambda owner: self._stream(request, owner))

    def _stream(self, request: Request, owner: ResponseOwner) -> EventBatches:
        def open_response() -> AbstractAsyncContextManager[httpx2.Response]:
            params = _params(request)
            params["stream"] = True
            return http_response_of(self._client.messages.with_streaming_response.create(**params))

        state = _MessageStream(request.model, self.base_url)
        return decoded_events(owner, open_response, state, self._classifier(request.model))

    def _classifier(self, model: str) -> Callable[[BaseException], ForgeError]:
        return lambda exc: self.classify(exc, model=model)

    def max_tokens_sent(self, request: Request) -> int | None:
        """The ``max_tokens`` sent for ``request`` (a default when unset): what the limiter reserves."""
        return int(_params(request)["max_tokens"])

    def classify(self, exc: BaseException, *, model: str | None = None) -> ForgeError:
        """Map an ``anthropic`` or transport exception onto the forge error tree.

        An in-band stream error arrives as an ``APIStatusError`` with status 200;
        it is classified by its error type (``overloaded_error`` -> OverloadedError).
        """
        if isinstance(exc, ForgeError):
            return exc
        if isinstance(exc, anthropic.APIStatusError):
            status = exc.status_code if exc.status_code >= 400 else None
            return error_for_status(
                status,
                f"anthropic said: {exc.api_message or exc.message}",
                code=exc.type,
                request_id=exc.request_id,
                headers=headers_dict(exc.response.headers),
                provider=self.name,
                model=model,
                base_url=self.base_url,
            )
        if isinstance(exc, anthropic.APIConnectionError):
            return client_connection_error(
                exc, timed_out=isinstance(exc, anthropic.APITimeoutError),
                provider=self.name, model=model, base_url=self.base_url,
            )
        return unclassified_error(exc, provider=self.name, model=model, base_url=self.base_url)

    async def aclose(self) -> None:
        """Close the vendor client and its connection pool."""
        await self._client.close()
        await self._http.aclose()


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


def _params(request: Request) -> dict[str, Any]:
    system_parts = [request.system] if request.system else []
    system_parts.extend(m.content for m in request.messages if m.role == "system" and m.content)
    params: dict[str, Any] = {
        "model": request.model,
        "max_tokens": request.max_tokens if request.max_tokens is not None else DEFAULT_MAX_TOKENS,
        "messages": _messages(request.messages),
    }
    budget = reasoning_budget(request)
    if budget == 0:
        params["thinking"] = {"type": "disabled"}
    elif budget is not None:
        params["thinking"] = _thinking(request, budget)
        if request.max_tokens is None:
            params["max_tokens"] = budget + DEFAULT_MAX_TOKENS  # thinking counts toward max_tokens
    if _thinking_on(request.extra.get("thinking", params.get("thinking"))):
        _check_tool_turn_thinking(request)
    fmt = request.response_format
    if fmt is not None and fmt.type == "json":
        system_parts.append(_JSON_INSTRUCTION)
    if system_parts:
        params["system"] = "\n\n".join(system_parts)
    if request.stop:
        params["stop_sequences"] = list(request.stop)
    if fmt is not None and fmt.type == "json_schema" and fmt.schema is not None:
        params["output_config"] = {"format": {"type": "json_schema", "schema": _closed(fmt.schema)}}
    if request.tools:
        tools = []
        for tool in request.tools:
            spec: dict[str, Any] = {"name": tool.name, "input_schema": dict(tool.parameters)}
            if tool.description:
                spec["description"] = tool.description
            tools.append(spec)
        params["tools"] = tools
    if request.tool_choice:
        choice = request.tool_choice
        if choice in ("auto", "none"):
            params["tool_choice"] = {"type": choice}
        elif choice in ("required", "any"):
            params["tool_choice"] = {"type": "any"}
        else:
            params["tool_choice"] = {"type": "tool", "name": choice}
    # anthropic 2.x dropped the sampling keywords from ``create``; the API still takes them.
    body: dict[str, Any] = {}
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.top_p is not None:
        body["top_p"] = request.top_p
    body.update(request.extra)
    if body:
        params["extra_body"] = body
    if request.cache is not None or any(m.cache_breakpoint for m in request.messages):
        _add_cache_control(params, request)
    return params


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


def _messages(messages: tuple[Message, ...]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for m in messages:
        if m.role == "system":
            continue  # folded into ``system``
        if m.role == "tool":
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
        if at < 0:
            continue
        content = rendered[at]["content"]
        if isinstance(content, str) and content:
            rendered[at] = {**rendered[at], "content": [{"type": "text", "text": content,
                                                          "cache_control": control}]}
        elif isinstance(content, list) and content:
            rendered[at] = {**rendered[at], "content": [*content[:-1], {**content[-1],
                                                                        "cache_control": control}]}


# --------------------------------------------------------------------------- response


_MESSAGE_SHAPE = "a Messages API JSON object with type 'message' and a 'content' list"


def _is_message(data: Mapping[str, Any]) -> bool:
    # docs.anthropic.com/en/api/messages: ``type`` is always "message" and ``content`` a list
    # of blocks; compatible servers that leave ``type`` out are accepted. An error body is
    # {"type": "error", "error": {...}} (raised by _response).
    kind = data.get("type")
    if kind == "error":
        return True
    return kind in ("message", None) and isinstance(data.get("content"), list)


def _response(data: Mapping[str, Any], model: str) -> Response:
    if data.get("type") == "error":
        raise _MessageStream(model)._error(data)
    texts: list[str] = []
    thinking: list[str] = []
    signature: str | None = None
    calls: list[ToolCall] = []
    blocks: list[ReasoningBlock] = []
    for position, block in enumerate(data.get("content") or ()):
        kind = block.get("type")
        if kind == "text":
            texts.append(block.get("text") or "")
        elif kind == "tool_use":
            args = block.get("input")
            args = args if isinstance(args, dict) else {}
            calls.append(ToolCall(block.get("id") or "", block.get("name") or "", args, json.dumps(args)))
        elif kind == "thinking":
            thinking.append(block.get("thinking") or "")
            signature = block.get("signature") or signature
            blocks.append(ReasoningBlock("anthropic", "thinking", block.get("thinking") or "",
                                         block.get("signature"), position=position,
                                         text_offset=sum(map(len, texts))))
        elif kind == "redacted_thinking":
            blocks.append(ReasoningBlock("anthropic", "redacted", data=block.get("data") or "",
                                         position=position, text_offset=sum(map(len, texts))))
    usage = data.get("usage")
    return Response(
        text="".join(texts),
        provider="anthropic",
        model=model,
        finish_reason=_finish(data.get("stop_reason")),
        usage=_usage(usage, usage) if usage else Usage(),
        tool_calls=tuple(calls),
        reasoning="".join(thinking) if thinking else None,
        reasoning_signature=signature,
        reasoning_blocks=tuple(blocks),
        id=data.get("id"),
        raw=data,
    )


def _finish(reason: object) -> FinishReason | None:
    if reason is None:
        return None
    return _FINISH.get(str(reason), "stop")


def _usage(start: Mapping[str, Any], latest: Mapping[str, Any]) -> Usage:
    """forge usage from ``message_start`` usage updated by a (cumulative) ``message_delta`` usage."""

    def pick(name: str) -> int:
        value = latest.get(name)
        if value is None:
            value = start.get(name)
        return int(value or 0)

    fresh = pick("input_tokens")
    written = pick("cache_creation_input_tokens")
    read = pick("cache_read_input_tokens")
    return Usage(
        input_tokens=fresh + written + read,
        output_tokens=pick("output_tokens"),
        cached_input_tokens=read,
        cache_write_tokens=written,
    )


class _MessageStream:
    """Turns Anthropic SSE events into forge stream events."""

    __slots__ = (
        "_base_url",
        "_blocks",
        "_finish",
        "_id",
        "_model",
        "_reasoning",
        "_stopped",
        "_text_chars",
        "_thoughts",
        "_tools",
        "_usage",
        "request_id",
    )

    def __init__(self, model: str, base_url: str = "") -> None:
        self._model = model
        self._base_url = base_url
        self._id = ""
        self._usage: Mapping[str, Any] = {}
        self._finish: FinishReason | None = None
        self._stopped = False
        self._blocks: dict[int, _ToolBlock] = {}  # by content-block index
        self._tools = 0
        self._reasoning: dict[int, _ThinkingBlock] = {}  # by content-block index
        self._thoughts = 0
        self._text_chars = 0  # answer text so far: where a thinking block stands in it
        self.request_id: str | None = None

    async def start(self, response: httpx2.Response) -> SSEDecoder:
        self.request_id = response.headers.get("request-id")
        await check_stream_reply(
            response, media_types=("text/event-stream",),
            expected="an SSE stream of Messages API events", provider="anthropic",
            model=self._model, base_url=self._base_url, in_band=self._error,
        )
        return SSEDecoder()

    def on_payload(self, sse: SSEEvent) -> list[StreamEvent]:
        return self.on_event(sse.event, sse.data)

    def on_event(self, event: str, data: str) -> list[StreamEvent]:
        if event == "ping" or not event or not data:
            return []  # the official client drops unnamed events too
        obj = loads(data)
        if event == "content_block_delta":
            delta = obj["delta"]
            kind = delta.get("type")
            if kind == "text_delta":
                if not delta["text"]:
                    return []
                self._text_chars += len(delta["text"])
                return [StreamEvent("text", delta["text"], raw=obj)]
            if kind == "input_json_delta":
                fragment = delta.get("partial_json")
                block = self._blocks.get(obj.get("index", 0))
                if not fragment or block is None:
                    return []
                block.parts.append(fragment)
                return [StreamEvent("tool_call_delta", fragment, index=block.ordinal, raw=obj)]
            if kind == "thinking_delta":
                thought = self._reasoning.get(obj.get("index", 0))
                if not delta["thinking"]:
                    return []
                ordinal = 0
                if thought is not None:
                    thought.parts.append(delta["thinking"])
                    ordinal = thought.ordinal
                return [StreamEvent("reasoning", delta["thinking"], index=ordinal, raw=obj)]
            if kind == "signature_delta":
                thought = self._reasoning.get(obj.get("index", 0))
                if thought is not None:
                    thought.signature = (thought.signature or "") + (delta.get("signature") or "")
                return [StreamEvent("reasoning", "", index=thought.ordinal if thought else 0, raw=obj,
                                    signature=delta.get("signature"))]
            return []
        if event == "content_block_start":
            return self._on_block_start(obj)
        if event == "content_block_stop":
            thought = self._reasoning.pop(obj.get("index", 0), None)
            if thought is not None:
                return [thought.done(obj)]
            block = self._blocks.pop(obj.get("index", 0), None)
            return [] if block is None else [block.done(obj, self._model)]
        if event == "message_start":
            message = obj.get("message") or {}
            self._id = message.get("id") or ""
            self._usage = message.get("usage") or {}
            return [StreamEvent("usage", usage=_usage(self._usage, self._usage), raw=obj)]
        if event == "message_delta":
            reason = (obj.get("delta") or {}).get("stop_reason")
            if reason:
                self._finish = _finish(reason)
            usage = obj.get("usage")
            if usage:
                return [StreamEvent("usage", usage=_usage(self._usage, usage), raw=obj)]
            return []
        if event == "message_stop":
            self._stopped = True
            return []
        if event == "error":
            raise self._error(obj)
        return []

    def _on_block_start(self, obj: Mapping[str, Any]) -> list[StreamEvent]:
        block = obj.get("content_block") or {}
        kind = block.get("type")
        if kind == "tool_use":
            ordinal = self._tools
            self._tools += 1
            call_id, name = block.get("id") or "", block.get("name") or ""
            self._blocks[obj.get("index", 0)] = _ToolBlock(ordinal, call_id, name, block.get("input") or {})
            return [StreamEvent("tool_call_start", index=ordinal, tool_call=ToolCall(call_id, name), raw=obj)]
        if kind == "text" and block.get("text"):
            self._text_chars += len(block["text"])
            return [StreamEvent("text", block["text"], raw=obj)]
        if kind in ("thinking", "redacted_thinking"):
            thought = _ThinkingBlock(self._thoughts, obj.get("index", 0), kind, block, self._text_chars)
            self._thoughts += 1
            self._reasoning[thought.position] = thought
            if kind == "thinking" and block.get("thinking"):
                return [StreamEvent("reasoning", block["thinking"], index=thought.ordinal, raw=obj)]
        return []

    def _error(self, obj: object) -> ProviderError:
        error = obj.get("error") if isinstance(obj, dict) else None
        error = error if isinstance(error, dict) else {}
        message = error.get("message") or "error during streaming"
        return error_for_status(
            None,
            f"anthropic said: {message}",
            code=error.get("type"),
            request_id=self.request_id,
            provider="anthropic",
            model=self._model,
        )

    def close(self) -> list[StreamEvent]:
        """End of body: the final ``finish`` event, or an error if the stream was cut short."""
        if not self._stopped and self._finish is None:
            raise ProviderConnectionError(
                "anthropic stream ended before message_stop; the connection was cut",
                provider="anthropic",
                model=self._model,
                request_id=self.request_id,
            )
        events = [thought.done(None) for _, thought in sorted(self._reasoning.items())]
        self._reasoning.clear()
        events += [block.done(None, self._model) for _, block in sorted(self._blocks.items())]
        self._blocks.clear()
        events.append(StreamEvent("finish", self._id, finish_reason=self._finish or "stop"))
        return events


@dataclass(slots=True)
class _ToolBlock:
    """A ``tool_use`` block being streamed: its tool-call ordinal and argument fragments."""

    ordinal: int
    id: str
    name: str
    start_input: object
    parts: list[str] = field(default_factory=list)

    def done(self, obj: object, model: str) -> StreamEvent:
        raw = "".join(self.parts) or json.dumps(self.start_input)
        call = ToolCall.from_json(self.id, self.name, raw, provider="anthropic", model=model)
        return StreamEvent("tool_call_done", index=self.ordinal, tool_call=call, raw=obj)


class _ThinkingBlock:
    """A ``thinking`` or ``redacted_thinking`` block being streamed."""

    __slots__ = ("data", "kind", "offset", "ordinal", "parts", "position", "signature")

    def __init__(self, ordinal: int, position: int, kind: str, start: Mapping[str, Any], offset: int) -> None:
        self.ordinal = ordinal
        self.position = position
        self.offset = offset
        self.kind = kind
        text = start.get("thinking")
        self.parts: list[str] = [text] if isinstance(text, str) and text else []
        self.signature: str | None = start.get("signature") or None
        self.data: str | None = start.get("data")

    def done(self, obj: object) -> StreamEvent:
        if self.kind == "redacted_thinking":
            block = ReasoningBlock("anthropic", "redacted", data=self.data or "", position=self.position,
                                   text_offset=self.offset)
        else:
            block = ReasoningBlock("anthropic", "thinking", "".join(self.parts), self.signature,
                                   position=self.position, text_offset=self.offset)
        return StreamEvent("reasoning_done", index=self.ordinal, reasoning=block, raw=obj)
