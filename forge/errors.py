"""The forge error tree.

Every error forge raises is a :class:`ForgeError`. The tree is shallow and says
what a caller can do about it:

- :class:`ConfigError`: fix the configuration (file, key, model name, credentials).
- :class:`ProviderError`: the provider answered with an error. Its subclasses
  are either retryable (:class:`RateLimitError`, :class:`OverloadedError`,
  :class:`ServerError`, :class:`ProviderTimeout`, :class:`ProviderConnectionError`)
  or not (:class:`AuthenticationError`, :class:`BadRequestError`,
  :class:`ContextLengthError`, :class:`NotFoundError`, :class:`ToolCallError`).
- :class:`StreamTimeout` and :class:`StreamInterrupted`: a stream broke; both keep
  the partial text and usage received so far.

When retries run out, the caller gets the last error's own class (a 429 stays a
:class:`RateLimitError` whatever ``max_attempts`` was); every error that came out
of the retry loop carries its history in ``attempts`` (one :class:`RetryAttempt`
per request sent) and ``attempt_count``. (``RetryExhausted`` was removed in 0.x;
catch the error class you care about instead.)

The vendor exception, when there is one, is kept as ``__cause__``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from forge.types import Usage

__all__ = [
    "AuthenticationError",
    "BadRequestError",
    "BatchError",
    "ConfigError",
    "ContextLengthError",
    "ForgeError",
    "NotFoundError",
    "OverloadedError",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderTimeout",
    "RateLimitError",
    "RetryAttempt",
    "ServerError",
    "StreamError",
    "StreamInterrupted",
    "StreamTimeout",
    "ToolCallError",
]


class ForgeError(Exception):
    """Root of every error forge raises.

    Attributes:
        attempts: when the error ended a call that went through forge's retry loop,
            one :class:`RetryAttempt` per request sent (this error's own attempt last);
            empty for an error raised before any request (bad config, bad parameters).
    """

    retryable: bool = False
    attempts: tuple[RetryAttempt, ...] = ()

    @property
    def attempt_count(self) -> int:
        """How many requests the failed call sent (0 when it sent none)."""
        return len(self.attempts)


class ConfigError(ForgeError, ValueError):
    """Invalid configuration, unknown provider or model, or missing credentials.

    The message names the file or key, the value, and what is allowed.
    """

    def __init__(self, message: str, *, key: str | None = None, source: str | None = None) -> None:
        super().__init__(message)
        self.key = key
        self.source = source


class ProviderError(ForgeError):
    """The provider (or the transport to it) failed a call.

    Attributes:
        provider: forge provider name (``openai``, ``anthropic``, ``google``, ``ollama``).
        status: HTTP status code, when there was one.
        request_id: the provider's request id, when it sent one.
        retry_after: seconds the server asked us to wait, when it said so.
        code: the provider's error code or type (``rate_limit_exceeded``, ``overloaded_error``...).
        headers: response headers (lower-cased names), when there were any.
        base_url: where the failed call went (scheme, host, port and path; never
            credentials or a query string), when the adapter knows it.
    """

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        model: str | None = None,
        status: int | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        base_url: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.model = model
        self.status = status
        self.request_id = request_id
        self.retry_after = retry_after
        self.code = code
        self.headers: dict[str, str] = headers or {}
        self.base_url = base_url

    def __str__(self) -> str:
        parts = [self.message]
        details = []
        if self.provider:
            details.append(f"provider={self.provider}")
        if self.model:
            details.append(f"model={self.model}")
        if self.status is not None:
            details.append(f"status={self.status}")
        if self.code:
            details.append(f"code={self.code}")
        if self.request_id:
            details.append(f"request_id={self.request_id}")
        if self.retry_after is not None:
            details.append(f"retry_after={self.retry_after:g}s")
        if details:
            parts.append(f"({', '.join(details)})")
        return " ".join(parts)


class RateLimitError(ProviderError):
    """HTTP 429 or the provider's quota error: slow down; ``retry_after`` says how long."""

    retryable = True


class OverloadedError(ProviderError):
    """The provider is overloaded (Anthropic 529, HTTP 503 UNAVAILABLE): retry later."""

    retryable = True


class ServerError(ProviderError):
    """The provider failed internally (HTTP 5xx): retry."""

    retryable = True


class ProviderTimeout(ProviderError):
    """The request timed out before the provider answered: retry, or raise the timeout.

    When forge's own time limit for the whole call ran out (not the transport's),
    ``limit_s`` is that limit, ``limit_source`` where it came from (``"timeout"``:
    the call's argument; otherwise the config key, e.g. ``providers.openai.deadline``)
    and ``attempts_made`` how many attempts started, so a caller (the ``forge``
    command) can word the advice in its own terms.
    """

    retryable = True
    limit_s: float | None = None
    limit_source: str | None = None
    attempts_made: int = 0


class ProviderConnectionError(ProviderError):
    """The connection failed or dropped before an answer: retry, or check ``base_url``."""

    retryable = True


class AuthenticationError(ProviderError):
    """The credentials were refused (HTTP 401/403): fix the API key; retrying will not help."""


class BadRequestError(ProviderError):
    """The provider rejected the request as malformed (HTTP 400/422): fix the request."""


class ContextLengthError(BadRequestError):
    """The prompt plus ``max_tokens`` exceed the model's context window: shorten the input."""


class NotFoundError(ProviderError):
    """Unknown model or resource (HTTP 404): check the model name."""


class ToolCallError(ProviderError):
    """The model called a tool with arguments that are not a JSON object.

    Not retryable by default (the same prompt may well produce the same
    arguments); a caller may retry or answer the model with the error.

    Attributes:
        raw_arguments: the arguments exactly as the model sent them.
        tool_name: the tool the model called.
        tool_call_id: the call's id.
    """

    def __init__(
        self,
        message: str,
        *,
        raw_arguments: str,
        tool_name: str = "",
        tool_call_id: str = "",
        provider: str = "",
        model: str | None = None,
    ) -> None:
        super().__init__(message, provider=provider, model=model)
        self.raw_arguments = raw_arguments
        self.tool_name = tool_name
        self.tool_call_id = tool_call_id


class StreamError(ForgeError):
    """A stream broke after it started; keeps what was received so far."""

    def __init__(
        self,
        message: str,
        *,
        partial_text: str = "",
        usage: Usage | None = None,
        provider: str = "",
        model: str | None = None,
        chunks: int = 0,
    ) -> None:
        super().__init__(message)
        self.partial_text = partial_text
        self.usage = usage
        self.provider = provider
        self.model = model
        self.chunks = chunks


class StreamTimeout(StreamError):
    """A stream exceeded its first-token, idle or total timeout."""

    def __init__(
        self,
        message: str,
        *,
        timeout_kind: str = "total",
        partial_text: str = "",
        usage: Usage | None = None,
        provider: str = "",
        model: str | None = None,
        chunks: int = 0,
        limit_s: float | None = None,
    ) -> None:
        super().__init__(
            message, partial_text=partial_text, usage=usage, provider=provider, model=model, chunks=chunks
        )
        self.timeout_kind = timeout_kind
        self.limit_s = limit_s


class StreamInterrupted(StreamError):
    """The connection or the provider broke a stream after its first chunk reached the caller.

    ``partial_text`` and ``usage`` hold what arrived before the break; the
    provider error that caused it is ``__cause__`` (and ``error``).
    """

    def __init__(
        self,
        message: str,
        *,
        error: ForgeError | None = None,
        partial_text: str = "",
        usage: Usage | None = None,
        provider: str = "",
        model: str | None = None,
        chunks: int = 0,
    ) -> None:
        super().__init__(
            message, partial_text=partial_text, usage=usage, provider=provider, model=model, chunks=chunks
        )
        self.error = error


@dataclass(frozen=True, slots=True)
class RetryAttempt:
    """One request of a call that failed: its number (1-based), its error, and the wait
    that followed it in seconds (0 for the last one)."""

    attempt: int
    error: ForgeError
    wait: float

    def __repr__(self) -> str:
        return f"RetryAttempt(attempt={self.attempt}, error={self.error!r}, wait={self.wait:g})"


def __getattr__(name: str) -> object:
    if name == "RetryExhausted":
        raise AttributeError(
            "forge.RetryExhausted was removed: when retries run out forge raises the last error's own "
            "class (e.g. RateLimitError), with the history in error.attempts and error.attempt_count. "
            "Catch forge.ProviderError (or the specific class) instead."
        )
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class BatchError(ProviderError):
    """A batch job or one of its items ended without a reply.

    ``code`` says why: ``cancelled`` / ``expired`` (the provider batch ended
    before the item ran), ``batch_failed`` (the provider rejected the whole
    batch; ``message`` has its reason), ``missing_result`` (the provider
    returned no result for the item), ``unknown_job`` (no such job in the
    job store), ``ambiguous`` (a job's submission could not be matched to
    one provider batch; see docs/batch.md). ``job_id`` names the job.
    """

    def __init__(self, message: str, *, code: str, job_id: str | None = None, provider: str = "",
                 model: str | None = None) -> None:
        super().__init__(message, provider=provider, model=model, code=code)
        self.job_id = job_id
