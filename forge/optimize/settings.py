"""The ``[providers.<name>.optimizations]`` keys: their types, defaults and validation.

Pure Python (no vendor import): :mod:`forge.config` validates a config file
with it before any provider is built. Every switch defaults to on once a
provider's optimizations are enabled, except those marked opt-in below.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from forge.errors import ConfigError

__all__ = [
    "DEFAULT_SEED",
    "GEMINI_HARM_CATEGORIES",
    "GEMINI_HARM_THRESHOLDS",
    "OPTIMIZATION_KEYS",
    "duration_seconds",
    "validate_optimizations",
]

DEFAULT_SEED = 42
"""The seed OpenAI requests get when the caller sets none (``seed = true``)."""

GEMINI_HARM_CATEGORIES = (
    "HARM_CATEGORY_HARASSMENT",
    "HARM_CATEGORY_HATE_SPEECH",
    "HARM_CATEGORY_SEXUALLY_EXPLICIT",
    "HARM_CATEGORY_DANGEROUS_CONTENT",
    "HARM_CATEGORY_CIVIC_INTEGRITY",
)
GEMINI_HARM_THRESHOLDS = (
    "BLOCK_LOW_AND_ABOVE",
    "BLOCK_MEDIUM_AND_ABOVE",
    "BLOCK_ONLY_HIGH",
    "BLOCK_NONE",
    "OFF",
)

_DURATION = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s)?\s*$")


def duration_seconds(value: object) -> float | None:
    """Seconds in ``300``, ``"300s"``, ``"5m"``, ``"1h30m"``; None when it is not a duration."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    try:
        return float(text)
    except ValueError:
        pass
    match = _DURATION.match(text)
    if match is None or not any(match.groups()):
        return None
    hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    return hours * 3600 + minutes * 60 + seconds


@dataclass(frozen=True, slots=True)
class _Key:
    """One allowed key: what it accepts (as words for the error) and how to normalize it."""

    accepts: str
    parse: Callable[[object], object | None]  # None: invalid
    help: str


def _bool(value: object) -> object | None:
    return value if isinstance(value, bool) else None


def _int_at_least(lo: int) -> Callable[[object], object | None]:
    def parse(value: object) -> object | None:
        if isinstance(value, bool) or not isinstance(value, int) or value < lo:
            return None
        return value

    return parse


def _seed(value: object) -> object | None:
    if isinstance(value, bool) or (isinstance(value, int) and value >= 0):
        return value
    return None


def _text(value: object) -> object | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _choice(*allowed: str) -> Callable[[object], object | None]:
    def parse(value: object) -> object | None:
        return value if isinstance(value, str) and value in allowed else None

    return parse


def _anthropic_ttl(value: object) -> object | None:
    seconds = duration_seconds(value)
    return int(seconds) if seconds in (300.0, 3600.0) else None


def _gemini_ttl(value: object) -> object | None:
    seconds = duration_seconds(value)
    return int(seconds) if seconds is not None and seconds >= 60 else None


def _keep_alive(value: object) -> object | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str) and (value.strip() == "-1" or duration_seconds(value) is not None):
        return value.strip()
    return None


def _num_ctx(value: object) -> object | None:
    if value is False or value == "auto":
        return value
    if isinstance(value, int) and not isinstance(value, bool) and value >= 256:
        return value
    return None


def _safety(value: object) -> object | None:
    """``{category: threshold}`` or ``[{category, threshold}]`` -> a list of dicts."""
    pairs: list[tuple[object, object]]
    if isinstance(value, Mapping):
        pairs = list(value.items())
    elif isinstance(value, list) and all(isinstance(v, Mapping) for v in value):
        pairs = [(v.get("category"), v.get("threshold")) for v in value]
    else:
        return None
    out: list[dict[str, str]] = []
    for category, threshold in pairs:
        cat = category if isinstance(category, str) else ""
        if not cat.startswith("HARM_CATEGORY_"):
            cat = "HARM_CATEGORY_" + cat.upper()
        if cat not in GEMINI_HARM_CATEGORIES or threshold not in GEMINI_HARM_THRESHOLDS:
            return None
        out.append({"category": cat, "threshold": str(threshold)})
    return out


_ENABLED = _Key("true or false", _bool, "turn this provider's optimizations on or off")

OPTIMIZATION_KEYS: dict[str, dict[str, _Key]] = {
    "openai": {
        "enabled": _ENABLED,
        "seed": _Key("true, false or a whole number >= 0", _seed,
                     f"default seed when the caller sets none (true: {DEFAULT_SEED})"),
        "json_mode": _Key("true or false", _bool,
                          "fix response_format up for OpenAI (the 'JSON' prompt rule, strict schemas)"),
        "json_detect": _Key("true or false", _bool, "use JSON mode when the prompt asks for JSON"),
        "prompt_cache": _Key("true or false", _bool, "stable prefix order and prompt_cache_key"),
        "prompt_cache_key": _Key("a non-empty string", _text, "a fixed prompt_cache_key"),
        "cache_breakpoints": _Key("true or false", _bool,
                                  "explicit prompt_cache_breakpoint parts (gpt-5.6 and later; opt-in)"),
        "cache_ttl": _Key("'30m' or '12h'", _choice("30m", "12h"), "lifetime of explicit breakpoints"),
    },
    "anthropic": {
        "enabled": _ENABLED,
        "prompt_cache": _Key("true or false", _bool, "cache_control breakpoints on the static prefix"),
        "cache_tools": _Key("true or false", _bool, "a breakpoint after the tool definitions"),
        "cache_history": _Key("true or false", _bool, "a breakpoint before the last user turn"),
        "cache_ttl": _Key("'5m', '1h', 300 or 3600", _anthropic_ttl, "cache lifetime"),
        "min_cache_tokens": _Key("a whole number >= 1", _int_at_least(1),
                                 "override the model's minimum cacheable prompt length"),
    },
    "google": {
        "enabled": _ENABLED,
        "context_cache": _Key("true or false", _bool, "explicit context caching of the static prefix"),
        "cache_ttl": _Key("seconds >= 60 or a duration like '10m'", _gemini_ttl, "cached content lifetime"),
        "min_cache_tokens": _Key("a whole number >= 1", _int_at_least(1),
                                 "override the model's minimum cacheable size"),
        "safety_settings": _Key(
            "a table {category = threshold} or a list of {category, threshold}", _safety,
            "safety settings applied to every request",
        ),
        "thinking_budget": _Key("a whole number >= -1", _int_at_least(-1),
                                "thinking token budget (-1: dynamic, 0: off)"),
        "include_thoughts": _Key("true or false", _bool, "return thought summaries"),
    },
    "ollama": {
        "enabled": _ENABLED,
        "keep_alive": _Key("a duration like '30m', seconds, or -1 (forever)", _keep_alive,
                           "how long the model stays loaded between calls"),
        "num_ctx": _Key("'auto', false or a whole number >= 256", _num_ctx,
                        "context size: 'auto' sizes it to the prompt"),
        "default_num_ctx": _Key("a whole number >= 256", _int_at_least(256),
                                "the server's context size (raised only above it)"),
        "max_num_ctx": _Key("a whole number >= 256", _int_at_least(256), "never size the context above this"),
    },
}


def validate_optimizations(
    provider: str, value: object, *, key: str, source: str | None = None
) -> dict[str, object]:
    """Check one provider's optimizations table; return it normalized.

    Raises:
        ConfigError: an unknown key or a value of the wrong kind, naming the key,
            the value and what is allowed.
    """
    def fail(where: str, message: str) -> ConfigError:
        prefix = f"{source}: " if source else ""
        return ConfigError(f"{prefix}{where}: {message}", key=where, source=source)

    if not isinstance(value, Mapping):
        raise fail(key, f"expected a table/object, got {type(value).__name__} {value!r}.")
    spec = OPTIMIZATION_KEYS[provider]
    out: dict[str, object] = {}
    for name, raw in value.items():
        where = f"{key}.{name}"
        if name not in spec:
            close = difflib.get_close_matches(str(name), list(spec), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise fail(where, f"unknown optimization for {provider}. Allowed: {', '.join(spec)}.{hint}")
        parsed = spec[name].parse(raw)
        if parsed is None:
            raise fail(where, f"expected {spec[name].accepts} ({spec[name].help}), got {raw!r}.")
        out[name] = parsed
    return out
