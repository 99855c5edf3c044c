"""Fail on any function in forge/ above cyclomatic complexity 15 (radon) that does not say why.

    python scripts/check_complexity.py            # exit 1 on an offender
    python scripts/check_complexity.py --list     # every function above the limit, allowed or not

A function may stay above the limit when its ``def`` line carries a comment
``# complexity: <why>`` (e.g. a per-chunk hot path where a call per branch
would cost more than it reads better). Functions listed in
scripts/complexity_allowlist.txt are being refactored elsewhere: they are
reported, not failed; an entry that is no longer above the limit is reported
as stale so that the list only shrinks.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterator
from pathlib import Path

from radon.complexity import cc_visit
from radon.visitors import Class, Function

ROOT = Path(__file__).resolve().parents[1]
LIMIT = 15
ALLOWLIST = ROOT / "scripts" / "complexity_allowlist.txt"
_REASON = re.compile(r"#\s*complexity:\s*\S")


def _functions(blocks: list[Function | Class], prefix: str = "") -> Iterator[tuple[str, Function]]:
    """Every function, method and nested function, with its qualified name.

    radon lists methods both inside their class and at the top level (with the
    class in ``fullname``); the top-level entries are the ones used here.
    """
    for block in blocks:
        if isinstance(block, Function):
            name = f"{prefix}{block.name}" if prefix else block.fullname
            yield name, block
            yield from _functions(list(block.closures), f"{name}.")


def _read_allowlist() -> set[str]:
    if not ALLOWLIST.exists():
        return set()
    entries = set()
    for line in ALLOWLIST.read_text().splitlines():
        entry = line.split("#", 1)[0].strip()
        if entry:
            entries.add(entry)
    return entries


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--list", action="store_true", help="list every function above the limit")
    args = parser.parse_args(argv)
    allowed = _read_allowlist()
    seen_allowed: set[str] = set()
    offenders: list[str] = []
    for path in sorted((ROOT / "forge").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        source = path.read_text(encoding="utf-8")
        lines = source.splitlines()
        for name, fn in _functions(cc_visit(source)):
            if fn.complexity <= LIMIT:
                continue
            where = f"{rel}::{name}"
            shown = f"{rel}:{fn.lineno} {name} ({fn.complexity})"
            if _REASON.search(lines[fn.lineno - 1]):
                status = "justified on its def line"
            elif where in allowed:
                seen_allowed.add(where)
                status = "allowed: being refactored (scripts/complexity_allowlist.txt)"
            else:
                offenders.append(shown)
                continue
            if args.list:
                print(f"{shown}: {status}")
    for entry in sorted(allowed - seen_allowed):
        print(f"stale allowlist entry (now <= {LIMIT} or gone): {entry}; remove it from {ALLOWLIST.name}")
    if offenders:
        print(f"{len(offenders)} function(s) in forge/ above cyclomatic complexity {LIMIT}:")
        for shown in offenders:
            print(f"  {shown}")
        print(
            "Split them into smaller functions, or, where splitting would hurt (a hot path), "
            "say why with a `# complexity: <why>` comment on the def line."
        )
        return 1
    print(f"complexity: no unexplained function in forge/ above {LIMIT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
