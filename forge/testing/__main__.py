"""``python -m forge.testing``: record forge's cassettes, or check cassettes for leaked keys.

::

    python -m forge.testing record [--out cassettes/] [--provider openai] [--flow stream]
    python -m forge.testing record --list
    python -m forge.testing scan [cassettes/ ...]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    from forge.testing._record import FLOWS, PROVIDERS

    parser = argparse.ArgumentParser(prog="python -m forge.testing", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    rec = commands.add_parser(
        "record",
        help="record forge's cassettes against the emulator (replaces the files it writes)",
        description="Record each flow for each provider against a fresh emulator into "
        "<out>/<provider>/<flow>.yaml; the outcome forge reported is stored in the cassette.",
    )
    rec.add_argument("--out", type=Path, default=Path("cassettes"), help="directory (default: cassettes)")
    rec.add_argument("--provider", action="append", choices=PROVIDERS, help="only this provider (repeatable)")
    rec.add_argument(
        "--flow", action="append", choices=[f.name for f in FLOWS], help="only this flow (repeatable)"
    )
    rec.add_argument("--list", action="store_true", help="list the flows and exit")
    scan = commands.add_parser(
        "scan", help="fail if a cassette holds anything that looks like a key or bearer token"
    )
    scan.add_argument("paths", nargs="*", type=Path, default=[Path("cassettes")])
    args = parser.parse_args(argv)

    if args.command == "scan":
        from forge.testing.cassettes import find_secrets

        findings = [f for path in args.paths for f in find_secrets(path)]
        for finding in findings:
            print(finding)
        print(f"{len(findings)} possible secret(s) found" if findings else "no secrets found")
        return 1 if findings else 0

    if args.list:
        for flow in FLOWS:
            print(f"{flow.name:<22} {flow.description}")
        return 0
    from forge.testing._record import record

    flows = [f for f in FLOWS if not args.flow or f.name in args.flow]
    written = asyncio.run(record(args.out, providers=args.provider or PROVIDERS, flows=flows))
    print(f"{len(written)} cassette(s) written under {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
