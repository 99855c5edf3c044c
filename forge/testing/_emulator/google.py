"""Gemini API: ``models/{model}:generateContent``, ``:streamGenerateContent``
(``?alt=sse``, or a streamed JSON array without it) and ``:countTokens``,
under ``/v1/``, ``/v1beta/`` or ``/v1alpha/``."""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import parse_qs

from .base import (
    NO_EXTRAS,
    ApiError,
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
    invalid,
)
from .batch import BatchItem, BatchJob, counts, rfc3339
from .caching import CacheUse, gemini_min_tokens
from .http import HttpRequest
from .limits import Admission, seconds_header
from .signatures import Signatures, digest
from .text import content_text, encode_json_str, tokens_for_chars
from .vendor_facts import GEMINI_DEFAULT_CACHE_TTL

_JSON = "application/json; charset=UTF-8"

_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}

# (http status, message) per kind; {model}, {version}, {limit}, {wait} are filled in.
_ERRORS: dict[str, tuple[int, str]] = {
    "invalid_request": (400, "Request contains an invalid argument."),
    "invalid_json": (400, "Invalid JSON payload received. Unexpected token."),
    "invalid_key": (400, "API key not valid. Please pass a valid API key."),
    "auth": (
        401,
        "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or "
        "other valid authentication credential. See "
        "https://developers.google.com/identity/sign-in/web/devconsole-project.",
    ),
    "permission": (
        403,
        "Method doesn't allow unregistered callers (callers without established identity). Please use API "
        "Key or other form of API consumer identity to call this API.",
    ),
    "not_found": (
        404,
        "models/{model} is not found for API version {version}, or is not supported for generateContent. "
        "Call ListModels to see the list of available models and their supported methods.",
    ),
    "context_length": (
        400,
        "The input token count (1048577) exceeds the maximum number of tokens allowed (1048576).",
    ),
    "too_large": (400, "Request payload size exceeds the limit."),
    "rate_limit": (
        429,
        "You exceeded your current quota, please check your plan and billing details. For more "
        "information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits. To monitor "
        "your current usage, head to: https://ai.dev/usage?tab=rate-limit. \n* Quota exceeded for metric: "
        "generativelanguage.googleapis.com/generate_content_{metric}, limit: {limit}, model: {model}\n"
        "Please retry in {wait}s.",
    ),
    "overloaded": (503, "The model is overloaded. Please try again later."),
    "server": (
        500,
        "An internal error has occurred. Please retry or report in "
        "https://developers.generativeai.google/guide/troubleshooting",
    ),
    "unavailable": (503, "The service is currently unavailable."),
    "timeout": (504, "The request timed out. Please try again."),
}


def _dumps(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


_CACHE_NOT_FOUND = "CachedContent not found (or permission denied)"
_CACHE_CONFLICT = (
    "CachedContent can not be used with GenerateContent request setting system_instruction, tools or "
    "tool_config.\n\nProposed fix: move those values to CachedContent from GenerateContent request."
)
_DEFAULT_CACHE_TTL = GEMINI_DEFAULT_CACHE_TTL


@dataclass(slots=True)
class _CachedContent:
    """One ``cachedContents/...`` object: what it holds (in counted characters) and when it expires."""

    name: str
    model: str
    display_name: str
    chars: int
    tokens: int
    expires: float  # on the emulator's clock
    created: str


def _rfc3339(wall: float) -> str:
    return datetime.fromtimestamp(wall, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _ttl_seconds(body: JsonBody, now_wall: float) -> float | None:
    """Seconds from now given ``ttl`` ("300s") or ``expireTime`` (RFC 3339); None: neither."""
    ttl = body.get("ttl")
    if isinstance(ttl, str) and ttl.endswith("s"):
        try:
            return float(ttl[:-1])
        except ValueError:
            raise invalid(f"Invalid value at 'cached_content.ttl' ({ttl!r})") from None
    expire = _field(body, "expireTime", "expire_time")
    if isinstance(expire, str):
        try:
            when = datetime.fromisoformat(expire.replace("Z", "+00:00"))
        except ValueError:
            raise invalid(f"Invalid value at 'cached_content.expire_time' ({expire!r})") from None
        return when.timestamp() - now_wall
    return None


def _duration(seconds: float) -> str:
    """google.protobuf.Duration JSON: ``"7s"``, ``"0.5s"``."""
    return seconds_header(round(seconds, 3)) + "s"


def _field(body: JsonBody, camel: str, snake: str) -> object:
    value = body.get(camel)
    return body.get(snake) if value is None else value


def _usage(usage: Usage, output_tokens: int) -> JsonBody:
    meta: JsonBody = {
        "promptTokenCount": usage.input_tokens,
        "candidatesTokenCount": output_tokens,
        "totalTokenCount": usage.input_tokens + output_tokens + usage.reasoning_tokens,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": usage.input_tokens}],
    }
    if usage.cached_tokens > 0:
        meta["cachedContentTokenCount"] = usage.cached_tokens
    if usage.reasoning_tokens > 0:
        meta["thoughtsTokenCount"] = usage.reasoning_tokens
    return meta


class _GenerateStream(StreamRenderer):
    """One GenerateContentResponse per chunk, each with running-total usage;
    ``finishReason`` on the last. SSE events end in CRLF CRLF.

    Thought parts (``thought: true``) come first, one chunk each; the first
    answer part carries the ``thoughtSignature``; function calls come whole,
    in one last chunk that has the finish reason."""

    def __init__(
        self, call: ChatCall, usage: Usage, response_id: str, extras: ReplyExtras = NO_EXTRAS,
        signatures: tuple[str | None, str | None] = (None, None),
    ) -> None:
        self.sse = call.sse
        self._usage = usage
        self._prompt = usage.input_tokens
        self._thoughts = usage.reasoning_tokens
        extra = b""
        if usage.cached_tokens > 0:
            extra += b',"cachedContentTokenCount":%d' % usage.cached_tokens
        if usage.reasoning_tokens > 0:
            extra += b',"thoughtsTokenCount":%d' % usage.reasoning_tokens
        extra += b',"promptTokensDetails":[{"modality":"TEXT","tokenCount":%d}]' % usage.input_tokens
        self._usage_extra = extra
        self._trailer = b',"modelVersion":%s,"responseId":%s}' % (
            encode_json_str(call.model).encode(), encode_json_str(response_id).encode())
        self._first = True
        self.content_type = "text/event-stream" if self.sse else _JSON
        self._extras = extras
        self._finished = False
        # The signature rides on the first answer part: the first call when there are calls.
        self._sig = b""
        text_sig, self._call_sig = signatures
        if text_sig and not extras.calls:
            self._sig = b',"thoughtSignature":%s' % encode_json_str(text_sig).encode()

    def _frame(self, body: bytes) -> bytes:
        if self.sse:
            return b"data: " + body + b"\r\n\r\n"
        if self._first:
            self._first = False
            return b"[" + body
        return b"\n,\r\n" + body

    def _event(self, parts: list[JsonBody], output_tokens: int, finish: str | None) -> bytes:
        candidate: JsonBody = {"content": {"parts": parts, "role": "model"}}
        if finish:
            candidate["finishReason"] = finish
            self._finished = True
        candidate["index"] = 0
        body = (
            b'{"candidates":[%b],"usageMetadata":{"promptTokenCount":%d,"candidatesTokenCount":%d,'
            b'"totalTokenCount":%d%b}%b'
            % (_dumps(candidate), self._prompt, output_tokens, self._prompt + output_tokens + self._thoughts,
               self._usage_extra, self._trailer)
        )
        return self._frame(body)

    def head(self) -> list[bytes]:
        return [self._event([{"text": piece, "thought": True}], 0, None) for piece in self._extras.reasoning]

    def chunk(self, text_json: bytes, output_tokens: int, finish: str | None) -> bytes:
        if finish:
            if self._extras.calls and finish != "MAX_TOKENS":
                finish = None  # the calls come after the text, with the finish reason
            else:
                self._finished = True
        fin = b'"finishReason":"%s",' % finish.encode() if finish else b""
        sig, self._sig = self._sig, b""
        total = self._prompt + output_tokens + self._thoughts
        body = (
            b'{"candidates":[{"content":{"parts":[{"text":%s%b}],"role":"model"},%b"index":0}],'
            b'"usageMetadata":{"promptTokenCount":%d,"candidatesTokenCount":%d,"totalTokenCount":%d%b}%b'
            % (text_json, sig, fin, self._prompt, output_tokens, total, self._usage_extra, self._trailer)
        )
        return self._frame(body)

    def tail(self, finish: str, usage: Usage, emitted: int) -> list[bytes]:
        events: list[bytes] = []
        if self._extras.calls and finish != "MAX_TOKENS":
            events.append(self._event(_call_parts(self._extras, self._call_sig), usage.output_tokens, finish))
        elif not self._finished:
            events.append(self.chunk(b'""', usage.output_tokens, finish))
        if not self.sse:
            events.append(b"]")
        return events

    def error_event(self, spec: ErrorSpec) -> bytes:
        return self._frame(_dumps(GoogleDialect.error_body(spec, None, "v1")))


def _call_args(call: EmulatedCall) -> object:
    try:
        return json.loads(call.arguments) if call.arguments else {}
    except ValueError:
        return call.arguments


def _call_parts(extras: ReplyExtras, signature: str | None) -> list[JsonBody]:
    """One ``functionCall`` part per call (``args`` an object; scripted non-object JSON as text).

    ``signature`` rides on the first call only (Gemini signs the first of parallel calls).
    """
    parts: list[JsonBody] = []
    for call in extras.calls:
        function: JsonBody = {"name": call.name, "args": _call_args(call)}
        if call.id:
            function["id"] = call.id
        part: JsonBody = {"functionCall": function}
        if not parts and signature:
            part["thoughtSignature"] = signature
        parts.append(part)
    return parts


# A function call's signature is bound to its name and arguments (canonical JSON).
def _call_digest(name: object, args: object) -> str:
    return digest(json.dumps([name, args], sort_keys=True, separators=(",", ":")))


# Gemini 3 and later: thinking is always on, and function calls in the current turn need their signature.
_GEMINI_3 = re.compile(r"gemini-([3-9]|\d\d)")
# Google's documented stand-in for a call no Gemini reply signed
# (ai.google.dev/gemini-api/docs/thought-signatures).
_SKIP_VALIDATOR = "skip_thought_signature_validator"
_MISSING_SIGNATURE = (
    "Function call is missing a thought_signature in functionCall parts. This is required for tools to work "
    "correctly, and missing thought_signature may lead to degraded model performance. Additional data, "
    "function call `default_api:{name}` , position {position}. Please refer to "
    "https://ai.google.dev/gemini-api/docs/thought-signatures for more details."
)


def reply_signatures(
    signatures: Signatures, call: ChatCall, extras: ReplyExtras
) -> tuple[str | None, str | None]:
    """(the answer text part's signature, the first function call's) for one reply.

    Gemini signs when it thinks: always on Gemini 3, else when thoughts are on and shown.
    A scripted ``Reply.signature`` is used verbatim.
    """
    signs = bool(extras.reasoning) or bool(_GEMINI_3.match(call.model))
    if extras.signature or not signs:
        return extras.signature, extras.signature
    first = extras.calls[0] if extras.calls else None
    call_sig = None if first is None else signatures.seal(
        {"k": "call", "h": _call_digest(first.name, _call_args(first))})
    return signatures.seal({"k": "text"}), call_sig


def check_signatures(signatures: Signatures, model: str, contents: list[Any]) -> None:
    """Refuse what Gemini refuses (400 INVALID_ARGUMENT) about thought signatures sent back.

    A signature must be one this emulator issued, on the part it was issued for
    (a call's binds its name and arguments); on Gemini 3 the first function call of
    each model turn since the last user text must carry one.
    """
    current = 0
    for n, content in enumerate(contents):
        parts = content.get("parts") if isinstance(content, dict) else None
        if not isinstance(parts, list):
            continue
        if content.get("role", "user") == "user" and any(isinstance(p, dict) and "text" in p for p in parts):
            current = n + 1
        if content.get("role") == "model":
            for part in parts:
                if isinstance(part, dict):
                    _check_part_signature(signatures, part)
    if _GEMINI_3.match(model):
        _check_calls_signed(contents, current)


def _check_part_signature(signatures: Signatures, part: JsonBody) -> None:
    """A model part's signature, if any, is one this emulator issued for this part."""
    signature = _field(part, "thoughtSignature", "thought_signature")
    if signature is None or signature == _SKIP_VALIDATOR:
        return
    sealed = signatures.open(signature)
    if sealed is None:
        raise invalid("Corrupted thought signature.")
    fc = _field(part, "functionCall", "function_call")
    if isinstance(fc, dict):
        expected = {"k": "call", "h": _call_digest(fc.get("name"), fc.get("args") or {})}
    else:
        expected = {"k": "text"}
    if sealed != expected:
        raise invalid("Invalid thought signature.")


def _check_calls_signed(contents: list[Any], current: int) -> None:
    """Gemini 3: each model turn from ``contents[current]`` on starts its function calls signed."""
    for n, content in enumerate(contents[current:], start=current):
        parts = content.get("parts") if isinstance(content, dict) else None
        if not isinstance(content, dict) or content.get("role") != "model" or not isinstance(parts, list):
            continue
        calls = [p for p in parts if isinstance(p, dict) and _field(p, "functionCall", "function_call")]
        if calls and _field(calls[0], "thoughtSignature", "thought_signature") is None:
            fc = _field(calls[0], "functionCall", "function_call")
            name = fc.get("name") if isinstance(fc, dict) else None
            raise invalid(_MISSING_SIGNATURE.format(name=name, position=n))


def _tools_and_choice(body: JsonBody) -> tuple[tuple[ToolSpec, ...], str | None]:
    return _declared_tools(body), _tool_choice(body)


def _declared_tools(body: JsonBody) -> tuple[ToolSpec, ...]:
    tools: list[ToolSpec] = []
    for tool in body.get("tools") or ():
        if not isinstance(tool, dict):
            continue
        declared = _field(tool, "functionDeclarations", "function_declarations")
        for fn in declared if isinstance(declared, list) else ():
            if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
                continue
            schema = _field(fn, "parametersJsonSchema", "parameters_json_schema") or fn.get("parameters")
            tools.append(ToolSpec(fn["name"], schema if isinstance(schema, dict) else {}))
    return tuple(tools)


def _tool_choice(body: JsonBody) -> str | None:
    """``toolConfig.functionCallingConfig`` as a tool choice (ANY with one allowed name: that name)."""
    config = _field(body, "toolConfig", "tool_config")
    calling = None
    if isinstance(config, dict):
        calling = _field(config, "functionCallingConfig", "function_calling_config")
    if not isinstance(calling, dict):
        return None
    mode = str(calling.get("mode") or "AUTO").upper()
    allowed = _field(calling, "allowedFunctionNames", "allowed_function_names")
    if mode == "ANY" and isinstance(allowed, list) and len(allowed) == 1 and isinstance(allowed[0], str):
        return allowed[0]
    return {"ANY": "required", "NONE": "none"}.get(mode, "auto")


def _function_responses(contents: list[Any]) -> str | None:
    """The last turn's ``functionResponse`` parts as JSON text, if it is a tool-result turn."""
    last = contents[-1] if contents and isinstance(contents[-1], dict) else {}
    parts = last.get("parts")
    responses = [_field(p, "functionResponse", "function_response")
                 for p in (parts if isinstance(parts, list) else ()) if isinstance(p, dict)]
    found = [r.get("response") for r in responses if isinstance(r, dict)]
    return "\n".join(json.dumps(r) for r in found) if found else None


def _max_output_tokens(config: object) -> int | None:
    """``generationConfig.maxOutputTokens`` (400 like Gemini unless a non-negative integer)."""
    value = _field(config, "maxOutputTokens", "max_output_tokens") if isinstance(config, dict) else None
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise invalid(f"* GenerateContentRequest.generation_config.max_output_tokens: "
                      f"must be a non-negative integer, got {value!r}\n")
    return value


def _thinking(config: object) -> tuple[bool, bool]:
    """(reasoning on, thoughts shown) from ``generationConfig.thinkingConfig``."""
    thinking = _field(config, "thinkingConfig", "thinking_config") if isinstance(config, dict) else None
    if not isinstance(thinking, dict):
        return False, False
    budget = _field(thinking, "thinkingBudget", "thinking_budget")
    shown = _field(thinking, "includeThoughts", "include_thoughts") is True
    on = budget != 0 and (shown or budget is not None or _field(thinking, "thinkingLevel", "thinking_level"))
    return bool(on), bool(on) and shown


def _retry_wait(spec: ErrorSpec) -> float | None:
    """The scripted wait in seconds (``retry_after``, else ``retry_after_ms``), if any."""
    if spec.retry_after is not None:
        return spec.retry_after
    return spec.retry_after_ms / 1000 if spec.retry_after_ms is not None else None


def _quota(admission: Admission | None) -> tuple[int | str, str]:
    """(the quota value, the quota metric) a 429 names: tokens or requests, from the limiter's refusal."""
    if admission is None:
        return "unknown", "requests"
    tokens = admission.exceeded == "tokens"
    limit = (admission.tokens if tokens else admission.requests).limit
    return limit, "input_token_count" if tokens else "requests"


def _rate_limit_details(
    model: str | None, limit: int | str, metric: str, wait: float | None
) -> list[JsonBody]:
    """A 429's details: QuotaFailure, Help and RetryInfo (whole seconds), as Gemini sends them."""
    quota_id = ("GenerateContentInputTokensPerModelPerMinute" if metric != "requests"
                else "GenerateRequestsPerMinutePerProjectPerModel")
    return [
        {
            "@type": "type.googleapis.com/google.rpc.QuotaFailure",
            "violations": [{
                "quotaMetric": f"generativelanguage.googleapis.com/generate_content_{metric}",
                "quotaId": quota_id,
                "quotaDimensions": {"location": "global", "model": model or "unknown"},
                "quotaValue": str(limit),
            }],
        },
        {
            "@type": "type.googleapis.com/google.rpc.Help",
            "links": [{"description": "Learn more about Gemini API quotas",
                       "url": "https://ai.google.dev/gemini-api/docs/rate-limits"}],
        },
        {"@type": "type.googleapis.com/google.rpc.RetryInfo",
         "retryDelay": _duration(math.ceil(wait if wait is not None else 1.0))},
    ]


def _invalid_key_details(message: str) -> list[JsonBody]:
    return [
        {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
         "domain": "googleapis.com", "metadata": {"service": "generativelanguage.googleapis.com"}},
        {"@type": "type.googleapis.com/google.rpc.LocalizedMessage", "locale": "en-US",
         "message": message},
    ]


class GoogleDialect(Dialect):
    name = "google"
    finish_reasons: ClassVar[dict[str, str]] = {
        "stop": "STOP", "length": "MAX_TOKENS", "tool_calls": "STOP", "content_filter": "SAFETY",
    }
    call_id_prefix = ""  # the Gemini API sends function calls without ids
    _PATH = r"/(?P<version>v1|v1beta|v1alpha)/models/(?P<model>[^/:]+)"

    _CACHES = r"/(?P<version>v1|v1beta|v1alpha)/cachedContents"

    def routes(self) -> list[Route]:
        return [
            Route("POST", re.compile(self._CACHES), self._create_cache),
            Route("GET", re.compile(self._CACHES), self._list_caches),
            Route("GET", re.compile(self._CACHES + r"/(?P<id>[^/]+)"), self._get_cache),
            Route("PATCH", re.compile(self._CACHES + r"/(?P<id>[^/]+)"), self._update_cache),
            Route("DELETE", re.compile(self._CACHES + r"/(?P<id>[^/]+)"), self._delete_cache),
            Route("POST", re.compile(self._PATH + r":(?P<method>generateContent|streamGenerateContent)")),
            Route("POST", re.compile(self._PATH + r":countTokens"), self._count_tokens),
            *self._batch_routes(),
        ]

    def describe(
        self, req: HttpRequest, match: re.Match[str], body: JsonBody | None
    ) -> tuple[str | None, bool]:
        groups = match.groupdict()
        model = groups.get("model")
        if model is None and body is not None and isinstance(body.get("model"), str):
            model = body["model"].removeprefix("models/")  # cachedContents.create
        return model, groups.get("method") == "streamGenerateContent"

    @staticmethod
    def _input(body: JsonBody) -> tuple[int, str]:
        chars = 0
        last_user = ""
        system = _field(body, "systemInstruction", "system_instruction")
        if isinstance(system, dict):
            chars += len(content_text(system.get("parts")))
        elif isinstance(system, str):
            chars += len(system)
        contents = body.get("contents")
        for content in contents if isinstance(contents, list) else []:
            if not isinstance(content, dict):
                continue
            text = content_text(content.get("parts"))
            chars += len(text)
            if content.get("role", "user") == "user":
                last_user = text
        return chars, last_user

    def parse_chat(self, req: HttpRequest, match: re.Match[str], body: JsonBody | None) -> ChatCall:
        contents = None if body is None else body.get("contents")
        if body is None or not isinstance(contents, list) or not contents:
            raise invalid("* GenerateContentRequest.contents: contents is not specified\n")
        config = _field(body, "generationConfig", "generation_config")
        max_tokens = _max_output_tokens(config)
        chars, last_user = self._input(body)
        cached_name = _field(body, "cachedContent", "cached_content")
        if cached_name is not None:
            cached = self._cached(cached_name)
            if any(_field(body, *names) is not None for names in (
                    ("systemInstruction", "system_instruction"), ("tools", "tools"),
                    ("toolConfig", "tool_config"))):
                raise invalid(_CACHE_CONFLICT)
            if cached.model != match.group("model"):
                raise invalid(f"Model used by GenerateContent request (models/{match.group('model')}) and "
                              f"CachedContent (models/{cached.model}) has to be the same.")
            chars += cached.chars
        stream = match.group("method") == "streamGenerateContent"
        alt = parse_qs(req.query).get("alt", [""])[0]
        tools, choice = _tools_and_choice(body)
        result = _function_responses(contents)
        reasoning, shown = _thinking(config)
        if self.signatures.enabled:
            check_signatures(self.signatures, match.group("model"), contents)
        return ChatCall(model=match.group("model"), stream=stream, max_tokens=max_tokens, input_chars=chars,
                        last_user_text=last_user, sse=alt == "sse", tools=tools, tool_choice=choice,
                        after_tool=result is not None, tool_result_text=result or "", reasoning=reasoning,
                        show_reasoning=shown)

    def cache_usage(self, call: ChatCall, body: JsonBody | None, input_tokens: int) -> CacheUse:
        """A request naming a ``cachedContent`` reads all of its tokens."""
        name = None if body is None else _field(body, "cachedContent", "cached_content")
        if name is None:
            return CacheUse()
        return CacheUse(read=min(self._cached(name).tokens, input_tokens))

    # -- cachedContents --------------------------------------------------------------

    def _cached(self, name: object) -> _CachedContent:
        """The live cached content ``name`` (403 like Gemini when it is unknown or expired)."""
        entry = self.caches.contents.get(name) if isinstance(name, str) else None
        if entry is None or entry.expires <= self.clock():
            if entry is not None:
                del self.caches.contents[entry.name]
            raise ApiError(ErrorSpec("permission", 403, _CACHE_NOT_FOUND))
        assert isinstance(entry, _CachedContent)
        return entry

    def _resource(self, entry: _CachedContent) -> JsonBody:
        expires_wall = time.time() + (entry.expires - self.clock())
        return {
            "name": entry.name,
            "model": f"models/{entry.model}",
            "createTime": entry.created,
            "updateTime": entry.created,
            "expireTime": _rfc3339(expires_wall),
            "displayName": entry.display_name,
            "usageMetadata": {"totalTokenCount": entry.tokens},
        }

    def _create_cache(self, req: HttpRequest, match: re.Match[str], body: JsonBody | None) -> JsonResponse:
        if body is None or not isinstance(body.get("model"), str):
            raise invalid("* CreateCachedContentRequest.cached_content.model: model is required\n")
        model = body["model"].removeprefix("models/")
        chars, _ = self._input(body)
        tokens = tokens_for_chars(chars)
        minimum = gemini_min_tokens(model)
        if tokens < minimum:
            raise invalid(f"Cached content is too small. total_token_count={tokens}, "
                          f"min_total_token_count={minimum}")
        wall = time.time()
        ttl = _ttl_seconds(body, wall)
        ttl = _DEFAULT_CACHE_TTL if ttl is None else ttl
        if ttl <= 0:
            raise invalid("expire_time must be in the future")
        name = f"cachedContents/emu{self.ids.next():016d}"
        display = body.get("displayName") or body.get("display_name") or ""
        entry = _CachedContent(name, model, str(display), chars, tokens, self.clock() + ttl, _rfc3339(wall))
        self.caches.contents[name] = entry
        return JsonResponse(200, _dumps(self._resource(entry)), (), _JSON)

    def _cache_name(self, match: re.Match[str]) -> str:
        return f"cachedContents/{match.group('id')}"

    def _get_cache(self, req: HttpRequest, match: re.Match[str], body: JsonBody | None) -> JsonResponse:
        return JsonResponse(200, _dumps(self._resource(self._cached(self._cache_name(match)))), (), _JSON)

    def _list_caches(self, req: HttpRequest, match: re.Match[str], body: JsonBody | None) -> JsonResponse:
        now = self.clock()
        live = [e for e in self.caches.contents.values() if e.expires > now]
        return JsonResponse(200, _dumps({"cachedContents": [self._resource(e) for e in live]}), (), _JSON)

    def _update_cache(self, req: HttpRequest, match: re.Match[str], body: JsonBody | None) -> JsonResponse:
        entry = self._cached(self._cache_name(match))
        ttl = _ttl_seconds(body or {}, time.time())
        if ttl is not None:
            if ttl <= 0:
                raise invalid("expire_time must be in the future")
            entry.expires = self.clock() + ttl
        return JsonResponse(200, _dumps(self._resource(entry)), (), _JSON)

    def _delete_cache(self, req: HttpRequest, match: re.Match[str], body: JsonBody | None) -> JsonResponse:
        entry = self._cached(self._cache_name(match))
        del self.caches.contents[entry.name]
        return JsonResponse(200, b"{}", (), _JSON)

    # -- completions -----------------------------------------------------------------

    def completion(
        self, call: ChatCall, text: str, finish: str, usage: Usage, extras: ReplyExtras = NO_EXTRAS
    ) -> bytes:
        parts: list[JsonBody] = []
        text_sig, call_sig = reply_signatures(self.signatures, call, extras)
        if extras.reasoning:
            parts.append({"text": "".join(extras.reasoning), "thought": True})
        if text or not extras.calls:
            part: JsonBody = {"text": text}
            if text_sig and not extras.calls:
                part["thoughtSignature"] = text_sig
            parts.append(part)
        parts += _call_parts(extras, call_sig)
        return _dumps({
            "candidates": [{
                "content": {"parts": parts, "role": "model"},
                "finishReason": finish,
                "index": 0,
            }],
            "usageMetadata": _usage(usage, usage.output_tokens),
            "modelVersion": call.model,
            "responseId": self._response_id(),
        })

    def stream(self, call: ChatCall, usage: Usage, extras: ReplyExtras = NO_EXTRAS) -> StreamRenderer:
        return _GenerateStream(call, usage, self._response_id(), extras,
                               reply_signatures(self.signatures, call, extras))

    @staticmethod
    def error_body(spec: ErrorSpec, model: str | None, version: str) -> JsonBody:
        status, message = _ERRORS.get(spec.kind, _ERRORS["server"])
        if spec.kind not in ("invalid_key", "context_length", "too_large", "invalid_json"):
            status = spec.status
        details: list[JsonBody] = []
        wait = _retry_wait(spec)
        limit: int | str = "unknown"
        metric = "requests"
        if spec.kind == "rate_limit":
            limit, metric = _quota(spec.admission)
            details = _rate_limit_details(model, limit, metric, wait)
        elif spec.kind == "invalid_key":
            details = _invalid_key_details(message)
        elif wait is not None:
            details.append({"@type": "type.googleapis.com/google.rpc.RetryInfo",
                            "retryDelay": _duration(wait)})
        fields = {"model": model or "unknown", "version": version, "limit": limit, "metric": metric,
                  "wait": seconds_header(round(wait if wait is not None else 1.0, 3))}
        status_name = _STATUS_NAMES.get(status, "FAILED_PRECONDITION" if status < 500 else "INTERNAL")
        error: JsonBody = {"code": status, "message": spec.message or message.format(**fields),
                           "status": status_name}
        if details:
            error["details"] = details
        return {"error": error}

    def error(self, spec: ErrorSpec, model: str | None, req: HttpRequest | None = None) -> JsonResponse:
        version = req.path.split("/", 2)[1] if req is not None and req.path.count("/") >= 2 else "v1"
        body = self.error_body(spec, model, version)
        status = body["error"]["code"]
        # Google answers with RetryInfo in the body, not with Retry-After headers.
        return JsonResponse(status, _dumps(body), spec.headers, _JSON)

    def success_headers(self, admission: Admission) -> list[tuple[str, str]]:
        return [("server-timing", "gfet4t7; dur=1"), ("vary", "Origin, X-Origin, Referer")]

    def api_key(self, req: HttpRequest) -> str | None:
        key = req.headers.get("x-goog-api-key")
        if key:
            return key
        return parse_qs(req.query).get("key", [None])[0]

    def _response_id(self) -> str:
        return f"emuResp{self.ids.next():016d}"

    def _count_tokens(self, req: HttpRequest, match: re.Match[str], body: JsonBody | None) -> JsonResponse:
        if body is None:
            return self.error(ErrorSpec("invalid_request", 400), match.group("model"))
        request = body.get("generateContentRequest") or body.get("generate_content_request")
        chars, _ = self._input(request if isinstance(request, dict) else body)
        tokens = tokens_for_chars(chars)
        return JsonResponse(200, _dumps({
            "totalTokens": tokens, "promptTokensDetails": [{"modality": "TEXT", "tokenCount": tokens}],
        }), (), _JSON)

    # -- batch mode: models/{m}:batchGenerateContent, batches/{id} ------------------

    _BATCHES = r"/(?P<version>v1|v1beta|v1alpha)/batches"

    def _batch_routes(self) -> list[Route]:
        return [
            Route("POST", re.compile(self._PATH + r":batchGenerateContent"), self._create_batch),
            Route("GET", re.compile(self._BATCHES), self._list_batches),
            Route("GET", re.compile(self._BATCHES + r"/(?P<batch>[^/:]+)"), self._get_batch),
            Route("POST", re.compile(self._BATCHES + r"/(?P<batch>[^/:]+):cancel"), self._cancel_batch),
        ]

    def _create_batch(self, req: HttpRequest, match: re.Match[str], body: JsonBody | None) -> JsonResponse:
        batch = None if body is None else body.get("batch")
        config = batch.get("inputConfig") if isinstance(batch, dict) else None
        listed = config.get("requests") if isinstance(config, dict) else None
        requests = listed.get("requests") if isinstance(listed, dict) else None
        if not isinstance(batch, dict) or not isinstance(requests, list) or not requests:
            raise invalid("* BatchGenerateContentRequest.batch.input_config: inlined requests are required\n")
        model, version = match.group("model"), match.group("version")
        items: list[BatchItem] = []
        for i, entry in enumerate(requests):
            request = entry.get("request") if isinstance(entry, dict) else None
            if not isinstance(request, dict):
                raise invalid(f"* requests[{i}].request: a GenerateContentRequest is required\n")
            metadata = entry.get("metadata")
            key = metadata.get("key") if isinstance(metadata, dict) else None
            items.append(BatchItem(str(key) if key is not None else str(i),
                                   f"/{version}/models/{model}:generateContent", request))
        metadata = [e.get("metadata") if isinstance(e, dict) else None for e in requests]
        job = self.batches.create(f"batches/emu{self.ids.next():020d}", self.name, model, items,
                                  display_name=batch.get("displayName"), metadata=metadata)
        return JsonResponse(200, _dumps(self._operation(job, fresh=True)), (), _JSON)

    def _operation(self, job: BatchJob, *, fresh: bool = False) -> JsonBody:
        if not fresh:
            self.batches.advance(job, self)
        ok, failed, cancelled = counts(job)
        total = len(job.items)
        if job.state == "completed":
            state = "BATCH_STATE_SUCCEEDED"
        elif job.state == "cancelled":
            state = "BATCH_STATE_CANCELLED"
        else:
            state = "BATCH_STATE_PENDING" if fresh else "BATCH_STATE_RUNNING"
        meta: JsonBody = {
            "@type": "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch",
            "model": f"models/{job.model}",
            "displayName": job.info.get("display_name"),
            "createTime": rfc3339(job.created_wall),
            "updateTime": rfc3339(job.ended_wall or job.created_wall),
            "batchStats": {
                "requestCount": str(total), "successfulRequestCount": str(ok),
                "failedRequestCount": str(failed),
                "pendingRequestCount": str(total - ok - failed - cancelled),
            },
            "state": state,
            "name": job.id,
        }
        if job.ended_wall is not None:
            meta["endTime"] = rfc3339(job.ended_wall)
        operation: JsonBody = {"name": job.id, "metadata": meta}
        if job.results is not None:
            operation["done"] = True
        if job.state == "completed":  # a cancelled batch has no output
            output = {"inlinedResponses": {"inlinedResponses": self._inlined(job)}}
            meta["output"] = output
            operation["response"] = {
                "@type": "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatchOutput",
                **output,
            }
        return operation

    @staticmethod
    def _inlined(job: BatchJob) -> list[JsonBody]:
        metadata = job.info.get("metadata") or []
        out: list[JsonBody] = []
        for i, r in enumerate(job.results or []):
            item: JsonBody
            if r.outcome == "succeeded":
                item = {"response": r.body}
            else:
                error = r.body.get("error", {}) if r.outcome == "errored" else {}
                status = str(error.get("status") or "CANCELLED")
                item = {"error": {"code": _RPC_CODES.get(status, 2),
                                  "message": error.get("message") or "The batch was cancelled.",
                                  "details": error.get("details") or []}}
            if i < len(metadata) and metadata[i] is not None:
                item["metadata"] = metadata[i]
            out.append(item)
        return out

    def _get_batch(self, req: HttpRequest, match: re.Match[str], body: JsonBody | None) -> JsonResponse:
        job = self.batches.find(self.name, "batches/" + match.group("batch"))
        return JsonResponse(200, _dumps(self._operation(job)), (), _JSON)

    def _cancel_batch(self, req: HttpRequest, match: re.Match[str], body: JsonBody | None) -> JsonResponse:
        self.batches.cancel(self.batches.find(self.name, "batches/" + match.group("batch")), self)
        return JsonResponse(200, b"{}", (), _JSON)

    def _list_batches(self, req: HttpRequest, match: re.Match[str], body: JsonBody | None) -> JsonResponse:
        query = parse_qs(req.query)
        size = int(query.get("pageSize", ["50"])[0])
        start = int(query.get("pageToken", ["0"])[0] or 0)
        jobs = self.batches.listed(self.name)
        page: JsonBody = {"operations": [self._operation(j) for j in jobs[start:start + size]]}
        if start + size < len(jobs):
            page["nextPageToken"] = str(start + size)
        return JsonResponse(200, _dumps(page), (), _JSON)


# google.rpc.Code by status name, for the errors of inlined batch responses.
_RPC_CODES = {"CANCELLED": 1, "UNKNOWN": 2, "INVALID_ARGUMENT": 3, "DEADLINE_EXCEEDED": 4, "NOT_FOUND": 5,
              "PERMISSION_DENIED": 7, "RESOURCE_EXHAUSTED": 8, "FAILED_PRECONDITION": 9, "ABORTED": 10,
              "UNIMPLEMENTED": 12, "INTERNAL": 13, "UNAVAILABLE": 14, "UNAUTHENTICATED": 16}
