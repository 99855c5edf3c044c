"""The ollama client internals forge relies on, in one place, checked when this module is imported.

forge sends the exact body ``ollama.AsyncClient.chat`` would send, built with the
client's own private helpers, on the client's own pooled httpx client (see
:func:`forge.providers.ollama.build_ollama_chat_payload`). Private names can
change in any release; when one does, importing this module fails with an
error naming it and the installed version, and
``tests/providers/test_ollama_private.py`` (the byte-for-byte comparison with
the client's own request) says what changed.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterator
from importlib.metadata import version
from typing import Any

import httpx
import ollama

__all__ = ["check", "copy_messages", "copy_tools", "http_client"]

# ``import ollama._client`` is shadowed by the package's default ``_client`` instance.
_client_module = importlib.import_module("ollama._client")
_USED: list[tuple[str, tuple[str, ...]]] = [("_copy_messages", ("messages",)), ("_copy_tools", ("tools",))]


def check() -> None:
    """Raise ImportError naming the private ollama function that is gone or changed shape."""
    installed = version("ollama")
    for name, params in _USED:
        fn = getattr(_client_module, name, None)
        if fn is None:
            raise ImportError(
                f"ollama {installed} has no ollama._client.{name}, which forge uses to build the exact body "
                "the client sends. Install the ollama version forge was tested with (0.6.x) or a forge "
                "release that supports this one."
            )
        if list(inspect.signature(fn).parameters)[: len(params)] != list(params):
            raise ImportError(
                f"ollama {installed} changed ollama._client.{name}{inspect.signature(fn)}; forge calls it "
                f"as ({', '.join(params)}). Install ollama 0.6.x or a forge release that supports this one."
            )


check()

copy_messages: Callable[[Any], Iterator[Any]] = _client_module._copy_messages
copy_tools: Callable[[Any], Iterator[Any]] = _client_module._copy_tools


def http_client(client: ollama.AsyncClient) -> httpx.AsyncClient:
    """The client's own pooled httpx client (``BaseClient._client``); ollama offers no public handle."""
    http = getattr(client, "_client", None)
    if not isinstance(http, httpx.AsyncClient):
        raise ImportError(
            f"ollama {version('ollama')}: AsyncClient._client is no longer an httpx.AsyncClient "
            f"(got {type(http).__name__}); forge sends its requests on it."
        )
    return http
