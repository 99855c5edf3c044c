"""The interface one vendor's wire dialect implements, and the values it trades in.

A :class:`Dialect` knows its routes, how to read a chat request, how to write
a completion (JSON or stream events) and how to write its errors and
headers. Everything else (rules, limits, timing, sockets) is shared. New
endpoints (Responses API, batches, cached contents) are new routes with a
handler returning a :class:`JsonResponse`.
"""

from __future__ import annotations

import re
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from .caching import CacheState, CacheUse
from .http import HttpRequest
from .limits import Admission, seconds_header
from .signatures import Signatures

if TYPE_CHECKING:
    from .batch import BatchQueue

ErrorKind = Literal[
    "invalid_request",
    "invalid_json",
    "invalid_key",
    "auth",
    "permission",
    "not_found",
    "context_length",
    "too_large",
    "rate_limit",
    "overloaded",
    "server",
    "unavailable",
    "timeout",
]

JsonBody = dict[str, Any]


@dataclass(frozen=True, slots=True)
class ErrorSpec:
    """A vendor-neutral description of an error answer; dialects render it."""

    kind: ErrorKind
    status: int
    message: str | None = None  # None: the vendor's usual wording
    retry_after: float | None = None
    retry_after_ms: float | None = None
    admission: Admission | None = None  # rate-limit state for the headers
    headers: tuple[tuple[str, str], ...] = ()


class ApiError(Exception):
    """Raised while handling a request; answered as ``spec`` in the vendor's shape."""

    def __init__(self, spec: ErrorSpec) -> None:
        super().__init__(spec.message or spec.kind)
        self.spec = spec


def invalid(message: str) -> ApiError:
    return ApiError(ErrorSpec("invalid_request", 400, message))


@dataclass(slots=True)
class ChatCall:
    """What the emulator needs from a chat request, whatever the vendor."""

    model: str
    stream: bool
    max_tokens: int | None
    input_chars: int
    last_user_text: str
    include_usage: bool = False  # OpenAI stream_options.include_usage
    sse: bool = True  # Gemini: alt=sse (else a streamed JSON array)
    tools: tuple[ToolSpec, ...] = ()  # the functions the request offers, in order
    tool_choice: str | None = None  # "auto" | "none" | "required" | a tool name (None: not sent)
    after_tool: bool = False  # the last input is a tool result
    tool_result_text: str = ""  # that result's text
    reasoning: bool = False  # the request turns reasoning on (reasoning tokens are reported)
    show_reasoning: bool = False  # ... and asks to see it (thinking / thought summaries)
    api: str = "chat"  # OpenAI: "chat" (Chat Completions) or "responses"
    notes: dict[str, Any] = field(default_factory=dict)  # per-call dialect state (e.g. Ollama load time)


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A function a request offers the model: its name and JSON-schema parameters."""

    name: str
    parameters: dict[str, Any]


@dataclass(frozen=True, slots=True)
class EmulatedCall:
    """A tool call the emulated model makes; ``arguments`` is the JSON text it "wrote"."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class ReplyExtras:
    """What a reply carries beside its text: reasoning pieces, a signature, tool calls.

    Renderers put reasoning before the answer text and tool calls after it;
    ``has_text`` False means the answer has no text at all (tool calls only).
    ``signature`` is a scripted one (None: the dialect issues its own, see
    ``signatures.py``). ``blocks``: the texts of separate thinking blocks
    (Anthropic; empty: one block with all the reasoning); ``redacted``: add a
    ``redacted_thinking`` block after them.
    """

    reasoning: tuple[str, ...] = ()
    signature: str | None = None
    calls: tuple[EmulatedCall, ...] = ()
    has_text: bool = True
    blocks: tuple[str, ...] = ()
    redacted: bool = False


NO_EXTRAS = ReplyExtras()


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts; ``input_tokens`` includes cached and cache-write tokens."""

    input_tokens: int
    output_tokens: int
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    cache_write_1h_tokens: int = 0  # the part of cache_write_tokens kept for an hour (Anthropic)


@dataclass(frozen=True, slots=True)
class JsonResponse:
    """A complete (non-streamed) answer."""

    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()
    content_type: str = "application/json"


class StreamRenderer(ABC):
    """Encodes one streamed completion as wire events (SSE or NDJSON).

    ``chunk`` is the hot path: it receives the chunk text already encoded as
    a JSON string literal and should be one or two bytes operations.
    """

    content_type: str = "text/event-stream; charset=utf-8"

    @abstractmethod
    def head(self) -> list[bytes]:
        """Events before the first content chunk."""

    @abstractmethod
    def chunk(self, text_json: bytes, output_tokens: int, finish: str | None) -> bytes:
        """One content event; ``finish`` is set on the last one only."""

    @abstractmethod
    def tail(self, finish: str, usage: Usage, emitted: int) -> list[bytes]:
        """Events after the last content chunk (``emitted`` content chunks were sent)."""

    @abstractmethod
    def error_event(self, spec: ErrorSpec) -> bytes:
        """An in-band error event that ends the stream."""


JsonHandler = Callable[[HttpRequest, "re.Match[str]", "JsonBody | None"], JsonResponse]


@dataclass(frozen=True, slots=True)
class Route:
    """``method`` + a full-match ``pattern`` on the path.

    ``handler`` None means a chat completion (JSON or streamed, decided by the
    dialect's ``parse_chat``); otherwise it answers with a JsonResponse.
    """

    method: str
    pattern: re.Pattern[str]
    handler: JsonHandler | None = None
    raw_body: bool = False  # the handler reads a non-JSON body (a multipart upload) itself
    # Extra test on the request, for paths two vendors share (``/v1/batches``: OpenAI and Gemini).
    accepts: Callable[[HttpRequest], bool] | None = None


class IdSource:
    """Deterministic ids: a counter shared by all dialects of one emulator."""

    __slots__ = ("_n",)

    def __init__(self) -> None:
        self._n = 0

    def next(self) -> int:
        self._n += 1
        return self._n

    def reset(self) -> None:
        self._n = 0


class Dialect(ABC):
    """One vendor's wire protocol."""

    name: ClassVar[str]
    finish_reasons: ClassVar[dict[str, str]]  # normalized -> vendor
    call_id_prefix: ClassVar[str] = "call_emu"  # ids of generated tool calls ("" : the vendor sends none)
    # The emulator's clock (set by the Emulator): lifetimes of caches and other stateful objects.
    clock: Callable[[], float] = staticmethod(time.monotonic)
    # The emulator's batch jobs and uploaded files (set by the Emulator), for the batch endpoints.
    batches: BatchQueue
    # Issues and checks reasoning signatures (set by the Emulator: one secret per emulator).
    signatures: Signatures = Signatures()

    def __init__(self, ids: IdSource) -> None:
        self.ids = ids

    @abstractmethod
    def routes(self) -> list[Route]: ...

    @abstractmethod
    def describe(
        self, req: HttpRequest, match: re.Match[str], body: JsonBody | None
    ) -> tuple[str | None, bool]:
        """``(model, stream)`` for the request log, before any validation."""

    @abstractmethod
    def parse_chat(self, req: HttpRequest, match: re.Match[str], body: JsonBody | None) -> ChatCall:
        """Read a chat request; raise :class:`ApiError` for what the vendor would reject."""

    @abstractmethod
    def completion(
        self, call: ChatCall, text: str, finish: str, usage: Usage, extras: ReplyExtras = NO_EXTRAS
    ) -> bytes:
        """The JSON body of a non-streamed completion (with ``extras``' reasoning and tool calls)."""

    @abstractmethod
    def stream(self, call: ChatCall, usage: Usage, extras: ReplyExtras = NO_EXTRAS) -> StreamRenderer:
        """A renderer for one streamed completion (``usage.output_tokens`` unknown yet).

        The renderer emits ``extras``' reasoning in :meth:`StreamRenderer.head`
        and its tool calls in :meth:`StreamRenderer.tail` (unless the finish is
        the vendor's length reason: a reply cut short makes no calls).
        """

    @abstractmethod
    def error(self, spec: ErrorSpec, model: str | None, req: HttpRequest | None = None) -> JsonResponse:
        """The vendor's error answer for ``spec`` (``req``: the request, when known)."""

    @abstractmethod
    def success_headers(self, admission: Admission) -> list[tuple[str, str]]:
        """Request id and rate-limit headers of a successful answer."""

    @abstractmethod
    def api_key(self, req: HttpRequest) -> str | None:
        """The credential the client sent, if any."""

    def reset(self) -> None:  # noqa: B027 - an optional hook, not an abstract method
        """Forget per-emulator state (a hook for stateful endpoints: files, batches, caches)."""

    @property
    def caches(self) -> CacheState:
        """This dialect's prompt caches (created on first use; cleared by ``Emulator.reset``)."""
        state = self.__dict__.get("_caches")
        if state is None:
            state = self.__dict__["_caches"] = CacheState()
        return state

    def cache_usage(self, call: ChatCall, body: JsonBody | None, input_tokens: int) -> CacheUse:
        """How much of an admitted chat call's input was read from / written to a prompt cache."""
        return CacheUse()

    def vendor_finish(self, finish: str) -> str:
        return self.finish_reasons.get(finish, finish)

    # -- helpers shared by the dialects -------------------------------------------

    @staticmethod
    def retry_headers(spec: ErrorSpec) -> list[tuple[str, str]]:
        headers: list[tuple[str, str]] = []
        if spec.retry_after is not None:
            headers.append(("retry-after", seconds_header(spec.retry_after)))
        if spec.retry_after_ms is not None:
            headers.append(("retry-after-ms", seconds_header(spec.retry_after_ms)))
        return headers

    @staticmethod
    def bearer(req: HttpRequest) -> str | None:
        value = req.headers.get("authorization", "")
        scheme, _, token = value.partition(" ")
        return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def messages_text(messages: object) -> Iterator[tuple[str, str]]:
    """``(role, text)`` for each message of an OpenAI/Anthropic/Ollama list."""
    from .text import content_text

    if not isinstance(messages, list):
        return
    for message in messages:
        if isinstance(message, dict):
            role = message.get("role")
            yield (role if isinstance(role, str) else "", content_text(message.get("content")))


def int_field(body: JsonBody, *names: str) -> int | None:
    """The first of ``names`` present in ``body`` as a non-negative int (400 otherwise)."""
    for name in names:
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise invalid(f"Invalid value for '{name}': expected a non-negative integer, got {value!r}.")
        return value
    return None
