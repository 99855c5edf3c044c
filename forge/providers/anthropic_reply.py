"""Anthropic Messages replies: the message body and its event stream, as forge types."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import httpx2

from forge._wire import SSEPairDecoder, loads
from forge.errors import ProviderError
from forge.providers._common import (
    check_stream_reply,
    error_for_status,
    mapped_finish,
)
from forge.providers._stream import StreamReader
from forge.types import (
    FinishReason,
    ReasoningBlock,
    Response,
    StreamEvent,
    ToolCall,
    Usage,
    stream_event,
)

_FINISH: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


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


def _tool_use(block: Mapping[str, Any]) -> ToolCall:
    args = block.get("input")
    args = args if isinstance(args, dict) else {}
    return ToolCall(block.get("id") or "", block.get("name") or "", args, json.dumps(args))


def _reasoning_block(block: Mapping[str, Any], position: int, text_offset: int) -> ReasoningBlock:
    """A ``thinking`` or ``redacted_thinking`` content block, where it stands in the reply."""
    if block.get("type") == "redacted_thinking":
        return ReasoningBlock("anthropic", "redacted", data=block.get("data") or "", position=position,
                              text_offset=text_offset)
    return ReasoningBlock("anthropic", "thinking", block.get("thinking") or "", block.get("signature"),
                          position=position, text_offset=text_offset)


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
            calls.append(_tool_use(block))
        elif kind in ("thinking", "redacted_thinking"):
            blocks.append(_reasoning_block(block, position, sum(map(len, texts))))
            if kind == "thinking":
                thinking.append(block.get("thinking") or "")
                signature = block.get("signature") or signature
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
    return mapped_finish(_FINISH, reason)


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


class _MessageStream(StreamReader):
    """Turns Anthropic SSE events into forge stream events."""

    __slots__ = (
        "_blocks",
        "_finish",
        "_reasoning",
        "_stopped",
        "_text_chars",
        "_thoughts",
        "_tools",
        "_usage",
    )
    _PROVIDER = _STREAM = "anthropic"

    def __init__(self, model: str, base_url: str = "") -> None:
        super().__init__(model, base_url)
        self._usage: Mapping[str, Any] = {}
        self._finish: FinishReason | None = None
        self._stopped = False
        self._blocks: dict[int, _ToolBlock] = {}  # by content-block index
        self._tools = 0
        self._reasoning: dict[int, _ThinkingBlock] = {}  # by content-block index
        self._thoughts = 0
        self._text_chars = 0  # answer text so far: where a thinking block stands in it

    async def start(self, response: httpx2.Response) -> SSEPairDecoder:
        self.request_id = response.headers.get("request-id")
        await check_stream_reply(
            response, media_types=("text/event-stream",),
            expected="an SSE stream of Messages API events", provider="anthropic",
            model=self._model, base_url=self._base_url, in_band=self._error,
        )
        return SSEPairDecoder()

    def on_payload(self, sse: tuple[str, str]) -> list[StreamEvent]:
        event, data = sse
        if event == "ping" or not event or not data:
            return []  # the official client drops unnamed events too
        obj = loads(data)
        if event == "content_block_delta":  # nearly every event: the text delta without another call
            delta = obj["delta"]
            if delta.get("type") == "text_delta":
                text = delta["text"]
                if not text:
                    return []
                self._text_chars += len(text)
                return [stream_event("text", text, obj)]
            return self._on_delta(obj, delta)
        handler = self._ON_EVENT.get(event)
        return handler(self, obj) if handler is not None else []

    def _on_delta(self, obj: Mapping[str, Any], delta: Mapping[str, Any]) -> list[StreamEvent]:
        kind = delta.get("type")
        handler = self._ON_DELTA.get(kind) if isinstance(kind, str) else None
        return handler(self, obj, delta) if handler is not None else []

    def _on_json_delta(self, obj: Mapping[str, Any], delta: Mapping[str, Any]) -> list[StreamEvent]:
        fragment = delta.get("partial_json")
        block = self._blocks.get(obj.get("index", 0))
        if not fragment or block is None:
            return []
        block.parts.append(fragment)
        return [stream_event("tool_call_delta", fragment, obj, block.ordinal)]

    def _on_thinking_delta(self, obj: Mapping[str, Any], delta: Mapping[str, Any]) -> list[StreamEvent]:
        thought = self._reasoning.get(obj.get("index", 0))
        if not delta["thinking"]:
            return []
        ordinal = 0
        if thought is not None:
            thought.parts.append(delta["thinking"])
            ordinal = thought.ordinal
        return [stream_event("reasoning", delta["thinking"], obj, ordinal)]

    def _on_signature_delta(self, obj: Mapping[str, Any], delta: Mapping[str, Any]) -> list[StreamEvent]:
        thought = self._reasoning.get(obj.get("index", 0))
        if thought is not None:
            thought.signature = (thought.signature or "") + (delta.get("signature") or "")
        return [StreamEvent("reasoning", "", index=thought.ordinal if thought else 0, raw=obj,
                            signature=delta.get("signature"))]

    def _on_block_stop(self, obj: Mapping[str, Any]) -> list[StreamEvent]:
        thought = self._reasoning.pop(obj.get("index", 0), None)
        if thought is not None:
            return [thought.done(obj)]
        block = self._blocks.pop(obj.get("index", 0), None)
        return [] if block is None else [block.done(obj, self._model)]

    def _on_message_start(self, obj: Mapping[str, Any]) -> list[StreamEvent]:
        message = obj.get("message") or {}
        self._id = message.get("id") or ""
        self._usage = message.get("usage") or {}
        return [StreamEvent("usage", usage=_usage(self._usage, self._usage), raw=obj)]

    def _on_message_delta(self, obj: Mapping[str, Any]) -> list[StreamEvent]:
        reason = (obj.get("delta") or {}).get("stop_reason")
        if reason:
            self._finish = _finish(reason)
        usage = obj.get("usage")
        if usage:
            return [StreamEvent("usage", usage=_usage(self._usage, usage), raw=obj)]
        return []

    def _on_message_stop(self, obj: Mapping[str, Any]) -> list[StreamEvent]:
        self._stopped = True
        return []

    def _on_error(self, obj: Mapping[str, Any]) -> list[StreamEvent]:
        raise self._error(obj)

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

    # One handler per event type (docs.anthropic.com/en/docs/build-with-claude/streaming) but
    # content_block_delta, which on_payload takes itself; others are dropped.
    _ON_EVENT: ClassVar[dict[str, Callable[[_MessageStream, Mapping[str, Any]], list[StreamEvent]]]] = {
        "content_block_start": _on_block_start,
        "content_block_stop": _on_block_stop,
        "message_start": _on_message_start,
        "message_delta": _on_message_delta,
        "message_stop": _on_message_stop,
        "error": _on_error,
    }
    _ON_DELTA: ClassVar[
        dict[str, Callable[[_MessageStream, Mapping[str, Any], Mapping[str, Any]], list[StreamEvent]]]
    ] = {
        "input_json_delta": _on_json_delta,
        "thinking_delta": _on_thinking_delta,
        "signature_delta": _on_signature_delta,
    }

    def close(self) -> list[StreamEvent]:
        """End of body: the final ``finish`` event, or an error if the stream was cut short."""
        if not self._stopped and self._finish is None:
            raise self._cut("message_stop")
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
