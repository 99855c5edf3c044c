"""OpenAI optimizer: default seed, JSON mode done right, prompt-cache friendly prefixes, batch lines.

Steps (switch in ``[providers.openai.optimizations]``, all on unless noted):

``seed``
    A request without ``seed`` gets one (``seed = true``: 42; ``seed = 7``: 7),
    so repeated calls are as reproducible as OpenAI allows.
``json_detect``
    A prompt that asks for JSON ("Return a JSON object with...") and sets no
    ``response_format`` gets ``{"type": "json_object"}``.
``json_mode``
    ``json_object`` requires the word "JSON" in the messages (OpenAI answers 400
    otherwise): a short instruction is appended to the system prompt when it is
    missing. A ``json_schema`` that strict mode would reject (an object without
    ``additionalProperties: false`` or with optional properties) is sent with
    ``strict: false`` instead of failing.
``prompt_cache``
    OpenAI caches prompt prefixes of 1,024+ tokens automatically, in 128-token
    steps, and routes by the first tokens plus ``prompt_cache_key``. Tools are
    sorted by name with canonical schemas (so the prefix is byte-stable whatever
    order the caller lists them in) and prompts of 1,024+ tokens get a
    ``prompt_cache_key`` derived from the static prefix (model, system, tools,
    documents marked ``cache_breakpoint``), so calls sharing it land together.
``cache_breakpoints`` (opt-in, gpt-5.6 and later)
    Explicit ``prompt_cache_breakpoint`` parts after the system prompt and the
    marked messages, with ``prompt_cache_options.ttl`` from ``cache_ttl``.

:meth:`OpenAIOptimizer.batch_lines` prepares Batch API JSONL lines from
optimized requests (the body is exactly what the adapter would send).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from forge.optimize.base import (
    NotApplicable,
    ProviderOptimizer,
    Step,
    canonical_tools,
    count_tokens,
    digest,
    stable_json,
    static_prefix_end,
    tools_text,
)
from forge.optimize.settings import DEFAULT_SEED
from forge.types import CacheHints, Request, ResponseFormat

__all__ = [
    "JSON_INSTRUCTION",
    "MIN_CACHEABLE_TOKENS",
    "OpenAIOptimizer",
    "batch_request_line",
    "strict_schema_problem",
]

MIN_CACHEABLE_TOKENS = 1024
"""OpenAI caches prompts of at least this many tokens (hits come in 128-token steps)."""

JSON_INSTRUCTION = "Respond with a single JSON object."
"""Appended to the system prompt when JSON mode is on and no message says "JSON"."""

_JSON_WORD = re.compile(r"json", re.IGNORECASE)
_JSON_ASK = re.compile(
    r"\b(?:respond|reply|answer|return|output)\w*\b[^.\n?]{0,30}?\bjson\b"
    r"|\b(?:as|in)\s+(?:valid\s+)?json(?:\s+(?:format|only|object))?\s*(?:[.!:\n]|$)",
    re.IGNORECASE,
)


class OpenAIOptimizer(ProviderOptimizer):
    """Seed, JSON mode, prompt-cache prefix and key for OpenAI Chat Completions."""

    provider = "openai"

    def steps(self) -> Sequence[tuple[str, Step]]:
        out: list[tuple[str, Step]] = []
        if self.switch("seed"):
            out.append(("seed", self.default_seed))
        if self.switch("json_detect"):
            out.append(("json_detect", self.detect_json))
        if self.switch("json_mode"):
            out.append(("json_mode", self.json_mode))
        if self.switch("prompt_cache"):
            out.append(("stable_prefix", self.stable_prefix))
            out.append(("prompt_cache_key", self.prompt_cache_key))
        if self.switch("cache_breakpoints", default=False):
            out.append(("cache_breakpoints", self.cache_breakpoints))
        return out

    # ------------------------------------------------------------------ steps

    def default_seed(self, request: Request) -> Request:
        if request.seed is not None:
            raise NotApplicable("the caller set a seed")
        value = self.settings.get("seed", True)
        seed = DEFAULT_SEED if value is True else value
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise NotApplicable("no default seed configured")
        return replace(request, seed=seed)

    def detect_json(self, request: Request) -> Request:
        if request.response_format is not None:
            raise NotApplicable("the caller chose a response_format")
        last_user = next((m.content for m in reversed(request.messages) if m.role == "user"), "")
        if not any(_JSON_ASK.search(t) for t in (request.system or "", last_user) if t):
            raise NotApplicable("the prompt does not ask for JSON")
        return replace(request, response_format=ResponseFormat("json"))

    def json_mode(self, request: Request) -> Request:
        fmt = request.response_format
        if fmt is None or fmt.type == "text":
            raise NotApplicable("no JSON output requested")
        if fmt.type == "json_schema" and fmt.schema is not None:
            if not fmt.strict:
                raise NotApplicable("the schema is already sent with strict=false")
            problem = strict_schema_problem(fmt.schema)
            if problem is None:
                raise NotApplicable("the schema is strict-compatible")
            self.note("json_mode", f"strict mode off: {problem}")
            return replace(request, response_format=replace(fmt, strict=False))
        texts = [request.system or "", *(m.content for m in request.messages)]
        if any(_JSON_WORD.search(t) for t in texts if t):
            raise NotApplicable("a message already mentions JSON")
        system = f"{request.system}\n\n{JSON_INSTRUCTION}" if request.system else JSON_INSTRUCTION
        return replace(request, system=system)

    def stable_prefix(self, request: Request) -> Request:
        if not request.tools:
            raise NotApplicable("no tools to order")
        tools = canonical_tools(request.tools)
        if tools == request.tools:
            raise NotApplicable("tools already in canonical order")
        return replace(request, tools=tools)

    def prompt_cache_key(self, request: Request) -> Request:
        if "prompt_cache_key" in request.extra or (request.cache is not None and request.cache.key):
            raise NotApplicable("the caller set prompt_cache_key")
        tokens = self._prompt_tokens(request)
        if tokens < MIN_CACHEABLE_TOKENS:
            raise NotApplicable(f"prompt of ~{tokens} tokens is below OpenAI's {MIN_CACHEABLE_TOKENS}")
        fixed = self.settings.get("prompt_cache_key")
        key = fixed if isinstance(fixed, str) else "forge-" + self.prefix_digest(request)[:24]
        cache = replace(request.cache, key=key) if request.cache is not None else CacheHints(key=key)
        return replace(request, cache=cache)

    def cache_breakpoints(self, request: Request) -> Request:
        if "prompt_cache_options" in request.extra:
            raise NotApplicable("the caller set prompt_cache_options")
        tokens = self._prompt_tokens(request)
        if tokens < MIN_CACHEABLE_TOKENS:
            raise NotApplicable(f"prompt of ~{tokens} tokens is below OpenAI's {MIN_CACHEABLE_TOKENS}")
        if not request.system and not static_prefix_end(request.messages):
            raise NotApplicable("no system prompt or marked message to put a breakpoint after")
        ttl = self.settings.get("cache_ttl", "30m")
        base = request.cache or CacheHints()
        cache = replace(base, system=bool(request.system), ttl_seconds=43200 if ttl == "12h" else 1800)
        extra = {**request.extra, "prompt_cache_options": {"ttl": ttl}}
        return replace(request, cache=cache, extra=extra)

    # ------------------------------------------------------------------ helpers

    def _prompt_tokens(self, request: Request) -> int:
        text = "\n".join((tools_text(request.tools), request.prompt_text()))
        return count_tokens(text, request, self.provider)

    @staticmethod
    def prefix_digest(request: Request) -> str:
        """Hash of what stays the same across calls: model, system, tools, marked messages."""
        static = request.messages[: static_prefix_end(request.messages)]
        return digest(
            request.model,
            request.system or "",
            tools_text(request.tools),
            stable_json([(m.role, m.content) for m in static]),
        )

    # ------------------------------------------------------------------ batch

    def batch_lines(self, items: Iterable[tuple[str, Request]]) -> list[dict[str, Any]]:
        """Batch API request lines (``custom_id``, ``method``, ``url``, ``body``) for optimized requests."""
        return [batch_request_line(self.optimize_request(request), custom_id) for custom_id, request in items]

    def batch_jsonl(self, items: Iterable[tuple[str, Request]]) -> str:
        """The Batch API input file: one JSON line per request."""
        return "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in self.batch_lines(items))


def batch_request_line(request: Request, custom_id: str) -> dict[str, Any]:
    """One Batch API line whose body is exactly the JSON the OpenAI adapter sends for ``request``."""
    from forge.providers.openai_batch import batch_line  # imports openai; only when batches are prepared

    return batch_line(custom_id, request)


def strict_schema_problem(schema: Mapping[str, object], path: str = "$") -> str | None:
    """Why OpenAI's strict structured outputs would reject ``schema`` (None: it would not).

    Strict mode needs every object to set ``additionalProperties: false`` and to
    list all of its properties in ``required``.
    """
    if path == "$" and schema.get("type") != "object":
        return "strict mode needs an object at the root"
    props = schema.get("properties")
    if schema.get("type") == "object" or isinstance(props, Mapping):
        if schema.get("additionalProperties") is not False:
            return f"{path} does not set additionalProperties: false"
        if isinstance(props, Mapping) and (problem := _properties_problem(schema, props, path)):
            return problem
    for where, sub in _subschemas(schema, path):
        if isinstance(sub, Mapping) and (problem := strict_schema_problem(sub, where)):
            return problem
    return None


def _properties_problem(schema: Mapping[str, object], props: Mapping[str, object], path: str) -> str | None:
    """Strict mode's rules for an object's properties: all required, and each strict itself."""
    required = schema.get("required")
    missing = [k for k in props if not isinstance(required, list) or k not in required]
    if missing:
        return f"{path} leaves {', '.join(map(str, missing))} optional"
    for name, sub in props.items():
        if isinstance(sub, Mapping) and (problem := strict_schema_problem(sub, f"{path}.{name}")):
            return problem
    return None


def _subschemas(schema: Mapping[str, object], path: str) -> list[tuple[str, object]]:
    """The schemas nested under items, anyOf, $defs and definitions, with their paths, in that order."""
    subs: list[tuple[str, object]] = []
    for key in ("items", "anyOf", "$defs", "definitions"):
        value = schema.get(key)
        if isinstance(value, Mapping) and key in ("$defs", "definitions"):
            subs.extend((f"{path}.{key}.{k}", v) for k, v in value.items())
        elif isinstance(value, Mapping):
            subs.append((f"{path}.{key}", value))
        elif isinstance(value, list):
            subs.extend((f"{path}.{key}[{i}]", v) for i, v in enumerate(value))
    return subs
