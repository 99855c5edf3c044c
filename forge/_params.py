"""The keyword arguments of a call, typed, so that a type checker catches a misspelt or mistyped one.

``llm.invoke(prompt, temprature=0.2)`` is refused at run time by
:func:`~forge.build_request`; these ``TypedDict`` s let ``mypy --strict`` (or
pyright) refuse it before the code runs::

    await reg.invoke("openai:gpt-4o-mini", "Hi", temprature=0.2)  # error: unexpected keyword
    await reg.invoke("openai:gpt-4o-mini", "Hi", max_tokens="lots")  # error: incompatible type

``RequestParams`` are what the provider receives; ``CallOptions`` are how forge
makes the call (they never reach the provider).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Literal, cast

from typing_extensions import TypedDict

from forge.types import ResponseFormat, Tool

if TYPE_CHECKING:
    from forge.streaming import StreamProgress

__all__ = [
    "CallOptions",
    "InvokeParams",
    "RequestParams",
    "StreamCallbackParams",
    "StreamOptions",
    "StreamParams",
    "StreamRequestParams",
    "request_params",
]

ReasoningEffort = Literal["none", "low", "medium", "high"]
ToolSpec = Tool | Mapping[str, object] | Callable[..., object]


class RequestParams(TypedDict, total=False):
    """Request parameters, sent to the provider (see :func:`~forge.build_request`)."""

    system: str | None
    max_tokens: int | None
    temperature: float | None
    top_p: float | None
    seed: int | None
    response_format: str | Mapping[str, object] | ResponseFormat | None
    stop: str | Sequence[str] | None
    tools: Sequence[ToolSpec] | None
    tool_choice: str | Mapping[str, object] | None
    extra: Mapping[str, object] | None
    reasoning_effort: ReasoningEffort | None
    reasoning_budget: int | None


class CallOptions(TypedDict, total=False):
    """How forge makes one call; never sent to the provider.

    ``timeout``: seconds the whole call may take, retries and their waits
    included (overrides the provider's ``deadline`` config key for this call;
    for a stream, the whole stream's time, see :class:`~forge.Stream`).
    ``max_attempts``: attempts for this call (overrides ``retry.max_attempts``;
    1 turns retries off).
    """

    timeout: float | None
    max_attempts: int | None


class InvokeParams(RequestParams, CallOptions, total=False):
    """Everything ``invoke`` accepts after the prompt."""


class StreamParams(RequestParams, total=False):
    """Request parameters plus ``max_attempts`` (a stream's ``timeout`` is a named keyword)."""

    max_attempts: int | None


class StreamOptions(TypedDict, total=False):
    """How a :class:`~forge.Stream` delivers text and when it gives up (see :class:`~forge.Stream`)."""

    buffer_size: int | None
    flush_interval: float | None
    first_token_timeout: float | None
    idle_timeout: float | None
    timeout: float | None
    on_progress: Callable[[StreamProgress], object] | None


class StreamCallbackParams(StreamParams, StreamOptions, total=False):
    """Everything ``stream_with_callback`` accepts after the callback."""


class StreamRequestParams(StreamCallbackParams, total=False):
    """Everything ``stream`` accepts after the prompt."""

    on_chunk: Callable[[str], object] | None


CALL_OPTIONS = ("timeout", "max_attempts")
STREAM_OPTIONS = (*StreamOptions.__annotations__, "on_chunk")
"""The keywords of ``stream`` that shape the Stream rather than the request."""


def request_params(params: Mapping[str, object]) -> RequestParams:
    """``params`` without the call options (the values are checked by ``build_request``)."""
    return cast(RequestParams, {k: v for k, v in params.items() if k not in CALL_OPTIONS})
