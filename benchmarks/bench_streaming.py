"""Streaming cost per chunk: forge against each official client's own typed stream.

The same N-chunk stream from the emulator (in its own process, so its CPU is
not counted) is consumed through forge (``Stream.events()``) and through the
vendor's typed stream; CPU and wall per chunk are medians of interleaved runs.
Also: a 10 MB reply through ``stream_to_file``, peak memory growth.

    python -m benchmarks.bench_streaming [--chunks 10000] [--rounds 5] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import tracemalloc
from collections.abc import Awaitable, Callable
from pathlib import Path

import forge
from benchmarks._common import Figure, Timer, emit, emulator_config, emulator_process, quick

PROMPT = "benchmark"
MODELS = {
    "openai": "gpt-4o-mini",
    "anthropic": "claude-haiku-4-5",
    "google": "gemini-2.5-flash",
    "ollama": "llama3.2",
}
# What the vendor client itself costs per chunk is the baseline; forge must be cheaper.
TARGETS = {"openai": 0.25, "google": 0.25, "anthropic": 0.7, "ollama": 1.1}


async def forge_run(reg: forge.Registry, provider: str) -> int:
    n = 0
    async for ev in reg.stream(f"{provider}:{MODELS[provider]}", PROMPT).events():
        if ev.kind == "text":
            n += 1
    return n


def typed_runner(provider: str, url: str) -> tuple[Callable[[], Awaitable[int]], Callable[[], Awaitable[None]]]:
    """The official client's typed stream, as its docs show it, with retries off."""
    if provider == "openai":
        import openai

        oai = openai.AsyncOpenAI(api_key="k", base_url=url + "/v1", max_retries=0)

        async def run_openai() -> int:
            n = 0
            stream = await oai.chat.completions.create(
                model=MODELS[provider], messages=[{"role": "user", "content": PROMPT}], stream=True,
                stream_options={"include_usage": True},
            )
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    n += 1
            return n

        return run_openai, oai.close
    if provider == "anthropic":
        import anthropic

        ant = anthropic.AsyncAnthropic(api_key="k", base_url=url, max_retries=0)

        async def run_anthropic() -> int:
            n = 0
            stream = await ant.messages.create(
                model=MODELS[provider], max_tokens=100_000, messages=[{"role": "user", "content": PROMPT}],
                stream=True,
            )
            async for event in stream:
                if event.type == "content_block_delta":
                    n += 1
            return n

        return run_anthropic, ant.close
    if provider == "google":
        import httpx2
        from google import genai
        from google.genai import types

        http = httpx2.AsyncClient()
        gem = genai.Client(
            api_key="k",
            http_options=types.HttpOptions(
                base_url=url, httpx_async_client=http, retry_options=types.HttpRetryOptions(attempts=1)
            ),
        ).aio

        async def run_google() -> int:
            n = 0
            async for chunk in await gem.models.generate_content_stream(model=MODELS[provider], contents=PROMPT):
                if chunk.text:
                    n += 1
            return n

        async def close_google() -> None:
            await http.aclose()

        return run_google, close_google
    import ollama

    oll = ollama.AsyncClient(host=url)

    async def run_ollama() -> int:
        n = 0
        async for part in await oll.chat(model=MODELS[provider], messages=[{"role": "user", "content": PROMPT}],
                                         stream=True):
            if part.message.content:
                n += 1
        return n

    async def close_ollama() -> None:
        await oll._client.aclose()

    return run_ollama, close_ollama


async def per_chunk(chunks: int, rounds: int) -> list[Figure]:
    figures: list[Figure] = []
    with emulator_process(chunk_count=chunks, chunk_size=16) as url:
        cfg = emulator_config(url)
        for provider in MODELS:
            async with forge.Registry(config=cfg) as reg:
                typed, close = typed_runner(provider, url)
                await forge_run(reg, provider)  # warm both paths (imports, connections)
                await typed()
                cpu = {"forge": [], "typed": []}  # type: dict[str, list[float]]
                wall = {"forge": [], "typed": []}  # type: dict[str, list[float]]
                for i in range(rounds):
                    order = ["forge", "typed"] if i % 2 == 0 else ["typed", "forge"]
                    for path in order:
                        with Timer() as t:
                            n = await (forge_run(reg, provider) if path == "forge" else typed())
                        cpu[path].append(t.cpu / n * 1e6)
                        wall[path].append(t.wall / n * 1e6)
                await close()
            ratios = [f / t for f, t in zip(cpu["forge"], cpu["typed"], strict=True)]
            ratio = sorted(ratios)[len(ratios) // 2]
            verdict = "ok" if ratio <= TARGETS[provider] else "OVER TARGET"
            figures += [
                Figure.of("streaming", f"{provider} forge CPU/chunk", cpu["forge"], "us"),
                Figure.of("streaming", f"{provider} typed client CPU/chunk", cpu["typed"], "us"),
                Figure.of("streaming", f"{provider} forge wall/chunk", wall["forge"], "us"),
                Figure.of("streaming", f"{provider} typed client wall/chunk", wall["typed"], "us"),
                Figure.of("streaming", f"{provider} CPU ratio forge/typed", ratios, "x",
                          f"target <= {TARGETS[provider]}x: {verdict}"),
            ]
    return figures


async def to_file_memory(megabytes: int) -> list[Figure]:
    chunk_size = 1000
    chunks = megabytes * 1_000_000 // chunk_size
    with emulator_process(chunk_count=chunks, chunk_size=chunk_size) as url:
        async with forge.Registry(config=emulator_config(url)) as reg:
            await reg.invoke("openai:gpt-4o-mini", "warm up")
            with tempfile.TemporaryDirectory() as tmp:
                target = Path(tmp) / "reply.txt"
                tracemalloc.start()
                base = tracemalloc.get_traced_memory()[0]
                with Timer() as t:
                    await reg.stream_to_file("openai:gpt-4o-mini", "write a lot", target)
                peak = tracemalloc.get_traced_memory()[1] - base
                tracemalloc.stop()
                size = target.stat().st_size
    mb = size / 1e6
    return [
        Figure.of("stream_to_file", f"{mb:.0f} MB reply: peak Python memory growth", [peak / 1e6], "MB",
                  "target < 5 MB: " + ("ok" if peak < 5e6 else "OVER TARGET")),
        Figure.of("stream_to_file", f"{mb:.0f} MB reply: throughput", [mb / t.wall], "MB/s"),
    ]


async def run(chunks: int = 10_000, rounds: int = 5, megabytes: int = 10) -> list[Figure]:
    if quick():
        chunks, rounds, megabytes = 300, 1, 1
    return await per_chunk(chunks, rounds) + await to_file_memory(megabytes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--chunks", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--megabytes", type=int, default=10)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    emit(asyncio.run(run(args.chunks, args.rounds, args.megabytes)), args.json)


if __name__ == "__main__":
    main()
