"""Tool calls and reasoning in replies: the default rule, generated arguments, reasoning text.

The rule (used when no scripted :class:`Reply` applies): a request that offers
tools gets a call instead of text when

* ``tool_choice`` names a tool (that one is called) or is ``required`` (the
  first tool), or
* ``tool_choice`` is ``auto`` or not sent, and the last input is not a tool
  result (the first tool is called).

``tool_choice="none"`` never calls. The arguments fill every required
parameter from its schema (:func:`example_arguments`). After a tool result the
text answer quotes it: ``"Hello from the emulator (openai, gpt-x). The tool
said: <result, first 60 chars>"``.

A request that turns reasoning on and asks to see it (Anthropic ``thinking``,
Gemini ``includeThoughts``, Ollama ``think``, a Responses ``reasoning.summary``)
gets the reasoning text ``"Thinking about: <last user text>"`` before the
answer; one that only turns it on (OpenAI ``reasoning_effort``, a Gemini
budget) gets just its reasoning tokens.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from .base import ChatCall, EmulatedCall, ReplyExtras, ToolSpec
from .script import Reply
from .text import chunk_tokens, split_text

_ECHO_LIMIT = 60
# platform.claude.com/docs/en/build-with-claude/extended-thinking ("thinking redaction"): a prompt
# holding this string gets a redacted_thinking block, for testing that clients send it back.
REDACTED_TRIGGER = "ANTHROPIC_MAGIC_STRING_TRIGGER_REDACTED_THINKING_46C9A13E193C177646C7398A98432ECCCE4C1253"
_REASONING_PIECES = 4
_SCALARS: dict[str, Any] = {
    "string": "example",
    "integer": 1,
    "number": 1.0,
    "boolean": True,
    "array": [],
    "object": {},
    "null": None,
}


def example_value(schema: object) -> Any:
    """A value that fits ``schema``: its default, first enum value, or one per type."""
    if not isinstance(schema, Mapping):
        return "example"
    if "default" in schema:
        return schema["default"]
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[0]
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            return example_value(options[0])
    kind = _schema_type(schema)
    if kind == "object" or (kind is None and "properties" in schema):
        return example_arguments(schema)
    if kind == "array" and isinstance(schema.get("items"), Mapping):
        return [example_value(schema["items"])]
    return _SCALARS.get(kind if isinstance(kind, str) else "string", "example")


def _schema_type(schema: Mapping[str, Any]) -> object:
    """The schema's ``type``, lower case; of a list of types, the first that is not ``null``."""
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if isinstance(kind, str):
        kind = kind.lower()  # Gemini's OpenAPI schemas say STRING, OBJECT...
    return kind


def example_arguments(schema: object) -> dict[str, Any]:
    """Arguments for a function with JSON-schema ``schema``: every required property filled in."""
    if not isinstance(schema, Mapping):
        return {}
    props = schema.get("properties")
    props = props if isinstance(props, Mapping) else {}
    required = schema.get("required")
    names = [n for n in required if n in props] if isinstance(required, list) else []
    return {name: example_value(props[name]) for name in names}


def called_tool(call: ChatCall) -> ToolSpec | None:
    """Which tool the default rule calls for this request, if any."""
    if not call.tools or call.tool_choice == "none":
        return None
    choice = call.tool_choice
    if choice not in (None, "auto", "required"):
        return next((t for t in call.tools if t.name == choice), None)
    if choice == "required" or not call.after_tool:
        return call.tools[0]
    return None


def tool_reply_text(provider: str, model: str, result: str) -> str:
    said = " ".join(result.split())
    if len(said) > _ECHO_LIMIT:
        said = said[: _ECHO_LIMIT - 3] + "..."
    return f"Hello from the emulator ({provider}, {model}). The tool said: {said or 'nothing'}"


def plan_extras(
    provider: str, call: ChatCall, reply: Reply | None, *, call_prefix: str, next_id: Callable[[], int]
) -> tuple[ReplyExtras, Reply, int]:
    """The reply's reasoning and tool calls, the Reply to answer with, and its reasoning tokens.

    ``reply`` is the scripted Reply (None: the default rules apply).
    ``next_id()`` returns a fresh integer for ids.
    """
    blocks: tuple[str, ...] = ()
    if reply is not None:
        calls, blocks, reasoning = _scripted_extras(reply)
    else:
        calls, reasoning, reply = _default_extras(provider, call)
    calls = _with_ids(calls, call_prefix, next_id)
    pieces = split_text(reasoning, _REASONING_PIECES) if reasoning else []
    tokens = reply.reasoning_tokens or sum(chunk_tokens(p) for p in pieces)
    shown = tuple(pieces) if (reply.reasoning is not None or call.show_reasoning) else ()
    has_text = not (reply.text == "" or (reply.chunks is not None and not reply.chunks))
    if calls and reply.finish_reason is None:
        reply = replace(reply, finish_reason="tool_calls")
    extras = ReplyExtras(shown, reply.signature, calls, has_text or not calls, blocks if shown else (),
                         _redacted(provider, call))
    return extras, reply, tokens


def _scripted_extras(reply: Reply) -> tuple[tuple[EmulatedCall, ...], tuple[str, ...], str | None]:
    """A scripted Reply's calls, reasoning blocks (when scripted as a list) and reasoning text."""
    calls: tuple[EmulatedCall, ...] = tuple(reply.tool_calls or ())  # type: ignore[arg-type]  # normalized in Reply
    scripted = reply.reasoning
    if scripted is None or isinstance(scripted, str):
        return calls, (), scripted
    blocks = tuple(scripted)
    return calls, blocks, "".join(blocks)


def _default_extras(provider: str, call: ChatCall) -> tuple[tuple[EmulatedCall, ...], str | None, Reply]:
    """The default rule: a call of :func:`called_tool`, else text (quoting a tool result after one)."""
    tool = called_tool(call)
    reasoning = f"Thinking about: {call.last_user_text}" if call.reasoning else None
    if tool is not None:
        calls = (EmulatedCall("", tool.name, json.dumps(example_arguments(tool.parameters))),)
        return calls, reasoning, Reply(text="")
    if call.after_tool:
        return (), reasoning, Reply(text=tool_reply_text(provider, call.model, call.tool_result_text))
    return (), reasoning, Reply()


def _with_ids(
    calls: tuple[EmulatedCall, ...], call_prefix: str, next_id: Callable[[], int]
) -> tuple[EmulatedCall, ...]:
    """Calls without an id get ``<call_prefix><8-digit number>`` (none when the vendor sends no ids)."""
    if not (calls and call_prefix):
        return calls
    return tuple(
        c if c.id else EmulatedCall(f"{call_prefix}{next_id():08d}", c.name, c.arguments) for c in calls
    )


def _redacted(provider: str, call: ChatCall) -> bool:
    # Anthropic documents a prompt string that makes the model answer with redacted thinking.
    return provider == "anthropic" and call.reasoning and REDACTED_TRIGGER in call.last_user_text


def function_tools(value: object) -> tuple[ToolSpec, ...]:
    """Tools in the OpenAI / Ollama shape ``{"type": "function", "function": {name, parameters}}``
    (or the flat Responses shape ``{"type": "function", "name", "parameters"}``)."""
    out: list[ToolSpec] = []
    for tool in value if isinstance(value, list) else ():
        if not isinstance(tool, dict):
            continue
        function = tool.get("function")
        spec: dict[str, Any] = function if isinstance(function, dict) else tool
        name = spec.get("name")
        params = spec.get("parameters")
        if isinstance(name, str) and name:
            out.append(ToolSpec(name, params if isinstance(params, dict) else {}))
    return tuple(out)


def openai_tool_choice(value: object) -> str | None:
    """``"auto"`` / ``"none"`` / ``"required"``, or the name in ``{"type": "function", ...}``."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        function = value.get("function")
        name = function.get("name") if isinstance(function, dict) else value.get("name")
        return name if isinstance(name, str) else None
    return None


def split_arguments(arguments: str) -> list[str]:
    """Argument JSON in the fragments a streaming vendor sends (about 3)."""
    return split_text(arguments, 3) if arguments else []
