"""A primary outage behind a fallback chain: success rate, requests the dead primary still gets,
added latency, and how soon traffic returns once it heals.

Requests start at a steady rate (open loop). The primary (OpenAI on the emulator)
answers 503 (or, with ``hang``, never answers) for the middle half of the run;
the fallback (Anthropic on the same emulator) stays healthy. Time is scaled: a
0.5 s cooldown and an 8 s run stand for, say, a 30 s cooldown in an 8-minute
outage; the ratios are what matter. During the outage every tick also calls the
fallback directly, so the added latency compares like with like.

The chain runs with ``[breaker] slow_call`` and the chain's ``hedge_after`` set to
``--slow-call`` (0.03 s scaled, about 2 s at the 60x scale of the cooldown): a
primary call not answered by then counts against the breaker at once and the
fallback starts beside it. ``hang_plain`` is the hanging primary without them
(judged only when its timeout fires), for comparison.

Each scenario runs ``--runs`` times (3 by default; the table shows median, min and max).

    python -m benchmarks.bench_fallback [--seconds 8] [--rate 50] [--cooldown 0.5] [--slow-call 0.03]
                                        [--runs 3] [--plain] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import statistics
import time

import forge
from benchmarks._common import Figure, emit, quick
from forge.testing import Emulator, Fault

PRIMARY = "openai:gpt-4o-mini"
BACKUP = "anthropic:claude-haiku-4-5"


def _merge(runs: list[list[Figure]]) -> list[Figure]:
    """One figure per name over several runs of a scenario (median, min, max)."""
    first = runs[0]
    return [
        Figure.of(f.bench, f.name, [run[i].median for run in runs], f.unit, f.note) for i, f in enumerate(first)
    ]


async def repeated(
    mode: str, runs: int, seconds: float, rate: float, cooldown: float, slow_call: float | None = 0.03
) -> list[Figure]:
    """``runs`` runs of :func:`scenario`, merged."""
    return _merge([await scenario(mode, seconds, rate, cooldown, slow_call) for _ in range(runs)])


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


async def scenario(
    mode: str, seconds: float, rate: float, cooldown: float, slow_call: float | None = 0.03
) -> list[Figure]:
    """One run; ``mode`` is ``503`` (the primary fails fast) or ``hang`` (it never answers).

    ``slow_call``: the breaker's ``slow_call`` and the chain's ``hedge_after`` (None: off).
    """
    bench = "fallback" if mode == "503" else "fallback_hang"
    if slow_call is None:
        bench += "_plain"
    async with Emulator(chunk_count=2) as emu:
        outage = [False]
        fault = Fault.server_error(503) if mode == "503" else Fault.hang()
        emu.script(fault, provider="openai", times=None, when=lambda rec: outage[0])
        cfg: dict[str, object] = dict(emu.config())
        providers = cfg["providers"]
        assert isinstance(providers, dict)
        providers["openai"] = {
            **providers["openai"],
            "retry": {"max_attempts": 2, "initial_wait": 0.01, "max_wait": 0.05},
            "timeout": 0.25,  # the hang variant: how long a silent primary is waited on (scaled)
        }
        # One failed call (2 attempts) opens the breaker; no escalation, so "one cooldown" is fixed.
        cfg["breaker"] = {"failures": 2, "cooldown": cooldown, "max_cooldown": cooldown}
        if slow_call is not None:
            cfg["breaker"]["slow_call"] = slow_call  # type: ignore[index]
        chain = forge.FallbackChain((forge.Fallback(BACKUP),), hedge_after=slow_call)
        chain_calls: list[tuple[float, float, str, bool]] = []  # start, latency, provider, ok
        direct: list[float] = []
        async with forge.Registry(config=cfg) as reg:
            await reg.invoke(PRIMARY, "warm up", fallbacks=chain)  # vendor imports, connections
            await reg.invoke(BACKUP, "warm up")
            t0 = time.monotonic()
            start_out, end_out = t0 + seconds / 4, t0 + 3 * seconds / 4

            async def chained(started: float) -> None:
                try:
                    r = await reg.invoke(PRIMARY, "hello", fallbacks=chain, max_tokens=16)
                    chain_calls.append((started, time.monotonic() - started, r.provider, True))
                except forge.ForgeError:
                    chain_calls.append((started, time.monotonic() - started, "", False))

            async def straight(started: float) -> None:
                await reg.invoke(BACKUP, "hello", max_tokens=16)
                direct.append(time.monotonic() - started)

            tasks: list[asyncio.Task[None]] = []
            n = int(seconds * rate)
            for i in range(n):
                due = t0 + i / rate
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                now = time.monotonic()
                outage[0] = start_out <= now < end_out
                tasks.append(asyncio.create_task(chained(now)))
                if outage[0]:
                    tasks.append(asyncio.create_task(straight(now)))
            outage[0] = False
            await asyncio.gather(*tasks)
        primary_hits = [r for r in emu.requests if r.provider == "openai" and start_out <= r.time < end_out]

    during = [c for c in chain_calls if start_out <= c[0] < end_out]
    ok = sum(1 for c in chain_calls if c[3])
    outage_s = end_out - start_out
    added50 = (statistics.median([c[1] for c in during]) - statistics.median(direct)) * 1000
    added99 = (_pct([c[1] for c in during], 0.99) - _pct(direct, 0.99)) * 1000
    back = [c[0] for c in chain_calls if c[0] >= end_out and c[2] == "openai"]
    returned = (min(back) - end_out) if back else float("inf")
    note = f"{seconds:g}s run, {rate:g} req/s, outage {outage_s:.1f}s, cooldown {cooldown:g}s"
    return [
        Figure.of(bench, "success rate", [100.0 * ok / len(chain_calls)], "%", f"{len(chain_calls)} calls"),
        Figure.of(bench, "primary requests during outage", [float(len(primary_hits))], "requests",
                  f"target <= {1 + outage_s / cooldown:.0f} (1 + outage/cooldown); "
                  "HTTP requests, retries included"),
        Figure.of(bench, "added p50 latency in outage", [added50], "ms", "vs calling the fallback directly"),
        Figure.of(bench, "added p99 latency in outage", [added99], "ms", "vs calling the fallback directly"),
        Figure.of(bench, "back on primary after healing", [returned * 1000], "ms",
                  f"target <= one cooldown ({cooldown * 1000:g} ms)"),
        Figure.of(bench, "calls answered during outage", [float(len(during))], "calls", note),
    ]


async def run() -> list[Figure]:
    seconds, rate = (2.0, 20.0) if quick() else (8.0, 50.0)
    return await scenario("503", seconds, rate, 0.5) + await scenario("hang", seconds, rate, 0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="length of the run (the outage is the middle half)")
    parser.add_argument("--rate", type=float, default=50.0, help="requests started per second")
    parser.add_argument("--cooldown", type=float, default=0.5, help="breaker cooldown in seconds (scaled time)")
    parser.add_argument("--slow-call", type=float, default=0.03,
                        help="breaker slow_call and chain hedge_after in seconds (scaled time)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each scenario (median, min, max)")
    parser.add_argument("--plain", action="store_true",
                        help="also run the hanging primary without slow_call / hedge_after")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    async def both() -> list[Figure]:
        common = (args.runs, args.seconds, args.rate, args.cooldown)
        figures = await repeated("503", *common, args.slow_call)
        figures += await repeated("hang", *common, args.slow_call)
        if args.plain:
            figures += await repeated("hang", *common, None)
        return figures

    emit(asyncio.run(both()), args.json)


if __name__ == "__main__":
    main()
