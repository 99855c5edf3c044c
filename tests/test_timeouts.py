"""No silent hangs: a server that accepts and never answers ends in a ProviderTimeout that names its limit.

Played against the hostile raw-bytes server (:class:`tests.hostile.Hang`), for every
provider, with limits well under a second of real time.
"""

from __future__ import annotations

import pytest

import forge
from forge.config import ProviderConfig
from tests.hostile import BASE_PATHS, PROVIDERS, Hang, HostileServer, Reply, provider_config

MODELS = {
    "openai": "openai:gpt-4o-mini",
    "anthropic": "anthropic:claude-haiku-4-5",
    "google": "google:gemini-2.5-flash",
    "ollama": "ollama:llama3.2",
}


def hanging(srv: HostileServer, n: int = 4) -> None:
    srv.push(*[Reply.raw(Hang()) for _ in range(n)])


def test_defaults_bound_every_call() -> None:
    cfg = ProviderConfig("openai")
    assert cfg.connect_timeout <= 10
    assert cfg.deadline is not None and cfg.deadline <= 600
    assert cfg.timeout <= cfg.deadline


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_hanging_server_ends_at_the_config_deadline(provider: str) -> None:
    async with HostileServer() as srv:
        hanging(srv)
        cfg = provider_config(provider, srv.url(BASE_PATHS[provider]), timeout=30, deadline=0.3,
                              retry={"max_attempts": 3, "initial_wait": 0.01})
        async with forge.Registry(cfg) as reg:
            with pytest.raises(forge.ProviderTimeout) as caught:
                await reg.invoke(MODELS[provider], "hi")
    message = str(caught.value)
    assert f"no reply within 0.3s (providers.{provider}.deadline), 1 attempt(s) made" in message


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_per_call_timeout_bounds_the_call(provider: str) -> None:
    async with HostileServer() as srv:
        hanging(srv)
        cfg = provider_config(provider, srv.url(BASE_PATHS[provider]), timeout=30, deadline=30)
        async with forge.Registry(cfg) as reg:
            with pytest.raises(forge.ProviderTimeout) as caught:
                await reg.invoke(MODELS[provider], "hi", timeout=0.2)
    assert "no reply within 0.2s (the call's timeout= argument)" in str(caught.value)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_the_read_timeout_names_its_config_key(provider: str) -> None:
    async with HostileServer() as srv:
        hanging(srv)
        cfg = provider_config(provider, srv.url(BASE_PATHS[provider]), timeout=0.2, deadline=30)
        async with forge.Registry(cfg) as reg:
            with pytest.raises(forge.ProviderTimeout) as caught:
                await reg.invoke(MODELS[provider], "hi")
    assert f"the server sent nothing for 0.2s (providers.{provider}.timeout)" in str(caught.value)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_per_call_max_attempts_overrides_the_config(provider: str) -> None:
    async with HostileServer() as srv:
        hanging(srv)
        cfg = provider_config(provider, srv.url(BASE_PATHS[provider]), timeout=0.1, deadline=30,
                              retry={"max_attempts": 3, "initial_wait": 0.01})
        async with forge.Registry(cfg) as reg:
            with pytest.raises(forge.ProviderTimeout):
                await reg.invoke(MODELS[provider], "hi", max_attempts=1)
        assert len(srv.requests) == 1


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_opening_a_stream_ends_at_the_config_deadline(provider: str) -> None:
    async with HostileServer() as srv:
        hanging(srv)
        cfg = provider_config(provider, srv.url(BASE_PATHS[provider]), timeout=30, deadline=0.3)
        async with forge.Registry(cfg) as reg:
            with pytest.raises(forge.ProviderTimeout) as caught:
                await reg.stream(MODELS[provider], "hi").collect()
    assert f"no reply within 0.3s (providers.{provider}.deadline)" in str(caught.value)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_stream_timeout_and_max_attempts_apply_per_call(provider: str) -> None:
    async with HostileServer() as srv:
        hanging(srv)
        cfg = provider_config(provider, srv.url(BASE_PATHS[provider]), timeout=30, deadline=30,
                              retry={"max_attempts": 3, "initial_wait": 0.01})
        async with forge.Registry(cfg) as reg:
            with pytest.raises(forge.StreamTimeout) as caught:
                await reg.stream(MODELS[provider], "hi", timeout=0.2, max_attempts=1).collect()
        assert len(srv.requests) == 1
    assert "(timeout)" in str(caught.value)


async def test_batch_invoke_takes_timeout_and_max_attempts_per_item() -> None:
    async with HostileServer() as srv:
        hanging(srv, 2)
        cfg = provider_config("ollama", srv.url(), timeout=30, deadline=30, retry={"max_attempts": 3})
        async with forge.Registry(cfg) as reg:
            results = await reg.batch_invoke(
                MODELS["ollama"], ["a", "b"], mode="concurrent", timeout=0.2, max_attempts=1
            )
        assert len(srv.requests) == 2
    assert all(isinstance(r, forge.ProviderTimeout) for r in results)


async def test_bad_call_options_are_refused_before_sending() -> None:
    async with HostileServer() as srv:
        cfg = provider_config("openai", srv.url("/v1"))
        async with forge.Registry(cfg) as reg:
            with pytest.raises(ValueError, match="timeout must be >= 0"):
                await reg.invoke(MODELS["openai"], "hi", timeout=-1)
            with pytest.raises(ValueError, match="max_attempts must be a whole number >= 1"):
                await reg.invoke(MODELS["openai"], "hi", max_attempts=0)
        assert srv.requests == []
