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
import inspect
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from forge._params import STREAM_OPTIONS, request_params
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
    StreamInterrupted,
    ToolCallError,
)
from forge.providers._stream import aclose_events
from forge.streaming import Stream
from forge.types import FallbackAttempt

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from forge.breaker import CircuitBreaker
    from forge.llm import LLM, Prompt
    from forge.metrics import Metrics
    from forge.types import Request, Response, StreamEvent

    _Opened = tuple[Stream, tuple[AsyncIterator[StreamEvent], Sequence[StreamEvent], int]]

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
# Failures that belong to one key or organization, not to the endpoint: they count against
# the link's account breaker, so one tenant's exhausted quota (or, where the chain lets it
# fall through, revoked key) never sends another tenant's calls away from a healthy endpoint.
_ACCOUNT_KINDS = frozenset({"rate_limited", "authentication"})
T = TypeVar("T")


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
        hedge_after: a link (except the last one) that has not answered within this
            many seconds (a stream: not reached its first event) gets the rest of the
            chain started beside it; the first answer wins and the other call is
            cancelled. None: wait for the link's own verdict.
    """

    links: tuple[Fallback, ...]
    fall_through: frozenset[str] = DEFAULT_FALL_THROUGH
    max_limiter_wait: float | None = None
    hedge_after: float | None = None

    @classmethod
    def of(cls, value: FallbackChain | Sequence[str | Fallback]) -> FallbackChain:
        """A chain from a list of references / :class:`Fallback` values, or a chain as is.

        Raises:
            TypeError / ValueError: not a list of model references, or an unknown error kind.
        """
        if isinstance(value, FallbackChain):
            hedge = value.hedge_after
            if hedge is not None and not (isinstance(hedge, (int, float)) and hedge > 0):
                raise ValueError(f"hedge_after must be a positive number of seconds or None, got {hedge!r}.")
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
    """The endpoint's breaker (provider, base URL, model): outages, whoever's key asked."""
    account: CircuitBreaker | None = None
    """The account's breaker (the same plus the credential fingerprint): rate limits, refused keys."""


@dataclass(slots=True)
class _Ticket:
    """A call admitted to a link: whether it is the probe of its endpoint or account breaker."""

    endpoint_probe: bool = False
    account_probe: bool = False

    @property
    def probe(self) -> bool:
        return self.endpoint_probe or self.account_probe


def _unjudged(ticket: _Ticket, slow: bool) -> _Ticket:
    """The probes of ``ticket`` still waiting for a verdict (a slow call's endpoint probe had its own)."""
    return _Ticket(account_probe=ticket.account_probe) if slow else ticket


def _from_cache(answer: object) -> bool:
    """A link's answer came from the response cache (a Response, or an opened stream's pair)."""
    if isinstance(answer, tuple):
        answer = answer[0]
    return bool(getattr(answer, "cached", False))


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a finished side task's outcome as seen (asyncio logs unretrieved errors)."""
    if not future.cancelled():
        future.exception()


async def _cancel(future: asyncio.Future[T], discard: Callable[[T], Awaitable[None]]) -> None:
    """Cancel a losing call and wait for it; close what it opened if it won the race anyway."""
    future.cancel()
    await asyncio.wait({future})
    if not future.cancelled() and future.exception() is None:
        await discard(future.result())


class _Run:
    """One call through a chain: which links were tried, and what to do after each failure."""

    def __init__(self, chain: FallbackLLM) -> None:
        self.chain = chain
        self.tried: list[FallbackAttempt] = []
        self.last_error: ForgeError | None = None
        self.context_exceeded = False
        self.retry_in: float | None = None

    async def admit(self, i: int, estimate: float) -> _Ticket | None:
        """A ticket when link ``i`` is called (saying whether as a breaker's probe), else None."""
        link = self.chain.links[i]
        if i > 0 and self.context_exceeded and not link.spec.larger_context:
            self._skip(i, "context_length", "")
            return None
        ticket = _Ticket()
        for breaker, is_account in ((link.breaker, False), (link.account, True)):
            if breaker is None:
                continue
            admission = await breaker.admit(last_resort=self.is_last(i))
            if admission == "reject":
                await self.release(link, ticket)
                wait = breaker.retry_in
                self.retry_in = wait if self.retry_in is None else min(self.retry_in, wait)
                self._skip(i, "breaker_open", "CircuitOpen")
                return None
            if is_account:
                ticket.account_probe = admission == "probe"
            else:
                ticket.endpoint_probe = admission == "probe"
        bound = self.chain.chain.max_limiter_wait
        limiter = link.llm.limiter
        if (
            bound is not None and limiter is not None and limiter.enabled and not self.is_last(i)
            and await limiter.wait_time(estimate) > bound
        ):
            await self.release(link, ticket)
            self._skip(i, "limiter_wait", "")
            return None
        return ticket

    @staticmethod
    async def release(link: _Link, ticket: _Ticket) -> None:
        """The call ended without a verdict on the link's health."""
        if link.breaker is not None and ticket.endpoint_probe:
            await link.breaker.release(probe=True)
        if link.account is not None and ticket.account_probe:
            await link.account.release(probe=True)

    @classmethod
    async def answered(cls, link: _Link, ticket: _Ticket, answer: object, *, slow: bool = False) -> None:
        """The link answered: a success, unless from the response cache (no verdict on its health)."""
        if _from_cache(answer):
            await cls.release(link, _unjudged(ticket, slow))
        else:
            await cls.succeeded(link, ticket, judged=slow)

    @staticmethod
    async def succeeded(link: _Link, ticket: _Ticket, *, judged: bool = False) -> None:
        """The link answered (``judged``: the endpoint breaker already counted it as a slow call)."""
        if link.breaker is not None and not judged:
            await link.breaker.success(probe=ticket.endpoint_probe)
        if link.account is not None:
            await link.account.success(probe=ticket.account_probe)

    async def count(self, link: _Link, ticket: _Ticket, error: ForgeError, *, judged: bool = False) -> None:
        """Report a failure to the breaker it concerns: the account's or the endpoint's."""
        kind = error_kind(error)
        rules = self.chain.chain.fall_through
        counted = kind in _OUTAGE_KINDS or (kind == "authentication" and kind in rules)
        if not counted:
            await self.release(link, ticket)
            return
        per_account = kind in _ACCOUNT_KINDS
        breaker, probe = (
            (link.account, ticket.account_probe) if per_account else (link.breaker, ticket.endpoint_probe)
        )
        if breaker is None or (judged and not per_account):
            await self.release(link, ticket)
            return
        retry_after = error.retry_after if isinstance(error, ProviderError) else None
        await breaker.failure(
            attempts=_attempts_made(error), retry_after=retry_after, probe=probe, error=type(error).__name__,
        )
        await self.release(link, _Ticket(
            endpoint_probe=ticket.endpoint_probe and per_account,
            account_probe=ticket.account_probe and not per_account,
        ))

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

    def hedged(self, i: int, elapsed: float) -> None:
        """Link ``i`` is slow: the rest of the chain starts beside it."""
        self._moved(i, "SlowCall", elapsed, "hedge")

    def abandoned(self, i: int, elapsed: float, at: int) -> None:
        """Link ``i`` lost the race to a later link and was cancelled."""
        self.tried.insert(at, FallbackAttempt(self.chain.links[i].llm.ref, "SlowCall", elapsed, 1))

    async def failed(
        self, i: int, exc: BaseException, elapsed: float, ticket: _Ticket, *,
        judged: bool = False, at: int | None = None, moved: bool = True,
    ) -> ForgeError:
        """Record link ``i``'s failure; return it as a ForgeError (ready to raise if it stops the chain)."""
        link = self.chain.links[i]
        error = exc if isinstance(exc, ForgeError) else link.llm.classify(exc)
        kind = error_kind(error)
        await self.count(link, ticket, error, judged=judged)
        attempt = FallbackAttempt(link.llm.ref, type(error).__name__, elapsed, _attempts_made(error))
        self.tried.insert(len(self.tried) if at is None else at, attempt)
        if at is None or self.last_error is None:
            self.last_error = error
        if kind is None or kind not in self.chain.chain.fall_through:
            return self.finish(error)
        if kind == "context_length":
            self.context_exceeded = True
        if moved:
            self._moved(i, type(error).__name__, elapsed, "error")
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


class _TimedLink(Generic[T]):
    """One call to a link under its ``slow_call`` verdict timer and/or the chain's ``hedge_after`` timer.

    The slow-call timer judges the link failed while its call goes on (its breaker holds
    new calls back until this one ends); the hedge timer starts the rest of the chain
    beside it, and whichever answers first wins: the other is cancelled, what it opened
    anyway is discarded, and the breakers get a verdict only on what was judged.
    """

    def __init__(
        self,
        chain: FallbackLLM,
        run: _Run,
        i: int,
        ticket: _Ticket,
        call: Callable[[int, bool], Awaitable[T]],
        discard: Callable[[T], Awaitable[None]],
        estimates: Sequence[float],
        attempts: Callable[[int], int],
    ) -> None:
        self.chain, self.run, self.i, self.ticket = chain, run, i, ticket
        self.call, self.discard, self.estimates, self.attempts = call, discard, estimates, attempts
        self.link = link = chain.links[i]
        self.clock = chain._clock
        self.started = self.clock()
        # The last link is judged by its outcome: with nowhere else to go, an early verdict gains nothing.
        self.slow_after = None if link.breaker is None or run.is_last(i) else link.breaker.config.slow_call
        self.hedge_after = None if run.is_last(i) else chain.chain.hedge_after
        self.timers: dict[asyncio.Future[object], str] = {}
        self.rest: asyncio.Future[tuple[int, T]] | None = None
        """The rest of the chain, once the hedge timer started it."""
        self.rest_error: BaseException | None = None
        """How the rest of the chain failed, when it finished first without an answer."""
        self.slow = False
        """The slow-call timer fired: the endpoint breaker already has its verdict."""
        self.at = 0
        """Where this link's attempt goes in ``run.tried``, whatever finishes first."""

    async def through(self) -> tuple[int, T] | None:
        """The link's answer (or, when hedged, a later link's), or None to go on to the next link."""
        self._start()
        try:
            answer = await self._wait()
        except BaseException:
            await asyncio.shield(self._abort())
            raise
        finally:
            for timer in self.timers:
                timer.cancel()
            if self.slow and self.link.breaker is not None:
                self.link.breaker.slow_ended()
        if answer is not None:
            return answer
        return await self._verdict()

    def _start(self) -> None:
        """Start the link's call and its timers."""
        self.task: asyncio.Future[T] = asyncio.ensure_future(self.call(self.i, self.ticket.probe))
        self.task.add_done_callback(_retrieve)
        for after, what in ((self.slow_after, "slow"), (self.hedge_after, "hedge")):
            if after is not None:
                self.timers[asyncio.ensure_future(self.chain._sleep(after))] = what
        self.at = len(self.run.tried)

    async def _wait(self) -> tuple[int, T] | None:
        """Wait until the link's call ends (None), or a later link answers first (its answer)."""
        while not self.task.done():
            waiting: set[asyncio.Future[Any]] = {self.task, *self.timers}
            if self.rest is not None:
                waiting.add(self.rest)
            done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if self.task in done:
                break
            if self.rest is not None and self.rest in done:
                answer = await self._rest_ended(self.rest)
                if answer is not None:
                    return answer
            for timer in done & self.timers.keys():
                await self._timer_fired(self.timers.pop(timer))
        return None

    async def _rest_ended(self, rest: asyncio.Future[tuple[int, T]]) -> tuple[int, T] | None:
        """The rest of the chain finished first: its answer wins, else its failure is kept for later."""
        if not rest.cancelled() and rest.exception() is None:
            answer = rest.result()  # a later link answered first: this one is dropped
            await _cancel(self.task, self.discard)
            await self.run.release(self.link, _unjudged(self.ticket, self.slow))
            self.run.abandoned(self.i, self.clock() - self.started, self.at)
            return answer
        self.rest_error, self.rest = (rest.exception() if not rest.cancelled() else None), None
        return None

    async def _timer_fired(self, what: str) -> None:
        """``slow``: judge the link failed now; ``hedge``: start the rest of the chain beside it."""
        breaker = self.link.breaker
        if what == "slow" and breaker is not None and self.slow_after is not None:
            self.slow = True
            await breaker.slow(
                elapsed=self.slow_after, attempts=1 if self.ticket.probe else self.attempts(self.i),
                probe=self.ticket.endpoint_probe,
            )
        elif what == "hedge" and self.rest is None and self.rest_error is None:
            self.run.hedged(self.i, self.clock() - self.started)
            self.rest = asyncio.ensure_future(self.chain._drive(
                self.run, self.call, self.discard, self.estimates, self.attempts, self.i + 1
            ))
            self.rest.add_done_callback(_retrieve)

    async def _verdict(self) -> tuple[int, T] | None:
        """The link's call ended: its answer, or its failure judged (and the chain's way on)."""
        elapsed = self.clock() - self.started
        task = self.task
        exc = task.exception() if not task.cancelled() else asyncio.CancelledError()
        if exc is None:
            if self.rest is not None:
                await _cancel(self.rest, self._discard_rest)  # this link answered first after all
            await self.run.answered(self.link, self.ticket, task.result(), slow=self.slow)
            return self.i, task.result()
        if not isinstance(exc, ForgeError):
            await asyncio.shield(self._abort())
            raise exc
        return await self._failed(exc, elapsed)

    async def _failed(self, exc: ForgeError, elapsed: float) -> tuple[int, T] | None:
        """The link failed: stop here, wait for the hedge, or go on (None)."""
        rest, rest_error = self.rest, self.rest_error
        hedging = rest is not None or rest_error is not None
        error = await self.run.failed(
            self.i, exc, elapsed, self.ticket, judged=self.slow, at=self.at if hedging else None,
            moved=not hedging,
        )
        if not self.run.falls_through(error):
            if rest is not None:
                await _cancel(rest, self._discard_rest)
            if error is exc:
                raise exc
            raise error from exc
        if rest is not None:
            return await rest  # the chain goes on where the hedge already is
        if isinstance(rest_error, ForgeError):
            raise self.run.finish(rest_error)  # the rest of the chain failed first; now this link too
        if rest_error is not None:
            raise rest_error
        return None

    async def _discard_rest(self, answer: tuple[int, T]) -> None:
        await self.discard(answer[1])

    async def _abort(self) -> None:
        """The caller went away (or a bug surfaced): stop both calls, leave the breakers neutral."""
        await _cancel(self.task, self.discard)
        if self.rest is not None:
            await _cancel(self.rest, self._discard_rest)
        await _Run.release(self.link, _unjudged(self.ticket, self.slow))


class FallbackLLM:
    """A primary :class:`~forge.LLM` and its fallbacks; get one from :meth:`forge.Registry.fallback_llm`.

    ``invoke`` and ``stream`` take the same arguments as the LLM's and return the
    same Response / Stream, whoever answers; ``response.fallback_attempts`` lists
    the links tried before it.
    """

    def __init__(
        self,
        links: Sequence[
            tuple[LLM, Fallback, CircuitBreaker | None]
            | tuple[LLM, Fallback, CircuitBreaker | None, CircuitBreaker | None]
        ],
        chain: FallbackChain,
        *,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        metrics: Metrics | None = None,
    ) -> None:
        """``links``: (llm, spec, endpoint breaker[, account breaker]) per link, primary first."""
        if len(links) < 2:
            raise ValueError("a fallback chain needs a primary and at least one fallback.")
        self.links = [_Link(*link) for link in links]
        self.chain = chain
        self.metrics = metrics
        self._clock = clock
        self._sleep = sleep

    async def _drive(
        self,
        run: _Run,
        call: Callable[[int, bool], Awaitable[T]],
        discard: Callable[[T], Awaitable[None]],
        estimates: Sequence[float],
        attempts: Callable[[int], int],
        start: int = 0,
    ) -> tuple[int, T]:
        """Call links from ``start`` on until one answers: ``(its index, its answer)``.

        ``attempts(i)``: the requests a call to link ``i`` may make (its retry policy).
        """
        for i in range(start, len(self.links)):
            ticket = await run.admit(i, estimates[i])
            if ticket is None:
                continue
            answered = await self._through(run, i, ticket, call, discard, estimates, attempts)
            if answered is not None:
                return answered
        raise run.exhausted()

    async def _through(
        self,
        run: _Run,
        i: int,
        ticket: _Ticket,
        call: Callable[[int, bool], Awaitable[T]],
        discard: Callable[[T], Awaitable[None]],
        estimates: Sequence[float],
        attempts: Callable[[int], int],
    ) -> tuple[int, T] | None:
        """Call link ``i``: its answer (or, when hedged, a later link's), or None to go on.

        Past the breaker's ``slow_call`` the call counts as failed at once (the link is in
        doubt: no new calls until this one ends); past the chain's ``hedge_after`` the rest
        of the chain starts beside it and the first answer wins.
        """
        timed = _TimedLink(self, run, i, ticket, call, discard, estimates, attempts)
        if timed.slow_after is None and timed.hedge_after is None:
            return await self._plain(run, i, ticket, call)
        return await timed.through()

    async def _plain(
        self, run: _Run, i: int, ticket: _Ticket, call: Callable[[int, bool], Awaitable[T]]
    ) -> tuple[int, T] | None:
        """Call link ``i`` and wait for its verdict (no slow-call or hedge timer applies)."""
        link = self.links[i]
        started = self._clock()
        try:
            answer = await call(i, ticket.probe)
        except ForgeError as exc:
            error = await run.failed(i, exc, self._clock() - started, ticket)
            if not run.falls_through(error):
                if error is exc:
                    raise
                raise error from exc
            return None
        except BaseException:
            await asyncio.shield(_Run.release(link, ticket))
            raise
        await run.answered(link, ticket, answer)
        return i, answer

    def _attempts(self, operation: str, max_attempts: int | None) -> Callable[[int], int]:
        """The requests one call to a link may make: ``max_attempts``, else its retry policy's."""

        def attempts(i: int) -> int:
            return max_attempts or self.links[i].llm.wrapper.policy_for(operation).max_attempts

        return attempts

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

        async def call(i: int, probe: bool) -> Response:
            llm = self.links[i].llm
            return await llm.complete(
                requests[i], operation=_probe_operation(llm, probe), timeout=timeout,
                max_attempts=1 if probe else max_attempts,
            )

        async def discard(response: Response) -> None:
            return None

        estimates = [link.llm.estimate_tokens(requests[i]) for i, link in enumerate(self.links)]
        _, response = await self._drive(run, call, discard, estimates, self._attempts("invoke", max_attempts))
        if run.tried:
            return dataclasses.replace(response, fallback_attempts=tuple(run.tried))
        return response

    def stream(self, prompt: Prompt, **params: Any) -> Stream:
        """A :class:`~forge.Stream` that opens on the first link that answers.

        ``params`` are what :meth:`forge.LLM.stream` takes: the stream options go to
        the Stream, the rest build each link's request. Links are tried only until
        the first text, reasoning or tool event: after that a break raises
        :class:`~forge.StreamInterrupted` as for one model.
        """
        options = {name: params.pop(name) for name in STREAM_OPTIONS if name in params}
        requests = self.requests(prompt, params)
        return _FallbackStream(self, requests, max_attempts=params.get("max_attempts"), **options)


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

        async def call(i: int, probe: bool) -> _Opened:
            # A probe is one request, whatever the stream retry policy says.
            inner = chain.links[i].llm.stream_request(
                self._requests[i], max_attempts=1 if probe else self._max_attempts, timeout=self._link_timeout
            )
            inner._keep_text = self._keep_text  # its settlement caches only streams that kept their text
            try:
                return inner, await inner._opener()
            except ForgeError as exc:
                if inner._on_error is not None:
                    inner._on_error(exc)  # the link's metrics, as for a direct call
                raise
            except BaseException:
                if inner._on_close is not None:
                    inner._on_close()  # the link's span ends with the cancelled opening
                raise

        async def discard(opened: _Opened) -> None:
            inner, (events, _, _) = opened
            await aclose_events(events)  # a hedge's loser that opened anyway
            if inner._on_close is not None:
                inner._on_close()

        estimates = [link.llm.estimate_tokens(self._requests[i]) for i, link in enumerate(chain.links)]
        attempts = chain._attempts("stream", self._max_attempts)
        i, (inner, opened) = await chain._drive(run, call, discard, estimates, attempts)
        self.provider, self.model, self._classify = inner.provider, inner.model, inner._classify
        self._on_complete, self.cached = inner._on_complete, inner.cached
        self._on_error = self._broke_handler(run, chain.links[i], inner._on_error)
        self._on_close = inner._on_close
        self._price = inner._price  # the answering link's prices
        self._tried = tuple(run.tried)
        return opened

    @staticmethod
    def _broke_handler(
        run: _Run, link: _Link, link_error: Callable[[BaseException], object] | None
    ) -> Callable[[BaseException], object]:
        """The link's own error hook, plus: a break after the stream opened counts against its breaker.

        The stream opened, so the open was a success for the breaker; a provider that then
        cuts streams off (5xx mid-stream, dropped connections) is unhealthy all the same.
        A timeout the caller set is not the provider's failure, nor is a closed stream.
        """

        def on_error(exc: BaseException) -> object:
            reported = link_error(exc) if link_error is not None else None
            broke = exc.error if isinstance(exc, StreamInterrupted) else None
            if not (isinstance(broke, ForgeError) and error_kind(broke) in _OUTAGE_KINDS):
                return reported

            async def report_and_count() -> None:
                if inspect.isawaitable(reported):
                    await reported
                await run.count(link, _Ticket(), broke)

            return report_and_count()

        return on_error

    def _complete(self) -> None:
        super()._complete()
        if self._tried and self._response is not None:
            self._response = dataclasses.replace(self._response, fallback_attempts=self._tried)
