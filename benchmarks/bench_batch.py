"""Batches: concurrent throughput against a configured rate limit, and batch-API cost against concurrent.

Throughput: the emulator (in its own process) enforces a requests/min (or
tokens/min) limit and forge is configured with the same one; a concurrent
batch of N prompts runs through ``reg.batch_invoke(mode="concurrent")``. The
figure is the rate forge sustained beyond the budget stored in its bucket at
the start, as a share of the limit's rate; target within 5%, with zero 429s.

Cost: the same 100 prompts through each provider's batch API and as
concurrent calls. What is measured is the token usage each mode reports (it
must be equal); the cost ratio is that usage priced with forge's price list
(``forge.pricing``, batch at half price), so its 0.50 restates the price list.

    python -m benchmarks.bench_batch [--requests 500] [--rounds 3] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import forge
from benchmarks._common import Figure, emit, emulator_config, emulator_process, free_port, quick
from forge.errors import RateLimitError
from forge.ratelimit import SlidingWindow, TokenBucket
from forge.retry import RetryEvent

RPM = 6000  # 100 requests/s
TPM = 60_000  # 1,000 tokens/s: with ~70 tokens per request, about 14 requests/s
MAX_TOKENS = 64
COST_MODELS = {
    "openai": "openai:gpt-4o-mini",
    "anthropic": "anthropic:claude-haiku-4-5",
    "google": "google:gemini-2.5-flash",
}

_SERVER = """
import asyncio
from forge.testing import Emulator
async def main():
    async with Emulator(port={port}, record_requests=False, coalesce=True) as emu:
        emu.set_limits("openai", requests_per_minute={rpm})
        emu.set_limits("anthropic", tokens_per_minute={tpm})
        emu.set_batch_delay(0.2)
        print("listening", emu.url, flush=True)
        await asyncio.Event().wait()
asyncio.run(main())
"""


@contextmanager
def limited_emulator() -> Iterator[str]:
    """The emulator in a child process, enforcing the limits above; yields its URL."""
    port = free_port()
    code = _SERVER.format(port=port, rpm=RPM, tpm=TPM)
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


def _config(url: str) -> dict[str, object]:
    config = emulator_config(url)
    providers = config["providers"]
    assert isinstance(providers, dict)
    providers["openai"]["rate_limit"] = {"requests_per_minute": RPM}
    providers["anthropic"]["rate_limit"] = {"tokens_per_minute": TPM}
    return config


async def throughput_once(url: str, model: str, n: int, limit_per_s: float, unit: str) -> tuple[float, int, str]:
    """Sustained completions/s of a concurrent batch as a share of the limit's rate, and the 429s seen.

    The limit allows the budget stored in forge's bucket at the start plus the
    refill rate for as long as the batch runs; the figure is what forge used of
    the refill part: ``(n - stored) / (rate * wall)``.
    """
    limited = 0

    def on_retry(event: RetryEvent) -> None:
        nonlocal limited
        if isinstance(event.error, RateLimitError):
            limited += 1

    provider = model.split(":")[0]
    async with forge.Registry(_config(url), on_retry=on_retry) as reg:
        warm = await reg.invoke(model, "request 0: a short question", max_tokens=MAX_TOKENS)
        per_request = 1.0 if unit == "requests" else float(warm.usage.input_tokens + MAX_TOKENS)
        limiter = reg.limiter(provider)
        assert limiter is not None
        bucket = limiter.requests if unit == "requests" else limiter.tokens
        assert isinstance(bucket, (TokenBucket, SlidingWindow))
        # A strict window stores nothing to burst: everything is paced at the rate.
        stored = bucket.level / per_request if isinstance(bucket, TokenBucket) else 0.0
        start, cpu = time.perf_counter(), time.process_time()
        results = await reg.batch_invoke(
            model, [f"request {i}: a short question" for i in range(n)], mode="concurrent", max_concurrent=32,
            max_tokens=MAX_TOKENS,
        )
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    failed = sum(1 for r in results if not isinstance(r, forge.Response))
    rate = limit_per_s / per_request
    used = (n - stored) / (rate * wall)
    note = (f"{n} requests in {wall:.2f}s: {stored:.0f} from the stored budget, then "
            f"{(n - stored) / wall:.1f}/s of {rate:.1f}/s allowed (client CPU {cpu / n * 1000:.2f} ms/request); "
            "target 95-100%")
    return used * 100, limited + failed, note


async def throughput(url: str, model: str, n: int, limit_per_s: float, unit: str, rounds: int) -> list[Figure]:
    runs = [await throughput_once(url, model, n, limit_per_s, unit) for _ in range(rounds)]
    name = f"{model} limited by {unit}/min"
    return [
        Figure.of("batch", f"{name}: throughput / limit", [r[0] for r in runs], "%", runs[-1][2]),
        Figure.of("batch", f"{name}: 429s", [r[1] for r in runs], "count", "429s and failed items; target 0"),
    ]


async def cost_ratio(url: str, provider: str, n: int) -> list[Figure]:
    """Batch-API cost / concurrent cost of the same ``n`` prompts."""
    prompts = [f"prompt {i}: summarize the plot of a short story in two sentences" for i in range(n)]
    with tempfile.TemporaryDirectory() as tmp:
        async with forge.Registry(_config(url)) as reg:
            reg.job_store = forge.SQLiteJobStore(Path(tmp) / "jobs.sqlite3")
            model = COST_MODELS[provider]
            batch = await reg.batch_invoke(model, prompts, mode="batch_api", max_tokens=MAX_TOKENS,
                                           poll=forge.PollSchedule(0.1, 1.5, 1.0))
            concurrent = await reg.batch_invoke(model, prompts, mode="concurrent", max_concurrent=32,
                                                max_tokens=MAX_TOKENS)
            await reg.job_store.aclose()
    done_batch = [r for r in batch if isinstance(r, forge.Response)]
    done_concurrent = [r for r in concurrent if isinstance(r, forge.Response)]
    batch_cost = sum(r.cost_usd or 0 for r in done_batch)
    concurrent_cost = sum(r.cost_usd or 0 for r in done_concurrent)
    # What was measured is the token usage of each mode; the cost is that usage priced with
    # forge's price list (forge.pricing: batch = half price), not a bill from the vendor.
    tokens = {mode: (sum(r.usage.input_tokens for r in rs), sum(r.usage.output_tokens for r in rs))
              for mode, rs in (("batch", done_batch), ("concurrent", done_concurrent))}
    same = "equal" if tokens["batch"] == tokens["concurrent"] else "DIFFERENT"
    (bi, bo), (ci, co) = tokens["batch"], tokens["concurrent"]
    usage_note = (f"measured usage {same}: batch {bi:,} in / {bo:,} out, concurrent {ci:,} in / {co:,} out "
                  f"({len(done_batch)} and {len(done_concurrent)} of {n} answered)")
    note = (f"computed from forge's price list (batch discount 0.5), not measured: ${batch_cost:.5f} vs "
            f"${concurrent_cost:.5f} for {n} prompts")
    return [
        Figure.of("batch", f"{provider}: batch API / concurrent input+output tokens",
                  [(bi + bo) / max(1, ci + co)], "x", usage_note),
        Figure.of("batch", f"{provider}: batch API cost / concurrent cost (price list)",
                  [batch_cost / concurrent_cost], "x", note),
    ]


async def run(requests: int | None = None, rounds: int | None = None) -> list[Figure]:
    n = requests or (150 if quick() else 500)
    rounds = rounds or (1 if quick() else 3)
    figures: list[Figure] = []
    with limited_emulator() as url:
        figures += await throughput(url, "openai:gpt-4o-mini", n, RPM / 60, "requests", rounds)
        figures += await throughput(url, "anthropic:claude-haiku-4-5", max(20, n // 6), TPM / 60, "tokens", 1)
    with emulator_process() as url:  # no limits: cost does not depend on pacing
        for provider in COST_MODELS:
            figures += await cost_ratio(url, provider, 10 if quick() else 100)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=None, help="requests per throughput run (500)")
    parser.add_argument("--rounds", type=int, default=None, help="throughput runs (3)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    emit(asyncio.run(run(args.requests, args.rounds)), args.json)


if __name__ == "__main__":
    main()
