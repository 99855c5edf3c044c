"""The benchmark suite runs end to end (tiny sizes): it cannot rot unnoticed.

Speed targets are checked by the benchmarks themselves, never here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_benchmarks_run_and_emit_json() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout)
    benches = {f["bench"] for f in figures}
    assert {"streaming", "stream_to_file", "import", "overhead", "limiter", "metrics", "batch", "hotpath",
            "structure"} <= benches
    assert all(f["runs"] >= 1 and f["min"] <= f["median"] <= f["max"] for f in figures)
    names = {f["name"] for f in figures}
    for target in ("openai", "responses", "anthropic", "google", "ollama"):
        for mode in ("packed", "one per read"):
            assert f"{target} [{mode}] forge/floor CPU" in names
            assert f"{target} [{mode}] forge/typed CPU" in names
    assert "forge's added CPU per invoke (vs with_raw_response + json.loads)" in names
    for path in ("openai chat", "openai responses", "anthropic", "google"):
        for how in ("packed", "one per read"):
            assert f"{path} ({how}) forge/floor" in names
    assert "20 concurrent streams forge/floor" in names  # --quick: 20 streams, not 1,000
    assert "largest adapter module in forge/providers" in names
    batch_notes = [f["note"] for f in figures if f["name"].endswith("cost / concurrent cost (price list)")]
    assert batch_notes and all("computed from forge's price list" in n for n in batch_notes)


def test_benchmarks_doc_renders_the_machine_and_every_figure(tmp_path: Path) -> None:
    figures = [{"bench": "streaming", "name": "openai [packed] forge/floor CPU", "median": 1.1, "min": 1.0,
                "max": 1.3, "unit": "x", "runs": 3, "note": "target <= 1.2x: ok"}]
    source = tmp_path / "r.json"
    source.write_text(json.dumps(figures))
    out = tmp_path / "benchmarks.md"
    done = subprocess.run([sys.executable, "scripts/benchmarks_doc.py", str(source), "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    page = out.read_text()
    assert "| streaming | openai [packed] forge/floor CPU | 1.10 | 1.00 | 1.30 | x | 3 | target <= 1.2x: ok |" in page
    assert "`python -m benchmarks --json`" in page and "cores" in page and "Python 3" in page


def test_every_benchmark_figure_in_the_docs_names_its_command() -> None:
    # A paragraph that quotes a measurement must say which command prints it.
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    missing = []
    for page in pages:
        if page.name in ("benchmarks.md", "api.md"):
            continue  # generated: the page itself names its command
        paragraphs = page.read_text().split("\n\n")
        for i, paragraph in enumerate(paragraphs):
            quotes = not paragraph.startswith("#") and ("Measured" in paragraph or "measured on" in paragraph.lower())
            near = "\n\n".join(paragraphs[i:i + 2])  # the command may be in the block right after
            if quotes and "python -m benchmarks" not in near and "tests/" not in near:
                missing.append(f"{page.name}: {paragraph[:80]!r}")
    assert not missing, missing


def test_every_benchmark_module_prints_help_without_running() -> None:
    # `python -m benchmarks.bench_X --help` must print usage and exit 0 at once, never start measuring.
    modules = [*sorted(p.stem for p in (ROOT / "benchmarks").glob("bench_*.py")), "peers"]
    wrong = []
    for name in modules:
        done = subprocess.run([sys.executable, "-m", f"benchmarks.{name}", "--help"],
                              cwd=ROOT, capture_output=True, text=True, timeout=20)
        if done.returncode != 0 or not done.stdout.startswith("usage:"):
            wrong.append(f"{name}: exit {done.returncode}, {(done.stdout or done.stderr)[:120]!r}")
    assert not wrong, "\n".join(wrong)
