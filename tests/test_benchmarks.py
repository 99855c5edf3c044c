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
    assert {"streaming", "stream_to_file", "import", "overhead", "limiter", "metrics", "batch"} <= benches
    assert all(f["runs"] >= 1 and f["min"] <= f["median"] <= f["max"] for f in figures)
