"""Ollama optimizer: keep the model loaded, size the context to the prompt.

``keep_alive`` (default ``"30m"``)
    Sent with every request (through the provider's config) so the model stays
    in memory between calls instead of being unloaded after Ollama's default
    5 minutes and paying the load time again.
``num_ctx`` (default ``"auto"``)
    Ollama truncates a prompt longer than the context window (4,096 tokens
    unless the model or server says otherwise) without an error. A request
    whose prompt plus ``max_tokens`` (1,024 when unset) does not fit
    ``default_num_ctx`` gets ``options.num_ctx`` raised to the next power of
    two that fits (at most ``max_num_ctx``). Powers of two keep the number of
    distinct sizes small: every new size makes Ollama reload the model.

``num_predict`` needs no step: the adapter always sends ``max_tokens`` as
``options.num_predict``. Connections: the Registry builds one Ollama client
per host, and every LLM on that host shares its pool.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from forge.optimize.base import NotApplicable, ProviderOptimizer, Step, count_tokens, tools_text
from forge.types import Request

if TYPE_CHECKING:
    from forge.config import ProviderConfig

__all__ = ["DEFAULT_KEEP_ALIVE", "DEFAULT_NUM_CTX", "OllamaOptimizer"]

DEFAULT_KEEP_ALIVE = "30m"
DEFAULT_NUM_CTX = 4096
"""Ollama's context size when neither the model nor the request sets one."""
_MAX_NUM_CTX = 131072
_OUTPUT_ALLOWANCE = 1024
_MARGIN = 1.1  # token estimates are approximate; leave room rather than truncate


class OllamaOptimizer(ProviderOptimizer):
    """``keep_alive`` on the provider, ``num_ctx`` sized per request."""

    provider = "ollama"

    def optimize_config(self, config: ProviderConfig) -> ProviderConfig:
        keep_alive = self.settings.get("keep_alive", DEFAULT_KEEP_ALIVE)
        if "keep_alive" in config.options or keep_alive is False:
            return config
        return replace(config, options={**config.options, "keep_alive": keep_alive})

    def steps(self) -> Sequence[tuple[str, Step]]:
        return [("num_ctx", self.num_ctx)] if self.settings.get("num_ctx", "auto") is not False else []

    def num_ctx(self, request: Request) -> Request:
        options = request.extra.get("options")
        options = options if isinstance(options, Mapping) else {}
        if "num_ctx" in options or "num_ctx" in request.extra:
            raise NotApplicable("the caller set num_ctx")
        fixed = self.settings.get("num_ctx", "auto")
        base = self.settings.get("default_num_ctx", DEFAULT_NUM_CTX)
        ceiling = self.settings.get("max_num_ctx", _MAX_NUM_CTX)
        assert isinstance(base, int) and isinstance(ceiling, int)
        if isinstance(fixed, int) and not isinstance(fixed, bool):
            size = fixed
        else:
            text = "\n".join((tools_text(request.tools), request.prompt_text()))
            needed = int(count_tokens(text, request, self.provider) * _MARGIN) + (
                request.max_tokens or _OUTPUT_ALLOWANCE
            )
            if needed <= base:
                raise NotApplicable(f"~{needed} tokens fit the default context of {base}")
            size = base
            while size < needed:
                size *= 2
            if size > ceiling:
                self.note("num_ctx", f"~{needed} tokens exceed max_num_ctx={ceiling}; Ollama will truncate")
                size = ceiling
        return replace(request, extra={**request.extra, "options": {**options, "num_ctx": size}})
