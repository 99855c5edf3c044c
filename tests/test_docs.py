"""Every code example in README.md and docs/ runs, against the emulator, so none can rot.

- ```python blocks are complete programs: each runs as ``__main__`` in fresh
  globals, with FORGE_CONFIG pointing every provider at a running emulator (so
  ``forge.Registry()`` with no arguments reaches it) and no vendor key set.
- ```pycon blocks are doctest sessions; ``forge``, ``reg`` (a Registry on the
  emulator) and ``run`` (runs a coroutine to completion) are predefined.

A block fenced as ```python no-run is shown but not executed; the test
fails if a file uses that for anything but code that needs a real provider
or a real service (it must say why, on the line after the fence, in a comment).
"""

from __future__ import annotations

import asyncio
import doctest
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import forge
from forge.testing import EmulatorThread

ROOT = Path(__file__).resolve().parents[1]
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("**/*.md"))]
FENCE = re.compile(r"^```(python|pycon)([^\n]*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def _blocks() -> Iterator[tuple[str, str, str, str]]:
    for path in DOC_FILES:
        text = path.read_text(encoding="utf-8")
        for match in FENCE.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            yield f"{path.relative_to(ROOT)}:{line}", match.group(1), match.group(2).strip(), match.group(3)


BLOCKS = list(_blocks())


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorThread]:
    with EmulatorThread() as emu:
        yield emu


@pytest.fixture(scope="module")
def config_file(emulator: EmulatorThread, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("docs") / "forge.json"
    path.write_text(json.dumps(emulator.config()))
    return path


def test_api_reference_is_up_to_date() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "apidoc.py"), "--check"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_there_are_examples() -> None:
    assert len([b for b in BLOCKS if b[1] == "python"]) >= 5


@pytest.mark.parametrize(("where", "kind", "info", "code"), BLOCKS, ids=[b[0] for b in BLOCKS])
def test_example_runs(where: str, kind: str, info: str, code: str, config_file: Path, emulator: EmulatorThread,
                      tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    emulator.reset()
    monkeypatch.setenv("FORGE_JOB_STORE", str(tmp_path / "jobs.sqlite3"))
    if info == "no-run":
        first = code.strip().splitlines()[0] if code.strip() else ""
        assert first.startswith("#") and len(first) > 10, f"{where}: a no-run example must say why in a comment"
        compile(code, where, "exec")  # it must at least be valid Python
        return
    assert info == "", f"{where}: unknown fence info {info!r}"
    if kind == "python":
        for name in list(os.environ):
            if name.endswith("_API_KEY"):
                monkeypatch.delenv(name)
        monkeypatch.setenv("FORGE_CONFIG", str(config_file))
        monkeypatch.chdir(tmp_path)
        try:
            exec(compile(code, where, "exec"), {"__name__": "__main__"})
        except SystemExit as exc:
            assert exc.code in (None, 0), f"{where} exited with {exc.code}"
        return
    loop = asyncio.new_event_loop()
    reg = forge.Registry(config=config_file)
    try:
        globs = {"forge": forge, "reg": reg, "run": loop.run_until_complete}
        parser = doctest.DocTestParser()
        test = parser.get_doctest(code, globs, where, where, 0)
        runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
        out: list[str] = []
        runner.run(test, out=out.append)
        assert runner.failures == 0, f"{where}:\n" + "".join(out)
    finally:
        loop.run_until_complete(reg.aclose())
        loop.close()
