"""Provider optimizations: per-provider request rewrites that cut cost and latency.

One :class:`ProviderOptimizer` per provider (``forge.optimize.openai``,
``.anthropic``, ``.google``, ``.ollama``), loaded by the Registry when
optimizations are on (``Registry(enable_optimizations=True)``, the config's
``enable_optimizations``, or a provider's ``[providers.<name>.optimizations]``
section). An optimizer never fails a call: a step that cannot apply leaves the
request as written and records why (:class:`OptimizerStats`, debug log
``forge.optimize``). See docs/optimization.md.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping

from forge.optimize.base import NotApplicable, OptimizerStats, ProviderOptimizer
from forge.optimize.settings import OPTIMIZATION_KEYS, validate_optimizations

__all__ = [
    "OPTIMIZATION_KEYS",
    "NotApplicable",
    "OptimizerStats",
    "ProviderOptimizer",
    "optimizer_for",
    "optimizations_enabled",
    "validate_optimizations",
]

_CLASSES = {
    "openai": ("forge.optimize.openai", "OpenAIOptimizer"),
    "anthropic": ("forge.optimize.anthropic", "AnthropicOptimizer"),
    "google": ("forge.optimize.google", "GoogleOptimizer"),
    "ollama": ("forge.optimize.ollama", "OllamaOptimizer"),
}


def optimizations_enabled(section: Mapping[str, object], default: bool) -> bool:
    """Whether a provider's optimizations are on.

    ``enabled`` in the section decides; otherwise a non-empty section turns them
    on, and an empty one follows ``default`` (the Registry / config switch).
    """
    enabled = section.get("enabled")
    if isinstance(enabled, bool):
        return enabled
    return default or bool(section)


def optimizer_for(
    provider: str,
    settings: Mapping[str, object] | None = None,
    *,
    clock: Callable[[], float] | None = None,
) -> ProviderOptimizer:
    """A new optimizer for ``provider`` (``openai``, ``anthropic``, ``google``, ``ollama``)."""
    module_name, class_name = _CLASSES[provider]
    cls: type[ProviderOptimizer] = getattr(importlib.import_module(module_name), class_name)
    if clock is None:
        return cls(settings)
    return cls(settings, clock=clock)
