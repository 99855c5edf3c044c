"""How fast the provider emulator streams: it must never be a benchmark's bottleneck.

For each vendor dialect, a raw httpx2 client reads a 10,000-chunk stream
(bytes only, no parsing). Two setups:

* default: the emulator runs in its own process (``forge.testing.emulator.serve``), the
  client here; reports the client-observed chunks/s and the emulator's own CPU per chunk
  (from /proc, Linux only), once with one HTTP chunk per event (as real servers send)
  and once with ``coalesce=True`` (events written together share one HTTP chunk; the
  client's h11 framing cost per event disappears).
* ``--in-process``: emulator and client share one event loop and one core; chunks/s is
  then bounded by both sides together.

Run: ``python benchmarks/bench_emulator.py`` (about 10 s).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from forge.testing.emulator import Emulator

ROOT = Path(__file__).resolve().parents[1]

PROMPT = [{"role": "user", "content": "benchmark"}]


def requests_for(base: str) -> dict[str, tuple[str, dict[str, object]]]:
    return {
        "openai": (base + "/v1/chat/completions",
                   {"model": "gpt-x", "stream": True, "stream_options": {"include_usage": True},
                    "messages": PROMPT}),
        "anthropic": (base + "/v1/messages",
                      {"model": "claude-x", "max_tokens": 1_000_000, "stream": True, "messages": PROMPT}),
        "google": (base + "/v1beta/models/gemini-x:streamGenerateContent?alt=sse",
                   {"contents": [{"role": "user", "parts": [{"text": "benchmark"}]}]}),
        "ollama": (base + "/api/chat", {"model": "llama-x", "stream": True, "messages": PROMPT}),
    }


async def read_stream(http: httpx2.AsyncClient, url: str, body: dict[str, object]) -> tuple[float, int]:
    start = time.perf_counter()
    size = 0
    async with http.stream("POST", url, json=body) as response:
        response.raise_for_status()
        async for data in response.aiter_raw():
            size += len(data)
    return time.perf_counter() - start, size


def cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_subprocess(
    chunks: int, chunk_size: int, repeats: int, coalesce: bool
) -> list[tuple[str, float, float, float | None]]:
    code = ("from forge.testing.emulator import serve; "
            f"serve(port=0, chunk_count={chunks}, chunk_size={chunk_size}, coalesce={coalesce})")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert proc.stdout is not None
        base = proc.stdout.readline().split()[-1]
        return asyncio.run(measure_remote(base, proc.pid, chunks, repeats))
    finally:
        proc.terminate()
        proc.wait(5)


async def measure_remote(
    base: str, pid: int, chunks: int, repeats: int
) -> list[tuple[str, float, float, float | None]]:
    rows = []
    async with httpx2.AsyncClient(timeout=60) as http:
        for provider, (url, body) in requests_for(base).items():
            await read_stream(http, url, body)  # warm up
            before = cpu_seconds(pid)
            times = [(await read_stream(http, url, body))[0] for _ in range(repeats)]
            after = cpu_seconds(pid)
            cpu_us = None
            if before is not None and after is not None:
                cpu_us = (after - before) / (repeats * chunks) * 1e6
            wall = statistics.median(times)
            rows.append((provider, wall, chunks / wall, cpu_us))
    return rows


async def run_in_process(chunks: int, chunk_size: int, repeats: int) -> list[tuple[str, float, float, int]]:
    rows = []
    emulator = Emulator(chunk_count=chunks, chunk_size=chunk_size, record_requests=False)
    async with emulator as emu, httpx2.AsyncClient(timeout=60) as http:
        for provider, (url, body) in requests_for(emu.url).items():
            await read_stream(http, url, body)
            results = [await read_stream(http, url, body) for _ in range(repeats)]
            wall = statistics.median(t for t, _ in results)
            rows.append((provider, wall, chunks / wall, results[0][1]))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--chunks", type=int, default=10_000)
    parser.add_argument("--chunk-size", type=int, default=16, help="characters of text per chunk")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--in-process", action="store_true", help="also run emulator and client in one loop")
    args = parser.parse_args()

    print(f"{args.chunks} chunks x {args.chunk_size} chars per stream, median of {args.repeats} runs\n")
    print("emulator in a subprocess, raw httpx2 client reading bytes")
    print(f"{'provider':<10} {'framing':<16} {'wall ms':>9} {'chunks/s':>11} {'emulator CPU us/chunk':>22}")
    for coalesce in (False, True):
        framing = "coalesced" if coalesce else "chunk per event"
        rows = run_subprocess(args.chunks, args.chunk_size, args.repeats, coalesce)
        for provider, wall, rate, cpu in rows:
            cpu_text = f"{cpu:.2f}" if cpu is not None else "n/a"
            print(f"{provider:<10} {framing:<16} {wall * 1000:>9.1f} {rate:>11,.0f} {cpu_text:>22}")
    if not args.in_process:
        return
    print("\nemulator and client in one event loop (one core for both)")
    print(f"{'provider':<10} {'wall ms':>9} {'chunks/s':>11} {'bytes':>12}")
    for provider, wall, rate, size in asyncio.run(run_in_process(args.chunks, args.chunk_size, args.repeats)):
        print(f"{provider:<10} {wall * 1000:>9.1f} {rate:>11,.0f} {size:>12,}")


if __name__ == "__main__":
    main()
