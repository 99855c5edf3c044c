"""Ollama adapter (``ollama.AsyncClient``, native ``/api/chat``).

The ollama client builds the request (its ``ChatRequest`` model and message /
tool helpers) and owns the pooled httpx client; forge sends that request on
that client and decodes the NDJSON body with forge's ``NDJSONDecoder``: one
``json.loads`` per line, no pydantic model per chunk.

Decisions (see also docs/providers.md):

- Usage: ``prompt_eval_count`` -> input, ``eval_count`` -> output (thinking
  included; Ollama reports no separate reasoning or cache counts).
- Tool calls arrive whole; their id is Ollama's when it sends one, else
  ``call_<n>``. Ollama has no ``tool_choice``: ``"none"`` leaves the tools out,
  ``"auto"`` sends them; ``"required"`` or a tool name cannot be expressed and
  raise ``BadRequestError`` naming the field. So does a tool schema the client
  would cut down (nested ``properties``, ``anyOf``, ``minimum``...).
- Reasoning: ``reasoning_effort`` (or the tier of ``reasoning_budget``) ->
  ``think``: ``False`` for ``none``, else ``True``, or the effort string for
  gpt-oss models, which take levels.
- ``request.extra``: ``ChatRequest`` fields (``keep_alive``, ``think``,
  ``format``, ``logprobs``, ``top_logprobs``, ``tools``) go top level;
  ``options`` is merged over forge's options; a known model option
  (``num_ctx``, ``top_k``...) may also be given at the top of ``extra``. Any
  other key is rejected, since the ollama client would silently drop it.
- No API key is needed; when one is configured it is sent as a Bearer token.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import httpx
import ollama
from ollama._types import ChatRequest, Options

from forge._wire import NDJSONDecoder, loads
from forge.config import ProviderConfig
from forge.errors import (
    BadRequestError,
    ContextLengthError,
    ForgeError,
    ProviderConnectionError,
    ServerError,
)
from forge.providers import _ollama_private as ollama_private
from forge.providers._common import (
    check_stream_reply,
    error_for_status,
    headers_dict,
    is_context_length_message,
    json_reply,
    make_httpx_kwargs,
    public_url,
    reasoning_effort,
    unclassified_error,
)
from forge.providers._stream import ResponseStream, classified, decoded_events
from forge.types import FinishReason, Message, Request, Response, StreamEvent, ToolCall, Usage

__all__ = ["OllamaProvider"]

_PROVIDER = "ollama"
_CHAT_PATH = "/api/chat"
_TOP_LEVEL = frozenset(ChatRequest.model_fields) - {"model", "messages", "stream"}
_OPTION_FIELDS = frozenset(Options.model_fields)
_ANNOTATIONS = frozenset({"title", "$schema", "$comment", "examples"})
_LEVELLED_THINKING = re.compile(r"gpt-oss")  # models that take think="low"/"medium"/"high"


class OllamaProvider:
    """Ollama behind forge's :class:`~forge.types.Provider` protocol.

    Args:
        config: the ``ollama`` provider settings (host via ``base_url`` or
            ``OLLAMA_HOST``, optional key, timeouts, ``options.keep_alive``).
        transport: an ``httpx.AsyncBaseTransport`` for the client's httpx
            client (tests pass an ``httpx.MockTransport``).
    """

    name = _PROVIDER

    def __init__(self, config: ProviderConfig, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        key = config.resolve_api_key()
        kwargs = make_httpx_kwargs(config)
        if transport is not None:
            kwargs["transport"] = transport
        self._keep_alive = config.options.get("keep_alive")
        self._client = ollama.AsyncClient(
            host=config.resolve_base_url(),  # None: OLLAMA_HOST, then http://127.0.0.1:11434
            headers={"authorization": f"Bearer {key}"} if key else None,
            **kwargs,
        )
        self.base_url = public_url(self._http().base_url)

    # ------------------------------------------------------------------ Provider

    async def complete(self, request: Request) -> Response:
        """Call ``/api/chat`` with ``stream: false`` and return the whole reply."""
        http_request = self._prepare(request, stream=False)
        reader = _LineReader()
        body, events = await classified(
            self._send(http_request, request.model, reader), lambda exc: self._classify(exc, request.model)
        )
        return Response(
            text="".join(ev.text for ev in events if ev.kind == "text"),
            provider=_PROVIDER,
            model=request.model,
            finish_reason=reader.finish_reason(),
            usage=reader.usage or Usage(),
            tool_calls=tuple(reader.calls),
            reasoning="".join(ev.text for ev in events if ev.kind == "reasoning") or None,
            raw=body,
        )

    async def _send(
        self, http_request: httpx.Request, model: str, reader: _LineReader
    ) -> tuple[dict[str, Any], list[StreamEvent]]:
        response = await self._http().send(http_request)
        if not response.is_success:
            raise _status_error(response, model, self.base_url)
        body = json_reply(
            response, valid=_is_chat_reply, expected=_CHAT_SHAPE, provider=_PROVIDER,
            model=model, base_url=self.base_url,
        )
        return body, reader.feed(body)  # raises ResponseError for an {"error": ...} body

    def stream(self, request: Request) -> AsyncIterator[StreamEvent]:
        """Stream ``/api/chat`` as NDJSON; the request goes out on the first ``__anext__``.

        ``aclose()`` closes the HTTP response, from any task.
        """
        state = _StreamReader(request.model, self.base_url)
        return ResponseStream(lambda owner: decoded_events(
            owner, lambda: self._open(request), state, lambda exc: self._classify(exc, request.model)
        ))

    @asynccontextmanager
    async def _open(self, request: Request) -> AsyncIterator[httpx.Response]:
        response = await self._http().send(self._prepare(request, stream=True), stream=True)
        try:
            yield response
        finally:
            await response.aclose()

    def classify(self, exc: BaseException) -> ForgeError:
        """Map an ollama, httpx or OS exception onto the forge error tree."""
        return self._classify(exc, None)

    async def aclose(self) -> None:
        """Close the ollama client and its httpx connection pool."""
        await self._client.close()  # type: ignore[no-untyped-call]

    # ------------------------------------------------------------------ internals

    def _http(self) -> httpx.AsyncClient:
        # The client's own pooled httpx client (``BaseClient._client``); ollama offers no public handle.
        return ollama_private.http_client(self._client)

    def _prepare(self, request: Request, *, stream: bool) -> httpx.Request:
        try:
            model, kwargs = ollama_chat_args(request, keep_alive=self._keep_alive)
            payload = build_ollama_chat_payload(model, kwargs, stream=stream)
            check_tools_survive(request, payload)
        except (ValueError, TypeError) as exc:  # pydantic ValidationError is a ValueError
            raise BadRequestError(
                f"Cannot build an Ollama request for {request.model!r}: {exc}",
                provider=_PROVIDER,
                model=request.model,
            ) from exc
        # ``AsyncClient._request`` sends ``self._client.stream/request("POST", "/api/chat", json=...)``.
        return self._http().build_request("POST", _CHAT_PATH, json=payload)

    def _classify(self, exc: BaseException, model: str | None) -> ForgeError:
        if isinstance(exc, ForgeError):
            return exc
        if isinstance(exc, ollama.ResponseError):
            message = f"ollama said: {exc.error}"
            if exc.status_code == -1:
                # An ``{"error": ...}`` line inside a 200 stream: the server failed while generating.
                cls = ContextLengthError if is_context_length_message(exc.error) else ServerError
                return cls(message, provider=_PROVIDER, model=model)
            return error_for_status(
                exc.status_code, message, provider=_PROVIDER, model=model, base_url=self.base_url
            )
        if isinstance(exc, ollama.RequestError):
            return BadRequestError(
                f"ollama client refused the request: {exc.error}", provider=_PROVIDER, model=model
            )
        return unclassified_error(
            exc, provider=_PROVIDER, model=model, label="Ollama", base_url=self.base_url
        )


# ---------------------------------------------------------------------- request


def build_ollama_chat_payload(model: str, kwargs: Mapping[str, Any], *, stream: bool) -> dict[str, Any]:
    """The JSON body ``ollama.AsyncClient.chat(model, **kwargs, stream=...)`` sends.

    Mirrors ``AsyncClient.chat`` (ollama 0.6.3, ``_client.py:1040``) with the
    client's own pieces: ``_types.ChatRequest`` and the private helpers
    ``_client._copy_messages`` / ``_client._copy_tools``, dumped with
    ``model_dump(exclude_none=True)``; the caller hands the dict to the
    client's httpx client as ``json=`` exactly as ``AsyncClient._request`` does.
    """
    return ChatRequest(
        model=model,
        messages=list(ollama_private.copy_messages(kwargs.get("messages"))),
        tools=list(ollama_private.copy_tools(kwargs.get("tools"))),
        stream=stream,
        think=kwargs.get("think"),
        logprobs=kwargs.get("logprobs"),
        top_logprobs=kwargs.get("top_logprobs"),
        format=kwargs.get("format"),
        options=kwargs.get("options"),
        keep_alive=kwargs.get("keep_alive"),
    ).model_dump(exclude_none=True)


def ollama_chat_args(request: Request, *, keep_alive: object = None) -> tuple[str, dict[str, Any]]:
    """Translate a forge Request into ``AsyncClient.chat(model, **kwargs)`` arguments."""
    options: dict[str, Any] = {}
    if request.max_tokens is not None:
        options["num_predict"] = request.max_tokens
    if request.temperature is not None:
        options["temperature"] = request.temperature
    if request.top_p is not None:
        options["top_p"] = request.top_p
    if request.seed is not None:
        options["seed"] = request.seed
    if request.stop:
        options["stop"] = list(request.stop)
    kwargs: dict[str, Any] = {"messages": _messages(request)}
    choice = request.tool_choice
    if request.tools and choice not in (None, "auto", "none"):
        forced = "a call to some tool" if choice == "required" else f"a call to {choice!r}"
        raise ValueError(
            f"tool_choice={choice!r}: Ollama has no tool_choice, so it cannot force {forced}; "
            "use 'auto' (or leave it unset) and check response.tool_calls, or 'none' to send no tools"
        )
    think = _think(request)
    if think is not None:
        kwargs["think"] = think
    if request.tools and request.tool_choice != "none":
        kwargs["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": t.name,
                    "description": t.description,
                    "parameters": dict(t.parameters),
                },
            }
            for t in request.tools
        ]
    fmt = request.response_format
    if fmt is not None and fmt.type == "json":
        kwargs["format"] = "json"
    elif fmt is not None and fmt.type == "json_schema" and fmt.schema is not None:
        kwargs["format"] = dict(fmt.schema)
    if keep_alive is not None:
        kwargs["keep_alive"] = keep_alive
    for key, value in request.extra.items():
        if key == "options":
            if not isinstance(value, Mapping):
                raise TypeError(f"extra['options'] must be a mapping, got {type(value).__name__}")
            options.update(value)
        elif key in _TOP_LEVEL:
            kwargs[key] = value
        elif key in _OPTION_FIELDS:
            options[key] = value
        else:
            raise ValueError(
                f"extra[{key!r}] is not an Ollama chat field or model option; "
                f"top-level fields: {', '.join(sorted(_TOP_LEVEL))}; put other model options "
                "under extra['options']"
            )
    if options:
        kwargs["options"] = options
    return request.model, kwargs


def _think(request: Request) -> bool | str | None:
    """``think``: on or off, or the effort string for the models that take one (gpt-oss)."""
    effort = reasoning_effort(request)
    if effort is None:
        return None
    if effort == "none":
        return False
    return effort if _LEVELLED_THINKING.search(request.model) else True


def check_tools_survive(request: Request, payload: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` naming the first tool-schema field the ollama client dropped.

    Ollama's ``Tool`` model keeps only ``type``, ``items``, ``description`` and
    ``enum`` per property (no nested ``properties``, ``anyOf``, ``minimum``...);
    what it drops would silently stop constraining the model. Pure annotations
    (``title``, ``$schema``, ``$comment``, ``examples``) and
    ``additionalProperties: false`` may go.
    """
    sent = payload.get("tools") or []
    for i, (tool, wire) in enumerate(zip(request.tools, sent, strict=False)):
        kept = (wire.get("function") or {}).get("parameters") or {}
        lost = _first_dropped(tool.parameters, kept, f"tools[{i}].parameters")
        if lost is not None:
            raise ValueError(
                f"{lost} (tool {tool.name!r}) cannot be expressed in an Ollama tool schema, which keeps "
                "only type, items, description and enum per property; flatten the parameters or "
                "describe the constraint in a description"
            )


def _first_dropped(original: object, kept: object, path: str) -> str | None:
    if isinstance(original, Mapping):
        if not isinstance(kept, Mapping):
            return path
        for key, value in original.items():
            if key in _ANNOTATIONS or (key == "additionalProperties" and value is False):
                continue
            if key not in kept:
                return f"{path}.{key}"
            lost = _first_dropped(value, kept[key], f"{path}.{key}")
            if lost is not None:
                return lost
        return None
    if isinstance(original, list) and isinstance(kept, list) and len(original) == len(kept):
        for j, (a, b) in enumerate(zip(original, kept, strict=True)):
            lost = _first_dropped(a, b, f"{path}[{j}]")
            if lost is not None:
                return lost
        return None
    return None if original == kept else path


def _messages(request: Request) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if request.system:
        out.append({"role": "system", "content": request.system})
    call_names: dict[str, str] = {}
    for m in request.messages:
        out.append(_message(m, call_names))
    return out


def _message(m: Message, call_names: dict[str, str]) -> dict[str, Any]:
    msg: dict[str, Any] = {"role": m.role, "content": m.content}
    if m.role == "assistant":
        if m.reasoning:
            msg["thinking"] = m.reasoning
        if m.tool_calls:
            msg["tool_calls"] = [
                {"function": {"name": c.name, "arguments": dict(c.arguments)}} for c in m.tool_calls
            ]
            call_names.update((c.id, c.name) for c in m.tool_calls)
    elif m.role == "tool":
        name = m.name or call_names.get(m.tool_call_id or "")
        if name:
            msg["tool_name"] = name
    return msg


# ---------------------------------------------------------------------- response


class _LineReader:
    """Turns decoded ``/api/chat`` lines into forge events; keeps stream state."""

    __slots__ = ("calls", "done_line", "usage")

    def __init__(self) -> None:
        self.calls: list[ToolCall] = []
        self.usage: Usage | None = None
        self.done_line: dict[str, Any] | None = None

    def feed(self, line: Any) -> list[StreamEvent]:
        if error := line.get("error"):
            raise ollama.ResponseError(error)  # what the client raises for an in-band error line
        out: list[StreamEvent] = []
        message = line.get("message")
        if message:
            thinking = message.get("thinking")
            if thinking:
                out.append(StreamEvent("reasoning", thinking, raw=line))
            content = message.get("content")
            if content:
                out.append(StreamEvent("text", content, raw=line))
            tool_calls = message.get("tool_calls")
            if tool_calls:
                self._tool_calls(tool_calls, line, out)
        if line.get("done"):
            self.done_line = line
            self.usage = Usage(
                input_tokens=line.get("prompt_eval_count") or 0,
                output_tokens=line.get("eval_count") or 0,
            )
            out.append(StreamEvent("usage", usage=self.usage, raw=line))
        return out

    def _tool_calls(
        self, calls: Sequence[dict[str, Any]], line: dict[str, Any], out: list[StreamEvent]
    ) -> None:
        for call in calls:
            fn = call.get("function") or {}
            index = len(self.calls)
            call_id = call.get("id") or f"call_{index}"
            name = fn.get("name") or ""
            args = fn.get("arguments") or {}
            if isinstance(args, str):  # OpenAI-style JSON text, from some compatible servers
                tool_call = ToolCall.from_json(call_id, name, args, provider=_PROVIDER)
                raw_args = args
            else:
                raw_args = json.dumps(args, ensure_ascii=False, separators=(",", ":"))
                tool_call = ToolCall(call_id, name, args, raw_args)
            self.calls.append(tool_call)
            start = ToolCall(call_id, name)
            out.append(StreamEvent("tool_call_start", index=index, tool_call=start, raw=line))
            out.append(StreamEvent("tool_call_delta", raw_args, index=index, raw=line))
            out.append(StreamEvent("tool_call_done", index=index, tool_call=tool_call, raw=line))

    def finish_reason(self) -> FinishReason | None:
        if self.done_line is None:
            return None  # the stream ended without its final line
        if self.done_line.get("done_reason") == "length":
            return "length"
        return "tool_calls" if self.calls else "stop"


class _StreamReader(_LineReader):
    """A streamed reply: checks it, decodes its lines, ends it with the one ``finish``."""

    __slots__ = ("_base_url", "_model")

    def __init__(self, model: str, base_url: str) -> None:
        super().__init__()
        self._model = model
        self._base_url = base_url

    async def start(self, response: httpx.Response) -> NDJSONDecoder:
        if not response.is_success:
            await response.aread()
            raise _status_error(response, self._model, self._base_url)
        await check_stream_reply(
            response, media_types=_STREAM_MEDIA_TYPES, expected="an NDJSON stream of /api/chat lines",
            provider=_PROVIDER, model=self._model, base_url=self._base_url,
        )
        return NDJSONDecoder(texts=True)

    def on_payload(self, line: Any) -> list[StreamEvent]:
        return self.feed(loads(line))  # decoded here, one line at a time

    def close(self) -> list[StreamEvent]:
        if self.done_line is None:
            raise ProviderConnectionError(
                "Ollama stream ended without its final done line (connection closed early?)",
                provider=_PROVIDER,
                model=self._model,
            )
        return [StreamEvent("finish", finish_reason=self.finish_reason(), raw=self.done_line)]


_CHAT_SHAPE = "an /api/chat JSON object with 'message' or 'done'"
# github.com/ollama/ollama/blob/main/docs/api.md: streams are application/x-ndjson; some
# servers (and recordings) send application/json or no content type at all.
_STREAM_MEDIA_TYPES = frozenset({"application/x-ndjson", "application/json", "application/jsonl"})


def _is_chat_reply(data: Mapping[str, Any]) -> bool:
    return any(key in data for key in ("message", "done", "error"))  # an error body is raised by the reader


def _status_error(response: httpx.Response, model: str | None, base_url: str | None = None) -> ForgeError:
    """A non-2xx answer, as the ollama client would report it, but with the response's
    headers (Retry-After, request id) kept: forge sends this request itself, so it has them."""
    vendor = ollama.ResponseError(response.text, response.status_code)
    error = error_for_status(
        response.status_code,
        f"ollama said: {vendor.error}",
        provider=_PROVIDER,
        model=model,
        headers=headers_dict(response.headers),
        base_url=base_url,
    )
    error.__cause__ = vendor
    return error
