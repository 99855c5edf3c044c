"""The streaming hot path against the floor: forge's CPU per chunk over the floor's, per provider.

The floor is what any client must do for the same stream: bare httpx2 line
iteration (``aiter_lines``) plus one ``json.loads`` per ``data:`` line, over the
same bytes from the same emulator (in its own process, so its CPU is not
counted), in the same run. Each provider is measured with the events packed
(many per network read) and one event per read. CPU time is
``time.process_time`` of the whole call (request building included) over its text
chunks; runs are interleaved in pairs of rounds, each side leading one of the two,
and a ratio is the median over pairs of the two rounds' geometric mean.

Then ``--concurrent`` streams at once through one Registry (OpenAI chat,
packed) against as many floor streams at once: CPU ratio and errors.

    python -m benchmarks.bench_hotpath [--chunks 4000] [--rounds 8] [--concurrent 1000] [--json]

Bounded: about 2 minutes on two cores with the defaults.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import statistics
from collections.abc import Awaitable, Callable
from typing import Any

import httpx2

import forge
from benchmarks._common import Figure, Timer, emit, emulator_config, emulator_process, quick

PROMPT = "benchmark"
TARGET = 1.2
# (label, forge model ref, provider config options, floor path, floor body)
PATHS: list[tuple[str, str, dict[str, object], str, dict[str, Any]]] = [
    ("openai chat", "openai:gpt-4o-mini", {}, "/v1/chat/completions",
     {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": PROMPT}], "stream": True,
      "stream_options": {"include_usage": True}}),
    ("openai responses", "openai:gpt-4o-mini", {"api": "responses"}, "/v1/responses",
     {"model": "gpt-4o-mini", "input": PROMPT, "stream": True}),
    ("anthropic", "anthropic:claude-haiku-4-5", {}, "/v1/messages",
     {"model": "claude-haiku-4-5", "max_tokens": 100_000, "messages": [{"role": "user", "content": PROMPT}],
      "stream": True}),
    ("google", "google:gemini-2.5-flash", {}, "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
     {"contents": [{"role": "user", "parts": [{"text": PROMPT}]}]}),
]
HEADERS = {
    "authorization": "Bearer emulator-key",
    "x-api-key": "emulator-key",
    "anthropic-version": "2023-06-01",
    "x-goog-api-key": "emulator-key",
}


async def _decode_lines(response: httpx2.Response) -> int:
    """The floor's decoding: ``aiter_lines``, one ``json.loads`` per ``data:`` line."""
    n = 0
    loads = json.loads
    async for line in response.aiter_lines():
        if line[:5] == "data:":
            data = line[5:]
            if data.strip() != "[DONE]":
                loads(data)
                n += 1
    return n


def floor_runner(http: httpx2.AsyncClient, url: str, body: dict[str, Any]) -> Callable[[], Awaitable[int]]:
    """Bare httpx2: one POST, ``aiter_lines``, ``json.loads`` of every ``data:`` line."""
    content = json.dumps(body).encode()

    async def run() -> int:
        async with http.stream("POST", url, content=content, headers=HEADERS) as resp:
            return await _decode_lines(resp)

    return run


def forge_runner(reg: forge.Registry, ref: str) -> Callable[[], Awaitable[int]]:
    async def run() -> int:
        n = 0
        async for ev in reg.stream(ref, PROMPT, max_tokens=100_000).events():
            if ev.kind == "text":
                n += 1
        return n

    return run


async def _measure(
    runs: dict[str, Callable[[], Awaitable[int]]], rounds: int, chunks: int
) -> dict[str, list[float]]:
    for name, run in runs.items():
        n = await run()  # warm: imports, connections
        if n < chunks:
            raise RuntimeError(f"{name} saw {n} of {chunks} chunks: not the same stream")
    cpu: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    for i in range(rounds + rounds % 2):  # even: each side runs first as often as second
        for name in names if i % 2 == 0 else reversed(names):
            with Timer() as t:
                await runs[name]()
            cpu[name].append(t.cpu / chunks * 1e6)
    return cpu


def _ratios(cpu: dict[str, list[float]], name: str = "forge") -> list[float]:
    """forge over floor per pair of rounds: the geometric mean of the round forge ran first in
    and the round the floor ran first in. Whichever runs first in a round paid more in
    runs of 1,000 streams (the emulator is still busy with the other's streams, so reads
    come less packed), so a plain median of per-round ratios would depend on how many
    rounds each side led."""
    per_round = [f / b for f, b in zip(cpu[name], cpu["floor"], strict=True)]
    return [math.sqrt(a * b) for a, b in zip(per_round[::2], per_round[1::2], strict=True)]


async def per_chunk(chunks: int, rounds: int) -> list[Figure]:
    figures: list[Figure] = []
    for packed in (True, False):
        how = "packed" if packed else "one per read"
        with emulator_process(chunk_count=chunks, chunk_size=16, coalesce=packed) as url:
            async with httpx2.AsyncClient(base_url=url, timeout=60) as http:
                for label, ref, options, path, body in PATHS:
                    cfg = emulator_config(url)
                    cfg["providers"][ref.split(":")[0]].update(options)  # type: ignore[index]
                    async with forge.Registry(config=cfg) as reg:
                        cpu = await _measure(
                            {"forge": forge_runner(reg, ref), "floor": floor_runner(http, path, body)},
                            rounds, chunks,
                        )
                    ratios = _ratios(cpu)
                    ratio = statistics.median(ratios)
                    verdict = "ok" if ratio <= TARGET else "OVER TARGET"
                    figures += [
                        Figure.of("hotpath", f"{label} ({how}) forge CPU/chunk", cpu["forge"], "us"),
                        Figure.of("hotpath", f"{label} ({how}) floor CPU/chunk", cpu["floor"], "us"),
                        Figure.of("hotpath", f"{label} ({how}) forge/floor", ratios, "x",
                                  f"target <= {TARGET}x: {verdict}"),
                    ]
    return figures


def client_runner(client: Any, body: dict[str, Any]) -> Callable[[], Awaitable[int]]:
    """The official openai client alone: the request as forge sends it (the body in
    ``extra_body``), its raw streamed response, and the floor's decoding."""
    from openai import NOT_GIVEN

    extra = dict(body)

    async def run() -> int:
        opened = client.chat.completions.with_streaming_response.create(
            model=NOT_GIVEN, messages=NOT_GIVEN, extra_body=extra
        )
        async with opened as resp:
            return await _decode_lines(resp.http_response)

    return run


async def concurrent(streams: int, chunks: int, rounds: int) -> list[Figure]:
    """``streams`` OpenAI chat streams at once through one Registry, against as many floor streams,
    and as many through the official client alone (what forge's request costs before forge)."""
    from openai import AsyncOpenAI

    label, ref, _, path, body = PATHS[0]
    with emulator_process(chunk_count=chunks, chunk_size=16, coalesce=True) as url:
        limits = httpx2.Limits(max_connections=streams, max_keepalive_connections=streams)
        async with (
            httpx2.AsyncClient(base_url=url, timeout=120, limits=limits) as http,
            httpx2.AsyncClient(timeout=120, limits=limits) as client_http,
            forge.Registry(config=emulator_config(url, max_connections=streams, timeout=120)) as reg,
        ):
            client = AsyncOpenAI(base_url=url + "/v1", api_key="emulator-key", http_client=client_http,
                                 max_retries=0)
            one_forge, one_floor = forge_runner(reg, ref), floor_runner(http, path, body)
            one_client = client_runner(client, body)
            errors = {"forge": 0, "floor": 0, "client": 0}
            first: dict[str, str] = {}

            def fan_out(name: str, one: Callable[[], Awaitable[int]]) -> Callable[[], Awaitable[int]]:
                async def run() -> int:
                    results = await asyncio.gather(*(one() for _ in range(streams)), return_exceptions=True)
                    failed = [r for r in results if isinstance(r, BaseException)]
                    errors[name] += len(failed)
                    if failed and name not in first:
                        first[name] = f"{type(failed[0]).__name__}: {str(failed[0])[:160]}"
                    return sum(r for r in results if isinstance(r, int))

                return run

            cpu = await _measure(
                {"forge": fan_out("forge", one_forge), "client": fan_out("client", one_client),
                 "floor": fan_out("floor", one_floor)},
                rounds, chunks * streams,
            )
    ratios = _ratios(cpu)
    verdict = "ok" if statistics.median(ratios) <= TARGET and errors["forge"] == 0 else "OVER TARGET"
    return [
        Figure.of("hotpath", f"{streams} concurrent {label} streams: forge CPU/chunk", cpu["forge"], "us"),
        Figure.of("hotpath", f"{streams} concurrent {label} streams: floor CPU/chunk", cpu["floor"], "us"),
        Figure.of("hotpath", f"{streams} concurrent streams forge/floor", ratios, "x",
                  f"target <= {TARGET}x with 0 errors: {verdict} ({chunks} chunks a stream)"),
        Figure.of("hotpath", f"{streams} concurrent streams: official client alone/floor", _ratios(cpu, "client"),
                  "x", "the same requests through openai's client with the floor's decoding: forge's share "
                  "is the rest"),
        Figure.of("hotpath", f"{streams} concurrent streams: forge errors", [errors["forge"]], "errors",
                  first.get("forge", "")),
        Figure.of("hotpath", f"{streams} concurrent streams: floor errors", [errors["floor"]], "errors",
                  first.get("floor", "")),
    ]


async def run(chunks: int = 4000, rounds: int = 8, streams: int = 1000) -> list[Figure]:
    if quick():
        chunks, rounds, streams = 200, 1, 20
    figures = await per_chunk(chunks, rounds)
    if streams:
        figures += await concurrent(streams, max(chunks // 40, 20), min(rounds, 6))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--chunks", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=8, help="per stream kind (1,000 streams: at most 6)")
    parser.add_argument("--concurrent", type=int, default=1000, help="0 to skip")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    emit(asyncio.run(run(args.chunks, args.rounds, args.concurrent)), args.json)


if __name__ == "__main__":
    main()
