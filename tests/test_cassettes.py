"""forge's own cassettes (cassettes/, recorded by ``python -m forge.testing record``) replay offline.

Every cassette is replayed through forge's public API with the network
blocked: a request that is not in the cassette, or any socket connect or
DNS lookup, fails the test. What forge reports must equal what it reported
while recording (stored in the cassette's metadata). And no cassette may
hold anything that looks like a key.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

from forge.testing._record import FLOWS, METADATA_KEY, PROVIDERS, Flow, cassette_path, run_flow
from forge.testing.cassettes import NetworkBlocked, find_secrets, use_cassette

CASSETTES = Path(__file__).resolve().parents[1] / "cassettes"
_FLOWS = {flow.name: flow for flow in FLOWS}
_EXPECTED_ERRORS = {
    "retry_after_429": None,
    "stream_rate_limit": "RateLimitError",
    "stream_interrupted": "StreamInterrupted",
    "error_rate_limit": "RateLimitError",
    "error_overloaded": "OverloadedError",
    "error_server": "ServerError",
    "error_timeout": "ProviderTimeout",
    "error_auth": "AuthenticationError",
    "error_bad_request": "BadRequestError",
    "error_context_length": "ContextLengthError",
    "error_not_found": "NotFoundError",
}
CASES = [
    pytest.param(provider, flow, id=f"{provider}/{flow.name}")
    for provider in PROVIDERS
    for flow in FLOWS
    if provider in flow.providers
]


def test_every_flow_has_a_cassette_and_every_cassette_a_flow() -> None:
    expected = {cassette_path(CASSETTES, provider, flow) for provider, flow in (c.values for c in CASES)}
    present = set(CASSETTES.rglob("*.yaml"))
    assert sorted(map(str, expected - present)) == [], "record them: python -m forge.testing record"
    assert sorted(map(str, present - expected)) == [], "cassettes without a flow: delete or add the flow"


@pytest.mark.parametrize(("provider", "flow"), CASES)
async def test_cassette_replays_offline_to_the_recorded_outcome(provider: str, flow: Flow) -> None:
    path = cassette_path(CASSETTES, provider, flow)
    with use_cassette(path) as cassette:
        recorded: Any = cassette.metadata(METADATA_KEY)
        config = cassette.config()
        assert config is not None
        replayed = await run_flow(flow, provider, config)
        assert cassette.all_played, f"{path}: {len(cassette) - cassette.play_count} interaction(s) unused"
    assert recorded["flow"] == flow.name and recorded["provider"] == provider
    assert replayed == recorded["outcome"]
    assert replayed.get("error") == _EXPECTED_ERRORS.get(flow.name)


def test_recorded_outcomes_cover_every_error_class_for_every_provider() -> None:
    """The committed cassettes hold, per provider, each error class the flows script."""
    for provider in PROVIDERS:
        seen = set()
        for path in (CASSETTES / provider).glob("*.yaml"):
            with use_cassette(path) as cassette:
                seen.add(dict(cassette.metadata(METADATA_KEY))["outcome"].get("error"))  # type: ignore[call-overload]
        assert seen >= {e for e in _EXPECTED_ERRORS.values() if e}, provider


async def test_replay_blocks_every_connect_and_dns_lookup() -> None:
    path = cassette_path(CASSETTES, "openai", _FLOWS["invoke"])
    with use_cassette(path):
        with pytest.raises(NetworkBlocked, match="network access is blocked"):
            socket.create_connection(("127.0.0.1", 9), timeout=1)
        with pytest.raises(NetworkBlocked):
            socket.getaddrinfo("example.com", 443)
    socket.getaddrinfo("127.0.0.1", 80)  # unblocked again afterwards


def test_no_cassette_holds_a_key_or_token() -> None:
    assert CASSETTES.is_dir()
    assert find_secrets(CASSETTES) == []


async def test_re_recording_replaces_a_stale_outcome(tmp_path: Path) -> None:
    from forge.testing._record import FLOWS, record

    flow = next(f for f in FLOWS if f.name == "error_auth")
    (path,) = await record(tmp_path, providers=["openai"], flows=[flow], log=lambda _: None)
    path.write_text(path.read_text().replace("error: AuthenticationError", "error: StaleError"))
    await record(tmp_path, providers=["openai"], flows=[flow], log=lambda _: None)
    assert "StaleError" not in path.read_text()
    assert "error: AuthenticationError" in path.read_text()
