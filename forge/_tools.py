"""Tool schemas: a :class:`~forge.types.Tool` from a typed Python function, a dict or a Tool.

``tool_from_function`` is public (re-exported by :mod:`forge`); ``tool_spec`` is what
:func:`forge.build_request` applies to each entry of ``tools=[...]``.
"""

from __future__ import annotations

import enum
import inspect
import re
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

from forge.types import Tool

__all__ = ["tool_from_function", "tool_spec"]


def tool_spec(value: object, i: int) -> Tool:
    """``tools[i]`` as a :class:`Tool`: a Tool, a name/description/parameters dict (OpenAI's shape too)
    or a typed function."""
    if isinstance(value, Tool):
        return value
    if isinstance(value, Mapping):
        return _tool_from_mapping(value, i)
    if callable(value):
        return tool_from_function(value)
    raise TypeError(
        f"tools[{i}] must be a forge.Tool, a dict with name/description/parameters, or a function; "
        f"got {type(value).__name__}."
    )


def _tool_from_mapping(value: Mapping[str, Any], i: int) -> Tool:
    spec: Mapping[str, Any] = value
    if value.get("type") == "function" and isinstance(value.get("function"), Mapping):
        spec = value["function"]
    name = spec.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError(f"tools[{i}] needs a non-empty 'name'; got {dict(value)!r}.")
    params = spec.get("parameters", spec.get("input_schema", {"type": "object", "properties": {}}))
    if not isinstance(params, Mapping):
        raise ValueError(f"tools[{i}] 'parameters' must be a JSON schema object; got {params!r}.")
    return Tool(name, str(spec.get("description", "")), dict(params))


_JSON_TYPES: dict[object, str] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    list: "array",
    tuple: "array",
    set: "array",
    frozenset: "array",
    dict: "object",
}


def _enum_schema(values: list[object]) -> dict[str, object]:
    kinds = {_JSON_TYPES.get(type(v)) for v in values}
    schema: dict[str, object] = {"enum": values}
    if len(kinds) == 1 and None not in kinds:
        schema["type"] = kinds.pop()
    return schema


def _annotated_schema(args: tuple[object, ...]) -> dict[str, object]:
    notes = [a for a in args[1:] if isinstance(a, str)]
    inner = _schema_for(args[0])
    return {**inner, "description": " ".join(notes)} if notes else inner


def _union_schema(args: tuple[object, ...]) -> dict[str, object]:
    members = [a for a in args if a is not type(None)]
    if len(members) == 1:  # Optional[X]: optionality is the default value's business
        return _schema_for(members[0])
    return {"anyOf": [_schema_for(m) for m in members]}


def _literal_schema(args: tuple[object, ...]) -> dict[str, object]:
    return _enum_schema(list(args))


# Hints whose schema comes from their arguments, by typing.get_origin(hint).
_FORMS: dict[object, Callable[[tuple[object, ...]], dict[str, object]]] = {
    typing.Annotated: _annotated_schema,
    typing.Union: _union_schema,
    types.UnionType: _union_schema,
    typing.Literal: _literal_schema,
}


def _schema_for(hint: object) -> dict[str, object]:
    """The JSON schema of a parameter's type hint (``str`` when nothing better is known)."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    form = _FORMS.get(origin)
    if form is not None:
        return form(args)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return _enum_schema([m.value for m in hint])
    if hint is None or hint is type(None):
        return {"type": "null"}
    kind = _JSON_TYPES.get(origin if origin is not None else hint)
    if kind is None:
        return {"type": "string"}
    schema: dict[str, object] = {"type": kind}
    if kind == "array" and args and args[-1] is not Ellipsis:
        schema["items"] = _schema_for(args[0])
    elif kind == "object" and len(args) == 2:
        schema["additionalProperties"] = _schema_for(args[1])
    return schema


_ARG_LINE = re.compile(r"^\s*(\*{0,2}\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")


def _docstring_args(doc: str) -> dict[str, str]:
    """Parameter descriptions from a Google-style ``Args:`` section."""
    out: dict[str, str] = {}
    lines = doc.splitlines()
    inside = False
    current: str | None = None
    indent = 0
    for line in lines:
        stripped = line.strip()
        if not inside:
            inside = stripped in ("Args:", "Arguments:", "Parameters:")
            continue
        if not stripped:
            current = None
            continue
        level = len(line) - len(line.lstrip())
        if current is not None and level > indent:
            out[current] = f"{out[current]} {stripped}".strip()
            continue
        match = _ARG_LINE.match(line)
        if match is None or (out and level < indent):
            break
        current, indent = match.group(1).lstrip("*"), level
        out[current] = match.group(2).strip()
    return out


def tool_from_function(fn: Callable[..., object]) -> Tool:
    """Build a :class:`Tool` from a typed Python function: its name, docstring and signature.

    The first paragraph of the docstring is the description; a Google-style
    ``Args:`` section describes the parameters. Parameters without a default are
    required. Supported hints: ``str``, ``int``, ``float``, ``bool``,
    ``list[X]``, ``dict[str, X]``, ``X | None``, unions, ``Literal[...]``,
    ``enum.Enum`` subclasses and ``Annotated[X, "description"]``; anything
    else is described as a string.

    Example::

        def get_weather(city: str, unit: Literal["C", "F"] = "C") -> str:
            \"\"\"Current weather for a city.

            Args:
                city: the city name, e.g. "Paris".
            \"\"\"

        tool = tool_from_function(get_weather)
    """
    hints = typing.get_type_hints(fn, include_extras=True)
    doc = inspect.getdoc(fn) or ""
    described = _docstring_args(doc)
    props: dict[str, object] = {}
    required: list[str] = []
    for name, param in inspect.signature(fn).parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        schema = _schema_for(hints.get(name, str))
        if name in described and "description" not in schema:
            schema = {**schema, "description": described[name]}
        props[name] = schema
        if param.default is param.empty:
            required.append(name)
    schema_out: dict[str, object] = {"type": "object", "properties": props}
    if required:
        schema_out["required"] = required
    summary = doc.split("\n\n")[0].strip()
    return Tool(fn.__name__, summary, schema_out)
