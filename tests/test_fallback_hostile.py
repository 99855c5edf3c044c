"""Fallback chains against a primary that fails as real outages do (raw bytes, not the emulator)."""

from __future__ import annotations

import forge
from forge.testing import Emulator
from tests.hostile import Hang, HostileServer, Reply

PRIMARY = "openai:gpt-4o-mini"
BACKUP = "anthropic:claude-haiku-4-5"

_HTML_503 = (
    "<html><head><title>503 Service Temporarily Unavailable</title></head>"
    "<body><center><h1>503 Service Temporarily Unavailable</h1></center><hr><center>nginx</center>"
    "</body></html>"
)


def _config(srv: HostileServer, emu: Emulator, **openai: object) -> dict[str, object]:
    cfg: dict[str, object] = dict(emu.config())
    providers = cfg["providers"]
    assert isinstance(providers, dict)
    providers["openai"] = {"api_key": "sk-test", "base_url": srv.url("/v1"),
                           "retry": {"max_attempts": 1}, **openai}
    return cfg


async def test_a_proxys_html_503_falls_through_and_opens_the_breaker() -> None:
    async with HostileServer() as srv, Emulator(chunk_count=2) as emu:
        srv.push(Reply.http(503, _HTML_503, content_type="text/html"))
        cfg = {**_config(srv, emu), "breaker": {"failures": 1, "cooldown": 60}}
        async with forge.Registry(config=cfg) as reg:
            first = await reg.invoke(PRIMARY, "hi", fallbacks=[BACKUP])
            second = await reg.invoke(PRIMARY, "hi", fallbacks=[BACKUP])
        assert len(srv.requests) == 1  # the open breaker kept the second call away from the primary
    assert first.provider == second.provider == "anthropic"
    assert first.text
    assert first.fallback_attempts[0].model == PRIMARY and first.fallback_attempts[0].error.endswith("Error")
    assert second.fallback_attempts[0].skipped == "breaker_open"


async def test_a_hanging_primary_times_out_and_the_fallback_answers() -> None:
    async with HostileServer() as srv, Emulator(chunk_count=2) as emu:
        srv.push(Reply.raw(Hang()))
        async with forge.Registry(config=_config(srv, emu, timeout=0.3)) as reg:
            reply = await reg.invoke(PRIMARY, "hi", fallbacks=[BACKUP])
    assert reply.provider == "anthropic"
    [tried] = reply.fallback_attempts
    assert tried.error == "ProviderTimeout" and tried.elapsed_s >= 0.3


async def test_a_stream_whose_primary_sends_headers_then_hangs_falls_back() -> None:
    async with HostileServer() as srv, Emulator(chunk_count=2) as emu:
        srv.push(Reply.stream([Hang()], finish=False))
        async with forge.Registry(config=_config(srv, emu, timeout=0.3)) as reg:
            stream = reg.stream(PRIMARY, "hi", fallbacks=[BACKUP])
            async with stream:
                text = await stream.collect()
    assert text.provider == "anthropic" and text.text
    assert [a.error for a in text.fallback_attempts] == ["ProviderTimeout"]
