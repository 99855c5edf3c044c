"""Request building: a prompt and request parameters, checked one parameter at a time, into a Request.

Each parameter has one small validator in ``_VALIDATORS``; :func:`build_request`
runs them in the table's order (the order in which errors are reported) over a
``_Draft`` and builds the frozen :class:`~forge.types.Request` from it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, cast

from typing_extensions import Unpack

from forge._params import RequestParams
from forge._tools import tool_spec
from forge.types import Message, ReasoningEffort, Request, ResponseFormat, Tool, coerce_messages

__all__ = ["Prompt", "build_request", "check_number"]

Prompt = str | Message | Sequence[Message | Mapping[str, object]]

# In the order the "unknown parameter" error lists them.
_REQUEST_PARAMS = (
    "system",
    "max_tokens",
    "temperature",
    "top_p",
    "seed",
    "response_format",
    "stop",
    "tools",
    "tool_choice",
    "extra",
    "reasoning_effort",
    "reasoning_budget",
)
_EFFORTS = ("none", "low", "medium", "high")


@dataclass(slots=True)
class _Draft:
    """A request under construction: the validators fill it in, parameter by parameter."""

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
    extra: dict[str, object] = field(default_factory=dict)
    reasoning_effort: ReasoningEffort | None = None
    reasoning_budget: int | None = None


def check_number(name: str, value: object, lo: float, hi: float | None) -> float:
    """``value`` as a float within [lo, hi] (no upper bound when ``hi`` is None), else a clear error."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}.")
    if value < lo or (hi is not None and value > hi):
        bound = f"between {lo:g} and {hi:g}" if hi is not None else f">= {lo:g}"
        raise ValueError(f"{name} must be {bound}, got {value!r}.")
    return float(value)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _system(value: object, draft: _Draft) -> None:
    if value is not None and not isinstance(value, str):
        raise TypeError(f"system must be a str, got {type(value).__name__}.")
    system = value
    # A system message in the list is folded into `system`, so every adapter sees one shape.
    sys_parts = [m.content for m in draft.messages if m.role == "system"]
    if sys_parts:
        draft.messages = tuple(m for m in draft.messages if m.role != "system")
        system = "\n\n".join([*([system] if system else []), *sys_parts])
        if not draft.messages:
            raise ValueError("prompt has only system messages; add at least one user message.")
    draft.system = system


def _max_tokens(value: object, draft: _Draft) -> None:
    if value is not None and (not _is_int(value) or cast(int, value) < 1):
        raise ValueError(f"max_tokens must be a positive int, got {value!r}.")
    draft.max_tokens = cast("int | None", value)


def _seed(value: object, draft: _Draft) -> None:
    if value is not None and not _is_int(value):
        raise TypeError(f"seed must be an int, got {value!r}.")
    draft.seed = cast("int | None", value)


def _stop(value: object, draft: _Draft) -> None:
    if value is None:
        draft.stop = ()
    elif isinstance(value, str):
        draft.stop = (value,)
    elif isinstance(value, Sequence) and all(isinstance(s, str) for s in value):
        draft.stop = tuple(value)
    else:
        raise TypeError(f"stop must be a str or a list of str, got {value!r}.")


def _tools(value: object, draft: _Draft) -> None:
    tools = value or ()
    if not isinstance(tools, Sequence) or isinstance(tools, (str, bytes)):
        raise TypeError(f"tools must be a list, got {type(tools).__name__}.")
    draft.tools = tuple(tool_spec(t, i) for i, t in enumerate(tools))


def _tool_choice(value: object, draft: _Draft) -> None:
    if isinstance(value, Mapping):  # OpenAI's {"type": "function", "function": {"name": ...}}
        function = value.get("function")
        named = function.get("name") if isinstance(function, Mapping) else value.get("name")
        value = named if isinstance(named, str) else value
    if value is None:
        return
    if not isinstance(value, str) or not value:
        raise TypeError(f"tool_choice must be 'auto', 'none', 'required' or a tool name; got {value!r}.")
    names = {t.name for t in draft.tools}
    if value not in ("auto", "none", "required") and value not in names:
        raise ValueError(
            f"tool_choice {value!r} is not 'auto', 'none', 'required' or one of the tools "
            f"({', '.join(sorted(names)) or 'none given'})."
        )
    draft.tool_choice = value


def _extra(value: object, draft: _Draft) -> None:
    extra = value or {}
    if not isinstance(extra, Mapping):
        raise TypeError(f"extra must be a dict of vendor fields, got {type(extra).__name__}.")
    draft.extra = dict(extra)


def _reasoning_effort(value: object, draft: _Draft) -> None:
    if value is not None and value not in _EFFORTS:
        raise ValueError(f"reasoning_effort must be one of {', '.join(map(repr, _EFFORTS))}; got {value!r}.")
    draft.reasoning_effort = cast("ReasoningEffort | None", value)


def _reasoning_budget(value: object, draft: _Draft) -> None:
    if value is not None and (not _is_int(value) or cast(int, value) < 0):
        raise ValueError(
            f"reasoning_budget must be a number of tokens >= 0 (0 turns reasoning off); got {value!r}."
        )
    draft.reasoning_budget = cast("int | None", value)


def _temperature(value: object, draft: _Draft) -> None:
    draft.temperature = None if value is None else check_number("temperature", value, 0.0, 2.0)


def _top_p(value: object, draft: _Draft) -> None:
    draft.top_p = None if value is None else check_number("top_p", value, 0.0, 1.0)


def _response_format(value: object, draft: _Draft) -> None:
    draft.response_format = response_format(value)


def response_format(value: object) -> ResponseFormat | None:
    """``response_format=`` as a :class:`ResponseFormat`: 'text', 'json', a JSON schema or OpenAI's shapes."""
    if value is None or isinstance(value, ResponseFormat):
        return value
    if isinstance(value, str):
        if value in _NAMED_FORMATS:
            return ResponseFormat(_NAMED_FORMATS[value])
    elif isinstance(value, Mapping):
        found = _format_from_mapping(value)
        if found is not None:
            return found
    raise ValueError(
        "response_format must be 'text', 'json', a JSON schema dict (e.g. {'type': 'object', "
        f"'properties': {{...}}}}) or a forge.ResponseFormat; got {value!r}."
    )


_NAMED_FORMATS: dict[str, Literal["text", "json"]] = {"text": "text", "json": "json", "json_object": "json"}


def _format_from_mapping(value: Mapping[str, object]) -> ResponseFormat | None:
    kind = value.get("type")
    if kind == "json_object":
        return ResponseFormat("json")
    spec = value.get("json_schema")
    if kind == "json_schema" and isinstance(spec, Mapping):
        schema = spec.get("schema")
        if isinstance(schema, Mapping):
            return ResponseFormat(
                "json_schema",
                schema=dict(schema),
                name=str(spec.get("name", "response")),
                strict=bool(spec.get("strict", True)),
            )
        return None
    if kind is not None or "properties" in value:
        return ResponseFormat("json_schema", schema=dict(value))
    return None


# One validator per request parameter, run in this order (so that of several bad
# parameters the same one is reported as before the table existed).
_VALIDATORS: dict[str, Callable[[object, _Draft], None]] = {
    "system": _system,
    "max_tokens": _max_tokens,
    "seed": _seed,
    "stop": _stop,
    "tools": _tools,
    "tool_choice": _tool_choice,  # after tools: a tool name must be one of them
    "extra": _extra,
    "reasoning_effort": _reasoning_effort,
    "reasoning_budget": _reasoning_budget,
    "temperature": _temperature,
    "top_p": _top_p,
    "response_format": _response_format,
}


def build_request(model: str, prompt: Prompt, **params: Unpack[RequestParams]) -> Request:
    """Validate ``prompt`` and request parameters into a :class:`Request`.

    Parameters (all optional): ``system``, ``max_tokens``, ``temperature``,
    ``top_p``, ``seed``, ``response_format``, ``stop``; ``tools`` (each a
    :class:`Tool`, a ``{"name", "description", "parameters"}`` dict, OpenAI's
    ``{"type": "function", "function": {...}}`` or a typed function, see
    :func:`tool_from_function`); ``tool_choice`` (``"auto"``, ``"none"``,
    ``"required"`` or a tool name); ``reasoning_effort`` (``"none"``, ``"low"``,
    ``"medium"``, ``"high"``) and ``reasoning_budget`` (thinking tokens, 0 =
    off), mapped per provider as docs/tools.md describes; ``extra`` (vendor
    fields merged into the call).

    Raises:
        TypeError / ValueError: an unknown parameter or a bad value, with what is allowed.
    """
    unknown = [k for k in params if k not in _VALIDATORS]
    if unknown:
        raise TypeError(
            f"Unknown request parameter(s) {', '.join(map(repr, unknown))}. Allowed: "
            f"{', '.join(_REQUEST_PARAMS)}; pass vendor-specific fields in extra={{...}}."
        )
    draft = _Draft(coerce_messages(prompt))
    given: Mapping[str, object] = params
    for name, validate in _VALIDATORS.items():
        validate(given.get(name), draft)
    return Request(
        model=model,
        messages=draft.messages,
        system=draft.system,
        max_tokens=draft.max_tokens,
        temperature=draft.temperature,
        top_p=draft.top_p,
        seed=draft.seed,
        response_format=draft.response_format,
        stop=draft.stop,
        tools=draft.tools,
        tool_choice=draft.tool_choice,
        extra=draft.extra,
        reasoning_effort=draft.reasoning_effort,
        reasoning_budget=draft.reasoning_budget,
    )
