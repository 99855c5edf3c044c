"""Anthropic adapter: the Messages API through the official ``anthropic`` async client.

The client builds, authenticates and sends the request and turns a non-2xx
answer into its typed error; forge reads the body itself. Non-streaming calls
use ``with_raw_response`` and one ``json.loads``; streams use
``with_streaming_response`` and forge's incremental :class:`~forge._wire.SSEDecoder`
(one JSON decode per event, no pydantic).

Request mapping (see docs/providers.md for the full table):

- ``system`` plus any ``system`` messages become the ``system`` string.
- ``max_tokens`` is required by Anthropic: 4096 when the request has none.
- ``stop`` -> ``stop_sequences``; ``seed`` has no Anthropic counterpart and is
  not sent (it is a best-effort knob everywhere).
- ``response_format`` json_schema -> ``output_config.format`` json_schema, with
  ``additionalProperties: false`` added to object schemas that do not say (the API
  requires it). Plain ``json`` has no schema to give, and structured outputs
  refuse an open ``{"type": "object"}``, so it becomes a system instruction.
  (plain json uses the schema ``{"type": "object"}``).
- ``tool`` messages become ``tool_result`` blocks; consecutive ones share one user turn.
- ``temperature`` / ``top_p`` go into the JSON body directly: the installed
  client no longer has keywords for them, the API still accepts them.
- ``extra`` is merged into the JSON body (``extra_body``) and wins over the
  fields forge sets, e.g. ``thinking``, ``cache_control``, ``metadata``.
- The timeout is always passed per call, so the client's "streaming is
  required for large max_tokens" guard never fires: forge's configured
  timeout is the one that applies.

- ``reasoning_budget`` (or the tier of ``reasoning_effort``, see
  ``REASONING_BUDGETS``) -> ``thinking={"type": "enabled", "budget_tokens": N}``
  (0 -> ``{"type": "disabled"}``); without ``max_tokens`` the budget is added
  to the default, since thinking counts toward it.

Reasoning: every ``thinking`` block (text and signature) and every
``redacted_thinking`` block (opaque ``data``, never shown as text) becomes a
:class:`~forge.types.ReasoningBlock` with its index among the content blocks,
in order, on ``Response.reasoning_blocks``; a stream reports thinking deltas and
``signature_delta`` as ``reasoning`` events (``index`` = the block) and each
finished block as a ``reasoning_done`` event. An assistant turn sends its
Anthropic blocks back unchanged in the same place (the API checks every
signature, and requires the thinking of an assistant turn that ended in
``tool_use`` when thinking is on); blocks from other providers are dropped.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import anthropic
import httpx2

from forge.config import ProviderConfig
from forge.errors import ForgeError
from forge.providers._common import (
    client_status_error,
    client_transport_error,
    close_vendor_client,
    json_reply,
    make_httpx2_client,
    public_url,
    vendor_client_options,
)
from forge.providers._stream import classified, client_stream
from forge.providers.anthropic_reply import (
    _MESSAGE_SHAPE,
    _is_message,
    _MessageStream,
    _response,
)
from forge.providers.anthropic_request import (
    DEFAULT_MAX_TOKENS,
    MIN_THINKING_BUDGET,
    _params,
)
from forge.providers.anthropic_request import _closed as _closed  # tests check it here
from forge.types import (
    Request,
    Response,
    StreamEvent,
)

__all__ = ["DEFAULT_MAX_TOKENS", "MIN_THINKING_BUDGET", "AnthropicProvider"]


class AnthropicProvider:
    """:class:`~forge.types.Provider` for the Anthropic Messages API.

    Args:
        config: the ``anthropic`` provider section (key, base_url, timeouts).
        http_client: an ``httpx2.AsyncClient`` to use instead of forge's pooled
            one (tests inject one with a ``MockTransport``); the provider owns
            and closes it.

    Raises:
        ConfigError: no API key.
    """

    name = "anthropic"

    def __init__(self, config: ProviderConfig, *, http_client: httpx2.AsyncClient | None = None) -> None:
        self._timeout = httpx2.Timeout(config.timeout, connect=config.connect_timeout)
        api_key = config.require_api_key()  # always explicit: never fall back to profiles on disk
        self._http = http_client if http_client is not None else make_httpx2_client(config)
        self._client = anthropic.AsyncAnthropic(api_key=api_key, **vendor_client_options(config, self._http))
        self.base_url = public_url(self._client.base_url)

    async def complete(self, request: Request) -> Response:
        """Send ``request`` to the Messages API and return the whole reply.

        Raises:
            ProviderError: the call failed (already classified, see :meth:`classify`).
        """
        return await classified(self._complete(request), self._classifier(request.model))

    async def _complete(self, request: Request) -> Response:
        raw = await self._client.messages.with_raw_response.create(**_params(request), timeout=self._timeout)
        data = json_reply(
            raw.http_response, valid=_is_message, expected=_MESSAGE_SHAPE,
            provider=self.name, model=request.model, base_url=self.base_url,
        )
        return _response(data, request.model)

    def stream(self, request: Request) -> AsyncIterator[StreamEvent]:
        """Stream ``request``: text / reasoning / tool-call / usage events, then exactly one ``finish``.

        The request goes out on the first ``__anext__``; ``aclose()`` closes the HTTP
        response, from any task. Errors are raised already classified.
        """
        def open_vendor() -> Any:
            params = _params(request)
            params["stream"] = True
            return self._client.messages.with_streaming_response.create(**params)

        return client_stream(open_vendor, _MessageStream(request.model, self.base_url),
                             self._classifier(request.model))

    def _classifier(self, model: str) -> Callable[[BaseException], ForgeError]:
        return lambda exc: self.classify(exc, model=model)

    def max_tokens_sent(self, request: Request) -> int | None:
        """The ``max_tokens`` sent for ``request`` (a default when unset): what the limiter reserves."""
        return int(_params(request)["max_tokens"])

    def classify(self, exc: BaseException, *, model: str | None = None) -> ForgeError:
        """Map an ``anthropic`` or transport exception onto the forge error tree.

        An in-band stream error arrives as an ``APIStatusError`` with status 200;
        it is classified by its error type (``overloaded_error`` -> OverloadedError).
        """
        if isinstance(exc, ForgeError):
            return exc
        if isinstance(exc, anthropic.APIStatusError):
            status = exc.status_code if exc.status_code >= 400 else None
            return client_status_error(
                exc, status, f"anthropic said: {exc.api_message or exc.message}", exc.type,
                provider=self.name, model=model, base_url=self.base_url,
            )
        return client_transport_error(
            exc, connection=anthropic.APIConnectionError, timeout=anthropic.APITimeoutError,
            provider=self.name, model=model, base_url=self.base_url,
        )

    async def aclose(self) -> None:
        """Close the Anthropic client and its connection pool."""
        await close_vendor_client(self._client, self._http)


