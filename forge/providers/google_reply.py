"""Gemini replies: GenerateContentResponse chunks (whole or streamed) as forge types; Gemini errors."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import httpx2
from google.genai import errors as genai_errors

from forge._wire import GeminiSSEDecoder, JSONArrayDecoder, loads
from forge.errors import (
    AuthenticationError,
    ProviderError,
)
from forge.providers._common import (
    check_stream_reply,
    error_for_status,
    headers_dict,
    parse_retry_after,
    reply_from_events,
)
from forge.providers._stream import stream_cut
from forge.types import (
    FinishReason,
    ReasoningBlock,
    Response,
    StreamEvent,
    StreamEventKind,
    ToolCall,
    Usage,
    stream_event,
)

_PROVIDER = "google"
_FILTER_REASONS = frozenset(
    {
        "SAFETY",
        "RECITATION",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_RECITATION",
        "ESCALATION",
        "MODEL_ARMOR",
    }
)
# CONTINUATION: the per-request token limit was reached before the answer was complete.
_LENGTH_REASONS = frozenset({"MAX_TOKENS", "CONTINUATION"})
_AUTH_REASONS = frozenset({"API_KEY_INVALID", "API_KEY_EXPIRED", "API_KEY_SERVICE_BLOCKED"})


# ---------------------------------------------------------------------- response


_RESPONSE_SHAPE = "a GenerateContentResponse JSON object ('candidates', 'promptFeedback' or 'usageMetadata')"
# forge asks for alt=sse; without it (some proxies drop the parameter) the API streams one JSON array.
_STREAM_MEDIA_TYPES = frozenset({"text/event-stream", "application/json"})


def _is_generate_content(data: Mapping[str, Any]) -> bool:
    # ai.google.dev/api/generate-content#generatecontentresponse: a blocked prompt has
    # promptFeedback and no candidates; an {"error": ...} body is raised by the caller.
    return any(key in data for key in ("candidates", "promptFeedback", "usageMetadata", "error"))


class _ChunkReader:
    """Turns decoded ``GenerateContentResponse`` chunks into forge events; keeps stream state.

    Every chunk carries the running usage totals. Building a Usage and an event
    for each would double the per-chunk cost, so usage is reported twice: at
    the first chunk that has it (the input side is known then) and, if it
    changed, with the final totals just before ``finish``.
    """

    __slots__ = (
        "_emitted",
        "_finish",
        "_last",
        "_meta",
        "_meta_chunk",
        "_pos",
        "_reasoning",
        "_tools",
        "blocked",
        "response_id",
        "text_signature",
    )

    def __init__(self) -> None:
        self._finish: str | None = None
        self._tools = 0
        self._meta: dict[str, Any] | None = None
        self._meta_chunk: dict[str, Any] | None = None
        self._emitted: Usage | None = None
        self.blocked = False
        self.response_id: str | None = None
        self.text_signature: str | None = None
        # Reasoning as parts: consecutive thought parts (streamed in pieces) form one block;
        # _pos counts the reply's parts so merged, which is where a block goes back.
        self._reasoning: list[_Thought] = []
        self._pos = 0
        self._last = ""

    @property
    def usage(self) -> Usage | None:
        """The latest totals."""
        meta = self._meta
        if meta is None:
            return None
        thoughts = meta.get("thoughtsTokenCount", 0)
        return Usage(
            input_tokens=meta.get("promptTokenCount", 0) + meta.get("toolUsePromptTokenCount", 0),
            output_tokens=meta.get("candidatesTokenCount", 0) + thoughts,
            cached_input_tokens=meta.get("cachedContentTokenCount", 0),
            reasoning_tokens=thoughts,
        )

    def feed(self, chunk: dict[str, Any]) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        candidates = chunk.get("candidates")
        if candidates:
            cand = candidates[0]
            content = cand.get("content")
            if content:
                self._on_parts(content.get("parts") or (), chunk, out)
            reason = cand.get("finishReason")
            if reason:
                self._finish = reason
        elif (chunk.get("promptFeedback") or {}).get("blockReason"):
            self.blocked = True
        meta = chunk.get("usageMetadata")
        if meta:
            self._meta = meta
            self._meta_chunk = chunk
            if self._emitted is None:
                self._emitted = self.usage
                out.append(StreamEvent("usage", usage=self._emitted, raw=chunk))
        if self.response_id is None:
            self.response_id = chunk.get("responseId")
        return out

    def _on_parts(
        self, parts: Iterable[dict[str, Any]], chunk: dict[str, Any], out: list[StreamEvent]
    ) -> None:
        for part in parts:
            text = part.get("text")
            if text is not None:
                index = self._on_text_part(part, text)
                if text:
                    thought = bool(part.get("thought"))
                    kind: StreamEventKind = "reasoning" if thought else "text"
                    out.append(stream_event(kind, text, chunk, index if thought else 0))
                if self.text_signature is None and "thoughtSignature" in part:
                    self.text_signature = sig = part["thoughtSignature"]
                    out.append(StreamEvent("reasoning", "", index=index, raw=chunk, signature=sig))
            elif "functionCall" in part:
                self._pos += 1
                self._last = "call"
                self._tool_call(part, chunk, out)

    def _on_text_part(self, part: dict[str, Any], text: str) -> int:
        """Account for a text part; returns the reasoning block it feeds (0 for plain answer text)."""
        signature = part.get("thoughtSignature")
        if part.get("thought"):
            if self._last != "thought":
                self._reasoning.append(_Thought(len(self._reasoning), "thinking", self._pos))
                self._pos += 1
                self._last = "thought"
            thought = self._reasoning[-1]
            thought.parts.append(text)
            thought.signature = signature or thought.signature
            return thought.ordinal
        if self._last != "text":
            self._pos += 1
            self._last = "text"
        if not signature:
            return 0
        self._reasoning.append(_Thought(len(self._reasoning), "signature", self._pos - 1, signature))
        return len(self._reasoning) - 1

    def response(self, events: list[StreamEvent], model: str, body: object) -> Response:
        """The whole reply whose chunk(s) produced ``events``."""
        return reply_from_events(
            events, provider=_PROVIDER, model=model, usage=self.usage, raw=body,
            finish_reason=self.finish_reason(), reasoning_signature=self.text_signature,
            reasoning_blocks=self.blocks(), id=self.response_id,
        )

    def blocks(self) -> tuple[ReasoningBlock, ...]:
        """The reply's reasoning blocks (thought parts, answer-part signatures), in order."""
        return tuple(t.block() for t in self._reasoning)

    def _tool_call(self, part: dict[str, Any], chunk: dict[str, Any], out: list[StreamEvent]) -> None:
        fc = part["functionCall"]
        index = self._tools
        self._tools += 1
        args = fc.get("args") or {}
        call_id = fc.get("id") or f"call_{index}"
        name = fc.get("name") or ""
        signature = part.get("thoughtSignature")
        if isinstance(args, str):  # not what Gemini sends, but never pass text off as arguments
            raw_args = args
            call = ToolCall.from_json(call_id, name, args, signature=signature, provider=_PROVIDER)
        else:
            raw_args = json.dumps(args, ensure_ascii=False, separators=(",", ":"))
            call = ToolCall(call_id, name, args, raw_args, signature=signature)
        out.append(StreamEvent("tool_call_start", index=index, tool_call=ToolCall(call_id, name), raw=chunk))
        out.append(StreamEvent("tool_call_delta", raw_args, index=index, raw=chunk))
        out.append(StreamEvent("tool_call_done", index=index, tool_call=call, raw=chunk))

    def finish_reason(self) -> FinishReason | None:
        reason = self._finish
        if reason is None:
            return "content_filter" if self.blocked else None
        if reason == "STOP":
            return "tool_calls" if self._tools else "stop"
        if reason in _LENGTH_REASONS:
            return "length"
        if reason in _FILTER_REASONS:
            return "content_filter"
        return "error"

    @property
    def truncated(self) -> bool:
        """No chunk said the answer was over (Gemini's last chunk always carries a finish reason)."""
        return self._finish is None and not self.blocked

    def finish_events(self) -> list[StreamEvent]:
        """The final usage (when it changed since it was last reported) and the one ``finish``."""
        out = [StreamEvent("reasoning_done", index=t.ordinal, reasoning=t.block()) for t in self._reasoning]
        usage = self.usage
        if usage is not None and usage != self._emitted:
            out.append(StreamEvent("usage", usage=usage, raw=self._meta_chunk))
        out.append(StreamEvent("finish", self.response_id or "", finish_reason=self.finish_reason()))
        return out


class _Thought:
    """A reasoning block being read: thought text parts, or a signature on an answer part."""

    __slots__ = ("kind", "ordinal", "parts", "position", "signature")

    def __init__(self, ordinal: int, kind: Literal["thinking", "signature"], position: int,
                 signature: str | None = None) -> None:
        self.ordinal = ordinal
        self.kind: Literal["thinking", "signature"] = kind
        self.position = position
        self.signature = signature
        self.parts: list[str] = []

    def block(self) -> ReasoningBlock:
        text = "".join(self.parts)
        return ReasoningBlock(_PROVIDER, self.kind, text, self.signature, position=self.position)



class _StreamReader(_ChunkReader):
    """A streamed reply: checks it, picks its decoder, raises in-band errors, ends it."""

    __slots__ = ("_base_url", "_model", "_response")

    def __init__(self, model: str, base_url: str) -> None:
        super().__init__()
        self._model = model
        self._base_url = base_url
        self._response: httpx2.Response | None = None

    async def start(self, response: httpx2.Response) -> GeminiSSEDecoder | JSONArrayDecoder:
        self._response = response
        if response.status_code != 200:
            await genai_errors.APIError.raise_for_async_response(response)
        await check_stream_reply(
            response, media_types=_STREAM_MEDIA_TYPES, expected="an SSE stream (or JSON array) "
            "of GenerateContentResponse", provider=_PROVIDER, model=self._model, base_url=self._base_url,
        )
        ctype = response.headers.get("content-type", "")
        # forge asks for SSE; a server (or proxy) that ignores alt=sse streams one
        # JSON array instead, as the API does without it. Decode either.
        json_array = "json" in ctype and "event-stream" not in ctype
        return JSONArrayDecoder() if json_array else GeminiSSEDecoder(texts=True)

    def on_payload(self, payload: dict[str, Any] | str) -> list[StreamEvent]:
        # JSON text from the SSE decoder, decoded here one object at a time
        chunk: dict[str, Any] = loads(payload) if isinstance(payload, str) else payload
        if "error" in chunk:
            assert self._response is not None
            _raise_in_band(chunk, self._response)
        candidates = chunk.get("candidates")
        if candidates and self._last == "text" and self._emitted is not None:
            text = _plain_text(candidates[0])
            if text:  # the steady state of an answer: what feed() does for it, without its calls
                meta = chunk.get("usageMetadata")
                if meta:
                    self._meta = meta
                    self._meta_chunk = chunk
                if self.response_id is None:
                    self.response_id = chunk.get("responseId")
                return [stream_event("text", text, chunk)]
        return self.feed(chunk)

    def close(self) -> list[StreamEvent]:
        if self.truncated:
            raise stream_cut("Gemini", "a finish reason", provider=_PROVIDER, model=self._model)
        return self.finish_events()


def _plain_text(cand: dict[str, Any]) -> str | None:
    """The text of a chunk's candidate that is one plain text part and nothing else (no thought,
    no signature, no finish reason); None for any other."""
    content = cand.get("content")
    parts = content.get("parts") if content else None
    if not parts or len(parts) != 1 or "finishReason" in cand:
        return None
    part = parts[0]
    if len(part) != 1:
        return None
    text = part.get("text")
    return text if isinstance(text, str) else None


def _raise_in_band(chunk: dict[str, Any], response: httpx2.Response) -> None:
    """An ``{"error": ...}`` chunk: raise what the SDK raises (``ClientError``/``ServerError``)."""
    error = chunk.get("error")
    code = error.get("code") if isinstance(error, dict) else None
    genai_errors.APIError.raise_error(code if isinstance(code, int) else 500, chunk, response)


def _api_error(exc: genai_errors.APIError, model: str | None, base_url: str | None = None) -> ProviderError:
    headers = headers_dict(getattr(exc.response, "headers", None)) if exc.response is not None else {}
    error = _error_body(exc.details)
    listed = error.get("details")
    details: list[Any] = listed if isinstance(listed, list) else []
    retry_after = parse_retry_after(headers) if headers else None
    reason = None
    for item in details:
        if not isinstance(item, dict):
            continue
        kind = str(item.get("@type", ""))
        if kind.endswith("google.rpc.RetryInfo") and retry_after is None:
            retry_after = _duration_seconds(item.get("retryDelay"))
        elif kind.endswith("google.rpc.ErrorInfo"):
            reason = item.get("reason")
    message = exc.message or str(exc)
    status = exc.code if isinstance(exc.code, int) else None
    if reason in _AUTH_REASONS:
        return AuthenticationError(
            f"google said: {message} (the API key was refused)",
            provider=_PROVIDER,
            model=model,
            status=status,
            code=reason,
            headers=headers,
            base_url=base_url,
        )
    return error_for_status(
        status,
        f"google said: {message}",
        provider=_PROVIDER,
        model=model,
        code=exc.status,
        headers=headers,
        retry_after=retry_after,
        base_url=base_url,
    )


def _error_body(details: object) -> dict[str, Any]:
    if isinstance(details, list) and details:
        details = details[0]
    if not isinstance(details, dict):
        return {}
    inner = details.get("error")
    return inner if isinstance(inner, dict) else details


def _duration_seconds(value: object) -> float | None:
    """A protobuf Duration in JSON (``"7s"``, ``"1.5s"``) in seconds."""
    if not isinstance(value, str) or not value.endswith("s"):
        return None
    try:
        seconds = float(value[:-1])
    except ValueError:
        return None
    return seconds if seconds >= 0 else None
