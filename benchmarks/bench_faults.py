"""Streams under injected faults: how many complete, with ``max_attempts = 6``.

30% of requests (seeded) get one fault, drawn evenly from: HTTP 429, 500, 503,
529 (before any event), a connection dropped right after the stream's first
metadata (Anthropic ``message_start``, the Responses API ``response.created``...)
and the vendor's in-band error event at the same point. A stream may be retried
until its first content event, so every stream should complete.

    python -m benchmarks faults
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import time
from collections.abc import Callable

import forge
from benchmarks._common import Figure, emit
from forge.testing import Emulator, Fault
from forge.testing.emulator import RecordedRequest

TARGETS = {
    "openai": ("openai:gpt-4o-mini", {}),
    "openai-responses": ("openai:gpt-4o-mini", {"api": "responses"}),
    "anthropic": ("anthropic:claude-haiku-4-5", {}),
    "google": ("google:gemini-2.5-flash", {}),
    "ollama": ("ollama:llama3.2", {}),
}
FAULTS: list[tuple[str, Fault]] = [
    ("429", Fault.rate_limit(retry_after=0)),
    ("500", Fault.status(500)),
    ("503", Fault.status(503)),
    ("529", Fault.status(529)),
    ("drop after metadata", Fault.drop_after(0)),
    ("in-band error after metadata", Fault.stream_error(after=0)),
]
RATE = 0.3
MAX_ATTEMPTS = 6


def _chooser(
    rng: random.Random, drawn: dict[int, int]
) -> Callable[[int], Callable[[RecordedRequest], bool]]:
    """One draw per request, shared by the rules: rule ``k`` fires when the draw picked fault ``k``."""

    def pick(rec: RecordedRequest) -> int:
        key = id(rec)
        if key not in drawn:
            drawn[key] = rng.randrange(len(FAULTS)) if rng.random() < RATE else -1
        return drawn[key]

    return lambda k: lambda rec: pick(rec) == k


async def run_target(name: str, streams: int, seed: int = 12) -> tuple[int, int, int, float]:
    """(completed, requests, faults injected, seconds) for ``streams`` streams of one target."""
    model, extra = TARGETS[name]
    provider = model.split(":")[0]
    rng = random.Random(seed)
    async with Emulator(chunk_count=6) as emu:
        cfg = emu.config()
        section = cfg["providers"][provider]  # type: ignore[index]
        section.update(extra)
        section["retry"] = {"max_attempts": MAX_ATTEMPTS, "initial_wait": 0.001, "max_wait": 0.005}
        drawn: dict[int, int] = {}  # request -> fault index, -1 for none (the log keeps ids unique)
        rule_for = _chooser(rng, drawn)
        for k, (_, fault) in enumerate(FAULTS):
            emu.script(fault, provider=provider, times=None, when=rule_for(k))
        done = 0
        start = time.monotonic()
        async with forge.Registry(config=cfg) as reg:
            for _ in range(streams):
                try:
                    response = await reg.stream(model, "tell me something").collect()
                except forge.ForgeError:
                    continue
                done += response.finish_reason == "stop" and bool(response.text)
        elapsed = time.monotonic() - start
        log = emu.requests
        faulted = sum(1 for k in drawn.values() if k >= 0)
    return done, len(log), faulted, elapsed


async def run(streams: int | None = None) -> list[Figure]:
    if streams is None:
        streams = 10 if os.environ.get("FORGE_BENCH_QUICK") else 100
    figures = []
    for name in TARGETS:
        done, requests, faulted, elapsed = await run_target(name, streams)
        note = (f"{done}/{streams} streams; {faulted} of {requests} requests faulted "
                f"({100 * faulted / max(requests, 1):.0f}%); max_attempts={MAX_ATTEMPTS}; {elapsed:.1f}s")
        figures.append(Figure.of("faults", f"{name}: streams completed", [100.0 * done / streams], "%", note))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=None, help="streams per target (100; 10 with FORGE_BENCH_QUICK=1)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    emit(asyncio.run(run(args.streams)), args.json)


if __name__ == "__main__":
    main()
