"""Print pip constraints pinning every dependency of forge to the lower bound pyproject.toml declares.

``pip install -c <(python .ci/lowest_constraints.py) -e '.[all]'`` then installs the oldest
versions forge claims to support (pip has no ``--resolution lowest-direct``, uv does), so
``.ci/run`` can run the suite on them as well as on the newest.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?\s*(.*)$")


def lower_bounds(pyproject: Path) -> dict[str, str]:
    """``{package: lowest version}`` for every ``>=`` requirement of the extras users install.

    Not the core ``dependencies`` (typing-extensions): every vendor client needs a newer
    one than forge's own floor, so pinning it would make the vendor set uninstallable.
    Not ``dev`` (linters, type checkers): they check the code, they do not run with it.
    """
    project = tomllib.loads(pyproject.read_text())["project"]
    requirements: list[str] = []
    for extra, extra_requirements in project.get("optional-dependencies", {}).items():
        if extra != "dev":
            requirements.extend(extra_requirements)
    bounds: dict[str, str] = {}
    for requirement in requirements:
        match = _REQUIREMENT.match(requirement.split(";")[0])
        if match is None or match.group(1).lower() == project["name"]:
            continue
        name = match.group(1).lower().replace("_", "-")
        for clause in match.group(2).split(","):
            clause = clause.strip()
            if clause.startswith(">="):
                version = clause[2:].strip()
                if name in bounds and bounds[name] != version:
                    sys.exit(f"{pyproject}: {name} has two lower bounds, {bounds[name]} and {version}")
                bounds[name] = version
    return bounds


def main() -> None:
    pyproject = Path(sys.argv[1] if len(sys.argv) > 1 else "pyproject.toml")
    for name, version in sorted(lower_bounds(pyproject).items()):
        print(f"{name}=={version}")


if __name__ == "__main__":
    main()
