"""Passwords in URLs the breaker and fallback paths print: the breaker's Redis URL, a base URL with userinfo."""

from __future__ import annotations

import json
import uuid

import pytest

import forge
from forge.config import load_config
from forge.testing import Emulator, Fault

PASSWORD = "pw-canary-" + uuid.uuid4().hex


def test_the_breaker_redis_password_is_not_in_the_config_repr() -> None:
    config = load_config({"breaker": {"backend": "redis", "redis_url": f"redis://u:{PASSWORD}@127.0.0.1:6399/0"}})
    assert config.breaker.redis_url is not None and PASSWORD in config.breaker.redis_url  # kept, only not printed
    for text in (repr(config), str(config), repr(config.breaker)):
        assert PASSWORD not in text


def test_a_bad_breaker_redis_url_is_refused_without_its_password() -> None:
    with pytest.raises(forge.ConfigError) as info:
        load_config({"breaker": {"backend": "redis", "redis_url": f"http://u:{PASSWORD}@127.0.0.1:6399/0"}})
    assert "breaker.redis_url" in str(info.value)
    assert PASSWORD not in str(info.value)


async def test_a_base_url_password_is_not_in_breaker_events_snapshots_or_the_config_repr() -> None:
    events: list[str] = []
    async with Emulator() as emu:
        emu.script(Fault.server_error(503), provider="openai", times=None)
        cfg = emu.config()
        base = cfg["providers"]["openai"]["base_url"]
        assert isinstance(base, str)
        cfg["providers"]["openai"]["base_url"] = base.replace("http://", f"http://user:{PASSWORD}@")
        cfg["providers"]["openai"]["retry"] = {"max_attempts": 1}
        cfg["breaker"] = {"failures": 1, "cooldown": 30}
        async with forge.Registry(config=cfg) as reg:
            reg.metrics.subscribe(lambda e: events.append(repr(e)))
            for _ in range(2):
                reply = await reg.invoke("openai:gpt-4o-mini", "hi", fallbacks=["anthropic:claude-haiku-4-5"])
                assert reply.provider == "anthropic"
            snapshot = reg.metrics.snapshot()
            produced = [json.dumps(snapshot, default=str), reg.metrics.format_table(), repr(reg.config),
                        repr(reg.provider_config("openai")), repr(reply.fallback_attempts), *events]
    assert snapshot["breakers"], "the breaker should be in the snapshot"
    assert any("'breaker'" in e for e in events), "a breaker event should have fired"
    leaked = [text[:300] for text in produced if PASSWORD in text]
    assert not leaked, leaked


def test_the_account_of_a_base_url_with_a_password_hides_it_but_tells_two_apart() -> None:
    def account(password: str) -> str:
        config = load_config({"providers": {"openai": {
            "api_key": "sk-test", "base_url": f"http://user:{password}@127.0.0.1:9/v1"}}})
        return config.provider("openai").account()

    first, second = account(PASSWORD), account(PASSWORD + "-other")
    assert PASSWORD not in first and PASSWORD not in second
    assert first != second  # a proxy password is a credential: two of them are two accounts


async def test_the_account_breaker_key_never_holds_the_base_url_password() -> None:
    cfg = {"providers": {"openai": {"api_key": "sk-test", "base_url": f"http://user:{PASSWORD}@127.0.0.1:9/v1"}}}
    async with forge.Registry(config=cfg) as reg:
        llm = reg.get_llm("openai:gpt-4o-mini")
        assert PASSWORD not in reg.account_breaker_key(llm)
        assert PASSWORD not in reg.breaker_key(llm)
