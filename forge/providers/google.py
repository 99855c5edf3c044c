"""Google Gemini adapter (google-genai, Gemini Developer API).

google-genai builds and authenticates every request (URL, ``x-goog-api-key``,
version headers, the camelCase JSON body) with its own code; forge sends that
exact request on the pooled httpx2 client it hands the SDK, and decodes the
answer itself:
the SSE body of ``:streamGenerateContent?alt=sse`` with forge's ``SSEDecoder``
(one ``json.loads`` per chunk, no pydantic), and the JSON body of
``:generateContent`` the same way. The typed SDK stream costs ~200 us per chunk
and cannot be closed deterministically (its five nested generators are only
finalized by the GC); owning the httpx2 response makes ``aclose()`` immediate.

Decisions (see also docs/providers.md):

- Usage: ``thoughtsTokenCount`` is billed by Google as output, so it is added to
  ``output_tokens`` and also reported as ``reasoning_tokens`` (the same shape as
  OpenAI's ``completion_tokens`` including ``reasoning_tokens``);
  ``toolUsePromptTokenCount`` is added to ``input_tokens``;
  ``cachedContentTokenCount`` is the cached part of the input.
- Function calls arrive whole; they get ids ``call_<n>`` unless Gemini sent one.
  Such forge-made ids are not sent back to Gemini in later turns. A part's
  ``thoughtSignature`` rides on ``ToolCall.signature`` (or, for text, on
  ``Response.reasoning_signature``) and is sent back on the same part.
- Reasoning: ``reasoning_budget`` -> ``thinkingConfig.thinkingBudget`` (0 turns
  thinking off); ``reasoning_effort`` -> ``thinkingLevel`` (Gemini 3+), or the
  budget tier of ``REASONING_BUDGETS`` on ``gemini-1.x`` / ``gemini-2.x``
  models, which know no levels; ``includeThoughts`` is on whenever thinking is,
  so thought summaries come back as ``reasoning``.
- ``request.extra``: keys that are ``GenerateContentConfig`` fields
  (``thinking_config``, ``cached_content``, ``safety_settings``, ``top_k``...)
  go into the config; any other key is merged into the JSON body as is
  (``HttpOptions.extra_body``), e.g. ``{"generationConfig": {"x": 1}}``.
"""

from __future__ import annotations

import base64
import codecs
import json
import re
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import Any

import httpx2
from google import genai
from google.genai import _common as genai_common
from google.genai import errors as genai_errors
from google.genai import models as genai_models
from google.genai import types as gt

from forge._wire import LineSplitter, SSEDecoder
from forge.config import ProviderConfig
from forge.errors import (
    AuthenticationError,
    BadRequestError,
    ForgeError,
    ProviderConnectionError,
    ProviderError,
)
from forge.providers._common import (
    check_stream_reply,
    error_for_status,
    headers_dict,
    json_reply,
    make_httpx2_client,
    parse_retry_after,
    public_url,
    reasoning_budget,
    unclassified_error,
)
from forge.providers._stream import ResponseOwner, ResponseStream
from forge.types import (
    FinishReason,
    Message,
    Request,
    Response,
    StreamEvent,
    StreamEventKind,
    ToolCall,
    Usage,
)

__all__ = ["GoogleProvider"]

_DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com/"
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
_FORGE_CALL_ID = re.compile(r"call_\d+")
_CONFIG_FIELDS = frozenset(gt.GenerateContentConfig.model_fields)
_TOOL_MODES = {"auto": "AUTO", "none": "NONE", "required": "ANY", "any": "ANY"}
# Gemini 3 takes thinkingLevel; older models only a thinkingBudget. "none" is as low as Gemini 3 goes.
_THINKING_LEVELS = {"none": "MINIMAL", "low": "LOW", "medium": "MEDIUM", "high": "HIGH"}
_BUDGET_MODELS = re.compile(r"(models/)?gemini-[12][.-]")


class GoogleProvider:
    """Gemini behind forge's :class:`~forge.types.Provider` protocol.

    Args:
        config: the ``google`` provider settings (key, base URL, timeouts,
            ``options.api_version``).
        http_client: an ``httpx2.AsyncClient`` to use instead of the pooled one
            forge builds (tests pass one with a ``MockTransport``); the caller
            keeps ownership and closes it.

    Raises:
        ConfigError: no API key is configured.
    """

    name = _PROVIDER

    def __init__(self, config: ProviderConfig, *, http_client: httpx2.AsyncClient | None = None) -> None:
        api_key = config.require_api_key()  # before any client exists, so a ConfigError leaks nothing
        self._owns_http = http_client is None
        self._http = http_client if http_client is not None else make_httpx2_client(config)
        self._sync_http = httpx2.Client(transport=_AsyncOnly())
        api_version = config.options.get("api_version")
        self.base_url = public_url(config.resolve_base_url() or _DEFAULT_BASE_URL)
        self._client = genai.Client(
            api_key=api_key,
            vertexai=False,
            http_options=gt.HttpOptions(
                base_url=config.resolve_base_url() or _DEFAULT_BASE_URL,
                api_version=api_version if isinstance(api_version, str) else None,
                timeout=int(config.timeout * 1000),  # milliseconds; the SDK default is no timeout
                retry_options=gt.HttpRetryOptions(attempts=1),  # retries are forge's job
                httpx_async_client=self._http,  # also pins httpx2 (never aiohttp)
                # forge is async only; a refusing sync client spares the SDK building its own pool.
                httpx_client=self._sync_http,
            ),
        )

    @property
    def client(self) -> genai.Client:
        """The google-genai client (for APIs forge does not wrap, e.g. ``client.aio.caches``)."""
        return self._client

    # ------------------------------------------------------------------ Provider

    async def complete(self, request: Request) -> Response:
        """Call ``:generateContent`` and return the whole reply."""
        http_request = self._prepare(request, stream=False)
        try:
            response = await self._http.send(http_request)
            if response.status_code != 200:
                await genai_errors.APIError.raise_for_async_response(response)
            body = json_reply(
                response, valid=_is_generate_content, expected=_RESPONSE_SHAPE,
                provider=_PROVIDER, model=request.model, base_url=self.base_url,
            )
            if "error" in body:
                _raise_in_band(body, response)
            reader = _ChunkReader()
            events = reader.feed(body)
        except ForgeError:
            raise
        except Exception as exc:
            raise self._classify(exc, request.model) from exc
        return Response(
            text="".join(ev.text for ev in events if ev.kind == "text"),
            provider=_PROVIDER,
            model=request.model,
            finish_reason=reader.finish_reason(),
            usage=reader.usage or Usage(),
            tool_calls=tuple(ev.tool_call for ev in events if ev.kind == "tool_call_done" and ev.tool_call),
            reasoning="".join(ev.text for ev in events if ev.kind == "reasoning") or None,
            reasoning_signature=reader.text_signature,
            id=reader.response_id,
            raw=body,
        )

    def stream(self, request: Request) -> AsyncIterator[StreamEvent]:
        """Stream ``:streamGenerateContent?alt=sse``; the request goes out on the first ``__anext__``.

        ``aclose()`` closes the HTTP response, from any task.
        """
        return ResponseStream(lambda owner: self._stream(request, owner))

    async def _stream(self, request: Request, owner: ResponseOwner) -> AsyncGenerator[StreamEvent, None]:
        http_request = self._prepare(request, stream=True)
        try:
            response = await self._http.send(http_request, stream=True)
        except Exception as exc:
            raise self._classify(exc, request.model) from exc
        owner.response = response
        try:
            if response.status_code != 200:
                await genai_errors.APIError.raise_for_async_response(response)
            await check_stream_reply(
                response, media_types=_STREAM_MEDIA_TYPES, expected="an SSE stream (or JSON array) "
                "of GenerateContentResponse", provider=_PROVIDER, model=request.model,
                base_url=self.base_url,
            )
            reader = _ChunkReader()
            ctype = response.headers.get("content-type", "")
            # forge asks for SSE; a server (or proxy) that ignores alt=sse streams one
            # JSON array instead, as the API does without it. Decode either.
            json_array = "json" in ctype and "event-stream" not in ctype
            decoder: _GeminiStreamDecoder | _JsonArrayDecoder = (
                _JsonArrayDecoder() if json_array else _GeminiStreamDecoder()
            )
            async for data in response.aiter_bytes():
                for chunk in decoder.feed(data):
                    if "error" in chunk:
                        _raise_in_band(chunk, response)
                    for ev in reader.feed(chunk):
                        yield ev
            for chunk in decoder.flush():
                if "error" in chunk:
                    _raise_in_band(chunk, response)
                for ev in reader.feed(chunk):
                    yield ev
            if reader.truncated:
                raise ProviderConnectionError(
                    "Gemini stream ended before a finish reason (connection closed early?)",
                    provider=_PROVIDER,
                    model=request.model,
                )
            for ev in reader.finish_events():
                yield ev
        except ForgeError:
            raise
        except Exception as exc:
            raise self._classify(exc, request.model) from exc
        finally:
            await response.aclose()

    def classify(self, exc: BaseException) -> ForgeError:
        """Map a google-genai, httpx2 or OS exception onto the forge error tree."""
        return self._classify(exc, None)

    async def aclose(self) -> None:
        """Close the SDK client and, when forge built it, the pooled httpx2 client."""
        self._client.close()
        await self._client.aio.aclose()
        self._sync_http.close()
        if self._owns_http:
            await self._http.aclose()

    # ------------------------------------------------------------------ internals

    def _prepare(self, request: Request, *, stream: bool) -> httpx2.Request:
        try:
            model, contents, config = gemini_call_args(request)
            method, url, headers, body = build_gemini_http_request(
                self._client, model, contents, config, stream=stream
            )
        except (ValueError, TypeError) as exc:  # pydantic ValidationError is a ValueError
            raise BadRequestError(
                f"Cannot build a Gemini request for {request.model!r}: {exc}",
                provider=_PROVIDER,
                model=request.model,
            ) from exc
        return self._http.build_request(method, url, headers=headers, content=body)

    def _classify(self, exc: BaseException, model: str | None) -> ForgeError:
        if isinstance(exc, ForgeError):
            return exc
        if isinstance(exc, genai_errors.APIError):
            return _api_error(exc, model, self.base_url)
        return unclassified_error(
            exc, provider=_PROVIDER, model=model, label="Gemini", base_url=self.base_url
        )


class _AsyncOnly(httpx2.BaseTransport):
    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        raise RuntimeError("forge drives google-genai through its async client only")


# ---------------------------------------------------------------------- request


def build_gemini_http_request(
    client: genai.Client,
    model: str,
    contents: list[gt.Content],
    config: gt.GenerateContentConfig,
    *,
    stream: bool,
) -> tuple[str, str, dict[str, str], bytes]:
    """The exact (method, URL, headers, body) ``client.aio.models.generate_content[_stream]`` sends.

    Mirrors ``AsyncModels._generate_content[_stream]`` (google-genai 3.6.1,
    ``models.py:6810`` / ``:6906``) for the Gemini Developer API, using the SDK's
    own pieces: ``types._GenerateContentParameters``,
    ``models._GenerateContentParameters_to_mldev`` (body, camelCase, ``_url``),
    ``_common.convert_to_dict`` / ``encode_unserializable_types``,
    ``BaseApiClient._build_request`` (URL, api version, ``x-goog-api-key``,
    ``user-agent``/``x-goog-api-client``, ``X-Server-Timeout``, ``extra_body``),
    then ``json.dumps(...).encode()`` as in ``BaseApiClient._async_request_once``.
    The streaming path of the SDK first passes the config through
    ``StreamContinuation.start_hop`` which returns it unchanged on the first hop.
    """
    api_client = client._api_client
    params = gt._GenerateContentParameters(model=model, contents=contents, config=config)
    request_dict = genai_models._GenerateContentParameters_to_mldev(api_client, params, None, params)
    url_params = request_dict.get("_url")
    template = "{model}:streamGenerateContent?alt=sse" if stream else "{model}:generateContent"
    path = template.format_map(url_params) if url_params else template
    if request_dict.get("_query"):  # not produced for generateContent today; kept for parity
        raise ValueError(f"unexpected query parameters {request_dict['_query']!r}")
    request_dict.pop("config", None)
    request_dict = genai_common.convert_to_dict(request_dict)
    request_dict = genai_common.encode_unserializable_types(request_dict)
    http_request = api_client._build_request("post", path, request_dict, config.http_options)
    data = http_request.data
    body = data if isinstance(data, bytes) else json.dumps(data).encode("utf-8")
    return http_request.method.upper(), http_request.url, http_request.headers, body


def gemini_call_args(request: Request) -> tuple[str, list[gt.Content], gt.GenerateContentConfig]:
    """Translate a forge Request into ``generate_content(model=, contents=, config=)`` arguments."""
    system = [request.system] if request.system else []
    system.extend(m.content for m in request.messages if m.role == "system")
    cfg: dict[str, Any] = {
        # forge never lets the SDK run Python tools or follow continuation tokens on its own.
        "automatic_function_calling": gt.AutomaticFunctionCallingConfig(disable=True),
        "automatic_continuation": False,
    }
    if system:
        cfg["system_instruction"] = "\n\n".join(system)
    if request.max_tokens is not None:
        cfg["max_output_tokens"] = request.max_tokens
    if request.temperature is not None:
        cfg["temperature"] = request.temperature
    if request.top_p is not None:
        cfg["top_p"] = request.top_p
    if request.seed is not None:
        cfg["seed"] = request.seed
    if request.stop:
        cfg["stop_sequences"] = list(request.stop)
    fmt = request.response_format
    if fmt is not None and fmt.type != "text":
        cfg["response_mime_type"] = "application/json"
        if fmt.type == "json_schema" and fmt.schema is not None:
            cfg["response_json_schema"] = dict(fmt.schema)
    if request.tools and request.tool_choice != "none":
        cfg["tools"] = [
            gt.Tool(
                function_declarations=[
                    gt.FunctionDeclaration(
                        name=t.name,
                        description=t.description or None,
                        parameters_json_schema=dict(t.parameters),
                    )
                    for t in request.tools
                ]
            )
        ]
    if request.tool_choice is not None and (request.tools or request.tool_choice == "none"):
        mode = _TOOL_MODES.get(request.tool_choice)
        calling = (
            gt.FunctionCallingConfig(mode=mode)  # type: ignore[arg-type]  # str accepted for the enum
            if mode is not None
            else gt.FunctionCallingConfig(mode="ANY", allowed_function_names=[request.tool_choice])  # type: ignore[arg-type]
        )
        cfg["tool_config"] = gt.ToolConfig(function_calling_config=calling)
    thinking = _thinking_config(request)
    if thinking is not None:
        cfg["thinking_config"] = thinking
    extra_body: dict[str, Any] = {}
    for key, value in request.extra.items():
        if key in _CONFIG_FIELDS:
            cfg[key] = value
        else:
            extra_body[key] = value
    if extra_body:
        cfg["http_options"] = gt.HttpOptions(extra_body=extra_body)
    return request.model, _contents(request.messages), gt.GenerateContentConfig(**cfg)


def _thinking_config(request: Request) -> gt.ThinkingConfig | None:
    """``thinkingBudget`` for a budget (and on Gemini 1.x/2.x), ``thinkingLevel`` for an effort."""
    effort, budget = request.reasoning_effort, request.reasoning_budget
    if effort is None and budget is None:
        return None
    if budget is None and _BUDGET_MODELS.match(request.model):
        budget = reasoning_budget(request)
    if budget is not None:
        return gt.ThinkingConfig(thinking_budget=budget, include_thoughts=budget != 0 or None)
    assert effort is not None
    level = _THINKING_LEVELS[effort]
    return gt.ThinkingConfig(thinking_level=level, include_thoughts=True)  # type: ignore[arg-type]


def _contents(messages: tuple[Message, ...]) -> list[gt.Content]:
    turns: list[tuple[str, list[gt.Part]]] = []
    call_names: dict[str, str] = {}
    for m in messages:
        if m.role == "system":
            continue
        if m.role == "tool":
            name = m.name or call_names.get(m.tool_call_id or "", "")
            part = gt.Part(
                function_response=gt.FunctionResponse(
                    id=_vendor_call_id(m.tool_call_id), name=name, response=_tool_result(m.content)
                )
            )
            if turns and turns[-1][0] == "tool":
                turns[-1][1].append(part)  # consecutive answers form one user turn, as Gemini expects
            else:
                turns.append(("tool", [part]))
        elif m.role == "user":
            turns.append(("user", [gt.Part(text=m.content)]))
        else:
            parts: list[gt.Part] = []
            if m.content or not m.tool_calls:
                sig = _decode_signature(m.reasoning_signature)
                parts.append(gt.Part(text=m.content, thought_signature=sig))
            for call in m.tool_calls:
                call_names[call.id] = call.name
                fc = gt.FunctionCall(id=_vendor_call_id(call.id), name=call.name, args=dict(call.arguments))
                parts.append(gt.Part(function_call=fc, thought_signature=_decode_signature(call.signature)))
            turns.append(("model", parts))
    return [gt.Content(role="model" if role == "model" else "user", parts=parts) for role, parts in turns]


def _vendor_call_id(call_id: str | None) -> str | None:
    return None if not call_id or _FORGE_CALL_ID.fullmatch(call_id) else call_id


def _tool_result(content: str) -> dict[str, Any]:
    try:
        value = json.loads(content)
    except ValueError:
        return {"output": content}
    return value if isinstance(value, dict) else {"output": value}


def _decode_signature(signature: str | None) -> bytes | None:
    if not signature:
        return None
    # Gemini sends standard base64; the SDK re-encodes bytes as URL-safe base64. Accept both.
    padded = signature + "=" * (-len(signature) % 4)
    return base64.urlsafe_b64decode(padded.replace("+", "-").replace("/", "_"))


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
        "_meta",
        "_meta_chunk",
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
                for part in content.get("parts") or ():
                    text = part.get("text")
                    if text is not None:
                        if text:
                            kind: StreamEventKind = "reasoning" if part.get("thought") else "text"
                            out.append(StreamEvent(kind, text, raw=chunk))
                        if self.text_signature is None and "thoughtSignature" in part:
                            self.text_signature = sig = part["thoughtSignature"]
                            out.append(StreamEvent("reasoning", "", raw=chunk, signature=sig))
                    elif "functionCall" in part:
                        self._tool_call(part, chunk, out)
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
        out: list[StreamEvent] = []
        usage = self.usage
        if usage is not None and usage != self._emitted:
            out.append(StreamEvent("usage", usage=usage, raw=self._meta_chunk))
        out.append(StreamEvent("finish", self.response_id or "", finish_reason=self.finish_reason()))
        return out


class _GeminiStreamDecoder:
    """SSE ``data:`` events, one decoded JSON object each, via forge's SSEDecoder.

    Like the SDK's parser (``HttpResponse._aiter_response_stream``), a JSON body
    sent without ``data:`` framing (how an error may arrive) is buffered line by
    line until it parses.
    """

    __slots__ = ("_lines", "_raw", "_sse")

    def __init__(self) -> None:
        self._lines = LineSplitter()
        self._sse = SSEDecoder()
        self._raw: list[str] = []

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for line in self._lines.split(data):
            if self._raw or line[:1] == "{":
                self._raw.append(line)
                try:
                    out.append(json.loads("".join(self._raw)))
                except ValueError:
                    continue
                self._raw.clear()
                continue
            ev = self._sse.decode_line(line)
            if ev is not None:
                out.append(json.loads(ev.data))
        return out

    def flush(self) -> list[dict[str, Any]]:
        out = self.feed(b"")
        for line in self._lines.flush():
            out.extend(self.feed(line.encode() + b"\n"))
        out.extend(json.loads(ev.data) for ev in self._sse.flush())
        if self._raw:
            out.append(json.loads("".join(self._raw)))  # incomplete: raises, as the SDK does
        return out


class _JsonArrayDecoder:
    """The body of ``:streamGenerateContent`` without ``alt=sse``: one JSON array
    (``[{...}\n,\r\n{...}]``) whose elements arrive incrementally."""

    __slots__ = ("_buf", "_json", "_started", "_text")

    def __init__(self) -> None:
        self._text = codecs.getincrementaldecoder("utf-8")()
        self._json = json.JSONDecoder()
        self._buf = ""
        self._started = False

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        buf = self._buf + self._text.decode(data)
        out: list[dict[str, Any]] = []
        i, n = 0, len(buf)
        while True:
            while i < n and buf[i] in " \t\r\n,":
                i += 1
            if i >= n:
                break
            if buf[i] == "[" and not self._started:
                self._started = True
                i += 1
                continue
            if buf[i] == "]":
                i += 1
                continue
            try:
                value, end = self._json.raw_decode(buf, i)
            except ValueError:
                break  # an element split across reads: wait for the rest
            if isinstance(value, dict):
                out.append(value)
            i = end
        self._buf = buf[i:]
        return out

    def flush(self) -> list[dict[str, Any]]:
        out = self.feed(b"")
        rest = self._buf.strip()
        if rest:
            out.append(json.loads(rest))  # incomplete: raises, as the SDK's parser does
        return out


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
