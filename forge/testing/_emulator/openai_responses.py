"""OpenAI Responses API (``POST /v1/responses``): request reading, the JSON reply, the SSE event sequence.

Part of the OpenAI dialect (same key, errors, headers and rules; requests log
as provider ``openai``). A reply's output items come in the order the API
uses: a ``reasoning`` item (when the request turns reasoning on, with the
summary text when it asks for one or a :class:`Reply` scripts ``reasoning``),
the ``message`` (unless the reply is tool calls only), then one
``function_call`` item per call. Streams send, with ``sequence_number``
counting from 0: ``response.created``, ``response.in_progress``, per item
``response.output_item.added`` ... ``response.output_item.done`` with the
item's own events in between (``response.reasoning_summary_part.added``,
``response.reasoning_summary_text.delta`` / ``.done``,
``response.reasoning_summary_part.done``; ``response.content_part.added``,
``response.output_text.delta`` per chunk, ``response.output_text.done``,
``response.content_part.done``; ``response.function_call_arguments.delta`` /
``.done``), then ``response.completed`` (``response.incomplete`` when cut by
``max_output_tokens``) carrying the whole response and its usage.
"""

from __future__ import annotations

import json
from typing import Any

from .base import (
    NO_EXTRAS,
    ApiError,
    ChatCall,
    ErrorSpec,
    IdSource,
    JsonBody,
    ReplyExtras,
    StreamRenderer,
    Usage,
    int_field,
    invalid,
)
from .signatures import Signatures, digest
from .text import content_text
from .tools import function_tools, openai_tool_choice, split_arguments

__all__ = ["ResponseStream", "completion", "parse"]

_CREATED = 1_700_000_000


def _dumps(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def parse(body: JsonBody | None, signatures: Signatures | None = None) -> ChatCall:
    """Read a Responses request; raise what the API would reject."""
    if body is None:
        raise invalid("You must provide a JSON body.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise invalid("Missing required parameter: 'model'.")
    items = body.get("input")
    if items is None:
        raise invalid("Missing required parameter: 'input'.")
    chars, last_user, after_tool, result = _read_input(items)
    chars += len(content_text(body.get("instructions")))
    if signatures is not None and signatures.enabled and isinstance(items, list):
        check_reasoning(signatures, items, body)
    reasoning = body.get("reasoning")
    effort = reasoning.get("effort") if isinstance(reasoning, dict) else None
    summary = reasoning.get("summary") if isinstance(reasoning, dict) else None
    return ChatCall(
        model=model,
        stream=body.get("stream") is True,
        max_tokens=int_field(body, "max_output_tokens"),
        input_chars=chars,
        last_user_text=last_user,
        tools=function_tools(body.get("tools")),
        tool_choice=openai_tool_choice(body.get("tool_choice")),
        after_tool=after_tool,
        tool_result_text=result,
        reasoning=isinstance(effort, str) and effort not in ("none", "minimal"),
        show_reasoning=summary is not None,
        api="responses",
        notes={"encrypted": "reasoning.encrypted_content" in (body.get("include") or ())},
    )


def _read_input(items: object) -> tuple[int, str, bool, str]:
    """``input``'s characters, last user text, and whether it ends with a tool result (and that result)."""
    if isinstance(items, str):
        return len(items), items, False, ""
    if not isinstance(items, list):
        raise invalid("Invalid type for 'input': expected a string or an array of input items.")
    chars = 0
    last_user = ""
    after_tool = False
    result = ""
    for item in items:
        if not isinstance(item, dict):
            continue
        kind = item.get("type", "message")
        after_tool = kind == "function_call_output"
        if after_tool:
            result = content_text(item.get("output"))
            chars += len(result)
        elif kind == "function_call":
            chars += len(str(item.get("arguments") or ""))
        elif kind == "message":
            text = content_text(item.get("content"))
            chars += len(text)
            if item.get("role") == "user":
                last_user = text
    return chars, last_user, after_tool, result


def _summary_text(item: JsonBody) -> str:
    summary = item.get("summary")
    parts = summary if isinstance(summary, list) else ()
    return "".join(str(s.get("text") or "") for s in parts if isinstance(s, dict))


def check_reasoning(signatures: Signatures, items: list[Any], body: JsonBody) -> None:
    """Refuse what the Responses API refuses about reasoning items sent back (400).

    ``encrypted_content`` must be what this emulator issued for that item id and
    summary; a ``function_call`` item the emulator made after a reasoning item must
    come after that item (unless ``previous_response_id`` holds it); a reasoning
    item must be followed by the item it led to. With ``store=false`` a reasoning
    item without ``encrypted_content`` cannot be looked up (404).
    """
    if body.get("previous_response_id"):
        return
    seen: set[str] = set()
    for n, item in enumerate(items):
        if not isinstance(item, dict):
            continue
        kind = item.get("type", "message")
        if kind == "reasoning":
            rid = str(item.get("id"))
            sealed = item.get("encrypted_content")
            if sealed is not None:
                if signatures.open(sealed) != {"k": "reasoning", "id": rid, "h": digest(_summary_text(item))}:
                    raise invalid(f"The encrypted content for item {rid} could not be verified.")
            elif body.get("store") is False:
                raise ApiError(ErrorSpec("not_found", 404, f"Item with id '{rid}' not found. Items are not "
                                         "persisted when `store` is set to false. Try again with `store` set "
                                         "to true, or remove this item from your input."))
            following = items[n + 1] if n + 1 < len(items) else None
            led_to = isinstance(following, dict) and following.get("role", "assistant") == "assistant" \
                and following.get("type", "message") in ("message", "function_call", "reasoning")
            if not led_to:
                raise invalid(f"Item '{rid}' of type 'reasoning' was provided without its required "
                              "following item.")
            seen.add(rid)
        elif kind == "function_call":
            needed = signatures.required.get(str(item.get("id")))
            if needed is not None and needed not in seen:
                raise invalid(f"Item '{item.get('id')}' of type 'function_call' was provided without its "
                              f"required 'reasoning' item: '{needed}'.")


def _usage(usage: Usage) -> JsonBody:
    output = usage.output_tokens + usage.reasoning_tokens
    return {
        "input_tokens": usage.input_tokens,
        "input_tokens_details": {"cached_tokens": usage.cached_tokens},
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "total_tokens": usage.input_tokens + output,
    }


def _status(finish: str) -> tuple[str, JsonBody | None]:
    if finish == "length":
        return "incomplete", {"reason": "max_output_tokens"}
    if finish == "content_filter":
        return "incomplete", {"reason": "content_filter"}
    return "completed", None


class _Ids:
    """The ids of one response and its output items."""

    def __init__(self, ids: IdSource) -> None:
        n = ids.next()
        self.response = f"resp_emu{n:032d}"
        self.reasoning = f"rs_emu{n:032d}"
        self.message = f"msg_emu{n:032d}"
        self.call = f"fc_emu{n:030d}"


def _reasoning_item(
    ids: _Ids, extras: ReplyExtras, call: ChatCall, signatures: Signatures | None
) -> JsonBody:
    """The reasoning item; with ``include=["reasoning.encrypted_content"]`` its sealed content, and
    the reply's function calls are remembered as needing it (see :func:`check_reasoning`)."""
    summary = [{"type": "summary_text", "text": "".join(extras.reasoning)}] if extras.reasoning else []
    item: JsonBody = {"id": ids.reasoning, "type": "reasoning", "summary": summary}
    if signatures is not None:
        for i in range(len(extras.calls)):
            signatures.required[f"{ids.call}{i:02d}"] = ids.reasoning
        if call.notes.get("encrypted"):
            item["encrypted_content"] = signatures.seal(
                {"k": "reasoning", "id": ids.reasoning, "h": digest("".join(extras.reasoning))})
    return item


def _message_item(ids: _Ids, text: str, status: str = "completed") -> JsonBody:
    content = [{"type": "output_text", "annotations": [], "logprobs": [], "text": text}]
    return {"id": ids.message, "type": "message", "status": status, "content": content, "role": "assistant"}


def _call_items(ids: _Ids, extras: ReplyExtras) -> list[JsonBody]:
    return [
        {"id": f"{ids.call}{i:02d}", "type": "function_call", "status": "completed",
         "arguments": c.arguments, "call_id": c.id, "name": c.name}
        for i, c in enumerate(extras.calls)
    ]


def _response(
    ids: _Ids, call: ChatCall, status: str, output: list[JsonBody], usage: Usage | None,
    incomplete: JsonBody | None = None,
) -> JsonBody:
    return {
        "id": ids.response,
        "object": "response",
        "created_at": _CREATED,
        "status": status,
        "background": False,
        "completed_at": _CREATED if status != "in_progress" else None,
        "error": None,
        "incomplete_details": incomplete,
        "instructions": None,
        "max_output_tokens": call.max_tokens,
        "model": call.model,
        "output": output,
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "service_tier": "default",
        "store": True,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}},
        "tool_choice": call.tool_choice or "auto",
        "tools": [],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": _usage(usage) if usage is not None else None,
        "user": None,
        "metadata": {},
    }


def _output(ids: _Ids, call: ChatCall, text: str, extras: ReplyExtras,
            signatures: Signatures | None) -> list[JsonBody]:
    output: list[JsonBody] = []
    if call.reasoning or extras.reasoning:
        output.append(_reasoning_item(ids, extras, call, signatures))
    if extras.has_text:
        output.append(_message_item(ids, text))
    output.extend(_call_items(ids, extras))
    return output


def completion(
    ids: IdSource, call: ChatCall, text: str, finish: str, usage: Usage, extras: ReplyExtras = NO_EXTRAS,
    signatures: Signatures | None = None,
) -> bytes:
    """The ``response`` object of a non-streamed call."""
    own = _Ids(ids)
    status, incomplete = _status(finish)
    output = _output(own, call, text, extras, signatures)
    return _dumps(_response(own, call, status, output, usage, incomplete))


class ResponseStream(StreamRenderer):
    """The Responses SSE event sequence (see the module docstring)."""

    def __init__(self, ids: IdSource, call: ChatCall, usage: Usage, extras: ReplyExtras,
                 signatures: Signatures | None = None) -> None:
        self._ids = _Ids(ids)
        self._signatures = signatures
        self._call = call
        self._extras = extras
        self._seq = 0
        self._index = 0  # output_index of the item being sent
        self._parts: list[bytes] = []  # chunk texts as JSON literals, for output_text.done
        self._output: list[JsonBody] = []
        self._text_prefix = b""

    def _event(self, obj: JsonBody) -> bytes:
        obj["sequence_number"] = self._seq
        self._seq += 1
        kind: str = obj["type"]
        return b"event: " + kind.encode() + b"\ndata: " + _dumps(obj) + b"\n\n"

    def head(self) -> list[bytes]:
        ids, call, extras = self._ids, self._call, self._extras
        pending = _response(ids, call, "in_progress", [], None)
        events = [
            self._event({"type": "response.created", "response": pending}),
            self._event({"type": "response.in_progress", "response": pending}),
        ]
        if call.reasoning or extras.reasoning:
            events += self._reasoning_events()
        if extras.has_text:
            added = {**_message_item(ids, "", "in_progress"), "content": []}
            events.append(self._event({"type": "response.output_item.added", "item": added,
                                       "output_index": self._index}))
            events.append(self._event({
                "type": "response.content_part.added", "content_index": 0, "item_id": ids.message,
                "output_index": self._index,
                "part": {"type": "output_text", "annotations": [], "logprobs": [], "text": ""},
            }))
            self._text_prefix = (
                b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta",'
                b'"content_index":0,"item_id":"%s","logprobs":[],"output_index":%d,"delta":'
                % (ids.message.encode(), self._index)
            )
        return events

    def _reasoning_events(self) -> list[bytes]:
        ids, pieces = self._ids, self._extras.reasoning
        item = _reasoning_item(ids, self._extras, self._call, self._signatures)
        base: JsonBody = {"item_id": ids.reasoning, "output_index": self._index}
        events = [self._event({"type": "response.output_item.added", "item": {**item, "summary": []},
                               "output_index": self._index})]
        if pieces:
            text = "".join(pieces)
            empty = {"type": "summary_text", "text": ""}
            events.append(self._event({"type": "response.reasoning_summary_part.added", **base,
                                       "summary_index": 0, "part": empty}))
            for piece in pieces:
                events.append(self._event({"type": "response.reasoning_summary_text.delta", **base,
                                           "summary_index": 0, "delta": piece}))
            events.append(self._event({"type": "response.reasoning_summary_text.done", **base,
                                       "summary_index": 0, "text": text}))
            events.append(self._event({"type": "response.reasoning_summary_part.done", **base,
                                       "summary_index": 0, "part": {**empty, "text": text}}))
        events.append(self._event({"type": "response.output_item.done", "item": item,
                                   "output_index": self._index}))
        self._output.append(item)
        self._index += 1
        return events

    def chunk(self, text_json: bytes, output_tokens: int, finish: str | None) -> bytes:
        self._parts.append(text_json)
        seq = self._seq
        self._seq = seq + 1
        return self._text_prefix + text_json + b',"sequence_number":%d}\n\n' % seq

    def tail(self, finish: str, usage: Usage, emitted: int) -> list[bytes]:
        ids, extras = self._ids, self._extras
        events: list[bytes] = []
        if extras.has_text:
            text_json = b'"' + b"".join(p[1:-1] for p in self._parts) + b'"'
            text = json.loads(text_json)
            base: JsonBody = {"content_index": 0, "item_id": ids.message, "output_index": self._index}
            events.append(self._event({"type": "response.output_text.done", **base, "logprobs": [],
                                       "text": text}))
            events.append(self._event({"type": "response.content_part.done", **base, "part": {
                "type": "output_text", "annotations": [], "logprobs": [], "text": text}}))
            item = _message_item(ids, text, "completed" if finish != "length" else "incomplete")
            events.append(self._event({"type": "response.output_item.done", "item": item,
                                       "output_index": self._index}))
            self._output.append(item)
            self._index += 1
        if finish != "length":
            for item in _call_items(ids, extras):
                events += self._call_events(item)
        status, incomplete = _status(finish)
        final = _response(ids, self._call, status, self._output, usage, incomplete)
        kind = "response.completed" if status == "completed" else "response.incomplete"
        events.append(self._event({"type": kind, "response": final}))
        return events

    def _call_events(self, item: JsonBody) -> list[bytes]:
        base: JsonBody = {"item_id": item["id"], "output_index": self._index}
        added = {**item, "status": "in_progress", "arguments": ""}
        events = [self._event({"type": "response.output_item.added", "item": added,
                               "output_index": self._index})]
        for piece in split_arguments(item["arguments"]):
            events.append(self._event({"type": "response.function_call_arguments.delta", **base,
                                       "delta": piece}))
        events.append(self._event({"type": "response.function_call_arguments.done", **base,
                                   "arguments": item["arguments"]}))
        events.append(self._event({"type": "response.output_item.done", "item": item,
                                   "output_index": self._index}))
        self._output.append(item)
        self._index += 1
        return events

    def error_event(self, spec: ErrorSpec) -> bytes:
        from .openai import OpenAIDialect  # the error body is the chat one's inner object

        error: dict[str, Any] = OpenAIDialect.error_body(spec, self._call.model)["error"]
        return self._event({"type": "error", "code": error.get("code") or error.get("type"),
                            "message": error["message"], "param": error.get("param")})
