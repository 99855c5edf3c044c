"""The pytest plugin's cassette workflow, run as a user would: record once, replay offline, misses."""

from __future__ import annotations

from pathlib import Path

import pytest

# Imported here so pytester's in-process runs find them loaded (it drops what a run imported):
# a second import of PyYAML next to its initialised C extension breaks its loader, and
# re-importing the vendor clients costs seconds per run.
import vcr  # type: ignore[import-untyped]  # noqa: F401
import yaml  # noqa: F401

import forge.providers.anthropic
import forge.providers.ollama
import forge.providers.openai  # noqa: F401

pytest_plugins = ("pytester",)

GREETING = """
import forge
import pytest

PROMPT = "{prompt}"

@pytest.mark.forge_cassette("greeting", target="emulator")
async def test_greeting(forge_cassette):
    async with forge.Registry(config=forge_cassette.config()) as reg:
        reply = await reg.invoke("openai:gpt-4o-mini", PROMPT)
    assert PROMPT in reply.text
"""


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    monkeypatch.delenv("FORGE_RECORD", raising=False)
    pytester.makeini("[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n")
    return pytester


def test_record_once_then_replay_offline(project: pytest.Pytester) -> None:
    project.makepyfile(test_chat=GREETING.format(prompt="hello"))
    project.runpytest("--forge-record").assert_outcomes(passed=1)
    cassette = project.path / "cassettes" / "greeting.yaml"
    assert cassette.is_file() and "http://forge-emulator.invalid/v1/chat/completions" in cassette.read_text()
    project.runpytest().assert_outcomes(passed=1)  # no emulator now, and the network is blocked


def test_a_miss_fails_naming_the_request_and_the_rerecord_command(project: pytest.Pytester) -> None:
    project.makepyfile(test_chat=GREETING.format(prompt="hello"))
    project.runpytest("--forge-record").assert_outcomes(passed=1)
    project.makepyfile(test_chat=GREETING.format(prompt="a changed prompt"))
    result = project.runpytest()
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "CassetteMiss" in out
    assert "POST http://forge-emulator.invalid/v1/chat/completions" in out
    assert "a changed prompt" in out
    assert "greeting.yaml" in out
    assert "python -m pytest --forge-record-mode=all 'test_chat.py::test_greeting'" in out
    project.runpytest("--forge-record-mode=all").assert_outcomes(passed=1)
    project.runpytest().assert_outcomes(passed=1)


def test_a_missing_cassette_says_how_to_record_it(project: pytest.Pytester) -> None:
    project.makepyfile(test_chat=GREETING.format(prompt="hello"))
    result = project.runpytest()
    result.assert_outcomes(errors=1)
    out = result.stdout.str()
    assert "does not exist" in out and "python -m pytest --forge-record 'test_chat.py::test_greeting'" in out


def test_forge_record_env_var_records(project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    project.makepyfile(test_chat=GREETING.format(prompt="hello"))
    monkeypatch.setenv("FORGE_RECORD", "1")
    project.runpytest().assert_outcomes(passed=1)
    monkeypatch.setenv("FORGE_RECORD", "0")
    project.runpytest().assert_outcomes(passed=1)
    assert (project.path / "cassettes" / "greeting.yaml").is_file()


def test_a_bad_forge_record_value_is_a_usage_error(project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    project.makepyfile(test_chat=GREETING.format(prompt="hello"))
    monkeypatch.setenv("FORGE_RECORD", "sometimes")
    result = project.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "FORGE_RECORD='sometimes' is not a record mode" in result.stderr.str()


def test_default_name_ini_dir_and_marker_without_the_fixture(project: pytest.Pytester) -> None:
    project.makeini(
        "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
        "forge_cassette_dir = recordings\n"
    )
    project.makepyfile(
        test_offline="""
import socket
import pytest
from forge.testing.cassettes import NetworkBlocked

@pytest.mark.forge_cassette
def test_no_network_while_replaying(request):
    cassette = request.getfixturevalue("forge_cassette")
    if not cassette.recording:
        with pytest.raises(NetworkBlocked):
            socket.create_connection(("127.0.0.1", 9))

@pytest.mark.forge_cassette
def test_marker_alone_activates_the_cassette():
    with pytest.raises(NetworkBlocked):
        socket.getaddrinfo("api.openai.com", 443)
"""
    )
    project.runpytest("--forge-record", "-k", "no_network").assert_outcomes(passed=1, deselected=1)
    assert (project.path / "recordings" / "test_offline" / "test_no_network_while_replaying.yaml").is_file()
    (project.path / "recordings" / "test_offline" / "test_marker_alone_activates_the_cassette.yaml").write_text(
        "interactions: []\nversion: 1\n"
    )
    project.runpytest().assert_outcomes(passed=2)


def test_scripted_faults_are_recorded_and_replayed(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_faults="""
import forge
import pytest
from forge.testing import Fault

@pytest.mark.forge_cassette("rate_limited", target="emulator")
async def test_rate_limit_surfaces(forge_cassette):
    forge_cassette.script(Fault.rate_limit(retry_after=30), provider="anthropic")
    config = {"providers": {"anthropic": {"retry": {"max_attempts": 1}}}}
    async with forge.Registry(config=forge_cassette.config(config)) as reg:
        with pytest.raises(forge.RateLimitError) as info:
            await reg.invoke("anthropic:claude-haiku-4-5", "hi")
    assert info.value.retry_after == 30
"""
    )
    project.runpytest("--forge-record").assert_outcomes(passed=1)
    project.runpytest().assert_outcomes(passed=1)


def test_a_swallowed_miss_still_fails_the_test(project: pytest.Pytester) -> None:
    project.makepyfile(test_chat=GREETING.format(prompt="hello"))
    project.runpytest("--forge-record").assert_outcomes(passed=1)
    project.makepyfile(
        test_chat="""
import forge
import pytest

@pytest.mark.forge_cassette("greeting", target="emulator")
async def test_fallback_hides_errors(forge_cassette):
    async with forge.Registry(config=forge_cassette.config()) as reg:
        try:
            await reg.invoke("openai:gpt-4o-mini", "not recorded")
        except BaseException:
            pass  # a service's catch-all fallback
"""
    )
    result = project.runpytest()
    result.assert_outcomes(passed=1, errors=1)
    assert "this request is not in the cassette" in result.stdout.str()


def test_recording_against_live_providers_uses_the_given_config(project: pytest.Pytester) -> None:
    """target='live' records with the caller's config (here an emulator started by the test itself)."""
    project.makepyfile(
        test_live="""
import forge
import pytest
from forge.testing import Emulator

@pytest.mark.forge_cassette("live")
async def test_live(forge_cassette):
    async with Emulator() as emu:
        config = forge_cassette.config(emu.config())
        async with forge.Registry(config=config) as reg:
            reply = await reg.invoke("ollama:llama3.2", "hi")
    assert reply.text
"""
    )
    project.runpytest("--forge-record").assert_outcomes(passed=1)
    project.runpytest().assert_outcomes(passed=1)
    assert Path(project.path / "cassettes" / "live.yaml").is_file()
