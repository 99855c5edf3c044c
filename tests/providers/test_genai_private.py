"""The google-genai internals forge uses (forge/providers/_genai_private.py): present, and the request
they build is byte for byte the SDK's. A google-genai release that changes one fails here by name."""

from __future__ import annotations

import importlib
from importlib.metadata import version

import httpx2
import pytest

from forge.providers import _genai_private
from forge.providers.google import GoogleProvider, build_gemini_http_request, gemini_call_args
from tests.providers.test_google import FULL_REQUEST, _config, _events, _recorder, _sdk_client


def test_the_installed_sdk_has_every_private_function_forge_uses() -> None:
    _genai_private.check()


@pytest.mark.asyncio
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "nonstream"])
async def test_built_request_is_byte_for_byte_the_sdks(stream: bool) -> None:
    sdk_seen: list[httpx2.Request] = []
    forge_seen: list[httpx2.Request] = []
    config = _config(timeout=30.0)
    async with (
        httpx2.AsyncClient(transport=_recorder(sdk_seen)) as sdk_http,
        httpx2.AsyncClient(transport=_recorder(forge_seen)) as forge_http,
    ):
        sdk = _sdk_client(sdk_http, config)
        provider = GoogleProvider(config, http_client=forge_http)
        model, contents, cfg = gemini_call_args(FULL_REQUEST)
        if stream:
            async for _ in await sdk.aio.models.generate_content_stream(model=model, contents=contents, config=cfg):
                pass
            await _events(provider, FULL_REQUEST)
        else:
            await sdk.aio.models.generate_content(model=model, contents=contents, config=cfg)
            await provider.complete(FULL_REQUEST)
        _, url, _, body = build_gemini_http_request(provider.client, model, contents, cfg, stream=stream)
        sdk.close()
        await provider.aclose()
    [theirs], [ours] = sdk_seen, forge_seen
    assert (ours.method, str(ours.url), ours.content) == (theirs.method, str(theirs.url), theirs.content)
    assert (url, body) == (str(theirs.url), theirs.content)
    assert list(ours.headers.multi_items()) == list(theirs.headers.multi_items())


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("google.genai.models", "_GenerateContentParameters_to_mldev"),
        ("google.genai._common", "convert_to_dict"),
        ("google.genai._common", "encode_unserializable_types"),
    ],
)
def test_a_missing_private_function_is_named_with_the_installed_version(
    monkeypatch: pytest.MonkeyPatch, module: str, name: str
) -> None:
    monkeypatch.delattr(importlib.import_module(module), name)
    with pytest.raises(ImportError) as info:
        _genai_private.check()
    assert f"google-genai {version('google-genai')} has no {module}.{name}" in str(info.value)


def test_a_changed_signature_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    from google.genai import _api_client

    def _build_request(self: object, method: str, path: str) -> None: ...

    monkeypatch.setattr(_api_client.BaseApiClient, "_build_request", _build_request)
    with pytest.raises(ImportError, match=r"changed google\.genai\._api_client\.BaseApiClient\._build_request"):
        _genai_private.check()
