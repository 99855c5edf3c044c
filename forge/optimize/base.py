"""ProviderOptimizer: a Request in, a cheaper/faster Request out, never a failed call.

An optimizer is a list of named steps. Each step is a pure function from
:class:`~forge.types.Request` to Request; a step that does not apply raises
:class:`NotApplicable` with the reason, and a step that fails for any other
reason is skipped. Either way the request the step received goes on
unchanged, and :class:`OptimizerStats` and the ``forge.optimize`` debug log
say why. :meth:`ProviderOptimizer.aoptimize_request` adds the steps that need
the network (Gemini's context caches).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, ClassVar

from forge.errors import BadRequestError, ContextLengthError, ForgeError
from forge.tokens import estimate_tokens
from forge.types import Message, Request, Tool

if TYPE_CHECKING:
    from forge.config import ProviderConfig
    from forge.types import Provider

__all__ = [
    "NotApplicable",
    "OptimizerStats",
    "ProviderOptimizer",
    "Step",
    "StepObserver",
    "canonical_tools",
    "count_tokens",
    "digest",
    "stable_json",
    "static_prefix_end",
    "tools_text",
]

log = logging.getLogger("forge.optimize")

Step = Callable[[Request], Request]
StepObserver = Callable[[str, bool, str], object]
"""Called as ``(step name, applied, reason)`` after each step (the LLM feeds its metrics with it)."""


class NotApplicable(Exception):
    """Raised by a step that has nothing to do for this request; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(slots=True)
class OptimizerStats:
    """What an optimizer did: per step, how often it applied, was skipped (and why) or failed.

    ``counters`` holds provider-specific numbers (e.g. Gemini ``cache_created``,
    ``cache_write_tokens``); ``fallbacks`` counts calls re-sent as written
    because the provider rejected the optimized request.
    """

    applied: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    counters: Counter[str] = field(default_factory=Counter)
    fallbacks: int = 0
    last_reason: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        """A plain snapshot for metrics exporters and logs."""
        return {
            "applied": dict(self.applied),
            "skipped": dict(self.skipped),
            "errors": dict(self.errors),
            "counters": dict(self.counters),
            "fallbacks": self.fallbacks,
            "last_reason": dict(self.last_reason),
        }


class ProviderOptimizer:
    """Base of the per-provider optimizers; see docs/optimization.md.

    Args:
        settings: the provider's validated ``optimizations`` table (switches
            default to on; see :mod:`forge.optimize.settings`).
        clock: time source for cache lifetimes (tests inject a fake one).

    Subclasses list their steps in :meth:`steps`; each switch named there can be
    turned off on its own with ``<switch> = false``.
    """

    provider: ClassVar[str] = ""

    def __init__(
        self,
        settings: Mapping[str, object] | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings: dict[str, object] = dict(settings or {})
        self.stats = OptimizerStats()
        self._clock = clock
        self._bound: Provider | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.settings!r})"

    # ------------------------------------------------------------------ wiring

    def switch(self, name: str, default: bool = True) -> bool:
        """Whether the switch ``name`` is on (absent: ``default``)."""
        value = self.settings.get(name, default)
        return value is not False

    def bind(self, provider: Provider) -> None:
        """Attach the provider whose client network steps use (done by the Registry)."""
        self._bound = provider

    @property
    def bound_provider(self) -> Provider | None:
        return self._bound

    def optimize_config(self, config: ProviderConfig) -> ProviderConfig:
        """Adjust the provider's config before its client is built (default: unchanged)."""
        return config

    def steps(self) -> Sequence[tuple[str, Step]]:
        """The enabled request steps, in order, as ``(name, step)``."""
        return ()

    # ------------------------------------------------------------------ running

    def optimize_request(self, request: Request, *, on_step: StepObserver | None = None) -> Request:
        """Run every enabled step; a step that does not apply or fails leaves the request as it was."""
        for name, step in self.steps():
            request = self.run_step(name, step, request, on_step)
        return request

    async def aoptimize_request(self, request: Request, *, on_step: StepObserver | None = None) -> Request:
        """:meth:`optimize_request` plus steps that need the network; what ``LLM`` calls."""
        return self.optimize_request(request, on_step=on_step)

    def run_step(
        self, name: str, step: Step, request: Request, on_step: StepObserver | None = None
    ) -> Request:
        """Apply one step with the skip/failure recording described in the module docstring."""
        try:
            result = step(request)
        except NotApplicable as skip:
            self.skip(name, skip.reason, on_step)
            return request
        except Exception as exc:
            self.fail(name, exc, on_step)
            return request
        self.applied(name, on_step)
        return result

    def applied(self, name: str, on_step: StepObserver | None = None) -> None:
        """Record that step ``name`` changed the request."""
        self.stats.applied[name] += 1
        if on_step is not None:
            on_step(name, True, "")

    def skip(self, name: str, reason: str, on_step: StepObserver | None = None) -> None:
        """Record that step ``name`` did not apply, and why."""
        self.stats.skipped[name] += 1
        self.stats.last_reason[name] = reason
        if on_step is not None:
            on_step(name, False, reason)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s optimizer: %s not applied: %s", self.provider, name, reason)

    def note(self, name: str, detail: str) -> None:
        """Record how step ``name`` applied (e.g. which rule it relaxed)."""
        self.stats.last_reason[name] = detail
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s optimizer: %s: %s", self.provider, name, detail)

    def fail(self, name: str, exc: BaseException, on_step: StepObserver | None = None) -> None:
        """Record that step ``name`` raised; the request goes on without it."""
        self.stats.errors[name] += 1
        reason = f"failed: {type(exc).__name__}: {exc}"
        self.stats.last_reason[name] = reason
        if on_step is not None:
            on_step(name, False, reason)
        log.debug("%s optimizer: %s failed; sending the request without it", self.provider, name,
                  exc_info=exc)

    def should_fall_back(self, sent: Request, error: ForgeError) -> bool:
        """Whether to re-send the caller's request as written after ``error`` answered ``sent``.

        True for a plain 400 (the provider refused a field the optimizer added);
        context-length errors are the prompt's fault and fail as they are.
        """
        return isinstance(error, BadRequestError) and not isinstance(error, ContextLengthError)

    def record_fallback(self, error: ForgeError) -> None:
        self.stats.fallbacks += 1
        self.stats.last_reason["fallback"] = str(error)
        log.debug("%s optimizer: the provider refused the optimized request (%s); re-sending it as written",
                  self.provider, error)

    async def aclose(self) -> None:
        """Release what the optimizer created at the provider (Gemini caches); default: nothing."""


# ---------------------------------------------------------------------- shared helpers


def stable_json(value: object) -> str:
    """Canonical JSON (sorted keys, no spaces): equal values give equal text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def digest(*parts: str) -> str:
    """Hex sha256 of ``parts`` joined with a separator no part can forge."""
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode("utf-8"))
        h.update(b"\x1f")
    return h.hexdigest()


def _sorted_schema(value: object) -> object:
    if isinstance(value, Mapping):
        return {k: _sorted_schema(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted_schema(v) for v in value]
    return value


def canonical_tools(tools: Sequence[Tool]) -> tuple[Tool, ...]:
    """Tools sorted by name, their schemas' keys sorted: one byte-stable prefix whatever the call order."""
    return tuple(
        replace(t, parameters=_sorted_schema(t.parameters))  # type: ignore[arg-type]
        for t in sorted(tools, key=lambda t: t.name)
    )


def static_prefix_end(messages: Sequence[Message]) -> int:
    """How many leading messages the caller marked static (up to the last ``cache_breakpoint``)."""
    end = 0
    for i, m in enumerate(messages):
        if m.cache_breakpoint:
            end = i + 1
    return end


def tools_text(tools: Sequence[Tool]) -> str:
    """The tool definitions as the text a prefix-length estimate counts."""
    return stable_json([{"name": t.name, "description": t.description, "parameters": t.parameters}
                        for t in tools]) if tools else ""


def count_tokens(text: str, request: Request, provider: str) -> int:
    """Estimated tokens of ``text`` for ``request``'s model (no network)."""
    return estimate_tokens(text, request.model, provider) if text else 0
