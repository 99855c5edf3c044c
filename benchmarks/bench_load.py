"""Load: many requests from many tasks through one Registry, with faults, the response cache and metrics.

    python -m benchmarks.bench_load                      # 5,000 requests from 200 tasks, 10% faults
    python -m benchmarks.bench_load --requests 1000 --tasks 50

Checks, and exits non-zero when one fails:

- every request is answered exactly once, with its own reply (the emulator echoes the prompt);
- the metrics equal what the server saw: successes = 200s served, retries = faults injected,
  response-cache hits = the repeated prompts (answered without a request);
- after ``Registry.aclose`` no connection is open at the server and the process holds no more
  file descriptors than before the Registry (counted in /proc/self/fd);
- memory is steady: RSS before, after the first half and at the end are reported.

The emulator runs in a thread of this process (its open-connection count is read directly);
its request log is off, so its memory does not grow with the run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
from dataclasses import dataclass, field

import forge
from forge.cache import MemoryResponseCache
from forge.testing import EmulatorThread, Fault


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


@dataclass
class LoadResult:
    requests: int
    tasks: int
    seconds: float = 0.0
    server_requests: int = 0
    server_faults: int = 0
    answers: dict[int, int] = field(default_factory=dict)
    wrong_replies: int = 0
    errors: list[str] = field(default_factory=list)
    metrics: dict[str, object] = field(default_factory=dict)
    cache_hits: int = 0
    repeats: int = 0
    fds_before: int = 0
    fds_after: int = 0
    open_connections_after: int = -1
    rss_before: float = 0.0
    rss_half: float = 0.0
    rss_after: float = 0.0

    def failures(self) -> list[str]:
        out: list[str] = []
        total = self.requests
        if sorted(self.answers) != list(range(total)) or any(n != 1 for n in self.answers.values()):
            missing = total - len(self.answers)
            twice = sum(1 for n in self.answers.values() if n != 1)
            out.append(f"not every request answered exactly once ({missing} missing, {twice} more than once)")
        if self.wrong_replies:
            out.append(f"{self.wrong_replies} replies were another request's")
        if self.errors:
            out.append(f"{len(self.errors)} requests failed, e.g. {self.errors[0]}")
        totals = self.metrics.get("totals", {})
        assert isinstance(totals, dict)
        served = self.server_requests - self.server_faults
        if totals.get("successes") != served:
            out.append(f"metrics successes {totals.get('successes')} != 200s served {served}")
        if totals.get("retries", 0) + totals.get("failures", 0) != self.server_faults:
            out.append(f"metrics retries+failures {totals.get('retries')}+{totals.get('failures')} "
                       f"!= faults injected {self.server_faults}")
        if self.cache_hits != self.repeats:
            out.append(f"response-cache hits {self.cache_hits} != repeated prompts {self.repeats}")
        if self.open_connections_after != 0:
            out.append(f"{self.open_connections_after} connections still open at the server after aclose")
        if self.fds_after > self.fds_before:
            out.append(f"file descriptors: {self.fds_before} before, {self.fds_after} after aclose")
        return out


async def run_load(requests: int = 5000, tasks: int = 200, fault_rate: float = 0.1,
                   repeat_share: float = 0.1, seed: int = 7, redis_url: str | None = None) -> LoadResult:
    """Run the load and return what was observed (see :meth:`LoadResult.failures`).

    ``redis_url``: also draw every request from a (generous) Redis rate-limit budget, so
    its connections are part of what ``aclose`` must close.
    """
    result = LoadResult(requests, tasks)
    rng = random.Random(seed)
    seen = {"requests": 0, "faults": 0}

    def fault(_rec: object) -> bool:  # runs on the emulator's thread, once per request
        seen["requests"] += 1
        hit = rng.random() < fault_rate
        seen["faults"] += hit
        return hit

    emu = EmulatorThread(chunk_count=2, record_requests=False).start()
    try:
        config: dict[str, dict[str, dict[str, object]]] = {"providers": {"openai": {
            "api_key": "sk-load-test", "base_url": emu.base_urls["openai"],
            # 6 attempts at 10% faults: a request fails for good once in a million.
            "retry": {"max_attempts": 6, "initial_wait": 0.001, "max_wait": 0.01},
        }}}
        if redis_url:
            config["providers"]["openai"]["rate_limit"] = {
                "requests_per_minute": 6_000_000, "backend": "redis", "redis_url": redis_url,
                "budget": f"bench-load-{os.getpid()}-{seed}"}
        repeats = int(requests * repeat_share)
        unique = requests - repeats
        result.repeats = repeats
        # Repeats ask an earlier prompt again, after the first pass: each one is a cache hit.
        plan = [(i, i) for i in range(unique)] + [(unique + j, rng.randrange(unique)) for j in range(repeats)]
        # Warm up (imports, the vendor client's first use) outside the measured Registry.
        warm_config = {k: v for k, v in config["providers"]["openai"].items() if k != "rate_limit"}
        async with forge.Registry({"providers": {"openai": {**warm_config,
                                                            "retry": {"max_attempts": 1}}}}) as warm:
            await warm.invoke("openai:gpt-4o-mini", "warm up", max_tokens=64)
        emu.call(lambda e: e.script(Fault.server_error(), times=None, when=fault))
        result.rss_before = rss_mb()
        result.fds_before = open_fds()
        start = time.monotonic()
        reg = forge.Registry(config, response_cache=MemoryResponseCache(max_entries=max(1, unique)))
        try:
            llm = reg.get_llm("openai:gpt-4o-mini", enable_cache=True)

            async def worker(queue: asyncio.Queue[tuple[int, int]]) -> None:
                while True:
                    try:
                        index, prompt = queue.get_nowait()
                    except asyncio.QueueEmpty:
                        return
                    try:
                        reply = await llm.invoke(f"{prompt:06d}", max_tokens=64)
                    except forge.ForgeError as exc:
                        result.errors.append(f"{index}: {exc}")
                        continue
                    result.answers[index] = result.answers.get(index, 0) + 1
                    result.cache_hits += reply.cached
                    if f"{prompt:06d}" not in reply.text:
                        result.wrong_replies += 1

            for phase in (plan[:unique], plan[unique:]):
                queue: asyncio.Queue[tuple[int, int]] = asyncio.Queue()
                for item in phase:
                    queue.put_nowait(item)
                await asyncio.gather(*(worker(queue) for _ in range(tasks)))
                if not result.rss_half:
                    result.rss_half = rss_mb()
            result.metrics = reg.metrics.snapshot()
        finally:
            await reg.aclose()
        result.seconds = time.monotonic() - start
        deadline = time.monotonic() + 5.0
        # A counter owned by the emulator thread's loop: polled, there is no event to await here.
        while emu.open_connections and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        result.open_connections_after = emu.open_connections
        result.fds_after = open_fds()
        result.rss_after = rss_mb()
        result.server_requests = emu.call(lambda e: seen["requests"])
        result.server_faults = seen["faults"]
    finally:
        emu.stop()
    return result


def report(r: LoadResult) -> str:
    totals = r.metrics.get("totals", {})
    assert isinstance(totals, dict)
    rows = [
        ("requests / tasks", f"{r.requests} / {r.tasks}"),
        ("wall time", f"{r.seconds:.1f} s ({r.requests / r.seconds:.0f} req/s)" if r.seconds else "-"),
        ("server saw / faults injected", f"{r.server_requests} / {r.server_faults}"),
        ("metrics successes / retries / failures",
         f"{totals.get('successes')} / {totals.get('retries')} / {totals.get('failures')}"),
        ("response-cache hits / repeats", f"{r.cache_hits} / {r.repeats}"),
        ("open connections after aclose", str(r.open_connections_after)),
        ("fds before / after", f"{r.fds_before} / {r.fds_after}"),
        ("RSS before / half / after", f"{r.rss_before:.1f} / {r.rss_half:.1f} / {r.rss_after:.1f} MB"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--fault-rate", type=float, default=0.1)
    parser.add_argument("--redis-url", default=None, help="also use a Redis rate-limit budget")
    args = parser.parse_args(argv)
    result = asyncio.run(run_load(args.requests, args.tasks, args.fault_rate, redis_url=args.redis_url))
    print(report(result))
    problems = result.failures()
    for problem in problems:
        print(f"FAILED: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
