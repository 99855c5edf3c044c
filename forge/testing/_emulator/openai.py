"""OpenAI Chat Completions (``POST /v1/chat/completions``) and ``GET /v1/models``."""

from __future__ import annotations

import json
import re
import time
from typing import ClassVar

from .base import (
    ChatCall,
    Dialect,
    ErrorSpec,
    JsonBody,
    JsonResponse,
    Route,
    StreamRenderer,
    Usage,
    int_field,
    invalid,
    messages_text,
)
from .http import HttpRequest
from .limits import Admission, go_duration
from .text import encode_json_str

_CREATED = 1_700_000_000
_FINGERPRINT = "fp_emulator"

# (type, code, message) per error kind; {model} is filled in.
_ERRORS: dict[str, tuple[str, str | None, str]] = {
    "invalid_request": ("invalid_request_error", None, "Invalid request."),
    "invalid_json": (
        "invalid_request_error",
        None,
        "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your "
        "HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid "
        "JSON.)",
    ),
    "auth": (
        "invalid_request_error",
        "invalid_api_key",
        "Incorrect API key provided: emulat*****-key. You can find your API key at "
        "https://platform.openai.com/account/api-keys.",
    ),
    "permission": ("invalid_request_error", None, "You are not allowed to sample from this model"),
    "not_found": (
        "invalid_request_error",
        "model_not_found",
        "The model `{model}` does not exist or you do not have access to it.",
    ),
    "context_length": (
        "invalid_request_error",
        "context_length_exceeded",
        "This model's maximum context length is 128000 tokens. However, your messages resulted in "
        "131072 tokens. Please reduce the length of the messages.",
    ),
    "too_large": ("invalid_request_error", None, "Request too large."),
    "rate_limit": (
        "requests",
        "rate_limit_exceeded",
        "Rate limit reached for {model} in organization org-emulator on requests per min (RPM): "
        "Limit {limit}, Used {limit}, Requested 1. Please try again in {wait}. "
        "Visit https://platform.openai.com/account/rate-limits to learn more.",
    ),
    "overloaded": ("server_error", None, "The engine is currently overloaded, please try again later"),
    "server": (
        "server_error",
        None,
        "The server had an error while processing your request. Sorry about that!",
    ),
    "unavailable": ("server_error", None, "The server is overloaded or not ready yet."),
    "timeout": ("server_error", None, "Request timed out."),
}

_ERRORS["invalid_key"] = _ERRORS["auth"]

_TOKENS_RATE_LIMIT = (
    "Rate limit reached for {model} in organization org-emulator on tokens per min (TPM): "
    "Limit {limit}, Used {used}, Requested {requested}. Please try again in {wait}. "
    "Visit https://platform.openai.com/account/rate-limits to learn more."
)
_TOO_LARGE = (
    "Request too large for {model} in organization org-emulator on tokens per min (TPM): "
    "Limit {limit}, Requested {requested}. The input or output tokens must be reduced in order to run "
    "successfully. Visit https://platform.openai.com/account/rate-limits to learn more."
)


def _usage(usage: Usage) -> JsonBody:
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.input_tokens + usage.output_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": usage.reasoning_tokens,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _dumps(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


class _ChatStream(StreamRenderer):
    """``data: {chat.completion.chunk}`` events, ``data: [DONE]`` at the end."""

    def __init__(self, completion_id: str, model: str, include_usage: bool) -> None:
        self._common = (
            b'{"id":%s,"object":"chat.completion.chunk","created":%d,"model":%s,"service_tier":"default",'
            b'"system_fingerprint":"%s","choices":'
            % (
                encode_json_str(completion_id).encode(),
                _CREATED,
                encode_json_str(model).encode(),
                _FINGERPRINT.encode(),
            )
        )
        self._usage_null = b',"usage":null' if include_usage else b""
        self._include_usage = include_usage
        self._prefix = b"data: " + self._common + b'[{"index":0,"delta":{"content":'
        self._suffix = b'},"logprobs":null,"finish_reason":null}]' + self._usage_null + b"}\n\n"

    def head(self) -> list[bytes]:
        return [
            b"data: " + self._common
            + b'[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,'
            b'"finish_reason":null}]' + self._usage_null + b"}\n\n"
        ]

    def chunk(self, text_json: bytes, output_tokens: int, finish: str | None) -> bytes:
        return self._prefix + text_json + self._suffix

    def tail(self, finish: str, usage: Usage, emitted: int) -> list[bytes]:
        reason = encode_json_str(finish).encode()
        events = [
            b"data: " + self._common
            + b'[{"index":0,"delta":{},"logprobs":null,"finish_reason":%s}]' % reason
            + self._usage_null + b"}\n\n"
        ]
        if self._include_usage:
            events.append(b"data: " + self._common + b'[],"usage":' + _dumps(_usage(usage)) + b"}\n\n")
        events.append(b"data: [DONE]\n\n")
        return events

    def error_event(self, spec: ErrorSpec) -> bytes:
        return b"data: " + _dumps(OpenAIDialect.error_body(spec, None)) + b"\n\n"


class OpenAIDialect(Dialect):
    name = "openai"
    finish_reasons: ClassVar[dict[str, str]] = {
        "stop": "stop", "length": "length", "tool_calls": "tool_calls", "content_filter": "content_filter",
    }

    def routes(self) -> list[Route]:
        return [
            Route("POST", re.compile(r"/v1/chat/completions")),
            Route("GET", re.compile(r"/v1/models"), self._list_models),
        ]

    def describe(
        self, req: HttpRequest, match: re.Match[str], body: JsonBody | None
    ) -> tuple[str | None, bool]:
        if body is None:
            return None, False
        model = body.get("model")
        return (model if isinstance(model, str) else None), body.get("stream") is True

    def parse_chat(self, req: HttpRequest, match: re.Match[str], body: JsonBody | None) -> ChatCall:
        if body is None:
            raise invalid("You must provide a JSON body.")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise invalid("you must provide a model parameter")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise invalid("Missing required parameter: 'messages'.")
        chars = 0
        last_user = ""
        for role, text in messages_text(messages):
            chars += len(text)
            if role == "user":
                last_user = text
        options = body.get("stream_options")
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
        return ChatCall(
            model=model,
            stream=body.get("stream") is True,
            max_tokens=int_field(body, "max_completion_tokens", "max_tokens"),
            input_chars=chars,
            last_user_text=last_user,
            include_usage=include_usage,
        )

    def completion(self, call: ChatCall, text: str, finish: str, usage: Usage) -> bytes:
        return _dumps({
            "id": f"chatcmpl-emu{self.ids.next():020d}",
            "object": "chat.completion",
            "created": _CREATED,
            "model": call.model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None, "annotations": []},
                "logprobs": None,
                "finish_reason": finish,
            }],
            "usage": _usage(usage),
            "service_tier": "default",
            "system_fingerprint": _FINGERPRINT,
        })

    def stream(self, call: ChatCall, usage: Usage) -> StreamRenderer:
        return _ChatStream(f"chatcmpl-emu{self.ids.next():020d}", call.model, call.include_usage)

    @staticmethod
    def error_body(spec: ErrorSpec, model: str | None) -> JsonBody:
        err_type, code, message = _ERRORS.get(spec.kind, _ERRORS["server"])
        admission = spec.admission
        fields = {"model": model or "the model", "limit": 0, "used": 0, "requested": 0, "wait": "1s"}
        if spec.kind == "rate_limit":
            wait = spec.retry_after if spec.retry_after is not None else (spec.retry_after_ms or 1000) / 1000
            fields["wait"] = go_duration(wait)
            if admission is not None:
                state = admission.tokens if admission.exceeded == "tokens" else admission.requests
                fields.update(limit=state.limit, used=state.limit - state.remaining, requested=admission.cost)
                if admission.exceeded == "tokens":
                    err_type = "tokens"
                    message = _TOO_LARGE if admission.too_large else _TOKENS_RATE_LIMIT
        param = "messages" if spec.kind == "context_length" else None
        return {
            "error": {
                "message": spec.message or message.format(**fields),
                "type": err_type,
                "param": param,
                "code": code,
            }
        }

    def error(self, spec: ErrorSpec, model: str | None, req: HttpRequest | None = None) -> JsonResponse:
        headers = [("x-request-id", self._request_id()), *self.retry_headers(spec)]
        if spec.admission is not None:
            headers += self._limit_headers(spec.admission)
        headers += spec.headers
        return JsonResponse(spec.status, _dumps(self.error_body(spec, model)), tuple(headers),
                            "application/json; charset=utf-8")

    def success_headers(self, admission: Admission) -> list[tuple[str, str]]:
        return [
            ("x-request-id", self._request_id()),
            ("openai-version", "2020-10-01"),
            ("openai-processing-ms", "1"),
            *self._limit_headers(admission),
        ]

    def api_key(self, req: HttpRequest) -> str | None:
        return self.bearer(req)

    def _request_id(self) -> str:
        return f"req_{self.ids.next():032x}"

    @staticmethod
    def _limit_headers(admission: Admission) -> list[tuple[str, str]]:
        r, t = admission.requests, admission.tokens
        return [
            ("x-ratelimit-limit-requests", str(r.limit)),
            ("x-ratelimit-limit-tokens", str(t.limit)),
            ("x-ratelimit-remaining-requests", str(r.remaining)),
            ("x-ratelimit-remaining-tokens", str(t.remaining)),
            ("x-ratelimit-reset-requests", go_duration(r.reset)),
            ("x-ratelimit-reset-tokens", go_duration(t.reset)),
        ]

    def _list_models(self, req: HttpRequest, match: re.Match[str], body: JsonBody | None) -> JsonResponse:
        created = int(time.time())
        models = [{"id": m, "object": "model", "created": created, "owned_by": "emulator"}
                  for m in ("gpt-emulator", "gpt-emulator-mini")]
        return JsonResponse(200, _dumps({"object": "list", "data": models}),
                            (("x-request-id", self._request_id()),))
