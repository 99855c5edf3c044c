"""Gemini requests: a forge Request as google-genai GenerateContent arguments and the HTTP request sent."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

from google import genai
from google.genai import types as gt

from forge.errors import (
    BadRequestError,
)
from forge.providers import _genai_private as genai_private
from forge.providers._common import (
    reasoning_budget,
)
from forge.providers._mapping import sampling
from forge.types import (
    Message,
    Request,
    own_blocks,
)

_PROVIDER = "google"
_FORGE_CALL_ID = re.compile(r"call_\d+")
_CONFIG_FIELDS = frozenset(gt.GenerateContentConfig.model_fields)
_TOOL_MODES = {"auto": "AUTO", "none": "NONE", "required": "ANY", "any": "ANY"}
# Gemini 3 takes thinkingLevel; older models only a thinkingBudget. "none" is as low as Gemini 3 goes.
_THINKING_LEVELS = {"none": "MINIMAL", "low": "LOW", "medium": "MEDIUM", "high": "HIGH"}
_BUDGET_MODELS = re.compile(r"(models/)?gemini-[12][.-]")
# Levels the Pro models take (ai.google.dev/gemini-api/docs/thinking, "thinking levels"): Gemini 3 Pro
# only LOW and HIGH; Gemini 3.1 Pro adds MEDIUM, never MINIMAL. Neither can turn thinking off.
_PRO_LEVELS = (
    (re.compile(r"(models/)?gemini-3-pro"), ("LOW", "HIGH")),
    (re.compile(r"(models/)?gemini-3\.\d+-pro"), ("LOW", "MEDIUM", "HIGH")),
)
# Google's documented stand-in for a function call that no Gemini reply signed (a turn from
# another provider or built by hand): Gemini 3 refuses such a call in the current turn otherwise.
# ai.google.dev/gemini-api/docs/thought-signatures ("dummy signatures").
_UNSIGNED_CALL = "skip_thought_signature_validator"
_GEMINI_3 = re.compile(r"(models/)?gemini-([3-9]|\d\d)")


# ---------------------------------------------------------------------- request


def build_gemini_http_request(
    client: genai.Client,
    model: str,
    contents: list[gt.Content],
    config: gt.GenerateContentConfig,
    *,
    stream: bool,
) -> tuple[str, str, dict[str, str], bytes]:
    """The exact (method, URL, headers, body) ``client.aio.models.generate_content[_stream]`` sends.

    Mirrors ``AsyncModels._generate_content[_stream]`` (google-genai 3.6.1,
    ``models.py:6810`` / ``:6906``) for the Gemini Developer API, using the SDK's
    own pieces: ``types._GenerateContentParameters``,
    ``models._GenerateContentParameters_to_mldev`` (body, camelCase, ``_url``),
    ``_common.convert_to_dict`` / ``encode_unserializable_types``,
    ``BaseApiClient._build_request`` (URL, api version, ``x-goog-api-key``,
    ``user-agent``/``x-goog-api-client``, ``X-Server-Timeout``, ``extra_body``),
    then ``json.dumps(...).encode()`` as in ``BaseApiClient._async_request_once``.
    The streaming path of the SDK first passes the config through
    ``StreamContinuation.start_hop`` which returns it unchanged on the first hop.
    """
    params = genai_private.GenerateContentParameters(model=model, contents=contents, config=config)
    request_dict = genai_private.to_mldev(genai_private.api_client(client), params, None, params)
    url_params = request_dict.get("_url")
    template = "{model}:streamGenerateContent?alt=sse" if stream else "{model}:generateContent"
    path = template.format_map(url_params) if url_params else template
    if request_dict.get("_query"):  # not produced for generateContent today; kept for parity
        raise ValueError(f"unexpected query parameters {request_dict['_query']!r}")
    request_dict.pop("config", None)
    request_dict = genai_private.convert_to_dict(request_dict)
    request_dict = genai_private.encode_unserializable_types(request_dict)
    http_request = genai_private.build_request(client, "post", path, request_dict, config.http_options)
    data = http_request.data
    body = data if isinstance(data, bytes) else json.dumps(data).encode("utf-8")
    return http_request.method.upper(), http_request.url, http_request.headers, body


def _tool_config(request: Request) -> dict[str, Any]:
    """``tools`` and ``tool_config`` of the GenerateContentConfig, as far as the request sets them."""
    cfg: dict[str, Any] = {}
    if request.tools and request.tool_choice != "none":
        cfg["tools"] = [
            gt.Tool(
                function_declarations=[
                    gt.FunctionDeclaration(
                        name=t.name,
                        description=t.description or None,
                        parameters_json_schema=dict(t.parameters),
                    )
                    for t in request.tools
                ]
            )
        ]
    if request.tool_choice is not None and (request.tools or request.tool_choice == "none"):
        mode = _TOOL_MODES.get(request.tool_choice)
        calling = (
            gt.FunctionCallingConfig(mode=mode)  # type: ignore[arg-type]  # str accepted for the enum
            if mode is not None
            else gt.FunctionCallingConfig(mode="ANY", allowed_function_names=[request.tool_choice])  # type: ignore[arg-type]
        )
        cfg["tool_config"] = gt.ToolConfig(function_calling_config=calling)
    return cfg


def gemini_call_args(request: Request) -> tuple[str, list[gt.Content], gt.GenerateContentConfig]:
    """Translate a forge Request into ``generate_content(model=, contents=, config=)`` arguments."""
    system = [request.system] if request.system else []
    system.extend(m.content for m in request.messages if m.role == "system")
    cfg: dict[str, Any] = {
        # forge never lets the SDK run Python tools or follow continuation tokens on its own.
        "automatic_function_calling": gt.AutomaticFunctionCallingConfig(disable=True),
        "automatic_continuation": False,
    }
    if system:
        cfg["system_instruction"] = "\n\n".join(system)
    cfg.update(sampling(request, max_tokens="max_output_tokens", stop="stop_sequences"))
    fmt = request.response_format
    if fmt is not None and fmt.type != "text":
        cfg["response_mime_type"] = "application/json"
        if fmt.type == "json_schema" and fmt.schema is not None:
            cfg["response_json_schema"] = dict(fmt.schema)
    cfg.update(_tool_config(request))
    thinking = _thinking_config(request)
    if thinking is not None:
        cfg["thinking_config"] = thinking
    extra_body: dict[str, Any] = {}
    for key, value in request.extra.items():
        if key in _CONFIG_FIELDS:
            cfg[key] = value
        else:
            extra_body[key] = value
    if extra_body:
        cfg["http_options"] = gt.HttpOptions(extra_body=extra_body)
    return request.model, _contents(request.messages, request.model), gt.GenerateContentConfig(**cfg)


def _thinking_config(request: Request) -> gt.ThinkingConfig | None:
    """``thinkingBudget`` for a budget (and on Gemini 1.x/2.x), ``thinkingLevel`` for an effort."""
    effort, budget = request.reasoning_effort, request.reasoning_budget
    if effort is None and budget is None:
        return None
    if budget is None and _BUDGET_MODELS.match(request.model):
        budget = reasoning_budget(request)
    accepted = next((levels for pattern, levels in _PRO_LEVELS if pattern.match(request.model)), None)
    if budget is not None:
        if budget == 0 and accepted is not None:
            raise BadRequestError(
                f"{request.model} cannot turn thinking off (reasoning_budget=0); the lowest it takes is "
                "reasoning_effort='low'.",
                provider=_PROVIDER,
                model=request.model,
            )
        return gt.ThinkingConfig(thinking_budget=budget, include_thoughts=budget != 0 or None)
    assert effort is not None
    return _thinking_level(request.model, effort, accepted)


def _thinking_level(model: str, effort: str, accepted: tuple[str, ...] | None) -> gt.ThinkingConfig:
    level = _THINKING_LEVELS[effort]
    if accepted is not None and level not in accepted:
        allowed = ", ".join(repr(e) for e, lv in _THINKING_LEVELS.items() if lv in accepted)
        raise BadRequestError(
            f"{model} refuses thinkingLevel {level} (from reasoning_effort={effort!r}); "
            f"it accepts {', '.join(accepted)} only: use reasoning_effort {allowed}.",
            provider=_PROVIDER,
            model=model,
        )
    return gt.ThinkingConfig(thinking_level=level, include_thoughts=True)  # type: ignore[arg-type]


def _model_parts(m: Message, call_names: dict[str, str], sign_calls: bool) -> list[gt.Part]:
    """A model turn's parts: Gemini's own thought parts and signatures back where they came from.

    ``sign_calls``: the turn is in the current tool loop of a Gemini 3 call, whose
    function calls need a signature; calls no Gemini reply signed get Google's stand-in.
    """
    own = own_blocks(m.reasoning_blocks, _PROVIDER)
    text_sig = next((b.signature for b in own if b.kind == "signature"), None)
    if not m.reasoning_blocks:
        text_sig = m.reasoning_signature  # a hand-built turn
    parts: list[gt.Part] = []
    if m.content or not m.tool_calls or text_sig:
        parts.append(gt.Part(text=m.content, thought_signature=_decode_signature(text_sig)))
    signed = any(call.signature for call in m.tool_calls)
    for i, call in enumerate(m.tool_calls):
        call_names[call.id] = call.name
        fc = gt.FunctionCall(id=_vendor_call_id(call.id), name=call.name, args=dict(call.arguments))
        signature = call.signature
        if signature is None and sign_calls and not signed and i == 0:
            signature = _UNSIGNED_CALL
        parts.append(gt.Part(function_call=fc, thought_signature=_decode_signature(signature)))
    for block in own:
        if block.kind == "thinking":
            thought_sig = _decode_signature(block.signature)
            thought = gt.Part(text=block.text, thought=True, thought_signature=thought_sig)
            parts.insert(min(block.position, len(parts)), thought)
    return parts


def _contents(messages: tuple[Message, ...], model: str = "") -> list[gt.Content]:
    turns: list[tuple[str, list[gt.Part]]] = []
    call_names: dict[str, str] = {}
    model_turns: list[tuple[int, Message]] = []
    current = 0
    for m in messages:
        if m.role == "system":
            continue
        if m.role == "tool":
            name = m.name or call_names.get(m.tool_call_id or "", "")
            part = gt.Part(
                function_response=gt.FunctionResponse(
                    id=_vendor_call_id(m.tool_call_id), name=name, response=_tool_result(m.content)
                )
            )
            if turns and turns[-1][0] == "tool":
                turns[-1][1].append(part)  # consecutive answers form one user turn, as Gemini expects
            else:
                turns.append(("tool", [part]))
        elif m.role == "user":
            turns.append(("user", [gt.Part(text=m.content)]))
            current = len(turns)  # the current turn starts after the last user text
        else:
            turns.append(("model", _model_parts(m, call_names, False)))
            if m.tool_calls:
                model_turns.append((len(turns) - 1, m))
    if _GEMINI_3.match(model):
        for at, m in model_turns:
            if at >= current:
                turns[at] = ("model", _model_parts(m, {}, True))
    return [gt.Content(role="model" if role == "model" else "user", parts=parts) for role, parts in turns]


def _vendor_call_id(call_id: str | None) -> str | None:
    return None if not call_id or _FORGE_CALL_ID.fullmatch(call_id) else call_id


def _tool_result(content: str) -> dict[str, Any]:
    try:
        value = json.loads(content)
    except ValueError:
        return {"output": content}
    return value if isinstance(value, dict) else {"output": value}


def _decode_signature(signature: str | None) -> bytes | None:
    if not signature:
        return None
    # Gemini sends standard base64; the SDK re-encodes bytes as URL-safe base64. Accept both.
    padded = signature + "=" * (-len(signature) % 4)
    return base64.urlsafe_b64decode(padded.replace("+", "-").replace("/", "_"))
