"""Anthropic Messages (``POST /v1/messages``) and ``POST /v1/messages/count_tokens``."""

from __future__ import annotations

import json
import re
import time
from typing import ClassVar
from urllib.parse import parse_qs

from .base import (
    NO_EXTRAS,
    ChatCall,
    Dialect,
    EmulatedCall,
    ErrorSpec,
    JsonBody,
    JsonResponse,
    ReplyExtras,
    Route,
    StreamRenderer,
    ToolSpec,
    Usage,
    int_field,
    invalid,
    messages_text,
)
from .batch import BatchItem, BatchJob, counts, jsonl, rfc3339
from .caching import CacheUse, Segment, anthropic_min_tokens, breakpoint_digests
from .http import HttpRequest
from .limits import Admission, LimitState, rfc3339_in
from .signatures import Signatures
from .signatures import digest as text_digest
from .text import content_text, tokens_for_chars
from .tools import split_arguments
from .vendor_facts import (
    ANTHROPIC_CACHE_TTLS,
    ANTHROPIC_MAX_BREAKPOINTS,
    ANTHROPIC_RATE_LIMIT_HEADER,
    ANTHROPIC_RATE_LIMIT_KINDS,
)

# (error.type, default message) per kind.
_ERRORS: dict[str, tuple[str, str]] = {
    "invalid_request": ("invalid_request_error", "Invalid request."),
    "invalid_json": (
        "invalid_request_error",
        "There was an issue with the format or content of your request.",
    ),
    "auth": ("authentication_error", "invalid x-api-key"),
    "permission": (
        "permission_error",
        "Your API key does not have permission to use the specified resource.",
    ),
    "not_found": ("not_found_error", "model: {model}"),
    "context_length": ("invalid_request_error", "prompt is too long: 208310 tokens > 200000 maximum"),
    "too_large": ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    "rate_limit": (
        "rate_limit_error",
        "This request would exceed the rate limit for your organization (emulator-org) of {limit} {unit} per "
        "minute. For details, refer to: https://docs.claude.com/en/api/rate-limits. You can see the response "
        "headers for current usage. Please reduce the prompt length or the maximum tokens requested, or try "
        "again later. You may also contact sales at https://www.anthropic.com/contact-sales to discuss your "
        "options for a rate limit increase.",
    ),
    "overloaded": ("overloaded_error", "Overloaded"),
    "server": ("api_error", "Internal server error"),
    "unavailable": ("api_error", "Service unavailable"),
    "timeout": ("timeout_error", "Request timed out"),
}


_ERRORS["invalid_key"] = _ERRORS["auth"]

def _dumps(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _usage_fields(usage: Usage) -> JsonBody:
    return {
        "input_tokens": max(0, usage.input_tokens - usage.cached_tokens - usage.cache_write_tokens),
        "cache_creation_input_tokens": usage.cache_write_tokens,
        "cache_read_input_tokens": usage.cached_tokens,
    }


def _full_usage(usage: Usage, output_tokens: int) -> JsonBody:
    return {
        **_usage_fields(usage),
        "cache_creation": {
            "ephemeral_5m_input_tokens": usage.cache_write_tokens - usage.cache_write_1h_tokens,
            "ephemeral_1h_input_tokens": usage.cache_write_1h_tokens,
        },
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }


_MAX_BREAKPOINTS = ANTHROPIC_MAX_BREAKPOINTS


def _ttl(control: object) -> float | None:
    if not isinstance(control, dict):
        return None
    return ANTHROPIC_CACHE_TTLS["1h" if control.get("ttl") == "1h" else "5m"]


def _tool_segments(tools: object) -> list[Segment]:
    segments = []
    for tool in tools if isinstance(tools, list) else []:
        if isinstance(tool, dict):
            spec = {k: v for k, v in tool.items() if k != "cache_control"}
            marker = "tool:" + json.dumps(spec, sort_keys=True)
            segments.append(Segment(marker, "", _ttl(tool.get("cache_control"))))
    return segments


def _system_segments(system: object) -> list[Segment]:
    blocks = [{"type": "text", "text": system}] if isinstance(system, str) else system
    return [Segment("system", content_text(block), _ttl(block.get("cache_control")))
            for block in (blocks if isinstance(blocks, list) else []) if isinstance(block, dict)]


def _message_segments(message: dict[str, object]) -> list[Segment]:
    role = str(message.get("role"))
    content = message.get("content")
    if not isinstance(content, list):  # a string is one text block
        content = [{"type": "text", "text": content_text(content)}]
    segments = []
    for block in content:
        if isinstance(block, dict):
            shape = {k: v for k, v in block.items() if k not in ("text", "cache_control", "content")}
            segments.append(Segment(f"{role}:{json.dumps(shape, sort_keys=True)}", content_text(block),
                                    _ttl(block.get("cache_control"))))
    return segments


def _prompt_segments(body: JsonBody) -> list[Segment]:
    """Tools, then system, then messages, block by block; a block with ``cache_control`` is a breakpoint."""
    segments = [*_tool_segments(body.get("tools")), *_system_segments(body.get("system"))]
    messages = body.get("messages")
    for message in messages if isinstance(messages, list) else []:
        if isinstance(message, dict):
            segments.extend(_message_segments(message))
    if body.get("cache_control") is not None and segments:  # automatic: the last cacheable block
        last = segments[-1]
        segments[-1] = Segment(last.marker, last.text, _ttl(body["cache_control"]))
    return segments


def _event(name: bytes, data: bytes) -> bytes:
    return b"event: " + name + b"\ndata: " + data + b"\n\n"


class _MessageStream(StreamRenderer):
    """message_start, [a thinking block], content_block_start, ping, content_block_delta x N,
    content_block_stop, [tool_use blocks], message_delta, message_stop."""

    def __init__(
        self, message_id: str, call: ChatCall, usage: Usage, request_id: str, extras: ReplyExtras = NO_EXTRAS,
        reasoning: list[JsonBody] | None = None,
    ) -> None:
        self._message_id = message_id
        self._model = call.model
        self._usage = usage
        self._request_id = request_id
        self._extras = extras
        self._reasoning = reasoning or []
        self._text_index = len(self._reasoning)
        self._prefix = (
            b"event: content_block_delta\n"
            b'data: {"type":"content_block_delta","index":%d,"delta":{"type":"text_delta","text":'
            % self._text_index
        )

    def head(self) -> list[bytes]:
        message: JsonBody = {
            "model": self._model,
            "id": self._message_id,
            "type": "message",
            "role": "assistant",
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": _full_usage(self._usage, 1),
        }
        events = [_event(b"message_start", _dumps({"type": "message_start", "message": message}))]
        extras = self._extras
        for index, block in enumerate(self._reasoning):
            events += _reasoning_events(index, block, extras.reasoning if len(self._reasoning) == 1 else ())
        if extras.has_text:
            events.append(_event(b"content_block_start", b'{"type":"content_block_start","index":%d,'
                                 b'"content_block":{"type":"text","text":""}}' % self._text_index))
        events.append(_event(b"ping", b'{"type": "ping"}'))
        return events

    _SUFFIX = b"}}\n\n"

    def chunk(self, text_json: bytes, output_tokens: int, finish: str | None) -> bytes:
        return self._prefix + text_json + self._SUFFIX

    def tail(self, finish: str, usage: Usage, emitted: int) -> list[bytes]:
        delta = {
            "type": "message_delta",
            "delta": {"stop_reason": finish, "stop_sequence": None},
            "usage": {**_usage_fields(usage), "output_tokens": usage.output_tokens + usage.reasoning_tokens},
        }
        events: list[bytes] = []
        index = self._text_index
        if self._extras.has_text:
            events.append(_event(b"content_block_stop", b'{"type":"content_block_stop","index":%d}' % index))
            index += 1
        if finish != "max_tokens":
            for call in self._extras.calls:
                events += _tool_use_events(index, call)
                index += 1
        events += [
            _event(b"message_delta", _dumps(delta)),
            _event(b"message_stop", b'{"type":"message_stop"}'),
        ]
        return events

    def error_event(self, spec: ErrorSpec) -> bytes:
        return _event(b"error", _dumps(AnthropicDialect.error_body(spec, self._model, self._request_id)))


def _reasoning_events(index: int, block: JsonBody, pieces: tuple[str, ...]) -> list[bytes]:
    """A streamed thinking block (text in ``pieces`` or whole, then its signature) or redacted block."""
    if block["type"] == "redacted_thinking":
        start = {"type": "content_block_start", "index": index, "content_block": block}
        return [_event(b"content_block_start", _dumps(start)),
                _event(b"content_block_stop", b'{"type":"content_block_stop","index":%d}' % index)]
    start = {"type": "content_block_start", "index": index,
             "content_block": {"type": "thinking", "thinking": "", "signature": ""}}
    events = [_event(b"content_block_start", _dumps(start))]
    for piece in pieces or (block["thinking"],):
        delta = {"type": "content_block_delta", "index": index,
                 "delta": {"type": "thinking_delta", "thinking": piece}}
        events.append(_event(b"content_block_delta", _dumps(delta)))
    signature = {"type": "content_block_delta", "index": index,
                 "delta": {"type": "signature_delta", "signature": block["signature"]}}
    events.append(_event(b"content_block_delta", _dumps(signature)))
    events.append(_event(b"content_block_stop", b'{"type":"content_block_stop","index":%d}' % index))
    return events


def reasoning_blocks(signatures: Signatures, extras: ReplyExtras) -> list[JsonBody]:
    """A reply's thinking and redacted_thinking blocks, each signed for its place among them."""
    texts = list(extras.blocks) or (["".join(extras.reasoning)] if extras.reasoning else [])
    count = len(texts) + extras.redacted
    out: list[JsonBody] = []
    for i, text in enumerate(texts):
        signature = extras.signature if extras.signature and i == 0 else signatures.seal(
            {"k": "thinking", "i": i, "n": count, "h": text_digest(text)})
        out.append({"type": "thinking", "thinking": text, "signature": signature})
    if extras.redacted:
        out.append({"type": "redacted_thinking", "data": signatures.seal({"k": "redacted", "i": len(texts),
                                                                          "n": count})})
    return out


_THINKING_FIRST = (
    "messages.{m}.content.0.type: Expected `thinking` or `redacted_thinking`, but found `{found}`. When "
    "`thinking` is enabled, a final `assistant` message must start with a thinking block (preceeding the "
    "lastmost set of `tool_use` and `tool_result` blocks). We recommend you include thinking blocks from "
    "previous turns. To avoid this requirement, disable `thinking`. Please consult our documentation at "
    "https://docs.claude.com/en/docs/build-with-claude/extended-thinking"
)


def _check_reasoning_blocks(signatures: Signatures, m: int, content: list[object]) -> None:
    """Each reasoning block of assistant turn ``m`` is one this emulator issued, unchanged, in its place."""
    blocks = [(c, b) for c, b in enumerate(content)
              if isinstance(b, dict) and b.get("type") in ("thinking", "redacted_thinking")]
    for i, (c, block) in enumerate(blocks):
        if block["type"] == "thinking":
            sealed = signatures.open(block.get("signature"))
            text = block.get("thinking")
            ok = sealed == {"k": "thinking", "i": i, "n": len(blocks),
                            "h": text_digest(text if isinstance(text, str) else "")}
            if not ok:
                raise invalid(f"messages.{m}.content.{c}: Invalid `signature` in `thinking` block")
        elif signatures.open(block.get("data")) != {"k": "redacted", "i": i, "n": len(blocks)}:
            raise invalid(f"messages.{m}.content.{c}: Invalid `data` in `redacted_thinking` block")


def check_thinking(signatures: Signatures, messages: list[object], thinking_on: bool) -> None:
    """Refuse what Anthropic refuses (400 invalid_request_error) about the thinking sent back.

    Every thinking / redacted_thinking block of an assistant turn must be one this
    emulator issued, unchanged and in its place among the turn's reasoning blocks
    ("Invalid `signature` in `thinking` block"); with thinking on, the assistant turn
    of an unfinished tool loop must start with one (the wording Anthropic uses).
    """
    for m, message in enumerate(messages):
        if isinstance(message, dict) and message.get("role") == "assistant":
            content = message.get("content")
            if isinstance(content, list):
                _check_reasoning_blocks(signatures, m, content)
    if not thinking_on or len(messages) < 2 or _tool_results(messages) is None:
        return
    turn = messages[-2]
    content = turn.get("content") if isinstance(turn, dict) else None
    if not isinstance(turn, dict) or turn.get("role") != "assistant":
        return
    first = content[0] if isinstance(content, list) and content else {"type": "text"}
    found = first.get("type") if isinstance(first, dict) else "text"
    if found not in ("thinking", "redacted_thinking"):
        raise invalid(_THINKING_FIRST.format(m=len(messages) - 2, found=found))


def _tool_use_events(index: int, call: EmulatedCall) -> list[bytes]:
    """A streamed ``tool_use`` block: start with empty input, ``input_json_delta`` fragments, stop."""
    start = {"type": "content_block_start", "index": index,
             "content_block": {"type": "tool_use", "id": call.id, "name": call.name, "input": {}}}
    events = [_event(b"content_block_start", _dumps(start))]
    for piece in split_arguments(call.arguments):
        delta = {"type": "content_block_delta", "index": index,
                 "delta": {"type": "input_json_delta", "partial_json": piece}}
        events.append(_event(b"content_block_delta", _dumps(delta)))
    events.append(_event(b"content_block_stop", b'{"type":"content_block_stop","index":%d}' % index))
    return events


def _tool_input(arguments: str) -> object:
    """A ``tool_use`` block's ``input`` (an object; scripted arguments that are not one give ``{}``)."""
    try:
        value = json.loads(arguments) if arguments else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _tools_and_choice(body: JsonBody) -> tuple[tuple[ToolSpec, ...], str | None]:
    tools = tuple(
        ToolSpec(t["name"], schema if isinstance(schema := t.get("input_schema"), dict) else {})
        for t in body.get("tools") or () if isinstance(t, dict) and isinstance(t.get("name"), str)
    )
    choice = body.get("tool_choice")
    if not isinstance(choice, dict):
        return tools, None
    kind = choice.get("type")
    if kind == "tool" and isinstance(choice.get("name"), str):
        return tools, choice["name"]
    return tools, {"any": "required"}.get(str(kind), kind if isinstance(kind, str) else None)


def _tool_results(messages: object) -> str | None:
    """The text of the last message's ``tool_result`` blocks, if it is a tool-result turn."""
    if not isinstance(messages, list) or not messages or not isinstance(messages[-1], dict):
        return None
    last = messages[-1]
    content = last.get("content")
    if last.get("role") != "user" or not isinstance(content, list):
        return None
    results = [b for b in content if isinstance(b, dict) and b.get("type") == "tool_result"]
    return "\n".join(content_text(b.get("content")) for b in results) if results else None


class AnthropicDialect(Dialect):
    name = "anthropic"
    finish_reasons: ClassVar[dict[str, str]] = {
        "stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "content_filter": "refusal",
    }
    call_id_prefix = "toolu_emu"

    def routes(self) -> list[Route]:
        return [
            Route("POST", re.compile(r"/v1/messages")),
            Route("POST", re.compile(r"/v1/messages/count_tokens"), self._count_tokens),
            *self._batch_routes(),
        ]

    def describe(
        self, req: HttpRequest, match: re.Match[str], body: JsonBody | None
    ) -> tuple[str | None, bool]:
        if body is None:
            return None, False
        model = body.get("model")
        return (model if isinstance(model, str) else None), body.get("stream") is True

    @staticmethod
    def _input(body: JsonBody) -> tuple[int, str]:
        chars = len(content_text(body.get("system")))
        last_user = ""
        for role, text in messages_text(body.get("messages")):
            chars += len(text)
            if role == "user":
                last_user = text
        return chars, last_user

    def parse_chat(self, req: HttpRequest, match: re.Match[str], body: JsonBody | None) -> ChatCall:
        if body is None:
            raise invalid("messages: Field required")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise invalid("model: Field required")
        if not isinstance(body.get("messages"), list):
            raise invalid("messages: Field required")
        max_tokens = int_field(body, "max_tokens")
        if max_tokens is None:
            raise invalid("max_tokens: Field required")
        chars, last_user = self._input(body)
        tools, choice = _tools_and_choice(body)
        result = _tool_results(body.get("messages"))
        thinking = body.get("thinking")
        thinks = isinstance(thinking, dict) and thinking.get("type") in ("enabled", "adaptive")
        if self.signatures.enabled:
            check_thinking(self.signatures, body["messages"], thinks)
        return ChatCall(model=model, stream=body.get("stream") is True, max_tokens=max_tokens,
                        input_chars=chars, last_user_text=last_user, tools=tools, tool_choice=choice,
                        after_tool=result is not None, tool_result_text=result or "", reasoning=thinks,
                        show_reasoning=thinks and isinstance(thinking, dict)
                        and thinking.get("display") != "omitted")

    def cache_usage(self, call: ChatCall, body: JsonBody | None, input_tokens: int) -> CacheUse:
        """Breakpoints: read the longest cached one, write those after it that reach the minimum."""
        if body is None:
            return CacheUse()
        segments = _prompt_segments(body)
        points = breakpoint_digests(segments)
        if len(points) > _MAX_BREAKPOINTS:
            raise invalid(f"A maximum of {_MAX_BREAKPOINTS} blocks with cache_control may be provided. "
                          f"Found {len(points)}.")
        if not points:
            return CacheUse()
        now = self.clock()
        cache = self.caches.prefixes
        namespace = call.model
        minimum = anthropic_min_tokens(call.model)
        read = 0
        for chars, digest, ttl in points:
            if cache.alive(namespace, digest, now):
                read = tokens_for_chars(chars)
                cache.put(namespace, digest, now + ttl)  # a read refreshes the entry's lifetime
        write = write_1h = 0
        done = read
        for chars, digest, ttl in points:
            tokens = tokens_for_chars(chars)
            if tokens < minimum or tokens <= read:
                continue  # too short to cache (silently), or already read
            if tokens > done:
                write += tokens - done
                if ttl >= ANTHROPIC_CACHE_TTLS["1h"]:
                    write_1h += tokens - done
                done = tokens
            cache.put(namespace, digest, now + ttl)
        cache.prune(now)
        return CacheUse(read=min(read, input_tokens), write=write, write_1h=write_1h)

    def completion(
        self, call: ChatCall, text: str, finish: str, usage: Usage, extras: ReplyExtras = NO_EXTRAS
    ) -> bytes:
        content = reasoning_blocks(self.signatures, extras)
        if text:
            content.append({"type": "text", "text": text})
        content += [{"type": "tool_use", "id": c.id, "name": c.name, "input": _tool_input(c.arguments)}
                    for c in extras.calls]
        return _dumps({
            "model": call.model,
            "id": f"msg_emu{self.ids.next():020d}",
            "type": "message",
            "role": "assistant",
            "content": content,
            "stop_reason": finish,
            "stop_sequence": None,
            "usage": _full_usage(usage, usage.output_tokens + usage.reasoning_tokens),
        })

    def stream(self, call: ChatCall, usage: Usage, extras: ReplyExtras = NO_EXTRAS) -> StreamRenderer:
        return _MessageStream(f"msg_emu{self.ids.next():020d}", call, usage, self._request_id(), extras,
                              reasoning_blocks(self.signatures, extras))

    @staticmethod
    def error_body(spec: ErrorSpec, model: str | None, request_id: str) -> JsonBody:
        err_type, message = _ERRORS.get(spec.kind, _ERRORS["server"])
        limit, unit = 0, "requests"
        if spec.admission is not None:
            tokens = spec.admission.exceeded == "tokens"
            state = spec.admission.tokens if tokens else spec.admission.requests
            limit, unit = state.limit, ("input tokens" if tokens else "requests")
        text = spec.message or message.format(model=model or "unknown", limit=limit, unit=unit)
        return {"type": "error", "error": {"type": err_type, "message": text}, "request_id": request_id}

    def error(self, spec: ErrorSpec, model: str | None, req: HttpRequest | None = None) -> JsonResponse:
        request_id = self._request_id()
        headers = [("request-id", request_id), *self.retry_headers(spec)]
        if spec.admission is not None:
            headers += self._limit_headers(spec.admission)
        if spec.status < 500 and spec.status not in (408, 409, 429):
            headers.append(("x-should-retry", "false"))
        headers += spec.headers
        return JsonResponse(spec.status, _dumps(self.error_body(spec, model, request_id)), tuple(headers))

    def success_headers(self, admission: Admission) -> list[tuple[str, str]]:
        return [("request-id", self._request_id()), *self._limit_headers(admission)]

    def api_key(self, req: HttpRequest) -> str | None:
        return req.headers.get("x-api-key") or self.bearer(req)

    def _request_id(self) -> str:
        return f"req_011CEmu{self.ids.next():018d}"

    @staticmethod
    def _limit_headers(admission: Admission) -> list[tuple[str, str]]:
        wall = time.time
        headers: list[tuple[str, str]] = []
        states: tuple[tuple[str, LimitState], ...] = tuple(
            (kind, admission.requests if kind == "requests" else admission.tokens)
            for kind in ANTHROPIC_RATE_LIMIT_KINDS
        )
        name = ANTHROPIC_RATE_LIMIT_HEADER.format
        for kind, state in states:
            headers += [
                (name(kind=kind, field="limit"), str(state.limit)),
                (name(kind=kind, field="remaining"), str(state.remaining)),
                (name(kind=kind, field="reset"), rfc3339_in(state.reset, wall)),
            ]
        return headers

    def _count_tokens(self, req: HttpRequest, match: re.Match[str], body: JsonBody | None) -> JsonResponse:
        if body is None or not isinstance(body.get("messages"), list):
            return self.error(ErrorSpec("invalid_request", 400, "messages: Field required"), None)
        chars, _ = self._input(body)
        return JsonResponse(200, _dumps({"input_tokens": tokens_for_chars(chars)}),
                            (("request-id", self._request_id()),))

    # -- Message Batches: /v1/messages/batches ---------------------------------------

    def _batch_routes(self) -> list[Route]:
        base = r"/v1/messages/batches"
        return [
            Route("POST", re.compile(base), self._create_batch),
            Route("GET", re.compile(base), self._list_batches),
            Route("GET", re.compile(base + r"/(?P<batch_id>[^/]+)"), self._get_batch),
            Route("GET", re.compile(base + r"/(?P<batch_id>[^/]+)/results"), self._batch_results),
            Route("POST", re.compile(base + r"/(?P<batch_id>[^/]+)/cancel"), self._cancel_batch),
        ]

    def _json(self, body: object) -> JsonResponse:
        return JsonResponse(200, _dumps(body), (("request-id", self._request_id()),))

    def _create_batch(self, req: HttpRequest, match: re.Match[str], body: JsonBody | None) -> JsonResponse:
        requests = None if body is None else body.get("requests")
        if not isinstance(requests, list) or not requests:
            raise invalid("requests: Field required")
        items: list[BatchItem] = []
        seen: set[str] = set()
        for i, entry in enumerate(requests):
            custom_id = entry.get("custom_id") if isinstance(entry, dict) else None
            params = entry.get("params") if isinstance(entry, dict) else None
            if not isinstance(custom_id, str) or not _CUSTOM_ID.fullmatch(custom_id) or custom_id in seen:
                raise invalid(f"requests.{i}.custom_id: must be 1-64 letters, digits, '-' or '_', unique "
                              "within the batch")
            if not isinstance(params, dict):
                raise invalid(f"requests.{i}.params: Field required")
            seen.add(custom_id)
            items.append(BatchItem(custom_id, "/v1/messages", params))
        model = items[0].body.get("model")
        job = self.batches.create(f"msgbatch_emu{self.ids.next():020d}", self.name,
                                  model if isinstance(model, str) else None, items)
        return self._json(self._batch_object(job, req, fresh=True))

    def _batch_object(self, job: BatchJob, req: HttpRequest, *, fresh: bool = False) -> JsonBody:
        if not fresh:
            self.batches.advance(job, self)
        ended = job.state != "running"
        ok, failed, cancelled = counts(job)
        status = "ended" if ended else ("canceling" if job.cancel_requested is not None else "in_progress")
        host = req.headers.get("host", "127.0.0.1")
        return {
            "id": job.id, "type": "message_batch", "processing_status": status,
            "request_counts": {
                "processing": 0 if ended else len(job.items), "succeeded": ok, "errored": failed,
                "canceled": cancelled, "expired": 0,
            },
            "ended_at": rfc3339(job.ended_wall) if job.ended_wall is not None else None,
            "created_at": rfc3339(job.created_wall),
            "expires_at": rfc3339(job.created_wall + 86400),
            "archived_at": None,
            "cancel_initiated_at": rfc3339(job.created_wall) if job.cancel_requested is not None else None,
            "results_url": f"http://{host}/v1/messages/batches/{job.id}/results" if ended else None,
        }

    def _get_batch(self, req: HttpRequest, match: re.Match[str], body: JsonBody | None) -> JsonResponse:
        job = self.batches.find(self.name, match.group("batch_id"))
        return self._json(self._batch_object(job, req))

    def _cancel_batch(self, req: HttpRequest, match: re.Match[str], body: JsonBody | None) -> JsonResponse:
        job = self.batches.cancel(self.batches.find(self.name, match.group("batch_id")), self)
        return self._json(self._batch_object(job, req, fresh=True))

    def _batch_results(self, req: HttpRequest, match: re.Match[str], body: JsonBody | None) -> JsonResponse:
        job = self.batches.advance(self.batches.find(self.name, match.group("batch_id")), self)
        if job.results is None:
            raise invalid(f"Batch {job.id} has not finished processing; its results are not available yet.")
        lines: list[JsonBody] = []
        for r in job.results:
            if r.outcome == "succeeded":
                result: JsonBody = {"type": "succeeded", "message": r.body}
            elif r.outcome == "errored":
                result = {"type": "errored", "error": r.body}
            else:
                result = {"type": "canceled"}
            lines.append({"custom_id": r.custom_id, "result": result})
        return JsonResponse(200, jsonl(lines), (("request-id", self._request_id()),), "application/binary")

    def _list_batches(self, req: HttpRequest, match: re.Match[str], body: JsonBody | None) -> JsonResponse:
        query = parse_qs(req.query)
        limit = int(query.get("limit", ["20"])[0])
        after = query.get("after_id", [None])[0]
        jobs = self.batches.listed(self.name)
        if after is not None:
            ids = [j.id for j in jobs]
            jobs = jobs[ids.index(after) + 1:] if after in ids else []
        page = [self._batch_object(j, req) for j in jobs[:limit]]
        return self._json({
            "data": page, "has_more": len(jobs) > limit,
            "first_id": page[0]["id"] if page else None, "last_id": page[-1]["id"] if page else None,
        })


_CUSTOM_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
