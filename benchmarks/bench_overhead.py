"""What forge adds on the happy path: import time, per-call and time-to-first-token
overhead against the raw client, the limiter's cost and precision, metrics cost.

    python -m benchmarks.bench_overhead [--calls 200] [--rounds 5] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time

import forge
from benchmarks._common import Figure, Timer, emit, emulator_config, emulator_process, quick
from forge.ratelimit import RequestCounter, TokenBucket

IMPORTS = {
    "forge": "import forge",
    "forge (first call path)": "import forge; forge.Registry",
    "openai": "import openai",
    "anthropic": "import anthropic",
    "google.genai": "from google import genai",
    "ollama": "import ollama",
}


def import_times(rounds: int) -> list[Figure]:
    def once(code: str) -> float:
        out = subprocess.run(
            [sys.executable, "-c", f"import time; t = time.perf_counter(); {code}; "
                                   "print(time.perf_counter() - t)"],
            check=True, capture_output=True, text=True,
        ).stdout
        return float(out) * 1000

    figures = []
    for name, code in IMPORTS.items():
        samples = [once(code) for _ in range(rounds)]
        note = "target < 50 ms" if name == "forge" else ""
        figures.append(Figure.of("import", name, samples, "ms", note))
    return figures


async def call_overhead(url: str, calls: int, rounds: int) -> list[Figure]:
    import openai

    raw = openai.AsyncOpenAI(api_key="k", base_url=url + "/v1", max_retries=0)
    messages = [{"role": "user", "content": "hi"}]
    figures: list[Figure] = []
    async with forge.Registry(config=emulator_config(url)) as reg:
        llm = reg.get_llm("openai:gpt-4o-mini")
        limited_cfg = emulator_config(url, rate_limit={"requests_per_minute": 1e9, "tokens_per_minute": 1e12})
        async with forge.Registry(config=limited_cfg) as limited_reg:
            limited = limited_reg.get_llm("openai:gpt-4o-mini")
            await llm.invoke("warm")
            await limited.invoke("warm")
            await raw.chat.completions.create(model="gpt-4o-mini", messages=messages)  # type: ignore[arg-type]
            bare = raw.chat.completions.with_raw_response
            json.loads((await bare.create(model="gpt-4o-mini", messages=messages)).content)  # type: ignore[arg-type]
            results: dict[str, list[float]] = {"raw": [], "raw bytes": [], "forge": [], "forge+limiter": []}
            ttft: dict[str, list[float]] = {"raw": [], "forge": []}
            for i in range(rounds):
                order = list(results)
                order = order[i % len(order):] + order[: i % len(order)]
                for path in order:
                    with Timer() as t:
                        for _ in range(calls):
                            if path == "raw":
                                await raw.chat.completions.create(model="gpt-4o-mini", messages=messages)  # type: ignore[arg-type]
                            elif path == "raw bytes":
                                # The same decoding work forge does: the body's JSON, no pydantic models.
                                reply = await bare.create(model="gpt-4o-mini", messages=messages)  # type: ignore[arg-type]
                                json.loads(reply.content)
                            elif path == "forge":
                                await llm.invoke("hi")
                            else:
                                await limited.invoke("hi")
                    results[path].append(t.cpu / calls * 1e6)
                for path in ("raw", "forge"):
                    samples = []
                    for _ in range(max(5, calls // 10)):
                        start = time.perf_counter()
                        if path == "raw":
                            stream = await raw.chat.completions.create(
                                model="gpt-4o-mini", messages=messages, stream=True  # type: ignore[arg-type]
                            )
                            async for chunk in stream:
                                if chunk.choices and chunk.choices[0].delta.content:
                                    samples.append(time.perf_counter() - start)
                                    break
                            await stream.close()
                        else:
                            async with llm.stream("hi") as s:
                                async for _ in s:
                                    samples.append(time.perf_counter() - start)
                                    break
                    ttft[path].append(statistics.median(samples) * 1000)
    await raw.close()
    figures.append(Figure.of("overhead", "invoke CPU/call, openai with_raw_response + json.loads",
                             results["raw bytes"], "us", "the same decoding work as forge"))
    figures.append(Figure.of("overhead", "invoke CPU/call, openai typed (pydantic models)", results["raw"], "us"))
    figures.append(Figure.of("overhead", "invoke CPU/call, forge (retry policy, metrics)", results["forge"], "us"))
    figures.append(Figure.of("overhead", "invoke CPU/call, forge + rate limiter", results["forge+limiter"], "us"))
    fair = [f - r for f, r in zip(results["forge"], results["raw bytes"], strict=True)]
    figures.append(Figure.of("overhead", "forge's added CPU per invoke (vs with_raw_response + json.loads)", fair,
                             "us", "like for like: the fair figure"))
    unlike = [f - r for f, r in zip(results["forge"], results["raw"], strict=True)]
    figures.append(Figure.of("overhead", "forge CPU per invoke minus the typed client's", unlike, "us",
                             "unlike work: the typed client also builds pydantic models"))
    figures.append(Figure.of("overhead", "time to first token, raw openai stream", ttft["raw"], "ms"))
    figures.append(Figure.of("overhead", "time to first token, forge stream", ttft["forge"], "ms"))
    return figures


async def limiter_figures(rounds: int) -> list[Figure]:
    n = 20_000
    per_acquire = []
    for _ in range(rounds):
        bucket = TokenBucket(1e12, 1e12)
        with Timer() as t:
            for _ in range(n):
                await bucket.acquire(1)
        per_acquire.append(t.cpu / n * 1e6)
    precision = []
    configured = 6000.0 if not quick() else 60_000.0
    for _ in range(max(1, rounds // 2)):
        counter = RequestCounter(requests_per_minute=configured, initial_fill=0.0)
        count = 200
        start = time.monotonic()
        for _ in range(count):
            await counter.acquire()
        elapsed = time.monotonic() - start
        precision.append((count / elapsed) * 60 / configured * 100)
    return [
        Figure.of("limiter", "TokenBucket.acquire when unconstrained", per_acquire, "us"),
        Figure.of("limiter", f"achieved rate at {configured:,.0f} req/min", precision, "% of configured",
                  "100% is exact"),
    ]


def metrics_figures(rounds: int) -> list[Figure]:
    from forge.metrics import Metrics

    m = Metrics()
    r = forge.Response("hi", "openai", "gpt-4o-mini", "stop", forge.Usage(10, 5, 2), latency_s=0.1, cost_usd=0.0)
    n = 50_000
    samples = []
    for _ in range(rounds):
        with Timer() as t:
            for _ in range(n):
                m.record_success(r)
        samples.append(t.cpu / n * 1e6)
    return [Figure.of("metrics", "record one successful call", samples, "us", "must be microseconds")]


async def request_building(rounds: int, n: int) -> list[Figure]:
    """Two per-call costs of building a request the vendor's way: the openai client's walk of its
    typed arguments (forge passes the body in ``extra_body`` and skips it), and google-genai's
    conversion of a request (forge runs it, to send exactly the SDK's bytes)."""
    from openai._utils import async_maybe_transform
    from openai.types.chat import completion_create_params

    from forge.providers.google_request import build_gemini_http_request, gemini_call_args
    from forge.providers.openai_request import _params

    request = forge.build_request("gpt-4o-mini", "benchmark", max_tokens=100)
    params = {**_params(request), "stream": True, "stream_options": {"include_usage": True}}
    typed = completion_create_params.CompletionCreateParamsStreaming
    walk = []
    for _ in range(rounds):
        with Timer() as t:
            for _ in range(n):
                await async_maybe_transform(params, typed)
        walk.append(t.cpu / n * 1e6)
    async with forge.Registry(config=emulator_config("http://127.0.0.1:9")) as reg:
        client = reg.get_llm("google:gemini-2.5-flash").provider._client  # type: ignore[attr-defined]
        gemini = forge.build_request("gemini-2.5-flash", "benchmark", max_tokens=100)
        build = []
        for _ in range(rounds):
            with Timer() as t:
                for _ in range(n):
                    model, contents, config = gemini_call_args(gemini)
                    build_gemini_http_request(client, model, contents, config, stream=True)
            build.append(t.cpu / n * 1e6)
    return [
        Figure.of("overhead", "openai client's typed-argument walk, one-message chat request", walk, "us",
                  "per call; forge sends the body in extra_body and skips it"),
        Figure.of("overhead", "google-genai request conversion, one-message request", build, "us",
                  "per call; forge runs the SDK's converter to send its exact bytes"),
    ]


async def run(calls: int = 200, rounds: int = 5) -> list[Figure]:
    if quick():
        calls, rounds = 20, 1
    figures = import_times(1 if quick() else max(3, rounds))
    with emulator_process(chunk_count=4) as url:
        figures += await call_overhead(url, calls, rounds)
    figures += await limiter_figures(rounds)
    figures += metrics_figures(rounds)
    figures += await request_building(rounds, 20 if quick() else 500)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    emit(asyncio.run(run(args.calls, args.rounds)), args.json)


if __name__ == "__main__":
    main()
