"""scripts/check_complexity.py: fails on an unexplained function above 15, accepts a reason, reports stale entries."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_complexity", ROOT / "scripts" / "check_complexity.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _busy(name: str, branches: int, comment: str = "") -> str:
    """A function of cyclomatic complexity ``branches + 1``."""
    lines = [f"def {name}(x: int) -> int:{comment}"]
    lines += [f"    if x == {i}:\n        return {i}" for i in range(branches)]
    lines.append("    return -1\n")
    return "\n".join(lines)


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[ModuleType, Path]:
    """The script pointed at an empty project in ``tmp_path`` (forge/ and scripts/)."""
    script = _load_script()
    (tmp_path / "forge").mkdir()
    (tmp_path / "scripts").mkdir()
    monkeypatch.setattr(script, "ROOT", tmp_path)
    monkeypatch.setattr(script, "ALLOWLIST", tmp_path / "scripts" / "complexity_allowlist.txt")
    return script, tmp_path


def test_fails_on_an_unexplained_function_above_the_limit(
    tree: tuple[ModuleType, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    script, root = tree
    (root / "forge" / "mod.py").write_text(_busy("tangled", 16) + "\n\n" + _busy("fine", 14))
    assert script.main([]) == 1
    out = capsys.readouterr().out
    assert "forge/mod.py:1 tangled (17)" in out
    assert "fine" not in out


def test_passes_when_the_def_line_says_why(
    tree: tuple[ModuleType, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    script, root = tree
    (root / "forge" / "mod.py").write_text(_busy("hot", 16, "  # complexity: per-chunk hot path"))
    assert script.main([]) == 0
    assert script.main(["--list"]) == 0
    assert "hot (17): justified on its def line" in capsys.readouterr().out


def test_a_comment_without_a_reason_does_not_count(tree: tuple[ModuleType, Path]) -> None:
    script, root = tree
    (root / "forge" / "mod.py").write_text(_busy("hot", 16, "  # complexity:"))
    assert script.main([]) == 1


def test_reports_stale_allowlist_entries_and_tolerates_listed_ones(
    tree: tuple[ModuleType, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    script, root = tree
    (root / "forge" / "mod.py").write_text(_busy("listed", 16) + "\n\n" + _busy("split", 3))
    (root / "scripts" / "complexity_allowlist.txt").write_text(
        "# being refactored\nforge/mod.py::listed\nforge/mod.py::split  # done already\nforge/gone.py::f\n"
    )
    assert script.main([]) == 0
    out = capsys.readouterr().out
    assert "stale allowlist entry (now <= 15 or gone): forge/gone.py::f" in out
    assert "stale allowlist entry (now <= 15 or gone): forge/mod.py::split" in out
    assert "listed" not in out


def test_methods_and_nested_functions_are_named_by_their_qualified_name(
    tree: tuple[ModuleType, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    script, root = tree
    method = "class Box:\n" + "\n".join("    " + line for line in _busy("open", 16).splitlines()) + "\n"
    (root / "forge" / "mod.py").write_text(method)
    assert script.main([]) == 1
    assert "forge/mod.py:2 Box.open (17)" in capsys.readouterr().out


def test_forge_itself_passes(capsys: pytest.CaptureFixture[str]) -> None:
    assert _load_script().main([]) == 0, capsys.readouterr().out
