"""OpenAI Chat Completions (``POST /v1/chat/completions``), the Responses API
(``POST /v1/responses``, in :mod:`.openai_responses`) and ``GET /v1/models``."""

from __future__ import annotations

import json
import re
import time
from typing import ClassVar
from urllib.parse import parse_qs

from . import openai_responses as responses_api
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
    int_field,
    invalid,
    messages_text,
)
from .batch import BatchItem, BatchJob, StoredFile, counts, jsonl, parse_multipart, usage_total
from .caching import CacheUse, Segment, digests_at
from .http import HttpRequest
from .limits import Admission, go_duration
from .text import content_text, encode_json_str
from .tools import function_tools, openai_tool_choice, split_arguments
from .vendor_facts import (
    CHARS_PER_TOKEN,
    OPENAI_CACHE_MIN_TOKENS,
    OPENAI_CACHE_STEP_TOKENS,
    OPENAI_CACHE_TTLS,
    OPENAI_RATE_LIMIT_HEADERS,
)

_CREATED = 1_700_000_000
# Automatic prompt caching: prefixes from 1,024 tokens on, in 128-token steps (4 chars per token).
_CACHE_MIN_CHARS = OPENAI_CACHE_MIN_TOKENS * CHARS_PER_TOKEN
_CACHE_STEP_CHARS = OPENAI_CACHE_STEP_TOKENS * CHARS_PER_TOKEN
_CACHE_TTLS = OPENAI_CACHE_TTLS
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
        "completion_tokens": usage.output_tokens + usage.reasoning_tokens,
        "total_tokens": usage.input_tokens + usage.output_tokens + usage.reasoning_tokens,
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


def _not_gemini(req: HttpRequest) -> bool:
    return "x-goog-api-key" not in req.headers and "key=" not in req.query


def _prompt_segments(body: JsonBody) -> list[Segment]:
    """The prompt as OpenAI caches it: tools and the output format first, then each message."""
    head = json.dumps([body.get("tools"), body.get("response_format")], sort_keys=False)
    segments = [Segment("head:" + head, "")]
    messages = body.get("messages")
    for message in messages if isinstance(messages, list) else []:
        if isinstance(message, dict):
            content = message.get("content")
            extra = {k: v for k, v in message.items() if k != "content"}
            parts = content if isinstance(content, list) else []
            # Images and audio are part of the prefix too; text parts count as the plain text they hold.
            shape = [part for part in parts if isinstance(part, dict) and part.get("type") != "text"]
            segments.append(Segment(json.dumps([extra, shape]), content_text(content)))
    return segments


class _ChatStream(StreamRenderer):
    """``data: {chat.completion.chunk}`` events, ``data: [DONE]`` at the end."""

    def __init__(
        self, completion_id: str, model: str, include_usage: bool, extras: ReplyExtras = NO_EXTRAS
    ) -> None:
        self._calls = extras.calls
        self._has_text = extras.has_text
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
        # A reply that is only tool calls opens with content null, as OpenAI's do.
        content = b'""' if self._has_text else b"null"
        return [
            b"data: " + self._common
            + b'[{"index":0,"delta":{"role":"assistant","content":%b,"refusal":null},"logprobs":null,'
            b'"finish_reason":null}]' % content + self._usage_null + b"}\n\n"
        ]

    def chunk(self, text_json: bytes, output_tokens: int, finish: str | None) -> bytes:
        return self._prefix + text_json + self._suffix

    def tail(self, finish: str, usage: Usage, emitted: int) -> list[bytes]:
        reason = encode_json_str(finish).encode()
        events = self._tool_call_events() if finish != "length" else []
        events += [
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

    def _tool_call_events(self) -> list[bytes]:
        """Per call: a first delta with id, type, name and empty arguments, then argument fragments."""
        events: list[bytes] = []
        for index, call in enumerate(self._calls):
            first = {"index": index, "id": call.id, "type": "function",
                     "function": {"name": call.name, "arguments": ""}}
            deltas = [first] + [{"index": index, "function": {"arguments": piece}}
                                for piece in split_arguments(call.arguments)]
            for delta in deltas:
                choice = _dumps([{"index": 0, "delta": {"tool_calls": [delta]}, "logprobs": None,
                                  "finish_reason": None}])
                events.append(b"data: " + self._common + choice + self._usage_null + b"}\n\n")
        return events


def _tool_calls(extras: ReplyExtras) -> list[JsonBody]:
    return [{"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in extras.calls]


class OpenAIDialect(Dialect):
    name = "openai"
    finish_reasons: ClassVar[dict[str, str]] = {
        "stop": "stop", "length": "length", "tool_calls": "tool_calls", "content_filter": "content_filter",
    }

    def routes(self) -> list[Route]:
        return [
            Route("POST", re.compile(r"/v1/chat/completions")),
            Route("POST", re.compile(r"/v1/responses")),
            Route("GET", re.compile(r"/v1/models"), self._list_models),
            *self._batch_routes(),
        ]

    def describe(
        self, req: HttpRequest, match: re.Match[str], body: JsonBody | None
    ) -> tuple[str | None, bool]:
        if body is None:
            return None, False
        model = body.get("model")
        return (model if isinstance(model, str) else None), body.get("stream") is True

    def parse_chat(self, req: HttpRequest, match: re.Match[str], body: JsonBody | None) -> ChatCall:
        if req.path == "/v1/responses":
            return responses_api.parse(body, self.signatures)
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
        last = messages[-1] if isinstance(messages[-1], dict) else {}
        effort = body.get("reasoning_effort")
        return ChatCall(
            model=model,
            stream=body.get("stream") is True,
            max_tokens=int_field(body, "max_completion_tokens", "max_tokens"),
            input_chars=chars,
            last_user_text=last_user,
            include_usage=include_usage,
            tools=function_tools(body.get("tools")),
            tool_choice=openai_tool_choice(body.get("tool_choice")),
            after_tool=last.get("role") == "tool",
            tool_result_text=content_text(last.get("content")) if last.get("role") == "tool" else "",
            reasoning=isinstance(effort, str) and effort not in ("none", "minimal"),
        )

    def cache_usage(self, call: ChatCall, body: JsonBody | None, input_tokens: int) -> CacheUse:
        """Automatic prompt caching: read the longest cached 128-token step of the prompt."""
        if body is None:
            return CacheUse()
        segments = _prompt_segments(body)
        total = sum(len(seg.text) for seg in segments)
        if total < _CACHE_MIN_CHARS:
            return CacheUse()
        options = body.get("prompt_cache_options")
        ttl = _CACHE_TTLS.get(str(body.get("prompt_cache_retention") or "in_memory"), 600.0)
        if isinstance(options, dict):
            ttl = max(ttl, _CACHE_TTLS.get(str(options.get("ttl") or "in_memory"), 600.0))
        namespace = f"{call.model}\x1f{body.get('prompt_cache_key') or ''}"
        steps = range(_CACHE_MIN_CHARS, total + 1, _CACHE_STEP_CHARS)
        now = self.clock()
        cache = self.caches.prefixes
        read = 0
        for position, digest in digests_at(segments, steps):
            if cache.alive(namespace, digest, now):
                read = position // CHARS_PER_TOKEN
            cache.put(namespace, digest, now + ttl)
        cache.prune(now)
        return CacheUse(read=min(read, input_tokens))

    def completion(
        self, call: ChatCall, text: str, finish: str, usage: Usage, extras: ReplyExtras = NO_EXTRAS
    ) -> bytes:
        if call.api == "responses":
            return responses_api.completion(self.ids, call, text, finish, usage, extras, self.signatures)
        message: JsonBody = {"role": "assistant", "content": text, "refusal": None, "annotations": []}
        if extras.calls:
            message["content"] = text or None
            message["tool_calls"] = _tool_calls(extras)
        return _dumps({
            "id": f"chatcmpl-emu{self.ids.next():020d}",
            "object": "chat.completion",
            "created": _CREATED,
            "model": call.model,
            "choices": [{
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": finish,
            }],
            "usage": _usage(usage),
            "service_tier": "default",
            "system_fingerprint": _FINGERPRINT,
        })

    def stream(self, call: ChatCall, usage: Usage, extras: ReplyExtras = NO_EXTRAS) -> StreamRenderer:
        if call.api == "responses":
            return responses_api.ResponseStream(self.ids, call, usage, extras, self.signatures)
        return _ChatStream(f"chatcmpl-emu{self.ids.next():020d}", call.model, call.include_usage, extras)

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
        values = (str(r.limit), str(t.limit), str(r.remaining), str(t.remaining),
                  go_duration(r.reset), go_duration(t.reset))
        return list(zip(OPENAI_RATE_LIMIT_HEADERS, values, strict=True))

    def _list_models(self, req: HttpRequest, match: re.Match[str], body: JsonBody | None) -> JsonResponse:
        created = int(time.time())
        models = [{"id": m, "object": "model", "created": created, "owned_by": "emulator"}
                  for m in ("gpt-emulator", "gpt-emulator-mini")]
        return JsonResponse(200, _dumps({"object": "list", "data": models}),
                            (("x-request-id", self._request_id()),))

    # -- Batch API: files and /v1/batches ------------------------------------------

    def _batch_routes(self) -> list[Route]:
        return [
            Route("POST", re.compile(r"/v1/files"), self._upload_file, raw_body=True),
            Route("GET", re.compile(r"/v1/files/(?P<file_id>[^/]+)"), self._get_file),
            Route("GET", re.compile(r"/v1/files/(?P<file_id>[^/]+)/content"), self._file_content),
            Route("DELETE", re.compile(r"/v1/files/(?P<file_id>[^/]+)"), self._delete_file),
            Route("POST", re.compile(r"/v1/batches"), self._create_batch),
            # Gemini lists and reads its batches under the same paths, with its own key header.
            Route("GET", re.compile(r"/v1/batches"), self._list_batches, accepts=_not_gemini),
            Route("GET", re.compile(r"/v1/batches/(?P<batch_id>[^/:]+)"), self._get_batch,
                  accepts=_not_gemini),
            Route("POST", re.compile(r"/v1/batches/(?P<batch_id>[^/]+)/cancel"), self._cancel_batch),
        ]

    def _json(self, body: object) -> JsonResponse:
        return JsonResponse(200, _dumps(body), (("x-request-id", self._request_id()),))

    @staticmethod
    def _file_object(stored: StoredFile) -> JsonBody:
        return {
            "object": "file", "id": stored.id, "purpose": stored.purpose, "filename": stored.filename,
            "bytes": len(stored.data), "created_at": int(stored.created_wall),
            "expires_at": int(stored.created_wall) + 30 * 86400, "status": "processed",
            "status_details": None,
        }

    def _upload_file(self, req: HttpRequest, match: re.Match[str], body: JsonBody | None) -> JsonResponse:
        fields = parse_multipart(req)
        if "file" not in fields or "purpose" not in fields:
            raise invalid("Missing required parameter: 'file' and 'purpose' are required.")
        filename, data = fields["file"]
        purpose = fields["purpose"][1].decode()
        stored = self.batches.add_file(f"file-emu{self.ids.next():020d}", filename or "upload", purpose, data)
        return self._json(self._file_object(stored))

    def _get_file(self, req: HttpRequest, match: re.Match[str], body: JsonBody | None) -> JsonResponse:
        return self._json(self._file_object(self.batches.file(match.group("file_id"))))

    def _delete_file(self, req: HttpRequest, match: re.Match[str], body: JsonBody | None) -> JsonResponse:
        # DELETE /v1/files/{file_id} -> {"id", "object": "file", "deleted": true} (OpenAI Files API).
        stored = self.batches.file(match.group("file_id"))
        del self.batches.files[stored.id]
        return self._json({"id": stored.id, "object": "file", "deleted": True})

    def _file_content(self, req: HttpRequest, match: re.Match[str], body: JsonBody | None) -> JsonResponse:
        stored = self.batches.file(match.group("file_id"))
        return JsonResponse(200, stored.data, (("x-request-id", self._request_id()),),
                            "application/octet-stream")

    def _create_batch(self, req: HttpRequest, match: re.Match[str], body: JsonBody | None) -> JsonResponse:
        if body is None:
            raise invalid("You must provide a JSON body.")
        endpoint = body.get("endpoint")
        if endpoint != "/v1/chat/completions":
            raise invalid(f"Invalid endpoint {endpoint!r}: the emulator batches '/v1/chat/completions'.")
        if body.get("completion_window") != "24h":
            raise invalid("Invalid completion_window: only '24h' is supported.")
        stored = self.batches.file(str(body.get("input_file_id")))
        items: list[BatchItem] = []
        seen: set[str] = set()
        for n, text in enumerate(stored.data.decode().splitlines(), 1):
            if not text.strip():
                continue
            try:
                line = json.loads(text)
            except ValueError:
                raise invalid(f"Line {n} of the input file is not valid JSON.") from None
            custom_id, url = line.get("custom_id"), line.get("url")
            if not isinstance(custom_id, str) or custom_id in seen:
                raise invalid(f"Line {n}: 'custom_id' must be a string unique within the batch.")
            if url != endpoint or line.get("method") != "POST" or not isinstance(line.get("body"), dict):
                raise invalid(f"Line {n}: expected method 'POST', url {endpoint!r} and a JSON 'body'.")
            seen.add(custom_id)
            items.append(BatchItem(custom_id, endpoint, line["body"]))
        if not items:
            raise invalid("The input file contains no requests.")
        model = items[0].body.get("model")
        job = self.batches.create(
            f"batch_emu{self.ids.next():020d}", self.name, model if isinstance(model, str) else None, items,
            endpoint=endpoint, input_file_id=stored.id, metadata=body.get("metadata"),
        )
        return self._json(self._batch_object(job, new=True))

    def _batch_object(self, job: BatchJob, *, new: bool = False, advance: bool = True) -> JsonBody:
        if advance and not new:
            self.batches.advance(job, self)
        created = int(job.created_wall)
        ended = int(job.ended_wall) if job.ended_wall is not None else None
        status = {"completed": "completed", "cancelled": "cancelled"}.get(job.state, "in_progress")
        if new:
            status = "validating"
        elif job.state == "running" and job.cancel_requested is not None:
            status = "cancelling"
        ok, failed, _ = counts(job)
        if job.results is not None and "output_file_id" not in job.info:
            self._write_result_files(job)
        usage = usage_total(job)
        return {
            "id": job.id, "object": "batch", "endpoint": job.info["endpoint"], "model": job.model,
            "errors": None, "input_file_id": job.info["input_file_id"], "completion_window": "24h",
            "status": status, "output_file_id": job.info.get("output_file_id"),
            "error_file_id": job.info.get("error_file_id"), "created_at": created, "in_progress_at": created,
            "expires_at": created + 86400, "finalizing_at": ended if status == "completed" else None,
            "completed_at": ended if status == "completed" else None, "failed_at": None, "expired_at": None,
            "cancelling_at": int(job.created_wall) if job.cancel_requested is not None else None,
            "cancelled_at": ended if status == "cancelled" else None,
            "request_counts": {"total": len(job.items), "completed": ok, "failed": failed},
            "usage": {
                "input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens,
                "total_tokens": usage.input_tokens + usage.output_tokens,
                "input_tokens_details": {"cached_tokens": usage.cached_tokens},
                "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
            },
            "metadata": job.info.get("metadata"),
        }

    def _write_result_files(self, job: BatchJob) -> None:
        output: list[JsonBody] = []
        errors: list[JsonBody] = []
        for result in job.results or []:
            line: JsonBody = {"id": f"batch_req_emu{self.ids.next():020d}", "custom_id": result.custom_id}
            if result.outcome == "cancelled":
                line.update(response=None, error={
                    "code": "batch_cancelled", "message": "This request was cancelled before it ran."})
                errors.append(line)
                continue
            line.update(response={"status_code": result.status, "request_id": self._request_id(),
                                  "body": result.body}, error=None)
            (output if result.outcome == "succeeded" else errors).append(line)
        for key, lines in (("output_file_id", output), ("error_file_id", errors)):
            if lines:
                name = f"{job.id}_{key.removesuffix('_file_id')}.jsonl"
                stored = self.batches.add_file(f"file-emu{self.ids.next():020d}", name, "batch_output",
                                               jsonl(lines))
                job.info[key] = stored.id
            else:
                job.info[key] = None

    def _get_batch(self, req: HttpRequest, match: re.Match[str], body: JsonBody | None) -> JsonResponse:
        return self._json(self._batch_object(self.batches.find(self.name, match.group("batch_id"))))

    def _cancel_batch(self, req: HttpRequest, match: re.Match[str], body: JsonBody | None) -> JsonResponse:
        job = self.batches.cancel(self.batches.find(self.name, match.group("batch_id")), self)
        return self._json(self._batch_object(job, advance=False))

    def _list_batches(self, req: HttpRequest, match: re.Match[str], body: JsonBody | None) -> JsonResponse:
        query = parse_qs(req.query)
        limit = int(query.get("limit", ["20"])[0])
        after = query.get("after", [None])[0]
        jobs = self.batches.listed(self.name)
        if after is not None:
            ids = [j.id for j in jobs]
            jobs = jobs[ids.index(after) + 1:] if after in ids else []
        page = [self._batch_object(j) for j in jobs[:limit]]
        return self._json({
            "object": "list", "data": page, "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None, "has_more": len(jobs) > limit,
        })
