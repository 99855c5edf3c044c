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
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import httpx
import ollama

from forge._wire import NDJSONDecoder, loads
from forge.config import ProviderConfig
from forge.errors import (
    BadRequestError,
    ContextLengthError,
    ForgeError,
    ServerError,
)
from forge.providers import _ollama_private as ollama_private
from forge.providers._common import (
    check_stream_reply,
    client_base_url,
    error_for_status,
    headers_dict,
    is_context_length_message,
    json_reply,
    make_httpx_kwargs,
    public_url,
    reply_from_events,
    unbuildable,
    unclassified_error,
)
from forge.providers._stream import classified, sent_stream, stream_cut
from forge.providers.ollama_request import build_ollama_chat_payload as build_ollama_chat_payload
from forge.providers.ollama_request import check_tools_survive
from forge.providers.ollama_request import ollama_chat_args as ollama_chat_args
from forge.types import FinishReason, Request, Response, StreamEvent, ToolCall, Usage

__all__ = ["OllamaProvider"]

_PROVIDER = "ollama"
_CHAT_PATH = "/api/chat"


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
            host=client_base_url(config),  # None: OLLAMA_HOST, then http://127.0.0.1:11434
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
        return reply_from_events(
            events, provider=_PROVIDER, model=request.model, usage=reader.usage, raw=body,
            finish_reason=reader.finish_reason(),
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
        return sent_stream(
            lambda: self._http().send(self._prepare(request, stream=True), stream=True),
            _StreamReader(request.model, self.base_url), lambda exc: self._classify(exc, request.model),
        )

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
            raise unbuildable("an Ollama", _PROVIDER, request, exc) from exc
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
            raise stream_cut("Ollama", "its final done line", provider=_PROVIDER, model=self._model)
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
