"""LLM: one provider + model, with the policy that applies to every call (retry, limits, metrics).

Adapters only translate; everything a service wants applied uniformly lives here,
once, for every provider.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import time
import typing
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from typing_extensions import Unpack

from forge import _otel
from forge._otel import Telemetry
from forge._params import InvokeParams, RequestParams, StreamParams, request_params
from forge._request import Prompt, build_request, check_number
from forge._secrets import scrub_exception
from forge._tools import tool_from_function
from forge.cache import as_cached, cache_scope_of, is_cacheable, replay_events, request_key
from forge.errors import ForgeError, ProviderError, ProviderTimeout
from forge.pricing import cost_usd
from forge.providers._stream import aclose_events
from forge.ratelimit import Reservation
from forge.retry import RetryEvent, RetryPolicy, RetryWrapper
from forge.streaming import ChunkCallback, ProgressCallback, Stream
from forge.tokens import estimate_tokens
from forge.types import (
    Request,
    Response,
    StreamEvent,
    Usage,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from forge.cache import ResponseCache
    from forge.config import ProviderConfig
    from forge.metrics import Metrics
    from forge.optimize import ProviderOptimizer
    from forge.ratelimit import RequestCounter
    from forge.types import Provider

__all__ = ["LLM", "Prompt", "build_request", "tool_from_function"]

_log = logging.getLogger("forge")
T = typing.TypeVar("T")

# Output tokens assumed for the limiter when a call sets no max_tokens (settled afterwards).
DEFAULT_OUTPUT_ESTIMATE = 1024
_TIMEOUT_ARGUMENT = "the call's timeout= argument"


class LLM:
    """One provider and model, with the retry policy and rate limiter every call goes through.

    Get one from :meth:`forge.Registry.get_llm`::

        llm = reg.get_llm("anthropic:claude-sonnet-4-5")
        reply = await llm.invoke("Summarize this", max_tokens=200)
        async for text in llm.stream("Tell me a story"):
            print(text, end="")
    """

    def __init__(
        self,
        provider: Provider,
        model: str,
        *,
        config: ProviderConfig | None = None,
        retry: RetryPolicy | RetryWrapper | None = None,
        retry_overrides: Mapping[str, RetryPolicy] | None = None,
        limiter: RequestCounter | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        rng: Callable[[], float] = random.random,
        on_retry: Callable[[RetryEvent], object] | None = None,
        metrics: Metrics | None = None,
        optimizer: ProviderOptimizer | None = None,
        response_cache: ResponseCache | None = None,
        cache_ttl: float = 300.0,
        telemetry: Telemetry | bool | None = None,
    ) -> None:
        self.provider = provider
        self.provider_name = provider.name
        self.model = model
        self.config = config
        self.prices = config.pricing if config is not None else {}
        self.metrics = metrics
        self.optimizer = optimizer
        """Rewrites each request before it is sent (see docs/optimization.md); None: sent as written."""
        self.response_cache = response_cache
        """Serves identical requests without calling the provider (see :mod:`forge.cache`)."""
        self.cache_ttl = cache_ttl
        self.telemetry = _otel.resolve(telemetry)
        """Where spans go (docs/observability.md); None: OpenTelemetry is turned off."""
        self.cache_scope = cache_scope_of(config)
        """Who is asked, in every response-cache key (base URL and credential fingerprint)."""
        if isinstance(retry, RetryWrapper):
            self.wrapper = retry
        else:
            self.wrapper = RetryWrapper(
                retry,
                overrides=retry_overrides,
                limiter=limiter,
                sleep=sleep,
                rng=rng,
                on_retry=on_retry,
            )
        if metrics is not None:
            self.wrapper.add_observers(
                on_retry=lambda ev: metrics.record_retry(self.provider_name, self.model, ev.error, ev.wait),
                on_wait=lambda waited: metrics.record_limiter_wait(self.provider_name, self.model, waited),
            )
        self._clock = clock

    @property
    def ref(self) -> str:
        """``provider:model``."""
        return f"{self.provider_name}:{self.model}"

    @property
    def retry(self) -> RetryPolicy:
        """The default retry policy."""
        return self.wrapper.policy

    @property
    def limiter(self) -> RequestCounter | None:
        """The provider's rate limiter, shared by every LLM on that provider."""
        return self.wrapper.limiter

    def __repr__(self) -> str:
        return f"LLM({self.ref!r})"

    def request(self, prompt: Prompt, **params: Unpack[RequestParams]) -> Request:
        """Build and validate the :class:`Request` this LLM would send."""
        return build_request(self.model, prompt, **params)

    def policy(self, operation: str) -> RetryPolicy:
        """The retry policy for ``invoke``, ``stream`` or ``batch``."""
        return self.wrapper.policy_for(operation)

    def classify(self, exc: BaseException) -> ForgeError:
        """Map any exception from this LLM's provider onto the forge error tree."""
        error = exc if isinstance(exc, ForgeError) else self.provider.classify(exc)
        if isinstance(error, ProviderError) and error.model is None:
            error.model = self.model
        if isinstance(error, ProviderTimeout) and self.config is not None:
            error = self._named_timeout(error, error.__cause__ if error is exc else exc)
        scrub_exception(error)  # a server may echo the key it was sent
        return error

    def _named_timeout(self, error: ProviderTimeout, cause: BaseException | None) -> ProviderTimeout:
        """Say which limit a vendor client's timeout (``cause``) was, and the config key that sets it."""
        assert self.config is not None
        chain: list[BaseException] = []
        while cause is not None and len(chain) < 5:
            chain.append(cause)
            cause = cause.__cause__ or cause.__context__
        if error.status is not None or not chain or all(isinstance(e, ForgeError) for e in chain):
            return error  # the server's own 408, forge's own limit (already named), or no vendor cause
        key = f"providers.{self.provider_name}"
        if any("Connect" in type(e).__name__ for e in chain):
            what = f"could not connect within {self.config.connect_timeout:g}s ({key}.connect_timeout)"
        else:
            what = f"the server sent nothing for {self.config.timeout:g}s ({key}.timeout)"
        named = ProviderTimeout(
            f"{self.ref}: {what}; raise it if the model needs longer. ({error.message})",
            provider=error.provider,
            model=error.model,
            status=error.status,
            request_id=error.request_id,
            code=error.code,
            headers=error.headers,
        )
        named.__cause__ = chain[0]
        return named

    def estimate_tokens(self, request: Request) -> int:
        """What the limiter reserves for ``request``: estimated input plus the output allowance.

        The allowance is the ``max_tokens`` actually sent: an adapter that sends a
        default of its own says so through an optional ``max_tokens_sent(request)``
        (see :class:`~forge.types.Provider`); otherwise ``request.max_tokens``, else
        ``DEFAULT_OUTPUT_ESTIMATE`` (settled with the real count afterwards).
        """
        sent = getattr(self.provider, "max_tokens_sent", None)
        allowance = sent(request) if callable(sent) else request.max_tokens
        return estimate_tokens(request.prompt_text(), self.model, self.provider_name) + int(
            allowance or DEFAULT_OUTPUT_ESTIMATE
        )

    @staticmethod
    def charged_tokens(request: Request, usage: Usage) -> float | None:
        """Tokens the provider counts against tokens/min for a finished call.

        Providers count ``max_tokens`` at admission, so with ``max_tokens`` set the
        charge is input + max_tokens; otherwise input + output.
        """
        if not usage.input_tokens and not usage.output_tokens:
            return None
        return usage.input_tokens + (request.max_tokens or usage.output_tokens)

    async def invoke(self, prompt: Prompt, **params: Unpack[InvokeParams]) -> Response:
        """Send ``prompt`` and return the whole reply.

        ``params`` are request parameters (see :func:`build_request`) plus two call
        options: ``timeout`` (seconds for the whole call, retries included; default:
        the provider's ``deadline`` config key) and ``max_attempts`` (default: the
        provider's ``retry.max_attempts``).

        Raises:
            ProviderError subclasses: the last attempt's error, its own class whether or not
            retries ran (``error.attempts`` holds the history); ProviderTimeout (no reply
            within the call's time limit); TypeError/ValueError (bad parameters).
        """
        request = self.request(prompt, **request_params(params))
        return await self.complete(
            request, timeout=params.get("timeout"), max_attempts=params.get("max_attempts")
        )

    def _call_limit(self, timeout: float | None) -> tuple[float | None, str]:
        """The time limit of a whole call and where it comes from (for the error message)."""
        if timeout is not None:
            check_number("timeout", timeout, 0.0, None)
            if timeout <= 0:
                raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}.")
            return float(timeout), _TIMEOUT_ARGUMENT
        if self.config is None or self.config.deadline is None:
            return None, ""
        return self.config.deadline, f"providers.{self.provider_name}.deadline"

    def _deadline_error(self, limit: float, source: str, attempts: int) -> ProviderTimeout:
        error = ProviderTimeout(
            f"{self.ref}: no reply within {limit:g}s ({source}), {attempts} attempt(s) made. "
            f"Raise {source} if the model needs longer, or check that the server answers.",
            provider=self.provider_name,
            model=self.model,
        )
        # Structured too, so the CLI can name its own option (--timeout) instead of timeout=.
        error.limit_s = limit
        error.limit_source = "timeout" if source == _TIMEOUT_ARGUMENT else source
        error.attempts_made = attempts
        return error

    async def _within(
        self, aw: Awaitable[T], limit: float | None, source: str, tries: Callable[[], int]
    ) -> T:
        """Await ``aw`` under one time limit for the whole call: every attempt and every wait."""
        timer = asyncio.timeout(limit)
        try:
            async with timer:
                return await aw
        except TimeoutError:
            if not timer.expired():
                raise
            raise self._deadline_error(limit or 0.0, source, tries()) from None

    def _policy(self, operation: str, max_attempts: int | None) -> RetryPolicy | None:
        """The retry policy for a call that overrides ``max_attempts`` (None: the configured one)."""
        if max_attempts is None:
            return None
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
            raise ValueError(f"max_attempts must be a whole number >= 1 (1: no retry), got {max_attempts!r}.")
        return dataclasses.replace(self.policy(operation), max_attempts=max_attempts)

    async def complete(
        self,
        request: Request,
        *,
        operation: str = "invoke",
        timeout: float | None = None,  # noqa: ASYNC109  # the per-call option, not a wait
        max_attempts: int | None = None,
    ) -> Response:
        """Send an already built :class:`Request` through the limiter and the retry policy.

        ``timeout`` and ``max_attempts`` are the call options described on :meth:`invoke`.
        """
        return await _otel.traced_complete(
            self, request, operation,
            lambda: self._complete(request, operation=operation, timeout=timeout, max_attempts=max_attempts),
        )

    async def _complete(
        self,
        request: Request,
        *,
        operation: str,
        timeout: float | None,  # noqa: ASYNC109  # the per-call option, not a wait
        max_attempts: int | None,
    ) -> Response:
        limit, source = self._call_limit(timeout)
        policy = self._policy(operation, max_attempts)
        start = self._clock()
        key = self._cache_key(request)
        if key is not None and (hit := await self._cache_get(key)) is not None:
            return as_cached(hit, self._clock() - start)

        tries = 0

        async def attempt(req: Request) -> Response:
            nonlocal tries
            tries += 1
            try:
                return await self.provider.complete(req)
            except ProviderTimeout as exc:
                raise self.classify(exc) from exc.__cause__

        async def send(req: Request) -> tuple[Response, int]:
            return await self.wrapper.call(
                lambda: attempt(req),
                classify=self.classify,
                operation=operation,
                estimated_tokens=self.estimate_tokens(req),
                settle=lambda r: self.charged_tokens(req, r.usage),
                policy=policy,
            )

        async def run() -> tuple[Response, int]:
            sent = await self._optimize(request)
            try:
                return await send(sent)
            except ForgeError as exc:
                if not self._falls_back(request, sent, exc):
                    raise
                response, attempts = await send(request)
                return response, attempts + _attempts_used(exc)  # the refused optimized request counts too

        try:
            response, attempts = await self._within(run(), limit, source, lambda: tries)
        except Exception as exc:
            scrub_exception(exc)  # a server may echo the key it was sent
            if self.metrics is not None:
                self._record_failure(exc, self._clock() - start)
            raise
        result: Response = dataclasses.replace(
            response,
            attempts=attempts,
            latency_s=self._clock() - start,
            cost_usd=cost_usd(
                self.provider_name, response.model or self.model, response.usage, overrides=self.prices
            ),
        )
        if self.metrics is not None:
            self.metrics.record_success(result, prices=self.prices)
        if key is not None and is_cacheable(result):
            await self._cache_set(key, result)
        return result

    # ------------------------------------------------------------------ optimizer and response cache

    async def _optimize(self, request: Request) -> Request:
        """The request as the optimizer rewrites it; as written when there is none or it fails."""
        optimizer = self.optimizer
        if optimizer is None:
            return request
        metrics = self.metrics
        report = None
        if metrics is not None:
            def report(name: str, applied: bool, reason: str) -> None:
                metrics.record_optimization(self.provider_name, self.model, name, applied, reason)
        try:
            return await optimizer.aoptimize_request(request, on_step=report)
        except Exception as exc:  # a bug in an optimizer must never fail the call
            optimizer.fail("optimizer", exc)
            return request

    def _falls_back(self, request: Request, sent: Request, error: ForgeError) -> bool:
        """Whether to re-send ``request`` as written after the provider refused the optimized ``sent``."""
        optimizer = self.optimizer
        if optimizer is None or sent is request or not optimizer.should_fall_back(sent, error):
            return False
        optimizer.record_fallback(error)
        if self.metrics is not None:
            self.metrics.record_optimization(self.provider_name, self.model, "fallback", False, str(error))
        return True

    def _cache_key(self, request: Request) -> str | None:
        if self.response_cache is None:
            return None
        return request_key(self.provider_name, request, self.cache_scope)

    async def _cache_get(self, key: str) -> Response | None:
        assert self.response_cache is not None
        try:
            hit = await self.response_cache.get(key)
        except Exception as exc:  # a cache outage costs a provider call, never the call itself
            _log.warning("forge response cache: get failed (%s); calling %s", exc, self.ref)
            return None
        if hit is not None and self.metrics is not None:
            self.metrics.record_cache_hit(
                self.provider_name, self.model,
                cost_usd(self.provider_name, hit.model, hit.usage, overrides=self.prices),
            )
        return hit

    async def _cache_set(self, key: str, response: Response) -> None:
        assert self.response_cache is not None
        try:
            await self.response_cache.set(key, response, self.cache_ttl)
        except Exception as exc:
            _log.warning("forge response cache: set failed (%s); reply not cached", exc)

    def _record_failure(self, exc: BaseException, elapsed_s: float | None = None) -> None:
        assert self.metrics is not None
        attempts = _attempts_used(exc) if isinstance(exc, ForgeError) else 1
        self.metrics.record_failure(
            self.provider_name, self.model, exc, attempts=attempts, elapsed_s=elapsed_s
        )
        if getattr(exc, "status", None) == 429:
            self.metrics.record_rate_limited(self.provider_name, self.model)

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
        **params: Unpack[StreamParams],
    ) -> Stream:
        """Start a streamed call; returns a :class:`~forge.Stream` (nothing is sent until it is iterated).

        Stream options (``buffer_size``, ``flush_interval``, timeouts, callbacks) are
        described on :class:`~forge.Stream`; ``timeout`` is the whole stream's time,
        opening and retries included (without it, opening the stream is bounded by
        the provider's ``deadline`` config key). ``max_attempts`` overrides the retry
        policy's attempts for opening this stream; the rest are request parameters as
        for :meth:`invoke`.
        """
        request = self.request(prompt, **request_params(params))
        return self.stream_request(
            request,
            buffer_size=buffer_size,
            flush_interval=flush_interval,
            first_token_timeout=first_token_timeout,
            idle_timeout=idle_timeout,
            timeout=timeout,
            on_chunk=on_chunk,
            on_progress=on_progress,
            max_attempts=params.get("max_attempts"),
        )

    def stream_request(self, request: Request, *, max_attempts: int | None = None, **options: Any) -> Stream:
        """Stream an already built :class:`Request`.

        Retries cover opening the stream, up to its first event that carries
        something the caller could see (text, reasoning, a tool call): metadata that
        comes first (usage, pings, role-only chunks) is held back and replayed, so a
        fault right after it is retried too. After that a break raises
        :class:`~forge.StreamInterrupted`.
        """
        policy = self._policy("stream", max_attempts)
        # The stream's own `timeout` covers opening it; without one, the config's deadline does.
        limit, source = self._call_limit(None) if options.get("timeout") is None else (None, "")
        return _StreamCall(self, request, policy, limit, source).start(options)

    async def aclose(self) -> None:
        """Close the provider's client (normally done by the Registry)."""
        await self.provider.aclose()


class _StreamCall:
    """The policy of one streamed call: what its :class:`~forge.Stream` runs to open, settle and fail.

    Opening: the response cache, then the optimizer, then retries up to the first
    content event (metadata before it is held back), all under the call's deadline;
    a refused optimized request is re-sent as written. Settlement: the cache, the
    limiter's tokens/min and the metrics.
    """

    stream: Stream

    def __init__(
        self, llm: LLM, request: Request, policy: RetryPolicy | None, limit: float | None, source: str
    ) -> None:
        self.llm = llm
        self.request = request
        self.policy = policy
        self.limit = limit
        self.source = source
        self.tries = 0
        self.estimate = llm.estimate_tokens(request)
        self.key = llm._cache_key(request)

    def start(self, options: Mapping[str, Any]) -> Stream:
        llm = self.llm
        self.stream = Stream(
            self.open,
            provider=llm.provider_name,
            model=llm.model,
            classify=llm.classify,
            clock=llm._clock,
            on_complete=self.settle,
            on_error=self.failed,
            price=self.price,
            **options,
        )
        if llm.telemetry is not None:
            _otel.trace_stream(self.stream, llm, self.request)
        return self.stream

    async def attempt(self, req: Request) -> tuple[AsyncIterator[StreamEvent], list[StreamEvent]]:
        # Every provider at once: read up to the first content event under the retry
        # wrapper, holding back what comes before it (Anthropic message_start and
        # pings, a Gemini usage-only chunk, Responses API response.created...).
        self.tries += 1
        events = self.llm.provider.stream(req)
        head: list[StreamEvent] = []
        try:
            while True:
                try:
                    event = await events.__anext__()
                except StopAsyncIteration:
                    return events, head
                head.append(event)
                if _shows_content(event):
                    return events, head
        except ProviderTimeout as exc:
            await aclose_events(events)
            raise self.llm.classify(exc) from exc.__cause__
        except BaseException:
            await aclose_events(events)
            raise

    async def open(self) -> tuple[AsyncIterator[StreamEvent], list[StreamEvent], int]:
        """The Stream's opener: a cached reply replayed, or the provider's stream opened."""
        key = self.key
        if key is not None and (hit := await self.llm._cache_get(key)) is not None:
            self.stream.cached = True
            return replay_events(hit), [], 0
        return await self.llm._within(self._open_stream(), self.limit, self.source, lambda: self.tries)

    async def _send(self, req: Request) -> tuple[tuple[AsyncIterator[StreamEvent], list[StreamEvent]], int]:
        llm = self.llm
        return await llm.wrapper.call(
            lambda: self.attempt(req), classify=llm.classify, operation="stream",
            estimated_tokens=self.estimate, policy=self.policy,
        )

    async def _open_stream(self) -> tuple[AsyncIterator[StreamEvent], list[StreamEvent], int]:
        request = self.request
        sent = await self.llm._optimize(request)
        try:
            (events, head), attempts = await self._send(sent)
        except ForgeError as exc:
            if not self.llm._falls_back(request, sent, exc):
                raise
            (events, head), attempts = await self._send(request)
            attempts += _attempts_used(exc)
        return events, head, attempts

    async def settle(self, response: Response) -> None:
        """After the last event: cache the reply, settle the limiter with real usage, record metrics."""
        stream, llm = self.stream, self.llm
        if stream.cached:
            return
        if self.key is not None and stream.keeps_text and is_cacheable(response):
            await llm._cache_set(self.key, response)
        limiter = llm.wrapper.limiter
        actual = llm.charged_tokens(self.request, response.usage)
        if limiter is not None and limiter.tokens is not None and actual is not None:
            await limiter.settle(Reservation(self.estimate, 0.0), actual)
        if llm.metrics is not None:
            llm.metrics.record_success(response, stream=True, prices=llm.prices)

    def failed(self, exc: BaseException) -> None:
        scrub_exception(exc)
        if self.llm.metrics is not None and isinstance(exc, Exception):
            self.llm._record_failure(exc, self.stream.progress().elapsed_s)

    def price(self, usage: Usage) -> float | None:
        llm = self.llm
        return cost_usd(llm.provider_name, llm.model, usage, overrides=llm.prices)


def _shows_content(event: StreamEvent) -> bool:
    """Whether ``event`` carries something the caller could see: text, reasoning or a tool call."""
    kind = event.kind
    if kind == "text" or kind == "reasoning":
        return bool(event.text)
    return kind.startswith("tool_call")


def _attempts_used(error: ForgeError) -> int:
    """How many requests a failed call made (its retries included)."""
    return error.attempt_count or 1
