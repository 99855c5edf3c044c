"""Installing forge as the README says, and knowing which one is installed."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import forge
from forge.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_forge_version_prints_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"forge {forge.__version__}"


def test_the_version_is_the_one_pyproject_declares() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert forge.__version__ == declared


def test_readme_installs_from_a_checkout_or_git_not_from_an_index() -> None:
    # forge is not published on PyPI yet: a bare `pip install forge-llm[...]` finds nothing (or someone else's).
    readme = (ROOT / "README.md").read_text()
    installs = [c for c in re.findall(r"pip install [^\n#]*", readme) if "--upgrade pip" not in c]
    assert installs, "README.md has no install command"
    for command in installs:
        assert "-e " in command or "git+https://" in command or "@ git+" in command, command


def test_the_forge_command_runs_as_a_module_too() -> None:
    out = subprocess.run([sys.executable, "-m", "forge", "--version"], capture_output=True, text=True,
                         check=False, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"forge {forge.__version__}"
