"""``python -m forge.testing``: the recording script and the leak scan."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from forge.testing.__main__ import main


def test_record_writes_one_cassette_per_provider_and_flow(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["record", "--out", str(tmp_path), "--provider", "ollama", "--flow", "error_auth"]) == 0
    path = tmp_path / "ollama" / "error_auth.yaml"
    data = yaml.safe_load(path.read_text())
    assert data["metadata"]["forge"]["outcome"]["error"] == "AuthenticationError"
    assert data["interactions"][0]["request"]["uri"] == "http://forge-emulator.invalid/api/chat"
    assert "1 cassette(s) written" in capsys.readouterr().out
    assert main(["scan", str(tmp_path)]) == 0


def test_record_list_names_every_flow(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["record", "--list"]) == 0
    out = capsys.readouterr().out
    for name in ("invoke", "stream", "stream_usage", "json_mode", "error_rate_limit", "stream_interrupted"):
        assert name in out


def test_scan_fails_on_a_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "leak.yaml").write_text("interactions: []\nnote: sk-proj-abcdefghijklmnopqrstu123\nversion: 1\n")
    assert main(["scan", str(tmp_path)]) == 1
    assert "sk-proj-abcd" in capsys.readouterr().out


def test_cassette_modules_import_neither_vcrpy_nor_yaml() -> None:
    code = (
        "import sys, forge.testing, forge.testing.cassettes, forge.testing.pytest_plugin; "
        "print(sorted(m for m in ('vcr', 'yaml') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
