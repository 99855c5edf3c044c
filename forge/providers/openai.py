"""OpenAI adapter: Chat Completions (or, with ``api = "responses"``, the Responses API) via ``openai``.

The client builds, authenticates and sends the request and turns a non-2xx
answer into its typed error; forge reads the body itself. Non-streaming calls
use ``with_raw_response`` and one ``json.loads``; streams use
``with_streaming_response`` and forge's incremental :class:`~forge._wire.SSEDecoder`,
so a chunk costs one JSON decode and a few small :class:`StreamEvent` objects,
never a pydantic model.

Request mapping (see docs/providers.md for the full table):

- ``system`` becomes a leading ``system`` message.
- ``max_tokens`` is sent as ``max_completion_tokens`` to OpenAI itself (the name
  every current chat model accepts; o-series and gpt-5 reject ``max_tokens``) and
  as ``max_tokens`` to any other ``base_url`` (OpenAI-compatible servers such as
  vLLM, llama.cpp or Ollama's ``/v1`` know that name, and some only that one).
  ``providers.openai.max_tokens_param`` overrides the choice.
- ``response_format`` json -> ``json_object``; json_schema -> ``json_schema``
  with name, schema and strict.
- ``reasoning_effort`` (or the tier of ``reasoning_budget``) -> ``reasoning_effort``.
- Tool-call arguments that are not a JSON object raise ``ToolCallError``.
- ``extra`` is merged into the JSON body (``extra_body``) and wins over the
  fields forge sets.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any
from urllib.parse import urlsplit

import httpx2
import openai

from forge._wire import SSEDecoder, SSEEvent, loads
from forge.config import ProviderConfig
from forge.errors import (
    BadRequestError,
    ConfigError,
    ForgeError,
    ProviderConnectionError,
    ProviderError,
)
from forge.providers import openai_responses
from forge.providers._common import (
    body_preview,
    check_schema_name,
    check_stream_reply,
    client_connection_error,
    error_for_status,
    headers_dict,
    json_reply,
    make_httpx2_client,
    public_url,
    reasoning_effort,
    unclassified_error,
)
from forge.providers._stream import (
    EventBatches,
    ResponseOwner,
    ResponseStream,
    classified,
    decoded_events,
    http_response_of,
)
from forge.types import FinishReason, Message, Request, Response, StreamEvent, ToolCall, Usage

__all__ = ["OpenAIProvider"]

_FINISH: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
}


class OpenAIProvider:
    """:class:`~forge.types.Provider` for OpenAI Chat Completions (and compatible servers).

    Args:
        config: the ``openai`` provider section (key, base_url, timeouts, and the
            ``organization`` / ``project`` options).
        http_client: an ``httpx2.AsyncClient`` to use instead of forge's pooled
            one (tests inject one with a ``MockTransport``); the provider owns
            and closes it.

    ``options.api = "responses"`` switches every call to the Responses API
    (:mod:`forge.providers.openai_responses`); the default is Chat Completions.

    Raises:
        ConfigError: no API key, or an ``api`` other than ``chat`` / ``responses``.
    """

    name = "openai"

    def __init__(self, config: ProviderConfig, *, http_client: httpx2.AsyncClient | None = None) -> None:
        api = config.options.get("api", "chat")
        if api not in ("chat", "responses"):
            raise ConfigError(
                f"providers.openai.api = {api!r} is not supported; use 'chat' (Chat Completions, the "
                "default) or 'responses' (the Responses API).",
                key="providers.openai.api",
                source=config.source,
            )
        self.api = api
        self._max_tokens_param = _max_tokens_param(config)
        self._max_stop = 4 if _is_openai(config) else None  # compatible servers may take more
        api_key = config.require_api_key()
        organization = config.options.get("organization")
        project = config.options.get("project")
        self._http = http_client if http_client is not None else make_httpx2_client(config)
        self._client = openai.AsyncOpenAI(
            api_key=api_key,
            organization=organization if isinstance(organization, str) else None,
            project=project if isinstance(project, str) else None,
            base_url=config.resolve_base_url(),
            timeout=httpx2.Timeout(config.timeout, connect=config.connect_timeout),
            max_retries=0,
            http_client=self._http,
        )
        self.base_url = public_url(self._client.base_url)

    async def complete(self, request: Request) -> Response:
        """Send ``request`` and return the whole reply.

        Raises:
            ProviderError: the call failed (already classified, see :meth:`classify`).
        """
        if self.api == "responses":
            return await classified(
                openai_responses.complete(self._client, request), self._classifier(request.model)
            )
        return await classified(self._complete_chat(request), self._classifier(request.model))

    async def _complete_chat(self, request: Request) -> Response:
        raw = await self._client.chat.completions.with_raw_response.create(
            **_params(request, self._max_tokens_param, self._max_stop)
        )
        data = json_reply(
            raw.http_response, valid=_is_chat_completion, expected=_CHAT_SHAPE,
            provider=self.name, model=request.model, base_url=self.base_url,
        )
        return _response(data, request.model)

    def stream(self, request: Request) -> AsyncIterator[StreamEvent]:
        """Stream ``request``: text / reasoning / tool-call / usage events, then exactly one ``finish``.

        The request goes out on the first ``__anext__``; ``aclose()`` closes the
        HTTP response, from any task. Errors are raised already classified.
        """
        if self.api == "responses":
            return ResponseStream(lambda owner: openai_responses.stream(
                self._client, request, owner, self._classifier(request.model)
            ))
        return ResponseStream(lambda owner: self._stream_chat(request, owner))

    def _stream_chat(self, request: Request, owner: ResponseOwner) -> EventBatches:
        def open_response() -> AbstractAsyncContextManager[httpx2.Response]:
            params = _params(request, self._max_tokens_param, self._max_stop)
            params["stream"] = True
            params["stream_options"] = {"include_usage": True}
            return http_response_of(self._client.chat.completions.with_streaming_response.create(**params))

        state = _ChatStream(request.model, self.base_url)
        return decoded_events(owner, open_response, state, self._classifier(request.model))

    def _classifier(self, model: str) -> Callable[[BaseException], ForgeError]:
        return lambda exc: self.classify(exc, model=model)

    def classify(self, exc: BaseException, *, model: str | None = None) -> ForgeError:
        """Map an ``openai`` or transport exception onto the forge error tree."""
        if isinstance(exc, ForgeError):
            return exc
        if isinstance(exc, openai.APIStatusError):
            return error_for_status(
                exc.status_code,
                f"openai said: {_api_message(exc)}",
                code=exc.code or exc.type,
                request_id=exc.request_id,
                headers=headers_dict(exc.response.headers),
                provider=self.name,
                model=model,
                base_url=self.base_url,
            )
        if isinstance(exc, openai.APIConnectionError):
            return client_connection_error(
                exc, timed_out=isinstance(exc, openai.APITimeoutError),
                provider=self.name, model=model, base_url=self.base_url,
            )
        if isinstance(exc, openai.APIError):  # in-band stream error from the typed path: no status
            return error_for_status(
                None,
                f"openai said: {_api_message(exc)}",
                code=exc.code or exc.type,
                provider=self.name,
                model=model,
            )
        return unclassified_error(exc, provider=self.name, model=model, base_url=self.base_url)

    async def aclose(self) -> None:
        """Close the vendor client and its connection pool."""
        await self._client.close()
        await self._http.aclose()


# --------------------------------------------------------------------------- request


def _is_openai(config: ProviderConfig) -> bool:
    base_url = config.resolve_base_url()
    host = (urlsplit(base_url).hostname or "") if base_url else "api.openai.com"
    return host == "openai.com" or host.endswith(".openai.com")


def _max_tokens_param(config: ProviderConfig) -> str:
    chosen = config.options.get("max_tokens_param")
    if isinstance(chosen, str):
        return chosen
    return "max_completion_tokens" if _is_openai(config) else "max_tokens"


def _params(
    request: Request, max_tokens_param: str = "max_completion_tokens", max_stop: int | None = None
) -> dict[str, Any]:
    if max_stop is not None and len(request.stop) > max_stop:
        raise BadRequestError(
            f"openai takes at most {max_stop} stop sequences; got {len(request.stop)}.",
            provider="openai",
            model=request.model,
        )
    check_schema_name(request)
    params: dict[str, Any] = {"model": request.model, "messages": _messages(request)}
    if request.max_tokens is not None:
        params[max_tokens_param] = request.max_tokens
    if request.temperature is not None:
        params["temperature"] = request.temperature
    if request.top_p is not None:
        params["top_p"] = request.top_p
    if request.seed is not None:
        params["seed"] = request.seed
    if request.stop:
        params["stop"] = list(request.stop)
    fmt = request.response_format
    if fmt is not None and fmt.type != "text":
        if fmt.type == "json_schema" and fmt.schema is not None:
            params["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": fmt.name, "schema": dict(fmt.schema), "strict": fmt.strict},
            }
        else:
            params["response_format"] = {"type": "json_object"}
    if request.tools:
        tools = []
        for tool in request.tools:
            function: dict[str, Any] = {"name": tool.name, "parameters": dict(tool.parameters)}
            if tool.description:
                function["description"] = tool.description
            tools.append({"type": "function", "function": function})
        params["tools"] = tools
    if request.tool_choice:
        choice = request.tool_choice
        params["tool_choice"] = (
            choice
            if choice in ("auto", "none", "required")
            else {"type": "function", "function": {"name": choice}}
        )
    effort = reasoning_effort(request)
    if effort is not None:
        params["reasoning_effort"] = effort
    if request.extra:
        params["extra_body"] = dict(request.extra)
    if request.cache is not None:
        _add_cache_hints(params, request)
    return params


def _messages(request: Request) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if request.system:
        out.append({"role": "system", "content": request.system})
    for m in request.messages:
        out.append(_message(m))
    return out


def _message(m: Message) -> dict[str, Any]:
    if m.role == "tool":
        return {"role": "tool", "tool_call_id": m.tool_call_id or "", "content": m.content}
    msg: dict[str, Any] = {"role": m.role, "content": m.content}
    if m.name:
        msg["name"] = m.name
    if m.role == "assistant" and m.tool_calls:
        msg["content"] = m.content or None
        msg["tool_calls"] = [
            {
                "id": tc.id,
                "type": "function",
                "function": {"name": tc.name, "arguments": tc.raw_arguments or json.dumps(tc.arguments)},
            }
            for tc in m.tool_calls
        ]
    return msg


def _add_cache_hints(params: dict[str, Any], request: Request) -> None:
    """``cache.key`` -> ``prompt_cache_key``; with ``prompt_cache_options`` in ``extra`` (the explicit
    caching API of gpt-5.6+), ``prompt_cache_breakpoint`` parts after the system prompt (``cache.system``)
    and after each message marked ``cache_breakpoint``."""
    hints = request.cache
    assert hints is not None
    if hints.key:
        params["prompt_cache_key"] = hints.key
    if "prompt_cache_options" not in request.extra:
        return
    marker: dict[str, Any] = {"mode": "explicit"}
    if hints.ttl_seconds is not None:
        marker["ttl"] = "12h" if hints.ttl_seconds >= 43200 else "30m"
    rendered = params["messages"]
    offset = 1 if request.system else 0
    if len(rendered) != offset + len(request.messages):
        return  # not one message per forge message: leave the breakpoints out rather than misplace them
    marked = [i + offset for i, m in enumerate(request.messages) if m.cache_breakpoint]
    if hints.system and offset:
        marked.insert(0, 0)
    for at in marked:
        content = rendered[at].get("content")
        if isinstance(content, str) and content:
            rendered[at] = {**rendered[at], "content": [
                {"type": "text", "text": content, "prompt_cache_breakpoint": marker}]}


# --------------------------------------------------------------------------- response


SSE_MEDIA_TYPES = frozenset({"text/event-stream"})
_CHAT_SHAPE = "a chat.completion JSON object with a 'choices' list"


def _is_chat_completion(data: Mapping[str, Any]) -> bool:
    # The fields forge reads (platform.openai.com/docs/api-reference/chat/object); vLLM,
    # llama.cpp and Ollama's /v1 answer the same shape. An {"error": ...} body is raised below.
    return isinstance(data.get("choices"), list) or bool(data.get("error"))


def _response(data: Mapping[str, Any], model: str) -> Response:
    if data.get("error"):  # some compatible servers answer 200 with an error body
        raise _inband_error(data["error"], model)
    choices = data.get("choices") or []
    choice = choices[0] if choices else {}
    message = choice.get("message") or {}
    content = message.get("content")
    refusal = message.get("refusal")
    finish = _finish(choice.get("finish_reason"))
    if refusal and not content:
        finish = "content_filter"
    calls = tuple(
        _tool_call(
            tc.get("id") or "",
            (tc.get("function") or {}).get("name") or "",
            (tc.get("function") or {}).get("arguments") or "",
            model,
        )
        for tc in message.get("tool_calls") or ()
    )
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    usage = data.get("usage")
    return Response(
        text=content or refusal or "",
        provider="openai",
        model=model,
        finish_reason=finish,
        usage=_usage(usage) if usage else Usage(),
        tool_calls=calls,
        reasoning=reasoning if isinstance(reasoning, str) else None,
        id=data.get("id"),
        raw=data,
    )


def _finish(reason: object) -> FinishReason | None:
    if reason is None:
        return None
    return _FINISH.get(str(reason), "stop")


def _usage(u: Mapping[str, Any]) -> Usage:
    prompt = u.get("prompt_tokens_details") or {}
    completion = u.get("completion_tokens_details") or {}
    return Usage(
        input_tokens=u.get("prompt_tokens") or 0,
        output_tokens=u.get("completion_tokens") or 0,
        cached_input_tokens=prompt.get("cached_tokens") or 0,
        cache_write_tokens=prompt.get("cache_write_tokens") or u.get("cache_write_tokens") or 0,
        reasoning_tokens=completion.get("reasoning_tokens") or 0,
    )


def _tool_call(call_id: str, name: str, raw: str, model: str) -> ToolCall:
    return ToolCall.from_json(call_id, name, raw, provider="openai", model=model)


class _ChatStream:
    """Turns decoded ``chat.completion.chunk`` payloads into forge stream events."""

    __slots__ = ("_base_url", "_calls", "_done", "_finish", "_id", "_model", "_refused", "_text_seen")

    def __init__(self, model: str, base_url: str = "") -> None:
        self._model = model
        self._base_url = base_url
        self._id = ""
        self._finish: FinishReason | None = None
        self._done = False
        self._calls: dict[int, tuple[str, str, list[str]]] = {}
        self._refused = False
        self._text_seen = False

    async def start(self, response: httpx2.Response) -> SSEDecoder:
        await check_stream_reply(
            response, media_types=SSE_MEDIA_TYPES, expected="an SSE stream of chat.completion.chunk",
            provider="openai", model=self._model, base_url=self._base_url,
            in_band=lambda body: _inband_error(body["error"], self._model),
        )
        return SSEDecoder()

    def on_payload(self, sse: SSEEvent) -> list[StreamEvent]:
        return self.on_data(sse.data)

    def on_data(self, data: str) -> list[StreamEvent]:
        if self._done or not data:
            return []  # after [DONE]: drain the rest of the body so the connection is reused
        if data[:6] == "[DONE]":
            self._done = True
            return []
        obj = loads(data)
        error = obj.get("error")
        if error:
            raise _inband_error(error, self._model)
        if not self._id:
            self._id = obj.get("id") or ""
        events: list[StreamEvent] = []
        for choice in obj.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta")
            if delta:
                text = delta.get("content")
                if text:
                    self._text_seen = True
                    events.append(StreamEvent("text", text, raw=obj))
                reasoning = delta.get("reasoning_content") or delta.get("reasoning")
                if reasoning and isinstance(reasoning, str):
                    events.append(StreamEvent("reasoning", reasoning, raw=obj))
                refusal = delta.get("refusal")
                if refusal:
                    self._refused = True
                    events.append(StreamEvent("text", refusal, raw=obj))
                if delta.get("tool_calls"):
                    self._on_tool_calls(delta["tool_calls"], obj, events)
            reason = choice.get("finish_reason")
            if reason:
                self._finish = _finish(reason)
                self._flush_calls(events)
        usage = obj.get("usage")
        if usage:
            events.append(StreamEvent("usage", usage=_usage(usage), raw=obj))
        return events

    def _on_tool_calls(self, deltas: list[dict[str, Any]], obj: object, events: list[StreamEvent]) -> None:
        for tc in deltas:
            index = tc.get("index", 0)
            function = tc.get("function") or {}
            call = self._calls.get(index)
            if call is None:
                call = (tc.get("id") or "", function.get("name") or "", [])
                self._calls[index] = call
                start = ToolCall(call[0], call[1])
                events.append(StreamEvent("tool_call_start", index=index, tool_call=start, raw=obj))
            fragment = function.get("arguments")
            if fragment:
                call[2].append(fragment)
                events.append(StreamEvent("tool_call_delta", fragment, index=index, raw=obj))

    def _flush_calls(self, events: list[StreamEvent]) -> None:
        for index in sorted(self._calls):
            call_id, name, parts = self._calls[index]
            done = _tool_call(call_id, name, "".join(parts), self._model)
            events.append(StreamEvent("tool_call_done", index=index, tool_call=done))
        self._calls.clear()

    def close(self) -> list[StreamEvent]:
        """End of body: the final ``finish`` event, or an error if the stream was cut short."""
        if not self._done and self._finish is None:
            raise ProviderConnectionError(
                "openai stream ended before its finish_reason and [DONE]; the connection was cut",
                provider="openai",
                model=self._model,
            )
        events: list[StreamEvent] = []
        self._flush_calls(events)
        finish = self._finish or "stop"
        if self._refused and not self._text_seen:
            finish = "content_filter"
        events.append(StreamEvent("finish", self._id, finish_reason=finish))
        return events


def _inband_error(error: object, model: str) -> ProviderError:
    body = error if isinstance(error, dict) else {"message": str(error)}
    message = body.get("message") or "error during streaming"
    code = body.get("code") or body.get("type")
    return error_for_status(
        None, f"openai said: {message}", code=str(code) if code else None, provider="openai", model=model
    )


def _api_message(exc: openai.APIError) -> str:
    body = exc.body
    if isinstance(body, dict):
        message = body.get("message")
        if isinstance(message, str) and message:
            return message
    if isinstance(exc, openai.APIStatusError) and body and exc.message == f"Error code: {exc.status_code}":
        # No JSON message in the body (a proxy's HTML page, plain text, another JSON shape): the
        # client keeps only the status; keep the start of the body, it is often the only clue.
        return f"{exc.message} - {body_preview(body if isinstance(body, str) else json.dumps(body))}"
    return exc.message

