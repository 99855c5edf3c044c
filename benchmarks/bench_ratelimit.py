"""Rate limits against a server that enforces them the strict way providers document.

The server (tests/strict_limits.py, raw asyncio, not the emulator) admits at most
rpm/60 requests and tpm/60 tokens in any sliding one-second window and answers
429 otherwise. forge, configured with the same limits, sends 200 requests from 50
concurrent tasks. Figures: 429s seen, the busiest second as a share of the slice,
and the rate reached as a share of the allowed rate (arrivals after the first over
the time they spanned). Also: 12 calls without ``max_tokens`` at 12,000 TPM, whose
reservations (prompt + 1,024) settle with the few tokens really used.

    python -m benchmarks ratelimit
"""

from __future__ import annotations

import argparse
import asyncio
import time

import forge
from benchmarks._common import Figure, emit, quick
from tests.hostile import provider_config
from tests.strict_limits import StrictLimitServer

BENCH = "ratelimit"


async def _fire(llm: forge.LLM, n: int, tasks: int, max_tokens: int | None) -> None:
    queue = list(range(n))

    async def worker() -> None:
        while queue:
            i = queue.pop()
            try:
                if max_tokens is None:
                    await llm.invoke(f"request {i:03d}")
                else:
                    await llm.invoke(f"request {i:03d}", max_tokens=max_tokens)
            except forge.RateLimitError:
                pass  # counted by the server: the figure is how many there were

    await asyncio.gather(*(worker() for _ in range(tasks)))


async def _strict(kind: str, per_minute: float, n: int) -> tuple[int, float, float]:
    """(429s, busiest second / slice, reached rate / allowed rate) for one run."""
    limit = {"requests_per_minute" if kind == "rpm" else "tokens_per_minute": per_minute}
    async with StrictLimitServer(**limit) as srv:  # type: ignore[arg-type]
        cfg = provider_config("openai", srv.url("/v1"), rate_limit=limit)
        async with forge.Registry(config=cfg) as reg:
            await _fire(reg.get_llm("openai:gpt-4o-mini"), n, 50, 16)
    slice_ = per_minute / 60
    arrivals = srv.admitted
    span = arrivals[-1][0] - arrivals[0][0]
    if kind == "rpm":
        busiest = srv.busiest_second()[0]
        used = len(arrivals) - 1
    else:
        busiest = srv.busiest_second()[1]
        used = sum(cost for _, cost in arrivals[1:])
    return srv.statuses.count(429), busiest / slice_, used / span / slice_


async def _unset_max_tokens(calls: int) -> float:
    tpm = 12_000
    async with StrictLimitServer(tokens_per_minute=tpm) as srv:
        cfg = provider_config("openai", srv.url("/v1"), rate_limit={"tokens_per_minute": tpm})
        async with forge.Registry(config=cfg) as reg:
            start = time.monotonic()
            await _fire(reg.get_llm("openai:gpt-4o-mini"), calls, calls, None)
            elapsed = time.monotonic() - start
    return elapsed


async def run() -> list[Figure]:
    n = 60 if quick() else 200
    figures: list[Figure] = []
    for kind, per_minute in (("rpm", 3000.0), ("tpm", 60_000.0)):
        rejected, busiest, reached = await _strict(kind, per_minute, n)
        label = f"{kind} {per_minute:,.0f}, {n} requests from 50 tasks"
        figures.append(Figure.of(BENCH, f"429s, {label}", [rejected], "count"))
        figures.append(Figure.of(BENCH, f"busiest second / slice, {label}", [busiest * 100], "%"))
        figures.append(Figure.of(BENCH, f"rate reached / allowed, {label}", [reached * 100], "%"))
    calls = 4 if quick() else 12
    figures.append(Figure.of(BENCH, f"{calls} calls, no max_tokens, tpm 12,000", [await _unset_max_tokens(calls)], "s",
                             "reserves prompt + 1,024; settles with the ~10 tokens used"))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    emit(asyncio.run(run()), args.json)


if __name__ == "__main__":
    main()
