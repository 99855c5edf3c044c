"""Provider optimizations and the response cache, on and off: input cost and latency per provider.

    python -m benchmarks.bench_optimize        # the table behind docs/optimization.md
    python -m benchmarks optimize              # the same figures in the common table

Each scenario is ten calls against the emulator, which bills prompt caching
the way each vendor does; cost comes from the reported usage and
forge.pricing (Gemini also pays for creating its cache and storing it for its
TTL). Latency is the emulator's prefill model (``prefill_rate``: real delay per
1,000 input tokens still to process; cached tokens count a tenth), so it shows
what caching removes, not any real provider's speed.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import random
import time
from dataclasses import dataclass

import forge
from benchmarks._common import Figure, emit, quick
from forge.pricing import cache_storage_usd, cost_usd, price_for
from forge.testing import Emulator
from forge.types import Response, Tool, Usage

SYSTEM = ("Support policy. Refunds are accepted within 30 days of purchase with a receipt; "
          "store credit is offered after that. Escalate billing disputes to tier two. ") * 129  # ~5,000 tokens
PREFILL_RATE = 0.02  # seconds per 1,000 uncached input tokens: ~100 ms for the 5,000-token prompt
TOOLS = [Tool(f"tool_{i}", f"Tool number {i} of the support desk", {"type": "object", "properties": {}})
         for i in range(6)]


@dataclass
class Result:
    scenario: str
    provider: str
    model: str
    input_tokens: int
    cached_tokens: int
    input_usd: float
    wall_s: float
    note: str = ""


def _input_usd(provider: str, model: str, usage: Usage) -> float:
    return cost_usd(provider, model, dataclasses.replace(usage, output_tokens=0)) or 0.0


async def _calls(provider: str, model: str, *, optimize: bool, calls: int, shuffle_tools: bool = False,
                 response_cache: bool = False) -> Result:
    rng = random.Random(7)
    rate = 0.0 if quick() else PREFILL_RATE
    async with Emulator(chunk_count=2, prefill_rate=rate) as emu, forge.Registry(
        emu.config(), enable_optimizations=optimize
    ) as reg:
        llm = reg.get_llm(f"{provider}:{model}", enable_cache=response_cache)
        replies: list[Response] = []
        start = time.perf_counter()
        for i in range(calls):
            question = "What is the refund window?" if response_cache else f"Customer {i}: can I return it?"
            params: dict[str, object] = {"system": SYSTEM, "max_tokens": 64}
            if shuffle_tools:
                tools = TOOLS[:]
                rng.shuffle(tools)
                params["tools"] = tools
            replies.append(await llm.invoke(question, **params))
        wall = time.perf_counter() - start
        counters = llm.optimizer.stats.counters if llm.optimizer is not None else {}
    usd = sum(0.0 if r.cached else _input_usd(provider, model, r.usage) for r in replies)
    note = ""
    written = counters.get("cache_write_tokens", 0)
    if written:  # Gemini: the cache itself is billed at creation and for storage
        price = price_for(provider, model)
        ttl = 300
        usd += written * (price.input if price else 0.0) / 1_000_000
        usd += cache_storage_usd(provider, model, written, ttl) or 0.0
        note = f"incl. cache creation + {ttl}s storage"
    return Result(
        scenario="",
        provider=provider,
        model=model,
        input_tokens=sum(r.usage.input_tokens for r in replies if not r.cached),
        cached_tokens=sum(r.usage.cached_input_tokens for r in replies if not r.cached),
        input_usd=usd,
        wall_s=wall,
        note=note,
    )


SCENARIOS = [
    ("5k-token system prompt", "anthropic", "claude-sonnet-4-6", {}),
    ("5k-token system prompt", "google", "gemini-2.5-flash", {}),
    ("5k-token system prompt", "openai", "gpt-4o-mini", {}),
    ("same + tools in varying order", "openai", "gpt-4o-mini", {"shuffle_tools": True}),
]


async def measure() -> list[tuple[Result, Result]]:
    calls = 3 if quick() else 10
    pairs = []
    for scenario, provider, model, kw in SCENARIOS:
        off = await _calls(provider, model, optimize=False, calls=calls, **kw)
        on = await _calls(provider, model, optimize=True, calls=calls, **kw)
        off.scenario = on.scenario = scenario
        pairs.append((off, on))
    plain = await _calls("openai", "gpt-4o-mini", optimize=False, calls=calls)
    cached = await _calls("openai", "gpt-4o-mini", optimize=False, calls=calls, response_cache=True)
    plain.scenario = cached.scenario = "identical requests, response cache"
    pairs.append((plain, cached))
    return pairs


def table(pairs: list[tuple[Result, Result]]) -> str:
    rows = [("scenario", "provider:model", "input tok", "cached tok (on)", "input $ off", "input $ on",
             "saved", "wall s off", "wall s on", "note")]
    for off, on in pairs:
        saved = 1 - on.input_usd / off.input_usd if off.input_usd else 0.0
        rows.append((off.scenario, f"{off.provider}:{off.model}", str(off.input_tokens), str(on.cached_tokens),
                     f"{off.input_usd:.5f}", f"{on.input_usd:.5f}", f"{saved:.0%}", f"{off.wall_s:.2f}",
                     f"{on.wall_s:.2f}", on.note))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


async def run() -> list[Figure]:
    """The suite entry point of ``python -m benchmarks``."""
    figures = []
    for off, on in await measure():
        name = f"{off.scenario} ({off.provider}:{off.model})"
        saved = 100 * (1 - on.input_usd / off.input_usd) if off.input_usd else 0.0
        figures.append(Figure.of("optimize", f"{name} input $ off", [off.input_usd], "USD"))
        figures.append(Figure.of("optimize", f"{name} input $ on", [on.input_usd], "USD", on.note))
        figures.append(Figure.of("optimize", f"{name} input saved", [saved], "%"))
        figures.append(Figure.of("optimize", f"{name} wall off", [off.wall_s], "s", "emulated prefill"))
        figures.append(Figure.of("optimize", f"{name} wall on", [on.wall_s], "s", "emulated prefill"))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print the figures as JSON instead of the table")
    args = parser.parse_args()
    if args.json:
        emit(asyncio.run(run()), True)
    else:
        print(table(asyncio.run(measure())))


if __name__ == "__main__":
    main()
