"""The ollama client internals forge uses (forge/providers/_ollama_private.py): present, and the body
they build is byte for byte the client's. An ollama release that changes one fails here by name."""

from __future__ import annotations

import importlib
from importlib.metadata import version

import httpx
import ollama
import pytest

from forge.providers import _ollama_private
from forge.providers.ollama import OllamaProvider, ollama_chat_args
from tests.providers.test_ollama import HOST, _config, _recorder, _request


def test_the_installed_client_has_every_private_function_forge_uses() -> None:
    _ollama_private.check()


@pytest.mark.asyncio
async def test_built_body_is_byte_for_byte_the_clients() -> None:
    request = _request("héllo 🌧", max_tokens=5, temperature=0.1)
    sdk_seen: list[httpx.Request] = []
    forge_seen: list[httpx.Request] = []
    sdk = ollama.AsyncClient(host=HOST, transport=_recorder(sdk_seen))
    provider = OllamaProvider(_config(), transport=_recorder(forge_seen))
    model, kwargs = ollama_chat_args(request)
    await sdk.chat(model=model, **kwargs, stream=False)
    await provider.complete(request)
    await sdk.close()  # type: ignore[no-untyped-call]
    await provider.aclose()
    [theirs], [ours] = sdk_seen, forge_seen
    assert (ours.method, str(ours.url), ours.content) == (theirs.method, str(theirs.url), theirs.content)


@pytest.mark.parametrize("name", ["_copy_messages", "_copy_tools"])
def test_a_missing_private_function_is_named_with_the_installed_version(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.delattr(importlib.import_module("ollama._client"), name)
    with pytest.raises(ImportError) as info:
        _ollama_private.check()
    assert f"ollama {version('ollama')} has no ollama._client.{name}" in str(info.value)


def test_a_client_without_its_httpx_client_is_named() -> None:
    client = ollama.AsyncClient(host=HOST)
    real = client._client
    client._client = None  # type: ignore[assignment]
    try:
        with pytest.raises(ImportError, match=r"AsyncClient\._client is no longer an httpx\.AsyncClient"):
            _ollama_private.http_client(client)
    finally:
        client._client = real
