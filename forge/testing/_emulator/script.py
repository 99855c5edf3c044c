"""Scripted behaviour: faults, replies, matching rules, and the request log."""

from __future__ import annotations

import fnmatch
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .base import EmulatedCall

PROVIDERS = ("openai", "anthropic", "google", "ollama")
_ALIASES = {"gemini": "google"}


def canonical_provider(name: str) -> str:
    """``"openai" | "anthropic" | "google" | "ollama"`` (``"gemini"`` means google)."""
    key = _ALIASES.get(name.lower(), name.lower())
    if key not in PROVIDERS:
        raise ValueError(f"unknown provider {name!r}; expected one of {', '.join(PROVIDERS)} (or 'gemini')")
    return key


FaultKind = Literal[
    "status",
    "rate_limit",
    "overloaded",
    "server_error",
    "auth",
    "context_length",
    "not_found",
    "slow_first_byte",
    "chunk_delay",
    "drop_after",
    "stream_error",
]
StreamErrorKind = Literal["overloaded", "server_error", "rate_limit"]
Outcome = Literal["pending", "complete", "dropped", "disconnected"]

_RESPONSE_KINDS = frozenset(
    {"status", "rate_limit", "overloaded", "server_error", "auth", "context_length", "not_found"}
)


def _headers(headers: Mapping[str, str] | None) -> tuple[tuple[str, str], ...]:
    return tuple((k.lower(), str(v)) for k, v in (headers or {}).items())


def _non_negative(name: str, value: float | None) -> None:
    if value is not None and (value < 0 or math.isnan(value)):
        raise ValueError(f"{name} must be >= 0, got {value}")


@dataclass(frozen=True, slots=True)
class Fault:
    """Something going wrong, to put in a rule with :meth:`Emulator.script`.

    Build one with the class methods; error bodies and headers are each
    vendor's own, so the official clients raise their usual typed errors.
    """

    kind: FaultKind
    code: int | None = None
    message: str | None = None
    retry_after: float | None = None
    retry_after_ms: float | None = None
    seconds: float | None = 0.0
    chunks: int = 0
    error: StreamErrorKind = "overloaded"
    headers: tuple[tuple[str, str], ...] = ()

    # -- error responses ---------------------------------------------------------

    @classmethod
    def status(
        cls,
        code: int,
        message: str | None = None,
        *,
        retry_after: float | None = None,
        retry_after_ms: float | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Fault:
        """Answer with HTTP ``code`` in the vendor's error shape for that code.

        429 is a rate limit, 529 Anthropic's overloaded_error (other vendors
        get a 529 with their generic server-error body), 401 authentication,
        404 not found, other 4xx invalid request, other 5xx server errors.
        """
        if not 400 <= code <= 599:
            raise ValueError(f"an error status must be 4xx or 5xx, got {code}")
        _non_negative("retry_after", retry_after)
        _non_negative("retry_after_ms", retry_after_ms)
        return cls("status", code=code, message=message, retry_after=retry_after,
                   retry_after_ms=retry_after_ms, headers=_headers(headers))

    @classmethod
    def rate_limit(
        cls,
        retry_after: float | None = 1.0,
        *,
        retry_after_ms: float | None = None,
        message: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Fault:
        """429 with ``retry-after`` (seconds; None omits it), optional
        ``retry-after-ms``, the vendor's rate-limit headers showing an
        exhausted request budget, and its rate-limit body. Gemini, like
        Google's API, sends no retry headers: the wait is the body's
        RetryInfo ``retryDelay`` (whole seconds, rounded up)."""
        _non_negative("retry_after", retry_after)
        _non_negative("retry_after_ms", retry_after_ms)
        return cls("rate_limit", code=429, message=message, retry_after=retry_after,
                   retry_after_ms=retry_after_ms, headers=_headers(headers))

    @classmethod
    def overloaded(cls, message: str | None = None) -> Fault:
        """Anthropic 529 overloaded_error; 503 (overloaded/UNAVAILABLE/busy) elsewhere."""
        return cls("overloaded", message=message)

    @classmethod
    def server_error(cls, code: int = 500, message: str | None = None) -> Fault:
        """A 5xx in the vendor's shape (500 api_error / INTERNAL, 503 UNAVAILABLE, ...)."""
        if not 500 <= code <= 599:
            raise ValueError(f"a server error status must be 5xx, got {code}")
        return cls("server_error", code=code, message=message)

    @classmethod
    def auth(cls, message: str | None = None) -> Fault:
        """An invalid API key, answered as the vendor does: 401 for OpenAI,
        Anthropic and Ollama; Gemini answers 400 INVALID_ARGUMENT with an
        ErrorInfo reason ``API_KEY_INVALID`` (use ``Fault.status(401)`` or
        ``(403)`` for UNAUTHENTICATED / PERMISSION_DENIED)."""
        return cls("auth", message=message)

    @classmethod
    def context_length(cls, message: str | None = None) -> Fault:
        """400: the prompt exceeds the model's context window (each vendor's message/code)."""
        return cls("context_length", code=400, message=message)

    @classmethod
    def not_found(cls, message: str | None = None) -> Fault:
        """404: unknown model, in the vendor's words."""
        return cls("not_found", code=404, message=message)

    # -- timing and stream shape -------------------------------------------------

    @classmethod
    def slow_first_byte(cls, seconds: float) -> Fault:
        """Wait ``seconds`` before sending the status line."""
        _non_negative("seconds", seconds)
        return cls("slow_first_byte", seconds=seconds)

    @classmethod
    def hang(cls) -> Fault:
        """Never answer (until the client gives up or the emulator stops)."""
        return cls("slow_first_byte", seconds=None)

    @classmethod
    def chunk_delay(cls, seconds: float) -> Fault:
        """Wait ``seconds`` after each content chunk of a stream."""
        _non_negative("seconds", seconds)
        return cls("chunk_delay", seconds=seconds)

    @classmethod
    def drop_after(cls, chunks: int = 0) -> Fault:
        """Abort the socket after ``chunks`` content chunks, without the final
        events or the terminating HTTP chunk. Non-streamed replies are cut
        half-way through the body."""
        if chunks < 0:
            raise ValueError(f"chunks must be >= 0, got {chunks}")
        return cls("drop_after", chunks=chunks)

    @classmethod
    def stream_error(
        cls, after: int = 0, error: StreamErrorKind = "overloaded", message: str | None = None
    ) -> Fault:
        """After ``after`` content chunks send the vendor's in-band error event
        (Anthropic ``event: error``, an OpenAI ``data: {"error": ...}``, a
        Gemini error chunk, an Ollama ``{"error": ...}`` line) and end the
        stream. A non-streamed request gets the matching HTTP error instead."""
        if after < 0:
            raise ValueError(f"after must be >= 0, got {after}")
        return cls("stream_error", chunks=after, error=error, message=message)

    @property
    def category(self) -> str:
        """Faults of one category replace each other; different ones combine."""
        if self.kind in _RESPONSE_KINDS:
            return "response"
        if self.kind == "slow_first_byte":
            return "first_byte"
        if self.kind == "chunk_delay":
            return "chunk_delay"
        return "interrupt"


@dataclass(frozen=True, slots=True)
class Reply:
    """What a successful completion says.

    Give ``text`` (split into ``chunk_count`` pieces), explicit ``chunks``,
    or ``chunk_count`` x ``chunk_size`` characters of filler words (generated
    lazily, fine for 10 MB+). Unset fields fall back to the emulator's
    defaults. ``finish_reason`` takes the normalized names ``stop``,
    ``length``, ``tool_calls``, ``content_filter`` (mapped to each vendor's
    value) or a vendor value verbatim. The token fields override what usage
    reports; ``cached_tokens`` / ``cache_write_tokens`` are part of the input.

    ``tool_calls`` makes the model call tools after its text (often with
    ``text=""``): each a ``forge.ToolCall``, a ``{"name", "arguments", "id"}``
    dict or a ``(name, arguments)`` pair; ``arguments`` is a dict or the JSON
    text verbatim (invalid JSON included, to test error paths); calls without
    an id get the vendor's kind of id. ``reasoning`` is thinking text, sent
    before the answer where the vendor shows thinking (Anthropic thinking
    blocks with ``signature``, Gemini thought parts, Ollama ``thinking``,
    Responses reasoning summaries; OpenAI Chat Completions reports only its
    tokens); ``reasoning_tokens`` defaults to its token count. A sequence of
    texts is several thinking blocks (Anthropic; joined for the others). The
    dialect signs the reasoning itself (see ``_emulator/signatures.py``);
    ``signature`` scripts one verbatim instead. The finish
    reason of a reply with tool calls defaults to ``tool_calls``.
    """

    text: str | None = None
    chunks: Sequence[str] | None = None
    chunk_count: int | None = None
    chunk_size: int | None = None
    finish_reason: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    headers: Mapping[str, str] | None = None
    tool_calls: Sequence[object] | None = None
    reasoning: str | Sequence[str] | None = None
    signature: str | None = None

    def __post_init__(self) -> None:
        if self.reasoning is not None and not isinstance(self.reasoning, str):
            object.__setattr__(self, "reasoning", tuple(self.reasoning))
        if self.chunks is not None:
            object.__setattr__(self, "chunks", tuple(self.chunks))
        if self.tool_calls is not None:
            calls = tuple(_call_spec(c, i) for i, c in enumerate(self.tool_calls))
            object.__setattr__(self, "tool_calls", calls)
        for name in ("chunk_count", "chunk_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"Reply.{name} must be >= 1, got {value}")
        counts = ("input_tokens", "output_tokens", "cached_tokens", "cache_write_tokens", "reasoning_tokens")
        for name in counts:
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"Reply.{name} must be >= 0, got {value}")

    @property
    def category(self) -> str:
        return "reply"


def _call_spec(value: object, i: int) -> EmulatedCall:
    """A scripted tool call as (id, name, JSON text); ``id`` "" means "make one up"."""
    call_id: object = ""
    if isinstance(value, tuple) and len(value) == 2:
        name, arguments = value
    elif isinstance(value, Mapping):
        name, arguments, call_id = value.get("name"), value.get("arguments", {}), value.get("id", "")
    elif hasattr(value, "name") and hasattr(value, "arguments"):  # forge.ToolCall
        name, call_id = value.name, getattr(value, "id", "")
        raw = getattr(value, "raw_arguments", "")
        arguments = raw if raw else value.arguments
    else:
        raise TypeError(
            f"Reply.tool_calls[{i}] must be a forge.ToolCall, a {{'name', 'arguments'}} dict or a "
            f"(name, arguments) pair, got {value!r}"
        )
    if not isinstance(name, str) or not name:
        raise ValueError(f"Reply.tool_calls[{i}] needs a non-empty str name, got {name!r}")
    if not isinstance(call_id, str):
        raise TypeError(f"Reply.tool_calls[{i}] id must be a str, got {call_id!r}")
    if isinstance(arguments, str):
        text = arguments
    elif isinstance(arguments, Mapping):
        text = json.dumps(dict(arguments))
    else:
        raise TypeError(f"Reply.tool_calls[{i}] arguments must be a dict or JSON text, got {arguments!r}")
    return EmulatedCall(call_id, name, text)


Action = Fault | Reply


@dataclass(slots=True)
class RecordedRequest:
    """One request as the emulator received it (header names lower-cased).

    ``status``, ``chunks_sent`` and ``outcome`` are filled in as the answer
    goes out: ``complete``, ``dropped`` (a scripted drop), ``disconnected``
    (the client hung up first) or still ``pending``.
    """

    provider: str | None
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: dict[str, Any] | None
    raw_body: bytes
    time: float
    model: str | None = None
    stream: bool = False
    status: int | None = None
    chunks_sent: int = 0
    outcome: Outcome = "pending"


@dataclass(eq=False)
class Rule:
    """A scripted behaviour and the requests it applies to.

    ``provider``/``model``/``path`` are matched exactly or as shell-style
    patterns (``"gpt-*"``); ``when`` is an extra predicate on the request.
    ``remaining`` counts down from ``times`` (None: forever); ``fired``
    counts how often it applied.
    """

    actions: tuple[Action, ...]
    provider: str | None = None
    model: str | None = None
    path: str | None = None
    remaining: int | None = 1
    when: Callable[[RecordedRequest], bool] | None = None
    fired: int = 0
    categories: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        self.categories = frozenset(a.category for a in self.actions)
        if len(self.categories) != len(self.actions):
            raise ValueError(
                "a rule can hold at most one action of each kind (reply, error, first-byte delay, "
                "chunk delay, drop/stream error); script separate rules instead"
            )

    def matches(self, rec: RecordedRequest) -> bool:
        if self.remaining == 0:
            return False
        if self.provider is not None and rec.provider != self.provider:
            return False
        if self.model is not None and (rec.model is None or not fnmatch.fnmatchcase(rec.model, self.model)):
            return False
        if self.path is not None and not fnmatch.fnmatchcase(rec.path, self.path):
            return False
        return self.when is None or self.when(rec)


@dataclass(slots=True)
class Plan:
    """The scripted behaviour for one request."""

    error: Fault | None = None
    reply: Reply | None = None
    first_byte: Fault | None = None
    chunk_delay: float = 0.0
    interrupt: Fault | None = None


_NON_GENERATION = frozenset({"response", "first_byte"})


def resolve(rules: list[Rule], rec: RecordedRequest, *, generation: bool) -> Plan:
    """Apply matching rules in FIFO order and consume them.

    Per category (reply, error response, first-byte delay, chunk delay,
    interruption) the oldest matching rule wins; an error response ends the
    search. Rules that only shape completions are skipped for other
    endpoints. Exhausted rules are removed from ``rules``.
    """
    plan = Plan()
    taken: set[str] = set()
    for rule in rules:
        if not rule.matches(rec):
            continue
        if not generation and not rule.categories <= _NON_GENERATION:
            continue
        if rule.categories & taken:
            continue
        taken |= rule.categories
        rule.fired += 1
        if rule.remaining is not None:
            rule.remaining -= 1
        for action in rule.actions:
            _take(plan, action)
        if "response" in rule.categories:
            break
    if any(rule.remaining == 0 for rule in rules):
        rules[:] = [rule for rule in rules if rule.remaining != 0]
    return plan


def _take(plan: Plan, action: Action) -> None:
    """Put ``action`` in the plan's slot for its category."""
    if isinstance(action, Reply):
        plan.reply = action
    elif action.category == "response":
        plan.error = action
    elif action.category == "first_byte":
        plan.first_byte = action
    elif action.category == "chunk_delay":
        plan.chunk_delay = action.seconds or 0.0
    else:
        plan.interrupt = action
