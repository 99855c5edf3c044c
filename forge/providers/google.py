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

from collections.abc import AsyncIterator
from typing import Any

import httpx2
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as gt

from forge.config import ProviderConfig
from forge.errors import (
    ForgeError,
)
from forge.providers._common import (
    client_base_url,
    json_reply,
    make_httpx2_client,
    public_url,
    unbuildable,
    unclassified_error,
)
from forge.providers._stream import classified, sent_stream
from forge.providers.google_reply import (
    _RESPONSE_SHAPE,
    _api_error,
    _ChunkReader,
    _is_generate_content,
    _raise_in_band,
    _StreamReader,
)
from forge.providers.google_request import build_gemini_http_request as build_gemini_http_request
from forge.providers.google_request import gemini_call_args as gemini_call_args
from forge.types import (
    Request,
    Response,
    StreamEvent,
)

__all__ = ["GoogleProvider"]

_DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com/"
_PROVIDER = "google"



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
                base_url=client_base_url(config) or _DEFAULT_BASE_URL,
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
        return reader.response(events, request.model, body)

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
        return sent_stream(
            lambda: self._http.send(self._prepare(request, stream=True), stream=True),
            _StreamReader(request.model, self.base_url), lambda exc: self._classify(exc, request.model),
        )

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
            raise unbuildable("a Gemini", _PROVIDER, request, exc) from exc
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


