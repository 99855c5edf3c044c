"""Fallback chains: when a model fails the way an outage fails, the next one answers.

A chain is a primary model and an ordered list of fallbacks, configured per
alias or ``provider:model`` (``[fallbacks]`` in the config) or given per call::

    reply = await reg.invoke(
        "openai:gpt-4o-mini", "Say hi",
        fallbacks=["anthropic:claude-haiku-4-5", "ollama:llama3.2"],
    )
    print(reply.provider, reply.model, reply.fallback_attempts)

Each link is an ordinary :class:`~forge.LLM` with its own retry policy, rate
limiter and circuit breaker (:mod:`forge.breaker`): retries happen inside a
link; what is left after them decides whether the chain moves on. By default
overloaded, rate limited (past ``max_wait``), 5xx, timeouts, connection errors
and replies that are not the provider's API fall through; a context-length
error falls through only to links marked ``larger_context``; authentication,
bad requests and content-policy refusals never do. Streams fall back only while
nothing has reached the caller (the same window as retries).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from forge._params import request_params
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
    ToolCallError,
)
from forge.streaming import Stream
from forge.types import FallbackAttempt

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from forge.breaker import CircuitBreaker
    from forge.llm import LLM, Prompt
    from forge.metrics import Metrics
    from forge.streaming import ChunkCallback, ProgressCallback
    from forge.types import Request, Response, StreamEvent

__all__ = [
    "DEFAULT_FALL_THROUGH",
    "FALL_THROUGH_CATEGORIES",
    "Fallback",
    "FallbackChain",
    "FallbackLLM",
    "error_kind",
    "fallback_attempts",
]

FALL_THROUGH_CATEGORIES = (
    "overloaded",
    "rate_limited",
    "server_error",
    "timeout",
    "connection",
    "invalid_reply",
    "context_length",
    "not_found",
    "authentication",
    "bad_request",
    "content_policy",
)


class _Kinds(frozenset[str]):
    """A frozenset whose repr is sorted (stable across runs, e.g. in the API reference)."""

    def __repr__(self) -> str:
        return f"frozenset({{{', '.join(map(repr, sorted(self)))}}})"


DEFAULT_FALL_THROUGH: frozenset[str] = _Kinds(
    {"overloaded", "rate_limited", "server_error", "timeout", "connection", "invalid_reply", "context_length"}
)
# What counts against a link's circuit breaker: the ways an unhealthy provider fails.
# A bad request or a refused key says nothing about the provider's health.
_OUTAGE_KINDS = frozenset(
    {"overloaded", "rate_limited", "server_error", "timeout", "connection", "invalid_reply"}
)


@dataclass(frozen=True, slots=True)
class Fallback:
    """One fallback link: a ``provider:model`` reference or alias.

    ``larger_context``: this model takes a longer prompt than the ones before it,
    so a :class:`~forge.ContextLengthError` falls through to it (and only to such links).
    """

    model: str
    larger_context: bool = False


@dataclass(frozen=True, slots=True)
class FallbackChain:
    """The fallbacks of one model and the rules for moving on to them.

    Args:
        links: the fallbacks, in order (the primary is the model being called).
        fall_through: error kinds that move on to the next link (see
            :data:`FALL_THROUGH_CATEGORIES`; default :data:`DEFAULT_FALL_THROUGH`).
        max_limiter_wait: skip a link (except the last one) whose rate limiter
            would hold the call back longer than this many seconds; None: wait.
    """

    links: tuple[Fallback, ...]
    fall_through: frozenset[str] = DEFAULT_FALL_THROUGH
    max_limiter_wait: float | None = None

    @classmethod
    def of(cls, value: FallbackChain | Sequence[str | Fallback]) -> FallbackChain:
        """A chain from a list of references / :class:`Fallback` values, or a chain as is.

        Raises:
            TypeError / ValueError: not a list of model references, or an unknown error kind.
        """
        if isinstance(value, FallbackChain):
            unknown = sorted(value.fall_through - set(FALL_THROUGH_CATEGORIES))
            if unknown:
                raise ValueError(
                    f"Unknown fall_through kind(s) {', '.join(map(repr, unknown))}; allowed: "
                    f"{', '.join(FALL_THROUGH_CATEGORIES)}."
                )
            return value
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            raise TypeError(
                "fallbacks must be a list of 'provider:model' references (or forge.Fallback values), "
                f"e.g. ['anthropic:claude-haiku-4-5']; got {value!r}."
            )
        links: list[Fallback] = []
        for i, item in enumerate(value):
            if isinstance(item, Fallback):
                links.append(item)
            elif isinstance(item, str) and item.strip():
                links.append(Fallback(item.strip()))
            else:
                raise TypeError(
                    f"fallbacks[{i}] must be a 'provider:model' string or a forge.Fallback; got {item!r}."
                )
        return cls(tuple(links))


def _attempts_made(error: BaseException) -> int:
    """Requests a failed call sent: its retry history when it carries one, else 1."""
    return error.attempt_count or 1 if isinstance(error, ForgeError) else 1


def error_kind(error: BaseException) -> str | None:
    """The fall-through kind of a failed call (one of :data:`FALL_THROUGH_CATEGORIES`), or None.

    Works on the error a call raised, retried or not (exhausted retries raise the last
    error's own class); None for errors that never fall through (tool-call arguments, bugs).
    """
    err = error
    if isinstance(err, ToolCallError) or not isinstance(err, ProviderError):
        return None
    for cls, kind in (
        (ContextLengthError, "context_length"),
        (RateLimitError, "rate_limited"),
        (OverloadedError, "overloaded"),
        (ServerError, "server_error"),
        (ProviderTimeout, "timeout"),
        (ProviderConnectionError, "connection"),
        (AuthenticationError, "authentication"),
        (NotFoundError, "not_found"),
    ):
        if isinstance(err, cls):
            return kind
    if isinstance(err, BadRequestError):
        code = (err.code or "").lower()
        if any(word in code for word in ("content", "policy", "safety")):
            return "content_policy"
        return "bad_request"
    status = err.status
    if status is None or status < 400:
        return "invalid_reply"  # a reply that is not the provider's API (HTML from a proxy...)
    if status == 429:
        return "rate_limited"
    return "server_error" if status >= 500 else "bad_request"


def fallback_attempts(error: BaseException) -> tuple[FallbackAttempt, ...]:
    """The links a chain tried before raising ``error`` (empty for errors from a single model)."""
    attempts = getattr(error, "fallback_attempts", ())
    return attempts if isinstance(attempts, tuple) else ()


def _probe_operation(llm: LLM, probe: bool) -> str:
    """A probe is one request: retrying it would only prolong the outage's cost."""
    if not probe:
        return "invoke"
    wrapper = llm.wrapper
    if "probe" not in wrapper.overrides:
        wrapper.overrides["probe"] = dataclasses.replace(wrapper.policy_for("invoke"), max_attempts=1)
    return "probe"


@dataclass(slots=True)
class _Link:
    llm: LLM
    spec: Fallback
    breaker: CircuitBreaker | None


class _Run:
    """One call through a chain: which links were tried, and what to do after each failure."""

    def __init__(self, chain: FallbackLLM) -> None:
        self.chain = chain
        self.tried: list[FallbackAttempt] = []
        self.last_error: ForgeError | None = None
        self.context_exceeded = False
        self.retry_in: float | None = None

    async def admit(self, i: int, estimate: float) -> tuple[bool, bool]:
        """``(go, probe)``: whether link ``i`` is called, and whether as its breaker's probe."""
        link = self.chain.links[i]
        if i > 0 and self.context_exceeded and not link.spec.larger_context:
            self._skip(i, "context_length", "")
            return False, False
        admission = "allow" if link.breaker is None else await link.breaker.admit()
        if admission == "reject":
            assert link.breaker is not None
            wait = link.breaker.retry_in
            self.retry_in = wait if self.retry_in is None else min(self.retry_in, wait)
            self._skip(i, "breaker_open", "CircuitOpen")
            return False, False
        bound = self.chain.chain.max_limiter_wait
        limiter = link.llm.limiter
        if (
            bound is not None and limiter is not None and limiter.enabled and not self.is_last(i)
            and await limiter.wait_time(estimate) > bound
        ):
            if link.breaker is not None:
                await link.breaker.release(probe=admission == "probe")
            self._skip(i, "limiter_wait", "")
            return False, False
        return True, admission == "probe"

    def is_last(self, i: int) -> bool:
        return i == len(self.chain.links) - 1

    def _skip(self, i: int, reason: str, error: str) -> None:
        self.tried.append(FallbackAttempt(self.chain.links[i].llm.ref, error, 0.0, 0, skipped=reason))
        self._moved(i, error or reason, 0.0, reason)

    def _moved(self, i: int, error: str, elapsed: float, reason: str) -> None:
        metrics = self.chain.metrics
        if metrics is not None and not self.is_last(i):
            metrics.record_fallback(
                self.chain.links[i].llm.ref, self.chain.links[i + 1].llm.ref, error, elapsed, reason=reason
            )

    async def failed(self, i: int, exc: BaseException, elapsed: float, probe: bool) -> ForgeError:
        """Record link ``i``'s failure; return it as a ForgeError (ready to raise if it stops the chain)."""
        link = self.chain.links[i]
        error = exc if isinstance(exc, ForgeError) else link.llm.classify(exc)
        kind = error_kind(error)
        decisive = error
        if link.breaker is not None:
            if kind in _OUTAGE_KINDS:
                retry_after = decisive.retry_after if isinstance(decisive, ProviderError) else None
                await link.breaker.failure(
                    attempts=_attempts_made(error), retry_after=retry_after, probe=probe,
                    error=type(decisive).__name__,
                )
            else:
                await link.breaker.release(probe=probe)
        self.tried.append(
            FallbackAttempt(link.llm.ref, type(decisive).__name__, elapsed, _attempts_made(error))
        )
        self.last_error = error
        if kind is None or kind not in self.chain.chain.fall_through:
            return self.finish(error)
        if kind == "context_length":
            self.context_exceeded = True
        self._moved(i, type(decisive).__name__, elapsed, "error")
        return error

    def falls_through(self, error: ForgeError) -> bool:
        kind = error_kind(error)
        return kind is not None and kind in self.chain.chain.fall_through

    def finish(self, error: ForgeError) -> ForgeError:
        error.fallback_attempts = tuple(self.tried)  # type: ignore[attr-defined]
        return error

    def exhausted(self) -> ForgeError:
        """The error once no link answered: the last real failure, else CircuitOpen."""
        if self.last_error is not None:
            return self.finish(self.last_error)
        from forge.breaker import CircuitOpen

        first = self.chain.links[0].llm
        skipped = ", ".join(f"{a.model} ({a.skipped})" for a in self.tried)
        return self.finish(CircuitOpen(
            f"No link of the fallback chain was called: {skipped}. Retry after the breaker's cooldown, "
            "or add a fallback on another provider.",
            provider=first.provider_name, model=first.model, retry_after=self.retry_in,
        ))


class FallbackLLM:
    """A primary :class:`~forge.LLM` and its fallbacks; get one from :meth:`forge.Registry.fallback_llm`.

    ``invoke`` and ``stream`` take the same arguments as the LLM's and return the
    same Response / Stream, whoever answers; ``response.fallback_attempts`` lists
    the links tried before it.
    """

    def __init__(
        self,
        links: Sequence[tuple[LLM, Fallback, CircuitBreaker | None]],
        chain: FallbackChain,
        *,
        clock: Callable[[], float],
        metrics: Metrics | None = None,
    ) -> None:
        if len(links) < 2:
            raise ValueError("a fallback chain needs a primary and at least one fallback.")
        self.links = [_Link(llm, spec, breaker) for llm, spec, breaker in links]
        self.chain = chain
        self.metrics = metrics
        self._clock = clock

    @property
    def refs(self) -> list[str]:
        """``provider:model`` of every link, primary first."""
        return [link.llm.ref for link in self.links]

    def __repr__(self) -> str:
        return f"FallbackLLM({' -> '.join(self.refs)})"

    def requests(self, prompt: Prompt, params: Mapping[str, Any]) -> list[Request]:
        """Each link's request, all built (and validated) before anything is sent."""
        sent = request_params(params)  # call options (timeout, max_attempts) are not request fields
        return [link.llm.request(prompt, **sent) for link in self.links]

    async def invoke(self, prompt: Prompt, **params: Any) -> Response:
        """Send ``prompt`` to the first link that answers; raise the last failure otherwise.

        Raises:
            the first error that does not fall through, else the last link's error
            (each with ``fallback_attempts``), or :class:`~forge.breaker.CircuitOpen`
            when every link's breaker is open.
        """
        requests = self.requests(prompt, params)
        return await self.complete(
            requests, timeout=params.get("timeout"), max_attempts=params.get("max_attempts")
        )

    async def complete(
        self,
        requests: Sequence[Request],
        *,
        timeout: float | None = None,  # noqa: ASYNC109  # a per-link call option, not a wait
        max_attempts: int | None = None,
    ) -> Response:
        """Send already built requests (one per link) down the chain.

        ``timeout`` and ``max_attempts`` apply to each link's call (see
        :meth:`forge.LLM.invoke`); a probe is always one attempt.
        """
        run = _Run(self)
        for i, link in enumerate(self.links):
            go, probe = await run.admit(i, link.llm.estimate_tokens(requests[i]))
            if not go:
                continue
            start = self._clock()
            try:
                response = await link.llm.complete(
                    requests[i], operation=_probe_operation(link.llm, probe), timeout=timeout,
                    max_attempts=1 if probe else max_attempts,
                )
            except ForgeError as exc:
                error = await run.failed(i, exc, self._clock() - start, probe)
                if not run.falls_through(error):
                    if error is exc:
                        raise
                    raise error from exc
                continue
            except BaseException:
                if link.breaker is not None:
                    await asyncio.shield(link.breaker.release(probe=probe))
                raise
            if link.breaker is not None:
                await link.breaker.success(probe=probe)
            if run.tried:
                return dataclasses.replace(response, fallback_attempts=tuple(run.tried))
            return response
        error = run.exhausted()
        raise error

    def stream(
        self,
        prompt: Prompt,
        *,
        buffer_size: int | None = None,
        flush_interval: float | None = None,
        first_token_timeout: float | None = None,
        idle_timeout: float | None = None,
        timeout: float | None = None,
        on_chunk: ChunkCallback | None = None,
        on_progress: ProgressCallback | None = None,
        **params: Any,
    ) -> Stream:
        """A :class:`~forge.Stream` that opens on the first link that answers.

        Links are tried only until the first text, reasoning or tool event: after
        that a break raises :class:`~forge.StreamInterrupted` as for one model.
        """
        requests = self.requests(prompt, params)
        return _FallbackStream(
            self,
            requests,
            max_attempts=params.get("max_attempts"),
            buffer_size=buffer_size,
            flush_interval=flush_interval,
            first_token_timeout=first_token_timeout,
            idle_timeout=idle_timeout,
            timeout=timeout,
            on_chunk=on_chunk,
            on_progress=on_progress,
        )


class _FallbackStream(Stream):
    """A Stream whose opener opens each link's stream in turn until one reaches its first event.

    Once a link opened, the stream is that link's: its provider and model, its
    error classification, its settlement (limiter, metrics, cache).
    """

    def __init__(
        self, chain: FallbackLLM, requests: Sequence[Request], *, max_attempts: int | None, **options: Any
    ) -> None:
        primary = chain.links[0].llm
        super().__init__(
            self._open_chain, provider=primary.provider_name, model=primary.model,
            classify=primary.classify, clock=chain._clock, **options,
        )
        self._chain = chain
        self._requests = list(requests)
        self._max_attempts = max_attempts
        self._link_timeout = options.get("timeout")
        self._tried: tuple[FallbackAttempt, ...] = ()

    async def _open_chain(self) -> tuple[AsyncIterator[StreamEvent], Sequence[StreamEvent], int]:
        chain = self._chain
        run = _Run(chain)
        clock = chain._clock
        for i, link in enumerate(chain.links):
            request = self._requests[i]
            go, probe = await run.admit(i, link.llm.estimate_tokens(request))
            if not go:
                continue
            inner = link.llm.stream_request(
                request, max_attempts=1 if probe else self._max_attempts, timeout=self._link_timeout
            )
            inner._keep_text = self._keep_text  # its settlement caches only streams that kept their text
            start = clock()
            try:
                opened = await inner._opener()
            except ForgeError as exc:
                if inner._on_error is not None:
                    inner._on_error(exc)  # the link's metrics, as for a direct call
                error = await run.failed(i, exc, clock() - start, probe)
                if not run.falls_through(error):
                    if error is exc:
                        raise
                    raise error from exc
                continue
            except BaseException:
                if inner._on_close is not None:
                    inner._on_close()  # the link's span ends with the cancelled opening
                if link.breaker is not None:
                    await asyncio.shield(link.breaker.release(probe=probe))
                raise
            if link.breaker is not None:
                await link.breaker.success(probe=probe)
            self.provider, self.model, self._classify = inner.provider, inner.model, inner._classify
            self._on_complete, self._on_error, self.cached = inner._on_complete, inner._on_error, inner.cached
            self._on_close = inner._on_close
            self._price = inner._price  # the answering link's prices
            self._tried = tuple(run.tried)
            return opened
        raise run.exhausted()

    def _complete(self) -> None:
        super()._complete()
        if self._tried and self._response is not None:
            self._response = dataclasses.replace(self._response, fallback_attempts=self._tried)
