"""Every fault kind surfaces as the right forge error, for every provider, invoke and stream,
through the real vendor clients over real sockets (retries off, so the first error is seen)."""

from __future__ import annotations

import pytest

import forge
from forge.testing import Emulator, Fault

MODELS = {
    "openai": "openai:gpt-4o-mini",
    "anthropic": "anthropic:claude-haiku-4-5",
    "google": "google:gemini-2.5-flash",
    "ollama": "ollama:llama3.2",
}

FAULTS: list[tuple[str, Fault, type[forge.ForgeError]]] = [
    ("429", Fault.rate_limit(retry_after=1.0), forge.RateLimitError),
    ("overloaded", Fault.overloaded(), forge.OverloadedError),
    ("500", Fault.server_error(500), forge.ServerError),
    ("401", Fault.auth(), forge.AuthenticationError),
    ("context", Fault.context_length(), forge.ContextLengthError),
    ("404", Fault.not_found(), forge.NotFoundError),
    ("400", Fault.status(400), forge.BadRequestError),
    ("drop", Fault.drop_after(0), forge.ProviderConnectionError),
]


def _config(emu: Emulator, provider: str) -> dict[str, object]:
    cfg = emu.config()
    section = cfg["providers"][provider]  # type: ignore[index]
    section["retry"] = {"max_attempts": 1}
    section["timeout"] = 0.5
    return cfg


@pytest.mark.parametrize("provider", list(MODELS))
@pytest.mark.parametrize(("label", "fault", "expected"), FAULTS, ids=[f[0] for f in FAULTS])
@pytest.mark.parametrize("mode", ["invoke", "stream"])
async def test_fault_maps_to_error_class(
    provider: str, label: str, fault: Fault, expected: type[forge.ForgeError], mode: str
) -> None:
    async with Emulator() as emu:
        emu.script(fault, provider=provider, times=None)
        async with forge.Registry(config=_config(emu, provider)) as reg:
            with pytest.raises(expected) as info:
                if mode == "invoke":
                    await reg.invoke(MODELS[provider], "hi")
                else:
                    await reg.stream(MODELS[provider], "hi").collect()
    error = info.value
    assert isinstance(error, forge.ProviderError)
    assert error.provider == provider
    assert error.model is not None
    if label == "429":
        assert error.status == 429
        assert error.retry_after is not None and error.retry_after >= 1.0
    assert error.__cause__ is not None or label == "drop"


@pytest.mark.parametrize("provider", list(MODELS))
async def test_slow_first_byte_is_a_provider_timeout(provider: str) -> None:
    async with Emulator() as emu:
        emu.script(Fault.slow_first_byte(2.0), provider=provider, times=None)
        async with forge.Registry(config=_config(emu, provider)) as reg:
            with pytest.raises(forge.ProviderTimeout):
                await reg.invoke(MODELS[provider], "hi")


@pytest.mark.parametrize("provider", list(MODELS))
async def test_unknown_model_is_not_found_with_a_clear_message(provider: str) -> None:
    async with Emulator(models=["known-model"]) as emu, forge.Registry(config=_config(emu, provider)) as reg:
        with pytest.raises(forge.NotFoundError) as info:
            await reg.invoke(f"{provider}:no-such-model", "hi")
    assert "no-such-model" in str(info.value)
