"""The load benchmark runs (tiny size) and every check it makes holds: nothing lost, nothing left open."""

from __future__ import annotations

import os

from benchmarks.bench_load import report, run_load


async def test_load_benchmark_answers_everything_once_and_leaves_nothing_open() -> None:
    # With Redis (CI), the limiter's connections must be closed by aclose too.
    result = await run_load(requests=300, tasks=30, fault_rate=0.1, redis_url=os.environ.get("FORGE_TEST_REDIS_URL"))
    assert result.failures() == [], report(result)
    assert result.server_faults > 0 and result.cache_hits == 30
