"""Shared benchmark plumbing: an emulator in its own process, timing and the result table."""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass


@dataclass
class Figure:
    """One benchmark figure: a median over runs, with min and max."""

    bench: str
    name: str
    median: float
    min: float
    max: float
    unit: str
    runs: int
    note: str = ""

    @classmethod
    def of(cls, bench: str, name: str, values: Sequence[float], unit: str, note: str = "") -> Figure:
        return cls(bench, name, statistics.median(values), min(values), max(values), unit, len(values), note)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def emulator_process(
    chunk_count: int = 8, chunk_size: int | None = None, coalesce: bool = True, event_gap: float = 0.0
) -> Iterator[str]:
    """Run the emulator in a child process (its CPU is not the client's); yield its URL.

    ``event_gap`` > 0 sends each stream event on its own, that many seconds apart
    (at least the event loop's timer resolution, about 1 ms), so the client reads
    one event per read; 0 sends the events that are ready together (many per read).
    """
    port = free_port()
    if event_gap > 0:
        code = (
            "import asyncio\n"
            "from forge.testing import Emulator, Fault\n"
            "async def main():\n"
            f"    async with Emulator('127.0.0.1', {port}, chunk_count={chunk_count}, chunk_size={chunk_size!r},"
            " record_requests=False) as emu:\n"
            f"        emu.script(Fault.chunk_delay({event_gap!r}), times=None)\n"
            "        print('forge emulator listening on', emu.url, flush=True)\n"
            "        await asyncio.Event().wait()\n"
            "asyncio.run(main())\n"
        )
    else:
        code = (
            "from forge.testing import serve; "
            f"serve('127.0.0.1', {port}, chunk_count={chunk_count}, chunk_size={chunk_size!r}, coalesce={coalesce})"
        )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if "listening" not in line:
            raise RuntimeError(f"emulator did not start: {line!r}")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def emulator_config(url: str, **provider_extra: object) -> dict[str, object]:
    providers: dict[str, dict[str, object]] = {
        "openai": {"base_url": url + "/v1", "api_key": "emulator-key"},
        "anthropic": {"base_url": url, "api_key": "emulator-key"},
        "google": {"base_url": url, "api_key": "emulator-key"},
        "ollama": {"base_url": url},
    }
    for section in providers.values():
        section.update(provider_extra)
    return {"providers": providers}


class Timer:
    """CPU and wall time of a block."""

    def __enter__(self) -> Timer:
        self.wall0 = time.perf_counter()
        self.cpu0 = time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall0
        self.cpu = time.process_time() - self.cpu0


def print_table(figures: Sequence[Figure], out: object = None) -> None:
    stream = out or sys.stdout
    rows = [("benchmark", "figure", "median", "min", "max", "unit", "runs", "note")]
    for f in figures:
        rows.append((f.bench, f.name, fmt(f.median), fmt(f.min), fmt(f.max), f.unit, str(f.runs), f.note))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for i, row in enumerate(rows):
        print("  ".join(cell.ljust(widths[j]) for j, cell in enumerate(row)).rstrip(), file=stream)  # type: ignore[call-overload]
        if i == 0:
            print("  ".join("-" * w for w in widths), file=stream)  # type: ignore[call-overload]


def fmt(value: float) -> str:
    """A figure as the tables print it (also docs/benchmarks.md, via scripts/benchmarks_doc.py)."""
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def emit(figures: Sequence[Figure], as_json: bool) -> None:
    if as_json:
        print(json.dumps([asdict(f) for f in figures], indent=2))
    else:
        print_table(figures)


def quick() -> bool:
    """FORGE_BENCH_QUICK=1 shrinks every benchmark (used by the test suite's smoke run)."""
    return os.environ.get("FORGE_BENCH_QUICK") == "1"
