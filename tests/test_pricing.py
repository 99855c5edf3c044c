"""Price table: family matching, and each part of the input billed at its own rate."""

from __future__ import annotations

import pytest

from forge.pricing import cache_storage_usd, cost_usd, price_for
from forge.types import Usage


def test_dated_models_match_their_family_by_longest_prefix() -> None:
    assert price_for("openai", "gpt-4o-mini-2024-07-18") == price_for("openai", "gpt-4o-mini")
    assert price_for("openai", "gpt-4o-2024-08-06") == price_for("openai", "gpt-4o")
    assert price_for("anthropic", "claude-opus-4-5-20251101") != price_for("anthropic", "claude-opus-4-1")
    assert price_for("gemini", "models/gemini-2.5-flash") == price_for("google", "gemini-2.5-flash")


def test_unknown_models_have_no_price_and_ollama_is_free() -> None:
    assert price_for("openai", "gpt-emulator") is None
    assert cost_usd("anthropic", "claude-x", Usage(100, 10)) is None
    assert cost_usd("ollama", "llama3", Usage(10_000, 1_000)) == 0.0


def test_anthropic_cache_reads_and_writes() -> None:
    # claude-sonnet-4-5: $3/M input; write 1.25x (5 min) or 2x (1 h); read 0.1x
    usage = Usage(input_tokens=1_000_000 + 2_000_000 + 4_000_000, cache_write_tokens=2_000_000,
                  cached_input_tokens=4_000_000)
    assert cost_usd("anthropic", "claude-sonnet-4-5", usage) == pytest.approx(3.0 + 7.5 + 1.2)
    assert cost_usd("anthropic", "claude-sonnet-4-5", usage, cache_ttl_seconds=3600) == pytest.approx(
        3.0 + 12.0 + 1.2)


def test_openai_cached_input_and_batch_discount() -> None:
    usage = Usage(input_tokens=2_000_000, output_tokens=1_000_000, cached_input_tokens=1_000_000)
    assert cost_usd("openai", "gpt-4o", usage) == pytest.approx(2.5 + 1.25 + 10.0)
    assert cost_usd("openai", "gpt-4o", usage, batch=True) == pytest.approx((2.5 + 1.25 + 10.0) / 2)


def test_gemini_cached_tokens_and_storage() -> None:
    usage = Usage(input_tokens=1_000_000, cached_input_tokens=1_000_000)
    assert cost_usd("google", "gemini-2.5-flash", usage) == pytest.approx(0.03)
    assert cache_storage_usd("google", "gemini-2.5-flash", 1_000_000, 1800) == pytest.approx(0.5)
