"""Core value types shared by every provider: messages, requests, responses, stream events.

Values are frozen dataclasses with slots. Vendor types never appear here; each
adapter in :mod:`forge.providers` maps its vendor's shapes onto these.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from forge.errors import ForgeError, ToolCallError

__all__ = [
    "BatchProvider",
    "BatchState",
    "BatchStatus",
    "CacheHints",
    "FallbackAttempt",
    "FinishReason",
    "Message",
    "Provider",
    "ReasoningBlock",
    "ReasoningEffort",
    "ReasoningKind",
    "Request",
    "Response",
    "ResponseFormat",
    "Role",
    "StreamEvent",
    "StreamEventKind",
    "Tool",
    "ToolCall",
    "Usage",
]

Role = Literal["system", "user", "assistant", "tool"]
FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "error"]
ReasoningEffort = Literal["none", "low", "medium", "high"]
ReasoningKind = Literal["thinking", "redacted", "encrypted", "signature"]
StreamEventKind = Literal[
    "text",
    "reasoning",
    "reasoning_done",
    "tool_call_start",
    "tool_call_delta",
    "tool_call_done",
    "usage",
    "finish",
]

_ROLES = ("system", "user", "assistant", "tool")


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A call the model asked for: ``arguments`` parsed, ``raw_arguments`` as sent.

    ``signature`` is an opaque token some providers attach to a call and require
    back with it in the next turn (Gemini's ``thoughtSignature``). ``item_id`` is
    the id of the output item that carried the call (OpenAI Responses ``fc_...``),
    sent back with it so the API can pair the call with its reasoning item.
    """

    id: str
    name: str
    arguments: Mapping[str, object] = field(default_factory=dict)
    raw_arguments: str = ""
    signature: str | None = None
    item_id: str | None = None

    @classmethod
    def from_json(
        cls,
        id: str,
        name: str,
        raw: str,
        *,
        signature: str | None = None,
        provider: str = "",
        model: str | None = None,
        item_id: str | None = None,
    ) -> ToolCall:
        """A call whose arguments arrived as JSON text (empty text means no arguments).

        Raises:
            ToolCallError: ``raw`` is not a JSON object; the error keeps ``raw``.
        """
        if not raw or raw.isspace():
            return cls(id, name, {}, raw, signature, item_id)
        try:
            value = json.loads(raw)
        except ValueError as exc:
            raise _bad_arguments(id, name, raw, provider, model, f"invalid JSON ({exc})") from exc
        if not isinstance(value, dict):
            raise _bad_arguments(id, name, raw, provider, model, f"a JSON {type(value).__name__}")
        return cls(id, name, value, raw, signature, item_id)


def _bad_arguments(
    call_id: str, name: str, raw: str, provider: str, model: str | None, what: str
) -> ToolCallError:
    shown = raw if len(raw) <= 200 else raw[:200] + "..."
    return ToolCallError(
        f"{provider or 'the model'} called tool {name!r} (call {call_id!r}) with arguments that are "
        f"not a JSON object but {what}: {shown!r}. The full text is in .raw_arguments.",
        raw_arguments=raw,
        tool_name=name,
        tool_call_id=call_id,
        provider=provider,
        model=model,
    )


@dataclass(frozen=True, slots=True)
class ReasoningBlock:
    """One piece of a reply's reasoning, exactly as the provider returned it.

    A follow-up turn must send these back unchanged and in place (Anthropic
    checks the signature of every thinking block; Gemini 3 the signature on each
    function call; OpenAI's stateless Responses calls need the encrypted items),
    so forge keeps them in order on :attr:`Response.reasoning_blocks` and
    :attr:`Message.reasoning_blocks`. They are provider-specific: an adapter
    sends back only the blocks whose ``provider`` is its own.

    ``kind``:

    - ``thinking``: visible thinking ``text`` (Anthropic ``thinking`` with its
      ``signature``; Gemini thought summary parts; Responses reasoning summaries).
    - ``redacted``: Anthropic ``redacted_thinking``; ``data`` is opaque, never text.
    - ``encrypted``: an OpenAI Responses ``reasoning`` item: ``id``, the summary
      texts in ``parts`` (and joined in ``text``), ``encrypted_content`` in ``data``.
    - ``signature``: a Gemini ``thoughtSignature`` that rode on an answer part.

    ``position`` is the block's index among the reply's content blocks (Anthropic),
    parts (Gemini) or output items (Responses), so it goes back in the same place;
    ``text_offset`` is how many characters of the answer text came before it
    (Anthropic), so a block between two text blocks goes back between them.
    """

    provider: str
    kind: ReasoningKind = "thinking"
    text: str = ""
    signature: str | None = None
    data: str | None = None
    id: str | None = None
    parts: tuple[str, ...] = ()
    position: int = 0
    text_offset: int = 0

    def __repr__(self) -> str:
        opaque = f", data=<{len(self.data)} chars>" if self.data else ""
        sig = ", signature=<set>" if self.signature else ""
        return (f"ReasoningBlock(provider={self.provider!r}, kind={self.kind!r}, text={self.text[:40]!r}"
                f"{sig}{opaque}, position={self.position})")


def own_blocks(blocks: Sequence[ReasoningBlock], provider: str) -> list[ReasoningBlock]:
    """The blocks ``provider`` issued, by position: signatures never go to another provider."""
    return sorted((b for b in blocks if b.provider == provider), key=lambda b: b.position)


@dataclass(frozen=True, slots=True)
class Tool:
    """A function the model may call, described by a JSON schema for its parameters."""

    name: str
    description: str = ""
    parameters: Mapping[str, object] = field(
        default_factory=lambda: {"type": "object", "properties": {}}
    )


@dataclass(frozen=True, slots=True)
class Message:
    """One turn of a conversation.

    ``tool_calls`` is set on assistant turns that called tools; ``tool_call_id``
    on ``tool`` turns that answer one. ``reasoning_blocks`` holds the reply's
    reasoning as the provider returned it (see :class:`ReasoningBlock`), sent back
    in place to the provider that made it and dropped for any other. ``cache_breakpoint`` marks the end of a
    stable prefix (a document sent with every call): providers with explicit
    prompt caching cache everything up to and including this message.
    """

    role: Role
    content: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None
    reasoning: str | None = None
    reasoning_signature: str | None = None
    cache_breakpoint: bool = False
    reasoning_blocks: tuple[ReasoningBlock, ...] = ()

    def __post_init__(self) -> None:
        if self.role not in _ROLES:
            raise ValueError(
                f"Message role {self.role!r} is not allowed; use one of {', '.join(_ROLES)}."
            )
        if not isinstance(self.content, str):
            raise TypeError(
                f"Message content must be a str, got {type(self.content).__name__}."
            )


@dataclass(frozen=True, slots=True)
class ResponseFormat:
    """What the reply must look like: free text, any JSON object, or JSON matching ``schema``."""

    type: Literal["text", "json", "json_schema"] = "text"
    schema: Mapping[str, object] | None = None
    name: str = "response"
    strict: bool = True


@dataclass(frozen=True, slots=True)
class CacheHints:
    """Where a request's stable prefix ends, for providers with explicit prompt caching.

    The optimizers fill this in (see docs/optimization.md); it can also be set by
    hand. Anthropic renders it as ``cache_control`` breakpoints, OpenAI as
    ``prompt_cache_key`` (and ``prompt_cache_breakpoint`` parts when the request
    opts into ``prompt_cache_options``); others ignore it.

    Args:
        system: cache the system prompt (and the tool definitions before it).
        tools: cache the tool definitions.
        ttl_seconds: how long the cached prefix should live (Anthropic: 300 or 3600).
        key: a routing key that groups requests sharing a prefix (OpenAI ``prompt_cache_key``).
    """

    system: bool = False
    tools: bool = False
    ttl_seconds: int | None = None
    key: str | None = None


@dataclass(frozen=True, slots=True)
class Request:
    """A normalized request, as adapters receive it. Build one with :func:`forge.llm.build_request`."""

    model: str
    messages: tuple[Message, ...]
    system: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    response_format: ResponseFormat | None = None
    stop: tuple[str, ...] = ()
    tools: tuple[Tool, ...] = ()
    tool_choice: str | None = None
    extra: Mapping[str, object] = field(default_factory=dict)
    reasoning_effort: ReasoningEffort | None = None
    reasoning_budget: int | None = None
    cache: CacheHints | None = None

    def prompt_text(self) -> str:
        """All input text joined (system first), for token estimates and cache keys."""
        parts = [self.system] if self.system else []
        parts.extend(m.content for m in self.messages)
        return "\n".join(parts)


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts as the provider reported them.

    ``input_tokens`` counts every input token, cached ones included;
    ``cached_input_tokens`` is the part read from a prompt cache and
    ``cache_write_tokens`` the part written to one.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cached_input_tokens + other.cached_input_tokens,
            self.cache_write_tokens + other.cache_write_tokens,
            self.reasoning_tokens + other.reasoning_tokens,
        )


@dataclass(frozen=True, slots=True)
class FallbackAttempt:
    """A link of a fallback chain that did not answer: which model, why, and what it cost.

    ``error`` is the error's class name (``OverloadedError``...), ``SlowCall`` for a
    link that had not answered when a later one did (``hedge_after``), or, for a link
    that was not called, ``skipped`` says why: ``breaker_open``, ``limiter_wait``
    or ``context_length`` (not marked ``larger_context``). ``attempts`` counts the
    requests sent to it (retries included; 0 when skipped).
    """

    model: str
    error: str
    elapsed_s: float
    attempts: int = 1
    skipped: str | None = None


@dataclass(frozen=True, slots=True)
class Response:
    """A complete reply, from a plain call or reassembled from a stream.

    ``cached`` is True when the reply came from forge's response cache (no
    provider call was made; ``cost_usd`` is 0).

    ``reasoning`` is the visible thinking text joined, for reading;
    ``reasoning_blocks`` is every block as returned (thinking with signatures,
    redacted or encrypted reasoning), what a follow-up turn sends back.
    ``reasoning_signature`` is the last signature only, kept for older code.
    """

    text: str
    provider: str
    model: str
    finish_reason: FinishReason | None = None
    usage: Usage = field(default_factory=Usage)
    tool_calls: tuple[ToolCall, ...] = ()
    reasoning: str | None = None
    reasoning_signature: str | None = None
    id: str | None = None
    cost_usd: float | None = None
    attempts: int = 1
    latency_s: float | None = None
    time_to_first_token_s: float | None = None
    chunks: int = 0
    raw: object = field(default=None, repr=False, compare=False)
    cached: bool = False
    fallback_attempts: tuple[FallbackAttempt, ...] = ()
    """The fallback links tried before the one that answered (see docs/fallback.md)."""
    reasoning_blocks: tuple[ReasoningBlock, ...] = ()

    def to_message(self) -> Message:
        """This reply as the assistant turn of a conversation (text, tool calls, reasoning).

        Append it to the messages, then one ``Message("tool", ...)`` per tool call,
        and send the list again::

            messages.append(reply.to_message())
        """
        return Message(
            "assistant",
            self.text,
            tool_calls=self.tool_calls,
            reasoning=self.reasoning,
            # The blocks carry every signature, each with the provider that issued it.
            reasoning_signature=None if self.reasoning_blocks else self.reasoning_signature,
            reasoning_blocks=self.reasoning_blocks,
        )


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """One normalized stream event.

    ``kind`` says which fields matter:

    - ``text`` / ``reasoning``: ``text`` is the delta. For ``reasoning``, ``index``
      is the reasoning block it belongs to (0, 1, ... in the reply), and the event
      may carry ``signature`` instead (Anthropic's ``signature_delta``, Gemini's
      ``thoughtSignature`` on a text part).
    - ``reasoning_done``: ``index`` and ``reasoning``, the complete
      :class:`ReasoningBlock` (signature, redacted or encrypted data included)
      as a follow-up turn sends it back; collected into ``Response.reasoning_blocks``.
    - ``tool_call_start``: ``index`` and ``tool_call`` (id and name; no arguments yet).
    - ``tool_call_delta``: ``index`` and ``text`` (a fragment of the JSON arguments).
    - ``tool_call_done``: ``index`` and the complete ``tool_call``.
    - ``usage``: ``usage`` (the latest totals; a later usage event supersedes an earlier one).
    - ``finish``: ``finish_reason``; ``text`` may carry the response id.

    ``raw`` is the decoded vendor payload the event came from.
    """

    kind: StreamEventKind
    text: str = ""
    index: int = 0
    tool_call: ToolCall | None = None
    usage: Usage | None = None
    finish_reason: FinishReason | None = None
    raw: object = field(default=None, repr=False, compare=False)
    signature: str | None = None
    reasoning: ReasoningBlock | None = None


def _slots_init(cls: type) -> Callable[..., None]:
    """An ``__init__`` for a frozen slots dataclass that sets its fields through the slots'
    descriptors: same signature, defaults and frozenness, about half the cost.

    A stream makes one StreamEvent per chunk, and the generated __init__ sets each
    field with ``object.__setattr__`` (about 1 us for StreamEvent on CPython 3.11).
    Built from ``dataclasses.fields`` as dataclasses builds its own, so a new field
    needs nothing here.
    """
    names = [f.name for f in dataclasses.fields(cls)]
    namespace: dict[str, Any] = {}
    params = ["self"]
    for f in dataclasses.fields(cls):
        namespace[f"_set_{f.name}"] = cls.__dict__[f.name].__set__
        if f.default is not dataclasses.MISSING:
            namespace[f"_default_{f.name}"] = f.default
            params.append(f"{f.name}=_default_{f.name}")
        elif f.default_factory is not dataclasses.MISSING:
            raise TypeError(f"{cls.__name__}.{f.name}: a default_factory needs the generated __init__")
        else:
            params.append(f.name)
    body = "\n".join(f"    _set_{name}(self, {name})" for name in names)
    exec(f"def __init__({', '.join(params)}):\n{body}\n", namespace)
    init: Callable[..., None] = namespace["__init__"]
    init.__annotations__ = dict(vars(cls)["__init__"].__annotations__)
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    return init


StreamEvent.__init__ = _slots_init(StreamEvent)  # type: ignore[method-assign]


def _layout_twin(cls: type) -> type:
    """A plain (not frozen) slots class with ``cls``'s slots in the same order.

    Its generated ``__init__`` stores each field straight into its slot (the
    interpreter's fastest attribute store), which a frozen class cannot do. An
    instance built through it and then given ``cls`` as its ``__class__`` (CPython
    allows that between classes of one memory layout) is an ordinary ``cls``:
    frozen, compared, hashed and printed as ``cls`` is.
    """
    twin = dataclasses.make_dataclass(
        f"_{cls.__name__}Slots",
        [(f.name, f.type, f.default) for f in dataclasses.fields(cls)],
        slots=True, eq=False, repr=False, match_args=False,
    )
    if vars(twin)["__slots__"] != vars(cls)["__slots__"]:  # pragma: no cover - a default_factory
        raise TypeError(f"{cls.__name__}'s layout twin has other slots")
    return twin


_EventSlots = _layout_twin(StreamEvent)


def stream_event(kind: StreamEventKind, text: str, raw: object, index: int = 0) -> StreamEvent:
    """``StreamEvent(kind, text, index=index, raw=raw)``, cheaper: the per-chunk events (text,
    reasoning and tool-argument deltas) of every adapter are made here.

    ``StreamEvent(...)`` sets its nine frozen slots with nine descriptor calls; this stores
    them as a plain class does and then sets the class, one step. ``tests/test_stream_event.py``
    checks the two are equal; ``benchmarks/bench_hotpath.py`` measures the per-chunk path.
    """
    ev = _EventSlots(kind, text, index, None, None, None, raw)
    ev.__class__ = StreamEvent
    return ev  # type: ignore[no-any-return]



@runtime_checkable
class Provider(Protocol):
    """What an adapter implements: one vendor client behind forge's types.

    Adapters translate and nothing more: no retry, rate limiting, metrics or
    token counting (those live once, in :class:`forge.LLM`).

    Optional: an adapter that sends a ``max_tokens`` of its own when the request
    sets none (Anthropic requires one) defines ``max_tokens_sent(request) -> int |
    None``, so the limiter reserves what is really sent.
    """

    name: str

    async def complete(self, request: Request) -> Response:
        """Send ``request`` and return the whole reply."""
        ...

    def stream(self, request: Request) -> AsyncIterator[StreamEvent]:
        """Send ``request`` streaming; the request goes out on the first ``__anext__``.

        Closing the iterator (``aclose()``) must release the HTTP response.
        """
        ...

    def classify(self, exc: BaseException) -> ForgeError:
        """Map a vendor or transport exception onto the forge error tree."""
        ...

    async def aclose(self) -> None:
        """Close the vendor client and its connections."""
        ...


BatchState = Literal["running", "completed", "failed", "cancelling", "cancelled", "expired"]


@dataclass(frozen=True, slots=True)
class BatchStatus:
    """Where a provider-side batch stands.

    ``state`` is normalized: ``running`` (queued, validating or in progress),
    ``completed`` (results ready), ``failed`` (the batch as a whole was
    rejected), ``cancelling``, ``cancelled`` or ``expired`` (the last two may
    still have results for the items that finished). Counts are the
    provider's; some report them only once the batch has ended.
    ``retry_after`` is the poll interval the server asked for, if any.
    """

    id: str
    state: BatchState
    total: int = 0
    succeeded: int = 0
    failed: int = 0
    message: str | None = None
    retry_after: float | None = None
    raw: object = field(default=None, repr=False, compare=False)

    @property
    def done(self) -> bool:
        """The batch will not change any more: collect its results."""
        return self.state in ("completed", "failed", "cancelled", "expired")


@runtime_checkable
class BatchProvider(Protocol):
    """A provider's batch API (half price, results within the provider's window).

    Only providers that have one implement it (OpenAI Batch, Anthropic Message
    Batches, Gemini batch mode); :class:`forge.batch.BatchProcessor` drives it.
    Methods raise forge errors, already classified.
    """

    name: str

    async def submit(self, requests: Sequence[tuple[str, Request]], *, marker: str) -> str:
        """Create one batch of ``(custom_id, request)`` pairs; return the provider's batch id.

        ``marker`` is recorded with the batch on the provider side (metadata,
        display name or custom ids) so that :meth:`find` can recognize it.
        """
        ...

    async def status(self, batch_id: str) -> BatchStatus:
        """The batch's current state and counts."""
        ...

    async def results(
        self, batch_id: str, custom_ids: Sequence[str]
    ) -> Mapping[str, Response | ForgeError]:
        """Every result of an ended batch, by custom id: the reply, or that item's error.

        ``custom_ids`` are the ids as submitted, in order (for results that
        come back in order without their id).
        """
        ...

    async def cancel(self, batch_id: str) -> BatchStatus:
        """Ask the provider to stop the batch; items already done keep their results."""
        ...

    async def find(self, marker: str, *, count: int, created_after: float) -> str | None:
        """The id of a batch submitted with ``marker`` (``count`` requests, created after
        ``created_after``, unix seconds), or None when the provider has none."""
        ...


def coerce_messages(prompt: str | Message | Sequence[Message | Mapping[str, object]]) -> tuple[Message, ...]:
    """Accept a prompt string, a Message, or a list of Messages / ``{"role", "content"}`` dicts."""
    if isinstance(prompt, str):
        return (Message("user", prompt),)
    if isinstance(prompt, Message):
        return (prompt,)
    if isinstance(prompt, (bytes, bytearray)) or not isinstance(prompt, Sequence):
        raise TypeError(
            "prompt must be a str, a Message, or a list of Messages or {'role': ..., 'content': ...} "
            f"dicts; got {type(prompt).__name__}."
        )
    out: list[Message] = []
    for i, item in enumerate(prompt):
        if isinstance(item, Message):
            out.append(item)
        elif isinstance(item, Mapping):
            out.append(_message_from_dict(item, i))
        else:
            raise TypeError(f"prompt[{i}] must be a Message or a dict, got {type(item).__name__}.")
    if not out:
        raise ValueError("prompt is an empty list; pass at least one message.")
    return tuple(out)


def _message_from_dict(item: Mapping[str, object], i: int) -> Message:
    """A ``{"role", "content"}`` dict, with ``tool_call_id`` / ``name`` / ``tool_calls`` when present.

    ``tool_calls`` items may be :class:`ToolCall` values, ``{"id", "name", "arguments"}``
    dicts or OpenAI's ``{"id", "function": {"name", "arguments"}}`` shape.
    """
    role = item.get("role")
    content = item.get("content") or ""
    if role not in _ROLES or not isinstance(content, str):
        raise TypeError(
            f"prompt[{i}] must have 'role' in {_ROLES} and a str 'content'; got {dict(item)!r}."
        )
    call_id = item.get("tool_call_id")
    name = item.get("name")
    if call_id is not None and not isinstance(call_id, str):
        raise TypeError(f"prompt[{i}]['tool_call_id'] must be a str, got {call_id!r}.")
    if name is not None and not isinstance(name, str):
        raise TypeError(f"prompt[{i}]['name'] must be a str, got {name!r}.")
    raw_calls = item.get("tool_calls") or ()
    if not isinstance(raw_calls, Sequence) or isinstance(raw_calls, (str, bytes)):
        raise TypeError(f"prompt[{i}]['tool_calls'] must be a list, got {type(raw_calls).__name__}.")
    calls = tuple(_tool_call_from(c, f"prompt[{i}]['tool_calls'][{j}]") for j, c in enumerate(raw_calls))
    return Message(role, content, tool_calls=calls, tool_call_id=call_id, name=name)  # type: ignore[arg-type]


def _tool_call_from(value: object, where: str) -> ToolCall:
    if isinstance(value, ToolCall):
        return value
    if not isinstance(value, Mapping):
        raise TypeError(f"{where} must be a forge.ToolCall or a dict, got {type(value).__name__}.")
    spec = value.get("function") if isinstance(value.get("function"), Mapping) else value
    assert isinstance(spec, Mapping)
    call_id, name, args = value.get("id"), spec.get("name"), spec.get("arguments", {})
    if not isinstance(call_id, str) or not isinstance(name, str) or not name:
        raise TypeError(f"{where} needs a str 'id' and a non-empty 'name'; got {dict(value)!r}.")
    if isinstance(args, str):
        try:
            parsed = json.loads(args) if args.strip() else {}
        except ValueError:
            raise ValueError(f"{where} 'arguments' is not valid JSON: {args!r}.") from None
        if not isinstance(parsed, dict):
            raise ValueError(f"{where} 'arguments' must encode a JSON object, got {args!r}.")
        return ToolCall(call_id, name, parsed, args)
    if not isinstance(args, Mapping):
        raise TypeError(f"{where} 'arguments' must be a dict or a JSON string, got {args!r}.")
    return ToolCall(call_id, name, dict(args))
