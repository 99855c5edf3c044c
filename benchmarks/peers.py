"""Peers on the same server in the same run: LiteLLM and any-llm beside forge and the floor.

OpenAI chat streaming, packed events, from the emulator in its own process; CPU per
text chunk for forge, the official typed client, the floor (bare httpx2 lines plus
``json.loads``, see bench_streaming) and each peer library that is installed. The
peers are not forge dependencies: when one is missing it is skipped with a printed
note (``pip install litellm any-llm-sdk`` to include them).

    python -m benchmarks.peers [--chunks 4000] [--rounds 3] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import sys

from benchmarks._common import Figure, Timer, emit, emulator_process, quick
from benchmarks.bench_streaming import PROMPT, TARGETS, Close, Run, floor_path, forge_path, typed_path

MODEL = TARGETS["openai"].model
PEERS = {"litellm": "litellm", "any-llm": "any_llm"}  # name -> module


async def litellm_path(url: str) -> tuple[Run, Close]:
    import litellm

    async def run() -> int:
        n = 0
        stream = await litellm.acompletion(
            model=f"openai/{MODEL}", messages=[{"role": "user", "content": PROMPT}], stream=True,
            api_base=url + "/v1", api_key="k", num_retries=0,
            stream_options={"include_usage": True},
        )
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                n += 1
        return n

    async def close() -> None:
        return None

    return run, close


async def any_llm_path(url: str) -> tuple[Run, Close]:
    from any_llm import acompletion

    async def run() -> int:
        n = 0
        stream = await acompletion(
            model=MODEL, provider="openai", messages=[{"role": "user", "content": PROMPT}], stream=True,
            api_base=url + "/v1", api_key="k",
        )
        async for chunk in stream:  # type: ignore[union-attr]
            if chunk.choices and chunk.choices[0].delta.content:
                n += 1
        return n

    async def close() -> None:
        return None

    return run, close


PEER_PATHS = {"litellm": litellm_path, "any-llm": any_llm_path}


def installed() -> dict[str, bool]:
    return {name: importlib.util.find_spec(module) is not None for name, module in PEERS.items()}


async def run(chunks: int = 4000, rounds: int = 3) -> list[Figure]:
    if quick():
        chunks, rounds = 300, 1
    present = installed()
    for name, ok in present.items():
        if not ok:
            print(f"peers: {name} is not installed, skipped (pip install {'any-llm-sdk' if name == 'any-llm' else name})",
                  file=sys.stderr, flush=True)
    if not any(present.values()):
        return []
    figures: list[Figure] = []
    with emulator_process(chunk_count=chunks, chunk_size=16, coalesce=True) as url:
        opened = {"forge": await forge_path("openai", url), "typed": await typed_path("openai", url),
                  "floor": await floor_path("openai", url)}
        for name, ok in present.items():
            if ok:
                opened[name] = await PEER_PATHS[name](url)
        cpu: dict[str, list[float]] = {}
        failed: dict[str, str] = {}
        expected = await opened["floor"][0]()
        for path, (call, _) in opened.items():  # warm up; a peer that cannot stream is reported, not fatal
            try:
                n = await call()
                if n != expected:
                    failed[path] = f"saw {n} text chunks, the floor {expected}"
            except Exception as exc:  # any failure of a third-party library is reported, not fatal
                failed[path] = f"{type(exc).__name__}: {exc}"[:200]
        for path in failed:
            if path in ("forge", "typed", "floor"):
                raise RuntimeError(f"peers: {path} failed: {failed[path]}")
        live = [p for p in opened if p not in failed]
        for path in live:
            cpu[path] = []
        for i in range(rounds):
            for path in live[i % len(live):] + live[: i % len(live)]:
                with Timer() as t:
                    n = await opened[path][0]()
                cpu[path].append(t.cpu / n * 1e6)
        for _, close in opened.values():
            await close()
    for path, values in cpu.items():
        figures.append(Figure.of("peers", f"openai [packed] {path} CPU/chunk", values, "us"))
    for path, values in cpu.items():
        if path != "floor":
            ratios = [v / f for v, f in zip(values, cpu["floor"], strict=True)]
            figures.append(Figure.of("peers", f"openai [packed] {path}/floor CPU", ratios, "x"))
    for path, why in failed.items():
        figures.append(Figure.of("peers", f"openai [packed] {path}: failed", [0.0], "", why))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--chunks", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.quick:
        os.environ["FORGE_BENCH_QUICK"] = "1"
    emit(asyncio.run(run(args.chunks, args.rounds)), args.json)


if __name__ == "__main__":
    main()
