"""How long the first call on a provider freezes the event loop: the lazy vendor import.

Each sample is a fresh interpreter (an import happens once per process) running
the emulator and a ticker task that wakes every 5 ms; the figure is the ticker's
worst lag while the first call runs. Modes:

- ``stream, cold``: ``reg.stream(...)`` as the first call: the vendor client is
  imported on the event loop.
- ``stream after warm()``: ``await reg.warm(model)`` first (import in a worker
  thread), then the same stream; the lag covers warm() and the call.
- ``invoke, cold``: ``reg.invoke(...)`` as the first call, which imports off the loop by itself.

    python -m benchmarks.bench_first_call [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys

from benchmarks._common import Figure, emit, quick

MODELS = {
    "openai": "openai:gpt-4o-mini",
    "anthropic": "anthropic:claude-haiku-4-5",
    "google": "google:gemini-2.5-flash",
    "ollama": "ollama:llama3.2",
}

_CHILD = r"""
import asyncio, json, sys, time
import forge
from forge.testing import Emulator

model, mode = sys.argv[1], sys.argv[2]

async def main():
    async with Emulator(chunk_count=4) as emu:
        async with forge.Registry(emu.config()) as reg:
            worst = 0.0
            stop = False
            async def ticker():
                nonlocal worst
                while not stop:
                    t = time.perf_counter()
                    await asyncio.sleep(0.005)
                    worst = max(worst, time.perf_counter() - t - 0.005)
            task = asyncio.create_task(ticker())
            await asyncio.sleep(0.05)  # the ticker is running; the lag so far is the baseline
            worst = 0.0
            if mode == "warm":
                await reg.warm(model)
            if mode == "invoke":
                await reg.invoke(model, "hi", max_tokens=20)
            else:
                await reg.stream(model, "hi", max_tokens=20).collect()
            stop = True
            await task
            print(json.dumps(worst * 1000))

asyncio.run(main())
"""

MODES = {"stream, cold": "cold", "stream after warm()": "warm", "invoke, cold": "invoke"}


def sample(model: str, mode: str) -> float:
    done = subprocess.run([sys.executable, "-c", _CHILD, model, mode], capture_output=True, text=True,
                          timeout=120, check=True)
    return float(json.loads(done.stdout.strip().splitlines()[-1]))


async def run(rounds: int | None = None) -> list[Figure]:
    rounds = rounds or (1 if quick() else 5)
    providers = ["openai"] if quick() else list(MODELS)
    figures = []
    for provider in providers:
        samples: dict[str, list[float]] = {label: [] for label in MODES}
        for _ in range(rounds):  # interleaved, so machine load hits every mode alike
            for label, mode in MODES.items():
                samples[label].append(await asyncio.to_thread(sample, MODELS[provider], mode))
        for label, values in samples.items():
            figures.append(Figure.of("first_call", f"{provider}: {label}", values, "ms max loop lag"))
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    emit(asyncio.run(run(args.rounds)), args.json)
