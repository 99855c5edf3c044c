"""Fallback chains with the response cache: each link answers from its own cached replies."""

from __future__ import annotations

from forge.metrics import MetricEvent
from forge.testing import Emulator, Fault
from tests.conftest import FakeClock
from tests.integration.test_fallback_emulator import BACKUP, PRIMARY, _config, _registry, _sent


async def test_a_cached_chain_serves_repeats_from_the_cache_invoke_and_stream() -> None:
    async with Emulator(chunk_count=2) as emu, _registry(_config(emu)) as reg:
        chain = reg.fallback_llm(PRIMARY, [BACKUP], enable_cache=True)
        assert chain is not None and reg.fallback_llm(PRIMARY, [BACKUP], enable_cache=True) is chain
        assert reg.fallback_llm(PRIMARY, [BACKUP]) is not chain  # the uncached handle stays as it was
        first, again = await chain.invoke("hi"), await chain.invoke("hi")
        assert (first.cached, again.cached, again.text) == (False, True, first.text)
        streamed = chain.stream("hi there")
        await streamed.collect()
        replay = chain.stream("hi there")
        await replay.collect()
        assert (streamed.cached, replay.cached, replay.text) == (False, True, streamed.text)
        assert _sent(emu, "openai") == 2
        # ...and fallbacks= on reg.invoke uses no cache (as documented)
        assert not (await reg.invoke(PRIMARY, "hi", fallbacks=[BACKUP])).cached


async def test_a_link_reached_by_falling_back_answers_from_its_own_cache() -> None:
    async with Emulator(chunk_count=2) as emu:
        emu.script(Fault.server_error(503), provider="openai", times=None)
        async with _registry(_config(emu, attempts=1)) as reg:
            chain = reg.fallback_llm(PRIMARY, [BACKUP], enable_cache=True)
            assert chain is not None
            first, again = await chain.invoke("hi"), await chain.invoke("hi")
    assert (first.provider, again.provider) == ("anthropic", "anthropic")
    assert (first.cached, again.cached) == (False, True)
    assert _sent(emu, "anthropic") == 1 and _sent(emu, "openai") == 2  # the primary is still asked first


async def test_a_cached_reply_is_no_verdict_on_a_half_open_breaker() -> None:
    clock = FakeClock()
    events: list[MetricEvent] = []
    async with Emulator(chunk_count=2) as emu:
        cfg = _config(emu, attempts=1, breaker={"failures": 1, "cooldown": 30})
        async with _registry(cfg, clock) as reg:
            reg.metrics.subscribe(events.append)
            chain = reg.fallback_llm(PRIMARY, [BACKUP], enable_cache=True)
            assert chain is not None
            assert (await chain.invoke("remembered")).provider == "openai"  # now in the primary's cache
            outage = emu.script(Fault.server_error(503), provider="openai", times=None)
            assert (await chain.invoke("new")).provider == "anthropic"  # the breaker opens
            clock.advance(30)  # half open: the next call is a probe
            hit = await chain.invoke("remembered")
            assert hit.provider == "openai" and hit.cached
            assert (await chain.invoke("newer")).provider == "anthropic"  # the real probe fails
            outage.remaining = 0
    breaker = [(e.fields["old_state"], e.fields["new_state"]) for e in events if e.kind == "breaker"]
    assert ("half_open", "closed") not in breaker, breaker
    assert breaker[-1] == ("half_open", "open"), breaker
