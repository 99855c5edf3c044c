"""The code-shape targets of issue 15, printed beside the speed figures.

- functions in forge/ above cyclomatic complexity 15 (radon) without a ``# complexity:
  <why>`` comment on their def line: target 0 (``scripts/check_complexity.py`` fails CI on one);
- the largest adapter module in forge/providers/ (the vendor modules; the ``_``-prefixed
  shared ones are shown apart): target under 400 lines;
- repeated runs inside forge/providers/, by the ``duplicates`` tool when it is on PATH
  (six or more lines, identical or of the same shape): target 0.

    python -m benchmarks.bench_structure [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import runpy
import shutil
import subprocess
from pathlib import Path
from typing import Any

from benchmarks._common import Figure, emit

ROOT = Path(__file__).resolve().parents[1]
PROVIDERS = ROOT / "forge" / "providers"


def _complexity_checker() -> dict[str, Any]:
    """scripts/check_complexity.py's names (it is a script, not a module of a package)."""
    return runpy.run_path(str(ROOT / "scripts" / "check_complexity.py"))


def complexity() -> list[Figure]:
    try:
        check = _complexity_checker()
    except ImportError as exc:  # radon is a dev dependency
        return [Figure("structure", "complexity: not measured", 0, 0, 0, "", 0, f"{exc} (pip install radon)")]
    over, justified, worst = 0, [], 0
    for path in sorted((ROOT / "forge").rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        lines = source.splitlines()
        for name, fn in check["_functions"](check["cc_visit"](source)):
            if fn.complexity <= check["LIMIT"]:
                continue
            if check["_REASON"].search(lines[fn.lineno - 1]):
                justified.append(f"{path.stem}.{name} ({fn.complexity})")
            else:
                over += 1
                worst = max(worst, fn.complexity)
    verdict = "ok" if over == 0 else "OVER TARGET"
    return [
        Figure("structure", f"functions in forge/ above complexity {check['LIMIT']} without a why", over, over, over,
               "functions", 1, f"target 0: {verdict}; justified on their def line: {', '.join(justified) or 'none'}"),
    ]


def module_sizes() -> list[Figure]:
    sizes = {p.name: len(p.read_text(encoding="utf-8").splitlines()) for p in PROVIDERS.glob("*.py")}
    adapters = {name: n for name, n in sizes.items() if not name.startswith("_")}
    shared = {name: n for name, n in sizes.items() if name.startswith("_") and name != "__init__.py"}
    name, largest = max(adapters.items(), key=lambda item: item[1])
    verdict = "ok" if largest < 400 else "OVER TARGET"
    shared_name, shared_largest = max(shared.items(), key=lambda item: item[1])
    return [
        Figure("structure", "largest adapter module in forge/providers", largest, largest, largest, "lines", 1,
               f"{name}; target < 400: {verdict}"),
        Figure("structure", "largest shared module in forge/providers", shared_largest, shared_largest,
               shared_largest, "lines", 1, f"{shared_name} (code every adapter uses; no target)"),
    ]


def duplicates() -> list[Figure]:
    tool = shutil.which("duplicates")
    if tool is None:
        return [Figure("structure", "repeated runs in forge/providers: not measured", 0, 0, 0, "", 0,
                       "the `duplicates` tool is not on PATH")]
    out = subprocess.run([tool, "--repo", str(PROVIDERS)], capture_output=True, text=True, timeout=120).stdout
    first = out.splitlines()[0] if out else ""
    found = re.match(r"(\d+) pairs?", first)
    pairs = int(found.group(1)) if found else 0
    if not found and not first.startswith("no duplicates"):
        raise RuntimeError(f"cannot read the duplicates tool's answer: {first!r}")
    verdict = "ok" if pairs == 0 else "OVER TARGET"
    return [Figure("structure", "repeated runs inside forge/providers (duplicates)", pairs, pairs, pairs,
                   "pairs", 1, f"target 0: {verdict}")]


async def run() -> list[Figure]:
    return complexity() + module_sizes() + duplicates()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--json", action="store_true")
    emit(asyncio.run(run()), parser.parse_args().json)


if __name__ == "__main__":
    main()
