"""What every adapter shares: status -> error mapping, header hints, transport errors.

Nothing here imports a vendor client at module level; the HTTP-client builders
import httpx2 / httpx when called, from inside the adapter that needs them.
"""

from __future__ import annotations

import base64
import email.utils
import json
import re
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import SplitResult, unquote, urlsplit, urlunsplit

from forge.errors import (
    AuthenticationError,
    BadRequestError,
    ContextLengthError,
    ForgeError,
    NotFoundError,
    OverloadedError,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeout,
    RateLimitError,
    ServerError,
)
from forge.ratelimit import awaiting_send, request_leaving, response_observer
from forge.types import FinishReason, Response, StreamEvent, Usage

if TYPE_CHECKING:
    import httpx
    import httpx2

    from forge.config import ProviderConfig
    from forge.types import ReasoningEffort, Request

__all__ = [
    "close_vendor_client",
    "client_transport_error",
    "vendor_client_options",
    "client_status_error",
    "mapped_finish",
    "reply_from_events",
    "REASONING_BUDGETS",
    "body_preview",
    "check_stream_reply",
    "client_connection_error",
    "error_for_status",
    "headers_dict",
    "is_context_length_message",
    "json_reply",
    "make_httpx2_client",
    "make_httpx_kwargs",
    "parse_retry_after",
    "public_url",
    "reasoning_budget",
    "reasoning_effort",
    "transport_error",
    "unclassified_error",
    "unexpected_reply",
]

_CONTEXT_PATTERNS = re.compile(
    r"context[_ ]length|context window|maximum context|prompt is too long|too many tokens|"
    r"input token count|exceeds the maximum|model_context_window_exceeded|reduce the length",
    re.IGNORECASE,
)


def is_context_length_message(text: str | None, code: str | None = None) -> bool:
    """Whether a 400-class error body says the input is too long for the model."""
    if code in ("context_length_exceeded", "model_context_window_exceeded", "string_above_max_length"):
        return True
    return bool(text and _CONTEXT_PATTERNS.search(text))


def headers_dict(headers: object) -> dict[str, str]:
    """Lower-cased plain dict of an httpx/httpx2/aiohttp headers object (or a mapping)."""
    if headers is None:
        return {}
    items = headers.items() if hasattr(headers, "items") else []
    return {str(k).lower(): str(v) for k, v in items}


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds the server asked us to wait: ``retry-after-ms``, then ``retry-after`` (secs or HTTP-date)."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            value = float(ms) / 1000.0
            if value >= 0:
                return value
        except ValueError:
            pass
    ra = headers.get("retry-after")
    if not ra:
        return None
    try:
        value = float(ra)
        return value if value >= 0 else None
    except ValueError:
        pass
    try:
        parsed = email.utils.parsedate_to_datetime(ra)
    except (TypeError, ValueError, IndexError):
        return None
    current = time.time() if now is None else now
    return max(0.0, parsed.timestamp() - current)


# The first rule an HTTP status or an (in-band) error code matches names the class; then the rules
# of _error_class. Codes: Anthropic's error types, OpenAI's codes, Google's RPC status names.
_ERROR_RULES: tuple[tuple[frozenset[int], frozenset[str], type[ProviderError]], ...] = (
    (
        frozenset({429}),
        frozenset({"rate_limit_error", "rate_limit_exceeded", "resource_exhausted"}),
        RateLimitError,
    ),
    (frozenset({529, 503}), frozenset({"overloaded_error", "unavailable"}), OverloadedError),
    (
        frozenset({401, 403}),
        frozenset({"authentication_error", "permission_error", "invalid_api_key", "unauthenticated",
                   "permission_denied"}),
        AuthenticationError,
    ),
    (frozenset({404}), frozenset({"not_found_error", "model_not_found", "not_found"}), NotFoundError),
    (frozenset({408}), frozenset(), ProviderTimeout),
)


def _error_class(status: int | None, lowered: str, message: str, code: str | None) -> type[ProviderError]:
    for statuses, codes, cls in _ERROR_RULES:
        if status in statuses or lowered in codes:
            return cls
    if (status is not None and status >= 500) or lowered in ("api_error", "server_error", "internal"):
        return ServerError
    if status in (400, 413, 422) or lowered in ("invalid_request_error", "invalid_argument"):
        if status == 413 or is_context_length_message(message, code):
            return ContextLengthError
        return BadRequestError
    if status == 409:
        return ServerError  # conflicts are transient on every provider that sends them
    return ProviderError


def error_for_status(
    status: int | None,
    message: str,
    *,
    provider: str,
    model: str | None = None,
    code: str | None = None,
    request_id: str | None = None,
    headers: Mapping[str, str] | None = None,
    retry_after: float | None = None,
    base_url: str | None = None,
) -> ProviderError:
    """Map an HTTP status (or an in-band error code) onto the forge error tree."""
    hdrs = dict(headers or {})
    if retry_after is None and hdrs:
        retry_after = parse_retry_after(hdrs)
    kwargs = {
        "provider": provider,
        "model": model,
        "status": status,
        "request_id": request_id or hdrs.get("x-request-id") or hdrs.get("request-id"),
        "retry_after": retry_after,
        "code": code,
        "headers": hdrs,
        "base_url": public_url(base_url) if base_url else None,
    }
    if kwargs["base_url"] and status is not None and status >= 500 and str(kwargs["base_url"]) not in message:
        message = f"{message} (from {kwargs['base_url']})"  # which server failed: a proxy, a gateway...
    cls = _error_class(status, (code or "").lower(), message, code)
    return cls(message, **kwargs)  # type: ignore[arg-type]


_TIMEOUT_NAMES = frozenset(
    {"ReadTimeout", "WriteTimeout", "ConnectTimeout", "PoolTimeout", "TimeoutException", "TimeoutError",
     "ServerTimeoutError"}
)
_CONNECTION_NAMES = frozenset(
    {
        "ConnectError",
        "RemoteProtocolError",
        "ReadError",
        "WriteError",
        "NetworkError",
        "ProtocolError",
        "LocalProtocolError",
        "TransportError",
        "CloseError",
        "ConnectionError",
        "ConnectionResetError",
        "ConnectionRefusedError",
        "BrokenPipeError",
        "IncompleteRead",
        "ClientPayloadError",
        "ClientConnectorError",
        "ClientOSError",
        "ServerDisconnectedError",
        "EndOfStream",
    }
)


def transport_error(
    exc: BaseException, *, provider: str, model: str | None = None, base_url: str | None = None
) -> ForgeError | None:
    """Map a raw transport exception (httpx, httpx2, aiohttp, OSError) to a forge error, else None.

    Vendor clients let these escape from streams unwrapped (see DESIGN.md), so
    every adapter's ``classify`` asks here first.
    """
    where = public_url(base_url) if base_url else None
    at = f" at {where}" if where else ""
    for klass in type(exc).__mro__:
        name = klass.__name__
        if name in _TIMEOUT_NAMES:
            detail = f": {exc}" if str(exc) else ""
            return ProviderTimeout(
                f"{provider} request{at} timed out ({type(exc).__name__}{detail})",
                provider=provider,
                model=model,
                base_url=where,
            )
        if name in _CONNECTION_NAMES:
            return ProviderConnectionError(
                f"Connection to {provider}{at} failed: {type(exc).__name__}: {exc}",
                provider=provider,
                model=model,
                base_url=where,
            )
    return None


def client_connection_error(
    exc: BaseException, *, timed_out: bool, provider: str, model: str | None, base_url: str
) -> ForgeError:
    """The error for an official client's ``APITimeoutError`` / ``APIConnectionError`` (OpenAI,
    Anthropic): which server, and the transport error the client wrapped."""
    cause = exc.__cause__
    detail = f"{type(cause).__name__}: {cause}" if cause is not None else str(exc)
    if timed_out:
        return ProviderTimeout(
            f"{provider} request at {base_url} timed out: {detail}",
            provider=provider, model=model, base_url=base_url,
        )
    return ProviderConnectionError(
        f"Connection to {provider} at {base_url} failed: {detail}",
        provider=provider, model=model, base_url=base_url,
    )


async def _observe_rate_limit_headers(response: httpx2.Response | httpx.Response) -> None:
    # Runs for every HTTP response (success or not) before its body is read, so a
    # limiter can tighten to the provider's own remaining counts (see forge.ratelimit).
    observer = response_observer.get()
    if observer is not None:
        await observer(headers_dict(response.headers))


async def _trace_request_leaving(request: httpx2.Request | httpx.Request) -> None:
    # The limiter counts a call from when its headers are written, not from when it
    # was granted (forge.ratelimit.request_leaving): httpcore's trace extension says when.
    # A call without such a limit skips the trace: httpcore awaits it about ten times a request.
    if not awaiting_send():
        return
    outer = request.extensions.get("trace")

    async def trace(name: str, info: dict[str, object]) -> None:
        if name.endswith("send_request_headers.started"):
            await request_leaving()
        if outer is not None:
            await outer(name, info)

    request.extensions["trace"] = trace


def unclassified_error(
    exc: BaseException,
    *,
    provider: str,
    model: str | None = None,
    label: str | None = None,
    base_url: str | None = None,
) -> ForgeError:
    """The last step of every adapter's ``classify``: a transport error, else a plain
    ProviderError naming the exception (nothing escapes unmapped)."""
    mapped = transport_error(exc, provider=provider, model=model, base_url=base_url)
    if mapped is not None:
        return mapped
    return ProviderError(
        f"{label or provider} call failed: {type(exc).__name__}: {exc}",
        provider=provider,
        model=model,
        base_url=public_url(base_url) if base_url else None,
    )


# ----------------------------------------------------------- replies that are not the provider's API

_PREVIEW_CHARS = 200


def public_url(url: object) -> str:
    """``scheme://host[:port]/path`` of a URL: what an error may show (no credentials, no query)."""
    text = str(url)
    try:
        parts = urlsplit(text)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return text.split("?", 1)[0].rsplit("@", 1)[-1]
    if ":" in host:
        host = f"[{host}]"
    if port is not None:
        host = f"{host}:{port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def body_preview(body: bytes | str) -> str:
    """The first ~200 characters of a body, whitespace collapsed, for an error message."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    text = " ".join(text.split())
    return text if len(text) <= _PREVIEW_CHARS else text[:_PREVIEW_CHARS] + "..."


def unexpected_reply(
    response: httpx2.Response | httpx.Response,
    body: bytes | str,
    *,
    expected: str,
    provider: str,
    model: str | None,
    base_url: str,
) -> ProviderError:
    """The error for a reply that is not the provider's API (a proxy's HTML page, plain
    text, JSON of another shape): what came back, and from where.

    Not retryable: a wrong ``base_url`` or an intercepting proxy will not fix itself.
    A non-2xx status keeps its class (a 502 page stays a retryable ``ServerError``).
    """
    status = response.status_code
    ctype = response.headers.get("content-type") or "no content-type"
    where = public_url(base_url)
    url = public_url(response.request.url)
    preview = body_preview(body)
    message = (
        f"{provider} answered with something that is not its API: expected {expected}, got HTTP "
        f"{status} ({ctype}) from {url}: {preview!r}. Check providers.{provider}.base_url: "
        "it must point at the provider's API (or a server compatible with it), not at a web page or proxy."
    )
    headers = headers_dict(response.headers)
    if status >= 300:
        return error_for_status(
            status, message, provider=provider, model=model, headers=headers, base_url=where
        )
    return ProviderError(
        message,
        provider=provider,
        model=model,
        status=status,
        code="unexpected_response",
        request_id=headers.get("x-request-id") or headers.get("request-id"),
        headers=headers,
        base_url=where,
    )


def json_reply(
    response: httpx2.Response | httpx.Response,
    *,
    valid: Callable[[Mapping[str, Any]], bool],
    expected: str,
    provider: str,
    model: str | None,
    base_url: str,
) -> dict[str, Any]:
    """The decoded JSON object of a non-streamed reply, or :func:`unexpected_reply`'s error
    when the body is not JSON, not an object, or ``valid`` refuses its shape.

    The content type is not checked: servers that answer well-formed JSON under another
    (or no) content type are common, and the shape says more than the header.
    """
    body = response.content
    try:
        data = json.loads(body) if body else None
    except ValueError:
        data = None
    if not isinstance(data, dict) or not valid(data):
        raise unexpected_reply(
            response, body, expected=expected, provider=provider, model=model, base_url=base_url
        )
    return data


_PREVIEW_BYTES = 4096


async def check_stream_reply(
    response: httpx2.Response | httpx.Response,
    *,
    media_types: Collection[str],
    expected: str,
    provider: str,
    model: str | None,
    base_url: str,
    in_band: Callable[[Mapping[str, Any]], ForgeError] | None = None,
) -> None:
    """Raise before decoding when a streamed reply's content type says it is not the stream asked for.

    ``media_types`` are the types the adapter can decode (``text/event-stream``...).
    A reply with no content type at all passes (some servers and recordings send none:
    the decoder will tell). Otherwise the first few KB of the body are read for the
    message; a JSON object with an ``error`` goes to ``in_band`` (a compatible server
    answering a stream request with a plain JSON error).
    """
    ctype = response.headers.get("content-type")
    if not ctype or ctype.split(";", 1)[0].strip().lower() in media_types:
        return
    parts: list[bytes] = []
    size = 0
    chunks = response.aiter_bytes()
    try:
        async for data in chunks:
            parts.append(data)
            size += len(data)
            if size >= _PREVIEW_BYTES:
                break  # enough for the message; the body may never end
    finally:
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()
    body = b"".join(parts)
    if in_band is not None and "json" in ctype:
        try:
            decoded = json.loads(body)
        except ValueError:
            decoded = None
        if isinstance(decoded, dict) and decoded.get("error"):
            raise in_band(decoded)
    raise unexpected_reply(
        response, body, expected=expected, provider=provider, model=model, base_url=base_url
    )


def client_base_url(config: ProviderConfig) -> str | None:
    """The base URL handed to the vendor client: the configured one without its userinfo.

    A proxy's ``user:password@`` in ``base_url`` would otherwise sit in every request
    URL, and both the vendor SDKs (DEBUG) and httpx (INFO: ``HTTP Request: POST
    <url>``) log request URLs. The credentials go into an ``Authorization: Basic``
    header instead (:func:`base_url_auth`), as httpx itself does with a URL's userinfo.
    """
    url = config.resolve_base_url()
    parts = _with_userinfo(url)
    if parts is None:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def _with_userinfo(url: str | None) -> SplitResult | None:
    """``url`` split, when it carries ``user:password@``; None otherwise."""
    if not url:
        return None
    parts = urlsplit(url)
    return parts if "@" in parts.netloc else None


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), port


def base_url_auth(config: ProviderConfig) -> Callable[[Any], Any] | None:
    """An httpx/httpx2 ``auth`` sending the base URL's userinfo as basic auth, to that origin only.

    None when the base URL has no userinfo. Same header httpx builds from a URL's
    userinfo (percent-decoded ``user:password``, base64), so the proxy sees what it
    saw before; a redirect to another host never gets it.
    """
    url = config.resolve_base_url()
    parts = _with_userinfo(url)
    if url is None or parts is None:
        return None
    userinfo = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
    token = base64.b64encode(userinfo.encode()).decode()
    header, origin = f"Basic {token}", _origin(url)

    def auth(request: Any) -> Any:
        if _origin(str(request.url)) == origin:
            request.headers["Authorization"] = header
        return request

    return auth


def make_httpx2_client(
    config: ProviderConfig, *, event_hooks: Mapping[str, list[object]] | None = None
) -> httpx2.AsyncClient:
    """One pooled httpx2 client per provider, with forge's timeouts and limits.

    Every response's headers go to the rate limiter of the call that sent it. A base
    URL's userinfo becomes basic auth for its origin (:func:`base_url_auth`); give the
    vendor client :func:`client_base_url`, which has none.
    """
    import httpx2

    hooks: dict[str, list[object]] = {k: list(v) for k, v in (event_hooks or {}).items()}
    hooks.setdefault("response", []).insert(0, _observe_rate_limit_headers)
    hooks.setdefault("request", []).insert(0, _trace_request_leaving)

    return httpx2.AsyncClient(
        auth=base_url_auth(config),
        timeout=httpx2.Timeout(config.timeout, connect=config.connect_timeout),
        # Every connection the pool may open is kept for reuse. Keeping fewer than it opens
        # makes each burst of concurrent calls reconnect the rest at once: with 1,000 streams
        # and 100 kept, 900 fresh connects per burst, which on a busy event loop overran
        # connect_timeout (ProviderTimeout "could not connect within 5s").
        limits=httpx2.Limits(
            max_connections=config.max_connections,
            max_keepalive_connections=config.max_connections,
        ),
        follow_redirects=True,
        event_hooks=hooks,  # type: ignore[arg-type]
    )


async def close_vendor_client(client: Any, http: httpx2.AsyncClient) -> None:
    """Close an official client, then forge's pooled httpx2 client under it."""
    await client.close()
    await http.aclose()


def vendor_client_options(config: ProviderConfig, http: httpx2.AsyncClient) -> dict[str, Any]:
    """What forge gives an official client (OpenAI, Anthropic): the base URL, forge's timeouts, forge's
    pooled httpx2 client, and no retries of its own (forge's retry policy decides)."""
    import httpx2

    return {
        "base_url": client_base_url(config),  # userinfo goes as basic auth on forge's pooled client
        "timeout": httpx2.Timeout(config.timeout, connect=config.connect_timeout),
        "max_retries": 0,
        "http_client": http,
    }


def make_httpx_kwargs(config: ProviderConfig) -> dict[str, object]:
    """Keyword arguments for a legacy httpx client (Ollama builds its own from these)."""
    import httpx

    limits: httpx.Limits = httpx.Limits(
        max_connections=config.max_connections,
        max_keepalive_connections=config.max_connections,  # all kept, see make_httpx2_client
    )
    return {
        "auth": base_url_auth(config),
        "timeout": httpx.Timeout(config.timeout, connect=config.connect_timeout),
        "limits": limits,
        "event_hooks": {"response": [_observe_rate_limit_headers], "request": [_trace_request_leaving]},
    }


REASONING_BUDGETS: dict[str, int] = {"none": 0, "low": 1024, "medium": 8192, "high": 24576}
"""Thinking tokens per ``reasoning_effort`` for providers that take a budget (Anthropic, Gemini 2.x)."""


def reasoning_budget(request: Request) -> int | None:
    """The request's thinking budget: ``reasoning_budget``, else the tier of ``reasoning_effort``."""
    if request.reasoning_budget is not None:
        return request.reasoning_budget
    if request.reasoning_effort is not None:
        return REASONING_BUDGETS[request.reasoning_effort]
    return None


def reasoning_effort(request: Request) -> ReasoningEffort | None:
    """The request's effort: ``reasoning_effort``, else the tier its ``reasoning_budget`` falls in.

    Budgets map to the nearest tier of :data:`REASONING_BUDGETS`: 0 is ``none``,
    below 4096 ``low``, below 16384 ``medium``, anything larger ``high``.
    """
    if request.reasoning_effort is not None:
        return request.reasoning_effort
    budget = request.reasoning_budget
    if budget is None:
        return None
    if budget == 0:
        return "none"
    return "low" if budget < 4096 else "medium" if budget < 16384 else "high"


_SCHEMA_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")


def check_schema_name(request: Request) -> None:
    """OpenAI refuses a ``json_schema`` response format whose ``name`` is not ``^[a-zA-Z0-9_-]{1,64}$``.

    (platform.openai.com API reference, ``response_format.json_schema.name``.) Checked
    before sending, for Chat Completions and the Responses API alike.

    Raises:
        BadRequestError: the name does not match.
    """
    fmt = request.response_format
    if fmt is None or fmt.type != "json_schema" or _SCHEMA_NAME.fullmatch(fmt.name):
        return
    raise BadRequestError(
        f"openai needs a json_schema name of 1-64 letters, digits, '_' or '-'; got {fmt.name!r}. "
        "Set ResponseFormat(name=...) to such a name.",
        provider="openai",
        model=request.model,
    )


def mapped_finish(table: Mapping[str, FinishReason], reason: object) -> FinishReason | None:
    """A vendor's finish reason through its ``table``; one the table lacks is a plain ``stop``."""
    if reason is None:
        return None
    return table.get(str(reason), "stop")


def client_transport_error(
    exc: BaseException, *, connection: type[BaseException], timeout: type[BaseException], provider: str,
    model: str | None, base_url: str,
) -> ForgeError:
    """An official client's ``connection`` error (``timeout``: the timed-out kind), else an
    exception nothing has classified: what is left once the client's status errors are mapped."""
    if isinstance(exc, connection):
        return client_connection_error(
            exc, timed_out=isinstance(exc, timeout), provider=provider, model=model, base_url=base_url
        )
    return unclassified_error(exc, provider=provider, model=model, base_url=base_url)


def client_status_error(
    exc: Any, status: int | None, message: str, code: str | None, *, provider: str, model: str | None,
    base_url: str | None,
) -> ProviderError:
    """An official client's ``APIStatusError`` (openai and anthropic name the same attributes)."""
    return error_for_status(
        status, message, code=code, request_id=exc.request_id, headers=headers_dict(exc.response.headers),
        provider=provider, model=model, base_url=base_url,
    )


def reply_from_events(
    events: Sequence[StreamEvent], *, provider: str, model: str, usage: Usage | None, raw: object,
    **fields: Any,
) -> Response:
    """A whole reply from the events a stream decoder made of its body (Gemini, Ollama, Gemini batch items):
    the text, the finished tool calls and the reasoning text, plus ``fields`` as given."""
    return Response(
        text="".join(ev.text for ev in events if ev.kind == "text"),
        provider=provider,
        model=model,
        usage=usage or Usage(),
        tool_calls=tuple(ev.tool_call for ev in events if ev.kind == "tool_call_done" and ev.tool_call),
        reasoning="".join(ev.text for ev in events if ev.kind == "reasoning") or None,
        raw=raw,
        **fields,
    )


def unbuildable(vendor: str, provider: str, request: Request, exc: Exception) -> BadRequestError:
    """The error for a request the vendor's own converters refuse (before anything is sent);
    raise it ``from exc``."""
    return BadRequestError(
        f"Cannot build {vendor} request for {request.model!r}: {exc}", provider=provider, model=request.model
    )
