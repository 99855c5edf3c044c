"""Run every benchmark against the emulator and print one table.

    python -m benchmarks            # all of them (a few minutes on 2 cores)
    python -m benchmarks --json     # machine-readable
    python -m benchmarks --quick    # tiny sizes: checks they all run (the test suite does this)
    python -m benchmarks streaming overhead   # a subset, by name

Each figure is the median of several interleaved runs, with min and max.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import sys
import time

from benchmarks._common import Figure, emit

# name -> module; each module has `async def run() -> list[Figure]`.
SUITES = {
    "streaming": "benchmarks.bench_streaming",
    "hotpath": "benchmarks.bench_hotpath",  # the per-chunk and 1,000-stream targets against the floor
    "overhead": "benchmarks.bench_overhead",
    "batch": "benchmarks.bench_batch",
    "optimize": "benchmarks.bench_optimize",
    "fallback": "benchmarks.bench_fallback",
    "first_call": "benchmarks.bench_first_call",
    "faults": "benchmarks.bench_faults",
    "otel": "benchmarks.bench_otel",
    "ratelimit": "benchmarks.bench_ratelimit",
    "peers": "benchmarks.peers",  # LiteLLM / any-llm when installed; otherwise a note and nothing
    "structure": "benchmarks.bench_structure",  # complexity, adapter sizes, repeated code: no timing
}


async def run_all(names: list[str]) -> list[Figure]:
    figures: list[Figure] = []
    for name in names:
        module = importlib.import_module(SUITES[name])
        start = time.monotonic()
        print(f"running {name} ...", file=sys.stderr, flush=True)
        figures += await module.run()
        print(f"  {name} took {time.monotonic() - start:.0f}s", file=sys.stderr, flush=True)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("suites", nargs="*", metavar="suite", help=f"which benchmarks: {', '.join(SUITES)} (default: all)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to check that everything runs")
    args = parser.parse_args()
    if args.quick:
        os.environ["FORGE_BENCH_QUICK"] = "1"
    unknown = [n for n in args.suites if n not in SUITES]
    if unknown:
        parser.error(f"unknown suite(s) {', '.join(unknown)}; choose from {', '.join(SUITES)}")
    names = args.suites or list(SUITES)
    emit(asyncio.run(run_all(names)), args.json)


if __name__ == "__main__":
    main()
