"""The pytest plugin in a user's project, as docs/testing.md sets it up (fast, in-process).

.ci/run also builds such a project for real: a new venv with ``pip install '<checkout>[openai,testing]'``
(scripts/new_project_check).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

# Imported here so pytester's in-process runs find them loaded (see test_pytest_plugin.py).
import vcr  # type: ignore[import-untyped]  # noqa: F401
import yaml  # noqa: F401

import forge.providers.openai  # noqa: F401

pytest_plugins = ("pytester",)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "testing.md"


def documented_blocks(language: str) -> list[str]:
    """The ``language`` code blocks of the "In pytest" section of docs/testing.md."""
    section = DOCS.read_text().split("### In pytest", 1)[1].split("\n## ", 1)[0]
    return re.findall(rf"```{language}\n(.*?)```", section, flags=re.DOTALL)


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    monkeypatch.delenv("FORGE_RECORD", raising=False)
    return pytester


def test_the_documented_test_file_passes_with_the_documented_settings(project: pytest.Pytester) -> None:
    [settings] = documented_blocks("toml")
    [test_file] = [b for b in documented_blocks("python") if "forge_emulator" in b]
    (project.path / "pyproject.toml").write_text(settings)
    project.makepyfile(test_documented=test_file)
    project.runpytest().assert_outcomes(passed=1)


def test_without_auto_mode_an_unmarked_async_test_says_how_to_fix_it(project: pytest.Pytester) -> None:
    [test_file] = [b for b in documented_blocks("python") if "forge_emulator" in b]
    project.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")  # strict mode
    project.makepyfile(test_documented=test_file)
    result = project.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(['*is an async test that pytest-asyncio does not run: set asyncio_mode = "auto"*'])


def test_in_strict_mode_a_marked_async_test_runs(project: pytest.Pytester) -> None:
    [test_file] = [b for b in documented_blocks("python") if "forge_emulator" in b]
    project.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    marked = test_file.replace("async def test_", "@pytest.mark.asyncio\nasync def test_", 1)
    project.makepyfile(test_documented=marked)
    project.runpytest().assert_outcomes(passed=1)


FAILS_FIRST = """
import forge
import pytest

@pytest.mark.forge_cassette("greeting", target="emulator")
async def test_greeting(forge_cassette):
    {first_line}
    async with forge.Registry(config=forge_cassette.config()) as reg:
        reply = await reg.invoke("openai:gpt-4o-mini", "hello")
    assert "hello" in reply.text
"""


def test_a_recording_whose_test_fails_first_leaves_no_cassette_behind(project: pytest.Pytester) -> None:
    project.makeini("[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n")
    project.makepyfile(test_chat=FAILS_FIRST.format(first_line="assert False, 'not ready yet'"))
    project.runpytest("--forge-record").assert_outcomes(failed=1)
    assert not (project.path / "cassettes" / "greeting.yaml").exists()
    project.makepyfile(test_chat=FAILS_FIRST.format(first_line="pass"))
    project.runpytest("--forge-record").assert_outcomes(passed=1)  # records now, instead of refusing
    assert "/v1/chat/completions" in (project.path / "cassettes" / "greeting.yaml").read_text()
    project.runpytest().assert_outcomes(passed=1)


def test_a_passing_test_without_requests_still_records_an_empty_cassette(project: pytest.Pytester) -> None:
    project.makeini("[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n")
    project.makepyfile(test_none="""
import pytest

@pytest.mark.forge_cassette("nothing", target="emulator")
def test_nothing(forge_cassette):
    pass
""")
    project.runpytest("--forge-record").assert_outcomes(passed=1)
    assert (project.path / "cassettes" / "nothing.yaml").is_file()
