"""A primary that hangs, a stream that breaks after opening, a probe that streams, a tenant's 429:
what each costs the chain and its breakers. Hanging servers are the hostile raw-bytes server
(and the emulator where it should behave the same); the slow-call and hedge timers run on an
injected sleep the test opens, so nothing waits on the wall clock for a verdict."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

import forge
from forge.testing import Emulator, Fault
from tests.conftest import FakeClock
from tests.hostile import Close, Hang, HostileServer, Reply, sse

PRIMARY = "openai:gpt-4o-mini"
BACKUP = "anthropic:claude-haiku-4-5"


class Gate:
    """A ``sleep`` that returns only once the test opens the gate (the timers' "time passes")."""

    def __init__(self) -> None:
        self.asked: list[float] = []
        self._open = asyncio.Event()

    async def sleep(self, seconds: float) -> None:
        self.asked.append(seconds)
        await self._open.wait()

    def open(self) -> None:
        self._open.set()


async def _until(condition: object, what: str) -> None:
    """Yield to the event loop until ``condition()`` holds (no wall-clock waiting)."""
    for _ in range(500):
        if condition():  # type: ignore[operator]
            return
        await asyncio.sleep(0)
    raise AssertionError(f"never happened: {what}")


def _hostile(srv: HostileServer, emu: Emulator, breaker: dict[str, object], **openai: object) -> dict[str, object]:
    cfg: dict[str, object] = dict(emu.config())
    providers = cfg["providers"]
    assert isinstance(providers, dict)
    providers["openai"] = {"api_key": "sk-test", "base_url": srv.url("/v1"), "timeout": 60,
                           "retry": {"max_attempts": 1}, **openai}
    cfg["breaker"] = breaker
    return cfg


def _chunk(delta: dict[str, object]) -> dict[str, object]:
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}]}


def _key(reg: forge.Registry) -> str:
    return reg.breaker_key(reg.get_llm(PRIMARY))


async def test_a_hanging_primary_is_judged_at_slow_call_and_the_hedge_answers() -> None:
    gate = Gate()
    chain = forge.FallbackChain((forge.Fallback(BACKUP),), hedge_after=5.0)
    async with HostileServer() as srv, Emulator(chunk_count=2) as emu:
        srv.push(Reply.raw(Hang()))
        cfg = _hostile(srv, emu, {"failures": 1, "cooldown": 60, "slow_call": 5.0})
        async with forge.Registry(config=cfg, sleep=gate.sleep) as reg:
            call = asyncio.ensure_future(reg.invoke(PRIMARY, "hi", fallbacks=chain))
            await srv.wait_requests(1)
            await _until(lambda: len(gate.asked) == 2, "both timers armed")
            assert not call.done()  # the primary's 60 s timeout is far away
            gate.open()
            reply = await asyncio.wait_for(call, 10)
            await srv.wait_disconnects(1)  # the hanging request was cancelled and its connection closed
            second = await reg.invoke(PRIMARY, "hi", fallbacks=chain)
            states = reg.breakers.states()
            key = _key(reg)
    assert reply.provider == "anthropic" and reply.text
    assert [(a.model, a.error) for a in reply.fallback_attempts] == [(PRIMARY, "SlowCall")]
    assert gate.asked == [5.0, 5.0]
    assert states[key] == "open"  # the slow call counted at once: no need to wait for its timeout
    assert second.fallback_attempts[0].skipped == "breaker_open"
    assert len(srv.requests) == 1


async def test_on_the_emulator_a_hung_primary_is_hedged_too() -> None:
    gate = Gate()
    chain = forge.FallbackChain((forge.Fallback(BACKUP),), hedge_after=5.0)
    async with Emulator(chunk_count=2) as emu:
        emu.script(Fault.hang(), provider="openai", times=None)
        cfg: dict[str, object] = dict(emu.config())
        cfg["breaker"] = {"failures": 1, "cooldown": 60, "slow_call": 5.0}
        async with forge.Registry(config=cfg, sleep=gate.sleep) as reg:
            call = asyncio.ensure_future(reg.invoke(PRIMARY, "hi", fallbacks=chain))
            await _until(lambda: len(gate.asked) == 2, "both timers armed")
            gate.open()
            reply = await asyncio.wait_for(call, 10)
            assert reg.breakers.states()[_key(reg)] == "open"
    assert reply.provider == "anthropic"
    assert [a.error for a in reply.fallback_attempts] == ["SlowCall"]


async def test_while_a_slow_call_is_out_other_calls_go_to_the_next_link() -> None:
    gate = Gate()
    async with HostileServer() as srv, Emulator(chunk_count=2) as emu:
        srv.push(Reply.raw(Hang()))
        cfg = _hostile(srv, emu, {"failures": 5, "cooldown": 60, "slow_call": 2.0})
        async with forge.Registry(config=cfg, sleep=gate.sleep) as reg:
            breaker = reg.breakers.get(_key(reg))
            first = asyncio.ensure_future(reg.invoke(PRIMARY, "hi", fallbacks=[BACKUP]))
            await srv.wait_requests(1)
            await _until(lambda: gate.asked == [2.0], "the slow-call timer armed")
            gate.open()
            await _until(lambda: breaker.slow_calls == 1, "the slow verdict")
            others = [await reg.invoke(PRIMARY, "hi", fallbacks=[BACKUP]) for _ in range(3)]
            assert breaker.state == "closed"  # one slow call (1 of 5 failures) does not open it ...
            assert all(o.fallback_attempts[0].skipped == "breaker_open" for o in others)  # ... but it is in doubt
            assert len(srv.requests) == 1
            first.cancel()  # the caller gives up: the hanging request is closed, the doubt lifted
            with contextlib.suppress(asyncio.CancelledError):
                await first
            await srv.wait_disconnects(1)
            assert breaker.slow_calls == 0
            assert await breaker.admit() == "allow"
    assert all(o.provider == "anthropic" for o in others)


async def test_a_stream_whose_primary_hangs_is_hedged_and_the_loser_closed() -> None:
    gate = Gate()
    chain = forge.FallbackChain((forge.Fallback(BACKUP),), hedge_after=3.0)
    async with HostileServer() as srv, Emulator(chunk_count=2) as emu:
        srv.push(Reply.stream([Hang()], finish=False))  # headers, then silence
        cfg = _hostile(srv, emu, {"failures": 1, "cooldown": 60, "slow_call": 3.0})
        async with forge.Registry(config=cfg, sleep=gate.sleep) as reg:

            async def read() -> forge.Response:
                async with reg.stream(PRIMARY, "hi", fallbacks=chain) as stream:
                    return await stream.collect()

            call = asyncio.ensure_future(read())
            await srv.wait_requests(1)
            await _until(lambda: len(gate.asked) == 2, "both timers armed")
            gate.open()
            reply = await asyncio.wait_for(call, 10)
            await srv.wait_disconnects(1)
            assert reg.breakers.states()[_key(reg)] == "open"
    assert reply.provider == "anthropic" and reply.text
    assert [a.error for a in reply.fallback_attempts] == ["SlowCall"]


async def test_a_stream_that_breaks_after_opening_counts_against_the_breaker() -> None:
    async with HostileServer() as srv, Emulator(chunk_count=2) as emu:
        srv.push(Reply.stream([*sse(_chunk({"role": "assistant", "content": "Hel"})), Close()], finish=False))
        cfg = _hostile(srv, emu, {"failures": 1, "cooldown": 60})
        async with forge.Registry(config=cfg) as reg:
            with pytest.raises(forge.StreamInterrupted) as broke:
                async with reg.stream(PRIMARY, "hi", fallbacks=[BACKUP]) as stream:
                    await stream.collect()
            after = await reg.invoke(PRIMARY, "hi", fallbacks=[BACKUP])
            states = reg.breakers.states()
            key = _key(reg)
    assert broke.value.partial_text == "Hel"  # past the retry window: no fallback for this stream
    assert states[key] == "open"  # ... but the provider that cut it off is kept away from the next call
    assert after.fallback_attempts[0].skipped == "breaker_open"
    assert len(srv.requests) == 1


async def test_on_the_emulator_a_dropped_stream_opens_the_breaker_too() -> None:
    async with Emulator(chunk_count=4) as emu:
        emu.script(Fault.drop_after(2), provider="openai", times=1)
        cfg: dict[str, object] = dict(emu.config())
        cfg["breaker"] = {"failures": 1, "cooldown": 60}
        async with forge.Registry(config=cfg) as reg:
            with pytest.raises(forge.StreamInterrupted):
                async with reg.stream(PRIMARY, "hi", fallbacks=[BACKUP]) as stream:
                    await stream.collect()
            assert reg.breakers.states()[_key(reg)] == "open"


async def test_a_stream_the_caller_closes_early_says_nothing_about_the_provider() -> None:
    async with Emulator(chunk_count=6) as emu:
        cfg: dict[str, object] = dict(emu.config())
        cfg["breaker"] = {"failures": 1, "cooldown": 60}
        async with forge.Registry(config=cfg) as reg:
            async with reg.stream(PRIMARY, "hi", fallbacks=[BACKUP]) as stream:
                async for _ in stream:
                    break
            assert reg.breakers.states()[_key(reg)] == "closed"


async def test_a_stream_probe_is_one_request_whatever_the_stream_retry_policy() -> None:
    clock = FakeClock()
    async with Emulator(chunk_count=2) as emu:
        emu.script(Fault.server_error(503), provider="openai", times=None)
        cfg: dict[str, object] = dict(emu.config())
        providers = cfg["providers"]
        assert isinstance(providers, dict)
        providers["openai"] = {**providers["openai"], "retry": {"max_attempts": 3, "initial_wait": 0.01}}
        cfg["breaker"] = {"failures": 3, "cooldown": 30}
        async with forge.Registry(config=cfg, clock=clock, sleep=clock.sleep) as reg:
            async with reg.stream(PRIMARY, "hi", fallbacks=[BACKUP]) as stream:
                await stream.collect()  # 3 failed attempts open the breaker
            clock.advance(30)
            async with reg.stream(PRIMARY, "hi", fallbacks=[BACKUP]) as stream:
                reply = await stream.collect()
    assert reply.provider == "anthropic"
    assert [(a.error, a.attempts) for a in reply.fallback_attempts] == [("OverloadedError", 1)]
    assert sum(1 for r in emu.requests if r.provider == "openai") == 4  # 3, then the one probe


async def test_a_tenants_rate_limit_opens_its_account_breaker_not_the_endpoints() -> None:
    async with Emulator(chunk_count=2) as emu:
        emu.script(Fault.rate_limit(retry_after=120), provider="openai", times=1)
        cfg: dict[str, object] = dict(emu.config())
        providers = cfg["providers"]
        assert isinstance(providers, dict)
        providers["openai"] = {**providers["openai"], "retry": {"max_attempts": 1, "max_wait": 1}}
        cfg["breaker"] = {"failures": 1, "cooldown": 60}
        async with forge.Registry(config=cfg) as reg:
            llm = reg.get_llm(PRIMARY)
            endpoint, account = reg.breaker_key(llm), reg.account_breaker_key(llm)
            first = await reg.invoke(PRIMARY, "hi", fallbacks=[BACKUP])
            states = reg.breakers.states()
    assert first.fallback_attempts[0].error == "RateLimitError"
    assert endpoint != account and account.startswith(f"openai|{emu.base_urls['openai']}#")
    assert (states[endpoint], states[account]) == ("closed", "open")
    assert "sk-" not in account and "test" not in account.split("#")[1]  # a one-way fingerprint, no key
