"""The same exception with or without retries: a 429 is a RateLimitError whether
``max_attempts`` is 1 or 6, and it carries the attempt history.

Against the hostile raw-bytes server (every provider and the Responses API, invoke
and stream) and the emulator.
"""

from __future__ import annotations

import pytest

import forge
from forge.testing import Emulator, Fault
from tests.hostile import BASE_PATHS, HostileServer, Reply, provider_config

APIS: dict[str, tuple[str, dict[str, object], str]] = {
    "openai": ("openai", {}, "openai:gpt-4o-mini"),
    "responses": ("openai", {"api": "responses"}, "openai:gpt-4o-mini"),
    "anthropic": ("anthropic", {}, "anthropic:claude-haiku-4-5"),
    "google": ("google", {}, "google:gemini-2.5-flash"),
    "ollama": ("ollama", {}, "ollama:llama3.2"),
}

# Each vendor's documented 429 body, so the vendor client classifies it as it would for real.
RATE_LIMIT_BODY: dict[str, dict[str, object]] = {
    "openai": {"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}},
    "anthropic": {"type": "error", "error": {"type": "rate_limit_error", "message": "Rate limited"}},
    "google": {"error": {"code": 429, "message": "Resource exhausted", "status": "RESOURCE_EXHAUSTED"}},
    "ollama": {"error": "too many requests"},
}


async def _no_sleep(seconds: float) -> None:
    return None


@pytest.mark.parametrize("api", list(APIS))
@pytest.mark.parametrize("max_attempts", [1, 3])
@pytest.mark.parametrize("mode", ["invoke", "stream"])
async def test_a_429_is_a_rate_limit_error_whatever_max_attempts(api: str, max_attempts: int, mode: str) -> None:
    provider, extra, model = APIS[api]
    async with HostileServer() as srv:
        for _ in range(max_attempts):
            srv.push(Reply.http(429, RATE_LIMIT_BODY[provider], headers={"retry-after": "0"}))
        cfg = provider_config(provider, srv.url(BASE_PATHS[provider]), retry={"max_attempts": max_attempts}, **extra)
        async with forge.Registry(config=cfg, sleep=_no_sleep) as reg:
            with pytest.raises(forge.RateLimitError) as info:
                if mode == "invoke":
                    await reg.invoke(model, "hi")
                else:
                    await reg.stream(model, "hi").collect()
        assert len(srv.requests) == max_attempts
    error = info.value
    assert error.status == 429
    assert error.attempt_count == max_attempts
    assert [a.attempt for a in error.attempts] == list(range(1, max_attempts + 1))
    assert all(type(a.error) is forge.RateLimitError for a in error.attempts)
    assert error.attempts[-1].error is error and error.attempts[-1].wait == 0.0


@pytest.mark.parametrize("api", list(APIS))
async def test_a_final_non_retryable_error_carries_the_earlier_attempts(api: str) -> None:
    provider, extra, model = APIS[api]
    async with HostileServer() as srv:
        srv.push(
            Reply.http(503, "<html>upstream unavailable</html>", content_type="text/html"),
            Reply.http(401, {"error": {"message": "bad key", "type": "authentication_error"}}),
        )
        cfg = provider_config(provider, srv.url(BASE_PATHS[provider]), retry={"max_attempts": 4}, **extra)
        async with forge.Registry(config=cfg, sleep=_no_sleep) as reg:
            with pytest.raises(forge.AuthenticationError) as info:
                await reg.invoke(model, "hi")
    assert [type(a.error) for a in info.value.attempts] == [forge.OverloadedError, forge.AuthenticationError]
    assert info.value.attempt_count == 2


async def test_a_retry_after_beyond_max_wait_keeps_the_error_class() -> None:
    # A 503 asking for ten minutes: not retried, and still an OverloadedError (not a RateLimitError).
    async with HostileServer() as srv:
        srv.push(Reply.http(503, {"error": {"message": "busy", "type": "server_error"}}, headers={"retry-after": "600"}))
        cfg = provider_config("openai", srv.url("/v1"), retry={"max_attempts": 5, "max_wait": 30})
        async with forge.Registry(config=cfg, sleep=_no_sleep) as reg:
            with pytest.raises(forge.OverloadedError, match="longer than max_wait") as info:
                await reg.invoke("openai:gpt-4o-mini", "hi")
    assert info.value.retry_after == 600 and info.value.attempt_count == 1
    assert len(srv.requests) == 1


def test_retry_exhausted_is_gone_with_a_message_that_says_what_replaced_it() -> None:
    with pytest.raises(AttributeError, match="last error's own class"):
        forge.RetryExhausted  # noqa: B018
    assert "RetryExhausted" not in forge.__all__


@pytest.mark.parametrize("provider", ["openai", "anthropic", "google", "ollama"])
@pytest.mark.parametrize("max_attempts", [1, 6])
@pytest.mark.parametrize("mode", ["invoke", "stream"])
async def test_emulator_429_is_a_rate_limit_error_whatever_max_attempts(
    provider: str, max_attempts: int, mode: str
) -> None:
    async with Emulator() as emu:
        emu.script(Fault.rate_limit(retry_after=0.0), provider=provider, times=None)
        cfg = emu.config()
        cfg["providers"][provider]["retry"] = {"max_attempts": max_attempts}  # type: ignore[index]
        model = APIS[provider][2]
        async with forge.Registry(config=cfg, sleep=_no_sleep) as reg:
            with pytest.raises(forge.RateLimitError) as info:
                if mode == "invoke":
                    await reg.invoke(model, "hi")
                else:
                    await reg.stream(model, "hi").collect()
    assert info.value.attempt_count == max_attempts
    assert len(info.value.attempts) == max_attempts


@pytest.mark.parametrize("provider", ["openai", "anthropic", "google", "ollama"])
async def test_emulator_5xx_names_the_base_url(provider: str) -> None:
    async with Emulator() as emu:
        emu.script(Fault.server_error(500), provider=provider, times=None)
        cfg = emu.config()
        cfg["providers"][provider]["retry"] = {"max_attempts": 1}  # type: ignore[index]
        async with forge.Registry(config=cfg) as reg:
            with pytest.raises(forge.ServerError) as info:
                await reg.invoke(APIS[provider][2], "hi")
    assert info.value.base_url is not None and info.value.base_url.startswith(emu.url)
    assert info.value.base_url in str(info.value)
