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

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx2
import openai

from forge.config import ProviderConfig
from forge.errors import (
    ConfigError,
    ForgeError,
)
from forge.providers import openai_responses
from forge.providers._common import (
    client_status_error,
    client_transport_error,
    close_vendor_client,
    error_for_status,
    json_reply,
    make_httpx2_client,
    public_url,
    vendor_client_options,
)
from forge.providers._mapping import sent_as_is
from forge.providers._stream import classified, client_stream
from forge.providers.openai_reply import (
    _CHAT_SHAPE,
    _api_message,
    _ChatStream,
    _is_chat_completion,
    _response,
)
from forge.providers.openai_request import (
    _is_openai,
    _max_tokens_param,
    _params,
)
from forge.types import Request, Response, StreamEvent

__all__ = ["OpenAIProvider"]

_REQUIRED = ("messages", "model")  # chat.completions.create's required arguments


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
            **vendor_client_options(config, self._http),
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
            **sent_as_is(_params(request, self._max_tokens_param, self._max_stop), required=_REQUIRED,
                       omitted=openai.NOT_GIVEN)
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
            return openai_responses.stream(self._client, request, self._classifier(request.model))

        def open_vendor() -> Any:
            params = _params(request, self._max_tokens_param, self._max_stop)
            params["stream"] = True
            params["stream_options"] = {"include_usage": True}
            return self._client.chat.completions.with_streaming_response.create(
                **sent_as_is(params, required=_REQUIRED, omitted=openai.NOT_GIVEN)
            )

        return client_stream(open_vendor, _ChatStream(request.model, self.base_url),
                             self._classifier(request.model))

    def _classifier(self, model: str) -> Callable[[BaseException], ForgeError]:
        return lambda exc: self.classify(exc, model=model)

    def classify(self, exc: BaseException, *, model: str | None = None) -> ForgeError:
        """Map an ``openai`` or transport exception onto the forge error tree."""
        if isinstance(exc, ForgeError):
            return exc
        if isinstance(exc, openai.APIStatusError):
            return client_status_error(
                exc, exc.status_code, f"openai said: {_api_message(exc)}", exc.code or exc.type,
                provider=self.name, model=model, base_url=self.base_url,
            )
        if isinstance(exc, openai.APIError) and not isinstance(exc, openai.APIConnectionError):
            # in-band stream error from the typed path: no status
            return error_for_status(
                None, f"openai said: {_api_message(exc)}", code=exc.code or exc.type,
                provider=self.name, model=model,
            )
        return client_transport_error(
            exc, connection=openai.APIConnectionError, timeout=openai.APITimeoutError,
            provider=self.name, model=model, base_url=self.base_url,
        )

    async def aclose(self) -> None:
        """Close the OpenAI client and its connection pool."""
        await close_vendor_client(self._client, self._http)


