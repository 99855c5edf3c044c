"""What OpenTelemetry costs: per streamed chunk and per call, off, installed-but-unconfigured, and on.

Three registries on the same emulator (in its own process), runs interleaved:

- ``off``: ``Registry(telemetry=False)``;
- ``unconfigured``: the default with opentelemetry-api importable but no provider
  set (what every service gets that has the extra but no SDK setup);
- ``on``: an SDK TracerProvider (simple processor, in-memory exporter) and
  MeterProvider (in-memory reader) passed as ``forge.Telemetry``.

Per chunk, ``off`` and ``unconfigured`` must be the same (nothing is done per
chunk); ``on`` adds the span and metrics once per call, spread over the chunks.

    python -m benchmarks.bench_otel [--chunks 5000] [--calls 300] [--rounds 5] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
from typing import Any

import forge
from benchmarks._common import Figure, Timer, emit, emulator_config, emulator_process, quick

MODEL = "openai:gpt-4o-mini"
MODES = ("off", "unconfigured", "on")


def _sdk() -> tuple[Any, Any, Any] | None:
    try:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    except ImportError:
        return None
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    return exporter, tracer_provider, meter_provider


async def _stream(reg: forge.Registry) -> int:
    n = 0
    async for ev in reg.stream(MODEL, "benchmark").events():
        if ev.kind == "text":
            n += 1
    return n


async def _calls(reg: forge.Registry, calls: int) -> int:
    for _ in range(calls):
        await reg.invoke(MODEL, "benchmark")
    return calls


async def _measure(cfg: dict[str, object], work: Any, rounds: int, telemetry: forge.Telemetry,
                   exporter: Any) -> dict[str, list[float]]:
    regs = {
        "off": forge.Registry(config=cfg, telemetry=False),
        "unconfigured": forge.Registry(config=cfg),
        "on": forge.Registry(config=cfg, telemetry=telemetry),
    }
    cpu: dict[str, list[float]] = {m: [] for m in MODES}
    try:
        for reg in regs.values():
            await work(reg)  # warm up: imports, connections
        for i in range(rounds):
            order = MODES if i % 2 == 0 else tuple(reversed(MODES))
            for mode in order:
                with Timer() as t:
                    n = await work(regs[mode])
                cpu[mode].append(t.cpu / n * 1e6)
                exporter.clear()
    finally:
        for reg in regs.values():
            await reg.aclose()
    return cpu


def _import_figures() -> list[Figure]:
    code = "import sys, forge; forge.Registry(config={}); print(sum(m.startswith('opentelemetry') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = int(out.strip())
    return [Figure.of("otel", "opentelemetry modules loaded by import forge + Registry()", [loaded], "modules",
                      "target 0: " + ("ok" if loaded == 0 else "OVER TARGET"))]


async def run(chunks: int = 5000, calls: int = 300, rounds: int = 5) -> list[Figure]:
    if quick():
        chunks, calls, rounds = 50, 5, 1
    sdk = _sdk()
    if sdk is None:
        return [Figure.of("otel", "skipped: opentelemetry-sdk not installed", [0], "-")]
    exporter, tracer_provider, meter_provider = sdk
    telemetry = forge.Telemetry(tracer_provider=tracer_provider, meter_provider=meter_provider)
    figures: list[Figure] = []
    with emulator_process(chunk_count=chunks, chunk_size=16) as url:
        per_chunk = await _measure(emulator_config(url), _stream, rounds, telemetry, exporter)
    with emulator_process(chunk_count=4) as url:
        per_call = await _measure(emulator_config(url), lambda reg: _calls(reg, calls), rounds, telemetry,
                                  exporter)
    for mode in MODES:
        figures.append(Figure.of("otel", f"stream CPU/chunk, telemetry {mode}", per_chunk[mode], "us",
                                 f"{chunks}-chunk openai streams"))
    for mode in MODES:
        figures.append(Figure.of("otel", f"invoke CPU/call, telemetry {mode}", per_call[mode], "us"))
    extra = [u - o for u, o in zip(per_chunk["unconfigured"], per_chunk["off"], strict=True)]
    figures.append(Figure.of("otel", "per-chunk CPU added when unconfigured", extra, "us",
                             "expected ~0 (noise): nothing runs per chunk"))
    added = [on - off for on, off in zip(per_call["on"], per_call["off"], strict=True)]
    figures.append(Figure.of("otel", "per-call CPU added when on (span + metrics)", added, "us"))
    tracer_provider.shutdown()
    meter_provider.shutdown()
    return figures + _import_figures()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", type=int, default=5000)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    emit(asyncio.run(run(args.chunks, args.calls, args.rounds)), args.json)


if __name__ == "__main__":
    main()
