"""OpenAI Responses API (``POST /v1/responses``) for :class:`~forge.providers.openai.OpenAIProvider`.

Chosen with ``providers.openai.api = "responses"``. As for Chat Completions, the
official client builds, authenticates and sends the request and raises its
typed errors for a non-2xx answer; forge reads the body itself: one
``json.loads`` of the JSON body, or forge's :class:`~forge._wire.SSEDataDecoder`
over ``with_streaming_response`` and one ``json.loads`` per event.

Request mapping (docs/tools.md has the table):

- ``system`` -> ``instructions``; messages -> ``input`` items: user and
  assistant text as ``{"role", "content"}``, an assistant tool call as a
  ``function_call`` item, a ``tool`` message as ``function_call_output``.
- ``max_tokens`` -> ``max_output_tokens``; ``temperature``, ``top_p`` as is;
  ``seed`` is not sent (the API has none; it is best effort everywhere);
  ``stop`` cannot be expressed and raises :class:`~forge.errors.BadRequestError`.
- ``response_format`` -> ``text.format``; tools -> flat ``function`` tools
  (``strict: false``, as on Chat Completions); a named ``tool_choice`` ->
  ``{"type": "function", "name"}``.
- ``reasoning_effort`` (or the tier of ``reasoning_budget``) -> ``reasoning.effort``.
- ``extra`` is merged into the body and wins (``previous_response_id``,
  ``store``, ``include``, ``reasoning.summary``...); an ``extra["reasoning"]``
  dict is merged with the effort forge sets.

Response: ``output_text`` parts -> text (``refusal`` parts too, finish
``content_filter``); ``function_call`` items -> tool calls (keyed by
``call_id``); ``reasoning`` items -> ``reasoning`` (summary texts, and
``reasoning_text`` content when a server sends it, joined by a blank line),
and each item -> a :class:`~forge.types.ReasoningBlock` (kind ``encrypted``: id,
summary texts, ``encrypted_content`` when ``include=["reasoning.encrypted_content"]``
asked for it, and its output index) that an assistant turn sends back as an input
item in the same place, so a stateless (``store=false``) tool loop keeps its
reasoning. With ``previous_response_id`` the server has them already, and sending
them again would duplicate them, so they are left out. (The items as JSON also stay
in ``reasoning_signature`` for older code.) Finish: ``completed`` ->
stop (tool_calls with function calls); ``incomplete`` -> length
(``content_filter`` when that was the reason); ``failed`` and ``error`` events
raise the classified error.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from forge._wire import SSEDataDecoder, loads
from forge.errors import ForgeError, ProviderError
from forge.providers._common import (
    check_stream_reply,
    error_for_status,
    json_reply,
    public_url,
)
from forge.providers._mapping import sent_as_is
from forge.providers._stream import ResponseStream, StreamReader, client_stream
from forge.types import (
    FinishReason,
    ReasoningBlock,
    Request,
    Response,
    StreamEvent,
    ToolCall,
    Usage,
    stream_event,
)

if TYPE_CHECKING:
    import httpx2
    import openai

from forge.providers.openai_reply import openai_usage
from forge.providers.openai_responses_request import (
    _reasoning_block,
    _reasoning_texts,
    responses_params,
)

__all__ = ["complete", "responses_params", "stream"]

_PROVIDER = "openai"


async def complete(client: openai.AsyncOpenAI, request: Request) -> Response:
    """``POST /v1/responses`` and the whole reply (errors unclassified: the caller classifies)."""
    raw = await client.responses.with_raw_response.create(**sent_as_is(responses_params(request)))
    data = json_reply(
        raw.http_response, valid=_is_response, expected=_RESPONSE_SHAPE, provider=_PROVIDER,
        model=request.model, base_url=public_url(client.base_url),
    )
    return _response(data, request.model)


def stream(
    client: openai.AsyncOpenAI, request: Request, classify: Callable[[BaseException], ForgeError]
) -> ResponseStream:
    """Stream ``POST /v1/responses``: text / reasoning / tool-call / usage events, then one ``finish``."""

    def open_vendor() -> Any:
        params = responses_params(request)
        params["stream"] = True
        return client.responses.with_streaming_response.create(**sent_as_is(params))

    return client_stream(open_vendor, _ResponseStream(request.model, public_url(client.base_url)), classify)


# --------------------------------------------------------------------------- response


def _usage(u: Mapping[str, Any]) -> Usage:
    return openai_usage(u, "input", "output")


def _reasoning_item(item: Mapping[str, Any]) -> dict[str, Any]:
    """What a later turn needs to send a reasoning item back (id, summary, encrypted content)."""
    kept: dict[str, Any] = {"type": "reasoning", "id": item.get("id"), "summary": item.get("summary") or []}
    if item.get("encrypted_content"):
        kept["encrypted_content"] = item["encrypted_content"]
    return kept


def _finish(data: Mapping[str, Any], has_calls: bool, refused_only: bool) -> FinishReason:
    if data.get("status") == "incomplete":
        reason = (data.get("incomplete_details") or {}).get("reason")
        return "content_filter" if reason == "content_filter" else "length"
    if refused_only:
        return "content_filter"
    return "tool_calls" if has_calls else "stop"


def _failure(error: object, model: str, default: str = "the response failed") -> ProviderError:
    body = error if isinstance(error, Mapping) else {}
    message = body.get("message") or default
    code = body.get("code") or body.get("type")
    return error_for_status(
        None, f"openai said: {message}", code=str(code) if code else None, provider=_PROVIDER, model=model
    )


_RESPONSE_SHAPE = "a Responses API 'response' JSON object with an 'output' list"


def _is_response(data: Mapping[str, Any]) -> bool:
    # platform.openai.com/docs/api-reference/responses/object: ``output`` is always a list;
    # a failed response (or a compatible server's plain error) is raised by _response.
    return isinstance(data.get("output"), list) or bool(data.get("error"))


def _message_parts(item: Mapping[str, Any], texts: list[str], refusals: list[str]) -> None:
    for part in item.get("content") or ():
        if part.get("type") == "output_text":
            texts.append(part.get("text") or "")
        elif part.get("type") == "refusal":
            refusals.append(part.get("refusal") or "")


def _function_call(item: Mapping[str, Any], model: str) -> ToolCall:
    return ToolCall.from_json(
        item.get("call_id") or "", item.get("name") or "", item.get("arguments") or "",
        provider=_PROVIDER, model=model, item_id=item.get("id"),
    )


def _response(data: Mapping[str, Any], model: str) -> Response:
    if data.get("status") == "failed" or (data.get("error") and not data.get("output")):
        raise _failure(data.get("error"), model)
    texts: list[str] = []
    refusals: list[str] = []
    reasoning: list[str] = []
    items: list[dict[str, Any]] = []
    calls: list[ToolCall] = []
    blocks: list[ReasoningBlock] = []
    for position, item in enumerate(data.get("output") or ()):
        kind = item.get("type")
        if kind == "message":
            _message_parts(item, texts, refusals)
        elif kind == "function_call":
            calls.append(_function_call(item, model))
        elif kind == "reasoning":
            reasoning.extend(_reasoning_texts(item))
            items.append(_reasoning_item(item))
            blocks.append(_reasoning_block(item, position))
    text = "".join(texts)
    usage = data.get("usage")
    return Response(
        text=text or "".join(refusals),
        provider=_PROVIDER,
        model=model,
        finish_reason=_finish(data, bool(calls), bool(refusals) and not text),
        usage=_usage(usage) if usage else Usage(),
        tool_calls=tuple(calls),
        reasoning="\n\n".join(reasoning) or None,
        reasoning_signature=json.dumps(items) if items else None,
        reasoning_blocks=tuple(blocks),
        id=data.get("id"),
        raw=data,
    )


class _Call:
    __slots__ = ("call_id", "name", "ordinal", "parts")

    def __init__(self, ordinal: int, call_id: str, name: str) -> None:
        self.ordinal = ordinal
        self.call_id = call_id
        self.name = name
        self.parts: list[str] = []


class _ResponseStream(StreamReader):
    """Turns decoded Responses API stream events into forge stream events.

    Events are told apart by their ``type`` field (the official client does the
    same; the ``event:`` line carries the same name).
    """

    __slots__ = (
        "_calls",
        "_done",
        "_finish",
        "_items",
        "_ordinals",
        "_reasoned",
        "_refused",
        "_text_seen",
    )
    _PROVIDER, _STREAM = "openai", "openai Responses"

    def __init__(self, model: str, base_url: str = "") -> None:
        super().__init__(model, base_url)
        self._calls: dict[str, _Call] = {}  # by output item id
        self._ordinals = 0
        self._items: list[dict[str, Any]] = []
        self._reasoned = False
        self._refused = False
        self._text_seen = False
        self._done = False
        self._finish: FinishReason | None = None

    async def start(self, response: httpx2.Response) -> SSEDataDecoder:
        await check_stream_reply(
            response, media_types=("text/event-stream",),
            expected="an SSE stream of Responses API events", provider=_PROVIDER,
            model=self._model, base_url=self._base_url,
            in_band=lambda body: _failure(body.get("error"), self._model),
        )
        return SSEDataDecoder()

    def on_payload(self, data: str) -> list[StreamEvent]:
        if not data or self._done:
            return []
        obj = loads(data)
        kind = obj.get("type")
        if kind == "response.output_text.delta":  # nearly every event: no call beyond this one
            delta = obj.get("delta")
            if not delta:
                return []
            self._text_seen = True
            return [stream_event("text", delta, obj)]
        handler = self._ON_EVENT.get(kind) if isinstance(kind, str) else None
        return handler(self, obj) if handler is not None else []

    def _on_arguments(self, obj: Mapping[str, Any]) -> list[StreamEvent]:
        call = self._calls.get(obj.get("item_id") or "")
        fragment = obj.get("delta")
        if call is None or not fragment:
            return []
        call.parts.append(fragment)
        return [stream_event("tool_call_delta", fragment, obj, call.ordinal)]

    def _on_side_delta(self, obj: Mapping[str, Any]) -> list[StreamEvent]:
        """Reasoning text, or refusal text (read as answer text): one event, and a note that it came."""
        delta = obj.get("delta")
        if not delta:
            return []
        if obj["type"] == "response.refusal.delta":
            self._refused = True  # refusal text alone finishes as content_filter
            return [stream_event("text", delta, obj)]
        self._reasoned = True  # a reasoning part after this one starts with a blank line
        return [stream_event("reasoning", delta, obj)]

    def _on_part_added(self, obj: Mapping[str, Any]) -> list[StreamEvent]:
        part = obj.get("part") or {}
        if self._reasoned and part.get("type") in ("summary_text", "reasoning_text"):
            return [StreamEvent("reasoning", "\n\n", raw=obj)]  # as the parts are joined in complete()
        return []

    def _on_created(self, obj: Mapping[str, Any]) -> list[StreamEvent]:
        self._id = (obj.get("response") or {}).get("id") or self._id
        return []

    def _on_failed(self, obj: Mapping[str, Any]) -> list[StreamEvent]:
        response = obj.get("response") or {}
        raise _failure(response.get("error"), self._model)

    def _on_error(self, obj: Mapping[str, Any]) -> list[StreamEvent]:
        raise _failure(obj, self._model, "error during streaming")

    def _on_item_added(self, obj: Mapping[str, Any]) -> list[StreamEvent]:
        item = obj.get("item") or {}
        if item.get("type") != "function_call":
            return []
        call = _Call(self._ordinals, item.get("call_id") or "", item.get("name") or "")
        self._ordinals += 1
        self._calls[item.get("id") or ""] = call
        start = ToolCall(call.call_id, call.name)
        return [StreamEvent("tool_call_start", index=call.ordinal, tool_call=start, raw=obj)]

    def _on_item_done(self, obj: Mapping[str, Any]) -> list[StreamEvent]:
        item = obj.get("item") or {}
        kind = item.get("type")
        if kind == "reasoning":
            self._items.append(_reasoning_item(item))
            block = _reasoning_block(item, obj.get("output_index", len(self._items) - 1))
            return [StreamEvent("reasoning_done", index=len(self._items) - 1, reasoning=block, raw=obj)]
        if kind != "function_call":
            return []
        call = self._calls.pop(item.get("id") or "", None)
        if call is None:  # no output_item.added seen: report the call whole
            call = _Call(self._ordinals, item.get("call_id") or "", item.get("name") or "")
            self._ordinals += 1
        raw = item.get("arguments")
        done = ToolCall.from_json(
            item.get("call_id") or call.call_id,
            item.get("name") or call.name,
            raw if isinstance(raw, str) else "".join(call.parts),
            provider=_PROVIDER,
            model=self._model,
            item_id=item.get("id"),
        )
        return [StreamEvent("tool_call_done", index=call.ordinal, tool_call=done, raw=obj)]

    def _on_end(self, obj: Mapping[str, Any]) -> list[StreamEvent]:
        self._done = True
        response = obj.get("response") or {}
        self._id = response.get("id") or self._id
        events: list[StreamEvent] = []
        for item_id, call in sorted(self._calls.items(), key=lambda kv: kv[1].ordinal):
            done = ToolCall.from_json(call.call_id, call.name, "".join(call.parts), provider=_PROVIDER,
                                      model=self._model, item_id=item_id or None)
            events.append(StreamEvent("tool_call_done", index=call.ordinal, tool_call=done))
        self._calls.clear()
        if self._items:
            events.append(StreamEvent("reasoning", "", signature=json.dumps(self._items)))
        usage = response.get("usage")
        if usage:
            events.append(StreamEvent("usage", usage=_usage(usage), raw=obj))
        self._finish = _finish(response, self._ordinals > 0, self._refused and not self._text_seen)
        return events

    # One handler per event type (platform.openai.com/docs/api-reference/responses-streaming); others
    # are dropped.
    _ON_EVENT: ClassVar[dict[str, Callable[[_ResponseStream, Mapping[str, Any]], list[StreamEvent]]]] = {
        "response.function_call_arguments.delta": _on_arguments,
        "response.reasoning_summary_text.delta": _on_side_delta,
        "response.reasoning_text.delta": _on_side_delta,
        "response.output_item.added": _on_item_added,
        "response.output_item.done": _on_item_done,
        "response.reasoning_summary_part.added": _on_part_added,
        "response.content_part.added": _on_part_added,
        "response.refusal.delta": _on_side_delta,
        "response.created": _on_created,
        "response.in_progress": _on_created,
        "response.completed": _on_end,
        "response.incomplete": _on_end,
        "response.failed": _on_failed,
        "error": _on_error,
    }

    def close(self) -> list[StreamEvent]:
        """End of body: the ``finish`` event, or an error if the terminal event never came."""
        if self._finish is None:
            raise self._cut("response.completed")
        return [StreamEvent("finish", self._id, finish_reason=self._finish)]
