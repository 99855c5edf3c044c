"""Model references, aliases, lazy provider creation and clear errors."""

from __future__ import annotations

import pytest

import forge
from forge.config import load_config
from forge.errors import ConfigError
from forge.registry import parse_model_ref


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("openai:gpt-4o-mini", ("openai", "gpt-4o-mini")),
        ("gemini:gemini-2.5-flash", ("google", "gemini-2.5-flash")),
        ("ollama:llama3:8b", ("ollama", "llama3:8b")),
        ("claude-sonnet-4-5", ("anthropic", "claude-sonnet-4-5")),
        ("fast", ("openai", "gpt-4o-mini")),
        ("anthropic:smart", ("anthropic", "claude-opus-4-1")),
    ],
)
def test_model_refs(ref: str, expected: tuple[str, str]) -> None:
    cfg = load_config(
        {
            "aliases": {"fast": "openai:gpt-4o-mini"},
            "providers": {"anthropic": {"models": {"smart": "claude-opus-4-1"}}},
        }
    )
    assert parse_model_ref(ref, cfg) == expected


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("llama3:8b", "write 'ollama:llama3:8b'"),
        ("mystery-model", "Cannot tell which provider serves model 'mystery-model'"),
        ("openai:", "names no model"),
        ("", "non-empty string"),
    ],
)
def test_bad_model_refs(ref: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_model_ref(ref, load_config({}))


async def test_missing_key_is_one_clear_sentence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    async with forge.Registry(config={}) as reg:
        with pytest.raises(ConfigError, match="No API key for provider 'openai': set OPENAI_API_KEY"):
            reg.get_llm("openai:gpt-4o-mini")


async def test_closed_registry_refuses_new_handles() -> None:
    reg = forge.Registry(config={})
    await reg.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        reg.get_llm("ollama:llama3")


def test_unknown_request_parameter_is_named() -> None:
    with pytest.raises(TypeError, match="Unknown request parameter.*'temprature'.*extra="):
        forge.build_request("m", "hi", temprature=0.2)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"max_tokens": 0}, "max_tokens must be a positive int"),
        ({"temperature": 3}, "temperature must be between 0 and 2"),
        ({"response_format": "yaml"}, "response_format must be"),
        ({"stop": 5}, "stop must be a str or a list"),
        ({"tool_choice": "get_time"}, "tool_choice 'get_time' is not"),
    ],
)
def test_bad_request_values(params: dict[str, object], message: str) -> None:
    with pytest.raises((TypeError, ValueError), match=message):
        forge.build_request("m", "hi", **params)


def test_system_messages_fold_into_system() -> None:
    req = forge.build_request("m", [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}])
    assert req.system == "be brief"
    assert [m.role for m in req.messages] == ["user"]


async def test_warm_builds_the_provider_off_the_loop_before_the_first_call() -> None:
    from forge.testing import Emulator

    async with Emulator() as emu, forge.Registry(emu.config()) as reg:
        await reg.warm("openai:gpt-4o-mini")
        assert "openai" in reg._providers
        assert (await reg.stream("openai:gpt-4o-mini", "hi").collect()).text


async def test_warm_refuses_an_unknown_model_with_a_config_error() -> None:
    async with forge.Registry({}) as reg:
        with pytest.raises(forge.ConfigError, match="Cannot tell which provider"):
            await reg.warm("mystery-model")
