"""Request mapping the vendors share: the sampling fields and function-tool definitions, each under the
names one vendor uses. What differs between vendors stays in their ``<vendor>_request`` modules."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from forge.types import Request

__all__ = ["sampling", "sent_as_is", "tool_specs"]

_CLIENT_OPTIONS = frozenset({"extra_headers", "extra_query", "extra_body", "timeout"})


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


def sent_as_is(
    params: dict[str, Any], *, required: Collection[str] = (), omitted: object = None
) -> dict[str, Any]:
    """``params`` for the openai client's ``create()`` with the whole body sent as it is, in
    ``extra_body``, instead of through the client's transform.

    The client walks each argument against its TypedDict before sending (aliases,
    file and date formats), hashing typing objects on the way (``model`` is a Literal
    of every model name): the largest CPU cost of a streamed call outside the network
    (``python -m benchmarks overhead`` prints it per call), and more with a longer
    conversation. What forge builds is JSON already, which that walk leaves as
    it is (``tests/providers/test_sent_as_is.py`` checks that against the installed
    client). A ``required`` argument is passed as ``omitted`` (the client's NOT_GIVEN,
    which it skips and drops) and ``extra_body`` supplies it; ``stream`` too is only in
    the body: ``with_streaming_response`` streams the body whatever the argument says.
    A caller's own ``extra_body`` still wins.
    """
    out: dict[str, Any] = {}
    body: dict[str, Any] = {}
    for key, value in params.items():
        if key in _CLIENT_OPTIONS:
            out[key] = value
        else:
            body[key] = value
            if key in required:
                out[key] = omitted
    if body:
        out["extra_body"] = {**body, **params.get("extra_body", {})}
    return out
