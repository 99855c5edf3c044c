"""Circuit breaker state changes on a fake clock (no waiting)."""

from __future__ import annotations

import pytest

from forge.breaker import BreakerChange, CircuitBreaker, CircuitBreakers, MemoryBreakerStore
from forge.config import BreakerConfig, load_config
from forge.errors import ConfigError
from tests.conftest import FakeClock


def _breaker(clock: FakeClock, changes: list[BreakerChange] | None = None, **cfg: float) -> CircuitBreaker:
    config = BreakerConfig(**{"failures": 3, "cooldown": 10.0, "max_cooldown": 35.0, **cfg})  # type: ignore[arg-type]
    board = CircuitBreakers(config, MemoryBreakerStore(clock), on_change=None if changes is None else changes.append)
    return board.get("openai|default|gpt-4o-mini")


async def test_opens_after_n_consecutive_failures_and_says_so() -> None:
    clock, changes = FakeClock(), list[BreakerChange]()
    b = _breaker(clock, changes)
    for _ in range(2):
        assert await b.admit() == "allow"
        await b.failure(error="OverloadedError")
    assert b.state == "closed"
    await b.failure(error="OverloadedError")
    assert b.state == "open"
    assert changes == [BreakerChange(b.key, "closed", "open", 10.0, "OverloadedError")]
    assert await b.admit() == "reject"


async def test_a_success_resets_the_consecutive_count() -> None:
    b = _breaker(FakeClock())
    await b.failure()
    await b.failure()
    await b.success()
    await b.failure()
    await b.failure()
    assert b.state == "closed"


async def test_a_call_that_failed_after_retries_counts_each_attempt() -> None:
    b = _breaker(FakeClock())
    await b.failure(attempts=3)
    assert b.state == "open"


async def test_one_probe_at_a_time_after_the_cooldown_and_its_success_closes() -> None:
    clock, changes = FakeClock(), list[BreakerChange]()
    b = _breaker(clock, changes)
    await b.failure(attempts=3)
    clock.advance(9.9)
    assert await b.admit() == "reject"
    assert b.retry_in == pytest.approx(0.1)
    clock.advance(0.1)
    assert await b.admit() == "probe"
    assert await b.admit() == "reject"  # the probe is out: everyone else goes to the next link
    await b.success(probe=True)
    assert b.state == "closed"
    assert await b.admit() == "allow"
    assert [(c.old_state, c.new_state) for c in changes] == [
        ("closed", "open"), ("open", "half_open"), ("half_open", "closed")
    ]


async def test_a_failed_probe_reopens_with_an_escalating_capped_cooldown() -> None:
    clock = FakeClock()
    b = _breaker(clock)
    await b.failure(attempts=3)
    cooldowns = [b.cooldown_s]
    for _ in range(3):
        clock.advance(b.cooldown_s)
        assert await b.admit() == "probe"
        await b.failure(probe=True)
        cooldowns.append(b.cooldown_s)
    assert cooldowns == [10.0, 20.0, 35.0, 35.0]  # x2 per failed probe, capped at max_cooldown


async def test_cooldown_is_never_shorter_than_the_servers_retry_after() -> None:
    clock = FakeClock()
    b = _breaker(clock)
    await b.failure(attempts=3, retry_after=120.0)
    assert b.cooldown_s == 120.0
    clock.advance(119)
    assert await b.admit() == "reject"
    clock.advance(1)
    assert await b.admit() == "probe"


async def test_a_probe_without_verdict_lets_the_next_request_probe() -> None:
    clock = FakeClock()
    b = _breaker(clock)
    await b.failure(attempts=3)
    clock.advance(10)
    assert await b.admit() == "probe"
    await b.release(probe=True)
    assert await b.admit() == "probe"


async def test_a_lost_probe_is_replaced_after_probe_timeout() -> None:
    clock = FakeClock()
    b = _breaker(clock, probe_timeout=5.0)
    await b.failure(attempts=3)
    clock.advance(10)
    assert await b.admit() == "probe"
    clock.advance(4.9)
    assert await b.admit() == "reject"
    clock.advance(0.1)
    assert await b.admit() == "probe"


async def test_failure_rate_over_the_window_opens_it() -> None:
    clock = FakeClock()
    b = _breaker(clock, failures=100, failure_rate=0.5, min_calls=10, window=60.0)
    for _ in range(5):
        await b.success()
        await b.failure()
        clock.advance(1)
    assert b.state == "open"  # 5 of 10 failed, never 100 in a row


async def test_failures_outside_the_window_do_not_count() -> None:
    clock = FakeClock()
    b = _breaker(clock, failures=100, failure_rate=0.5, min_calls=10, window=60.0)
    for _ in range(4):
        await b.failure()
        await b.success()
    clock.advance(66)  # the window slides in tenths: a sample leaves it within window + window/10
    await b.success()
    await b.failure()
    assert b.state == "closed"  # 2 calls in the window; 10 with 5 failures had they still counted


async def test_a_straggler_failure_does_not_reopen_a_half_open_breaker() -> None:
    clock = FakeClock()
    b = _breaker(clock)
    await b.failure(attempts=3)
    clock.advance(10)
    assert await b.admit() == "probe"
    await b.failure()  # admitted before the breaker opened; only the probe decides
    assert b.state == "half_open"


def test_breaker_config_is_validated_with_clear_errors() -> None:
    cfg = load_config({"breaker": {"failures": 2, "cooldown": 5, "max_cooldown": 60}})
    assert cfg.breaker == BreakerConfig(failures=2, cooldown=5.0, max_cooldown=60.0)
    with pytest.raises(ConfigError, match=r"breaker\.failure_rate: must be a share between 0 and 1"):
        load_config({"breaker": {"failure_rate": 2}})
    with pytest.raises(ConfigError, match=r"breaker\.max_cooldown: must be >= cooldown"):
        load_config({"breaker": {"cooldown": 60, "max_cooldown": 10}})
    with pytest.raises(ConfigError, match=r"breaker\.cooldwn: unknown key.*Did you mean 'cooldown'"):
        load_config({"breaker": {"cooldwn": 5}})
    with pytest.raises(ConfigError, match=r"breaker\.redis_url: backend 'redis' needs redis_url"):
        load_config({"breaker": {"backend": "redis"}})


def test_redis_breakers_reuse_the_limiters_redis_url() -> None:
    cfg = load_config({
        "providers": {"openai": {"rate_limit": {"requests_per_minute": 60, "backend": "redis",
                                                "redis_url": "redis://127.0.0.1:6399/7"}}},
        "breaker": {"backend": "redis"},
    })
    assert cfg.breaker.redis_url == "redis://127.0.0.1:6399/7"


async def test_a_slow_call_counts_at_once_with_the_weight_of_its_attempts() -> None:
    clock, changes = FakeClock(), list[BreakerChange]()
    b = _breaker(clock, changes)
    assert await b.admit() == "allow"
    await b.slow(elapsed=2.0, attempts=3)  # still out after slow_call: failed as a 3-attempt call fails
    assert b.state == "open"
    assert changes == [BreakerChange(b.key, "closed", "open", 10.0, "SlowCall")]
    assert b.retry_in == pytest.approx(8.0)  # the cooldown runs from when the slow call was sent


async def test_a_breaker_in_doubt_admits_nothing_else_until_the_slow_call_ends() -> None:
    b = _breaker(FakeClock(), slow_call=2.0)
    await b.slow(elapsed=2.0)
    assert b.state == "closed"  # 1 of 3 failures: not open ...
    assert await b.admit() == "reject"  # ... but in doubt: one hanging call is enough
    assert b.retry_in == 2.0
    assert await b.admit(last_resort=True) == "allow"  # nowhere else to go: a link in doubt beats none
    b.slow_ended()
    assert await b.admit() == "allow"


async def test_a_slow_probe_reopens_and_its_cooldown_runs_from_when_it_was_sent() -> None:
    clock = FakeClock()
    b = _breaker(clock, backoff_factor=1.0)
    await b.failure(attempts=3)
    clock.advance(10)
    assert await b.admit() == "probe"
    clock.advance(3)
    await b.slow(elapsed=3.0, probe=True)
    b.slow_ended()
    assert b.state == "open"
    clock.advance(6.9)
    assert await b.admit() == "reject"
    clock.advance(0.1)
    assert await b.admit() == "probe"  # one probe per cooldown, slow verdict or not


async def test_changes_another_process_made_are_seen_as_shared_events() -> None:
    clock = FakeClock()
    store = MemoryBreakerStore(clock)  # one store, two registries: what Redis gives two processes
    config = BreakerConfig(failures=1, cooldown=10.0)
    seen: list[BreakerChange] = []
    here = CircuitBreakers(config, store, on_change=seen.append)
    there = CircuitBreakers(config, store)
    key = "openai|default|gpt-4o-mini"
    here.get(key)
    await there.get(key).failure()
    assert here.states() == {key: "closed"}  # not read since
    assert await here.refresh() == {key: "open"}
    assert seen == [BreakerChange(key, "closed", "open", 10.0, shared=True)]


def test_slow_call_and_hedge_after_are_validated() -> None:
    cfg = load_config({
        "aliases": {"fast": "openai:gpt-4o-mini"},
        "fallbacks": {"fast": {"models": ["anthropic:claude-haiku-4-5"], "hedge_after": 2}},
        "breaker": {"slow_call": 2.5},
    })
    assert cfg.breaker.slow_call == 2.5
    assert cfg.fallbacks["fast"].hedge_after == 2.0
    with pytest.raises(ConfigError, match=r"breaker\.slow_call: must be > 0"):
        load_config({"breaker": {"slow_call": 0}})
    with pytest.raises(ConfigError, match=r"fallbacks\.fast\.hedge_after: expected a number"):
        load_config({"aliases": {"fast": "openai:gpt-4o-mini"},
                     "fallbacks": {"fast": {"models": ["anthropic:claude-haiku-4-5"], "hedge_after": "2s"}}})
    from forge.fallback import FallbackChain

    with pytest.raises(ValueError, match="hedge_after must be a positive number"):
        FallbackChain.of(FallbackChain((), hedge_after=-1))
