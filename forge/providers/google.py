"""Google Gemini adapter (google-genai, Gemini Developer API).

google-genai builds and authenticates every request (URL, ``x-goog-api-key``,
version headers, the camelCase JSON body) with its own code; forge sends that
exact request on the pooled httpx2 client it hands the SDK, and decodes the
answer itself:
the SSE body of ``:streamGenerateContent?alt=sse`` with forge's ``GeminiSSEDecoder``
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
import json
import re
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, Literal

import httpx2
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as gt

from forge._wire import GeminiSSEDecoder, JSONArrayDecoder, loads
from forge.config import ProviderConfig
from forge.errors import (
    AuthenticationError,
    BadRequestError,
    ForgeError,
    ProviderConnectionError,
    ProviderError,
)
from forge.providers import _genai_private as genai_private
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
from forge.providers._stream import ResponseStream, classified, decoded_events
from forge.types import (
    FinishReason,
    Message,
    ReasoningBlock,
    Request,
    Response,
    StreamEvent,
    StreamEventKind,
    ToolCall,
    Usage,
    own_blocks,
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
# Levels the Pro models take (ai.google.dev/gemini-api/docs/thinking, "thinking levels"): Gemini 3 Pro
# only LOW and HIGH; Gemini 3.1 Pro adds MEDIUM, never MINIMAL. Neither can turn thinking off.
_PRO_LEVELS = (
    (re.compile(r"(models/)?gemini-3-pro"), ("LOW", "HIGH")),
    (re.compile(r"(models/)?gemini-3\.\d+-pro"), ("LOW", "MEDIUM", "HIGH")),
)
# Google's documented stand-in for a function call that no Gemini reply signed (a turn from
# another provider or built by hand): Gemini 3 refuses such a call in the current turn otherwise.
# ai.google.dev/gemini-api/docs/thought-signatures ("dummy signatures").
_UNSIGNED_CALL = "skip_thought_signature_validator"
_GEMINI_3 = re.compile(r"(models/)?gemini-([3-9]|\d\d)")


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
        reader = _ChunkReader()
        body, events = await classified(
            self._send(http_request, request.model, reader), lambda exc: self._classify(exc, request.model)
        )
        return Response(
            text="".join(ev.text for ev in events if ev.kind == "text"),
            provider=_PROVIDER,
            model=request.model,
            finish_reason=reader.finish_reason(),
            usage=reader.usage or Usage(),
            tool_calls=tuple(ev.tool_call for ev in events if ev.kind == "tool_call_done" and ev.tool_call),
            reasoning="".join(ev.text for ev in events if ev.kind == "reasoning") or None,
            reasoning_signature=reader.text_signature,
            reasoning_blocks=reader.blocks(),
            id=reader.response_id,
            raw=body,
        )

    async def _send(
        self, http_request: httpx2.Request, model: str, reader: _ChunkReader
    ) -> tuple[dict[str, Any], list[StreamEvent]]:
        response = await self._http.send(http_request)
        if response.status_code != 200:
            await genai_errors.APIError.raise_for_async_response(response)
        body = json_reply(
            response, valid=_is_generate_content, expected=_RESPONSE_SHAPE,
            provider=_PROVIDER, model=model, base_url=self.base_url,
        )
        if "error" in body:
            _raise_in_band(body, response)
        return body, reader.feed(body)

    def stream(self, request: Request) -> AsyncIterator[StreamEvent]:
        """Stream ``:streamGenerateContent?alt=sse``; the request goes out on the first ``__anext__``.

        ``aclose()`` closes the HTTP response, from any task.
        """
        state = _StreamReader(request.model, self.base_url)
        return ResponseStream(lambda owner: decoded_events(
            owner, lambda: self._open(request), state, lambda exc: self._classify(exc, request.model)
        ))

    @asynccontextmanager
    async def _open(self, request: Request) -> AsyncIterator[httpx2.Response]:
        response = await self._http.send(self._prepare(request, stream=True), stream=True)
        try:
            yield response
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
    params = genai_private.GenerateContentParameters(model=model, contents=contents, config=config)
    request_dict = genai_private.to_mldev(genai_private.api_client(client), params, None, params)
    url_params = request_dict.get("_url")
    template = "{model}:streamGenerateContent?alt=sse" if stream else "{model}:generateContent"
    path = template.format_map(url_params) if url_params else template
    if request_dict.get("_query"):  # not produced for generateContent today; kept for parity
        raise ValueError(f"unexpected query parameters {request_dict['_query']!r}")
    request_dict.pop("config", None)
    request_dict = genai_private.convert_to_dict(request_dict)
    request_dict = genai_private.encode_unserializable_types(request_dict)
    http_request = genai_private.build_request(client, "post", path, request_dict, config.http_options)
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
    return request.model, _contents(request.messages, request.model), gt.GenerateContentConfig(**cfg)


def _thinking_config(request: Request) -> gt.ThinkingConfig | None:
    """``thinkingBudget`` for a budget (and on Gemini 1.x/2.x), ``thinkingLevel`` for an effort."""
    effort, budget = request.reasoning_effort, request.reasoning_budget
    if effort is None and budget is None:
        return None
    if budget is None and _BUDGET_MODELS.match(request.model):
        budget = reasoning_budget(request)
    accepted = next((levels for pattern, levels in _PRO_LEVELS if pattern.match(request.model)), None)
    if budget is not None:
        if budget == 0 and accepted is not None:
            raise BadRequestError(
                f"{request.model} cannot turn thinking off (reasoning_budget=0); the lowest it takes is "
                "reasoning_effort='low'.",
                provider=_PROVIDER,
                model=request.model,
            )
        return gt.ThinkingConfig(thinking_budget=budget, include_thoughts=budget != 0 or None)
    assert effort is not None
    level = _THINKING_LEVELS[effort]
    if accepted is not None and level not in accepted:
        allowed = ", ".join(repr(e) for e, lv in _THINKING_LEVELS.items() if lv in accepted)
        raise BadRequestError(
            f"{request.model} refuses thinkingLevel {level} (from reasoning_effort={effort!r}); "
            f"it accepts {', '.join(accepted)} only: use reasoning_effort {allowed}.",
            provider=_PROVIDER,
            model=request.model,
        )
    return gt.ThinkingConfig(thinking_level=level, include_thoughts=True)  # type: ignore[arg-type]


def _model_parts(m: Message, call_names: dict[str, str], sign_calls: bool) -> list[gt.Part]:
    """A model turn's parts: Gemini's own thought parts and signatures back where they came from.

    ``sign_calls``: the turn is in the current tool loop of a Gemini 3 call, whose
    function calls need a signature; calls no Gemini reply signed get Google's stand-in.
    """
    own = own_blocks(m.reasoning_blocks, _PROVIDER)
    text_sig = next((b.signature for b in own if b.kind == "signature"), None)
    if not m.reasoning_blocks:
        text_sig = m.reasoning_signature  # a hand-built turn
    parts: list[gt.Part] = []
    if m.content or not m.tool_calls or text_sig:
        parts.append(gt.Part(text=m.content, thought_signature=_decode_signature(text_sig)))
    signed = any(call.signature for call in m.tool_calls)
    for i, call in enumerate(m.tool_calls):
        call_names[call.id] = call.name
        fc = gt.FunctionCall(id=_vendor_call_id(call.id), name=call.name, args=dict(call.arguments))
        signature = call.signature
        if signature is None and sign_calls and not signed and i == 0:
            signature = _UNSIGNED_CALL
        parts.append(gt.Part(function_call=fc, thought_signature=_decode_signature(signature)))
    for block in own:
        if block.kind == "thinking":
            thought_sig = _decode_signature(block.signature)
            thought = gt.Part(text=block.text, thought=True, thought_signature=thought_sig)
            parts.insert(min(block.position, len(parts)), thought)
    return parts


def _contents(messages: tuple[Message, ...], model: str = "") -> list[gt.Content]:
    turns: list[tuple[str, list[gt.Part]]] = []
    call_names: dict[str, str] = {}
    model_turns: list[tuple[int, Message]] = []
    current = 0
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
            current = len(turns)  # the current turn starts after the last user text
        else:
            turns.append(("model", _model_parts(m, call_names, False)))
            if m.tool_calls:
                model_turns.append((len(turns) - 1, m))
    if _GEMINI_3.match(model):
        for at, m in model_turns:
            if at >= current:
                turns[at] = ("model", _model_parts(m, {}, True))
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
                for part in content.get("parts") or ():
                    text = part.get("text")
                    if text is not None:
                        index = self._on_text_part(part, text)
                        if text:
                            thought = bool(part.get("thought"))
                            kind: StreamEventKind = "reasoning" if thought else "text"
                            out.append(StreamEvent(kind, text, index=index if thought else 0, raw=chunk))
                        if self.text_signature is None and "thoughtSignature" in part:
                            self.text_signature = sig = part["thoughtSignature"]
                            out.append(StreamEvent("reasoning", "", index=index, raw=chunk, signature=sig))
                    elif "functionCall" in part:
                        self._pos += 1
                        self._last = "call"
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
        return self.feed(chunk)

    def close(self) -> list[StreamEvent]:
        if self.truncated:
            raise ProviderConnectionError(
                "Gemini stream ended before a finish reason (connection closed early?)",
                provider=_PROVIDER,
                model=self._model,
            )
        return self.finish_events()


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
