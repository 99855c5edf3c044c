"""Type-check every ```python example in README.md and docs/ with ``mypy --strict``.

Usage: ``python scripts/check_doc_types.py`` (from the repository root). Each
block is written to its own module in a temporary directory (so examples do not
see each other's names) and all are checked in one mypy run. ``no-run`` blocks
are checked too: they are shown to users, so they must type-check as well.
Exit status 0 when every example passes, 1 otherwise (the errors point at the
Markdown file and line).
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Packages the docs show a user installing for one example, which forge's own dev set does not
# install (an OTLP exporter pulls gRPC): their imports are taken as untyped, everything else is strict.
# tiktoken as in pyproject.toml's [tool.mypy] overrides (this run has its own config file).
NOT_INSTALLED = ("opentelemetry.exporter.*", "tiktoken", "tiktoken.*")
FENCE = re.compile(r"^```python([^\n]*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
ERROR = re.compile(r"^(?:.*[/\\])?ex_(\d+)\.py:(\d+): (.*)$")


def examples() -> list[tuple[Path, int, str]]:
    """(file, line of the first code line, code) for every python block."""
    found = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("**/*.md"))]:
        text = path.read_text(encoding="utf-8")
        for match in FENCE.finditer(text):
            line = text.count("\n", 0, match.start(2)) + 1
            found.append((path.relative_to(ROOT), line, match.group(2)))
    return found


def main() -> int:
    from mypy import api

    os.environ["MYPYPATH"] = str(ROOT)  # this checkout's forge, whatever is installed
    blocks = examples()
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for i, (_, _, code) in enumerate(blocks):
            module = Path(tmp) / f"ex_{i}.py"
            module.write_text(code, encoding="utf-8")
            files.append(str(module))
        config = Path(tmp) / "mypy.ini"
        config.write_text(
            "[mypy]\n" + "".join(
                f"[mypy-{module}]\nignore_missing_imports = True\n" for module in NOT_INSTALLED
            ),
            encoding="utf-8",
        )
        out, err, status = api.run(
            ["--config-file", str(config), "--strict", "--no-incremental",
             "--cache-dir", str(Path(tmp) / ".mypy_cache"), "--no-error-summary", *files]
        )
    failed: set[int] = set()
    for raw in out.splitlines():
        match = ERROR.match(raw)
        if match is None:
            print(raw)
            continue
        index, line, message = int(match.group(1)), int(match.group(2)), match.group(3)
        path, first, _ = blocks[index]
        failed.add(index)
        print(f"{path}:{first + line - 1}: {message}")
    if err.strip():
        print(err, file=sys.stderr)
    print(f"{len(blocks) - len(failed)} of {len(blocks)} python examples pass mypy --strict")
    if status != 0 and not failed:
        print("mypy itself failed (see above)", file=sys.stderr)
    return 1 if status != 0 else 0


if __name__ == "__main__":
    sys.exit(main())
