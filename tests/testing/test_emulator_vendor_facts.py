"""The emulator takes its vendor facts from the vendors' documentation, never from forge's own tables.

If the emulator read the optimizer's cache minimums or the price list, the optimizer's
savings measured on it would repeat forge's assumptions. These tests keep the two
apart, and name every place where the documented vendor fact and forge's assumption
differ (so a difference is a decision someone wrote down, not an accident).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from forge import pricing
from forge.optimize import anthropic as anthropic_opt
from forge.optimize import google as google_opt
from forge.testing._emulator import vendor_facts as facts

EMULATOR = Path(facts.__file__).parent
FORBIDDEN = ("forge.optimize", "forge.pricing")


def _imported_modules(path: Path) -> list[str]:
    """Absolute names of everything ``path`` imports (relative imports resolved against forge.testing._emulator)."""
    package = ["forge", "testing", "_emulator"]
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *(node.module.split(".") if node.module else [])])
            names.append(module)
            names += [f"{module}.{alias.name}" for alias in node.names]  # from forge import pricing
    return names


def test_no_emulator_module_imports_forges_optimizer_or_price_list() -> None:
    offenders = {
        f"{path.name}: {name}"
        for path in sorted(EMULATOR.glob("*.py"))
        for name in _imported_modules(path)
        if name.startswith(FORBIDDEN)
    }
    assert not offenders, (
        f"the emulator imports forge's own tables ({sorted(offenders)}); give it the vendor's documented "
        "fact in forge/testing/_emulator/vendor_facts.py instead"
    )


def test_the_import_check_sees_relative_and_aliased_imports(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("from ...optimize.anthropic import min_cacheable_tokens\nfrom forge import pricing as p\n")
    names = _imported_modules(sample)
    assert "forge.optimize.anthropic" in names and "forge.pricing" in names


def test_every_vendor_fact_names_its_source() -> None:
    tables = {name for name in facts.__all__ if name.isupper()} - {"SOURCES", "CHARS_PER_TOKEN"}
    derived = {  # values that belong to a sourced table
        "ANTHROPIC_DEFAULT_CACHE_MINIMUM": "ANTHROPIC_CACHE_MINIMUMS",
        "ANTHROPIC_RATE_LIMIT_KINDS": "ANTHROPIC_RATE_LIMIT_HEADER",
        "GEMINI_DEFAULT_CACHE_MINIMUM": "GEMINI_CACHE_MINIMUMS",
    }
    unsourced = {name for name in tables if derived.get(name, name) not in facts.SOURCES}
    assert not unsourced
    assert set(facts.SOURCES) <= tables
    for name, source in facts.SOURCES.items():
        assert source.url.startswith("https://") and source.title and source.says, name


# Where the vendor's documentation and forge's optimizer disagree, and why it is left so.
# model -> (documented minimum the emulator models, forge optimizer's minimum)
KNOWN_ANTHROPIC_DIFFERENCES = {
    # Documented 1,024 (platform.claude.com prompt caching); anthropic-sdk-python#1194 reports
    # caching starts at 2,048 in practice, and the optimizer follows the observation so it never
    # sends a breakpoint that is silently ignored. The emulator caches from 1,024, so on it a
    # 1,024-2,047-token Sonnet 4.6 prefix saves money the optimizer leaves on the table.
    "claude-sonnet-4-6": (1024, 2048),
}
KNOWN_GEMINI_DIFFERENCES: dict[str, tuple[int, int]] = {}

ANTHROPIC_MODELS = sorted({family for family, _ in facts.ANTHROPIC_CACHE_MINIMUMS} | {
    "claude-sonnet-4-6-20260101", "claude-opus-4-7", "claude-sonnet-5", "claude-3-opus", "claude-unknown"})
GEMINI_MODELS = sorted({family for family, _ in facts.GEMINI_CACHE_MINIMUMS} | {
    "models/gemini-2.5-flash-lite", "gemini-2.0-flash", "gemini-3.1-pro-preview", "gemini-unknown"})


def test_anthropic_cache_minimums_differ_from_forges_only_where_written_down() -> None:
    differences = {
        model: (facts.anthropic_cache_minimum(model), anthropic_opt.min_cacheable_tokens(model))
        for model in ANTHROPIC_MODELS
        if facts.anthropic_cache_minimum(model) != anthropic_opt.min_cacheable_tokens(model)
    }
    # Dated model names inherit their family's difference.
    expected = {m: v for m, v in ((m, KNOWN_ANTHROPIC_DIFFERENCES.get(_family(m))) for m in ANTHROPIC_MODELS) if v}
    assert differences == expected


def _family(model: str) -> str:
    return next((f for f in KNOWN_ANTHROPIC_DIFFERENCES if model.startswith(f)), model)


def test_gemini_cache_minimums_differ_from_forges_only_where_written_down() -> None:
    differences = {
        model: (facts.gemini_cache_minimum(model), google_opt.min_cacheable_tokens(model))
        for model in GEMINI_MODELS
        if facts.gemini_cache_minimum(model) != google_opt.min_cacheable_tokens(model)
    }
    assert differences == KNOWN_GEMINI_DIFFERENCES


@pytest.mark.parametrize("family", ["claude-opus-4-5", "claude-sonnet-4", "claude-haiku-4-5", "claude-3-haiku"])
def test_forges_anthropic_cache_prices_use_the_documented_multipliers(family: str) -> None:
    price = pricing.price_for("anthropic", family)
    assert price is not None and price.cached_input is not None
    assert price.cache_write is not None and price.cache_write_1h is not None
    m = facts.ANTHROPIC_CACHE_MULTIPLIERS
    assert (price.cached_input / price.input, price.cache_write / price.input, price.cache_write_1h / price.input) \
        == pytest.approx((m["read"], m["write_5m"], m["write_1h"]))


@pytest.mark.parametrize("family,rate", facts.GEMINI_CACHE_STORAGE_USD_PER_MTOK_HOUR)
def test_forges_gemini_storage_prices_match_the_documented_rates(family: str, rate: float) -> None:
    price = pricing.price_for("google", family)
    assert price is not None and price.storage_per_hour == rate

