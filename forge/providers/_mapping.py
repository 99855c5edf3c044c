"""Request mapping the vendors share: the sampling fields and function-tool definitions, each under the
names one vendor uses. What differs between vendors stays in their ``<vendor>_request`` modules."""

from __future__ import annotations

from typing import Any

from forge.types import Request

__all__ = ["sampling", "tool_specs"]


def sampling(
    request: Request, *, max_tokens: str | None, stop: str | None, seed: bool = True
) -> dict[str, Any]:
    """``max_tokens``, ``temperature``, ``top_p``, ``seed`` and ``stop`` in that order, as a vendor names
    them (``max_tokens``/``stop``: the vendor's field, None when it takes none there; ``seed``: whether it
    takes one), leaving out what the request does not set."""
    out: dict[str, Any] = {}
    if max_tokens is not None and request.max_tokens is not None:
        out[max_tokens] = request.max_tokens
    if request.temperature is not None:
        out["temperature"] = request.temperature
    if request.top_p is not None:
        out["top_p"] = request.top_p
    if seed and request.seed is not None:
        out["seed"] = request.seed
    if stop is not None and request.stop:
        out[stop] = list(request.stop)
    return out


def tool_specs(request: Request, *, schema: str) -> list[dict[str, Any]]:
    """The request's tools as ``{"name", schema: parameters, "description" (when set)}``."""
    specs: list[dict[str, Any]] = []
    for tool in request.tools:
        spec: dict[str, Any] = {"name": tool.name, schema: dict(tool.parameters)}
        if tool.description:
            spec["description"] = tool.description
        specs.append(spec)
    return specs
