"""The forge command line, run in-process against the emulator."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from forge.cli import main
from forge.testing import EmulatorThread, Fault


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorThread]:
    with EmulatorThread(chunk_count=5) as emu:
        yield emu


@pytest.fixture
def config(emulator: EmulatorThread, tmp_path: Path) -> str:
    emulator.reset()
    path = tmp_path / "forge.json"
    path.write_text(json.dumps(emulator.config()))
    return str(path)


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(list(argv), out=out)
    return code, out.getvalue()


def test_stream_prints_text_then_usage(config: str) -> None:
    code, text = run("stream", "anthropic:claude-haiku-4-5", "hello there", "--config", config)
    assert code == 0
    assert "You said: hello there" in text
    assert "[anthropic:claude-haiku-4-5 finish=stop input=" in text


def test_invoke_with_json_and_max_tokens(config: str) -> None:
    code, text = run("invoke", "gemini:gemini-2.5-flash", "hi", "--max-tokens", "5", "--config", config)
    assert code == 0 and "finish=length" in text


def test_demo_says_it_runs_on_the_emulator() -> None:
    code, text = run("demo", "--chunks", "3")
    assert code == 0
    assert "built-in provider emulator" in text
    for provider in ("openai", "anthropic", "google", "ollama"):
        assert f"--- {provider}:" in text


def test_metrics_demo_and_snapshot_file(tmp_path: Path) -> None:
    code, text = run("metrics", "--demo")
    assert code == 0 and "openai:gpt-4o-mini" in text and "rate-limited" in text
    from forge.metrics import Metrics
    from forge.types import Response

    m = Metrics()
    m.record_success(Response("x", "openai", "gpt-4o", latency_s=0.5, cost_usd=0.01))
    snap = tmp_path / "snap.json"
    snap.write_text(json.dumps(m.snapshot()))
    code, text = run("metrics", str(snap))
    assert code == 0 and "openai:gpt-4o" in text


def test_errors_are_one_clear_line(config: str, emulator: EmulatorThread, capsys: pytest.CaptureFixture[str]) -> None:
    emulator.script(Fault.auth(), provider="openai", times=None)
    code, _ = run("invoke", "openai:gpt-4o-mini", "hi", "--config", config)
    assert code == 1
    assert "AuthenticationError" in capsys.readouterr().err


def test_bad_model_reference_is_a_config_error(config: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _ = run("invoke", "llama3:8b", "hi", "--config", config)
    assert code == 2
    assert "write 'ollama:llama3:8b'" in capsys.readouterr().err


def test_malformed_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "forge.toml"
    bad.write_text("[providers.openai\n")
    code, _ = run("invoke", "openai:gpt-4o-mini", "hi", "--config", str(bad))
    assert code == 2
    assert "is not valid TOML" in capsys.readouterr().err
