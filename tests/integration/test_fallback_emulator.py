"""Fallback chains end to end: forge through the real vendor clients against the emulator."""

from __future__ import annotations

from collections.abc import Callable

import pytest

import forge
from forge.fallback import error_kind, fallback_attempts
from forge.metrics import MetricEvent
from forge.testing import Emulator, Fault
from tests.conftest import FakeClock

PRIMARY = "openai:gpt-4o-mini"
BACKUP = "anthropic:claude-haiku-4-5"
LARGE = "google:gemini-2.5-pro"


def _config(emu: Emulator, attempts: int = 2, **top: object) -> dict[str, object]:
    cfg: dict[str, object] = dict(emu.config())
    providers = cfg["providers"]
    assert isinstance(providers, dict)
    retry = {"max_attempts": attempts, "initial_wait": 0.01, "max_wait": 1}
    for name in providers:
        providers[name] = {**providers[name], "retry": retry}
    cfg.update(top)
    return cfg


def _registry(cfg: dict[str, object], clock: FakeClock | None = None) -> forge.Registry:
    clock = clock or FakeClock()
    return forge.Registry(config=cfg, clock=clock, sleep=clock.sleep)


def _sent(emu: Emulator, provider: str) -> int:
    return sum(1 for r in emu.requests if r.provider == provider)


FALLS_THROUGH: dict[str, Callable[[], Fault]] = {
    "overloaded": Fault.overloaded,
    "rate_limited": lambda: Fault.rate_limit(retry_after=120),  # longer than max_wait: not waited on
    "server_error": lambda: Fault.server_error(500),
    "connection": lambda: Fault.drop_after(0),
}


@pytest.mark.parametrize("kind", list(FALLS_THROUGH))
async def test_an_outage_kind_falls_through_to_the_next_link(kind: str) -> None:
    async with Emulator(chunk_count=2) as emu:
        emu.script(FALLS_THROUGH[kind](), provider="openai", times=None)
        async with _registry(_config(emu)) as reg:
            reply = await reg.invoke(PRIMARY, "hi", fallbacks=[BACKUP])
    assert (reply.provider, reply.model) == ("anthropic", "claude-haiku-4-5")
    assert reply.text
    [tried] = reply.fallback_attempts
    assert tried.model == PRIMARY and tried.skipped is None and tried.elapsed_s >= 0
    assert error_kind(_error_of(tried.error)) == kind


def _error_of(name: str) -> BaseException:
    cls = getattr(forge, name)
    return cls("x") if not issubclass(cls, forge.ProviderError) else cls("x", status=None)


async def test_a_timeout_falls_through() -> None:
    async with Emulator(chunk_count=2) as emu:
        emu.script(Fault.hang(), provider="openai", times=None)
        cfg = _config(emu)
        providers = cfg["providers"]
        assert isinstance(providers, dict)
        providers["openai"] = {**providers["openai"], "timeout": 0.3, "retry": {"max_attempts": 1}}
        async with _registry(cfg) as reg:
            reply = await reg.invoke(PRIMARY, "hi", fallbacks=[BACKUP])
    assert reply.provider == "anthropic"
    assert [a.error for a in reply.fallback_attempts] == ["ProviderTimeout"]


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        (Fault.auth, forge.AuthenticationError),
        (lambda: Fault.status(400, "bad field"), forge.BadRequestError),
    ],
)
async def test_authentication_and_bad_requests_never_fall_through(
    fault: Callable[[], Fault], error: type[Exception]
) -> None:
    async with Emulator(chunk_count=2) as emu:
        emu.script(fault(), provider="openai", times=None)
        async with _registry(_config(emu)) as reg:
            with pytest.raises(error) as caught:
                await reg.invoke(PRIMARY, "hi", fallbacks=[BACKUP])
        assert _sent(emu, "anthropic") == 0
    assert [a.model for a in fallback_attempts(caught.value)] == [PRIMARY]


def test_content_policy_refusals_never_fall_through_by_default() -> None:
    refused = forge.BadRequestError("flagged", provider="openai", status=400, code="content_policy_violation")
    assert error_kind(refused) == "content_policy"
    assert "content_policy" not in forge.FallbackChain(()).fall_through


async def test_context_length_falls_through_only_to_a_larger_link() -> None:
    async with Emulator(chunk_count=2) as emu:
        emu.script(Fault.context_length(), provider="openai", times=None)
        chain = [BACKUP, forge.Fallback(LARGE, larger_context=True)]
        async with _registry(_config(emu)) as reg:
            reply = await reg.invoke(PRIMARY, "a long prompt", fallbacks=chain)
            with pytest.raises(forge.ContextLengthError):
                await reg.invoke(PRIMARY, "a long prompt", fallbacks=[BACKUP])
        assert _sent(emu, "anthropic") == 0
    assert reply.provider == "google"
    assert [(a.model, a.error, a.skipped) for a in reply.fallback_attempts] == [
        (PRIMARY, "ContextLengthError", None),
        (BACKUP, "", "context_length"),
    ]


async def test_a_configured_chain_and_its_rules_apply() -> None:
    async with Emulator(chunk_count=2) as emu:
        emu.script(Fault.not_found(), provider="openai", times=1)
        emu.script(Fault.server_error(500), provider="openai", times=1)
        cfg = _config(emu, attempts=1, aliases={"fast": PRIMARY}, fallbacks={
            "fast": {"models": [BACKUP], "fall_through": ["not_found"]},
        })
        async with _registry(cfg) as reg:
            reply = await reg.invoke("fast", "hi")  # 404 falls through: configured
            assert reply.provider == "anthropic"
            with pytest.raises(forge.ServerError):  # 500 does not: not in this chain's rules
                await reg.invoke("fast", "hi")
            emu.script(Fault.server_error(500), provider="openai", times=1)
            with pytest.raises(forge.ServerError):
                await reg.invoke("fast", "hi", fallbacks=[])  # [] turns the configured chain off


async def test_a_chain_configured_for_a_model_applies_to_its_provider_model_name() -> None:
    async with Emulator(chunk_count=2) as emu:
        emu.script(Fault.overloaded(), provider="openai", times=None)
        cfg = _config(emu, fallbacks={PRIMARY: [BACKUP]})
        async with _registry(cfg) as reg:
            assert (await reg.invoke(PRIMARY, "hi")).provider == "anthropic"


def test_fallback_config_errors_name_the_key() -> None:
    with pytest.raises(forge.ConfigError, match=r"fallbacks\.fast\.fall_through: unknown error kind 'overload'"):
        forge.load_config({"aliases": {"fast": PRIMARY},
                           "fallbacks": {"fast": {"models": [BACKUP], "fall_through": ["overload"]}}})
    with pytest.raises(forge.ConfigError, match=r"fallbacks\.fast\.models\[0\]: expected 'provider:model'"):
        forge.load_config({"aliases": {"fast": PRIMARY}, "fallbacks": {"fast": ["haiku"]}})
    with pytest.raises(forge.ConfigError, match=r"fallbacks\.nope:x: Unknown provider 'nope'"):
        forge.load_config({"fallbacks": {"nope:x": [BACKUP]}})
    with pytest.raises(forge.ConfigError, match=r"fallbacks\.fast\.models: expected a non-empty list"):
        forge.load_config({"aliases": {"fast": PRIMARY}, "fallbacks": {"fast": {"models": []}}})


async def test_an_open_breaker_sends_requests_straight_to_the_next_link_until_a_probe_heals_it() -> None:
    clock = FakeClock()
    events: list[MetricEvent] = []
    async with Emulator(chunk_count=2) as emu:
        outage = emu.script(Fault.server_error(503), provider="openai", times=None)
        cfg = _config(emu, breaker={"failures": 2, "cooldown": 30})
        async with _registry(cfg, clock) as reg:
            reg.metrics.subscribe(events.append)
            for _ in range(5):
                assert (await reg.invoke(PRIMARY, "hi", fallbacks=[BACKUP])).provider == "anthropic"
            assert _sent(emu, "openai") == 2  # one call, two attempts; then the breaker is open
            snap = reg.metrics.snapshot()["breakers"]
            assert isinstance(snap, dict)
            [state] = snap.values()
            assert state["state"] == "open" and state["cooldown_s"] == 30.0
            outage.remaining = 0  # the primary heals
            clock.advance(30)
            reply = await reg.invoke(PRIMARY, "hi", fallbacks=[BACKUP])
            assert reply.provider == "openai" and reply.fallback_attempts == ()
            assert _sent(emu, "openai") == 3
    breaker = [(e.fields["old_state"], e.fields["new_state"]) for e in events if e.kind == "breaker"]
    assert breaker == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]
    fallbacks = [e.fields for e in events if e.kind == "fallback"]
    assert fallbacks[0]["from"] == PRIMARY and fallbacks[0]["to"] == BACKUP
    assert [f["reason"] for f in fallbacks] == ["error", *["breaker_open"] * 4]


async def test_every_link_open_raises_circuit_open_with_when_to_retry() -> None:
    clock = FakeClock()
    async with Emulator(chunk_count=2) as emu:
        emu.script(Fault.overloaded(), times=None)
        cfg = _config(emu, attempts=1, breaker={"failures": 1, "cooldown": 30})
        async with _registry(cfg, clock) as reg:
            with pytest.raises(forge.OverloadedError):
                await reg.invoke(PRIMARY, "hi", fallbacks=[BACKUP])
            clock.advance(5)
            with pytest.raises(forge.CircuitOpen) as caught:
                await reg.invoke(PRIMARY, "hi", fallbacks=[BACKUP])
    assert caught.value.retryable and caught.value.retry_after == pytest.approx(25)
    assert [a.skipped for a in fallback_attempts(caught.value)] == ["breaker_open", "breaker_open"]


async def test_a_link_whose_limiter_would_wait_too_long_is_skipped() -> None:
    async with Emulator(chunk_count=2) as emu:
        cfg = _config(emu)
        providers = cfg["providers"]
        assert isinstance(providers, dict)
        providers["openai"] = {**providers["openai"], "rate_limit": {"requests_per_minute": 6, "burst_seconds": 20}}
        chain = forge.FallbackChain((forge.Fallback(BACKUP),), max_limiter_wait=1.0)
        async with forge.Registry(config=cfg) as reg:
            first = await reg.invoke(PRIMARY, "hi", fallbacks=chain)  # a bucket of 2, starting half full
            second = await reg.invoke(PRIMARY, "hi", fallbacks=chain)  # next slot in ~10 s: skipped
        assert _sent(emu, "openai") == 1
    assert first.provider == "openai"
    assert second.provider == "anthropic"
    assert [(a.model, a.skipped) for a in second.fallback_attempts] == [(PRIMARY, "limiter_wait")]


async def test_a_stream_falls_back_before_its_first_token() -> None:
    async with Emulator(chunk_count=3) as emu:
        emu.script(Fault.overloaded(), provider="openai", times=None)
        async with _registry(_config(emu)) as reg:
            stream = reg.stream(PRIMARY, "tell me", fallbacks=[BACKUP])
            async with stream:
                text = "".join([t async for t in stream])
    assert text and stream.provider == "anthropic"
    response = stream.response
    assert (response.provider, response.model) == ("anthropic", "claude-haiku-4-5")
    assert [a.error for a in response.fallback_attempts] == ["OverloadedError"]


async def test_a_stream_broken_after_its_first_token_raises_stream_interrupted() -> None:
    async with Emulator(chunk_count=6) as emu:
        emu.script(Fault.drop_after(2), provider="openai", times=None)
        async with _registry(_config(emu)) as reg:
            stream = reg.stream(PRIMARY, "tell me", fallbacks=[BACKUP])
            received: list[str] = []
            with pytest.raises(forge.StreamInterrupted) as caught:
                async with stream:
                    async for text in stream:
                        received.append(text)
        assert _sent(emu, "anthropic") == 0
    assert received and caught.value.partial_text == "".join(received)


async def test_a_probe_is_one_request_not_a_round_of_retries() -> None:
    clock = FakeClock()
    async with Emulator(chunk_count=2) as emu:
        emu.script(Fault.server_error(503), provider="openai", times=None)
        async with _registry(_config(emu, attempts=3, breaker={"failures": 3, "cooldown": 30}), clock) as reg:
            await reg.invoke(PRIMARY, "hi", fallbacks=[BACKUP])
            assert _sent(emu, "openai") == 3  # an ordinary call retries inside its link
            clock.advance(30)
            reply = await reg.invoke(PRIMARY, "hi", fallbacks=[BACKUP])
        assert _sent(emu, "openai") == 4
    assert reply.provider == "anthropic" and reply.fallback_attempts[0].attempts == 1


@pytest.mark.parametrize("stream", [False, True], ids=["invoke", "stream"])
async def test_a_probe_is_one_request_even_when_the_call_asks_for_more_attempts(stream: bool) -> None:
    clock = FakeClock()
    async with Emulator(chunk_count=2) as emu:
        emu.script(Fault.server_error(503), provider="openai", times=None)
        async with _registry(_config(emu, attempts=1, breaker={"failures": 1, "cooldown": 30}), clock) as reg:
            await reg.invoke(PRIMARY, "hi", fallbacks=[BACKUP])  # opens the breaker
            assert _sent(emu, "openai") == 1
            clock.advance(30)
            if stream:
                reply = await reg.stream(PRIMARY, "hi", fallbacks=[BACKUP], max_attempts=3).collect()
            else:
                reply = await reg.invoke(PRIMARY, "hi", fallbacks=[BACKUP], max_attempts=3)
        assert _sent(emu, "openai") == 2  # the probe: one request, not max_attempts of them
    assert reply.provider == "anthropic" and reply.fallback_attempts[0].attempts == 1
