"""Per-model prices: input, cached input, cache writes, output, batch discount.

Prices are USD per million tokens as the vendors publish them (checked
2026-11; verify before billing anyone). A dated model name matches its family
(``claude-sonnet-4-5-20250929`` -> ``claude-sonnet-4-5``) by longest prefix.
Unknown models have no price (``None``); Ollama runs locally and costs 0.

How caching is billed, per vendor:

- OpenAI: cached input tokens at the model's cached rate (50-90% off); no
  write premium.
- Anthropic: cache reads at 0.1x input; cache writes at 1.25x input for the
  5-minute TTL and 2x for the 1-hour TTL.
- Gemini: cached tokens at the cached rate (0.1x input on 2.5 and later);
  creating an explicit cache bills its tokens once at the input rate, plus
  storage per million tokens per hour (:func:`cache_storage_usd`).

Batch APIs (OpenAI, Anthropic, Gemini) bill everything at 50%.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from forge.types import Usage

__all__ = ["ModelPrice", "cache_storage_usd", "cost_usd", "price_for"]


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """USD per million tokens.

    ``cached_input`` is the cache-read rate, ``cache_write`` / ``cache_write_1h``
    the cache-write rates (None: billed as plain input), ``storage_per_hour``
    the explicit-cache storage rate per million tokens per hour (Gemini).
    """

    input: float
    output: float
    cached_input: float | None = None
    cache_write: float | None = None
    cache_write_1h: float | None = None
    storage_per_hour: float = 0.0
    batch_discount: float = 0.5


def _anthropic(input: float, output: float) -> ModelPrice:
    return ModelPrice(input, output, input * 0.1, input * 1.25, input * 2.0)


_FREE = ModelPrice(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)

_PRICES: dict[str, dict[str, ModelPrice]] = {
    "openai": {
        "gpt-4o": ModelPrice(2.50, 10.00, 1.25),
        "gpt-4o-mini": ModelPrice(0.15, 0.60, 0.075),
        "gpt-4.1": ModelPrice(2.00, 8.00, 0.50),
        "gpt-4.1-mini": ModelPrice(0.40, 1.60, 0.10),
        "gpt-4.1-nano": ModelPrice(0.10, 0.40, 0.025),
        "gpt-5": ModelPrice(1.25, 10.00, 0.125),
        "gpt-5-mini": ModelPrice(0.25, 2.00, 0.025),
        "gpt-5-nano": ModelPrice(0.05, 0.40, 0.005),
        "o1": ModelPrice(15.00, 60.00, 7.50),
        "o3": ModelPrice(2.00, 8.00, 0.50),
        "o3-mini": ModelPrice(1.10, 4.40, 0.55),
        "o4-mini": ModelPrice(1.10, 4.40, 0.275),
    },
    "anthropic": {
        "claude-opus-4-5": _anthropic(5.00, 25.00),
        "claude-opus-4-6": _anthropic(5.00, 25.00),
        "claude-opus-4-0": _anthropic(15.00, 75.00),
        "claude-opus-4-1": _anthropic(15.00, 75.00),
        "claude-opus-4-20250514": _anthropic(15.00, 75.00),
        "claude-sonnet-4": _anthropic(3.00, 15.00),
        "claude-haiku-4-5": _anthropic(1.00, 5.00),
        "claude-3-7-sonnet": _anthropic(3.00, 15.00),
        "claude-3-5-sonnet": _anthropic(3.00, 15.00),
        "claude-3-5-haiku": _anthropic(0.80, 4.00),
        "claude-3-haiku": _anthropic(0.25, 1.25),
        "claude-3-opus": _anthropic(15.00, 75.00),
    },
    "google": {
        "gemini-2.5-pro": ModelPrice(1.25, 10.00, 0.125, storage_per_hour=4.50),
        "gemini-2.5-flash": ModelPrice(0.30, 2.50, 0.03, storage_per_hour=1.00),
        "gemini-2.5-flash-lite": ModelPrice(0.10, 0.40, 0.01, storage_per_hour=1.00),
        "gemini-2.0-flash": ModelPrice(0.10, 0.40, 0.025, storage_per_hour=1.00),
        "gemini-3-pro": ModelPrice(2.00, 12.00, 0.20, storage_per_hour=4.50),
        "gemini-3-flash": ModelPrice(0.50, 3.00, 0.05, storage_per_hour=1.00),
    },
}


def _match(table: Mapping[str, ModelPrice], model: str) -> str | None:
    name = model.removeprefix("models/")
    best: str | None = None
    for family in table:
        if (name == family or name.startswith((family + "-", family + "@", family + ":"))) and (
            best is None or len(family) > len(best)
        ):
            best = family
    return best


def price_for(
    provider: str, model: str, overrides: Mapping[str, ModelPrice] | None = None
) -> ModelPrice | None:
    """The price of ``provider``'s ``model`` (longest matching family), None when unknown.

    ``overrides`` (a provider's ``pricing`` config table: family -> price) add to
    and win over the built-in table, so a fine-tune, a negotiated rate or a new
    model can be priced without waiting for a forge release. The most specific
    family wins; on a tie, the override.

    >>> price_for("anthropic", "claude-sonnet-4-5-20250929").input
    3.0
    """
    table: Mapping[str, ModelPrice] = (
        {} if provider == "ollama" else _PRICES.get("google" if provider == "gemini" else provider, {})
    )
    mine = _match(overrides, model) if overrides else None
    builtin = _match(table, model)
    if mine is not None and overrides is not None and (builtin is None or len(mine) >= len(builtin)):
        return overrides[mine]
    if builtin is not None:
        return table[builtin]
    return _FREE if provider == "ollama" else None


def cost_usd(
    provider: str,
    model: str,
    usage: Usage,
    *,
    batch: bool = False,
    cache_ttl_seconds: int | None = None,
    overrides: Mapping[str, ModelPrice] | None = None,
) -> float | None:
    """What ``usage`` costs in USD, or None when the model has no known price.

    ``usage.input_tokens`` includes cached and cache-write tokens (forge's
    convention); each part is billed at its own rate. ``cache_ttl_seconds``
    picks Anthropic's write rate (3600: the 1-hour rate; otherwise 5 minutes).

    >>> cost_usd("anthropic", "claude-sonnet-4-5", Usage(input_tokens=1_000_000))
    3.0
    """
    price = price_for(provider, model, overrides)
    if price is None:
        return None
    cached = min(usage.cached_input_tokens, usage.input_tokens)
    written = min(usage.cache_write_tokens, usage.input_tokens - cached)
    fresh = usage.input_tokens - cached - written
    read_rate = price.input if price.cached_input is None else price.cached_input
    if cache_ttl_seconds is not None and cache_ttl_seconds > 300 and price.cache_write_1h is not None:
        write_rate = price.cache_write_1h
    else:
        write_rate = price.input if price.cache_write is None else price.cache_write
    total = (
        fresh * price.input + cached * read_rate + written * write_rate + usage.output_tokens * price.output
    ) / 1_000_000
    return total * price.batch_discount if batch else total


def cache_storage_usd(provider: str, model: str, tokens: int, seconds: float) -> float | None:
    """Storage cost of an explicit cache of ``tokens`` kept for ``seconds`` (Gemini; 0 elsewhere)."""
    price = price_for(provider, model)
    if price is None:
        return None
    return tokens * price.storage_per_hour * (seconds / 3600.0) / 1_000_000
