"""Ollama: ``POST /api/chat`` (JSON or NDJSON), ``GET /api/tags``, ``GET /api/version``."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import UTC, datetime
from typing import ClassVar

from .base import (
    NO_EXTRAS,
    ChatCall,
    Dialect,
    ErrorSpec,
    JsonBody,
    JsonResponse,
    ReplyExtras,
    Route,
    StreamRenderer,
    Usage,
    invalid,
    messages_text,
)
from .caching import CacheUse
from .http import HttpRequest
from .limits import Admission
from .text import content_text, encode_json_str
from .tools import function_tools

_ERRORS: dict[str, str] = {
    "invalid_request": "invalid request",
    "invalid_json": "invalid character 'x' looking for beginning of value",
    "invalid_key": "unauthorized",
    "auth": "unauthorized",
    "permission": "forbidden",
    "not_found": "model '{model}' not found",
    "context_length": "the input length exceeds the context length",
    "too_large": "request entity too large",
    "rate_limit": "too many requests, please retry later",
    "overloaded": "server busy, please try again.  maximum pending requests exceeded",
    "server": "an error was encountered while running the model: unexpected EOF",
    "unavailable": "server busy, please try again.  maximum pending requests exceeded",
    "timeout": "timed out waiting for llama runner to start",
}

# Deterministic "timings", in nanoseconds. A model that is not loaded (first call, or its
# keep_alive ran out on the emulator's clock) reports a cold load.
_LOAD_NS = 1_000_000
_COLD_LOAD_NS = 2_500_000_000
_DEFAULT_KEEP_ALIVE = 300.0
# The context window when the request sets no options.num_ctx; longer prompts are truncated to it.
_DEFAULT_NUM_CTX = 4096
_DURATION_PART = re.compile(r"(-?\d+(?:\.\d+)?)(ms|h|m|s)?")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def _keep_alive_seconds(value: object) -> float:
    """Ollama's ``keep_alive``: seconds or a Go duration ("5m", "1h30m"); negative means forever."""
    if isinstance(value, bool) or value is None:
        return _DEFAULT_KEEP_ALIVE
    if isinstance(value, (int, float)):
        return float("inf") if value < 0 else float(value)
    if isinstance(value, str):
        parts = _DURATION_PART.findall(value.strip())
        if parts and "".join(n + u for n, u in parts) == value.strip():
            seconds = sum(float(n) * _UNITS[u or None] for n, u in parts)
            return float("inf") if seconds < 0 else seconds
    return _DEFAULT_KEEP_ALIVE
_PROMPT_NS_PER_TOKEN = 100_000
_EVAL_NS_PER_TOKEN = 1_000_000


def _dumps(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _timings(done_reason: str, usage: Usage, load_ns: int = _LOAD_NS) -> JsonBody:
    prompt_ns = usage.input_tokens * _PROMPT_NS_PER_TOKEN
    eval_ns = usage.output_tokens * _EVAL_NS_PER_TOKEN
    return {
        "done_reason": done_reason,
        "done": True,
        "total_duration": load_ns + prompt_ns + eval_ns,
        "load_duration": load_ns,
        "prompt_eval_count": usage.input_tokens,
        "prompt_eval_duration": prompt_ns,
        "eval_count": usage.output_tokens,
        "eval_duration": eval_ns,
    }


class _ChatStream(StreamRenderer):
    """One JSON object per line; the last has ``done: true`` and the counts."""

    content_type = "application/x-ndjson"

    def __init__(self, model: str, load_ns: int = _LOAD_NS, extras: ReplyExtras = NO_EXTRAS) -> None:
        self._model = model
        self._load_ns = load_ns
        self._extras = extras
        self._created = _now()
        self._prefix = b'{"model":%s,"created_at":"%s","message":{"role":"assistant","content":' % (
            encode_json_str(model).encode(), self._created.encode())

    def _line(self, message: JsonBody) -> bytes:
        line = {"model": self._model, "created_at": self._created,
                "message": {"role": "assistant", "content": "", **message}, "done": False}
        return _dumps(line) + b"\n"

    def head(self) -> list[bytes]:
        return [self._line({"thinking": piece}) for piece in self._extras.reasoning]

    def chunk(self, text_json: bytes, output_tokens: int, finish: str | None) -> bytes:
        return self._prefix + text_json + b'},"done":false}\n'

    def tail(self, finish: str, usage: Usage, emitted: int) -> list[bytes]:
        lines = []
        if self._extras.calls and finish != "length":
            lines.append(self._line({"tool_calls": _tool_calls(self._extras)}))
        final = {"model": self._model, "created_at": self._created,
                 "message": {"role": "assistant", "content": ""},
                 **_timings(finish, _with_thinking(usage), self._load_ns)}
        return [*lines, _dumps(final) + b"\n"]

    def error_event(self, spec: ErrorSpec) -> bytes:
        return _dumps(OllamaDialect.error_body(spec, self._model)) + b"\n"


def _with_thinking(usage: Usage) -> Usage:
    """Ollama's ``eval_count`` counts thinking tokens too."""
    return replace(usage, output_tokens=usage.output_tokens + usage.reasoning_tokens)


def _tool_calls(extras: ReplyExtras) -> list[JsonBody]:
    """Whole calls, arguments as an object (scripted non-object JSON stays text)."""
    out: list[JsonBody] = []
    for index, call in enumerate(extras.calls):
        try:
            args: object = json.loads(call.arguments) if call.arguments else {}
        except ValueError:
            args = call.arguments
        out.append({"id": call.id, "function": {"index": index, "name": call.name, "arguments": args}})
    return out


def _num_predict(options: object) -> int | None:
    """``options.num_predict`` as a token cap (-1: unlimited, -2: fill the context; both no cap here)."""
    value = options.get("num_predict") if isinstance(options, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _num_ctx(options: object) -> int:
    num_ctx = options.get("num_ctx") if isinstance(options, dict) else None
    if not isinstance(num_ctx, int) or isinstance(num_ctx, bool) or num_ctx <= 0:
        return _DEFAULT_NUM_CTX
    return num_ctx


def _tool_result(messages: object) -> str | None:
    """The last message's text when it is a ``tool`` result, else None."""
    last = messages[-1] if isinstance(messages, list) and messages else {}
    if not isinstance(last, dict) or last.get("role") != "tool":
        return None
    return content_text(last.get("content"))


def _thinks(think: object) -> bool:
    """``think``: true, or a level such as "high" (an empty/"false"/"none" string is off)."""
    return think is True or (isinstance(think, str) and think not in ("", "false", "none"))


class OllamaDialect(Dialect):
    name = "ollama"
    finish_reasons: ClassVar[dict[str, str]] = {
        "stop": "stop", "length": "length", "tool_calls": "stop", "content_filter": "stop",
    }

    def routes(self) -> list[Route]:
        return [
            Route("POST", re.compile(r"/api/chat")),
            Route("GET", re.compile(r"/api/tags"), self._tags),
            Route("GET", re.compile(r"/api/version"), self._version),
        ]

    def describe(
        self, req: HttpRequest, match: re.Match[str], body: JsonBody | None
    ) -> tuple[str | None, bool]:
        if body is None:
            return None, False
        model = body.get("model")
        return (model if isinstance(model, str) else None), body.get("stream", True) is not False

    def parse_chat(self, req: HttpRequest, match: re.Match[str], body: JsonBody | None) -> ChatCall:
        if body is None:
            raise invalid("missing request body")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise invalid("model is required")
        chars = 0
        last_user = ""
        for role, text in messages_text(body.get("messages")):
            chars += len(text)
            if role == "user":
                last_user = text
        options = body.get("options")
        # Ollama truncates the prompt to the context window, silently
        chars = min(chars, _num_ctx(options) * 4)
        result = _tool_result(body.get("messages"))
        thinks = _thinks(body.get("think"))
        return ChatCall(model=model, stream=body.get("stream", True) is not False,
                        max_tokens=_num_predict(options), input_chars=chars, last_user_text=last_user,
                        tools=function_tools(body.get("tools")),
                        after_tool=result is not None, tool_result_text=result or "",
                        reasoning=thinks, show_reasoning=thinks)

    def completion(
        self, call: ChatCall, text: str, finish: str, usage: Usage, extras: ReplyExtras = NO_EXTRAS
    ) -> bytes:
        message: JsonBody = {"role": "assistant", "content": text}
        if extras.reasoning:
            message["thinking"] = "".join(extras.reasoning)
        if extras.calls:
            message["tool_calls"] = _tool_calls(extras)
        return _dumps({"model": call.model, "created_at": _now(), "message": message,
                       **_timings(finish, _with_thinking(usage), call.notes.get("load_ns", _LOAD_NS))})

    def stream(self, call: ChatCall, usage: Usage, extras: ReplyExtras = NO_EXTRAS) -> StreamRenderer:
        return _ChatStream(call.model, call.notes.get("load_ns", _LOAD_NS), extras)

    def cache_usage(self, call: ChatCall, body: JsonBody | None, input_tokens: int) -> CacheUse:
        """Model residency: a cold load unless the model is still loaded; ``keep_alive`` sets how long."""
        now = self.clock()
        key = f"loaded:{call.model}"
        loaded_until = self.caches.contents.get(key)
        call.notes["load_ns"] = _LOAD_NS if loaded_until is not None and loaded_until > now else _COLD_LOAD_NS
        keep = _keep_alive_seconds(None if body is None else body.get("keep_alive"))
        self.caches.contents[key] = now + keep
        return CacheUse()

    @staticmethod
    def error_body(spec: ErrorSpec, model: str | None) -> JsonBody:
        message = spec.message or _ERRORS.get(spec.kind, _ERRORS["server"]).format(model=model or "unknown")
        return {"error": message}

    def error(self, spec: ErrorSpec, model: str | None, req: HttpRequest | None = None) -> JsonResponse:
        headers = (*self.retry_headers(spec), *spec.headers)
        return JsonResponse(spec.status, _dumps(self.error_body(spec, model)), headers,
                            "application/json; charset=utf-8")

    def success_headers(self, admission: Admission) -> list[tuple[str, str]]:
        return []

    def api_key(self, req: HttpRequest) -> str | None:
        return self.bearer(req)

    def _tags(self, req: HttpRequest, match: re.Match[str], body: JsonBody | None) -> JsonResponse:
        models = [{"name": m, "model": m, "modified_at": "2030-01-01T00:00:00Z", "size": 0,
                   "digest": "0" * 64, "details": {"format": "gguf", "family": "emulator"}}
                  for m in ("llama-emulator:latest",)]
        return JsonResponse(200, _dumps({"models": models}))

    def _version(self, req: HttpRequest, match: re.Match[str], body: JsonBody | None) -> JsonResponse:
        return JsonResponse(200, b'{"version":"0.12.0"}')
