"""OpenAI Chat Completions replies: the chat.completion body and its chunk stream, as forge types."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import httpx2
import openai

from forge._wire import SSEDataDecoder, loads
from forge.errors import ProviderError
from forge.providers._common import (
    body_preview,
    check_stream_reply,
    error_for_status,
    mapped_finish,
)
from forge.providers._stream import StreamReader
from forge.types import FinishReason, Response, StreamEvent, ToolCall, Usage, stream_event

_FINISH: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
}


# --------------------------------------------------------------------------- response


SSE_MEDIA_TYPES = frozenset({"text/event-stream"})
_CHAT_SHAPE = "a chat.completion JSON object with a 'choices' list"


def _is_chat_completion(data: Mapping[str, Any]) -> bool:
    # The fields forge reads (platform.openai.com/docs/api-reference/chat/object); vLLM,
    # llama.cpp and Ollama's /v1 answer the same shape. An {"error": ...} body is raised below.
    return isinstance(data.get("choices"), list) or bool(data.get("error"))


def _response(data: Mapping[str, Any], model: str) -> Response:
    if data.get("error"):  # some compatible servers answer 200 with an error body
        raise _inband_error(data["error"], model)
    choices = data.get("choices") or []
    choice = choices[0] if choices else {}
    message = choice.get("message") or {}
    content = message.get("content")
    refusal = message.get("refusal")
    finish = _finish(choice.get("finish_reason"))
    if refusal and not content:
        finish = "content_filter"
    calls = tuple(_message_call(tc, model) for tc in message.get("tool_calls") or ())
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    usage = data.get("usage")
    return Response(
        text=content or refusal or "",
        provider="openai",
        model=model,
        finish_reason=finish,
        usage=_usage(usage) if usage else Usage(),
        tool_calls=calls,
        reasoning=reasoning if isinstance(reasoning, str) else None,
        id=data.get("id"),
        raw=data,
    )


def _message_call(tc: Mapping[str, Any], model: str) -> ToolCall:
    function = tc.get("function") or {}
    return _tool_call(tc.get("id") or "", function.get("name") or "", function.get("arguments") or "", model)


def _finish(reason: object) -> FinishReason | None:
    return mapped_finish(_FINISH, reason)


def _usage(u: Mapping[str, Any]) -> Usage:
    return openai_usage(u, "prompt", "completion", top_level_cache_write=True)


def openai_usage(u: Mapping[str, Any], into: str, out: str, *, top_level_cache_write: bool = False) -> Usage:
    """An OpenAI usage object: Chat Completions names its counts ``prompt``/``completion``, the
    Responses API ``input``/``output``; the details objects are named after them."""
    into_details = u.get(f"{into}_tokens_details") or {}
    out_details = u.get(f"{out}_tokens_details") or {}
    cache_write = into_details.get("cache_write_tokens") or 0
    if top_level_cache_write and not cache_write:
        cache_write = u.get("cache_write_tokens") or 0  # where some compatible servers put it
    return Usage(
        input_tokens=u.get(f"{into}_tokens") or 0,
        output_tokens=u.get(f"{out}_tokens") or 0,
        cached_input_tokens=into_details.get("cached_tokens") or 0,
        cache_write_tokens=cache_write,
        reasoning_tokens=out_details.get("reasoning_tokens") or 0,
    )


def _tool_call(call_id: str, name: str, raw: str, model: str) -> ToolCall:
    return ToolCall.from_json(call_id, name, raw, provider="openai", model=model)


class _ChatStream(StreamReader):
    """Turns decoded ``chat.completion.chunk`` payloads into forge stream events."""

    __slots__ = ("_calls", "_done", "_finish", "_refused", "_text_seen")
    _PROVIDER = _STREAM = "openai"

    def __init__(self, model: str, base_url: str = "") -> None:
        super().__init__(model, base_url)
        self._finish: FinishReason | None = None
        self._done = False
        self._calls: dict[int, tuple[str, str, list[str]]] = {}
        self._refused = False
        self._text_seen = False

    async def start(self, response: httpx2.Response) -> SSEDataDecoder:
        await check_stream_reply(
            response, media_types=SSE_MEDIA_TYPES, expected="an SSE stream of chat.completion.chunk",
            provider="openai", model=self._model, base_url=self._base_url,
            in_band=lambda body: _inband_error(body["error"], self._model),
        )
        return SSEDataDecoder()

    def on_payload(self, data: str) -> list[StreamEvent]:  # complexity: per-chunk, the text delta inline
        if self._done or not data:
            return []  # after [DONE]: drain the rest of the body so the connection is reused
        if data[:6] == "[DONE]":
            self._done = True
            return []
        obj = loads(data)
        error = obj.get("error")
        if error:
            raise _inband_error(error, self._model)
        if not self._id:
            self._id = obj.get("id") or ""
        events: list[StreamEvent] = []
        for choice in obj.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta")
            if delta:
                text = delta.get("content")
                if text:
                    self._text_seen = True
                    events.append(stream_event("text", text, obj))
                if text is None or len(delta) > 1:  # more than a text delta: look at the rest
                    self._on_delta_fields(delta, obj, events)
            reason = choice.get("finish_reason")
            if reason:
                self._finish = _finish(reason)
                self._flush_calls(events)
        usage = obj.get("usage")
        if usage:
            events.append(StreamEvent("usage", usage=_usage(usage), raw=obj))
        return events

    def _on_delta_fields(self, delta: Mapping[str, Any], obj: object, events: list[StreamEvent]) -> None:
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if reasoning and isinstance(reasoning, str):
            events.append(stream_event("reasoning", reasoning, obj))
        refusal = delta.get("refusal")
        if refusal:
            self._refused = True
            events.append(StreamEvent("text", refusal, raw=obj))
        if delta.get("tool_calls"):
            self._on_tool_calls(delta["tool_calls"], obj, events)

    def _on_tool_calls(self, deltas: list[dict[str, Any]], obj: object, events: list[StreamEvent]) -> None:
        for tc in deltas:
            index = tc.get("index", 0)
            function = tc.get("function") or {}
            call = self._calls.get(index)
            if call is None:
                call = (tc.get("id") or "", function.get("name") or "", [])
                self._calls[index] = call
                start = ToolCall(call[0], call[1])
                events.append(StreamEvent("tool_call_start", index=index, tool_call=start, raw=obj))
            fragment = function.get("arguments")
            if fragment:
                call[2].append(fragment)
                events.append(stream_event("tool_call_delta", fragment, obj, index))

    def _flush_calls(self, events: list[StreamEvent]) -> None:
        for index in sorted(self._calls):
            call_id, name, parts = self._calls[index]
            done = _tool_call(call_id, name, "".join(parts), self._model)
            events.append(StreamEvent("tool_call_done", index=index, tool_call=done))
        self._calls.clear()

    def close(self) -> list[StreamEvent]:
        """End of body: the final ``finish`` event, or an error if the stream was cut short."""
        if not self._done and self._finish is None:
            raise self._cut("its finish_reason and [DONE]")
        events: list[StreamEvent] = []
        self._flush_calls(events)
        finish = self._finish or "stop"
        if self._refused and not self._text_seen:
            finish = "content_filter"
        events.append(StreamEvent("finish", self._id, finish_reason=finish))
        return events


def _inband_error(error: object, model: str) -> ProviderError:
    body = error if isinstance(error, dict) else {"message": str(error)}
    message = body.get("message") or "error during streaming"
    code = body.get("code") or body.get("type")
    return error_for_status(
        None, f"openai said: {message}", code=str(code) if code else None, provider="openai", model=model
    )


def _api_message(exc: openai.APIError) -> str:
    body = exc.body
    if isinstance(body, dict):
        message = body.get("message")
        if isinstance(message, str) and message:
            return message
    if isinstance(exc, openai.APIStatusError) and body and exc.message == f"Error code: {exc.status_code}":
        # No JSON message in the body (a proxy's HTML page, plain text, another JSON shape): the
        # client keeps only the status; keep the start of the body, it is often the only clue.
        return f"{exc.message} - {body_preview(body if isinstance(body, str) else json.dumps(body))}"
    return exc.message
